"""Merges among other writes over time: a revision or an edit read before a merge, a sync across a
merge, its undo and the survivor's publication, a release after a merge, and deleting an incident
that is in a duplicate pair. Each test failed before its fix, for the reason its docstring gives."""

from datetime import UTC, datetime

from incidents import roles, services
from incidents.models import Claim, DuplicatePair, Incident, IncidentMerge
from tests.api_support import API, client_for, incident_url, results
from tests.factories import make_claim, make_incident, make_source, make_user
from tests.test_admin import logged_in, run_action

WITHDRAWN = f"{API}/incidents/withdrawn/"
# Publishing an incident, its permissions read (`incidents.services.incident_transition`).
PUBLICATION_QUERIES = 9


def _merge(reviewer, merged, survivor) -> None:
    first, second = sorted((merged, survivor), key=lambda incident: incident.pk)
    pair = DuplicatePair.objects.create(incident_a=first, incident_b=second, score=0.9)
    answer = client_for(reviewer).post(f"{API}/duplicates/{pair.pk}/merge/", {"survivor": survivor.public_id})
    assert answer.status_code == 201, answer.content


def _withdrawn(client, since: str) -> list[str]:
    return [row["id"] for row in results(client.get(WITHDRAWN, {"since": since}))]


def _synced(client, since: str) -> dict[str, str | None]:
    rows = results(client.get(f"{API}/incidents/", {"updated_since": since}))
    return {row["public_id"]: row["merged_into"] for row in rows}


def test_a_merged_incident_the_public_may_follow_again_is_reported_by_the_next_sync(client):
    """A published incident merged into a draft leaves the public's view (`withdrawn/` names it, and
    a partner drops it). Once the survivor is published, the public follows it again (its address
    answers 301), and `withdrawn/` no longer names it ("never of one they may see or follow again:
    the list reports that one as changed"); but the list never reports it either, since the merged
    incident's own version did not move: the partner's copy never learns where it went."""
    reviewer = make_user(roles.REVIEWER, confidential=True)
    merged = make_incident(title="Published, merged into a draft")
    survivor = make_incident(title="Draft survivor", review_state="draft")
    before_merge = datetime.now(UTC).isoformat()
    _merge(reviewer, merged, survivor)
    # The partner's sync: told it left, it drops it from its copy.
    assert _withdrawn(client_for(), before_merge) == [merged.public_id]

    after_first_sync = datetime.now(UTC).isoformat()
    run_action(logged_in(client, reviewer), "publish", survivor)

    # The public follows it again ...
    assert client_for().get(incident_url(merged)).status_code == 301
    assert _withdrawn(client_for(), after_first_sync) == []
    # ... so the next sync must report it, with where it went.
    assert _synced(client_for(), after_first_sync) == {
        survivor.public_id: None,
        merged.public_id: survivor.public_id,
    }


def test_a_reviewer_with_confidential_access_deletes_an_incident_that_has_a_duplicate_pair(client):
    """Every write queues a rescoring, which pairs the incident with any look-alike; from then on the
    admin refuses its deletion (403: "your account doesn't have permission to delete … duplicate
    pair"), though the API deletes it (the pair goes with it, as its foreign keys cascade). Whoever
    may delete (a Reviewer with Confidential access) may no longer do so in the admin."""
    keeper = make_user(roles.REVIEWER, confidential=True)
    entered_twice, original = make_incident(title="Entered twice"), make_incident(title="Original")
    DuplicatePair.objects.create(incident_a=entered_twice, incident_b=original, score=0.9)
    admin = logged_in(client, keeper)

    answer = admin.post(f"/admin/incidents/incident/{entered_twice.pk}/delete/", {"post": "yes"})

    assert answer.status_code == 302, answer.status_code
    assert not Incident.objects.filter(pk=entered_twice.pk).exists()


def _merged_with_a_public_claim(reviewer):
    """B (survivor) and A, each with a public claim; A is merged into B by `reviewer`. Returns the
    survivor, the merged incident and the claim that moved."""
    merged, survivor = make_incident(title="A, merged"), make_incident(title="B, survivor")
    moved = make_claim(incident=merged, source=make_source(title="Outlet that reported A"))
    make_claim(incident=survivor, source=make_source(title="Outlet that reported B"))
    return survivor, merged, moved


def test_a_revision_proposed_before_a_merge_is_stale_after_it_and_never_deletes_the_moved_claims():
    """The merge moves A's public claims onto B and saves B, but B's version as staff without
    Confidential access are told it (`disclosed_version`, by which an Analyst's revision is
    compared) does not move: the claims moved before the survivor's save, which wrote bookkeeping
    columns alone. An Analyst's revision of B's claims proposed before the merge is therefore
    accepted as current, and replaces B's claims with those she saw: the claim the merge moved is
    deleted, and the undo cannot bring it back."""
    reviewer, analyst = make_user(roles.REVIEWER), make_user(roles.ANALYST)
    survivor, merged, moved = _merged_with_a_public_claim(reviewer)
    read = client_for(analyst).get(incident_url(survivor)).json()
    proposed = client_for(analyst).patch(
        incident_url(survivor),
        {"version": read["version"], "claims": [{"id": row["id"], "excerpt": "Edited"} for row in read["claims"]]},
        format="json",
    )
    assert proposed.status_code == 202, proposed.content
    _merge(reviewer, merged, survivor)

    answer = client_for(reviewer).post(f"{API}/revisions/{proposed.json()['id']}/accept/", {})

    assert Claim.objects.filter(pk=moved.pk).exists(), "the claim the merge moved was deleted by a stale revision"
    assert answer.status_code == 409, answer.content


def test_a_stale_edit_by_staff_without_confidential_access_is_refused_after_a_merge():
    """A Reviewer (no Confidential access) reads B, another merges A into B, and the first saves B's
    claims as read: their version is still current to them, so the write passes and deletes the
    claim the merge moved."""
    reviewer, other = make_user(roles.REVIEWER), make_user(roles.REVIEWER)
    survivor, merged, moved = _merged_with_a_public_claim(reviewer)
    read = client_for(reviewer).get(incident_url(survivor)).json()
    _merge(other, merged, survivor)

    answer = client_for(reviewer).patch(
        incident_url(survivor),
        {"version": read["version"], "claims": [{"id": row["id"]} for row in read["claims"]]},
        format="json",
    )

    assert Claim.objects.filter(pk=moved.pk).exists(), "a stale edit deleted the claim the merge moved"
    assert answer.status_code == 409, answer.content


def test_the_public_sync_reports_the_survivor_of_a_merge_and_of_its_undo():
    """The survivor gains the merged incident's public claims (and loses them at the undo), but its
    change time as readers without Confidential access are told it does not move: `updated_since`
    leaves it out, and a partner's copy keeps the survivor's claims as they were."""
    reviewer = make_user(roles.REVIEWER)
    survivor, merged, _ = _merged_with_a_public_claim(reviewer)
    before_merge = datetime.now(UTC).isoformat()
    _merge(reviewer, merged, survivor)
    assert survivor.public_id in _synced(client_for(), before_merge), "the merge's survivor is not synced"

    before_undo = datetime.now(UTC).isoformat()
    assert client_for(reviewer).post(f"{API}/incidents/{merged.public_id}/unmerge/").status_code == 200
    assert survivor.public_id in _synced(client_for(), before_undo), "the undo's survivor is not synced"


def _release_file(client, release: dict, name: str) -> bytes:
    return b"".join(client.get(f"{API}/releases/{release['name']}/files/{name}/").streaming_content)


def test_a_release_after_a_merge_says_its_survivor_was_updated():
    """The release after a merge holds the merged incident's claims on the survivor (claims.csv), but
    CHANGES.csv names only the merged incident: the survivor's released version did not rise."""
    keeper = make_user(roles.REVIEWER, confidential=True)
    survivor, merged, moved = _merged_with_a_public_claim(keeper)
    api = client_for(keeper)
    assert api.post(f"{API}/releases/").status_code == 201
    _merge(keeper, merged, survivor)

    after = api.post(f"{API}/releases/").json()

    claims = _release_file(api, after, "claims.csv").decode()
    assert f"{moved.pk},{survivor.public_id}," in claims  # the moved claim is released on the survivor
    assert _release_file(api, after, "CHANGES.csv").decode().splitlines()[1:] == [
        f"{merged.public_id},merged,{survivor.public_id}",
        f"{survivor.public_id},updated,",
    ]


def test_the_undo_of_a_merge_decided_in_confidence_names_its_reviewer_to_no_one_without_access():
    """A Reviewer with Confidential access merges A (which holds an informant's confidential claim)
    into B: decided in confidence, its Reviewer and time are withheld from staff without that
    access, and so is the incidents' last writer ("updated_by: null where the merge, or its undo,
    is the last change they see"). After the undo, a Viewer reads the survivor's `updated_by` as the
    Reviewer's username, and its `updated_at` as the merge's own time: the survivor's version for
    them lagged one change behind (the merge moved its rows before saving it), and the catch-up at
    the undo gave them the merge's writer and time, which `_writer_withheld` no longer matched."""
    keeper = make_user(roles.REVIEWER, confidential=True)
    viewer = client_for(make_user(roles.VIEWER))
    merged, survivor = make_incident(title="A"), make_incident(title="B")
    make_claim(incident=merged, source=make_source(title="Outlet"))
    make_claim(incident=merged, source=make_source(title="Informant"), confidential=True)
    pair = DuplicatePair.objects.create(incident_a=merged, incident_b=survivor, score=0.9)
    merge = client_for(keeper).post(f"{API}/duplicates/{pair.pk}/merge/", {"survivor": survivor.public_id})
    assert merge.status_code == 201, merge.content
    assert IncidentMerge.objects.get().note_confidential  # decided in confidence
    assert client_for(keeper).post(f"{API}/incidents/{merged.public_id}/unmerge/").status_code == 200

    read = viewer.get(incident_url(survivor)).json()

    assert read["updated_by"] != keeper.username, f"the confidential merge's Reviewer is named: {read['updated_by']}"


def test_a_merge_never_tells_staff_without_access_the_time_and_author_of_a_hidden_change():
    """A Reviewer with Confidential access records an informant's confidential claim on B: staff
    without that access are told neither its time nor its author (B's version, `updated_at` and
    `updated_by` stay as they were for them). A Reviewer without access then merges A into B. The
    merge moves A's public claims first, whose trigger gives readers without access B's stored
    change time, the hidden write's, then saves B with bookkeeping columns alone: a Viewer now
    reads B's `updated_at` as the very moment the informant's claim was recorded, and
    `updated_by` as the Reviewer who recorded it."""
    keeper = make_user(roles.REVIEWER, confidential=True)
    reviewer = make_user(roles.REVIEWER)
    viewer = client_for(make_user(roles.VIEWER))
    merged, survivor = make_incident(title="A"), make_incident(title="B")
    make_claim(incident=merged, source=make_source(title="Outlet"))
    informant = make_source(title="Informant")
    read = client_for(keeper).get(incident_url(survivor)).json()
    hidden = client_for(keeper).patch(
        incident_url(survivor),
        {
            "version": read["version"],
            "claims": [
                {"source": informant.pk, "confidential": True, "source_connection": "witness", "people_count": 80}
            ],
        },
        format="json",
    )
    assert hidden.status_code == 200, hidden.content
    hidden_at = client_for(keeper).get(incident_url(survivor)).json()["updated_at"]
    assert viewer.get(incident_url(survivor)).json()["updated_at"] != hidden_at  # hidden, as it should be

    _merge(reviewer, merged, survivor)
    after = viewer.get(incident_url(survivor)).json()

    assert (after["updated_at"], after["updated_by"]) != (hidden_at, keeper.username), (
        "the Viewer is told when, and by whom, the informant's claim was recorded"
    )


def test_publishing_an_incident_nothing_was_merged_into_asks_once_whether_anything_was(django_assert_num_queries):
    """Publishing (or lifting confidentiality) gives the incidents merged into it a new version, so
    that a sync reports them followed again. With none merged into it, which is most publications,
    it still turned the incidents' update triggers off and on, ran the UPDATE and wrote history
    for no incident: five statements where asking whether there is any is one."""
    reviewer = make_user(roles.REVIEWER, confidential=True)
    first, lone, survivor = (
        make_incident(title=title, review_state="in_review") for title in ("First", "Lone", "Survivor")
    )
    _merge(reviewer, make_incident(title="Merged into the survivor"), survivor)
    for incident in (lone, survivor):
        incident.refresh_from_db()
    # The reviewer's permissions are read once, at the first.
    services.incident_transition(incident=first, action="publish", user=reviewer)

    with django_assert_num_queries(PUBLICATION_QUERIES):
        services.incident_transition(incident=lone, action="publish", user=reviewer)
    # With an incident merged into it, six more: the triggers off, its new version, the history's
    # context and rows, the triggers on, its export rows.
    with django_assert_num_queries(PUBLICATION_QUERIES + 6):
        services.incident_transition(incident=survivor, action="publish", user=reviewer)
    assert Incident.objects.get(title="Merged into the survivor").version > 1
