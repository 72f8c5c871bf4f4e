"""A partner tool keeps its copy of the sources and responses in step as it does the incidents'
(test_sync_withdrawals.py): `updated_since` and `ordering=updated_at` list what changed, by the
change time its reader is told, and `withdrawn/?since=` what left that reader's view (a source made
confidential or deleted; a response about no incident they may see any more, or deleted), told only
to readers who could see it before."""

import random
from datetime import UTC, date, datetime

import pytest

from incidents import roles
from incidents.models import DuplicatePair, Response, Source
from tests.api_support import API, client_for, incident_url, results
from tests.factories import make_incident, make_organization, make_place, make_source, make_user
from tests.test_admin import logged_in, run_action

LONG_AGO = "2000-01-01T00:00:00Z"
LISTS = ("sources", "responses")


def now() -> str:
    return datetime.now(UTC).isoformat()


def record_url(record) -> str:
    return f"{API}/{record._meta.verbose_name_plural}/{record.pk}/"


def changed(client, kind: str, since: str) -> list[int]:
    return [row["id"] for row in results(client.get(f"{API}/{kind}/", {"updated_since": since}))]


def withdrawn(client, kind: str, since: str = LONG_AGO) -> list[int]:
    return [row["id"] for row in results(client.get(f"{API}/{kind}/withdrawn/", {"since": since}))]


def make_response(*incidents, **overrides) -> Response:
    response = Response.objects.create(
        organization=overrides.pop("organization", None) or make_organization(),
        kind="statement",
        date=date(2023, 10, 10),
        **overrides,
    )
    response.incidents.set(incidents)
    return response


@pytest.fixture
def reviewer():
    """Staff with Confidential access, who may change and delete anything."""
    return make_user(roles.REVIEWER, confidential=True)


@pytest.fixture
def readers(reviewer):
    """The three audiences: the public, staff without Confidential access, and the reviewer."""
    return {"public": client_for(), "staff": client_for(make_user(roles.VIEWER)), "confidential": client_for(reviewer)}


def patched(reviewer, record, **changes) -> dict:
    record.refresh_from_db()
    answer = client_for(reviewer).patch(record_url(record), {**changes, "version": record.version}, format="json")
    assert answer.status_code == 200, answer.content
    return answer.json()


def test_a_change_of_a_sources_staff_only_notes_moves_only_staffs_sync(reviewer, readers):
    article = make_source(title="Repatriations at Dandong")
    since = now()

    patched(reviewer, article, notes="Called the editor")

    assert changed(readers["public"], "sources", since) == []
    assert changed(readers["staff"], "sources", since) == [article.pk]
    assert changed(readers["confidential"], "sources", since) == [article.pk]


def test_a_response_linked_to_a_draft_moves_only_staffs_sync(reviewer, readers):
    response = make_response(make_incident())
    draft = make_incident(review_state="draft")
    since = now()

    patched(reviewer, response, incidents=[incident.public_id for incident in (*response.incidents.all(), draft)])

    assert changed(readers["public"], "responses", since) == []
    assert changed(readers["staff"], "responses", since) == [response.pk]


def test_a_sensitive_places_exact_coordinates_move_only_staffs_sync(reviewer, readers):
    # Organizations and places hide nothing from staff: they sync by `updated_since` alone.
    province = make_place(name="Jilin", kind="province", latitude=43.84, longitude=126.55)
    town = make_place(name="Tumen", parent=province, latitude=42.97, longitude=129.84, sensitive=True)
    since = now()

    patched(reviewer, town, latitude=42.96)

    assert changed(readers["public"], "places", since) == []
    assert changed(readers["staff"], "places", since) == [town.pk]


def test_a_renamed_organization_is_listed_as_changed_since(reviewer, readers):
    make_organization(name="Human Rights Watch")
    renamed = make_organization(name="Amnesty")
    since = now()

    patched(reviewer, renamed, name="Amnesty International")

    assert changed(readers["public"], "organizations", since) == [renamed.pk]


def test_a_source_made_confidential_is_withdrawn_from_those_who_saw_it_only(reviewer, readers):
    article, informant = make_source(title="Article"), make_source(title="Informant", confidential=True)

    patched(reviewer, article, confidential=True)
    assert client_for(reviewer).delete(record_url(informant)).status_code == 204

    assert withdrawn(readers["public"], "sources") == [article.pk]
    assert withdrawn(readers["staff"], "sources") == [article.pk]
    # They still see the article; the informant's testimony they alone ever saw.
    assert withdrawn(readers["confidential"], "sources") == [informant.pk]
    assert changed(readers["public"], "sources", LONG_AGO) == []


def test_a_source_made_public_again_is_listed_as_changed_not_withdrawn(reviewer, readers):
    article = make_source(title="Article")
    patched(reviewer, article, confidential=True)
    since = now()

    patched(reviewer, article, confidential=False)

    assert withdrawn(readers["public"], "sources") == []
    assert changed(readers["public"], "sources", since) == [article.pk]


def test_a_response_leaves_each_audience_with_its_incidents(reviewer, readers, client):
    incident = make_incident(title="Repatriation at Dandong")
    response = make_response(incident)
    admin = logged_in(client, reviewer)

    run_action(admin, "return_to_draft", incident)
    assert withdrawn(readers["public"], "responses") == [response.pk]
    # Staff see drafts: it did not leave their view.
    assert withdrawn(readers["staff"], "responses") == []

    incident.refresh_from_db()
    answer = client_for(reviewer).patch(
        incident_url(incident), {"confidential": True, "version": incident.version}, format="json"
    )
    assert answer.status_code == 200, answer.content
    assert withdrawn(readers["staff"], "responses") == [response.pk]
    assert withdrawn(readers["confidential"], "responses") == []


# Committed between the steps: a response made and linked in one transaction was never seen.
@pytest.mark.django_db(transaction=True)
def test_a_response_about_no_incident_linked_to_a_confidential_one_leaves_staff_without_access(reviewer, readers):
    # About no incident yet, every member of staff reads it (`ResponseQuerySet.visible_to`).
    response = make_response()
    secret = make_incident(title="Informant's account", confidential=True)

    patched(reviewer, response, incidents=[secret.public_id])

    assert withdrawn(readers["staff"], "responses") == [response.pk]
    # The public never saw it: not even its id.
    assert withdrawn(readers["public"], "responses") == []
    assert withdrawn(readers["confidential"], "responses") == []


def test_a_response_moved_to_a_draft_or_deleted_is_withdrawn(reviewer, readers):
    moved, deleted = make_response(make_incident()), make_response(make_incident())
    draft = make_incident(review_state="draft")

    patched(reviewer, moved, incidents=[draft.public_id])
    assert client_for(reviewer).delete(record_url(deleted)).status_code == 204

    assert withdrawn(readers["public"], "responses") == [moved.pk, deleted.pk]
    assert withdrawn(readers["staff"], "responses") == [deleted.pk]
    assert withdrawn(readers["confidential"], "responses") == [deleted.pk]


def test_a_deleted_response_is_withdrawn_from_those_who_saw_it_alone(reviewer, readers):
    # Django removes its links first: read as about no incident, which all staff read, a response
    # about confidential incidents only was withdrawn from staff who never saw it (found by an
    # attack review). One about a draft and a confidential incident, from staff and not the public.
    about_secrets = make_response(make_incident(confidential=True), make_incident(confidential=True))
    about_a_draft = make_response(make_incident(review_state="draft"), make_incident(confidential=True))
    unlinked = make_response()
    assert [response["id"] for response in results(readers["staff"].get(f"{API}/responses/"))] == [
        about_a_draft.pk,
        unlinked.pk,
    ]

    for response in (about_secrets, about_a_draft, unlinked):
        assert client_for(reviewer).delete(record_url(response)).status_code == 204

    assert withdrawn(readers["public"], "responses") == []
    assert withdrawn(readers["staff"], "responses") == [about_a_draft.pk, unlinked.pk]
    assert withdrawn(readers["confidential"], "responses") == [about_secrets.pk, about_a_draft.pk, unlinked.pk]


def test_a_response_made_about_confidential_incidents_is_withdrawn_from_no_one(reviewer, readers):
    # Its row is written before its links: about no incident between the two statements, which all
    # staff read, it was recorded as leaving their view, its id in their `withdrawn/` (found by an
    # attack review).
    secrets = [make_incident(confidential=True).public_id, make_incident(confidential=True).public_id]
    organization = make_organization()
    body = {"organization": organization.pk, "kind": "statement", "date": "2023-09-01", "incidents": secrets}

    made = client_for(reviewer).post(f"{API}/responses/", body, format="json")

    assert made.status_code == 201, made.content
    for reader in readers.values():
        assert withdrawn(reader, "responses") == []


def test_since_leaves_out_what_left_before(reviewer, readers):
    first, second = make_source(), make_source()
    patched(reviewer, first, confidential=True)
    since = now()
    patched(reviewer, second, confidential=True)

    assert withdrawn(readers["public"], "sources", since) == [second.pk]


HOW_TO_WRITE_A_TIME = "2023-10-09T14:30:00Z"


@pytest.mark.parametrize("kind", LISTS)
@pytest.mark.parametrize(
    ("path", "query", "named", "said"),
    [
        ("", {"updated_since": "yesterday"}, "updated_since", HOW_TO_WRITE_A_TIME),
        # Without its offset: read as UTC, a script's local time put the sync hours off.
        ("", {"updated_since": "2024-05-01T00:00:00"}, "updated_since", "offset"),
        # UTC before the year 1: no time PostgreSQL can compare.
        ("", {"updated_since": "0001-01-01T00:00:00+23:00"}, "updated_since", HOW_TO_WRITE_A_TIME),
        ("withdrawn/", {}, "since", "required"),
        ("withdrawn/", {"since": "2024-05-01"}, "since", "offset"),
        ("withdrawn/", {"since": LONG_AGO, "cursor": "bm9wZQ"}, "cursor", "cursor"),
    ],
)
def test_a_bad_query_answers_400_naming_the_parameter(kind, path, query, named, said):
    answer = client_for().get(f"{API}/{kind}/{path}", query)

    assert answer.status_code == 400
    assert list(answer.json()) == [named]
    assert said in answer.json()[named][0]


def made(kind: str) -> list[Source | Response]:
    return [make_source() if kind == "sources" else make_response(make_incident()) for _ in range(5)]


@pytest.mark.parametrize(("kind", "queries"), [("sources", 1), ("responses", 2)])
def test_a_sync_reads_pages_in_a_fixed_number_of_queries(kind, queries, reviewer, django_assert_num_queries):
    for record in made(kind):
        # A source made confidential, a response deleted: each withdrawn from the public.
        if kind == "sources":
            patched(reviewer, record, confidential=True)
        else:
            assert client_for(reviewer).delete(record_url(record)).status_code == 204
    kept = made(kind)
    anonymous = client_for()

    for page_size in (2, 5):
        # The page; for responses, their incidents the reader may see (a prefetch).
        with django_assert_num_queries(queries):
            page = anonymous.get(
                f"{API}/{kind}/", {"updated_since": LONG_AGO, "ordering": "updated_at", "page_size": page_size}
            )
        assert len(results(page)) == page_size
        # The page of withdrawals alone.
        with django_assert_num_queries(1):
            page = anonymous.get(f"{API}/{kind}/withdrawn/", {"since": LONG_AGO, "page_size": page_size})
        assert len(results(page)) == page_size
    assert sorted(synced_ids(anonymous, kind, LONG_AGO, page_size=2)) == sorted(record.pk for record in kept)


def every_page(client, url: str, params: dict) -> list[dict]:
    rows, answer = [], client.get(url, params)
    while True:
        rows += results(answer)
        if answer.json()["next"] is None:
            return rows
        answer = client.get(answer.json()["next"])


def synced_ids(client, kind: str, since: str, page_size: int = 50) -> list[int]:
    params = {"updated_since": since, "ordering": "updated_at", "page_size": page_size}
    return [row["id"] for row in every_page(client, f"{API}/{kind}/", params)]


def full_read(client, kind: str) -> dict[int, dict]:
    return {row["id"]: row for row in every_page(client, f"{API}/{kind}/", {"page_size": 3})}


def synced(copy: dict[int, dict], client, kind: str, since: str) -> dict[int, dict]:
    """`copy` brought up to date as a partner tool does: what changed since, applied by id, in
    pages by change time; then what left its view since, dropped."""
    copy = dict(copy)
    params = {"updated_since": since, "ordering": "updated_at", "page_size": 2}
    for row in every_page(client, f"{API}/{kind}/", params):
        copy[row["id"]] = row
    for row in every_page(client, f"{API}/{kind}/withdrawn/", {"since": since, "page_size": 2}):
        copy.pop(row["id"], None)
    return copy


def generated_world(seed: int) -> dict:
    """Incidents, sources and responses of every kind a reader may or may not see: published,
    draft and confidential incidents; public and confidential sources, some relaying others;
    responses about one or two incidents, or none, some giving a source."""
    generator = random.Random(seed)
    states = [("published", False)] * 5 + [("draft", False)] * 2 + [("published", True), ("draft", True)]
    incidents = [make_incident(review_state=state, confidential=secret) for state, secret in states]
    sources = []
    for number in range(10):
        cites = generator.choice([None, *sources]) if sources else None
        sources.append(make_source(confidential=number % 3 == 2, cites=cites, notes=f"Note {number}"))
    responses = []
    for _ in range(10):
        about = generator.sample(incidents, generator.choice([0, 1, 1, 2]))
        responses.append(make_response(*about, source=generator.choice([None, *sources])))
    # About a published incident alone, which is deleted (`change_everything`).
    responses.append(make_response(incidents[4]))
    return {"incidents": incidents, "sources": sources, "responses": responses}


def change_everything(reviewer, client, world) -> None:
    """One of each change a partner's copy must follow, through the doors analysts use."""
    incidents, sources, responses = world["incidents"], world["sources"], world["responses"]
    api = client_for(reviewer)
    published = [
        incident for incident in incidents if incident.review_state == "published" and not incident.confidential
    ]
    # A staff-only note, a title, confidentiality both ways, a deletion.
    patched(reviewer, sources[0], notes="Called the editor again")
    patched(reviewer, sources[1], title="Renamed")
    patched(reviewer, sources[3], confidential=True)
    patched(reviewer, sources[2], confidential=False)
    deletable = Source.objects.filter(cited_by=None, claims=None, responses=None).exclude(
        pk__in=[sources[index].pk for index in range(4)]
    )
    assert api.delete(record_url(deletable.first())).status_code == 204
    make_source(title="New article")
    # An incident returned to draft and another made confidential take their responses with them.
    run_action(logged_in(client, reviewer), "return_to_draft", published[0])
    published[1].refresh_from_db()
    answer = api.patch(
        incident_url(published[1]), {"confidential": True, "version": published[1].version}, format="json"
    )
    assert answer.status_code == 200, answer.content
    # An incident deleted leaves its responses about the others, or about none (shown to staff only).
    assert api.delete(incident_url(published[4])).status_code == 204
    # A response deleted, another moved to a published incident, a new one.
    assert api.delete(record_url(responses[0])).status_code == 204
    patched(reviewer, responses[1], incidents=[published[2].public_id])
    make_response(published[3])


@pytest.mark.parametrize("reader", ["public", "staff", "confidential"])
@pytest.mark.parametrize("kind", LISTS)
def test_a_synced_copy_equals_a_full_read(reader, kind, readers, reviewer, client):
    world = generated_world(seed=7)
    partner = readers[reader]
    copy = full_read(partner, kind)
    since = now()

    change_everything(reviewer, client, world)

    assert synced(copy, partner, kind, since) == full_read(partner, kind)
    # The copy changed: the sync did something.
    assert synced(copy, partner, kind, since) != copy


@pytest.mark.parametrize("hidden_state", ["draft", "in_review"])
def test_a_draft_merged_into_a_published_incident_is_a_new_version_of_its_responses_for_the_public(hidden_state):
    """The response's link moves to the survivor, which the public's list of its incidents now
    shows: its public version stayed, so a partner's sync never read it again (its undo moved it)."""
    shown, survivor = make_incident(title="Shown incident"), make_incident(title="Survivor incident")
    merged = make_incident(title="Merged incident", review_state=hidden_state)
    response = Response.objects.create(organization=make_organization(), kind="statement", date=date(2024, 2, 1))
    response.incidents.set([shown, merged])
    url = f"{API}/responses/{response.pk}/"
    before = client_for().get(url)
    assert before.json()["incidents"] == [shown.public_id]
    low, high = sorted([survivor, merged], key=lambda incident: incident.pk)
    pair = DuplicatePair.objects.create(incident_a=low, incident_b=high, score=0.9)
    reviewer = client_for(make_user(roles.REVIEWER))

    merge = reviewer.post(f"{API}/duplicates/{pair.pk}/merge/", {"survivor": survivor.public_id}, format="json")

    assert merge.status_code == 201, merge.content
    after = client_for().get(url)
    assert sorted(after.json()["incidents"]) == sorted([shown.public_id, survivor.public_id])
    assert after["ETag"] != before["ETag"]
    undo = reviewer.post(f"{API}/incidents/{merged.public_id}/unmerge/", {}, format="json")
    assert undo.status_code == 200, undo.content
    assert client_for().get(url)["ETag"] not in (before["ETag"], after["ETag"])


def test_a_responses_incidents_read_in_one_order_while_its_version_stays():
    # In no order, they came in the table's: an edit of the first (a new row version at the table's
    # end) listed it last, one version of the response read as two bodies.
    first, second = make_incident(), make_incident()
    response = Response.objects.create(organization=make_organization(), kind="statement", date=date(2024, 2, 1))
    response.incidents.set([first, second])
    url = f"{API}/responses/{response.pk}/"
    before = client_for().get(url)

    first.title = "Edited"
    first.save()

    after = client_for().get(url)
    assert (after["ETag"], after.json()) == (before["ETag"], before.json())
    assert after.json()["incidents"] == [first.public_id, second.public_id]
