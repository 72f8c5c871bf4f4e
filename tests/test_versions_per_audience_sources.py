"""A source's and a response's version and change time per audience, as an incident's
(test_versions_per_audience.py): a confidential source given to a source to cite or to a response,
or a confidential incident linked to a response, moves neither the version, the change time nor the
ETag of anyone without Confidential access, in the API and the admin; a change they can see moves
them all. A writer without that access edits by the version they are told: a hidden change since
they read neither refuses their edit nor is undone by it, and a change they can see still does."""

from datetime import date

import pytest
from django.apps import apps
from django.urls import reverse

from incidents import roles
from incidents.models import Incident, Response, Source
from tests.api_support import API, client_for, etag_version
from tests.factories import make_incident, make_organization, make_source, make_user
from tests.form_support import form_fields, saved_unchanged


@pytest.fixture
def informant():
    return make_source(title="Informant notes", kind="testimony", confidential=True)


@pytest.fixture
def article():
    """A public article that cites nothing yet."""
    return make_source(title="Repatriations at Dandong", notes="Called the editor")


@pytest.fixture
def secret():
    """A confidential incident."""
    return make_incident(title="Informant's account", confidential=True)


@pytest.fixture
def response():
    """A public statement about a published incident, giving no source yet."""
    response = Response.objects.create(
        organization=make_organization(name="Human Rights Watch"), kind="statement", date=date(2023, 10, 10)
    )
    response.incidents.set([make_incident(title="Repatriation at Dandong")])
    return response


def url_of(record) -> str:
    if isinstance(record, Incident):
        return f"{API}/incidents/{record.public_id}/"
    return f"{API}/{record._meta.verbose_name_plural}/{record.pk}/"


def read(user, record) -> tuple[dict, str]:
    answer = client_for(user).get(url_of(record))
    assert answer.status_code == 200, answer.content
    return answer.json(), answer["ETag"]


def told(user, record) -> tuple[int, str, str]:
    """The version, change time and ETag `user` is told of `record`."""
    body, etag = read(user, record)
    return body["version"], body["updated_at"], etag


def edit(user, record, body: dict) -> dict:
    """`body` sent as `user`'s edit of `record`, from the version they read."""
    _, etag = read(user, record)
    answer = client_for(user).patch(url_of(record), body, format="json", HTTP_IF_MATCH=etag)
    assert answer.status_code == 200, answer.content
    return answer.json()


def linked_ids(response) -> list[str]:
    """The public ids of the incidents `response` is about, as the API names them."""
    return sorted(response.incidents.values_list("public_id", flat=True))


@pytest.fixture(params=["cites", "incidents", "source"])
def hidden(request, article, response, informant, secret) -> tuple[Source | Response, dict, dict]:
    """A link only readers with Confidential access see: the record, the edit that gives it and
    the edit that takes it away."""
    if request.param == "cites":
        return article, {"cites": informant.pk}, {"cites": None}
    if request.param == "source":
        return response, {"source": informant.pk}, {"source": None}
    return response, {"incidents": [*linked_ids(response), secret.public_id]}, {"incidents": linked_ids(response)}


def visible_edit(record) -> dict:
    """An edit of `record` that everyone sees."""
    return {"title": "Corrected"} if isinstance(record, Source) else {"date": "2023-10-11"}


def kept(record, change) -> bool:
    """Whether `record` holds what `change` gave it."""
    record.refresh_from_db()
    ((name, value),) = change.items()
    if name == "incidents":
        return linked_ids(record) == sorted(value)
    return getattr(record, f"{name}_id") == value


class TestReadersWithoutConfidentialAccess:
    def test_a_hidden_link_given_moves_nothing_they_are_told(self, keeper, reviewer, hidden):
        record, given, _ = hidden
        before = {user: read(user, record) for user in (None, reviewer)}

        edit(keeper, record, given)

        assert {user: read(user, record) for user in (None, reviewer)} == before

    def test_a_hidden_link_taken_away_moves_nothing_they_are_told(self, keeper, reviewer, hidden):
        record, given, taken_away = hidden
        edit(keeper, record, given)
        before = {user: read(user, record) for user in (None, reviewer)}

        edit(keeper, record, taken_away)

        assert {user: read(user, record) for user in (None, reviewer)} == before

    @pytest.mark.parametrize(
        "visible",
        [
            lambda article, response: (article, {"title": "Repatriations at Dandong, corrected"}),
            lambda article, response: (article, {"cites": make_source(title="Public report").pk}),
            lambda article, response: (response, {"description": "Calls on China to stop"}),
            lambda article, response: (response, {"source": article.pk}),
            lambda article, response: (response, {"incidents": [*linked_ids(response), make_incident().public_id]}),
        ],
        ids=["title", "public source cited", "description", "public source", "public incident"],
    )
    def test_a_change_they_can_see_moves_everything_they_are_told(self, keeper, article, response, visible):
        record, change = visible(article, response)
        version, updated_at, etag = told(None, record)

        edit(keeper, record, change)

        now_version, now_updated_at, now_etag = told(None, record)
        assert now_version == version + 1
        assert now_updated_at > updated_at
        assert now_etag == f'"public.{now_version}"' != etag

    def test_a_change_they_can_see_after_a_hidden_one_moves_their_version_by_one(self, keeper, hidden):
        record, given, _ = hidden
        version, _, _ = told(None, record)
        edit(keeper, record, given)

        edit(keeper, record, visible_edit(record))

        assert told(None, record)[0] == version + 1

    def test_staff_only_notes_move_the_version_of_staff_without_confidential_access(self, keeper, reviewer, article):
        # They read the notes (the public reads null): what they are told is what they see.
        version, _, _ = told(reviewer, article)

        edit(keeper, article, {"notes": "Called the editor again"})

        assert told(reviewer, article)[0] == version + 1


class TestReadersWithConfidentialAccess:
    def test_every_change_moves_what_they_are_told(self, keeper, hidden):
        record, given, _ = hidden
        version, updated_at, _ = told(keeper, record)

        edit(keeper, record, given)

        now_version, now_updated_at, now_etag = told(keeper, record)
        assert (now_version, now_etag) == (version + 1, f'"confidential.{version + 1}"')
        assert now_updated_at > updated_at


class TestWritersWithoutConfidentialAccess:
    def test_a_hidden_change_since_they_read_neither_refuses_their_edit_nor_is_undone(self, keeper, reviewer, hidden):
        record, given, _ = hidden
        body, etag = read(reviewer, record)
        edit(keeper, record, given)

        # The link as they read it sent back, with their change.
        sent = {name: body[name] for name in given} | visible_edit(record)
        answer = client_for(reviewer).patch(url_of(record), sent, format="json", HTTP_IF_MATCH=etag)

        assert answer.status_code == 200, answer.content
        assert answer["ETag"] == f'"staff.{body["version"] + 1}"'
        assert kept(record, given)

    @pytest.mark.parametrize("writer", ["staff", "partner"])
    @pytest.mark.parametrize("change", ["incidents", "date"])
    def test_the_answer_to_their_edit_names_the_version_a_read_then_gives(self, reviewer, response, writer, change):
        # The links are written after the response, and their triggers move the versions of readers
        # without Confidential access: the answer's ETag was the one before, and their next edit
        # with it was refused as stale, for their own change.
        user = reviewer if writer == "staff" else make_user(roles.ANALYST, is_staff=False)
        edited = {"incidents": [*linked_ids(response), make_incident().public_id]} if change == "incidents" else {}
        _, etag = read(user, response)
        answer = client_for(user).patch(
            url_of(response), edited or visible_edit(response), format="json", HTTP_IF_MATCH=etag
        )

        assert answer.status_code == 200, answer.content
        assert answer["ETag"] == read(user, response)[1] != etag
        assert answer["ETag"].strip('"').endswith(f".{answer.json()['version']}")

    def test_the_body_version_they_read_is_accepted_after_a_hidden_change(self, keeper, reviewer, hidden):
        record, given, _ = hidden
        version, _, _ = told(reviewer, record)
        edit(keeper, record, given)

        answer = client_for(reviewer).patch(url_of(record), visible_edit(record) | {"version": version}, format="json")

        assert answer.status_code == 200, answer.content
        assert answer.json()["version"] == version + 1
        assert kept(record, given)

    @pytest.mark.parametrize("by_header", [True, False], ids=["If-Match", "body"])
    @pytest.mark.parametrize("kind", ["source", "response"])
    def test_a_stale_edit_after_a_change_they_can_see_is_still_refused(
        self, keeper, reviewer, article, response, kind, by_header
    ):
        record = article if kind == "source" else response
        version, _, etag = told(reviewer, record)
        edit(keeper, record, {"title" if kind == "source" else "description": "Changed by the keeper"})

        answer = client_for(reviewer).patch(
            url_of(record),
            visible_edit(record) | ({} if by_header else {"version": version}),
            format="json",
            **({"HTTP_IF_MATCH": etag} if by_header else {}),
        )

        assert answer.status_code == (412 if by_header else 409)
        assert told(reviewer, record)[0] == version + 1


def admin_url(record) -> str:
    return reverse(f"admin:incidents_{record._meta.model_name}_change", args=[record.pk])


def saved_from(client, page, record, **changes):
    """`page`, the admin page of `record` opened earlier, sent back by its Save with `changes`."""
    data = form_fields(page.content.decode()) | changes | {"_save": "Save"}
    return client.post(admin_url(record), data)


class TestAdmin:
    def test_a_writer_without_access_saves_the_page_they_opened_before_a_hidden_change(
        self, client, keeper, reviewer, hidden
    ):
        record, given, _ = hidden
        client.force_login(reviewer)
        page = client.get(admin_url(record))
        edit(keeper, record, given)

        answer = saved_from(client, page, record, **visible_edit(record))

        assert answer.status_code == 302, answer.context["adminform"].form.errors
        assert kept(record, given)
        ((name, value),) = visible_edit(record).items()
        assert read(reviewer, record)[0][name] == value

    def test_a_writer_with_access_saves_the_page_after_a_hidden_change(self, client, keeper, hidden):
        record, given, _ = hidden
        edit(keeper, record, given)
        client.force_login(keeper)

        answer = saved_unchanged(client, admin_url(record), **visible_edit(record))

        assert answer.status_code == 302, answer.context["adminform"].form.errors
        assert kept(record, given)

    @pytest.mark.parametrize("kind", ["source", "response"])
    def test_a_page_opened_before_a_change_they_can_see_is_refused(
        self, client, keeper, reviewer, article, response, kind
    ):
        record = article if kind == "source" else response
        client.force_login(reviewer)
        page = client.get(admin_url(record))
        edit(keeper, record, {"title" if kind == "source" else "description": "Changed by the keeper"})

        answer = saved_from(client, page, record, **visible_edit(record))

        assert answer.status_code == 200
        assert "Your changes were not saved" in answer.content.decode()

    def test_a_response_linked_to_an_incident_is_one_event_in_its_history(self, keeper, response):
        edit(keeper, response, {"incidents": [*linked_ids(response), make_incident().public_id]})

        # The audit trail itself: its page leaves out an event that changed nothing it shows, as
        # the write of the disclosed columns alone would be.
        events = apps.get_model("incidents", "ResponseEvent").objects.filter(pgh_obj=response)
        assert list(events.order_by("pgh_id").values_list("pgh_label", flat=True)) == ["insert", "update"]


def linked_record(given) -> Source | Incident:
    """The source or incident `given` links its record to."""
    ((name, value),) = given.items()
    if name == "incidents":
        return Incident.objects.get(public_id=value[-1])
    return Source.objects.get(pk=value)


def made_confidential(keeper, linked, confidential: bool) -> None:
    """`linked` made confidential, or public, by `keeper`, through the API."""
    edit(keeper, linked, {"confidential": confidential})


class TestTheLinkedRecordsConfidentialityChanged:
    """A source a record cites, or an incident a response is about, made public or confidential:
    readers without Confidential access now see the link, or no longer do, so the record they are
    told changed. Its version moves for them (a partner's cached copy is read again), and a stale
    edit of theirs meets a version conflict rather than drop a link it never showed them."""

    def test_made_public_moves_what_they_are_told(self, keeper, reviewer, hidden):
        record, given, _ = hidden
        edit(keeper, record, given)
        before = {user: told(user, record) for user in (None, reviewer)}

        made_confidential(keeper, linked_record(given), False)

        for user, (version, updated_at, _etag) in before.items():
            now_version, now_updated_at, now_etag = told(user, record)
            assert (now_version, etag_version(now_etag)) == (version + 1, version + 1)
            assert now_updated_at > updated_at

    def test_made_confidential_moves_what_they_are_told(self, keeper, reviewer, hidden):
        record, given, _ = hidden
        linked = linked_record(given)
        made_confidential(keeper, linked, False)
        edit(keeper, record, given)
        before = {user: told(user, record)[0] for user in (None, reviewer)}

        made_confidential(keeper, linked, True)

        assert {user: told(user, record)[0] for user in (None, reviewer)} == {
            user: version + 1 for user, version in before.items()
        }

    def test_a_stale_edit_after_it_was_made_public_is_refused_and_the_link_kept(self, keeper, reviewer, hidden):
        record, given, _ = hidden
        edit(keeper, record, given)
        body, etag = read(reviewer, record)
        made_confidential(keeper, linked_record(given), False)

        # The link as they read it (none) sent back with their change, from the version they read.
        sent = {name: body[name] for name in given} | visible_edit(record)
        answer = client_for(reviewer).patch(url_of(record), sent, format="json", HTTP_IF_MATCH=etag)

        assert answer.status_code == 412, answer.content
        assert kept(record, given)

    def test_their_edit_of_what_they_now_see_keeps_the_link(self, keeper, reviewer, hidden):
        record, given, _ = hidden
        edit(keeper, record, given)
        made_confidential(keeper, linked_record(given), False)

        edit(reviewer, record, visible_edit(record))

        assert kept(record, given)


class TestTheLinkedIncidentPublishedOrReturnedToDraft:
    """The public reads a response's links to published incidents alone: one published, or returned
    to draft, changes the response they read, and its version moves for them."""

    @pytest.mark.parametrize("published_before", [False, True], ids=["published", "returned to draft"])
    def test_the_public_is_told_a_new_version(self, keeper, response, published_before):
        incident = make_incident(review_state="published" if published_before else "in_review")
        edit(keeper, response, {"incidents": [*linked_ids(response), incident.public_id]})
        version, _, etag = told(None, response)
        seen_before = incident.public_id in read(None, response)[0]["incidents"]

        edit(keeper, incident, {"review_state": "draft" if published_before else "published"})

        body, now_etag = read(None, response)
        assert (incident.public_id in body["incidents"], seen_before) == (not published_before, published_before)
        assert (body["version"], now_etag) == (version + 1, f'"public.{version + 1}"') != (version, etag)
