"""Merging duplicates so that nothing is lost, and undoing it: through the API (POST
duplicates/ID/merge/, incidents/ID/unmerge/), the merged incident's redirects, the reads that leave
it out or report it, and who may do it."""

import csv
import html
import io
import itertools
import re
from datetime import UTC, date, timedelta

import pytest
from django.core.management import call_command
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from incidents import roles
from incidents.merges import incident_merge
from incidents.models import (
    NOTE_WITHHELD,
    WHO_AND_WHEN_WITHHELD,
    Claim,
    DuplicateDecision,
    DuplicatePair,
    Incident,
    IncidentMerge,
    IncidentPlace,
    IncidentRevision,
    Involvement,
    Response,
    VictimGroup,
)
from tests.api_support import API, client_for, incident_url, public_ids, results
from tests.factories import (
    make_claim,
    make_incident,
    make_organization,
    make_place,
    make_source,
    make_user,
    two_tumens,
)
from tests.form_support import pair_decision
from tests.test_admin import messages_of
from tests.test_write_conflicts import answered_while_held


def merge_url(pair) -> str:
    return f"{API}/duplicates/{pair.pk}/merge/"


def unmerge_url(incident) -> str:
    return f"{API}/incidents/{incident.public_id}/unmerge/"


@pytest.fixture
def world():
    """One repatriation entered twice. The survivor (older, published) has a claim of the daily;
    the duplicate has the daily's claim too (a conflict), a confidential claim, a claim of a
    confidential source, a place the survivor lacks and one it has, a perpetrator it shares and a
    facilitator it does not, a victim group, and a response about it."""
    yanji, tumen = make_place(name="Yanji"), make_place(name="Tumen")
    ministry, police = make_organization(name="Ministry"), make_organization(name="Border police")
    daily, informant = make_source(title="Daily"), make_source(title="Informant X", confidential=True)
    survivor = make_incident(title="80 sent back from Tumen", places=[tumen], people_count=80)
    merged = make_incident(
        title="Repatriation at Tumen and Yanji",
        places=[tumen, yanji],
        people_count=100,
        people_count_min=90,
        people_count_max=120,
        count_qualifier="about",
        date_start=date(2023, 8, 1),
        date_end=date(2023, 8, 31),
        date_precision="month",
    )
    make_claim(incident=survivor, source=daily, people_count=80, excerpt="80 people")
    conflicting = make_claim(incident=merged, source=daily, people_count=100, excerpt="About 100 people")
    hidden = make_claim(incident=merged, source=make_source(title="Secret NGO note"), confidential=True)
    informant_claim = make_claim(incident=merged, source=informant, excerpt="told us")
    Involvement.objects.create(incident=survivor, organization=ministry, role="perpetrator")
    Involvement.objects.create(incident=merged, organization=ministry, role="perpetrator")
    Involvement.objects.create(incident=merged, organization=police, role="facilitator")
    VictimGroup.objects.create(incident=merged, count=60, sex="female", description="mostly women")
    response = Response.objects.create(organization=police, kind="statement", date=date(2023, 9, 1))
    response.incidents.set([merged])
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)
    return {
        "survivor": survivor,
        "merged": merged,
        "pair": pair,
        "conflicting": conflicting,
        "hidden": [hidden, informant_claim],
        "response": response,
        "yanji": yanji,
    }


def snapshot(*incidents) -> dict:
    """Everything of the incidents and their related rows, hidden ones included; the incident's
    bookkeeping (version, last change) aside, since an undo is a new version."""
    ids = [incident.pk for incident in incidents]

    def rows(model, **filters):
        return sorted(model_to_dict(row) | {"incident": row.incident_id} for row in model.objects.filter(**filters))

    links = Response.incidents.through.objects.filter(incident__in=ids)
    return {
        "incidents": [
            {key: value for key, value in model_to_dict(Incident.objects.get(pk=pk)).items() if key != "places"}
            | {"merged_into": Incident.objects.get(pk=pk).merged_into_id}
            for pk in ids
        ],
        "claims": sorted(
            (claim.pk, claim.incident_id, claim.merge_conflict, claim.updated_at, claim.people_count)
            for claim in Claim.objects.filter(incident__in=ids)
        ),
        "places": sorted(IncidentPlace.objects.filter(incident__in=ids).values_list("pk", "incident", "place")),
        "victim_groups": sorted(VictimGroup.objects.filter(incident__in=ids).values_list("pk", "incident", "count")),
        "involvements": sorted(
            Involvement.objects.filter(incident__in=ids).values_list("pk", "incident", "organization", "role")
        ),
        "responses": sorted(links.values_list("response", "incident")),
        "pairs": sorted(
            DuplicatePair.objects.filter(incident_a__in=ids).values_list("pk", "decision", "decided_by", "note")
        ),
    }


def without_bookkeeping(state: dict) -> dict:
    return {
        **state,
        "incidents": [
            {key: value for key, value in incident.items() if key not in ("version", "updated_by")}
            for incident in state["incidents"]
        ],
    }


def test_a_merge_moves_everything_hidden_rows_too_and_the_undo_restores_both_exactly(world, reviewer):
    survivor, merged = world["survivor"], world["merged"]
    before = snapshot(survivor, merged)
    client = client_for(reviewer)

    answer = client.post(merge_url(world["pair"]), {"note": "same event"}, format="json")

    assert answer.status_code == 201, answer.content
    assert answer.json()["survivor"] == survivor.public_id and answer.json()["merged"] == merged.public_id
    # Everything moved, the claims this reviewer may not see too (else they would be lost to every view).
    assert set(Claim.objects.filter(incident=survivor).values_list("pk", flat=True)) >= {
        world["conflicting"].pk,
        *(claim.pk for claim in world["hidden"]),
    }
    assert not Claim.objects.filter(incident=merged).exists()
    assert set(survivor.places.values_list("name", flat=True)) == {"Tumen", "Yanji"}
    assert set(survivor.involvements.values_list("organization__name", "role")) == {
        ("Ministry", "perpetrator"),
        ("Border police", "facilitator"),
    }
    assert survivor.victim_groups.get().description == "mostly women"
    assert set(world["response"].incidents.all()) == {survivor, merged}
    merged.refresh_from_db()
    assert merged.merged_into == survivor
    # ...and nothing hidden reaches the reviewer who merged: neither the answer nor the survivor's page.
    detail = client.get(incident_url(survivor)).json()
    for text in (answer.content.decode(), str(detail)):
        assert "Secret NGO note" not in text and "Informant X" not in text and "told us" not in text
    assert {claim["source_title"] for claim in detail["claims"]} == {"Daily"}

    undone = client.post(unmerge_url(merged), {"note": "not the same after all"}, format="json")

    assert undone.status_code == 200, undone.content
    assert undone.json()["undone_at"] is not None
    assert without_bookkeeping(snapshot(survivor, merged)) == without_bookkeeping(before)
    assert client.get(incident_url(merged)).status_code == 200


@pytest.mark.parametrize("before", [DuplicateDecision.PENDING, DuplicateDecision.UNSURE, DuplicateDecision.SAME])
def test_the_undo_gives_the_pair_back_the_decision_it_had_before_the_merge(world, reviewer, before):
    pair, colleague = world["pair"], make_user(roles.ANALYST)
    if before != DuplicateDecision.PENDING:
        decided_at = timezone.now() - timedelta(days=3)
        DuplicatePair.objects.filter(pk=pair.pk).update(
            decision=before, decided_by=colleague, decided_at=decided_at, note="two outlets, one event?"
        )
    client = client_for(reviewer)
    assert client.post(merge_url(pair), {"note": "same event"}, format="json").status_code == 201

    assert client.post(unmerge_url(world["merged"]), format="json").status_code == 200

    pair.refresh_from_db()
    if before == DuplicateDecision.UNSURE:
        # As the colleague left it, not a fresh pending pair for the queue's next reviewer.
        assert (pair.decision, pair.decided_by, pair.decided_at) == (before, colleague, decided_at)
    else:
        # "Same incident" was what the merge carried out: undone, the pair is to be reviewed again.
        assert (pair.decision, pair.decided_by, pair.decided_at) == (DuplicateDecision.PENDING, None, None)
    assert pair.note == ("" if before == DuplicateDecision.PENDING else "two outlets, one event?")


def test_two_claims_of_one_source_are_both_kept_and_the_moved_one_is_marked(world, reviewer):
    survivor = world["survivor"]

    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")

    daily_claims = Claim.objects.filter(incident=survivor, source__title="Daily").order_by("id")
    assert [(claim.people_count, claim.merge_conflict) for claim in daily_claims] == [(80, False), (100, True)]
    shown = client_for(reviewer).get(incident_url(survivor))
    assert sorted((claim["people_count"], claim["merge_conflict"]) for claim in shown.json()["claims"]) == [
        (80, False),
        (100, True),
    ]


def test_a_writer_sends_back_both_claims_unchanged_then_clears_the_mark_once_resolved(world, reviewer):
    survivor = world["survivor"]
    client = client_for(make_user(roles.REVIEWER, confidential=True))
    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")
    shown = client.get(incident_url(survivor)).json()
    claims = [
        {key: claim[key] for key in ("id", "source", "people_count", "merge_conflict")} for claim in shown["claims"]
    ]

    sent_back = client.patch(incident_url(survivor), {"claims": claims, "version": shown["version"]}, format="json")
    assert sent_back.status_code == 200, sent_back.content

    marked = next(claim for claim in claims if claim["merge_conflict"])
    marked_again = [dict(claim, merge_conflict=True) for claim in claims]
    refused = client.patch(
        incident_url(survivor), {"claims": marked_again, "version": sent_back.json()["version"]}, format="json"
    )
    assert refused.status_code == 400
    assert any(key.endswith(".merge_conflict") for key in refused.json())
    resolved = [dict(marked, merge_conflict=False)] + [claim for claim in claims if claim["source"] != marked["source"]]
    cleared = client.patch(
        incident_url(survivor), {"claims": resolved, "version": sent_back.json()["version"]}, format="json"
    )
    assert cleared.status_code == 200, cleared.content
    assert not Claim.objects.filter(incident=survivor, merge_conflict=True).exists()


def test_dates_and_counts_are_proposed_for_a_reviewer_never_changed(world, reviewer):
    survivor = world["survivor"]

    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")

    survivor.refresh_from_db()
    assert (survivor.people_count, survivor.people_count_min, survivor.people_count_max) == (80, None, None)
    revision = IncidentRevision.objects.get(incident=survivor, state="pending")
    # Exactly 80, and 90-120 of the same event: a range, which no exact count has.
    assert revision.changes["data"] == {"people_count_max": 120, "count_qualifier": "about"}
    assert IncidentMerge.objects.get().revision == revision


def test_the_merged_address_answers_301_to_the_survivor_with_merged_into(world, reviewer, client):
    survivor, merged = world["survivor"], world["merged"]
    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")

    answer = client_for().get(incident_url(merged))

    assert answer.status_code == 301
    assert answer["Location"].endswith(incident_url(survivor))
    assert answer.json() == {
        "detail": f"{merged.public_id} was merged into {survivor.public_id}.",
        "merged_into": survivor.public_id,
    }
    page = client.get(f"/incidents/{merged.public_id}/")
    assert page.status_code == 301 and page["Location"] == f"/incidents/{survivor.public_id}/"
    # The page's CSV row too (it answered 404 where the page led on).
    row = client.get(f"/incidents/{merged.public_id}.csv")
    assert row.status_code == 301 and row["Location"] == f"/incidents/{survivor.public_id}.csv"
    # The page's "CSV for Excel" link, its byte order mark kept on the way (it was lost: Excel
    # then read the survivor's Korean in the Windows code page).
    for_excel = client.get(f"/incidents/{merged.public_id}.csv", {"bom": "1"}, follow=True)
    assert for_excel.redirect_chain == [(f"/incidents/{survivor.public_id}.csv?bom=1", 301)]
    assert b"".join(for_excel.streaming_content).startswith(b"\xef\xbb\xbf")


def test_readers_who_may_not_see_the_survivor_get_404(world, reviewer, client):
    survivor, merged = world["survivor"], world["merged"]
    Incident.objects.filter(pk=survivor.pk).update(review_state="draft")
    client_for(reviewer).post(merge_url(world["pair"]), {"survivor": survivor.public_id}, format="json")

    assert client_for().get(incident_url(merged)).status_code == 404
    assert client.get(f"/incidents/{merged.public_id}/").status_code == 404
    assert client.get(f"/incidents/{merged.public_id}.csv").status_code == 404
    assert client_for(make_user(roles.VIEWER)).get(incident_url(merged)).status_code == 301


def test_lists_statistics_search_and_exports_leave_the_merged_incident_out(world, reviewer, client):
    survivor, merged = world["survivor"], world["merged"]
    anonymous = client_for()
    assert public_ids(anonymous.get(f"{API}/incidents/")) == {survivor.public_id, merged.public_id}

    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")

    assert public_ids(anonymous.get(f"{API}/incidents/")) == {survivor.public_id}
    assert public_ids(anonymous.get(f"{API}/incidents/?q=Yanji")) == {survivor.public_id}
    assert anonymous.get(f"{API}/incidents/stats/?group_by=year").json()["total"]["incidents"] == 1
    # The kept totals (read when the filters allow) and the incidents themselves agree.
    assert anonymous.get(f"{API}/incidents/stats/?group_by=year&q=Tumen").json()["total"]["incidents"] == 1
    rows = list(csv.DictReader(io.StringIO(b"".join(anonymous.get(f"{API}/incidents.csv").streaming_content).decode())))
    assert [row["public_id"] for row in rows] == [survivor.public_id]
    browse = client.get("/").content.decode()
    assert survivor.public_id in browse and merged.public_id not in browse


def test_an_incremental_sync_reports_the_merged_incident_with_merged_into(world, reviewer):
    survivor, merged = world["survivor"], world["merged"]
    since = "2000-01-01T00:00:00Z"
    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")
    anonymous = client_for()

    synced = {
        row["public_id"]: row["merged_into"]
        for row in results(anonymous.get(f"{API}/incidents/?updated_since={since}"))
    }
    exported = b"".join(anonymous.get(f"{API}/incidents.csv?updated_since={since}").streaming_content).decode()

    assert synced == {survivor.public_id: None, merged.public_id: survivor.public_id}
    rows = {row["public_id"]: row["merged_into"] for row in csv.DictReader(io.StringIO(exported))}
    assert rows == {survivor.public_id: "", merged.public_id: survivor.public_id}


def test_the_public_pages_leave_the_merged_incident_out_whatever_updated_since_says(world, reviewer, client):
    # `updated_since` is a filter of the pages too; a sync follows merges, a page shows each event once.
    survivor, merged = world["survivor"], world["merged"]
    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")
    since = {"updated_since": "2000-01-01T00:00:00Z"}

    browse = client.get("/", since)
    assert survivor.public_id in browse.content.decode() and merged.public_id not in browse.content.decode()
    assert browse.context["page"].total == 1
    assert client.get("/statistics/", since).context["table"]["total"]["incidents"] == 1
    exported = b"".join(client.get("/incidents.csv", since).streaming_content).decode()
    assert [row["public_id"] for row in csv.DictReader(io.StringIO(exported))] == [survivor.public_id]
    for download in ("/incidents.geojson", "/map/incidents.geojson"):
        assert [feature["id"] for feature in client.get(download, since).json()["features"]] == [survivor.public_id]


def test_an_incremental_sync_leaves_out_a_merge_into_an_incident_the_reader_may_not_see(world, reviewer):
    Incident.objects.filter(pk=world["survivor"].pk).update(review_state="draft")
    client_for(reviewer).post(merge_url(world["pair"]), {"survivor": world["survivor"].public_id}, format="json")

    assert public_ids(client_for().get(f"{API}/incidents/?updated_since=2000-01-01T00:00:00Z")) == set()


@pytest.mark.parametrize("role", [roles.ANALYST, roles.VIEWER])
def test_only_a_reviewer_merges_or_undoes_and_a_refusal_changes_nothing(world, reviewer, role):
    before = snapshot(world["survivor"], world["merged"])

    assert client_for(make_user(role)).post(merge_url(world["pair"]), {}, format="json").status_code == 403
    assert client_for().post(merge_url(world["pair"]), {}, format="json").status_code in (401, 403)
    assert snapshot(world["survivor"], world["merged"]) == before

    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")
    after_merge = snapshot(world["survivor"], world["merged"])
    assert client_for(make_user(role)).post(unmerge_url(world["merged"]), {}, format="json").status_code == 403
    assert snapshot(world["survivor"], world["merged"]) == after_merge


def test_a_pair_with_an_incident_the_reviewer_may_not_see_answers_404(world):
    Incident.objects.filter(pk=world["merged"].pk).update(confidential=True)
    Incident.objects.filter(pk=world["survivor"].pk).update(confidential=True)

    answer = client_for(make_user(roles.REVIEWER)).post(merge_url(world["pair"]), {}, format="json")

    assert answer.status_code == 404
    assert not IncidentMerge.objects.exists()


def test_a_confidential_incident_merges_only_with_a_confidential_one(world):
    Incident.objects.filter(pk=world["merged"].pk).update(confidential=True)

    answer = client_for(make_user(roles.REVIEWER, confidential=True)).post(merge_url(world["pair"]), {}, format="json")

    assert answer.status_code == 409
    assert "is confidential" in answer.json()["detail"]
    assert not IncidentMerge.objects.exists()


def test_a_second_merge_a_stale_merge_and_a_second_undo_are_refused_with_409(world, reviewer):
    client = client_for(reviewer)
    read_version = world["survivor"].version
    world["survivor"].description = "Changed since the Reviewer read it"
    world["survivor"].save()
    stale = client.post(merge_url(world["pair"]), {"survivor_version": read_version}, format="json")
    assert stale.status_code == 409 and "changed since" in stale.json()["detail"]
    assert not IncidentMerge.objects.exists()

    assert client.post(merge_url(world["pair"]), {}, format="json").status_code == 201
    # Another Reviewer's merge of the pair, merged already, is refused.
    again = client_for(make_user(roles.REVIEWER)).post(merge_url(world["pair"]), {}, format="json")
    assert again.status_code == 409 and "already merged" in again.json()["detail"]

    assert client.post(unmerge_url(world["merged"]), {}, format="json").status_code == 200
    # The incident is no longer merged: there is nothing to undo.
    assert client.post(unmerge_url(world["merged"]), {}, format="json").status_code == 404


def test_a_pair_whose_incident_was_merged_into_one_the_reviewer_may_not_see_answers_as_missing(world, reviewer):
    merged = world["merged"]
    later = make_incident(title="Reported a third time")
    incident_merge(
        user=reviewer,
        pair=DuplicatePair.objects.create(incident_a=merged, incident_b=later, score=0.9),
        survivor=later.public_id,
    )
    # The survivor made confidential since (with the incident merged into it, which stays as it was).
    Incident.objects.filter(pk=later.pk).update(confidential=True)

    # To this Reviewer the merged incident left their sight as a deleted one does: its pairs are
    # answered as pairs that do not exist, not with why it left (merged into a confidential one).
    refused = client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")
    missing = client_for(reviewer).post(f"{API}/duplicates/999999/merge/", {}, format="json")
    assert refused.status_code == missing.status_code == 404
    assert later.public_id not in refused.content.decode() and "merged" not in refused.content.decode()
    with_access = make_user(roles.REVIEWER, confidential=True)
    refused = client_for(with_access).post(merge_url(world["pair"]), {}, format="json")
    assert f"{merged.public_id} was already merged into {later.public_id}" in refused.json()["detail"]


def test_a_survivor_outside_the_pair_is_a_400_naming_survivor(world, reviewer):
    answer = client_for(reviewer).post(merge_url(world["pair"]), {"survivor": "INC-999999"}, format="json")

    assert answer.status_code == 400 and "survivor" in answer.json()


def test_the_reviewer_chooses_the_survivor(world, reviewer):
    answer = client_for(reviewer).post(merge_url(world["pair"]), {"survivor": world["merged"].public_id}, format="json")

    assert answer.json()["survivor"] == world["merged"].public_id
    assert Incident.objects.get(pk=world["survivor"].pk).merged_into_id == world["merged"].pk


def test_an_undo_waits_for_the_undo_of_a_later_merge_of_the_survivor(world, reviewer):
    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")
    # The counts it proposed decided first: a merge waits for the pending revisions of what it merges away.
    revision = IncidentMerge.objects.get().revision
    assert client_for(reviewer).post(f"{API}/revisions/{revision.pk}/reject/", {}, format="json").status_code == 200
    later = make_incident(title="A third report")
    pair = DuplicatePair.objects.create(incident_a=world["survivor"], incident_b=later, score=0.9)
    incident_merge(user=reviewer, pair=pair, survivor=later.public_id)

    refused = client_for(reviewer).post(unmerge_url(world["merged"]), {}, format="json")

    assert refused.status_code == 409 and "undo that merge first" in refused.json()["detail"]


def test_the_merge_and_each_moved_row_are_in_the_history_with_who_did_it(world, reviewer):
    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")
    merge = IncidentMerge.objects.get()

    events = client_for(reviewer).get(incident_url(world["survivor"], "history/?page_size=200")).json()["results"]

    assert merge.merged_by == reviewer
    moved = [event for event in events if event["record"] == "incidents.Claim" and event["action"] == "update"]
    assert moved and {event["user"] for event in moved} == {reviewer.username}
    assert IncidentMerge.pgh_event_model.objects.filter(pgh_obj=merge).exists()
    # The merge's own events are in the survivor's history, without its record of what moved,
    # which lists the hidden claims too; and the hidden claims' own events are left out.
    merge_events = [event for event in events if event["record"] == "incidents.IncidentMerge"]
    assert merge_events and all("moved" not in event["data"] for event in merge_events)
    hidden_ids = {str(claim.pk) for claim in world["hidden"]}
    assert not [event for event in events if event["record"] == "incidents.Claim" and event["record_id"] in hidden_ids]


def test_the_list_runs_as_many_queries_with_merged_incidents(world, reviewer, django_assert_num_queries):
    client = client_for()
    # The page with each incident's JSON built by PostgreSQL: one query, merged incidents or not.
    with django_assert_num_queries(1):
        client.get(f"{API}/incidents/")
    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")
    with django_assert_num_queries(1):
        client.get(f"{API}/incidents/")
    with django_assert_num_queries(1):
        client.get(f"{API}/incidents/?updated_since=2000-01-01T00:00:00Z")


class TestAdmin:
    """The review queue's "Same incident" leads to a confirmation page, then the merge; the merge's
    page undoes it."""

    def test_the_confirmation_gives_each_moving_claims_figure_as_it_gives_it(self, client, world, reviewer):
        # A claim of "between 40 and 60" moved as its source's title alone: only a best estimate showed.
        make_claim(
            incident=world["merged"], source=make_source(title="UCA News"), people_count=None, people_count_min=40,
            people_count_max=60,
        )  # fmt: skip
        client.force_login(reviewer)

        page = html.unescape(
            client.get(reverse("admin:incidents_incidentmerge_confirm", args=[world["pair"].pk])).content.decode()
        )

        assert "UCA News: 40–60" in page and "Daily: 100" in page

    def test_the_confirmation_names_the_places_it_moves_by_their_paths(self, client, reviewer):
        # "Places: Tumen": the incident in China's Tumen, about to gain North Korea's, read as gaining its own.
        chinese_tumen, korean_tumen = two_tumens()
        pair = DuplicatePair.objects.create(
            incident_a=make_incident(places=[chinese_tumen]), incident_b=make_incident(places=[korean_tumen]), score=0.9
        )
        client.force_login(reviewer)

        page = html.unescape(
            client.get(reverse("admin:incidents_incidentmerge_confirm", args=[pair.pk])).content.decode()
        )

        moved = re.search(r'<tr><th scope="row">Places</th><td>(.*?)</td>', page).group(1)
        assert moved in ("China > Jilin > Tumen", "North Korea > North Hamgyong > Tumen")

    def test_the_pair_and_the_confirmation_word_each_figure_with_its_qualifier(self, client, reviewer):
        # "About 500" read "500", as if exact, beside an incident of exactly 500, and "at least 40"
        # read "40-?": a Reviewer decides from these pages whether the two are one incident.
        place = make_place(name="Tumen")
        exact = make_incident(places=[place], title="500 returned", people_count=500)
        about = make_incident(places=[place], title="About 500 returned", people_count=500, count_qualifier="about")
        make_claim(incident=about, source=make_source(title="RFA report"), people_count=500, count_qualifier="about")
        make_claim(
            incident=about, source=make_source(title="Daily NK"), people_count=None, people_count_min=40,
            count_qualifier="at_least",
        )  # fmt: skip
        pair = DuplicatePair.objects.create(incident_a=exact, incident_b=about, score=0.9)
        client.force_login(reviewer)

        comparison = html.unescape(
            client.get(reverse("admin:incidents_duplicatepair_change", args=[pair.pk])).content.decode()
        )
        confirmation = html.unescape(
            client.get(reverse("admin:incidents_incidentmerge_confirm", args=[pair.pk])).content.decode()
        )

        assert "<td>500</td>" in comparison and "<td>about 500</td>" in comparison
        for page in (comparison, confirmation):
            assert "RFA report: about 500" in page and "RFA report: 500" not in page
            assert "Daily NK: from 40" in page and "40–?" not in page

    def test_same_incident_offers_the_merge_shows_what_moves_and_merges_on_confirmation(self, client, world, reviewer):
        pair, survivor, merged = world["pair"], world["survivor"], world["merged"]
        client.force_login(reviewer)
        before = snapshot(survivor, merged)

        pair_page = reverse("admin:incidents_duplicatepair_change", args=[pair.pk])
        decided = client.post(pair_page, pair_decision(pair, "same"))
        assert decided.status_code == 302 and decided["Location"] == reverse(
            "admin:incidents_incidentmerge_confirm", args=[pair.pk]
        )
        page = client.get(decided["Location"]).content.decode()

        assert f"Merge {merged.public_id} into {survivor.public_id}?" in page
        assert "Yanji" in page and "Border police" in page and "mostly women" in page
        assert "About 100 people" in page  # the conflict, listed to compare
        assert "Secret NGO note" not in page and "Informant X" not in page
        # Proposed, not applied; by the labels the incident's page gives its fields, not their code names.
        assert '<th scope="row">People count max</th>' in page and "people_count_max" not in page

        confirmed = client.post(
            decided["Location"],
            {"survivor": survivor.public_id, "survivor_version": survivor.version, "merged_version": merged.version},
        )
        merge = IncidentMerge.objects.get()
        assert confirmed["Location"] == reverse("admin:incidents_incidentmerge_change", args=[merge.pk])
        assert Incident.objects.get(pk=merged.pk).merged_into == survivor
        merge_page = client.get(confirmed["Location"]).content.decode()
        assert "Undo merge" in merge_page and "Secret NGO note" not in merge_page
        # One of each moved: counted in words a person reads ("1 places" before).
        for moved in ("1 place", "1 victim group", "1 organization involved", "1 response"):
            assert f"<li>{moved}</li>" in merge_page

        undone = client.post(reverse("admin:incidents_incidentmerge_undo", args=[merge.pk]))
        assert undone.status_code == 302
        assert without_bookkeeping(snapshot(survivor, merged)) == without_bookkeeping(before)

    def test_the_note_given_with_same_incident_is_the_merges_note_unless_changed(self, client, world, reviewer):
        # The reviewer said why on the pair's page, then met an empty note on the merge's, which
        # the history keeps: the why was typed twice or lost.
        pair, survivor, merged = world["pair"], world["survivor"], world["merged"]
        client.force_login(reviewer)
        decided = client.post(
            reverse("admin:incidents_duplicatepair_change", args=[pair.pk]),
            pair_decision(pair, "same", "One HRW report, two outlets"),
        )
        page = client.get(decided["Location"]).content.decode()
        assert '<textarea name="note" id="id_note" rows="2" cols="80">One HRW report, two outlets</textarea>' in page
        client.post(
            decided["Location"],
            {
                "survivor": survivor.public_id,
                "survivor_version": survivor.version,
                "merged_version": merged.version,
                "note": "One HRW report, two outlets",
            },
        )
        assert IncidentMerge.objects.get().note == "One HRW report, two outlets"

    def test_the_reviewer_may_choose_the_other_survivor_on_the_page(self, client, world, reviewer):
        client.force_login(reviewer)
        url = reverse("admin:incidents_incidentmerge_confirm", args=[world["pair"].pk])

        page = client.get(url, {"survivor": world["merged"].public_id}).content.decode()

        assert f"Merge {world['survivor'].public_id} into {world['merged'].public_id}?" in page

    def test_a_change_after_the_page_was_read_refuses_the_merge(self, client, world, reviewer):
        client.force_login(reviewer)
        url = reverse("admin:incidents_incidentmerge_confirm", args=[world["pair"].pk])

        read_version = world["survivor"].version
        Incident.objects.filter(pk=world["survivor"].pk).update(version=read_version + 1, description="Changed")

        answer = client.post(url, {"survivor_version": read_version}, follow=True)

        assert "Nothing was merged." in answer.content.decode() and "changed since" in answer.content.decode()
        assert not IncidentMerge.objects.exists()


def test_a_version_the_incidents_never_had_is_named_as_bad_input_not_a_change_since(world, reviewer):
    # 10^30 was never a version: not a race a reload would cure, but a wrong value, named.
    client = client_for(reviewer)
    for field in ("survivor_version", "merged_version"):
        answer = client.post(merge_url(world["pair"]), {field: 10**30}, format="json")
        assert answer.status_code == 400, answer.content
        assert list(answer.json()) == [field] and "never had version" in answer.json()[field][0]
    assert not IncidentMerge.objects.exists()

    def test_an_analyst_may_not_open_the_merge_page(self, client, world):
        client.force_login(make_user(roles.ANALYST))

        answer = client.get(reverse("admin:incidents_incidentmerge_confirm", args=[world["pair"].pk]))

        assert answer.status_code == 403


def test_a_merge_answers_alike_whether_or_not_records_hidden_from_the_reviewer_exist(client, world, reviewer):
    """The differential rule (tests/test_rulebook.py): the confirmation page and the API's answer
    are the same with the hidden claims and without them."""
    client.force_login(reviewer)
    confirm = reverse("admin:incidents_incidentmerge_confirm", args=[world["pair"].pk])

    def answers() -> tuple[str, dict]:
        page = client.get(confirm).content.decode()
        page = re.sub(r'name="(csrfmiddlewaretoken|survivor_version|merged_version)" value="[^"]*"', "", page)
        merged = client_for(reviewer).post(merge_url(world["pair"]), {}, format="json").json()
        return page, {key: value for key, value in merged.items() if key not in ("id", "merged_at", "revision")}

    with_hidden = answers()
    client_for(reviewer).post(unmerge_url(world["merged"]), {}, format="json")
    Claim.objects.filter(pk__in=[claim.pk for claim in world["hidden"]]).delete()

    assert answers() == with_hidden


def test_the_admin_page_of_a_merged_incident_leads_to_the_survivor(client, world, reviewer):
    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")
    client.force_login(make_user(roles.VIEWER))

    answer = client.get(reverse("admin:incidents_incident_change", args=[world["merged"].pk]))

    assert answer["Location"] == reverse("admin:incidents_incident_change", args=[world["survivor"].pk])
    # Told where the merge is, to undo it: the survivor's page had no way back to it.
    merge = IncidentMerge.objects.get()
    merge_page = reverse("admin:incidents_incidentmerge_change", args=[merge.pk])
    assert messages_of(answer) == [
        f"{world['merged'].public_id} was merged into {world['survivor'].public_id} "
        f'(<a href="{merge_page}">the merge</a>, where it can be undone).'
    ]


def test_a_merges_page_offers_its_undo_not_a_close_button_above_it(client, world, reviewer):
    # A "Close" button stood between the merge's facts and the Undo merge form: two ways out, the
    # first leaving the page with nothing done. The revision's page leaves it out the same way.
    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")
    merge = IncidentMerge.objects.get()
    merge_page = reverse("admin:incidents_incidentmerge_change", args=[merge.pk])
    client.force_login(reviewer)

    page = client.get(merge_page).content.decode()

    assert 'class="closelink"' not in page and 'value="Undo merge"' in page
    # Read by who may not undo it, or once undone, it is a page to close.
    client.force_login(make_user(roles.VIEWER))
    assert 'class="closelink"' in client.get(merge_page).content.decode()
    client.force_login(reviewer)
    client.post(reverse("admin:incidents_incidentmerge_undo", args=[merge.pk]))
    page = client.get(merge_page).content.decode()
    assert 'class="closelink"' in page and 'value="Undo merge"' not in page


def test_an_admin_address_or_version_in_other_digits_is_an_unknown_one_not_a_server_error(client, world, reviewer):
    # "²" is a digit to str.isdigit() but not to int(), nor is a number of 5,000 digits.
    client.force_login(reviewer)
    for page, object_id in itertools.product(("change", "history"), ("%C2%B2", "9" * 5000)):
        answer = client.get(f"/admin/incidents/incident/{object_id}/{page}/")
        assert answer.status_code == 302 and answer["Location"] == reverse("admin:index")
    url = reverse("admin:incidents_incidentmerge_confirm", args=[world["pair"].pk])

    answer = client.post(url, {"survivor_version": "²"}, follow=True)

    assert "Nothing was merged. Survivor version: This is no version the page showed" in answer.content.decode()
    assert not IncidentMerge.objects.exists()


def test_a_pair_id_in_other_digits_answers_404(reviewer):
    answer = client_for(reviewer).post(f"{API}/duplicates/%C2%B2/merge/", {}, format="json")

    assert answer.status_code == 404


@pytest.mark.parametrize(
    ("path", "parameter"), [("duplicates", "decision"), ("revisions", "state")], ids=["pairs", "revisions"]
)
@pytest.mark.parametrize("value", ["same-ish", "pending\x00"], ids=["unknown", "nul"])
def test_a_staff_list_filtered_by_no_such_decision_or_state_answers_400_naming_it(reviewer, path, parameter, value):
    # It was an empty list, taken for "none pending"; with a NUL, which PostgreSQL's text cannot hold, a 500.
    answer = client_for(reviewer).get(f"{API}/{path}/", {parameter: value})
    assert answer.status_code == 400 and parameter in answer.json()
    assert client_for(reviewer).get(f"{API}/{path}/", {parameter: "pending"}).status_code == 200


def test_an_unmerge_of_an_address_that_is_no_public_id_answers_404(reviewer):
    # A NUL, which PostgreSQL's text cannot hold, reached the lookup: a 500.
    answer = client_for(reviewer).post(f"{API}/incidents/INC-%00/unmerge/", {}, format="json")

    assert answer.status_code == 404


@pytest.mark.parametrize(
    ("survivor_figures", "merged_figures", "proposed"),
    [
        # Two figures: the range spans them (a bound equal to the best estimate is left unset).
        ((80, None, None), (100, 90, 120), {"people_count_max": 120}),
        # The same figure twice proposes nothing.
        ((80, None, None), (80, None, None), {}),
        # Only the other has a figure: its own, all of it.
        ((None, None, None), (None, 40, 60), {"people_count_min": 40, "people_count_max": 60}),
    ],
)
def test_the_proposed_counts_span_both_incidents(reviewer, survivor_figures, merged_figures, proposed):
    fields = ("people_count", "people_count_min", "people_count_max")
    survivor = make_incident(**dict(zip(fields, survivor_figures, strict=True)))
    merged = make_incident(**dict(zip(fields, merged_figures, strict=True)))
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)

    merge = incident_merge(user=reviewer, pair=pair)

    changes = merge.revision.changes["data"] if merge.revision else {}
    assert {name: value for name, value in changes.items() if name in fields} == proposed


@pytest.mark.parametrize(
    ("survivor_count", "merged_count", "proposed_qualifier"),
    [
        # "Exactly 40" and "about 50" of one event: 40 with a range up to 50, so about 40.
        ((40, "exact"), (50, "about"), "about"),
        ((40, "exact"), (50, "exact"), "about"),
        # The same exact figure twice stays exact (and nothing is proposed).
        ((40, "exact"), (40, "exact"), None),
        # Only the other has a figure, an exact one: exact, as it said.
        ((None, "unknown"), (40, "exact"), "exact"),
    ],
)
def test_an_exact_count_meeting_another_figure_is_proposed_as_about_and_accepted(
    reviewer, survivor_count, merged_count, proposed_qualifier
):
    survivor = make_incident(people_count=survivor_count[0], count_qualifier=survivor_count[1])
    merged = make_incident(people_count=merged_count[0], count_qualifier=merged_count[1])
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)

    merge = incident_merge(user=reviewer, pair=pair, survivor=survivor.public_id)

    changes = merge.revision.changes["data"] if merge.revision else {}
    assert changes.get("count_qualifier") == proposed_qualifier
    if merge.revision:
        answer = client_for(reviewer).post(f"{API}/revisions/{merge.revision.pk}/accept/", {}, format="json")
        assert answer.status_code == 200, answer.content
        survivor.refresh_from_db()
        assert survivor.count_qualifier == (proposed_qualifier or survivor_count[1])


@pytest.mark.parametrize(
    ("survivor_count", "merged_count", "proposed"),
    [
        # A bound alone spans the other's figure on both sides, as the statistics read it (the least
        # it says): it proposed nothing, and the other's figure was gone without a word.
        ({"people_count": 10}, {"people_count_min": 40, "count_qualifier": "at_least"}, (10, None, 40, "about")),
        ({"people_count": 40}, {"people_count_max": 30, "count_qualifier": "at_most"}, (40, 30, None, "about")),
        # Sources disagreeing in kind: "at least 40" and "at most 30" proposed 40 to 30, and the
        # merge was refused (400) over a minimum above a maximum no one had given.
        (
            {"people_count": None, "people_count_min": 40, "count_qualifier": "at_least"},
            {"people_count_max": 30, "count_qualifier": "at_most"},
            (None, 30, 40, "about"),
        ),
        (
            {"people_count": None, "people_count_min": 40, "count_qualifier": "at_least"},
            {"people_count_min": 60, "count_qualifier": "at_least"},
            (None, 40, 60, "at_least"),
        ),
        # A count only one of them gives passes as it is: it was turned into 40 to 40.
        (
            {"people_count": None, "count_qualifier": "unknown"},
            {"people_count_min": 40, "count_qualifier": "at_least"},
            (None, 40, None, "at_least"),
        ),
    ],
    ids=[
        "exactly-10-and-at-least-40",
        "exactly-40-and-at-most-30",
        "at-least-40-and-at-most-30",
        "at-least-twice",
        "unknown-and-at-least-40",
    ],
)
def test_a_count_given_by_one_bound_is_spanned_by_the_proposal_and_accepted(
    reviewer, survivor_count, merged_count, proposed
):
    survivor = make_incident(**{"count_qualifier": "exact", **survivor_count})
    merged = make_incident(people_count=None, **merged_count)
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)
    api = client_for(reviewer)

    answer = api.post(merge_url(pair), {"survivor": survivor.public_id}, format="json")

    assert answer.status_code == 201, answer.content
    assert api.post(f"{API}/revisions/{answer.json()['revision']}/accept/", {}, format="json").status_code == 200
    survivor.refresh_from_db()
    figures = ("people_count", "people_count_min", "people_count_max", "count_qualifier")
    assert tuple(getattr(survivor, name) for name in figures) == proposed


def test_the_export_command_reports_merged_incidents_in_an_incremental_export(world, reviewer, tmp_path):
    survivor, merged = world["survivor"], world["merged"]
    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")

    def exported(*options) -> dict[str, str]:
        out = tmp_path / "incidents.csv"
        call_command("export_incidents", *options, "-o", str(out))
        rows = csv.DictReader(io.StringIO(out.read_text(encoding="utf-8")))
        return {row["public_id"]: row["merged_into"] for row in rows}

    assert exported() == {survivor.public_id: ""}
    assert exported("--updated-since", "2000-01-01T00:00:00Z") == {
        survivor.public_id: "",
        merged.public_id: survivor.public_id,
    }


# An attacker's pass: what an edit, a later merge or bad input does to a merge and its undo.


def survivor_as_read(client, survivor) -> dict:
    return client.get(incident_url(survivor)).json()


def test_an_undo_that_would_put_back_an_involvement_the_merged_incident_holds_refuses_naming_it(world, reviewer):
    # After the merge a Reviewer made the moved "Border police, facilitator" the survivor's "Ministry,
    # perpetrator" (dropping its own): the merged incident still holds "Ministry, perpetrator", so
    # moving the row back broke the one-role-per-organization rule, a 500.
    survivor, merged = world["survivor"], world["merged"]
    client = client_for(reviewer)
    client.post(merge_url(world["pair"]), {}, format="json")
    shown = survivor_as_read(client, survivor)
    moved = next(row for row in shown["involvements"] if row["role"] == "facilitator")
    ministry = next(row for row in shown["involvements"] if row["role"] == "perpetrator")["organization"]
    edited = client.patch(
        incident_url(survivor),
        {
            "involvements": [{"id": moved["id"], "organization": ministry, "role": "perpetrator"}],
            "version": shown["version"],
        },
        format="json",
    )
    assert edited.status_code == 200, edited.content
    before = snapshot(survivor, merged)

    refused = client.post(unmerge_url(merged), {}, format="json")

    assert refused.status_code == 409, refused.content
    assert "Ministry" in refused.json()["detail"] and "perpetrator" in refused.json()["detail"]
    assert snapshot(survivor, merged) == before
    assert IncidentMerge.objects.get().undone_at is None


def test_an_undo_that_would_put_back_two_claims_of_one_source_keeps_both_and_marks_one(world, reviewer):
    # After the merge a writer resolved the conflict by removing the survivor's own claim of the
    # daily and made another moved claim the daily's too: both went back unmarked, a 500.
    survivor, merged = world["survivor"], world["merged"]
    weekly = make_claim(incident=merged, source=make_source(title="Weekly"), excerpt="a hundred")
    client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")
    writer = client_for(make_user(roles.REVIEWER, confidential=True))
    shown = survivor_as_read(writer, survivor)
    daily = world["conflicting"].source_id
    claims = [
        {key: claim[key] for key in ("id", "source", "merge_conflict")}
        | ({"source": daily} if claim["id"] == weekly.pk else {})
        for claim in shown["claims"]
        if claim["source"] != daily or claim["merge_conflict"]
    ]
    edited = writer.patch(incident_url(survivor), {"claims": claims, "version": shown["version"]}, format="json")
    assert edited.status_code == 200, edited.content

    undone = client_for(reviewer).post(unmerge_url(merged), {}, format="json")

    assert undone.status_code == 200, undone.content
    back = Claim.objects.filter(incident=merged, source_id=daily).order_by("id")
    assert [claim.pk for claim in back] == [world["conflicting"].pk, weekly.pk]
    assert sorted(claim.merge_conflict for claim in back) == [False, True]


def test_a_nul_in_the_admin_merge_or_undo_note_is_an_error_naming_the_note(client, world, reviewer):
    # PostgreSQL's text cannot hold a NUL: it was a 500.
    client.force_login(reviewer)
    before = snapshot(world["survivor"], world["merged"])
    confirm = reverse("admin:incidents_incidentmerge_confirm", args=[world["pair"].pk])

    answer = client.post(confirm, {"note": "same\x00event"}, follow=True)

    assert answer.status_code == 200
    assert "Nothing was merged. Note:" in answer.content.decode()
    assert not IncidentMerge.objects.exists() and snapshot(world["survivor"], world["merged"]) == before

    merge = incident_merge(user=reviewer, pair=world["pair"])
    after_merge = snapshot(world["survivor"], world["merged"])
    answer = client.post(
        reverse("admin:incidents_incidentmerge_undo", args=[merge.pk]), {"note": "no\x00"}, follow=True
    )

    assert answer.status_code == 200
    assert "Nothing was changed. Note:" in answer.content.decode()
    assert snapshot(world["survivor"], world["merged"]) == after_merge
    api = client_for(reviewer).post(unmerge_url(world["merged"]), {"note": "no\x00"}, format="json")
    assert api.status_code == 400 and "note" in api.json()


def test_a_nul_in_the_note_deciding_a_revision_is_an_error_naming_the_note(client, world, reviewer):
    # The merge's proposed revision is decided on the admin's revision page, with a note: a 500 too.
    merge = incident_merge(user=reviewer, pair=world["pair"])
    client.force_login(reviewer)
    decide = reverse("admin:incidents_incidentrevision_decide", args=[merge.revision.pk])

    for button in ("accept", "reject"):
        answer = client.post(decide, {button: "1", "note": "checked\x00"}, follow=True)

        assert answer.status_code == 200
        assert "Nothing was changed. Note:" in answer.content.decode()
        assert IncidentRevision.objects.get(pk=merge.revision.pk).state == "pending"


def test_the_survivors_history_shows_a_merge_only_to_readers_who_may_see_the_merged_incident(world):
    # Two confidential reports merged with a note; the survivor made public since. A Reviewer
    # without Confidential access reads the survivor's history: the note named the hidden incident.
    Incident.objects.filter(pk__in=[world["survivor"].pk, world["merged"].pk]).update(confidential=True)
    with_access = make_user(roles.REVIEWER, confidential=True)
    note = "the informant's second account of it"
    client_for(with_access).post(merge_url(world["pair"]), {"note": note}, format="json")
    Incident.objects.filter(pk=world["survivor"].pk).update(confidential=False)
    history = incident_url(world["survivor"], "history/?page_size=200")

    seen_without = client_for(make_user(roles.REVIEWER)).get(history)
    seen_with = client_for(with_access).get(history)

    assert seen_without.status_code == 200
    assert note not in seen_without.content.decode()
    assert not [event for event in seen_without.json()["results"] if event["record"] == "incidents.IncidentMerge"]
    assert note in seen_with.content.decode()


# Each write its own transaction, as each request is: a test transaction gives every event one time.
@pytest.mark.django_db(transaction=True)
def test_an_undo_recorded_while_the_survivor_was_confidential_stays_out_of_the_merged_incidents_history(
    client, world, reviewer
):
    # Undone, with a note, while the survivor was confidential; the survivor made public since. The
    # merged incident, public throughout, told every staff member the note on its history.
    survivor, merged = world["survivor"], world["merged"]
    assert client_for(reviewer).post(merge_url(world["pair"]), {}, format="json").status_code == 201
    insider = make_user(roles.REVIEWER, confidential=True)
    made(True, survivor, insider)
    undoing = client_for(insider).post(unmerge_url(merged), {"note": "K says they differ"}, format="json")
    assert undoing.status_code == 200, undoing.content
    made(False, survivor, insider)
    merge = IncidentMerge.objects.get(merged=merged)

    def told(reader) -> str:
        """The merged incident's history as `reader` reads it in the API and the admin, and the merge's."""
        answer = client_for(reader).get(incident_url(merged, "history/?page_size=200"))
        client.force_login(reader)
        pages = [
            client.get(reverse(f"admin:incidents_{name}_history", args=[record.pk]))
            for name, record in (("incident", merged), ("incidentmerge", merge))
        ]
        assert [answer.status_code, *(page.status_code for page in pages)] == [200, 200, 200]
        return answer.content.decode() + "".join(page.content.decode() for page in pages)

    assert "K says they differ" not in told(reviewer)
    assert "Incident merge (" in told(reviewer)  # the merge itself, recorded while both were public
    assert "K says they differ" in told(insider)


def test_a_merge_waits_for_the_merged_incidents_pending_revisions(client, world, reviewer):
    # An analyst's proposed edit of the incident merged away was left on an incident out of every
    # read (the review queue too): lost.
    merged = world["merged"]
    analyst = client_for(make_user(roles.ANALYST))
    proposed = analyst.patch(
        incident_url(merged), {"title": "Repatriation at Tumen", "version": merged.version}, format="json"
    )
    assert proposed.status_code == 202, proposed.content
    before = snapshot(world["survivor"], merged)

    refused = client_for(reviewer).post(merge_url(world["pair"]), {}, format="json")

    assert refused.status_code == 409 and "pending revision" in refused.json()["detail"]
    client.force_login(reviewer)
    confirm = reverse("admin:incidents_incidentmerge_confirm", args=[world["pair"].pk])
    answer = client.post(confirm, {}, follow=True)
    assert "Nothing was merged." in answer.content.decode() and "pending revision" in answer.content.decode()
    assert not IncidentMerge.objects.exists() and snapshot(world["survivor"], merged) == before


def test_a_revision_of_a_merged_incident_stays_in_the_queue_and_can_only_be_rejected(client, world, reviewer):
    # Proposed by someone with Confidential access, the revision is one this Reviewer may not see:
    # the merge goes ahead (refusing would tell of it), and Reviewers who may see it still find it.
    merged = world["merged"]
    proposer = client_for(make_user(roles.ANALYST, confidential=True))
    proposed = proposer.patch(
        incident_url(merged), {"title": "Repatriation at Tumen", "version": merged.version}, format="json"
    )
    assert proposed.status_code == 202, proposed.content
    revision_id = proposed.json()["id"]
    assert client_for(reviewer).post(merge_url(world["pair"]), {}, format="json").status_code == 201
    with_access = make_user(roles.REVIEWER, confidential=True)
    other_reviewer = client_for(with_access)
    client.force_login(with_access)
    page = client.get(reverse("admin:incidents_incidentrevision_change", args=[revision_id]))
    assert page.status_code == 200 and merged.public_id in page.content.decode()

    queue = other_reviewer.get(f"{API}/revisions/?state=pending")
    assert revision_id in [revision["id"] for revision in results(queue)]
    accepted = other_reviewer.post(f"{API}/revisions/{revision_id}/accept/", {}, format="json")
    assert accepted.status_code in (400, 409) and "merged" in str(accepted.json())
    assert Incident.objects.get(pk=merged.pk).title == "Repatriation at Tumen and Yanji"
    rejected = other_reviewer.post(f"{API}/revisions/{revision_id}/reject/", {}, format="json")
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"


def test_an_undo_waits_for_the_undo_of_a_later_merge_into_the_same_survivor(world, reviewer):
    # The third report shared Yanji with the survivor only through the first merge, so its link
    # stayed behind on it; undoing the first merge took Yanji from the survivor, and the third
    # report, merged, said it nowhere any more.
    survivor, merged = world["survivor"], world["merged"]
    client = client_for(reviewer)
    client.post(merge_url(world["pair"]), {}, format="json")
    third = make_incident(title="Sent back through Yanji", places=[world["yanji"]])
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=third, score=0.9)
    assert client.post(merge_url(pair), {"survivor": survivor.public_id}, format="json").status_code == 201
    before = snapshot(survivor, merged, third)

    refused = client.post(unmerge_url(merged), {}, format="json")

    assert refused.status_code == 409, refused.content
    assert f"{third.public_id} was merged into {survivor.public_id} since" in refused.json()["detail"]
    assert snapshot(survivor, merged, third) == before
    assert client.post(unmerge_url(third), {}, format="json").status_code == 200
    assert client.post(unmerge_url(merged), {}, format="json").status_code == 200
    assert set(survivor.places.values_list("name", flat=True)) == {"Tumen"}
    assert set(third.places.values_list("name", flat=True)) == {"Yanji"}


def made(confidential: bool, incident, by) -> None:
    """`incident` made confidential or public again through the API by `by`, a Reviewer with
    Confidential access."""
    incident.refresh_from_db()
    body = {"confidential": confidential, "version": incident.version}
    answer = client_for(by).patch(incident_url(incident), body, format="json")
    assert answer.status_code == 200, answer.content


def merged_while_confidential(world, reviewer):
    """`reviewer` merged the world's pair; a Reviewer with Confidential access (returned) then made
    the survivor confidential, merged an informant's confidential account of the event into it,
    and made it public again. The account's incident and its merge stay hidden from `reviewer`."""
    survivor = world["survivor"]
    assert client_for(reviewer).post(merge_url(world["pair"]), {}, format="json").status_code == 201
    insider = make_user(roles.REVIEWER, confidential=True)
    made(True, survivor, insider)
    account = make_incident(title="An informant's account", confidential=True)
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=account, score=0.9)
    merging = client_for(insider).post(merge_url(pair), {"survivor": survivor.public_id}, format="json")
    assert merging.status_code == 201, merging.content
    made(False, survivor, insider)
    return insider, account


HIDDEN_SINCE = "has changed since this merge in what only staff with Confidential access may see"


def test_an_undo_never_tells_of_a_later_merge_the_reviewer_may_not_see(world, reviewer):
    # "Another incident was merged into INC-000001 since; undo that merge first": a Reviewer
    # without Confidential access learned that a confidential account of the event exists, and was
    # asked to undo a merge they can neither see nor undo.
    survivor, merged = world["survivor"], world["merged"]
    insider, account = merged_while_confidential(world, reviewer)
    before = snapshot(survivor, merged, account)

    refused = client_for(reviewer).post(unmerge_url(merged), {}, format="json")

    assert refused.status_code == 409, refused.content
    detail = refused.json()["detail"]
    assert detail == (f"{survivor.public_id} {HIDDEN_SINCE}: a Reviewer with Confidential access must undo this merge.")
    assert account.public_id not in detail and "merged into" not in detail and "Another" not in detail
    assert snapshot(survivor, merged, account) == before
    # Whoever may see the account is told of it, as before, and undoes the merges in the reverse order.
    insiders = client_for(insider)
    told = insiders.post(unmerge_url(merged), {}, format="json")
    assert told.status_code == 409
    assert f"{account.public_id} was merged into {survivor.public_id} since" in told.json()["detail"]
    assert insiders.post(unmerge_url(account), {}, format="json").status_code == 200
    # Refused alike with the account's merge undone: the refusal never says whether anything was merged.
    again = client_for(reviewer).post(unmerge_url(merged), {}, format="json")
    assert (again.status_code, again.json()["detail"]) == (409, detail)
    assert insiders.post(unmerge_url(merged), {}, format="json").status_code == 200


def test_an_undo_is_refused_alike_after_the_survivor_was_confidential_for_a_while_with_nothing_merged(world, reviewer):
    # Were only a hidden merge refused, the refusal would tell of it: a survivor confidential for a
    # while (its history shows versions left out) is refused the same, merged into or not.
    survivor, merged = world["survivor"], world["merged"]
    assert client_for(reviewer).post(merge_url(world["pair"]), {}, format="json").status_code == 201
    insider = make_user(roles.REVIEWER, confidential=True)
    made(True, survivor, insider)
    made(False, survivor, insider)

    refused = client_for(reviewer).post(unmerge_url(merged), {}, format="json")

    assert refused.status_code == 409 and HIDDEN_SINCE in refused.json()["detail"]
    assert Incident.objects.get(pk=merged.pk).merged_into_id == survivor.pk
    # Confidential before the merge only: nothing hidden since, and the undo is theirs.
    other = make_incident(title="A second report")
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=other, score=0.9)
    client = client_for(reviewer)
    assert client.post(merge_url(pair), {"survivor": survivor.public_id}, format="json").status_code == 201
    assert client.post(unmerge_url(other), {}, format="json").status_code == 200


def test_an_undo_never_tells_that_the_survivor_joined_an_incident_made_confidential_since(world, reviewer):
    # "INC-000001 has since been merged into another incident": to this Reviewer the survivor had
    # left as a deleted one does, its address a 404, and no merge of it was theirs to undo.
    survivor, merged = world["survivor"], world["merged"]
    client = client_for(reviewer)
    assert client.post(merge_url(world["pair"]), {}, format="json").status_code == 201
    # The counts it proposed decided first: a merge waits for the pending revisions of what it merges away.
    revision = IncidentMerge.objects.get().revision
    assert client.post(f"{API}/revisions/{revision.pk}/reject/", {}, format="json").status_code == 200
    host = make_incident(title="The main report")
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=host, score=0.9)
    assert client.post(merge_url(pair), {"survivor": host.public_id}, format="json").status_code == 201
    made(True, host, make_user(roles.REVIEWER, confidential=True))

    refused = client.post(unmerge_url(merged), {}, format="json")

    assert refused.status_code == 409, refused.content
    assert HIDDEN_SINCE in refused.json()["detail"] and "merged into" not in refused.json()["detail"]
    with_access = client_for(make_user(roles.REVIEWER, confidential=True))
    told = with_access.post(unmerge_url(merged), {}, format="json").json()["detail"]
    assert f"{survivor.public_id} has since been merged into another incident" in told


def test_the_admin_refuses_an_undo_after_a_hidden_merge_as_the_api_does(client, world, reviewer):
    survivor, merged = world["survivor"], world["merged"]
    _, account = merged_while_confidential(world, reviewer)
    merge = IncidentMerge.objects.get(merged=merged)
    client.force_login(reviewer)

    refused = client.post(reverse("admin:incidents_incidentmerge_undo", args=[merge.pk]), follow=True)

    said = (
        f"Nothing was changed. {survivor.public_id} {HIDDEN_SINCE}: a Reviewer with Confidential access must "
        "undo this merge."
    )
    page = html.unescape(refused.content.decode())
    assert said in page
    assert account.public_id not in page and "Another incident" not in page
    assert IncidentMerge.objects.get(pk=merge.pk).undone_at is None


def merged_and_accepted(world, reviewer):
    """`reviewer`'s client, once it merged the world's pair and accepted the dates and counts the
    merge proposed."""
    client = client_for(reviewer)
    merge_id = client.post(merge_url(world["pair"]), {}, format="json").json()["id"]
    revision = IncidentMerge.objects.get(pk=merge_id).revision
    assert client.post(f"{API}/revisions/{revision.pk}/accept/", {}, format="json").status_code == 200
    return client


def test_an_undo_proposes_back_the_counts_a_merges_accepted_revision_changed(world, reviewer):
    survivor, merged = world["survivor"], world["merged"]
    client = merged_and_accepted(world, reviewer)
    assert Incident.objects.get(pk=survivor.pk).people_count_max == 120

    assert client.post(unmerge_url(merged), {}, format="json").status_code == 200

    # Never changed by the undo: proposed back, as the merge proposed them.
    assert Incident.objects.get(pk=survivor.pk).people_count_max == 120
    proposed_back = IncidentRevision.objects.get(incident=survivor, state="pending")
    assert proposed_back.changes["data"] == {"people_count_max": None, "count_qualifier": "exact"}
    assert client.post(f"{API}/revisions/{proposed_back.pk}/accept/", {}, format="json").status_code == 200
    assert Incident.objects.get(pk=survivor.pk).people_count_max is None


def test_an_undo_proposes_back_the_counts_of_just_before_the_merge_after_confidential_work_on_the_survivor():
    # The state before was read as the history's event of the revision's base version: the
    # version told to staff without Confidential access (the merge of two public incidents), which
    # the history does not keep. After four edits of a confidential claim, the survivor's own
    # version of that number was an older state: the undo proposed back "about 80, up to 200",
    # which a colleague had corrected to "exactly 80" (found by an attack review).
    keeper, reviewer = make_user(roles.REVIEWER, confidential=True), make_user(roles.REVIEWER)
    survivor = make_incident(title="Sent back at Tumen", people_count=80, people_count_max=200, count_qualifier="about")
    informant = make_claim(incident=survivor, source=make_source(title="Informant"), confidential=True)
    for excerpt in ("told us", "told us again", "told us a third time", "told us once more"):
        etag = client_for(keeper).get(incident_url(survivor))["ETag"]
        row = {"id": informant.pk, "source": informant.source_id, "excerpt": excerpt}
        edited = client_for(keeper).patch(incident_url(survivor), {"claims": [row]}, format="json", HTTP_IF_MATCH=etag)
        assert edited.status_code == 200, edited.content
    writer = client_for(reviewer)
    corrected = writer.patch(
        incident_url(survivor),
        {"people_count_max": None, "count_qualifier": "exact"},
        format="json",
        HTTP_IF_MATCH=writer.get(incident_url(survivor))["ETag"],
    )
    assert corrected.status_code == 200, corrected.content
    merged = make_incident(title="Repatriation at Tumen", people_count=100, people_count_min=90, people_count_max=120)
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)
    merge = incident_merge(user=reviewer, pair=pair, survivor=survivor.public_id)
    assert writer.post(f"{API}/revisions/{merge.revision.pk}/accept/", {}, format="json").status_code == 200

    assert writer.post(unmerge_url(merged), {}, format="json").status_code == 200

    proposed_back = IncidentRevision.objects.get(incident=survivor, state="pending")
    assert proposed_back.changes["data"] == {"people_count_max": None, "count_qualifier": "exact"}
    assert writer.post(f"{API}/revisions/{proposed_back.pk}/accept/", {}, format="json").status_code == 200
    survivor.refresh_from_db()
    assert (survivor.people_count, survivor.people_count_max, survivor.count_qualifier) == (80, None, "exact")


def test_a_merges_page_shows_no_claim_of_an_incident_its_reader_may_not_see_now(client):
    # The page listed the claims the merge moved where they are now, by the claims' own marks: merged
    # on into an incident made confidential since, one showed the source given it there.
    reviewer = make_user(roles.REVIEWER)
    first, second, third = (make_incident(title=title) for title in ("At Tumen", "Tumen, 80", "Tumen again"))
    moved = make_claim(incident=first, source=make_source(title="Daily"), excerpt="80 people")
    pairs = [
        DuplicatePair.objects.create(incident_a=a, incident_b=b, score=0.9)
        for a, b in ((first, second), (second, third))
    ]
    merge = incident_merge(user=reviewer, pair=pairs[0], survivor=second.public_id)
    incident_merge(user=reviewer, pair=pairs[1], survivor=third.public_id)
    keeper = client_for(make_user(roles.REVIEWER, confidential=True))
    for change in ({"confidential": True}, {"claims": [{"id": moved.pk, "source": make_source(title="Outlet K").pk}]}):
        etag = keeper.get(incident_url(third))["ETag"]
        assert keeper.patch(incident_url(third), change, format="json", HTTP_IF_MATCH=etag).status_code == 200
    page_url = reverse("admin:incidents_incidentmerge_change", args=[merge.pk])

    client.force_login(reviewer)
    page = client.get(page_url)

    assert page.status_code == 200
    assert "Outlet K" not in page.content.decode() and "Claim of" not in page.content.decode()
    client.force_login(make_user(roles.REVIEWER, confidential=True))
    assert "Claim of Outlet K" in client.get(page_url).content.decode()


def test_an_undo_proposes_back_no_count_a_writer_changed_in_part_since(world, reviewer):
    survivor, merged = world["survivor"], world["merged"]
    client = merged_and_accepted(world, reviewer)
    # About 80 (up to 120), then up to 150: "exact" back beside 150 would be a figure no one may accept.
    version = client.get(incident_url(survivor)).json()["version"]
    changed = client.patch(incident_url(survivor), {"people_count_max": 150, "version": version}, format="json")
    assert changed.status_code == 200, changed.content

    assert client.post(unmerge_url(merged), {}, format="json").status_code == 200

    assert not IncidentRevision.objects.filter(incident=survivor, state="pending").exists()
    survivor.refresh_from_db()
    assert (survivor.people_count, survivor.people_count_max, survivor.count_qualifier) == (80, 150, "about")


def test_the_admin_says_why_an_undo_waits_and_names_the_counts_it_proposes_back(client, world, reviewer):
    survivor, merged = world["survivor"], world["merged"]
    first = incident_merge(user=reviewer, pair=world["pair"])
    client_for(reviewer).post(f"{API}/revisions/{first.revision.pk}/accept/", {}, format="json")
    third = make_incident(title="Sent back through Yanji", places=[world["yanji"]])
    later = incident_merge(
        user=reviewer,
        pair=DuplicatePair.objects.create(incident_a=survivor, incident_b=third, score=0.9),
        survivor=survivor.public_id,
    )
    client.force_login(reviewer)

    refused = client.post(reverse("admin:incidents_incidentmerge_undo", args=[first.pk]), follow=True)

    assert (
        f"Nothing was changed. {third.public_id} was merged into {survivor.public_id} since" in refused.content.decode()
    )
    assert IncidentMerge.objects.get(pk=first.pk).undone_at is None
    client.post(reverse("admin:incidents_incidentmerge_undo", args=[later.pk]))

    undone = client.post(reverse("admin:incidents_incidentmerge_undo", args=[first.pk]), follow=True)

    proposed_back = IncidentRevision.objects.get(incident=survivor, state="pending")
    assert f"are proposed back: revision {proposed_back.pk}." in undone.content.decode()
    assert Incident.objects.get(pk=merged.pk).merged_into is None


def test_the_counts_a_merge_of_confidential_incidents_proposes_stay_with_readers_of_confidential_records(world):
    # Made of the merged incident's own dates and counts: once the survivor was made public, a
    # Reviewer without Confidential access read them in the review queue.
    Incident.objects.filter(pk__in=[world["survivor"].pk, world["merged"].pk]).update(confidential=True)
    with_access = make_user(roles.REVIEWER, confidential=True)
    merge = incident_merge(user=with_access, pair=world["pair"])
    Incident.objects.filter(pk=world["survivor"].pk).update(confidential=False)

    queue_without = results(client_for(make_user(roles.REVIEWER)).get(f"{API}/revisions/"))
    queue_with = results(client_for(with_access).get(f"{API}/revisions/"))

    assert merge.revision.pk not in [revision["id"] for revision in queue_without]
    assert merge.revision.pk in [revision["id"] for revision in queue_with]


def test_the_counts_an_undo_proposes_back_from_a_confidential_survivor_stay_with_readers_of_confidential_records(
    world,
):
    # The survivor's own counts from before the merge, while it was confidential: once it was made
    # public, the undo proposed them back to every Reviewer's queue.
    Incident.objects.filter(pk__in=[world["survivor"].pk, world["merged"].pk]).update(confidential=True)
    with_access = make_user(roles.REVIEWER, confidential=True)
    merge = incident_merge(user=with_access, pair=world["pair"])
    writer = client_for(with_access)
    assert writer.post(f"{API}/revisions/{merge.revision.pk}/accept/", {}, format="json").status_code == 200
    survivor = Incident.objects.get(pk=world["survivor"].pk)
    body = {"confidential": False, "version": survivor.version}
    assert writer.patch(incident_url(survivor), body, format="json").status_code == 200
    assert writer.post(unmerge_url(world["merged"]), {}, format="json").status_code == 200
    proposed_back = IncidentRevision.objects.get(incident=survivor, state="pending")

    queue_without = results(client_for(make_user(roles.REVIEWER)).get(f"{API}/revisions/"))
    queue_with = results(client_for(with_access).get(f"{API}/revisions/"))

    assert proposed_back.pk not in [revision["id"] for revision in queue_without]
    assert proposed_back.pk in [revision["id"] for revision in queue_with]


def test_the_survivors_history_names_the_merged_incident_and_its_pair_and_leads_to_the_merge_to_undo_it(
    client, world, reviewer
):
    # The Reviewer who merged them read, on the survivor's history, that the pair, the merge and
    # the other incident were "a record you may not see", and found no way from there to the
    # merge's page, where Undo is.
    survivor, merged = world["survivor"], world["merged"]
    assert client_for(reviewer).post(merge_url(world["pair"]), {}, format="json").status_code == 201
    merge = IncidentMerge.objects.get()
    client.force_login(reviewer)

    page = client.get(reverse("admin:incidents_incident_history", args=[survivor.pk])).content.decode()

    assert "a record you may not see" not in page
    assert f"Incident merge ({merged}, {world['pair']}" in page
    assert f"Duplicate pair ({merged}" in page
    merge_page = reverse("admin:incidents_incidentmerge_change", args=[merge.pk])
    assert f'href="{merge_page}">Open this merge (undo it there)</a>' in page
    assert "Undo merge" in client.get(merge_page).content.decode()
    # Whoever may not see the merged incident is told nothing of it, as before.
    outsider_view = client_for(make_user(roles.REVIEWER))
    Incident.objects.filter(pk=merged.pk).update(confidential=True)
    events = outsider_view.get(incident_url(survivor, "history/?page_size=200")).json()["results"]
    assert merged.public_id not in str(events)


def test_the_merges_row_in_the_history_reads_its_times_and_the_pairs_decision_before_as_words(client, world, reviewer):
    # "Pair before: — → {'note': 'need to check HRW', 'decision': 'unsure', …}" and "Merged at: — →
    # 2026-12-04T15:22:13.382899+00:00": what the merge keeps for its undo, as Python printed it.
    pair = world["pair"]
    pair.decision, pair.note, pair.decided_by = "unsure", "need to check HRW", reviewer
    pair.decided_at = timezone.now()
    pair.save()
    assert client_for(reviewer).post(merge_url(pair), {}, format="json").status_code == 201
    merge = IncidentMerge.objects.get()
    client.force_login(reviewer)

    page = html.unescape(
        client.get(reverse("admin:incidents_incident_history", args=[world["survivor"].pk])).content.decode()
    )

    decided = pair.decided_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"<strong>Pair before</strong>: — → Unsure, decided {decided}: “need to check HRW”" in page
    assert f"<strong>Merged at</strong>: — → {merge.merged_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" in page
    assert "{'" not in page and "+00:00" not in page


def test_notes_written_beside_hidden_claims_are_withheld_from_reviewers_without_confidential_access(client, world):
    # The merged incident holds a confidential claim and one of a confidential source: what a
    # Reviewer who saw them wrote on the pair, the merge and its undo may name them.
    insider, reviewer = make_user(roles.REVIEWER, confidential=True), make_user(roles.REVIEWER)
    pair = world["pair"]
    decide(insider, pair, "unsure", "Informant X saw both")
    merged = client_for(insider).post(merge_url(pair), {"note": "Informant X confirms"}, format="json")
    assert merged.status_code == 201 and merged.json()["note"] == "Informant X confirms"
    merge = IncidentMerge.objects.get()
    client.force_login(reviewer)

    merge_page = html.unescape(
        client.get(reverse("admin:incidents_incidentmerge_change", args=[merge.pk])).content.decode()
    )
    undone = client_for(reviewer).post(unmerge_url(world["merged"]), {"note": "Not the same"}, format="json")
    listed = results(client_for(reviewer).get(f"{API}/duplicates/", {"decision": "unsure"}))
    history = html.unescape(
        client.get(reverse("admin:incidents_incident_history", args=[world["survivor"].pk])).content.decode()
    )

    assert "Informant X" not in merge_page and NOTE_WITHHELD in merge_page
    assert undone.status_code == 200
    assert (undone.json()["note"], undone.json()["note_withheld"]) == (None, True)
    # The undo gives the pair back its decision, its note withheld as it was.
    assert [(row["id"], row["note"], row["note_withheld"]) for row in listed] == [(pair.pk, None, True)]
    assert "Informant X" not in history and NOTE_WITHHELD in history
    answered = client_for(insider).get(f"{API}/duplicates/{pair.pk}/").json()
    assert (answered["note"], answered["note_withheld"]) == ("Informant X saw both", False)


def test_who_merged_beside_hidden_claims_and_when_are_withheld_from_reviewers_without_confidential_access(
    client, world
):
    # Merged with no note at all: who merged and when still tell of the hidden claims' time.
    insider, reviewer = make_user(roles.REVIEWER, confidential=True), make_user(roles.REVIEWER)
    assert client_for(insider).post(merge_url(world["pair"]), {}, format="json").status_code == 201
    merge = IncidentMerge.objects.get()
    client.force_login(reviewer)

    merge_page = client.get(reverse("admin:incidents_incidentmerge_change", args=[merge.pk])).content.decode()
    merges_list = client.get(reverse("admin:incidents_incidentmerge_changelist")).content.decode()
    undone = client_for(reviewer).post(unmerge_url(world["merged"]), {}, format="json").json()

    for page in (merge_page, merges_list):
        assert insider.username not in page and WHO_AND_WHEN_WITHHELD in html.unescape(page)
    assert (undone["merged_by"], undone["merged_at"], undone["decided_withheld"]) == (None, None, True)
    # And the schema says so, or a generated client fails on the null.
    merge_schema = client_for().get(f"{API}/schema/?format=json").json()["components"]["schemas"]["Merge"]
    assert all(merge_schema["properties"][name].get("nullable") for name in ("merged_by", "merged_at"))
    client.force_login(insider)
    assert insider.username in client.get(reverse("admin:incidents_incidentmerge_changelist")).content.decode()


def decide(user, pair, decision: str, note: str) -> None:
    """`decision` on `pair`, with `note`, through the admin's form."""
    client = Client()
    client.force_login(user)
    url = reverse("admin:incidents_duplicatepair_change", args=[pair.pk])
    assert client.post(url, {**pair_decision(pair, decision, note), "_continue": "1"}).status_code == 302


def test_a_merged_incidents_history_stays_at_its_own_address_for_whoever_may_follow_it(world, reviewer):
    # Its address leads to the survivor's page; what it said before the merge (its title, its
    # figures) is told only in its own history, which staff who may follow it read there.
    merged, survivor = world["merged"], world["survivor"]
    assert client_for(reviewer).post(merge_url(world["pair"]), {}, format="json").status_code == 201
    merge = IncidentMerge.objects.get()
    admin = Client()
    admin.force_login(reviewer)

    answer = client_for(reviewer).get(incident_url(merged, "history/?page_size=200"))
    page = admin.get(reverse("admin:incidents_incident_history", args=[merged.pk]))
    merge_page = admin.get(reverse("admin:incidents_incidentmerge_change", args=[merge.pk])).content.decode()

    assert answer.status_code == 200, answer.content
    events = answer.json()["results"]
    created = [event for event in events if event["record"] == "incidents.Incident" and event["action"] == "insert"]
    assert [event["data"]["title"] for event in created] == [merged.title]
    assert any(event["record"] == "incidents.IncidentMerge" for event in events)
    # Its claims hidden from the reader stay out, as on any incident's history.
    hidden_ids = {str(claim.pk) for claim in world["hidden"]}
    assert not [event for event in events if event["record"] == "incidents.Claim" and event["record_id"] in hidden_ids]
    assert page.status_code == 200 and merged.title in html.unescape(page.content.decode())
    assert reverse("admin:incidents_incident_history", args=[merged.pk]) in merge_page
    # Its page still leads to the survivor's, through the merge.
    assert client_for(reviewer).get(incident_url(merged)).status_code == 301
    # Whoever may not follow it to its survivor is told of neither, at either door.
    made(True, survivor, make_user(roles.REVIEWER, confidential=True))
    assert client_for(reviewer).get(incident_url(merged, "history/")).status_code == 404
    assert admin.get(reverse("admin:incidents_incident_history", args=[merged.pk])).status_code == 302


def test_a_response_about_both_incidents_is_a_new_version_with_the_merge_and_its_undo(world, reviewer):
    """It shows the merged incident before the merge, not after it, and again after the undo: every
    reader's copy of it is read again, and a stale edit meets a version conflict."""
    response, survivor, merged = world["response"], world["survivor"], world["merged"]
    response.incidents.add(survivor)
    url = f"{API}/responses/{response.pk}/"

    def told() -> tuple[list[str], int]:
        body = client_for().get(url).json()
        return sorted(body["incidents"]), body["version"]

    incidents, version = told()
    assert incidents == sorted([survivor.public_id, merged.public_id])

    assert client_for(reviewer).post(merge_url(world["pair"]), {}, format="json").status_code == 201
    assert told() == ([survivor.public_id], version + 1)

    assert client_for(reviewer).post(unmerge_url(merged), {}, format="json").status_code == 200
    assert told() == (incidents, version + 2)


def test_a_response_about_the_merged_incident_alone_is_a_new_version_with_the_merge_and_its_undo(world, reviewer):
    """Its link moves to the survivor, which it shows in the merged incident's place, then shows the
    merged incident again after the undo: a new version each time, for every reader, or an
    incremental sync kept the old list."""
    response, survivor, merged = world["response"], world["survivor"], world["merged"]
    url = f"{API}/responses/{response.pk}/"

    def told(user=None) -> tuple[list[str], int]:
        body = client_for(user).get(url).json()
        return body["incidents"], body["version"]

    (public, public_version), (_, staff_version) = told(), told(reviewer)
    assert public == [merged.public_id]

    assert client_for(reviewer).post(merge_url(world["pair"]), {}, format="json").status_code == 201
    assert told() == ([survivor.public_id], public_version + 1)
    assert told(reviewer) == ([survivor.public_id], staff_version + 1)

    assert client_for(reviewer).post(unmerge_url(merged), {}, format="json").status_code == 200
    assert told() == ([merged.public_id], public_version + 2)


class TestTheRevisionOfAMergeDecidedInConfidence:
    """A merge decided in confidence (its merged incident holds a confidential claim) names neither
    who made it nor when to readers without Confidential access: its own page, its pair, its rows in
    the history. The revision of the survivor's dates and counts it proposes named both, in the
    Reviewers' queue (API and admin) and on the survivor's page."""

    @pytest.fixture
    def merged(self, world):
        insider = make_user(roles.REVIEWER, confidential=True, username="lee.insider")
        assert client_for(insider).post(merge_url(world["pair"]), {}, format="json").status_code == 201
        return world

    def test_the_survivors_history_names_neither_who_merged_nor_who_undid(self, merged):
        # The undo's rejection changes the revision's row, whose summary named the revision by the
        # records it links: its proposer, who merged, "Incident revision (lee.insider) changed".
        kim = client_for(make_user(roles.REVIEWER, confidential=True, username="kim.insider"))
        assert kim.post(unmerge_url(merged["merged"]), {}, format="json").status_code == 200
        outsider = make_user(roles.REVIEWER)
        admin_client = Client()
        admin_client.force_login(outsider)

        answer = client_for(outsider).get(incident_url(merged["survivor"], "history/?page_size=200"))
        page = admin_client.get(reverse("admin:incidents_incident_history", args=[merged["survivor"].pk]))

        assert answer.status_code == page.status_code == 200
        revision_rows = [row for row in answer.json()["results"] if row["record"] == "incidents.IncidentRevision"]
        assert [row["action"] for row in revision_rows] == ["insert", "update"]
        for text in (answer.content.decode(), page.content.decode()):
            assert "lee.insider" not in text and "kim.insider" not in text
        told = client_for(make_user(roles.REVIEWER, confidential=True)).get(
            incident_url(merged["survivor"], "history/?page_size=200")
        )
        assert "lee.insider" in told.content.decode() and "kim.insider" in told.content.decode()

    def test_the_api_withholds_who_proposed_it_and_when(self, merged):
        [listed] = results(client_for(make_user(roles.REVIEWER)).get(f"{API}/revisions/"))
        page = client_for(make_user(roles.REVIEWER)).get(f"{API}/revisions/{listed['id']}/").json()
        assert [(shown["proposed_by"], shown["created_at"]) for shown in (listed, page)] == [(None, None)] * 2
        # Readers with Confidential access read both.
        told = client_for(make_user(roles.REVIEWER, confidential=True)).get(f"{API}/revisions/{listed['id']}/").json()
        assert told["proposed_by"] == "lee.insider" and told["created_at"] is not None

    def test_the_admin_queue_the_revisions_page_and_the_survivors_page_withhold_them(self, merged):
        revision = IncidentRevision.objects.get()
        pages = [
            reverse("admin:incidents_incidentrevision_changelist"),
            reverse("admin:incidents_incidentrevision_change", args=[revision.pk]),
            reverse("admin:incidents_incident_change", args=[merged["survivor"].pk]),
        ]
        outsider, insider = Client(), Client()
        outsider.force_login(make_user(roles.REVIEWER))
        insider.force_login(make_user(roles.REVIEWER, confidential=True))
        for page in pages:
            assert "lee.insider" not in outsider.get(page).content.decode(), page
            assert "lee.insider" in insider.get(page).content.decode(), page
        assert "withheld from readers without Confidential access" in outsider.get(pages[1]).content.decode()

    def test_a_sync_names_no_last_writer_of_the_incidents(self, merged):
        # Their sync's row of the merged incident (reported with `merged_into`) said
        # `"updated_by": "lee.insider"`, as did the survivor's detail.
        rows = results(
            client_for(make_user(roles.REVIEWER)).get(f"{API}/incidents/", {"updated_since": "2000-01-01T00:00:00Z"})
        )
        told = {row["public_id"]: row["updated_by"] for row in rows}
        assert told[merged["merged"].public_id] is None
        assert told[merged["survivor"].public_id] is None
        # Readers with Confidential access are told who merged them.
        rows = results(
            client_for(make_user(roles.REVIEWER, confidential=True)).get(
                f"{API}/incidents/", {"updated_since": "2000-01-01T00:00:00Z"}
            )
        )
        assert {row["public_id"]: row["updated_by"] for row in rows}[merged["merged"].public_id] == "lee.insider"

    def test_the_revision_its_undo_proposes_back_withholds_them_too(self, merged):
        insider = client_for(make_user(roles.REVIEWER, confidential=True, username="kim.insider"))
        proposal = IncidentRevision.objects.get()
        assert insider.post(f"{API}/revisions/{proposal.pk}/accept/", {}, format="json").status_code == 200
        unmerge = f"{API}/incidents/{merged['merged'].public_id}/unmerge/"
        assert insider.post(unmerge, {}, format="json").status_code == 200
        back = IncidentRevision.objects.exclude(pk=proposal.pk).get()
        shown = client_for(make_user(roles.REVIEWER)).get(f"{API}/revisions/{back.pk}/").json()
        assert (shown["proposed_by"], shown["created_at"]) == (None, None)
        told = client_for(make_user(roles.REVIEWER, confidential=True)).get(f"{API}/revisions/{back.pk}/").json()
        assert told["proposed_by"] == "kim.insider"

    def test_the_rejection_of_its_revision_by_an_undo_in_confidence_withholds_who_and_when(self, merged):
        # The undo rejects the merge's pending revision: its `decided_by` named the undoer, with
        # the time, where the merge's own record withholds both.
        kim = client_for(make_user(roles.REVIEWER, confidential=True, username="kim.insider"))
        assert kim.post(f"{API}/incidents/{merged['merged'].public_id}/unmerge/", {}, format="json").status_code == 200
        rejected = IncidentRevision.objects.get()
        assert (rejected.state, rejected.decided_by.username) == ("rejected", "kim.insider")
        outsider = make_user(roles.REVIEWER)
        [listed] = results(client_for(outsider).get(f"{API}/revisions/"))
        page = client_for(outsider).get(f"{API}/revisions/{rejected.pk}/").json()
        assert [(shown["decided_by"], shown["decided_at"]) for shown in (listed, page)] == [(None, None)] * 2
        admin_client = Client()
        admin_client.force_login(outsider)
        for url in (
            reverse("admin:incidents_incidentrevision_changelist"),
            reverse("admin:incidents_incidentrevision_change", args=[rejected.pk]),
        ):
            assert "kim.insider" not in admin_client.get(url).content.decode(), url
        told = client_for(make_user(roles.REVIEWER, confidential=True)).get(f"{API}/revisions/{rejected.pk}/").json()
        assert (told["decided_by"], told["decided_at"] is not None) == ("kim.insider", True)

    def test_a_reviewers_own_decision_of_its_revision_stays_named(self, merged):
        # Only the undo's rejection is the undo's: a Reviewer's rejection before it is their own.
        rejecter = client_for(make_user(roles.REVIEWER, username="ray.outsider"))
        revision = IncidentRevision.objects.get()
        assert rejecter.post(f"{API}/revisions/{revision.pk}/reject/", {}, format="json").status_code == 200
        kim = client_for(make_user(roles.REVIEWER, confidential=True))
        assert kim.post(f"{API}/incidents/{merged['merged'].public_id}/unmerge/", {}, format="json").status_code == 200
        shown = client_for(make_user(roles.REVIEWER)).get(f"{API}/revisions/{revision.pk}/").json()
        assert shown["decided_by"] == "ray.outsider" and shown["decided_at"] is not None


@pytest.mark.django_db(transaction=True)
def test_a_pair_withdrawn_while_a_reviewer_merges_it_answers_404_not_a_500():
    # As above, through the API's merge of a waiting pair: `incident_merge` locks both incidents,
    # then waits for the rescoring's withdrawal of the pair (`select_for_update().get`), and finds
    # nothing: DoesNotExist, a 500. Nothing may be merged: the pair is gone.
    first, second = make_incident(), make_incident()
    pair = DuplicatePair.objects.create(incident_a=first, incident_b=second, score=0.9)
    reviewer = client_for(make_user(roles.REVIEWER))

    answers = answered_while_held(
        "DELETE FROM incidents_duplicatepair WHERE id = %s AND decision = 'pending'",
        [pair.pk],
        lambda: reviewer.post(f"{API}/duplicates/{pair.pk}/merge/", {}, format="json"),
    )

    (answer,) = answers
    assert not isinstance(answer, Exception), repr(answer)
    assert answer.status_code == 404, answer.content
    assert not Incident.objects.filter(merged_into__isnull=False).exists()


def test_a_decision_naming_a_field_it_does_not_read_is_refused_naming_it(world, reviewer):
    # `{"noet": "same event"}` accepted a revision, merged or undid without the note, answered 200:
    # the Reviewer took their reason as recorded.
    client = client_for(reviewer)
    misspelt = {"noet": "Same event, two outlets"}

    refused_merge = client.post(merge_url(world["pair"]), misspelt, format="json")
    assert refused_merge.status_code == 400 and "No such field" in refused_merge.json()["noet"][0]
    assert not IncidentMerge.objects.exists()

    merge = incident_merge(user=reviewer, pair=world["pair"])
    for decision in ("accept", "reject"):
        refused = client.post(f"{API}/revisions/{merge.revision.pk}/{decision}/", misspelt, format="json")
        assert refused.status_code == 400 and "note" in refused.json()["noet"][0], refused.content
    assert IncidentRevision.objects.get(pk=merge.revision.pk).state == "pending"
    refused_undo = client.post(unmerge_url(world["merged"]), misspelt, format="json")
    assert refused_undo.status_code == 400 and "No such field" in refused_undo.json()["noet"][0]
    assert IncidentMerge.objects.get().undone_at is None


@pytest.mark.django_db
def test_the_merge_confirmation_answers_a_hidden_pair_as_one_that_does_not_exist(client):
    """A Reviewer without Confidential access POSTs the merge confirmation of a pair id with a
    version the page never showed: a pair with a confidential incident answered a redirect to the
    pair with "Nothing was merged. Survivor version: …", an id no pair has a 404. The answer told
    them which ids are pairs with a confidential incident (a hidden report of an event they know)."""
    hidden = DuplicatePair.objects.create(
        incident_a=make_incident(title="Arrests in Tumen"),
        incident_b=make_incident(title="Arrests near Tumen", confidential=True),
        score=0.9,
    )
    client.force_login(make_user(roles.REVIEWER))
    for pair_id in (hidden.pk, hidden.pk + 1000):
        url = reverse("admin:incidents_incidentmerge_confirm", args=[pair_id])
        assert client.get(url).status_code == 404
        answer = client.post(url, {"survivor_version": "not a version", "note": ""})
        assert answer.status_code == 404, (pair_id, answer.status_code, answer.get("Location"))


@pytest.mark.django_db
def test_a_merge_confirmed_by_a_second_reviewer_tells_them_it_was_already_merged(client):
    """Two Reviewers confirm the merge of the same pair: the second is answered "Nothing was merged.
    … was already merged into …", back to the pair, not a 404 (the pair of a merged incident, which
    no list shows, is seen)."""
    tumen = make_place(name="Tumen")
    survivor = make_incident(title="80 sent back from Tumen", places=[tumen], people_count=80)
    merged = make_incident(title="Repatriation at Tumen", places=[tumen], people_count=80)
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)
    reviewer = make_user(roles.REVIEWER)
    client.force_login(reviewer)
    url = reverse("admin:incidents_incidentmerge_confirm", args=[pair.pk])
    page = client.get(url, {"survivor": survivor.public_id})
    assert page.status_code == 200
    form = {
        "survivor": survivor.public_id,
        "survivor_version": page.context["survivor_version"],
        "merged_version": page.context["merged_version"],
        "note": "",
    }
    first = client.post(url, form)
    assert first.status_code == 302, first.content[:500]
    client.force_login(make_user(roles.REVIEWER))
    again = client.post(url, form)
    assert again.status_code == 302, again.status_code
    assert again["Location"] == reverse("admin:incidents_duplicatepair_change", args=[pair.pk])
    told = " ".join(messages_of(client.get(again["Location"])) or [])
    assert f"Nothing was merged. {merged.public_id} was already merged into {survivor.public_id}" in told
    assert IncidentMerge.objects.count() == 1


@pytest.mark.django_db
def test_a_merge_confirmed_twice_by_its_reviewer_leads_to_the_merge_made_once(client, world, reviewer):
    """A double click, or Back and Confirm again: the second press was told "Nothing was merged. …
    was already merged into …" by the Reviewer whose merge had just been made, who could not tell
    whether it had been. It now leads to that merge, made once; the same press with another note is
    another merge asked for, and refused."""
    client.force_login(reviewer)
    url = reverse("admin:incidents_incidentmerge_confirm", args=[world["pair"].pk])
    page = client.get(url, {"survivor": world["survivor"].public_id})
    form = {
        "survivor": world["survivor"].public_id,
        "survivor_version": page.context["survivor_version"],
        "merged_version": page.context["merged_version"],
        "note": "One report, told twice",
    }
    first, again = client.post(url, form), client.post(url, form)

    merge = IncidentMerge.objects.get()
    assert first["Location"] == again["Location"] == reverse("admin:incidents_incidentmerge_change", args=[merge.pk])
    # The first press's message too: its answer was not followed.
    told = messages_of(client.get(again["Location"]))
    assert told == [f"{merge}: done. Undo it from this page if it was a mistake."] * 2
    assert Claim.objects.filter(incident=world["survivor"]).count() == 4
    assert IncidentRevision.objects.filter(incident=world["survivor"]).count() == 1

    otherwise = client.post(url, {**form, "note": "Another reason"})
    told = " ".join(messages_of(client.get(otherwise["Location"])))
    assert f"Nothing was merged. {world['merged'].public_id} was already merged into" in told
    assert IncidentMerge.objects.count() == 1


def test_a_merge_retried_by_its_reviewer_gets_the_answer_the_first_send_got(world, reviewer):
    """A partner's merge retried after its answer was lost (a timeout) was refused 409 "already
    merged"; the retry now gets the first send's answer, and nothing is merged twice. Another
    Reviewer's same request is still refused, as is the same Reviewer's after an undo and a merge
    into the other incident."""
    client = client_for(reviewer)
    body = {"survivor_version": world["survivor"].version, "note": "One report, told twice"}
    first = client.post(merge_url(world["pair"]), body, format="json")
    retry = client.post(merge_url(world["pair"]), body, format="json")

    assert first.status_code == retry.status_code == 201, retry.content
    assert retry.json() == first.json()
    assert IncidentMerge.objects.count() == 1
    assert IncidentRevision.objects.filter(incident=world["survivor"]).count() == 1
    colleague = client_for(make_user(roles.REVIEWER)).post(merge_url(world["pair"]), body, format="json")
    assert colleague.status_code == 409 and "already merged" in colleague.json()["detail"]

    assert client.post(unmerge_url(world["merged"]), {}, format="json").status_code == 200
    the_other_way = {"survivor": world["merged"].public_id, "note": "One report, told twice"}
    assert client.post(merge_url(world["pair"]), the_other_way, format="json").status_code == 201
    stale = client.post(merge_url(world["pair"]), {"note": "One report, told twice"}, format="json")
    assert stale.status_code == 409 and "already merged" in stale.json()["detail"]
