"""Merges of merges: A merged into B, then B into C. A lives on in C, so every door that follows
A's `merged_into` (its address's redirect, the incremental sync and its withdrawals, the CSV, the
pairs that name it) reaches C in one step, as the reader sees C; the undo of B's merge points A back
at B; and a pair decided "different" stays decided of the incidents its sides live on in."""

import io

import pytest
from django.core.management import call_command
from django.db.models.expressions import RawSQL

from incidents import duplicates, merges, services
from incidents.models import DuplicatePair, Incident, IncidentMerge
from incidents.querysets import version_seen_by
from tests.api_support import API, client_for, incident_url, results
from tests.database_support import migrate_incidents_back_to
from tests.factories import make_claim, make_incident, make_place, make_source
from tests.test_merges import merge_url, unmerge_url

SINCE = "2000-01-01T00:00:00Z"


def pair_of(first, second) -> DuplicatePair:
    incident_a, incident_b = sorted((first, second), key=lambda incident: incident.pk)
    return DuplicatePair.objects.get_or_create(incident_a=incident_a, incident_b=incident_b, defaults={"score": 0.9})[0]


def chain(keeper) -> tuple[Incident, Incident, Incident]:
    """A merged into B, then B into C: three published incidents of the public."""
    a, b, c = (make_incident(title=f"Incident {label}") for label in "ABC")
    merges.incident_merge(user=keeper, pair=pair_of(a, b), survivor=b.public_id)
    merges.incident_merge(user=keeper, pair=pair_of(b, c), survivor=c.public_id)
    for incident in (a, b, c):
        incident.refresh_from_db()
    return a, b, c


def test_a_merged_incident_redirects_in_one_step_to_the_incident_it_lives_on_in(keeper):
    """Left pointing at B, A's address answered 301 to B's, itself a 301, and A's `merged_into`
    named B, a merged incident no list shows."""
    a, b, c = chain(keeper)

    answer = client_for().get(incident_url(a))

    assert answer.status_code == 301
    assert answer["Location"].endswith(f"/{c.public_id}/")
    assert answer.json()["merged_into"] == c.public_id
    synced = results(client_for().get(f"{API}/incidents/?updated_since={SINCE}"))
    synced = {row["public_id"]: row["merged_into"] for row in synced}
    assert synced[a.public_id] == synced[b.public_id] == c.public_id


def test_a_merged_incidents_address_answers_404_once_the_incident_it_lives_on_in_leaves_the_readers_sight(
    keeper, client
):
    """C returned to draft: B's address answered 404 and A's went on answering 301 to B's."""
    a, b, c = chain(keeper)
    services.incident_transition(incident=c, action="return_to_draft", user=keeper)

    for incident in (a, b):
        assert client_for().get(incident_url(incident)).status_code == 404
        page = client.get(f"/incidents/{incident.public_id}/")
        assert (page.status_code, page.get("Location")) == (404, None)


def test_an_incremental_sync_reports_a_merged_incident_withdrawn_with_the_incident_it_lives_on_in(keeper):
    """C returned to draft: `withdrawn/` reported B and C, while the sync and the CSV went on
    reporting A merged into B, an incident that had left the partner's view."""
    a, b, c = chain(keeper)
    services.incident_transition(incident=c, action="return_to_draft", user=keeper)
    anonymous = client_for()

    withdrawn = {row["id"] for row in anonymous.get(f"{API}/incidents/withdrawn/?since={SINCE}").json()["results"]}
    synced = {row["public_id"] for row in results(anonymous.get(f"{API}/incidents/?updated_since={SINCE}"))}
    exported = b"".join(anonymous.get(f"{API}/incidents.csv?updated_since={SINCE}").streaming_content).decode()

    assert {a.public_id, b.public_id, c.public_id} <= withdrawn
    assert not synced & {a.public_id, b.public_id, c.public_id}
    assert a.public_id not in exported and b.public_id not in exported


def test_a_pair_whose_incident_lives_on_in_an_incident_hidden_from_the_reviewer_answers_404(keeper, reviewer):
    """C made confidential: to a Reviewer without Confidential access, A lives on in an incident
    hidden from them (README: such a pair answers 404, as one they may not see). It answered 409
    naming B, "undo that merge first"."""
    a, _, c = chain(keeper)
    services.incident_update(
        incident=c, user=keeper, expected_version=version_seen_by(c, keeper), data={"confidential": True}
    )
    pair = DuplicatePair.objects.create(incident_a=a, incident_b=make_incident(), score=0.9)

    answer = client_for(reviewer).post(merge_url(pair), {}, format="json")

    assert answer.status_code == 404, answer.content


def test_undoing_the_later_merge_points_the_first_merged_incident_back_and_both_undo_in_turn(keeper):
    a, b, c = chain(keeper)
    reviewer = client_for(keeper)

    assert reviewer.post(unmerge_url(a), {}, format="json").status_code == 409
    assert reviewer.post(unmerge_url(b), {}, format="json").status_code == 200
    a.refresh_from_db()
    assert a.merged_into == b
    assert client_for().get(incident_url(a))["Location"].endswith(f"/{b.public_id}/")
    assert reviewer.post(unmerge_url(a), {}, format="json").status_code == 200

    assert not Incident.objects.filter(merged_into__isnull=False).exists()
    assert not IncidentMerge.objects.filter(undone_at__isnull=True).exists()
    events = Incident.pgh_event_model.objects.filter(pgh_obj=a).order_by("pgh_id")
    assert [event.merged_into_id for event in events] == [None, b.pk, c.pk, b.pk, None]


def test_a_pair_decided_different_stays_so_of_the_incident_one_side_lives_on_in(keeper):
    """A and X decided different, then A merged into B: the rescoring proposed X and B, scored on
    A's own words and place, and merging them joined two events decided apart."""
    place, daily = make_place(name="Tumen"), make_source(title="Daily NK")
    a, x = (make_incident(title="80 repatriated from Tumen", places=[place]) for _ in range(2))
    for incident in (a, x):
        make_claim(incident=incident, source=daily, excerpt="80 people sent back from Tumen")
    b = make_incident(title="Tumen repatriation", places=[place])
    duplicates.duplicate_pair_decide(user=keeper, pair=pair_of(a, x), decision="different", note="two groups")
    merges.incident_merge(user=keeper, pair=pair_of(a, b), survivor=b.public_id)

    duplicates.duplicate_pairs_refresh(incident_ids=[a.pk, x.pk, b.pk])

    queue = {(row["incident_a"], row["incident_b"]) for row in results(client_for(keeper).get(f"{API}/duplicates/"))}
    assert tuple(sorted((x.public_id, b.public_id))) not in queue
    answer = client_for(keeper).post(merge_url(pair_of(x, b)), {"survivor": b.public_id}, format="json")
    assert answer.status_code == 409
    assert "decided to be a different incident" in answer.json()["detail"], answer.json()
    assert Incident.objects.get(pk=x.pk).merged_into is None


@pytest.mark.django_db(transaction=True)
def test_migration_0113_points_chains_made_before_it_at_the_live_incident_and_their_undos_back(keeper):
    """Chains as merges left them before 0113: A into B, B into C, C into D, each pointing at the next."""
    migrate_incidents_back_to("0112_texts_in_normal_form")
    a, b, c, d = (make_incident(title=f"Incident {label}") for label in "ABCD")
    for merged, survivor in ((a, b), (b, c), (c, d)):
        merge = merges.incident_merge(user=keeper, pair=pair_of(merged, survivor), survivor=survivor.public_id)
        # As a merge left them before: its followers not moved, nor noted.
        Incident.objects.filter(pk__in=merge.moved["followers"]).update(merged_into=merged)
        IncidentMerge.objects.filter(pk=merge.pk).update(moved=RawSQL("moved - 'followers'", []))
    version_before = Incident.objects.get(pk=a.pk).version

    call_command("migrate", "incidents", verbosity=0, stdout=io.StringIO())

    assert dict(Incident.objects.filter(merged_into__isnull=False).values_list("pk", "merged_into")) == {
        a.pk: d.pk,
        b.pk: d.pk,
        c.pk: d.pk,
    }
    assert Incident.objects.get(pk=a.pk).version == version_before + 1
    reviewer = client_for(keeper)
    for incident, now_at in ((c, {a.pk: c.pk, b.pk: c.pk}), (b, {a.pk: b.pk}), (a, {})):
        assert reviewer.post(unmerge_url(incident), {}, format="json").status_code == 200
        assert dict(Incident.objects.filter(merged_into__isnull=False).values_list("pk", "merged_into")) == now_at
