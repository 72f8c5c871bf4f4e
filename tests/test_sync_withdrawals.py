"""An incremental sync is told of the incidents that left what its reader may see
(`GET /api/v1/incidents/withdrawn/?since=`): returned to draft, made confidential, merged into one
they may not see, deleted; each through the door an analyst uses, and each reader told only of
incidents they could see before."""

import base64
import itertools
import json
from datetime import UTC, datetime, timedelta
from importlib import import_module
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection

from incidents import roles
from incidents.models import DuplicatePair, IncidentWithdrawal
from tests.api_support import API, client_for, incident_url, public_ids, results
from tests.factories import make_incident, make_user
from tests.test_admin import logged_in, run_action

WITHDRAWN = f"{API}/incidents/withdrawn/"
LONG_AGO = "2000-01-01T00:00:00Z"


def withdrawn(client, since: str = LONG_AGO, **params) -> list[str]:
    return [row["id"] for row in results(client.get(WITHDRAWN, {"since": since, **params}))]


@pytest.fixture
def reviewer():
    return make_user(roles.REVIEWER, confidential=True)


@pytest.fixture
def changes(reviewer, client):
    """Published incidents, each taken out of the public's view through another door, and two
    that never leave it or come back."""
    returned, hidden, merged, survivor, deleted, kept, back, draft = (
        make_incident(title=title, review_state=state)
        for title, state in (
            ("Returned to draft", "published"),
            ("Made confidential", "published"),
            ("Merged into a draft", "published"),
            ("The draft it was merged into", "draft"),
            ("Deleted", "published"),
            ("Kept", "published"),
            ("Returned to draft and published again", "published"),
            ("A draft made confidential", "draft"),
        )
    )
    api = client_for(reviewer)
    admin = logged_in(client, reviewer)
    run_action(admin, "return_to_draft", returned)
    assert api.patch(incident_url(hidden), {"confidential": True, "version": 1}, format="json").status_code == 200
    pair = DuplicatePair.objects.create(incident_a=merged, incident_b=survivor, score=0.9)
    answer = api.post(f"{API}/duplicates/{pair.pk}/merge/", {"survivor": survivor.public_id}, format="json")
    assert answer.status_code == 201, answer.content
    assert api.delete(incident_url(deleted)).status_code == 204
    run_action(admin, "return_to_draft", back)
    run_action(admin, "submit_for_review", back)
    run_action(admin, "publish", back)
    assert api.patch(incident_url(draft), {"confidential": True, "version": 1}, format="json").status_code == 200
    return {
        "returned": returned.public_id,
        "hidden": hidden.public_id,
        "merged": merged.public_id,
        "survivor": survivor.public_id,
        "deleted": deleted.public_id,
        "kept": kept.public_id,
        "back": back.public_id,
        "draft": draft.public_id,
    }


def test_the_public_is_told_of_each_incident_it_lost_in_the_order_it_left(changes):
    assert withdrawn(client_for()) == [changes[name] for name in ("returned", "hidden", "merged", "deleted")]
    # What it may still see is what the sync's list reports, the incident published again too.
    listed = public_ids(client_for().get(f"{API}/incidents/", {"updated_since": LONG_AGO}))
    assert listed == {changes["kept"], changes["back"]}


def test_staff_who_see_drafts_are_told_only_of_what_left_their_view(changes):
    viewer = client_for(make_user(roles.VIEWER))

    # A draft is theirs to see: neither the returned incident nor the merge into a draft left it;
    # the merged incident is reported by the list, with `merged_into`.
    assert withdrawn(viewer) == [changes[name] for name in ("hidden", "deleted", "draft")]
    listed = results(viewer.get(f"{API}/incidents/", {"updated_since": LONG_AGO}))
    synced = {row["public_id"]: row["merged_into"] for row in listed}
    assert synced[changes["merged"]] == changes["survivor"]


def test_a_reader_with_confidential_access_loses_only_what_was_deleted(changes, reviewer):
    assert withdrawn(client_for(reviewer)) == [changes["deleted"]]


def merge(reviewer, merged, survivor) -> None:
    first, second = sorted((merged, survivor), key=lambda incident: incident.pk)
    pair = DuplicatePair.objects.create(incident_a=first, incident_b=second, score=0.9)
    answer = client_for(reviewer).post(f"{API}/duplicates/{pair.pk}/merge/", {"survivor": survivor.public_id})
    assert answer.status_code == 201, answer.content


def test_incidents_merged_into_one_that_leaves_leave_with_it_for_those_who_followed_them(reviewer, client):
    # A partner's copy follows a merged incident to its survivor (`merged_into`) while it may see the
    # survivor; when the survivor leaves its view, the merged ones must be dropped with it.
    survivor, merged, merged_draft = (
        make_incident(title=title, review_state=state)
        for title, state in (("Survivor", "published"), ("Merged", "published"), ("Merged draft", "draft"))
    )
    merge(reviewer, merged, survivor)
    merge(reviewer, merged_draft, survivor)
    since = datetime.now(UTC).isoformat()
    followed = results(client_for().get(f"{API}/incidents/", {"updated_since": LONG_AGO}))
    assert {row["public_id"]: row["merged_into"] for row in followed} == {
        survivor.public_id: None,
        merged.public_id: survivor.public_id,
    }

    run_action(logged_in(client, reviewer), "return_to_draft", survivor)

    # The public followed the published one only: it is not told of the draft, not even its id.
    assert withdrawn(client_for(), since=since) == [survivor.public_id, merged.public_id]
    assert public_ids(client_for().get(f"{API}/incidents/", {"updated_since": since})) == set()
    # Staff see drafts: they follow both still.
    assert withdrawn(client_for(make_user(roles.VIEWER)), since=since) == []

    survivor.refresh_from_db()
    assert (
        client_for(reviewer)
        .patch(incident_url(survivor), {"confidential": True, "version": survivor.version}, format="json")
        .status_code
        == 200
    )
    assert set(withdrawn(client_for(make_user(roles.VIEWER)), since=since)) == {
        survivor.public_id,
        merged.public_id,
        merged_draft.public_id,
    }
    assert withdrawn(client_for(reviewer), since=since) == []


def test_a_reader_is_never_told_of_an_incident_it_could_not_see():
    informant = make_incident(title="Informant's account", review_state="draft", confidential=True)
    reviewer = make_user(roles.REVIEWER, confidential=True)

    assert client_for(reviewer).delete(incident_url(informant)).status_code == 204

    assert withdrawn(client_for(reviewer)) == [informant.public_id]
    assert withdrawn(client_for(make_user(roles.VIEWER))) == []
    assert withdrawn(client_for()) == []


def test_since_leaves_out_what_left_before_and_an_incident_is_told_once_at_its_latest(reviewer, client):
    incident = make_incident()
    admin = logged_in(client, reviewer)
    run_action(admin, "return_to_draft", incident)
    first = IncidentWithdrawal.objects.get().withdrawn_at
    run_action(admin, "submit_for_review", incident)
    run_action(admin, "publish", incident)
    run_action(admin, "return_to_draft", incident)
    latest = IncidentWithdrawal.objects.latest("id").withdrawn_at

    rows = results(client_for().get(WITHDRAWN, {"since": LONG_AGO}))
    assert [(row["id"], datetime.fromisoformat(row["withdrawn_at"])) for row in rows] == [(incident.public_id, latest)]
    assert withdrawn(client_for(), since=(first + timedelta(microseconds=1)).isoformat()) == [incident.public_id]
    assert withdrawn(client_for(), since=(latest + timedelta(microseconds=1)).isoformat()) == []


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({}, "since"),
        ({"since": "yesterday"}, "since"),
        # UTC before the year 1: no time PostgreSQL can compare.
        ({"since": "0001-01-01T00:00:00+23:00"}, "since"),
        ({"since": LONG_AGO, "page_size": "0"}, "page_size"),
        ({"since": LONG_AGO, "cursor": "bm9wZQ"}, "cursor"),
    ],
)
def test_a_bad_query_answers_400_naming_the_parameter(query, named):
    answer = client_for().get(WITHDRAWN, query)

    assert answer.status_code == 400
    assert list(answer.json()) == [named]


def test_pages_follow_one_another_in_a_fixed_number_of_queries(client, reviewer, django_assert_num_queries):
    incidents = [make_incident() for _ in range(5)]
    run_action(logged_in(client, reviewer), "return_to_draft", *incidents)
    anonymous = client_for()

    with django_assert_num_queries(1):
        first = anonymous.get(WITHDRAWN, {"since": LONG_AGO, "page_size": 2}).json()
    with django_assert_num_queries(1):
        anonymous.get(WITHDRAWN, {"since": LONG_AGO, "page_size": 5})
    second = anonymous.get(first["next"]).json()
    third = anonymous.get(second["next"]).json()

    pages = [[row["id"] for row in page["results"]] for page in (first, second, third)]
    assert sorted(itertools.chain(*pages)) == sorted(incident.public_id for incident in incidents)
    assert [len(page) for page in pages] == [2, 2, 1] and third["next"] is None


def test_the_withdrawals_before_the_feature_are_read_from_the_history_as_the_trigger_records_them(changes):
    recorded = set(IncidentWithdrawal.objects.values_list("incident_id", "public_id", "review_state", "confidential"))
    IncidentWithdrawal.objects.all().delete()

    migration = import_module("incidents.migrations.0057_incident_withdrawals")
    with connection.cursor() as cursor:
        cursor.execute(migration.BACKFILL_FROM_HISTORY)

    backfilled = set(IncidentWithdrawal.objects.values_list("incident_id", "public_id", "review_state", "confidential"))
    assert backfilled == recorded and len(recorded) == 6


def test_a_page_of_withdrawals_tells_no_count_of_those_the_reader_is_not_told_of(client, reviewer):
    """A page's `next` cursor held the position of its last row, whose id numbered every withdrawal
    recorded: between two the public was told of, the ids counted how many it was not, and bounded
    their times (a confidential incident deleted, an informant's draft merged). It holds the
    incident's own id now, which the row names already."""
    first, second = make_incident(title="First"), make_incident(title="Second")
    informant = make_incident(title="Informant's account", review_state="draft", confidential=True)
    admin = logged_in(client, reviewer)
    run_action(admin, "return_to_draft", first)
    assert client_for(reviewer).delete(incident_url(informant)).status_code == 204
    run_action(admin, "return_to_draft", second)

    page = client_for().get(WITHDRAWN, {"since": LONG_AGO, "page_size": 1}).json()
    after = client_for().get(page["next"]).json()

    assert [row["id"] for page in (page, after) for row in page["results"]] == [first.public_id, second.public_id]
    # The last row's position, and the next page's first row's (its link back): one apart, as the
    # two incidents are, whatever was withdrawn from other readers between.
    positions = [position_in(page["next"]), position_in(after["previous"])]
    assert [int(position[1]) for position in positions] == [first.pk, second.pk] == [first.pk, first.pk + 1]


def position_in(link: str) -> list[str]:
    cursor = parse_qs(urlparse(link).query)["cursor"][0]
    return json.loads(parse_qs(base64.b64decode(cursor).decode())["p"][0])
