"""A record's creation time per audience: each reader is told, as the moment a source, an incident
or a response was created, the moment they could first see it. A confidential source (an
informant's) made public, an incident made public after being confidential, a draft published:
readers who could not see it before are told the change that showed it to them, as its history
shows them that change as its creation, never `created_at`, which was recorded in confidence.
Once told, it stays: hidden again and shown again, the record keeps the time told. Readers with
Confidential access are told `created_at`, and so is everyone of a record never hidden from them."""

import io
from datetime import UTC, date, datetime

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection

from incidents import roles
from incidents.models import Incident, Response, Source
from incidents.querysets import AUDIENCES
from tests.api_support import API, client_for, results
from tests.database_support import migrate_incidents_back_to
from tests.factories import make_incident, make_organization, make_source, make_user
from tests.test_versions_per_audience_sources import edit, read, url_of

# When the record was entered, in confidence or as a draft: well before any test's change.
RECORDED = datetime(2020, 3, 1, 8, 0, tzinfo=UTC)
RECORDED_AS_READ = "2020-03-01T08:00:00Z"


def recorded_long_ago(record) -> None:
    type(record).objects.filter(pk=record.pk).update(created_at=RECORDED)


def committed() -> None:
    """What the transaction's commit runs of a response's creation (its deferred trigger), which a
    test's transaction never reaches; deferred again after, as in the next transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS response_created_shown IMMEDIATE")
        cursor.execute("SET CONSTRAINTS response_created_shown DEFERRED")


def created_told(reader, record) -> str:
    """The creation time `reader` is told of `record` by its page in the API, which its list tells too."""
    body, _ = read(reader, record)
    if isinstance(record, Incident):
        listed = results(client_for(reader).get(f"{API}/incidents/?page_size=100"))
        [row] = [row for row in listed if row["public_id"] == record.public_id]
    else:
        listed = results(client_for(reader).get(f"{API}/{record._meta.verbose_name_plural}/?page_size=100"))
        [row] = [row for row in listed if row["id"] == record.pk]
    assert row["created_at"] == body["created_at"]
    return body["created_at"]


def updated_told(reader, record) -> str:
    return read(reader, record)[0]["updated_at"]


@pytest.fixture
def partner():
    """A partner tool's account, which is not staff: it reads what the public reads."""
    return make_user(roles.ANALYST, is_staff=False)


@pytest.fixture
def informant():
    source = make_source(title="Informant's testimony", kind="testimony", confidential=True)
    recorded_long_ago(source)
    return source


@pytest.fixture
def secret():
    """A published incident kept confidential."""
    incident = make_incident(title="Arrests reported by an informant", confidential=True)
    recorded_long_ago(incident)
    return incident


@pytest.fixture
def draft():
    incident = make_incident(title="Arrests in Hunchun", review_state="draft")
    recorded_long_ago(incident)
    return incident


class TestASourceMadePublic:
    def test_readers_without_confidential_access_are_told_it_was_created_when_made_public(
        self, keeper, reviewer, partner, informant
    ):
        article = make_source(title="Repatriations at Dandong")
        recorded_long_ago(article)

        edit(keeper, informant, {"confidential": False})
        edit(keeper, article, {"title": "Repatriations at Dandong, corrected"})

        for reader in (reviewer, partner, None):
            assert created_told(reader, informant) == updated_told(reader, informant) != RECORDED_AS_READ
        assert created_told(keeper, informant) == RECORDED_AS_READ
        # A source never hidden is told its creation by everyone.
        assert {created_told(reader, article) for reader in (keeper, reviewer, None)} == {RECORDED_AS_READ}

    def test_made_confidential_and_public_again_it_keeps_the_time_told(self, keeper, reviewer, informant):
        edit(keeper, informant, {"confidential": False})
        told = created_told(reviewer, informant)

        edit(keeper, informant, {"confidential": True})
        edit(keeper, informant, {"title": "Informant's testimony, names taken out"})
        edit(keeper, informant, {"confidential": False})

        assert created_told(reviewer, informant) == created_told(None, informant) == told != RECORDED_AS_READ
        assert updated_told(reviewer, informant) > told


class TestAnIncidentMadePublic:
    def test_readers_without_confidential_access_are_told_it_was_created_when_made_public(
        self, keeper, reviewer, partner, secret
    ):
        edit(keeper, secret, {"confidential": False})

        for reader in (reviewer, partner, None):
            assert created_told(reader, secret) == updated_told(reader, secret) != RECORDED_AS_READ
        assert created_told(keeper, secret) == RECORDED_AS_READ

    def test_made_confidential_and_public_again_it_keeps_the_time_told(self, keeper, reviewer, secret):
        edit(keeper, secret, {"confidential": False})
        told = created_told(reviewer, secret)

        edit(keeper, secret, {"confidential": True})
        edit(keeper, secret, {"confidential": False})

        assert created_told(reviewer, secret) == created_told(None, secret) == told != RECORDED_AS_READ


class TestADraftPublished:
    def test_the_public_is_told_it_was_created_when_published(self, keeper, reviewer, partner, draft):
        edit(reviewer, draft, {"review_state": "published"})

        for reader in (partner, None):
            assert created_told(reader, draft) == updated_told(reader, draft) != RECORDED_AS_READ
        # Staff saw the draft.
        assert created_told(reviewer, draft) == created_told(keeper, draft) == RECORDED_AS_READ

    def test_returned_to_draft_and_published_again_it_keeps_the_time_told(self, reviewer, draft):
        edit(reviewer, draft, {"review_state": "published"})
        told = created_told(None, draft)

        edit(reviewer, draft, {"review_state": "draft"})
        edit(reviewer, draft, {"review_state": "published"})

        assert created_told(None, draft) == told != RECORDED_AS_READ


def recorded_response(writer, *incidents: Incident) -> Response:
    """A response `writer` records through the API about `incidents`, committed, entered long ago."""
    answer = client_for(writer).post(
        f"{API}/responses/",
        {
            "organization": make_organization().pk,
            "kind": "statement",
            "date": "2023-10-10",
            "incidents": [incident.public_id for incident in incidents],
        },
        format="json",
    )
    assert answer.status_code == 201, answer.content
    committed()
    response = Response.objects.get(pk=answer.json()["id"])
    recorded_long_ago(response)
    return response


class TestAResponse:
    def test_about_a_confidential_incident_alone_is_told_created_when_the_incident_is_made_public(
        self, keeper, reviewer, secret
    ):
        response = recorded_response(keeper, secret)
        about_a_public_incident = recorded_response(keeper, make_incident(title="Repatriation at Dandong"))

        edit(keeper, secret, {"confidential": False})

        for reader in (reviewer, None):
            assert created_told(reader, response) == updated_told(reader, response) != RECORDED_AS_READ
        assert created_told(keeper, response) == RECORDED_AS_READ
        # Seen by everyone since it was recorded: told its creation.
        assert {created_told(reader, about_a_public_incident) for reader in (keeper, reviewer, None)} == {
            RECORDED_AS_READ
        }

    def test_about_a_draft_alone_is_told_to_the_public_created_when_the_draft_is_published(
        self, keeper, reviewer, draft
    ):
        response = recorded_response(keeper, draft)

        edit(reviewer, draft, {"review_state": "published"})

        assert created_told(None, response) == updated_told(None, response) != RECORDED_AS_READ
        assert created_told(reviewer, response) == RECORDED_AS_READ


def test_the_history_tells_readers_without_confidential_access_no_recorded_creation_time(keeper, reviewer, secret):
    edit(keeper, secret, {"confidential": False})
    history_url = f"{url_of(secret)}history/"

    seen_without_access = results(client_for(reviewer).get(history_url))
    seen_with_access = results(client_for(keeper).get(history_url))

    assert seen_without_access and all("created_at" not in event["data"] for event in seen_without_access)
    assert all("created_at" in event["data"] for event in seen_with_access)


# A record's creation time and change time, per audience, where the audience sees the record.
_TOLD_OF = {
    Source: {"disclosed": "NOT confidential", "public": "NOT confidential"},
    Incident: {"disclosed": "NOT confidential", "public": "NOT confidential AND review_state = 'published'"},
}


def test_every_record_is_told_created_no_later_than_changed_to_every_audience_that_sees_it(keeper, reviewer):
    call_command("loaddata", "sample", verbosity=0)
    call_command("generate_demo_data", incidents=200, seed=5, batch_size=70, stdout=io.StringIO())
    # Shown, hidden again and shown again, through the API as analysts do.
    for source in Source.objects.filter(confidential=True)[:3]:
        edit(keeper, source, {"confidential": False})
    for incident in Incident.objects.filter(confidential=True)[:3]:
        edit(keeper, incident, {"confidential": False})
        edit(keeper, incident, {"confidential": True})
    secret = make_incident(title="Arrests reported by an informant", confidential=True)
    for incident in Incident.objects.exclude(review_state="published").filter(confidential=False)[:3]:
        recorded_response(keeper, incident, secret)
        edit(reviewer, incident, {"review_state": "published"})
    committed()

    for model, seen_by in _TOLD_OF.items():
        for audience, seen in seen_by.items():
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT count(*), count(*) FILTER (WHERE {audience}_created_at IS NULL"
                    f" OR {audience}_created_at > {audience}_updated_at OR {audience}_created_at < created_at)"
                    f" FROM {model._meta.db_table} WHERE {seen}"
                )
                seen_count, wrong = cursor.fetchone()
            assert seen_count and not wrong, (model, audience)
    for response in Response.objects.all():
        for told in AUDIENCES:
            created, updated = getattr(response, told.created_at), getattr(response, told.updated_at)
            assert created is None or response.created_at <= created <= updated
        # Seen by the public through the published incident: told when.
        assert response.public_created_at is not None


@pytest.mark.django_db(transaction=True)
def test_the_migration_tells_each_audience_when_its_history_first_showed_it_the_record(keeper, reviewer):
    informant = make_source(title="Informant's testimony", kind="testimony", confidential=True)
    article = make_source(title="Repatriations at Dandong")
    draft = make_incident(title="Arrests in Hunchun", review_state="draft")
    still_secret = make_incident(title="Arrests reported by an informant", confidential=True)
    response = Response.objects.create(
        organization=make_organization(name="Human Rights Watch"), kind="statement", date=date(2023, 10, 10)
    )
    response.incidents.set([draft])
    for record in (informant, article, draft, still_secret, response):
        recorded_long_ago(record)
    migrate_incidents_back_to("0103_place_country_follows_its_parent")
    try:
        # Made public and published before the migration: each change recorded in the history.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE incidents_source SET confidential = false, version = version + 1, updated_at = now()"
                " WHERE id = %s",
                [informant.pk],
            )
            cursor.execute(
                "UPDATE incidents_incident SET review_state = 'published', version = version + 1, updated_at = now()"
                " WHERE id = %s",
                [draft.pk],
            )
            # The response's new version the publication gives the public (`services._links_shown_changed`).
            cursor.execute(
                "UPDATE incidents_response SET version = version + 1, updated_at = now(), public_updated_at = now()"
                " WHERE id = %s",
                [response.pk],
            )
    finally:
        call_command("migrate", "incidents", verbosity=0, stdout=io.StringIO())

    made_public = apps.get_model("incidents", "SourceEvent").objects.filter(pgh_obj=informant).latest("pgh_id")
    assert created_told(reviewer, informant) == created_told(None, informant) == updated_told(None, informant)
    assert Source.objects.get(pk=informant.pk).disclosed_created_at == made_public.updated_at
    assert created_told(keeper, informant) == RECORDED_AS_READ
    assert {created_told(reader, article) for reader in (keeper, reviewer, None)} == {RECORDED_AS_READ}
    published = apps.get_model("incidents", "IncidentEvent").objects.filter(pgh_obj=draft).latest("pgh_id")
    assert Incident.objects.get(pk=draft.pk).public_created_at == published.updated_at
    assert created_told(None, draft) != RECORDED_AS_READ
    assert created_told(reviewer, draft) == RECORDED_AS_READ
    # Its incident's publication, no later than its own change time.
    assert created_told(None, response) == created_told(None, draft)
    assert created_told(reviewer, response) == RECORDED_AS_READ
    hidden = Incident.objects.get(pk=still_secret.pk)
    assert (hidden.disclosed_created_at, hidden.public_created_at) == (None, None)
    # Its triggers take over: made public now, it is told so.
    edit(keeper, hidden, {"confidential": False})
    assert created_told(reviewer, hidden) == updated_told(reviewer, hidden) != RECORDED_AS_READ
