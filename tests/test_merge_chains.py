"""Merges of merges: A merged into B, then B into C. A lives on in C, so every door that follows
A's `merged_into` (its address's redirect, the incremental sync and its withdrawals, the CSV, the
pairs that name it) reaches C in one step, as the reader sees C; the undo of B's merge points A back
at B; and a pair decided "different" stays decided of the incidents its sides live on in."""

import csv
import io
from datetime import UTC, datetime

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models.expressions import RawSQL

from incidents import duplicates, merges, roles, services
from incidents.models import DuplicatePair, Incident, IncidentMerge
from incidents.querysets import version_seen_by
from tests.api_support import API, client_for, incident_url, results
from tests.database_support import migrate_incidents_back_to
from tests.factories import make_claim, make_incident, make_place, make_source, make_user
from tests.test_merges import merge_url, unmerge_url
from tests.test_write_conflicts import in_threads, wait_until_waiting

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


def _synced(client, since=SINCE):
    return {row["public_id"]: row for row in results(client.get(f"{API}/incidents/", {"updated_since": since}))}


def test_a_merge_in_confidence_withholds_its_reviewer_on_the_incidents_it_moves_along(keeper):
    """A merged into B in the open; then B merged into C by a Reviewer with Confidential access,
    decided in confidence (C holds an informant's confidential claim). The merge withholds its
    writer from staff without access on B and C (`_writer_withheld`), but A, whose new version the
    same merge wrote (`_followers_moved`), is left out: a Viewer's sync reads A's `updated_by` as
    the Reviewer with Confidential access. A's row should withhold the writer as B's and C's do."""
    viewer = client_for(make_user(roles.VIEWER))
    a, b, c = (make_incident(title=f"Incident {label}") for label in "ABC")
    merges.incident_merge(user=make_user(roles.REVIEWER), pair=pair_of(a, b), survivor=b.public_id)
    make_claim(incident=c, source=make_source(title="Informant"), confidential=True)
    merge = merges.incident_merge(user=keeper, pair=pair_of(b, c), survivor=c.public_id)
    assert merge.note_confidential and merge.moved["followers"] == [a.pk]

    rows = _synced(viewer)

    assert rows[b.public_id]["updated_by"] != keeper.username  # withheld, as it should be
    assert rows[a.public_id]["updated_by"] != keeper.username, "the follower names the confidential merge's Reviewer"


def test_an_undo_in_confidence_withholds_its_reviewer_on_the_incidents_it_points_back(keeper):
    """As above, for the undo: undoing B into C in confidence points A back at B, a new version of
    A by the Reviewer, whose name A's row then gives to staff without Confidential access."""
    viewer = client_for(make_user(roles.VIEWER))
    a, b, c = (make_incident(title=f"Incident {label}") for label in "ABC")
    merges.incident_merge(user=make_user(roles.REVIEWER), pair=pair_of(a, b), survivor=b.public_id)
    make_claim(incident=c, source=make_source(title="Informant"), confidential=True)
    merges.incident_merge(user=make_user(roles.REVIEWER, confidential=True), pair=pair_of(b, c), survivor=c.public_id)
    assert client_for(keeper).post(unmerge_url(b), {}, format="json").status_code == 200
    assert Incident.objects.get(pk=a.pk).merged_into_id == b.pk

    rows = _synced(viewer)

    assert rows[b.public_id]["updated_by"] != keeper.username  # withheld, as it should be
    assert rows[a.public_id]["updated_by"] != keeper.username, "the follower names the confidential undo's Reviewer"


def followed_by_the_public(keeper, b_state: str, c_state: str) -> tuple[list[str], int, set, dict]:
    """A (published) merged into B, then B into C, in those review states: their public ids, what
    the public then answers at A's address, and the withdrawals and changes its sync reads since
    the first merge."""
    a = make_incident(title="A")
    b, c = make_incident(title="B", review_state=b_state), make_incident(title="C", review_state=c_state)
    merges.incident_merge(user=keeper, pair=pair_of(a, b), survivor=b.public_id)
    after = datetime.now(UTC).isoformat()
    merges.incident_merge(user=keeper, pair=pair_of(b, c), survivor=c.public_id)
    anonymous = client_for()
    withdrawn = {row["id"] for row in results(anonymous.get(f"{API}/incidents/withdrawn/", {"since": after}))}
    public_ids = [incident.public_id for incident in (a, b, c)]
    return public_ids, anonymous.get(incident_url(a)).status_code, withdrawn, _synced(anonymous, after)


def test_a_follower_moved_onto_a_draft_is_reported_withdrawn_to_the_public(keeper):
    """A, which the public followed to B, is moved onto C, a draft: its address answers 404, and
    `withdrawn/` named only B (the trigger records a merge, not a merged incident moving on), so a
    partner's copy kept A."""
    (a, b, _), status, withdrawn, synced = followed_by_the_public(keeper, "published", "draft")

    assert status == 404
    assert {a, b} <= withdrawn
    assert a not in synced


def test_a_merge_decided_apart_through_a_hidden_incident_is_refused_naming_nothing_hidden(keeper, reviewer):
    """X, confidential, was decided different from A (public) by a Reviewer with Confidential access,
    then merged into B while B was confidential (merges need alike confidentiality); B was made
    public since. A Reviewer without Confidential access, who sees A and B and none of X, its pair
    with A nor its merge, merges A and B: answered 409 "An incident merged into B or A was decided to
    be a different incident from the other": a confidential record of that event exists, merged into
    B, and a colleague with access decided it was a different event from A. The project refuses
    such tells elsewhere (`_refusals`: pending revisions they may not see are not waited for,
    "refusing would tell of them"; `_refuse_before_later_merges`). The refusal should tell them no
    more than that a Reviewer with Confidential access must decide this merge (or not refuse)."""
    a = make_incident(title="A public")
    x = make_incident(title="X confidential", confidential=True)
    b = make_incident(title="B confidential", confidential=True)
    duplicates.duplicate_pair_decide(user=keeper, pair=pair_of(a, x), decision="different", note="apart")
    merges.incident_merge(user=keeper, pair=pair_of(x, b), survivor=b.public_id)
    b.refresh_from_db()
    services.incident_update(
        incident=b, user=keeper, expected_version=version_seen_by(b, keeper), data={"confidential": False}
    )
    # The Reviewer sees neither X nor its pair with A.
    assert client_for(reviewer).get(incident_url(x)).status_code == 404
    assert client_for(reviewer).get(f"{API}/duplicates/{pair_of(a, x).pk}/").status_code == 404

    answer = client_for(reviewer).post(merge_url(pair_of(a, b)), {"survivor": b.public_id}, format="json")

    detail = answer.json().get("detail", "")
    assert "different incident" not in detail and "merged into" not in detail, detail


def test_undoing_the_merge_onto_a_draft_reports_the_follower_to_the_public_again(keeper):
    """B merged into draft C and undone; A follows B again, public."""
    a, b = make_incident(title="A"), make_incident(title="B")
    c = make_incident(title="C draft", review_state="draft")
    merges.incident_merge(user=keeper, pair=pair_of(a, b), survivor=b.public_id)
    merges.incident_merge(user=keeper, pair=pair_of(b, c), survivor=c.public_id)
    after = datetime.now(UTC).isoformat()
    assert client_for(keeper).post(unmerge_url(b), {}, format="json").status_code == 200

    anonymous = client_for()
    synced = _synced(anonymous, after)
    assert synced[a.public_id]["merged_into"] == b.public_id
    assert anonymous.get(incident_url(a)).status_code == 301
    withdrawn = {row["id"] for row in results(anonymous.get(f"{API}/incidents/withdrawn/", {"since": after}))}
    assert a.public_id not in withdrawn


def test_a_follower_moved_from_a_draft_onto_a_published_incident_is_reported_to_the_public(keeper):
    """A, merged into B, a draft, left the public's view; B merged into C, published: the public
    follows A again, and the next sync reports it merged into C."""
    (a, _, c), status, withdrawn, synced = followed_by_the_public(keeper, "draft", "published")

    assert status == 301
    assert a not in withdrawn
    assert synced[a]["merged_into"] == c, synced


@pytest.mark.django_db(transaction=True)
def test_the_kept_export_row_of_a_follower_names_the_live_incident(tmp_path):
    """the CSV (kept rows, refreshed at COMMIT) names C as A's merged_into after B into C."""
    keeper = make_user(roles.REVIEWER, confidential=True)
    a, b, c = (make_incident(title=f"Incident {label}") for label in "ABC")
    merges.incident_merge(user=keeper, pair=pair_of(a, b), survivor=b.public_id)
    merges.incident_merge(user=keeper, pair=pair_of(b, c), survivor=c.public_id)
    out = tmp_path / "incidents.csv"
    call_command("export_incidents", "--updated-since", SINCE, "-o", str(out))
    rows = {
        row["public_id"]: row["merged_into"] for row in csv.DictReader(io.StringIO(out.read_text(encoding="utf-8")))
    }
    assert rows[a.public_id] == c.public_id and rows[b.public_id] == c.public_id


def test_a_pair_both_of_whose_incidents_live_on_in_one_is_not_decided_different(keeper):
    # A decision there would say two events are apart that one incident now holds.
    a, x, b = make_incident(title="A"), make_incident(title="X"), make_incident(title="B")
    ax = pair_of(a, x)
    duplicates.duplicate_pair_decide(user=keeper, pair=ax, decision="unsure", note="maybe")
    merges.incident_merge(user=keeper, pair=pair_of(a, b), survivor=b.public_id)
    merges.incident_merge(user=keeper, pair=pair_of(x, b), survivor=b.public_id)
    assert DuplicatePair.objects.filter(pk=ax.pk).exists()

    with pytest.raises(services.RecordNotFound):
        duplicates.duplicate_pair_decide(user=keeper, pair=ax, decision="different", note="apart")
    assert DuplicatePair.objects.get(pk=ax.pk).decision == "unsure"


@pytest.mark.django_db(transaction=True)
def test_a_decision_different_made_while_both_sides_are_merged_into_a_third_is_not_overturned():
    """A Reviewer decides A and X different (the pair's row held meanwhile, as a rescoring's score
    write holds it) while a colleague merges A, then X, into B. The decision locked neither
    incident, so both merges read the pair as undecided and went through: B held two events
    decided apart. It now locks them first, so the merges wait, and the second is refused."""
    keeper = make_user(roles.REVIEWER, confidential=True)
    a, x, b = make_incident(title="A"), make_incident(title="X"), make_incident(title="B")
    ax = duplicates.duplicate_pair_decide(user=keeper, pair=pair_of(a, x), decision="unsure", note="maybe")
    ab = pair_of(a, b)

    def merges_of_both():
        merges.incident_merge(user=keeper, pair=ab, survivor=b.public_id)
        return merges.incident_merge(user=keeper, pair=pair_of(x, b), survivor=b.public_id)

    with psycopg.connect(**connection.get_connection_params()) as colleague:
        colleague.execute("SELECT 1 FROM incidents_duplicatepair WHERE id = %s FOR UPDATE", [ax.pk])
        decision, decided = in_threads(
            lambda: duplicates.duplicate_pair_decide(
                user=keeper, pair=ax, decision="different", note="apart", decision_read=ax.decision_read
            )
        )
        wait_until_waiting(colleague, 1)
        merging, merged = in_threads(merges_of_both)
        wait_until_waiting(colleague, 2)
    for thread in (*decision, *merging):
        thread.join(30)

    assert DuplicatePair.objects.get(pk=ax.pk).decision == "different", decided
    assert isinstance(merged[0], merges.MergeRefused), merged
    assert set(Incident.objects.filter(merged_into=b).values_list("pk", flat=True)) == {a.pk}
