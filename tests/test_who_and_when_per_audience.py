"""Who changed an incident, and when, as each reader may be told it: a reader without Confidential
access is told who made the last change they can see, not the writer of a hidden one (a
confidential claim's excerpt edited), in the API and the admin; and the history rows written with a
merge or its undo decided in confidence name neither who made them nor when, as the merge's own
record does not (`merged_by`, `merged_at`: null)."""

import base64
import html
import io
import json
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from incidents import roles
from incidents.models import DuplicatePair, IncidentMerge
from tests.api_support import client_for, incident_url, results
from tests.database_support import migrate_incidents_back_to
from tests.factories import make_incident, make_user
from tests.test_merges import decide, merge_url, unmerge_url
from tests.test_merges import world as world
from tests.test_versions_per_audience import edit, edit_confidential_excerpt
from tests.test_versions_per_audience import incident as incident


@pytest.fixture
def writer():
    """A Reviewer without Confidential access, who edits what everyone sees."""
    return make_user(roles.REVIEWER, username="kim.writer")


@pytest.fixture
def hidden_edit_after_visible_one(keeper, writer, incident):
    """The writer's edit of the title, then the keeper's of the confidential claim's excerpt."""
    keeper.username = "lee.keeper"
    keeper.save()
    edit(writer, incident, {"title": "Repatriation at Dandong, 80 people"})
    edit_confidential_excerpt_next_day(keeper, incident)
    incident.refresh_from_db()
    return incident


def edit_confidential_excerpt_next_day(keeper, incident):
    """The keeper's edit, a day later: the admin writes times to the minute."""
    with time_machine.travel(timezone.now() + timedelta(days=1)):
        edit_confidential_excerpt(keeper, incident)


def shown_on_change_page(page: str, name: str) -> str:
    """The text of a read-only field of an admin change page."""
    (found,) = re.findall(rf'fieldBox field-{name}">.*?<div class="readonly">(.*?)</div>', page, re.DOTALL)
    return found


def listed(page: str, name: str) -> str:
    """The text of the one row's column `name` of an admin list."""
    (found,) = re.findall(rf'<td class="field-{name}[^"]*">(.*?)</td>', page, re.DOTALL)
    return found


class TestUpdatedBy:
    def test_the_api_names_the_writer_of_the_last_change_they_can_see(
        self, keeper, writer, reviewer, hidden_edit_after_visible_one
    ):
        incident = hidden_edit_after_visible_one
        told = {user: client_for(user).get(incident_url(incident)).json()["updated_by"] for user in (reviewer, keeper)}

        assert told == {reviewer: "kim.writer", keeper: "lee.keeper"}

    def test_the_admin_change_page_names_them_with_the_time_they_are_told(
        self, client, keeper, reviewer, hidden_edit_after_visible_one
    ):
        incident = hidden_edit_after_visible_one
        url = reverse("admin:incidents_incident_change", args=[incident.pk])
        pages = {}
        for user in (reviewer, keeper):
            client.force_login(user)
            pages[user] = client.get(url).content.decode()

        assert shown_on_change_page(pages[reviewer], "last_changed_by") == "kim.writer"
        assert "lee.keeper" not in pages[reviewer]
        assert shown_on_change_page(pages[keeper], "last_changed_by") == "lee.keeper"
        said = {user: shown_on_change_page(pages[user], "last_changed_at") for user in (reviewer, keeper)}
        assert said[reviewer] != said[keeper]

    def test_the_admin_list_shows_the_change_time_they_are_told(self, client, keeper, reviewer, incident):
        url = reverse("admin:incidents_incident_changelist")
        client.force_login(reviewer)
        before = listed(client.get(url).content.decode(), "last_changed_at")

        edit_confidential_excerpt_next_day(keeper, incident)

        assert listed(client.get(url).content.decode(), "last_changed_at") == before

    def test_a_refused_edit_names_the_writer_they_can_see(self, writer, reviewer, hidden_edit_after_visible_one):
        incident = hidden_edit_after_visible_one
        answer = client_for(reviewer).patch(incident_url(incident), {"title": "Another", "version": 1}, format="json")

        assert answer.status_code == 409
        assert "by kim.writer" in str(answer.json()) and "lee.keeper" not in str(answer.json())

    def test_a_deleted_writer_is_named_to_no_one(self, keeper, writer, reviewer, hidden_edit_after_visible_one):
        incident = hidden_edit_after_visible_one
        writer.delete()

        told = {user: client_for(user).get(incident_url(incident)).json()["updated_by"] for user in (reviewer, keeper)}

        assert told == {reviewer: None, keeper: "lee.keeper"}


def test_the_public_page_says_the_day_of_the_last_change_the_public_can_see(client, keeper, incident):
    url = reverse("public:incident", args=[incident.public_id])
    before = re.search(r'<time datetime="([^"]+)"', client.get(url).content.decode())[1]

    edit_confidential_excerpt_next_day(keeper, incident)

    assert re.search(r'<time datetime="([^"]+)"', client.get(url).content.decode())[1] == before


def merged_in_confidence(world):
    """`world`'s pair merged by a Reviewer with Confidential access (its merged incident holds
    confidential claims): the merge is decided in confidence."""
    insider = make_user(roles.REVIEWER, confidential=True, username="lee.insider")
    assert client_for(insider).post(merge_url(world["pair"]), {}, format="json").status_code == 201
    merge = IncidentMerge.objects.get()
    assert merge.note_confidential
    return insider, merge


def api_history(user, incident) -> list[dict]:
    answer = client_for(user).get(incident_url(incident, "history/"), {"page_size": 200})
    assert answer.status_code == 200, answer.content
    return results(answer)


class TestHistoryOfAMergeDecidedInConfidence:
    def test_the_api_names_neither_who_nor_when_of_any_row_it_wrote(self, world, reviewer):
        merged_in_confidence(world)

        rows = api_history(reviewer, world["survivor"])

        written = [row for row in rows if row["at"] is None]
        # The merge itself, the revision it proposed, the pair it decided, the claim it marked a conflict.
        assert {row["record"] for row in written} >= {
            "incidents.IncidentMerge",
            "incidents.IncidentRevision",
            "incidents.DuplicatePair",
            "incidents.Claim",
        }
        assert all(row["user"] is None for row in written)
        assert "lee.insider" not in str(rows)
        (revision,) = [row for row in written if row["record"] == "incidents.IncidentRevision"]
        assert (revision["data"]["proposed_by_id"], revision["data"]["created_at"]) == (None, None)
        assert all(row["data"].get("updated_at") is None for row in written)

    def test_the_rows_keep_their_place_in_the_order(self, world, reviewer):
        insider, _merge = merged_in_confidence(world)

        told = [(row["record"], row["action"]) for row in api_history(reviewer, world["survivor"])]
        shown_all = [(row["record"], row["action"]) for row in api_history(insider, world["survivor"])]

        assert told == [row for row in shown_all if row in told]

    def test_a_reader_with_confidential_access_reads_who_and_when(self, world):
        insider, _merge = merged_in_confidence(world)

        rows = api_history(insider, world["survivor"])

        merged = [row for row in rows if row["user"] == "lee.insider"]
        assert {row["record"] for row in merged} >= {"incidents.IncidentMerge", "incidents.IncidentRevision"}
        assert all(row["at"] is not None for row in rows)

    def test_the_pages_of_the_api_history_hold_no_time_in_their_cursor(self, world, reviewer):
        merged_in_confidence(world)
        url, paged = incident_url(world["survivor"], "history/"), []
        answer = client_for(reviewer).get(url, {"page_size": 1}).json()
        positions = []
        while True:
            paged += answer["results"]
            if answer["next"] is None:
                break
            cursor = parse_qs(urlparse(answer["next"]).query)["cursor"][0]
            positions.append(json.loads(parse_qs(base64.b64decode(cursor).decode())["p"][0]))
            answer = client_for(reviewer).get(answer["next"]).json()

        # Each names its page's last event, whose time may be withheld: the event, not the time.
        assert positions and all(len(position) == 2 and position[0].isdigit() for position in positions)
        assert paged == api_history(reviewer, world["survivor"])

    def test_a_cursor_naming_an_event_they_may_not_see_answers_400(self, world, reviewer):
        def page_after(record, event_model: str):
            (event,) = record.events.filter(pgh_label="insert")
            position = json.dumps([str(event.pgh_id), event_model])
            cursor = base64.b64encode(f"p={position}".encode()).decode()
            return client_for(reviewer).get(incident_url(world["merged"], "history/"), {"cursor": cursor})

        hidden = page_after(world["hidden"][0], "incidents.ClaimEvent")

        assert hidden.status_code == 400 and "cursor" in hidden.json()
        assert page_after(world["conflicting"], "incidents.ClaimEvent").status_code == 200

    def test_the_undo_names_neither_who_nor_when(self, world, reviewer):
        insider, _merge = merged_in_confidence(world)
        assert client_for(insider).post(unmerge_url(world["merged"]), {}, format="json").status_code == 200

        rows = api_history(reviewer, world["merged"])

        assert "lee.insider" not in str(rows)
        undone = [row for row in rows if row["record"] == "incidents.Claim" and row["action"] == "update"]
        assert undone and all((row["user"], row["at"]) == (None, None) for row in undone)

    def test_the_admin_history_page_says_they_are_withheld(self, client, world, reviewer):
        insider, _merge = merged_in_confidence(world)
        url = reverse("admin:incidents_incident_history", args=[world["survivor"].pk])
        client.force_login(reviewer)

        page = html.unescape(client.get(url).content.decode())

        assert "lee.insider" not in page
        rows = re.findall(r"<tr>.*?</tr>", page, re.DOTALL)
        withheld = [row for row in rows if 'class="history-withheld"' in row]
        assert any("Incident revision added" in row for row in withheld)
        assert all(row.count('class="history-withheld"') == 2 for row in withheld)
        client.force_login(insider)
        assert "lee.insider" in client.get(url).content.decode()


def test_a_pair_decided_in_confidence_writes_nothing_else_in_its_context(world, reviewer):
    # Its decision is its own row's only (duplicates.duplicate_pair_decide): its own event already
    # withholds who and when; no other row of the incident's history shares its context.
    insider = make_user(roles.REVIEWER, confidential=True, username="lee.insider")
    decide(insider, world["pair"], "unsure", "")
    assert DuplicatePair.objects.get().note_confidential

    rows = api_history(reviewer, world["survivor"])

    (decided,) = [row for row in rows if row["record"] == "incidents.DuplicatePair" and row["action"] == "update"]
    assert (decided["user"], decided["at"]) == (None, None)
    assert "lee.insider" not in str(rows)


@pytest.mark.django_db(transaction=True)
def test_the_migration_names_the_writer_of_the_last_change_they_could_see(keeper, writer, reviewer, incident):
    edit(writer, incident, {"title": "Repatriation at Dandong, 80 people"})
    untouched = make_incident(title="Written once", created_by=writer, updated_by=writer)
    migrate_incidents_back_to("0096_source_and_response_versions_per_audience")
    try:
        # A hidden change before the migration: a new version of every change alone (0096's trigger).
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE incidents_incident SET version = version + 1, updated_at = now(), updated_by_id = %s "
                "WHERE id = %s",
                [keeper.pk, incident.pk],
            )
    finally:
        call_command("migrate", "incidents", verbosity=0, stdout=io.StringIO())

    told = {user: client_for(user).get(incident_url(incident)).json()["updated_by"] for user in (reviewer, keeper)}
    assert told == {reviewer: writer.username, keeper: keeper.username}
    assert client_for(reviewer).get(incident_url(untouched)).json()["updated_by"] == writer.username
