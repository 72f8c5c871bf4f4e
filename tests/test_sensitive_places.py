"""A place inside a sensitive one (a gate of a detention centre whose town is sensitive) is shown
coarsened too, at every door and whatever made it so: its own coordinates would tell where the
sensitive place lies. The database keeps `Place.within_sensitive` down the tree of places."""

import csv
import io
import json
import threading
import time

import psycopg
import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from incidents import roles
from incidents.models import Incident, Place
from tests.api_support import API, client_for, incident_url, results
from tests.factories import make_incident, make_place, make_user
from tests.test_admin import logged_in

PROVINCE = (43.6, 126.2)
TOWN = (42.97, 129.84)
GATE = (42.912345, 129.512345)
HUT = (42.911111, 129.511111)


def exact(place: Place) -> tuple[float, float]:
    return (float(place.latitude), float(place.longitude))


@pytest.fixture
def places():
    """A province, a town in it, the gate of a facility in the town, and a hut by the gate."""
    province = make_place(name="Jilin", kind="province", latitude=PROVINCE[0], longitude=PROVINCE[1])
    town = make_place(name="Tumen", parent=province, latitude=TOWN[0], longitude=TOWN[1])
    gate = make_place(name="Gate", kind="facility", parent=town, latitude=GATE[0], longitude=GATE[1])
    hut = make_place(name="Hut", kind="other", parent=gate, latitude=HUT[0], longitude=HUT[1])
    return {"province": province, "town": town, "gate": gate, "hut": hut}


def shown_by_the_api(reader, place: Place) -> tuple[float, float]:
    body = client_for(reader).get(f"{API}/places/{place.pk}/").json()
    return (body["latitude"], body["longitude"])


def mark(place: Place, *, sensitive: bool, by=None) -> None:
    by = by or make_user(roles.REVIEWER)
    place.refresh_from_db()
    answer = client_for(by).patch(
        f"{API}/places/{place.pk}/", {"sensitive": sensitive, "version": place.version}, format="json"
    )
    assert answer.status_code == 200, answer.content


def test_every_place_inside_a_sensitive_one_shows_the_coordinates_above_it_at_every_door(places):
    incident = make_incident(places=[places["gate"], places["hut"]])
    mark(places["town"], sensitive=True)

    for reader in (None, make_user()):
        for name in ("town", "gate", "hut"):
            assert shown_by_the_api(reader, places[name]) == PROVINCE, name
        detail = client_for(reader).get(incident_url(incident)).json()
        (listed,) = results(client_for(reader).get(f"{API}/incidents/"))
        for body in (detail, listed):
            assert {(place["latitude"], place["longitude"]) for place in body["places"]} == {PROVINCE}
    collection = json.loads(Client().get("/map/incidents.geojson").content)
    (feature,) = collection["features"]
    assert {tuple(reversed(point)) for point in feature["geometry"]["coordinates"]} == {PROVINCE}
    page = Client().get(f"/incidents/{incident.public_id}/").content.decode()
    assert str(GATE[0]) not in page and str(HUT[0]) not in page
    # Staff see every place where it is.
    staff = make_user(roles.VIEWER)
    assert [shown_by_the_api(staff, places[name]) for name in ("gate", "hut")] == [GATE, HUT]


def test_unmarking_the_sensitive_place_shows_the_places_inside_it_again(places):
    mark(places["town"], sensitive=True)
    mark(places["gate"], sensitive=True)

    mark(places["town"], sensitive=False)

    # The gate is still marked itself: it and the hut show the town's.
    assert [shown_by_the_api(None, places[name]) for name in ("town", "gate", "hut")] == [TOWN, TOWN, TOWN]
    mark(places["gate"], sensitive=False)
    assert [shown_by_the_api(None, places[name]) for name in ("gate", "hut")] == [GATE, HUT]


def test_a_place_moved_into_a_sensitive_one_is_coarsened_with_everything_inside_it(places):
    elsewhere = make_place(name="Yanji", parent=places["province"], latitude=42.9, longitude=129.5, sensitive=True)
    gate = places["gate"]
    analyst = client_for(make_user(roles.ANALYST))

    moved = analyst.patch(f"{API}/places/{gate.pk}/", {"parent": elsewhere.pk, "version": gate.version}, format="json")

    assert moved.status_code == 200, moved.content
    assert [shown_by_the_api(None, places[name]) for name in ("gate", "hut")] == [PROVINCE, PROVINCE]
    back = analyst.patch(
        f"{API}/places/{gate.pk}/", {"parent": places["town"].pk, "version": moved.json()["version"]}, format="json"
    )
    assert back.status_code == 200, back.content
    assert [shown_by_the_api(None, places[name]) for name in ("gate", "hut")] == [GATE, HUT]


def test_marking_the_town_in_the_admin_coarsens_the_places_inside_it(places, client):
    town = places["town"]
    admin = logged_in(client, make_user(roles.REVIEWER))
    form = admin.get(f"/admin/incidents/place/{town.pk}/change/").context["adminform"].form
    fields = {
        name: field.initial if name == "expected_version" else form.initial.get(name)
        for name, field in form.fields.items()
    }
    fields = {name: value for name, value in fields.items() if value is not None}

    answer = admin.post(
        f"/admin/incidents/place/{town.pk}/change/", {**fields, "alternate_names": "", "sensitive": "on"}
    )

    assert answer.status_code == 302, answer.context["adminform"].form.errors
    assert [shown_by_the_api(None, places[name]) for name in ("town", "gate", "hut")] == [PROVINCE] * 3


def test_a_copy_of_the_gate_read_before_the_town_was_marked_saves_it_still_coarsened(places):
    stale = Place.objects.get(pk=places["gate"].pk)
    mark(places["town"], sensitive=True)

    stale.name = "Main gate"
    stale.save()

    stale.refresh_from_db()
    assert (stale.name, stale.within_sensitive) == ("Main gate", True)
    assert shown_by_the_api(None, stale) == PROVINCE


def test_marking_a_place_adds_to_the_history_of_the_places_inside_only_their_new_version(places):
    # Each place inside is shown the public the province's coordinates now: a new version of it
    # (`test_a_place_coarsened_since_is_a_new_version_for_the_public`), its record otherwise unchanged.
    events = Place.pgh_event_model.objects
    before = {name: events.filter(pgh_obj=place).count() for name, place in places.items()}

    mark(places["town"], sensitive=True)

    after = {name: events.filter(pgh_obj=place).count() for name, place in places.items()}
    assert {name: after[name] - before[name] for name in places} == {"province": 0, "town": 1, "gate": 1, "hut": 1}
    latest = events.filter(pgh_obj=places["gate"]).order_by("-pgh_id").values("name", "latitude", "sensitive")
    assert latest[0] == latest[1]
    assert Place.objects.get(pk=places["hut"].pk).within_sensitive


def test_marking_the_town_is_a_new_version_of_every_incident_inside_it_so_that_a_sync_corrects_its_copy(places):
    at_gate, at_hut = make_incident(places=[places["gate"]]), make_incident(places=[places["hut"]])
    elsewhere = make_incident(places=[places["province"]])
    partner = make_user()
    synced = client_for(partner).get(f"{API}/incidents/{at_gate.public_id}/").json()
    assert {tuple(place[key] for key in ("latitude", "longitude")) for place in synced["places"]} == {GATE}
    since = timezone.now()
    reviewer = make_user(roles.REVIEWER)

    mark(places["town"], sensitive=True, by=reviewer)

    sync = {"updated_since": since.isoformat(), "page_size": 200}
    changed = results(client_for(partner).get(f"{API}/incidents/", sync))
    assert {incident["public_id"] for incident in changed} == {at_gate.public_id, at_hut.public_id}
    for incident in changed:
        assert [(place["latitude"], place["longitude"]) for place in incident["places"]] == [PROVINCE]
        assert incident["version"] == synced["version"] + 1
    # The CSV's sync reads the kept rows, which hold the new version; the history says who.
    exported = client_for(partner).get(f"{API}/incidents.csv", {"updated_since": since.isoformat()})
    lines = b"".join(exported.streaming_content).decode().splitlines()
    assert len(lines) == 3 and all(f",{synced['version'] + 1}" in line for line in lines[1:]), lines
    event = Incident.pgh_event_model.objects.filter(pgh_obj=at_hut).latest("pgh_id")
    assert event.pgh_label == "update" and event.pgh_context.metadata["user"] == reviewer.pk
    assert Incident.objects.get(pk=elsewhere.pk).version == elsewhere.version
    # A change of what no incident shows of the place (its other names) starts no version of them.
    town = Place.objects.get(pk=places["town"].pk)
    answer = client_for(reviewer).patch(
        f"{API}/places/{town.pk}/", {"alternate_names": ["Dumen"], "version": town.version}, format="json"
    )
    assert answer.status_code == 200, answer.content
    assert Incident.objects.get(pk=at_gate.pk).version == synced["version"] + 1


def test_a_place_moved_is_a_new_version_of_its_incidents_whose_csv_rows_show_it_with_their_new_path(places):
    # The export rows are made once, by the place's UPDATE, after the version moved: a sync of the
    # CSV reads the new path at the new version, not either alone.
    at_hut = make_incident(places=[places["hut"]])
    elsewhere = make_place(name="Yanji", parent=places["province"], latitude=42.9, longitude=129.5)
    since = timezone.now()
    gate = places["gate"]

    moved = client_for(make_user(roles.ANALYST)).patch(
        f"{API}/places/{gate.pk}/", {"parent": elsewhere.pk, "version": gate.version}, format="json"
    )

    assert moved.status_code == 200, moved.content
    exported = client_for(make_user()).get(f"{API}/incidents.csv", {"updated_since": since.isoformat()})
    [row] = csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode()))
    assert (row["public_id"], row["version"]) == (at_hut.public_id, str(at_hut.version + 1))
    assert row["places"] == "Jilin > Yanji > Gate > Hut"


@pytest.mark.parametrize(
    ("changed", "shown"),
    [({"name": "Tumen City"}, "Jilin > Tumen City > Gate > Hut"), ({"country": "KP"}, "Jilin > Tumen > Gate > Hut")],
)
def test_a_place_renamed_is_a_new_version_of_the_incidents_inside_it_so_that_a_sync_reads_the_new_name(
    places, changed, shown
):
    # A place's name, kind or country changed its incidents' places (the API's, the CSV's paths and
    # countries) at their old version: a sync never read them again, a partner's copy kept the
    # misspelt name for good.
    at_hut, elsewhere = make_incident(places=[places["hut"]]), make_incident(places=[places["province"]])
    town = places["town"]
    since = timezone.now()

    answer = client_for(make_user(roles.ANALYST)).patch(
        f"{API}/places/{town.pk}/", {**changed, "version": town.version}, format="json"
    )

    assert answer.status_code == 200, answer.content
    partner = client_for(make_user())
    [incident] = results(partner.get(f"{API}/incidents/", {"updated_since": since.isoformat()}))
    assert (incident["public_id"], incident["version"]) == (at_hut.public_id, at_hut.version + 1)
    exported = partner.get(f"{API}/incidents.csv", {"updated_since": since.isoformat()})
    [row] = csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode()))
    assert (row["public_id"], row["version"], row["places"]) == (at_hut.public_id, str(at_hut.version + 1), shown)
    assert Incident.objects.get(pk=elsewhere.pk).version == elsewhere.version


def test_a_place_of_another_kind_is_a_new_version_of_the_incidents_at_it(places):
    at_gate = make_incident(places=[places["gate"]])
    gate = places["gate"]

    answer = client_for(make_user(roles.ANALYST)).patch(
        f"{API}/places/{gate.pk}/", {"kind": "other", "version": gate.version}, format="json"
    )

    assert answer.status_code == 200, answer.content
    [place] = client_for(make_user()).get(f"{API}/incidents/{at_gate.public_id}/").json()["places"]
    assert place["kind"] == "other"
    assert Incident.objects.get(pk=at_gate.pk).version == at_gate.version + 1


def test_a_writer_shown_coarsened_coordinates_may_not_move_a_place_out_of_the_sensitive_one(places):
    mark(places["town"], sensitive=True)
    gate = Place.objects.get(pk=places["gate"].pk)  # Coarsened since: a new version.
    # A partner tool's account: the Analyst role, which may change places, but not staff.
    partner = client_for(make_user(roles.ANALYST, is_staff=False))

    answer = partner.patch(
        f"{API}/places/{gate.pk}/", {"parent": places["province"].pk, "version": gate.version}, format="json"
    )

    assert answer.status_code == 400, answer.content
    assert list(answer.json()) == ["parent"]
    assert str(GATE[0]).encode() not in answer.content and str(HUT[0]).encode() not in answer.content
    assert [shown_by_the_api(None, places[name]) for name in ("gate", "hut")] == [PROVINCE, PROVINCE]
    # Into another sensitive place, or by staff, it may move.
    other = make_place(name="Yanji", parent=places["province"], latitude=42.9, longitude=129.5, sensitive=True)
    moved = partner.patch(f"{API}/places/{gate.pk}/", {"parent": other.pk, "version": gate.version}, format="json")
    assert moved.status_code == 200, moved.content
    staff = client_for(make_user(roles.ANALYST))
    out = staff.patch(
        f"{API}/places/{gate.pk}/", {"parent": places["province"].pk, "version": moved.json()["version"]}, format="json"
    )
    assert out.status_code == 200, out.content
    assert shown_by_the_api(None, gate) == GATE


def _waits_or_ends(observer, thread: threading.Thread) -> None:
    """Until `thread` waits for a lock that `observer` holds, or has ended (a write that did not wait)."""
    for _ in range(100):
        waiting = observer.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ).fetchone()[0]
        if waiting or not thread.is_alive():
            return
        time.sleep(0.1)


def _in_a_thread(write) -> tuple[threading.Thread, dict]:
    answer = {}

    def run():
        try:
            answer["response"] = write()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, answer


@pytest.mark.django_db(transaction=True)
def test_a_place_added_inside_the_town_while_it_is_marked_sensitive_is_coarsened():
    """The new place read its parent's `within_sensitive` before the mark committed, and the mark's
    walk down the tree could not see the new place yet: both committed, it showed its exact
    coordinates inside a sensitive town. It waits for the mark now."""
    province = make_place(name="Jilin", kind="province", latitude=PROVINCE[0], longitude=PROVINCE[1])
    town = make_place(name="Tumen", parent=province, latitude=TOWN[0], longitude=TOWN[1])
    analyst = client_for(make_user(roles.ANALYST))

    with psycopg.connect(**connection.get_connection_params()) as reviewer:
        reviewer.execute("UPDATE incidents_place SET sensitive = true WHERE id = %s", [town.pk])
        thread, answer = _in_a_thread(
            lambda: analyst.post(
                f"{API}/places/",
                {"name": "Gate", "kind": "facility", "parent": town.pk, "latitude": GATE[0], "longitude": GATE[1]},
                format="json",
            )
        )
        _waits_or_ends(reviewer, thread)
    thread.join(20)

    assert answer["response"].status_code == 201, answer["response"].content
    gate = Place.objects.get(name="Gate")
    assert gate.within_sensitive
    assert shown_by_the_api(None, gate) == PROVINCE


@pytest.mark.django_db(transaction=True)
def test_a_town_marked_sensitive_while_a_place_moves_into_it_coarsens_that_place():
    """The mark's walk down the tree ran before the move committed and did not see the place: it
    kept its exact coordinates inside a sensitive town. The mark waits for the move now."""
    province = make_place(name="Jilin", kind="province", latitude=PROVINCE[0], longitude=PROVINCE[1])
    town = make_place(name="Tumen", parent=province, latitude=TOWN[0], longitude=TOWN[1])
    gate = make_place(name="Gate", kind="facility", parent=province, latitude=GATE[0], longitude=GATE[1])

    with psycopg.connect(**connection.get_connection_params()) as analyst:
        analyst.execute("UPDATE incidents_place SET parent_id = %s WHERE id = %s", [town.pk, gate.pk])
        thread, answer = _in_a_thread(lambda: mark_answer(town, sensitive=True))
        _waits_or_ends(analyst, thread)
    thread.join(20)

    assert answer["response"].status_code == 200, answer["response"].content
    gate.refresh_from_db()
    assert (gate.parent_id, gate.within_sensitive) == (town.pk, True)
    assert shown_by_the_api(None, gate) == PROVINCE


def mark_answer(place: Place, *, sensitive: bool):
    place.refresh_from_db()
    return client_for(make_user(roles.REVIEWER)).patch(
        f"{API}/places/{place.pk}/", {"sensitive": sensitive, "version": place.version}, format="json"
    )


def test_a_public_place_moved_into_a_sensitive_one_tells_the_public_its_parent_but_neither_place_exactly(places):
    """Investigated: the public saw the gate where it is; staff move it into a sensitive town. From
    then on the gate (and the hut inside it) show the coordinates above that town, at every door,
    and the town's own never appear; but the gate's `parent` (and the incidents' place paths) name
    the sensitive town, so a reader who kept the gate's earlier coordinates learns the town lies
    around them. Marking a town sensitive whose places were public tells the same: what was shown
    cannot be taken back (README, "Known limit" under sensitive places)."""
    incident = make_incident(places=[places["hut"]])
    secret = (42.987654, 129.876543)
    hidden = make_place(name="Yanji", parent=places["province"], latitude=secret[0], longitude=secret[1])
    mark(hidden, sensitive=True)
    gate = places["gate"]
    assert shown_by_the_api(None, gate) == GATE  # what the public saw

    moved = client_for(make_user(roles.ANALYST)).patch(
        f"{API}/places/{gate.pk}/", {"parent": hidden.pk, "version": gate.version}, format="json"
    )

    assert moved.status_code == 200, moved.content
    public = client_for()
    assert [shown_by_the_api(None, places[name]) for name in ("gate", "hut")] == [PROVINCE, PROVINCE]
    answers = [
        public.get(f"{API}/places/{gate.pk}/"),
        public.get(f"{API}/places/", {"parent": hidden.pk}),
        public.get(incident_url(incident)),
        public.get(f"{API}/incidents/"),
        Client().get(f"/incidents/{incident.public_id}/"),
        Client().get("/map/incidents.geojson"),
        Client().get("/", {"place": hidden.pk}),
    ]
    csv_export = public.get(f"{API}/incidents.csv")
    texts = [answer.content.decode() for answer in answers] + [b"".join(csv_export.streaming_content).decode()]
    for text in texts:
        for coordinate in (*secret, *GATE, *HUT):
            assert str(coordinate) not in text
    # The link the public is told: the gate lies in the sensitive town.
    assert answers[0].json()["parent"] == hidden.pk
    assert "Jilin > Yanji > Gate > Hut" in texts[-1]


PROVINCE = (43.6, 126.2)
PROVINCE_CORRECTED = (43.7, 126.3)
TOWN = (42.97, 129.84)


def stored_coordinates(place: Place) -> tuple[float | None, float | None]:
    place.refresh_from_db()
    return (
        None if place.latitude is None else float(place.latitude),
        None if place.longitude is None else float(place.longitude),
    )


@pytest.mark.parametrize(
    ("province_before", "province_after"),
    [(PROVINCE, PROVINCE_CORRECTED), ((None, None), PROVINCE)],
    ids=["province corrected", "province given coordinates"],
)
def test_a_partner_putting_back_a_sensitive_town_as_read_after_the_province_moved_keeps_its_exact_coordinates(
    province_before, province_after
):
    """A partner tool (not staff) reads the sensitive town, shown the province's coordinates (or
    none, the province having none). Staff then correct the province's, which moves neither the
    town's version nor anything the partner is told of it. The partner's PUT of what it read
    overwrote the town's exact coordinates with the province's old ones (or erased them), answered
    200: it is refused, naming what the partner is shown now."""
    province = make_place(name="Jilin", kind="province", latitude=province_before[0], longitude=province_before[1])
    town = make_place(name="Tumen", parent=province, latitude=TOWN[0], longitude=TOWN[1], sensitive=True)
    partner = client_for(make_user(roles.ANALYST, is_staff=False))
    read = partner.get(f"{API}/places/{town.pk}/")
    body = read.json()
    assert (body["latitude"], body["longitude"]) == province_before

    province.refresh_from_db()
    corrected = client_for(make_user(roles.ANALYST)).patch(
        f"{API}/places/{province.pk}/",
        {"latitude": province_after[0], "longitude": province_after[1], "version": province.version},
        format="json",
    )
    assert corrected.status_code == 200, corrected.content

    read_only = {"id", "created_at", "updated_at", "country_inherited"}
    sent = {key: value for key, value in body.items() if key not in read_only}
    answer = partner.put(f"{API}/places/{town.pk}/", sent, format="json", HTTP_IF_MATCH=read["ETag"])

    assert answer.status_code == 400, answer.content
    assert f"({province_after[0]}, {province_after[1]})" in answer.json()["latitude"][0]
    assert stored_coordinates(town) == TOWN


GATE = (42.912345, 129.512345)


GATE = (42.912345, 129.512345)


def test_a_partner_putting_back_a_place_read_coarsened_before_the_town_above_was_unmarked_is_refused_as_stale():
    """A partner reads a gate inside a sensitive town, shown the province's coordinates; staff
    un-mark the town, which moved the gate's version for no one (its own record did not change).
    The partner's PUT of what it read then passed as a move of the gate: its exact coordinates were
    overwritten with the province's, answered 200. The gate now has a new version for every reader,
    so the PUT is stale, and the partner's sync reads the gate again."""
    province = make_place(name="Jilin", kind="province", latitude=PROVINCE[0], longitude=PROVINCE[1])
    town = make_place(name="Tumen", parent=province, latitude=TOWN[0], longitude=TOWN[1], sensitive=True)
    gate = make_place(name="Tumen gate", parent=town, latitude=GATE[0], longitude=GATE[1])
    partner = client_for(make_user(roles.ANALYST, is_staff=False))
    read = partner.get(f"{API}/places/{gate.pk}/")
    body = read.json()
    assert (body["latitude"], body["longitude"]) == PROVINCE

    town.refresh_from_db()
    unmarked = client_for(make_user(roles.ANALYST)).patch(
        f"{API}/places/{town.pk}/", {"sensitive": False, "version": town.version}, format="json"
    )
    assert unmarked.status_code == 200, unmarked.content

    read_again = partner.get(f"{API}/places/{gate.pk}/")
    assert read_again["ETag"] != read["ETag"]
    assert (read_again.json()["latitude"], read_again.json()["longitude"]) == GATE
    read_only = {"id", "created_at", "updated_at", "country_inherited"}
    sent = {key: value for key, value in body.items() if key not in read_only}
    answer = partner.put(f"{API}/places/{gate.pk}/", sent, format="json", HTTP_IF_MATCH=read["ETag"])
    assert answer.status_code == 412, answer.content
    assert stored_coordinates(gate) == GATE


@pytest.mark.parametrize("change", ["town marked sensitive", "village moved into a sensitive town"])
def test_a_place_coarsened_since_is_a_new_version_for_the_public(change):
    """A place shown coarsened since the place above it was marked sensitive (or it, or the place
    holding it, was moved into a sensitive one) kept its public version and change time: the
    public's sync never read it again, and an If-None-Match of the ETag read with its exact
    coordinates answered 304, so a partner's copy kept them for good."""
    province = make_place(name="Jilin", kind="province", latitude=PROVINCE[0], longitude=PROVINCE[1])
    town = make_place(name="Tumen", parent=province, latitude=TOWN[0], longitude=TOWN[1], sensitive="moved" in change)
    open_town = make_place(name="Hunchun", parent=province, latitude=TOWN[0] + 1, longitude=TOWN[1])
    village = make_place(
        name="Village", parent=town if "marked" in change else open_town, latitude=42.9, longitude=129.5
    )
    gate = make_place(name="Tumen gate", parent=village, latitude=GATE[0], longitude=GATE[1])
    written, body = (town, {"sensitive": True}) if "marked" in change else (village, {"parent": town.pk})

    assert_the_public_reads_again(gate, GATE, written, body)


@pytest.mark.parametrize("change", ["town marked sensitive", "town moved into a sensitive region"])
def test_a_sensitive_place_inside_a_town_coarsened_since_is_a_new_version_for_the_public(change):
    """A village marked sensitive inside a town that is not shows the public the town's exact
    coordinates; once the town is coarsened it shows the province's. Coarsened already, it kept its
    version: a partner's copy kept the sensitive town's exact coordinates for good."""
    province = make_place(name="Jilin", kind="province", latitude=PROVINCE[0], longitude=PROVINCE[1])
    region = make_place(name="Border region", parent=province, sensitive=True)
    town = make_place(name="Tumen", parent=province, latitude=TOWN[0], longitude=TOWN[1])
    village = make_place(name="Village", parent=town, latitude=GATE[0], longitude=GATE[1], sensitive=True)
    body = {"sensitive": True} if "marked" in change else {"parent": region.pk}

    assert_the_public_reads_again(village, TOWN, town, body)


def assert_the_public_reads_again(place, shown_before, written, body):
    """`place`, shown the public at `shown_before`, is shown the province's coordinates once an
    Analyst's PATCH of `body` to `written` (a place above it) is saved, and is read again: an
    If-None-Match of the ETag read before answers 200, and the public's sync lists it."""
    public = client_for()
    read = public.get(f"{API}/places/{place.pk}/")
    assert (read.json()["latitude"], read.json()["longitude"]) == shown_before
    since = timezone.now().isoformat()
    written.refresh_from_db()
    answer = client_for(make_user(roles.ANALYST)).patch(
        f"{API}/places/{written.pk}/", {**body, "version": written.version}, format="json"
    )
    assert answer.status_code == 200, answer.content

    revalidated = public.get(f"{API}/places/{place.pk}/", HTTP_IF_NONE_MATCH=read["ETag"])
    assert revalidated.status_code == 200
    assert (revalidated.json()["latitude"], revalidated.json()["longitude"]) == PROVINCE
    synced = results(public.get(f"{API}/places/", {"updated_since": since, "page_size": 100}))
    assert place.pk in {row["id"] for row in synced}
