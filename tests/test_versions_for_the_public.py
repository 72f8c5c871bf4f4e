"""A source's, a response's, a place's and an incident's version and change time for the public
(anonymous readers and accounts that are not staff), apart from those of staff: the public reads
neither a source's staff-only `notes`, nor a response's links to incidents not published, nor a
sensitive place's exact coordinates (or those of a place inside one), its own or those of the place
an incident happened at, so a change of those moves neither the version, the change time nor the
ETag it is told, nor its sync, while staff, who read them, are told it. A writer who is not staff (a
partner tool's account) edits by the version the public is told."""

import csv
import io
import re
from datetime import date

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from incidents import roles
from incidents.models import Incident, IncidentRevision, Place, Response
from tests.api_support import API, client_for, etag_version, results
from tests.database_support import migrate_incidents_back_to
from tests.factories import make_incident, make_organization, make_place, make_source, make_user
from tests.test_merges import merge_url, unmerge_url
from tests.test_merges import world as world
from tests.test_releases import files_of, release, rows
from tests.test_versions_per_audience_sources import edit, linked_ids, read, told, url_of


@pytest.fixture
def article():
    return make_source(title="Repatriations at Dandong", notes="Called the editor")


@pytest.fixture
def published():
    return make_incident(title="Repatriation at Dandong")


@pytest.fixture
def response(published):
    """A public statement about a published incident."""
    response = Response.objects.create(
        organization=make_organization(name="Human Rights Watch"), kind="statement", date=date(2023, 10, 10)
    )
    response.incidents.set([published])
    return response


@pytest.fixture(params=["draft", "in_review"])
def unpublished(request):
    return make_incident(title="Arrests in Hunchun", review_state=request.param)


@pytest.fixture
def partner():
    """A partner tool's account: the Analyst role, which may change sources and responses, but not
    staff, so it reads what the public reads."""
    return make_user(roles.ANALYST, is_staff=False)


def linked_to(response, incident) -> dict:
    return {"incidents": [*linked_ids(response), incident.public_id]}


@pytest.fixture(params=["notes", "draft linked", "draft unlinked"])
def staff_only(request, keeper, article, response, unpublished):
    """A record and an edit only staff see, made ready (the draft linked first, to be unlinked)."""
    if request.param == "notes":
        return article, {"notes": "Called the editor again"}
    if request.param == "draft linked":
        return response, linked_to(response, unpublished)
    edit(keeper, response, linked_to(response, unpublished))
    return response, {"incidents": [incident for incident in linked_ids(response) if incident != unpublished.public_id]}


class TestThePublic:
    def test_is_not_told_a_change_only_staff_see(self, keeper, staff_only, partner):
        record, change = staff_only
        before = {reader: read(reader, record) for reader in (None, partner)}

        edit(keeper, record, change)

        assert {reader: read(reader, record) for reader in (None, partner)} == before

    def test_staff_without_confidential_access_are_told_it(self, keeper, reviewer, staff_only):
        record, change = staff_only
        version, updated_at, _etag = told(reviewer, record)

        edit(keeper, record, change)

        now_version, now_updated_at, now_etag = told(reviewer, record)
        assert (now_version, etag_version(now_etag)) == (version + 1, version + 1)
        assert now_updated_at > updated_at

    def test_readers_with_confidential_access_are_told_it(self, keeper, staff_only):
        record, change = staff_only
        version, _, _ = told(keeper, record)

        edit(keeper, record, change)

        assert told(keeper, record)[0] == version + 1

    @pytest.mark.parametrize(
        "visible",
        [
            lambda article, response: (article, {"title": "Repatriations at Dandong, corrected"}),
            lambda article, response: (response, {"description": "Calls on China to stop"}),
            lambda article, response: (response, linked_to(response, make_incident())),
        ],
        ids=["title", "description", "published incident linked"],
    )
    def test_is_told_a_change_it_can_see(self, keeper, reviewer, article, response, visible):
        record, change = visible(article, response)
        before = {reader: told(reader, record) for reader in (None, reviewer)}

        edit(keeper, record, change)

        for reader, (version, updated_at, etag) in before.items():
            now_version, now_updated_at, now_etag = told(reader, record)
            assert (now_version, etag_version(now_etag)) == (version + 1, version + 1) != (version, etag_version(etag))
            assert now_updated_at > updated_at

    def test_is_told_a_change_it_can_see_after_one_it_cannot_by_one(self, keeper, staff_only):
        record, change = staff_only
        version, _, _ = told(None, record)
        edit(keeper, record, change)

        edit(keeper, record, {"title": "Corrected"} if "notes" in change else {"description": "Corrected"})

        assert told(None, record)[0] == version + 1

    @pytest.mark.parametrize("published_before", [False, True], ids=["published", "returned to draft"])
    def test_is_told_the_linked_incident_published_or_returned_to_draft(
        self, keeper, reviewer, response, published_before
    ):
        incident = make_incident(review_state="published" if published_before else "in_review")
        edit(keeper, response, linked_to(response, incident))
        before = {reader: told(reader, response)[0] for reader in (None, reviewer)}

        edit(keeper, incident, {"review_state": "draft" if published_before else "published"})

        # Staff without Confidential access saw the link throughout: they are told too, as before.
        assert {reader: told(reader, response)[0] for reader in (None, reviewer)} == {
            reader: version + 1 for reader, version in before.items()
        }

    @pytest.mark.parametrize("confidential_before", [False, True], ids=["made confidential", "made public"])
    def test_is_not_told_a_linked_draft_made_confidential_or_public(
        self, keeper, reviewer, response, unpublished, confidential_before
    ):
        # Staff without Confidential access see the link come or go; the public never saw it.
        Incident.objects.filter(pk=unpublished.pk).update(confidential=confidential_before)
        edit(keeper, response, linked_to(response, unpublished))
        before = {reader: told(reader, response)[0] for reader in (None, reviewer)}

        edit(keeper, unpublished, {"confidential": not confidential_before})

        assert {reader: told(reader, response)[0] for reader in (None, reviewer)} == {
            None: before[None],
            reviewer: before[reviewer] + 1,
        }


class TestAWriterWhoIsNotStaff:
    def test_edits_by_the_public_version_after_a_notes_change(self, keeper, partner, article):
        body, etag = read(partner, article)
        edit(keeper, article, {"notes": "Called the editor again"})

        answer = client_for(partner).patch(
            url_of(article), {"title": "Corrected", "notes": None}, format="json", HTTP_IF_MATCH=etag
        )

        assert answer.status_code == 200, answer.content
        assert answer["ETag"] == f'"public.{body["version"] + 1}"'
        article.refresh_from_db()
        assert (article.title, article.notes) == ("Corrected", "Called the editor again")

    @pytest.mark.parametrize("by_header", [True, False], ids=["If-Match", "body"])
    def test_a_stale_edit_after_a_draft_linked_is_accepted_and_keeps_the_link(
        self, keeper, partner, response, unpublished, by_header
    ):
        body, etag = read(partner, response)
        edit(keeper, response, linked_to(response, unpublished))

        # The links as they read them (not the draft) sent back, with their change.
        sent = {"incidents": body["incidents"], "description": "Corrected"}
        answer = client_for(partner).patch(
            url_of(response),
            sent | ({} if by_header else {"version": body["version"]}),
            format="json",
            **({"HTTP_IF_MATCH": etag} if by_header else {}),
        )

        assert answer.status_code == 200, answer.content
        assert answer.json()["incidents"] == body["incidents"]
        assert unpublished.public_id in linked_ids(response)

    @pytest.mark.parametrize("by_header", [True, False], ids=["If-Match", "body"])
    def test_a_stale_edit_after_a_linked_draft_was_published_is_refused_and_the_link_kept(
        self, keeper, partner, response, by_header
    ):
        draft = make_incident(title="Arrests in Hunchun", review_state="in_review")
        edit(keeper, response, linked_to(response, draft))
        body, etag = read(partner, response)
        assert draft.public_id not in body["incidents"]
        edit(keeper, draft, {"review_state": "published"})

        # The links as they read them (without the incident now published) sent back.
        sent = {"incidents": body["incidents"], "description": "Corrected"}
        answer = client_for(partner).patch(
            url_of(response),
            sent | ({} if by_header else {"version": body["version"]}),
            format="json",
            **({"HTTP_IF_MATCH": etag} if by_header else {}),
        )

        assert answer.status_code == (412 if by_header else 409), answer.content
        assert draft.public_id in linked_ids(response)

    def test_a_stale_edit_after_a_change_it_can_see_is_refused(self, keeper, partner, article):
        _, etag = read(partner, article)
        edit(keeper, article, {"title": "Changed by the keeper"})

        answer = client_for(partner).patch(url_of(article), {"title": "Mine"}, format="json", HTTP_IF_MATCH=etag)

        assert answer.status_code == 412


class TestHistory:
    def test_a_write_of_the_public_version_alone_is_no_event(self, keeper, response):
        edit(keeper, response, linked_to(response, make_incident()))
        events = apps.get_model("incidents", "ResponseEvent").objects.filter(pgh_obj=response)
        assert list(events.order_by("pgh_id").values_list("pgh_label", flat=True)) == ["insert", "update"]

        # The write the link's trigger makes, said again by hand: the row's trigger keeps the
        # columns as they are, and nothing else changed.
        Response.objects.filter(pk=response.pk).update(public_version=99)

        assert events.count() == 2
        response.refresh_from_db()
        assert response.public_version == response.disclosed_version


@pytest.mark.django_db(transaction=True)
def test_the_migration_starts_the_publics_versions_as_those_of_staff_without_confidential_access(
    keeper, reviewer, article
):
    migrate_incidents_back_to("0097_incident_disclosed_updated_by")
    try:
        # A change readers without Confidential access were not told, before the migration: a new
        # version of every change alone (0096's trigger keeps theirs).
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE incidents_source SET version = version + 1, updated_at = now() WHERE id = %s", [article.pk]
            )
    finally:
        call_command("migrate", "incidents", verbosity=0, stdout=io.StringIO())
    events = apps.get_model("incidents", "SourceEvent").objects.filter(pgh_obj=article)
    recorded = events.count()

    article.refresh_from_db()
    assert (article.version, article.disclosed_version, article.public_version) == (2, 1, 1)
    assert article.public_updated_at == article.disclosed_updated_at < article.updated_at
    assert told(None, article)[0] == told(reviewer, article)[0] == 1
    # Their triggers count from there: a notes edit moves the staff's alone.
    edit(keeper, article, {"notes": "Called the editor again"})
    assert (told(None, article)[0], told(reviewer, article)[0], told(keeper, article)[0]) == (1, 2, 3)
    assert events.count() == recorded + 1


class TestAMerge:
    def test_of_an_incident_the_public_may_not_see_tells_it_nothing_of_a_response_about_both(self, world, reviewer):
        # Its list of the response's incidents never showed the one in review, merged or not.
        response, survivor, merged = world["response"], world["survivor"], world["merged"]
        Incident.objects.filter(pk=merged.pk).update(review_state="in_review")
        response.incidents.add(survivor)
        before = {reader: told(reader, response)[0] for reader in (None, reviewer)}

        assert client_for(reviewer).post(merge_url(world["pair"]), {}, format="json").status_code == 201
        assert {reader: told(reader, response)[0] for reader in (None, reviewer)} == {
            None: before[None],
            reviewer: before[reviewer] + 1,
        }

        assert client_for(reviewer).post(unmerge_url(merged), {}, format="json").status_code == 200
        assert {reader: told(reader, response)[0] for reader in (None, reviewer)} == {
            None: before[None],
            reviewer: before[reviewer] + 2,
        }


@pytest.fixture
def places():
    """A province, a town in it marked sensitive, and the gate of a facility in the town."""
    province = make_place(name="Jilin", kind="province", latitude=43.6, longitude=126.2)
    town = make_place(name="Tumen", parent=province, latitude=42.97, longitude=129.84, sensitive=True)
    gate = make_place(name="Gate", kind="facility", parent=town, latitude=42.912345, longitude=129.512345)
    return {"province": province, "town": town, "gate": gate}


def listed(reader, place: Place) -> dict:
    """`place` as the API's list of places shows it to `reader`."""
    [body] = [
        body for body in results(client_for(reader).get(f"{API}/places/", {"page_size": 200})) if body["id"] == place.pk
    ]
    return body


class TestAPlace:
    @pytest.mark.parametrize("name", ["town", "gate"], ids=["sensitive", "inside a sensitive one"])
    def test_the_public_is_not_told_its_exact_coordinates_corrected(self, keeper, reviewer, partner, places, name):
        place = places[name]
        before = {reader: (read(reader, place), listed(reader, place)) for reader in (None, partner)}
        staff_told = told(reviewer, place)

        edit(keeper, place, {"latitude": 42.9, "longitude": 129.5})

        assert {reader: (read(reader, place), listed(reader, place)) for reader in (None, partner)} == before
        # Staff, who read them (with Confidential access or without), are told it.
        for staff in (reviewer, keeper):
            now_version, now_updated_at, now_etag = told(staff, place)
            assert (now_version, etag_version(now_etag)) == (staff_told[0] + 1, staff_told[0] + 1)
            assert now_updated_at > staff_told[1]
            assert listed(staff, place)["version"] == now_version

    @pytest.mark.parametrize(
        "change",
        [
            {"name": "Tumen City"},
            {"sensitive": False},
            {"parent": None, "country": "CN", "in_no_country": False},
            {"kind": "other"},
        ],
        ids=["renamed", "un-marked", "moved", "another kind"],
    )
    def test_the_public_is_told_a_change_it_can_see(self, keeper, reviewer, places, change):
        town = places["town"]
        before = {reader: told(reader, town) for reader in (None, reviewer)}

        edit(keeper, town, change)

        for reader, (version, updated_at, etag) in before.items():
            now_version, now_updated_at, now_etag = told(reader, town)
            assert (now_version, etag_version(now_etag)) == (version + 1, version + 1) != (version, etag_version(etag))
            assert now_updated_at > updated_at

    def test_the_public_is_told_the_place_marked_sensitive_and_its_coordinates_coarsened(self, reviewer, places):
        province = places["province"]
        version, _, _ = told(None, province)
        edit(reviewer, province, {"sensitive": True})
        assert told(None, province)[0] == version + 1

        # Coarsened before and after (it shows no coordinates, none above it has any): not told.
        edit(reviewer, province, {"latitude": 43.7, "longitude": 126.3})
        assert told(None, province)[0] == version + 1

    def test_the_public_is_told_exact_coordinates_it_reads_corrected(self, reviewer, places):
        province = places["province"]
        version, _, _ = told(None, province)

        edit(reviewer, province, {"latitude": 43.7, "longitude": 126.3})

        assert told(None, province)[0] == version + 1

    def test_the_public_is_told_a_change_it_can_see_after_one_it_cannot_by_one(self, keeper, reviewer, places):
        gate = places["gate"]
        version, _, _ = told(None, gate)
        edit(keeper, gate, {"latitude": 42.9, "longitude": 129.5})

        edit(keeper, gate, {"name": "North gate"})

        assert told(None, gate)[0] == version + 1
        assert told(reviewer, gate)[0] == version + 2

    def test_a_place_inside_one_whose_coordinates_it_shows_moved_keeps_its_own_versions(self, reviewer, places):
        # The coordinates the public reads of a place inside a sensitive one are those of a place
        # above it (the province, for the gate): they follow that place's, whose versions move; the
        # gate's record did not change, and its versions, every reader's, stay as they were.
        province, gate = places["province"], places["gate"]
        before = {reader: told(reader, gate) for reader in (None, reviewer)}
        province_version, _, _ = told(None, province)

        edit(reviewer, province, {"latitude": 43.7, "longitude": 126.3})

        body, _ = read(None, gate)
        assert (body["latitude"], body["longitude"]) == (43.7, 126.3)
        assert told(None, province)[0] == province_version + 1
        assert {reader: told(reader, gate) for reader in (None, reviewer)} == before

    @pytest.mark.parametrize("by_header", [True, False], ids=["If-Match", "body"])
    def test_a_stale_edit_of_staff_after_its_coordinates_were_corrected_is_refused(
        self, keeper, reviewer, places, by_header
    ):
        gate = places["gate"]
        body, etag = read(reviewer, gate)
        edit(keeper, gate, {"latitude": 42.9, "longitude": 129.5})

        answer = client_for(reviewer).patch(
            url_of(gate),
            {"name": "North gate"} | ({} if by_header else {"version": body["version"]}),
            format="json",
            **({"HTTP_IF_MATCH": etag} if by_header else {}),
        )

        assert answer.status_code == (412 if by_header else 409), answer.content
        assert Place.objects.get(pk=gate.pk).name == "Gate"

    def test_a_write_of_the_public_version_alone_is_no_event(self, places):
        gate = places["gate"]
        events = apps.get_model("incidents", "PlaceEvent").objects.filter(pgh_obj=gate)
        recorded = events.count()

        Place.objects.filter(pk=gate.pk).update(public_version=99)

        assert events.count() == recorded
        gate.refresh_from_db()
        assert gate.public_version == gate.version


@pytest.mark.django_db(transaction=True)
def test_the_migration_starts_a_places_public_versions_as_its_own(reviewer):
    town = make_place(name="Tumen", latitude=42.97, longitude=129.84, sensitive=True)
    migrate_incidents_back_to("0100_claim_span_from_any_figure")
    try:
        # Its exact coordinates corrected before the migration: a new version for every reader.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE incidents_place SET latitude = 42.9, version = version + 1, updated_at = now() WHERE id = %s",
                [town.pk],
            )
    finally:
        call_command("migrate", "incidents", verbosity=0, stdout=io.StringIO())
    events = apps.get_model("incidents", "PlaceEvent").objects.filter(pgh_obj=town)
    recorded = events.count()

    town.refresh_from_db()
    assert (town.version, town.public_version) == (2, 2)
    assert town.public_updated_at == town.updated_at
    # Its trigger counts from there: a correction of its coordinates moves the staff's alone.
    edit(reviewer, town, {"latitude": 42.8, "longitude": 129.8})
    assert (told(None, town)[0], told(reviewer, town)[0]) == (2, 3)
    assert events.count() == recorded + 1


def synced(reader, since) -> dict[str, list]:
    """The incidents `reader`'s incremental sync reads since `since`, through the API and the CSV, as
    (public id, version, change time)."""
    client = client_for(reader)
    listed = results(client.get(f"{API}/incidents/", {"updated_since": since.isoformat(), "page_size": 200}))
    exported = client.get(f"{API}/incidents.csv", {"updated_since": since.isoformat()})
    return {
        "api": [(incident["public_id"], incident["version"], incident["updated_at"]) for incident in listed],
        "csv": [
            (row["public_id"], int(row["version"]), row["updated_at"])
            for row in csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode()))
        ],
    }


def page_told(incident) -> tuple[int, str]:
    """The version and the last change's time the public incident page tells an anonymous reader."""
    page = Client().get(f"/incidents/{incident.public_id}/").content.decode()
    [version] = re.findall(r"Incident Tracker, INC-\d+, version (\d+),", page)
    [last_updated] = re.findall(r'<time datetime="([^"]+)">', page)
    return int(version), last_updated


class TestAnIncidentAtASensitivePlace:
    @pytest.fixture
    def at_the_gate(self, places):
        return make_incident(title="Arrests at the gate", places=[places["gate"]])

    @pytest.mark.parametrize("name", ["town", "gate"], ids=["sensitive", "inside a sensitive one"])
    def test_the_public_is_not_told_its_places_exact_coordinates_corrected(
        self, keeper, reviewer, partner, places, at_the_gate, name
    ):
        before = {reader: read(reader, at_the_gate) for reader in (None, partner)}
        page_before = page_told(at_the_gate)
        staff_version = told(reviewer, at_the_gate)[0]
        since = timezone.now()

        edit(keeper, places[name], {"latitude": 42.9, "longitude": 129.5})

        assert {reader: read(reader, at_the_gate) for reader in (None, partner)} == before
        assert page_told(at_the_gate) == page_before
        assert synced(None, since) == synced(partner, since) == {"api": [], "csv": []}
        # Staff, who read the exact coordinates, are told it, and their sync reads it again.
        for staff in (reviewer, keeper):
            version, updated_at, etag = told(staff, at_the_gate)
            assert (version, etag_version(etag)) == (staff_version + 1, staff_version + 1)
            assert synced(staff, since) == {
                "api": [(at_the_gate.public_id, version, updated_at)],
                "csv": [(at_the_gate.public_id, version, updated_at)],
            }

    def test_the_public_is_told_coordinates_it_reads_moved(self, reviewer, partner, places, at_the_gate):
        # The gate shows the public the province's coordinates: the first above it not coarsened.
        version = told(None, at_the_gate)[0]
        since = timezone.now()

        edit(reviewer, places["province"], {"latitude": 43.7, "longitude": 126.3})

        body, etag = read(None, at_the_gate)
        assert [(place["latitude"], place["longitude"]) for place in body["places"]] == [(43.7, 126.3)]
        assert (body["version"], etag) == (version + 1, f'"public.{version + 1}"')
        assert page_told(at_the_gate)[0] == version + 1
        told_now = [(at_the_gate.public_id, version + 1, body["updated_at"])]
        assert synced(None, since) == synced(partner, since) == {"api": told_now, "csv": told_now}

    @pytest.mark.parametrize(
        "change",
        [{"name": "North gate"}, {"sensitive": True}, {"latitude": 42.9, "longitude": 129.5, "name": "North gate"}],
        ids=["renamed", "marked", "renamed and corrected"],
    )
    def test_the_public_is_told_a_change_of_its_place_it_can_see(self, keeper, places, at_the_gate, change):
        version = told(None, at_the_gate)[0]

        edit(keeper, places["gate"], change)

        assert told(None, at_the_gate)[0] == version + 1

    def test_the_public_is_told_a_change_it_can_see_after_a_correction_by_one(self, keeper, places, at_the_gate):
        version = told(None, at_the_gate)[0]
        edit(keeper, places["gate"], {"latitude": 42.9, "longitude": 129.5})

        edit(keeper, at_the_gate, {"title": "Arrests at the north gate"})

        assert told(None, at_the_gate)[0] == version + 1

    def test_the_next_release_does_not_list_it_as_updated(self, keeper, places, at_the_gate):
        release(keeper)

        edit(keeper, places["gate"], {"latitude": 42.9, "longitude": 129.5})

        listed = files_of(release(keeper))
        assert rows(listed["CHANGES.csv"]) == []
        [released] = rows(listed["incidents.csv"])
        assert released["version"] == str(told(None, at_the_gate)[0])

    @pytest.mark.parametrize("by_header", [True, False], ids=["If-Match", "body"])
    def test_a_writer_who_is_not_staff_edits_by_the_publics_version_after_a_correction(
        self, keeper, partner, places, at_the_gate, by_header
    ):
        body, etag = read(partner, at_the_gate)
        edit(keeper, places["gate"], {"latitude": 42.9, "longitude": 129.5})

        # A partner tool's Analyst proposes its change to the published incident for review.
        answer = client_for(partner).patch(
            url_of(at_the_gate),
            {"title": "Arrests at the north gate"} | ({} if by_header else {"version": body["version"]}),
            format="json",
            **({"HTTP_IF_MATCH": etag} if by_header else {}),
        )

        assert answer.status_code == 202, answer.content
        # Made from the incident as it is: a Reviewer may accept it (not stale).
        assert not IncidentRevision.objects.get(incident=at_the_gate).is_stale


@pytest.mark.django_db(transaction=True)
def test_the_migration_starts_an_incidents_public_versions_as_those_of_staff_without_confidential_access(
    keeper, reviewer
):
    incident = make_incident(title="Arrests at the gate")
    migrate_incidents_back_to("0101_place_public_versions")
    try:
        # A change readers without Confidential access were not told, before the migration.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE incidents_incident SET version = version + 1, updated_at = now() WHERE id = %s", [incident.pk]
            )
            cursor.execute("SELECT incident_export_refresh(ARRAY[%s]::bigint[])", [incident.pk])
    finally:
        call_command("migrate", "incidents", verbosity=0, stdout=io.StringIO())

    incident.refresh_from_db()
    assert (incident.version, incident.disclosed_version, incident.public_version) == (2, 1, 1)
    assert incident.public_updated_at == incident.disclosed_updated_at < incident.updated_at
    assert told(None, incident)[0] == told(reviewer, incident)[0] == 1
    exported = client_for().get(f"{API}/incidents.csv")
    [row] = csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode()))
    assert row["version"] == "1"
    # Their triggers count from there: a change everyone sees moves every audience's.
    edit(keeper, incident, {"title": "Arrests at the north gate"})
    assert (told(None, incident)[0], told(reviewer, incident)[0], told(keeper, incident)[0]) == (2, 2, 3)
