"""What a history tells of changes hidden from its reader, and what reading it records: a change
only readers with Confidential access see counts on no page of other readers, names no writer or
time in their raw events; a confidential state shown to a reader with that access is recorded as
read, whatever the record is now. Each test failed before its fix, for the reason its docstring gives."""

from incidents import roles
from incidents.admin.base import HISTORY_PAGE_SIZE
from incidents.models import Claim, ConfidentialAccess
from tests.api_support import client_for, incident_url
from tests.factories import make_claim, make_incident, make_source, make_user


def _public_incident_with_an_informant():
    """A published, public incident with a public claim and an informant's confidential claim."""
    incident = make_incident(title="Public incident")
    make_claim(incident=incident, source=make_source(title="Public article"))
    informant = make_source(title="Informant K", confidential=True)
    make_claim(incident=incident, source=informant, confidential=True, excerpt="K said")
    return incident, informant


def _history_pages(user, incident, page_size=1) -> list[dict]:
    client = client_for(user)
    answer = client.get(incident_url(incident, "history/"), {"page_size": page_size})
    pages = []
    while True:
        assert answer.status_code == 200, answer.content
        pages.append(answer.json())
        if not pages[-1]["next"]:
            return pages
        answer = client.get(pages[-1]["next"])


def test_api_history_pages_do_not_tell_of_a_confidential_sources_rename(keeper, reviewer):
    """A Reviewer without Confidential access pages through a public incident's history. An
    analyst with Confidential access renames the informant's (confidential) source, cited only by a
    confidential claim: `_incidents_show_source_changed` writes the incident a history event (its
    version moved for Confidential readers alone). `history_visible_to` keeps that event in the
    query, and only `history_entries` drops it (bookkeeping alone), so the reader's pages now hold
    an extra, empty page whose cursor names the hidden event: they learn that something hidden
    about this incident changed, and when (its place in the order)."""
    incident, informant = _public_incident_with_an_informant()
    before = _history_pages(reviewer, incident)
    answer = client_for(keeper).patch(
        f"/api/v1/sources/{informant.pk}/",
        {"title": "Informant K, Hyesan", "version": informant.version},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    after = _history_pages(reviewer, incident)
    assert [page["results"] for page in after] == [page["results"] for page in before], (
        f"{len(after)} history pages after the hidden rename, {len(before)} before: {after[-1]['results']}"
    )


def test_admin_history_page_count_does_not_tell_of_hidden_changes(keeper, client):
    """The admin's History page of a public incident counts, for a Viewer without Confidential
    access, events it never shows: after HISTORY_PAGE_SIZE renames of the informant's confidential
    source, the Viewer's page (two entries) says "page 1 of 2", and page 2 is empty."""
    incident, informant = _public_incident_with_an_informant()
    viewer = make_user(roles.VIEWER)
    keeper_client = client_for(keeper)
    for number in range(HISTORY_PAGE_SIZE):
        informant.refresh_from_db()
        answer = keeper_client.patch(
            f"/api/v1/sources/{informant.pk}/",
            {"title": f"Informant K, version {number}", "version": informant.version},
            format="json",
        )
        assert answer.status_code == 200, answer.content
    client.force_login(viewer)
    page = client.get(f"/admin/incidents/incident/{incident.pk}/history/")
    assert page.status_code == 200
    text = page.content.decode()
    assert text.count("history-user") == 2
    assert "page 1 of" not in text, (
        "the Viewer's history page counts events it does not show: "
        + (text[text.index("page 1 of") : text.index("page 1 of") + 12])
    )


def test_api_history_raw_changes_do_not_name_who_made_a_hidden_change_nor_when(keeper, reviewer):
    """An analyst with Confidential access renames the informant's confidential source (cited only
    by a confidential claim of a public incident): a change staff without that access are never told
    (their version, `updated_by` and `updated_at` do not move: `disclosed_*`). A Reviewer without it
    then renames the incident. A Viewer reading the incident's history through the API gets, in that
    visible event's raw `changes`, `updated_by_id: [<keeper's id>, …]`, `updated_at: [<time of the
    hidden change>, …]` and `version: [2, 3]` (and `data.version` 3, where they were told 2):
    who worked on the incident in confidence, when, and how many hidden changes there were.
    `history._Reader.raw` passes the bookkeeping columns through as recorded."""
    incident, informant = _public_incident_with_an_informant()
    answer = client_for(keeper).patch(
        f"/api/v1/sources/{informant.pk}/",
        {"title": "Informant K, Hyesan", "version": informant.version},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    incident.refresh_from_db()
    hidden_change_at = incident.updated_at.isoformat()
    shown = client_for(reviewer).get(incident_url(incident)).json()
    answer = client_for(reviewer).patch(
        incident_url(incident), {"title": "Public incident, renamed", "version": shown["version"]}, format="json"
    )
    assert answer.status_code == 200, answer.content
    viewer = make_user(roles.VIEWER)
    told = client_for(viewer).get(incident_url(incident)).json()
    history = client_for(viewer).get(incident_url(incident, "history/"), {"page_size": 100}).json()["results"]
    [renamed] = [event for event in history if event["summary"] == "Incident changed"]
    raw = repr(renamed["changes"]) + repr(renamed["data"])
    assert (renamed["changes"] or {}).get("updated_by_id", [None])[0] != keeper.pk, (
        f"the Viewer's history names the keeper (id {keeper.pk}) as the writer before: {renamed['changes']}"
    )
    assert hidden_change_at not in raw, (
        f"the time of the hidden change is in the Viewer's history: {renamed['changes']}"
    )
    # Its version counted every change (3 where the Viewer is told 2): left out, with the writer
    # and time before, as the summary leaves them out.
    assert "version" not in renamed["data"] and told["version"] == 2


def test_api_history_records_reading_a_deleted_confidential_claim(keeper):
    """A confidential claim (an informant's words, on a public incident, of a public source) is
    deleted. Its events stay on the incident's history for readers with Confidential access, with
    its excerpt. Another such reader reads the history through the API: the answer shows the
    confidential claim's excerpt, yet "who read confidential records" gets no row naming it, since
    `access.confidential_records_of` reads the incident's current claims only (and the entries'
    `named`, the records their links name, not the claim an event is of)."""

    incident = make_incident(title="Public incident")
    make_claim(incident=incident, source=make_source(title="Public article"))
    secret = make_claim(
        incident=incident, source=make_source(title="NGO report"), confidential=True, excerpt="Informant K, Hyesan"
    )
    Claim.objects.filter(pk=secret.pk).delete()
    other_keeper = make_user(roles.REVIEWER, confidential=True)
    answer = client_for(other_keeper).get(incident_url(incident, "history/"), {"page_size": 100})
    assert answer.status_code == 200, answer.content
    assert "Informant K, Hyesan" in answer.content.decode()
    assert secret.pk in recorded_ids(other_keeper, "claim_ids")


def test_admin_source_history_records_reading_its_confidential_states(client):
    """A source recorded in confidence ("Informant K, Hyesan") is renamed and made public. Its admin
    History page shows a reader with Confidential access the states it had while confidential, the
    informant's name included, yet records no read of a confidential source: the page records
    `confidential_records_of(source)`, the source as it is now (public)."""

    source = make_source(title="Informant K, Hyesan", confidential=True)
    source.title = "Testimony from Ryanggang province"
    source.save()
    source.confidential = False
    source.save()
    other_keeper = make_user(roles.REVIEWER, confidential=True)
    client.force_login(other_keeper)
    page = client.get(f"/admin/incidents/source/{source.pk}/history/")
    assert page.status_code == 200
    assert "Informant K, Hyesan" in page.content.decode()
    assert source.pk in recorded_ids(other_keeper, "source_ids")


def recorded_ids(user, kind: str) -> set[int]:
    """The ids of one kind (`claim_ids`, `source_ids`) recorded as read by `user`."""
    return {pk for access in ConfidentialAccess.objects.filter(user=user) for pk in getattr(access, kind)}
