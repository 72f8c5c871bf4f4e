"""The export's rows, cell by cell, against what the records say, for each reader and many filters,
and after every kind of write.

The export copies rows PostgreSQL keeps rendered for each incident (IncidentExportRow, kept by
triggers); this checks every cell of every row against a plain Python reading of the same records
(`expected_rows`), on messy data: place names repeated under different parents, paths deeper than
three places, places without a country, sensitive places, blanks everywhere, names holding the
cells' separators, quotes and formulas, confidential incidents, claims and sources, a source with a
public and a confidential claim on one incident, and filters that cut date ranges, search words
only a confidential excerpt holds, and a bound Django proves matches nothing."""

import csv
import importlib
import io
import re
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone

import psycopg
import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.management import call_command
from django.db import connection
from django.db.models import F
from django.http import QueryDict
from django.test import Client
from django.urls import reverse

from incidents import exports, merges, roles, search
from incidents.exports import COLUMNS, FORMULA_LIKE, csv_list_item, csv_source_item, kept_rows, write_incidents_csv
from incidents.models import (
    KEPT_VERSION_FIELDS,
    AccessDoor,
    Claim,
    ConfidentialAccess,
    DuplicatePair,
    Incident,
    IncidentExportRow,
    IncidentFacetTotal,
    IncidentRollup,
    IncidentType,
    Involvement,
    Organization,
    Place,
    Source,
)
from incidents.querysets import AUDIENCE_NAMES, audience_of, updated_at_seen_by, version_seen_by
from incidents.selectors import incidents_matching
from tests.api_support import API, client_for, incident_url
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source, make_user
from tests.test_commands import search_words, search_words_an_edit_computes
from tests.test_import import run_import

READERS = {
    "anonymous": lambda: AnonymousUser(),
    "analyst": lambda: make_user(roles.ANALYST),
    "confidential": lambda: make_user(roles.REVIEWER, confidential=True),
}

# Query strings, as the API and the command take them.
FILTERS = [
    "",
    "date_from=2024-01-03&date_to=2024-01-05",
    "date_from=2010-06-15",
    "date_to=2001-12-31",
    "country=CN",
    "country=KP&date_from=2015-01-01",
    "q=Jilin",
    "q=informant",
    "q=-Demo",
    'q="Press release"',
    "review_state=draft&review_state=in_review",
    "verification=verified",
    "min_origins=2",
    "min_people=20&max_people=200",
    # Beyond the column's range: Django writes no SQL for it, and the export still has its header.
    "min_people=99999999999",
]


def _neutralised(cell: str) -> str:
    return "'" + cell if re.match(FORMULA_LIKE, cell) else cell


def _joined(items) -> str:
    return "; ".join(sorted(items))


def _path(place: Place, places: dict[int, Place]) -> str:
    """`place`'s path, its parents read from `places` (every place, by id)."""
    names = []
    while place is not None:
        names.append(csv_list_item(place.name))
        place = places.get(place.parent_id)
    return " > ".join(reversed(names))


def _first_present(*values):
    return next((value for value in values if value is not None), None)


def _present(values) -> list:
    return [value for value in values if value is not None]


def _number(value) -> str:
    return "" if value is None else str(value)


def expected_rows(user, query: str) -> list[dict[str, str]]:
    """The export of the incidents `user` may see that `query` selects, read from the records themselves."""
    incidents = incidents_matching(user=user, filters=QueryDict(query)).order_by("-date_start", "-id")
    incidents = list(incidents.select_related("incident_type", "merged_into").prefetch_related("places"))
    # Each incident's perpetrators and the claims the reader may see of it, read for all of them at
    # once: record by record, these and each place's parents were ~30 s of a test's ~35.
    places = {place.pk: place for place in Place.objects.all()}
    perpetrators, claims_of = defaultdict(list), defaultdict(list)
    involvements = Involvement.objects.filter(incident__in=incidents, role="perpetrator").select_related("organization")
    for involvement in involvements:
        perpetrators[involvement.incident_id].append(involvement)
    # The claims the reader may see of an incident they may see, or follow to its survivor (a sync's
    # merged incidents, whose rows show their claims too).
    for claim in Claim.objects.disclosed_to(user).filter(incident__in=incidents).select_related("source"):
        claims_of[claim.incident_id].append(claim)
    rows = []
    for incident in incidents:
        claims = claims_of[incident.pk]
        # A claim's low end is its minimum, else its best estimate, else its maximum; its high end the
        # other way round (migration 0100).
        lows = _present(
            _first_present(claim.people_count_min, claim.people_count, claim.people_count_max) for claim in claims
        )
        highs = _present(
            _first_present(claim.people_count_max, claim.people_count, claim.people_count_min) for claim in claims
        )
        sources = (
            csv_source_item(
                claim.source.title,
                claim.source_id,
                confidential=claim.source.confidential,
                claim_confidential=claim.confidential,
            )
            for claim in claims
        )
        rows.append(
            {
                "public_id": incident.public_id,
                "title": _neutralised(incident.title),
                "type": incident.incident_type.slug,
                "date_start": incident.date_start.isoformat(),
                "date_end": incident.date_end.isoformat(),
                "date_precision": incident.date_precision,
                "date_label": incident.date_label,
                "people_count": _number(incident.people_count),
                "people_count_min": _number(incident.people_count_min),
                "people_count_max": _number(incident.people_count_max),
                "count_qualifier": incident.count_qualifier,
                "countries": _joined({place.country.code for place in incident.places.all() if place.country}),
                "places": _neutralised(_joined(_path(place, places) for place in incident.places.all())),
                "perpetrators": _neutralised(
                    _joined(csv_list_item(item.organization.name) for item in perpetrators[incident.pk])
                ),
                "verification": incident.verification,
                "review_state": incident.review_state,
                "confidential": "true" if incident.confidential else "false",
                "merged_into": incident.merged_into.public_id if incident.merged_into_id else "",
                "source_count": str(len(claims)),
                "sources": _neutralised(_joined(sources)),
                "claim_min": _number(min(lows, default=None)),
                "claim_max": _number(max(highs, default=None)),
                "updated_at": updated_at_seen_by(incident, user).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "version": str(version_seen_by(incident, user)),
                "version_audience": AUDIENCE_NAMES[audience_of(user)],
            }
        )
    return rows


def exported_rows(user, query: str, tmp_path) -> list[dict[str, str]]:
    """What `manage.py export_incidents` writes for `user` (none: the public) and `query`."""
    options = [f"--{name.replace('_', '-')}={value}" for name, value in QueryDict(query).lists() for value in value]
    if user.is_authenticated:
        options.append(f"--user={user.username}")
    output = tmp_path / "export.csv"
    call_command("export_incidents", *options, "-o", str(output))
    content = output.read_text(encoding="utf-8")
    assert content.splitlines()[0] == ",".join(COLUMNS)
    return list(csv.DictReader(io.StringIO(content)))


def expected_record(user, query: str) -> tuple[int, list[int], list[int], list[int]]:
    """What the record of `user`'s export of `query` must hold, read from the records: the row count,
    the confidential incidents, and the confidential claims among theirs (a confidential claim, or
    one of a confidential source) with those claims' confidential sources."""
    incidents = incidents_matching(user=user, filters=QueryDict(query))
    claims = Claim.objects.filter(incident__in=incidents.values("pk")).confidential().select_related("source")
    return (
        incidents.count(),
        sorted(incidents.filter(confidential=True).values_list("pk", flat=True)),
        sorted(claim.pk for claim in claims),
        sorted({claim.source_id for claim in claims if claim.source.confidential}),
    )


def _recorded(expected: tuple[int, list[int], list[int], list[int]]):
    """`expected_record` as the record shows it: no record for an export without confidential records."""
    _, *records = expected
    return expected if any(records) else None


def recorded_export(user, query: str, tmp_path) -> tuple[int, list[int], list[int], list[int]] | None:
    """The record `manage.py export_incidents` leaves of `user`'s export of `query` (None: none)."""
    newest = ConfidentialAccess.objects.order_by("-id").values_list("id", flat=True).first() or 0
    exported_rows(user, query, tmp_path)
    access = ConfidentialAccess.objects.filter(id__gt=newest).first()
    if access is None:
        return None
    return access.row_count, access.incident_ids, access.claim_ids, access.source_ids


def assert_kept_types_are_the_incidents() -> None:
    """Every incident has its kept row, and the row holds the incident's type id (migration 0040),
    which an export by type selects the rows by."""
    assert IncidentExportRow.objects.count() == Incident.objects.count()
    stale = IncidentExportRow.objects.exclude(incident_type_id=F("incident__incident_type_id"))
    assert list(stale.values_list("incident__public_id", flat=True)) == []


def assert_answered_by_kept_rows(user, query: str) -> None:
    """The export of `query` for `user` is said of the kept rows, not of the incidents' ids (the
    fallback, `incident_id IN (<the incidents' SQL>)`)."""
    for part in kept_rows(incidents_matching(user=user, filters=QueryDict(query))):
        assert '"incident_id" IN (SELECT' not in str(part.query), query


def exported_bytes(user, query: str, tmp_path) -> bytes:
    """The file `manage.py export_incidents` writes for `user` and `query`, byte for byte."""
    exported_rows(user, query, tmp_path)
    return (tmp_path / "export.csv").read_bytes()


def fallback_bytes(user, query: str, tmp_path, monkeypatch) -> bytes:
    """`exported_bytes` through the kept rows of the ids the incidents' own SQL selects, whatever
    its conditions (the fallback of exports.kept_rows)."""
    with monkeypatch.context() as fallback:
        fallback.setattr(exports, "_said_of_kept_rows", lambda query, where: None)
        return exported_bytes(user, query, tmp_path)


def make_messy_records(demo_incidents: int) -> list[Incident]:
    """`demo_incidents` demo incidents, and incidents on the edges of every cell."""
    call_command("generate_demo_data", incidents=demo_incidents, seed=11, stdout=io.StringIO())
    china = Place.objects.get(name="China", parent=None)
    jilin_province = Place.objects.get(name="Jilin", parent=china)
    jilin_city = make_place(name="Jilin", parent=jilin_province, country="CN")
    # Four deep: the export reads such paths through the SQL function rather than its joins.
    shelter = make_place(name="Shelter; north wing", parent=jilin_city, country="CN", sensitive=True)
    dormitory = make_place(name='Dormitory "B"', parent=shelter, country="CN", sensitive=True)
    sea = make_place(name="=Yellow Sea", kind="border_area", country="")
    secret = make_source(title="Informant's account", kind="testimony", confidential=True)
    relay = make_source(title="Press release", cites=secret)
    press_release = make_source(title="Press release")
    perpetrator = make_organization(name="Border guard; unit 2")
    bystander = make_organization(name="Red Cross")

    def incident(title, day, **fields):
        return make_incident(title=title, date_start=date(2024, 1, day), date_end=date(2024, 1, day + 2), **fields)

    blank = incident("+blank", 1, people_count=None, count_qualifier="unknown")
    both_claims = incident("Jilin both claims", 2, places=[jilin_city, jilin_province, dormitory, sea])
    make_claim(incident=both_claims, source=press_release, people_count=40, people_count_min=30)
    make_claim(incident=both_claims, source=press_release, people_count=90, confidential=True, excerpt="informant")
    make_claim(incident=both_claims, source=relay, people_count=None, people_count_max=120)
    Involvement.objects.create(incident=both_claims, organization=perpetrator, role="perpetrator")
    Involvement.objects.create(incident=both_claims, organization=bystander, role="other")
    secret_only = incident("Only a secret source", 4, places=[shelter, sea], review_state="in_review")
    make_claim(incident=secret_only, source=secret, excerpt="the informant saw it")
    hidden = incident("Confidential incident", 5, places=[jilin_city], confidential=True)
    make_claim(incident=hidden, source=press_release)
    draft = incident("@draft", 6, places=[sea], review_state="draft", people_count=5, count_qualifier="about")
    Incident.objects.filter(pk=draft.pk).update(people_count_min=3, people_count_max=9)
    Involvement.objects.create(incident=draft, organization=perpetrator, role="perpetrator")
    Involvement.objects.create(incident=draft, organization=bystander, role="perpetrator")
    return [blank, both_claims, secret_only, hidden, draft]


@pytest.fixture
def messy_records():
    return make_messy_records(150)


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_every_cell_of_every_row_is_what_the_records_say(reader, messy_records, tmp_path):
    user = reader()
    for query in FILTERS:
        expected = expected_rows(user, query)
        assert exported_rows(user, query, tmp_path) == expected, query
        if reader is READERS["confidential"]:
            assert recorded_export(user, query, tmp_path) == _recorded(expected_record(user, query)), query
    # The filters did select: rows, but not every row.
    assert 0 < len(expected_rows(user, "date_from=2024-01-03&date_to=2024-01-05")) < Incident.objects.count()


# Searches, alone and with the filters the kept rows answer themselves.
SEARCHES = [query for query in FILTERS if query.startswith("q=")] + [
    "q=Jilin&date_from=2024-01-03&date_to=2024-01-05",
    "q=informant&country=CN&review_state=in_review",
]


@pytest.mark.parametrize("plan", ["collected", "tested_in_order"])
def test_a_search_exports_what_it_finds_however_it_finds_it(plan, messy_records, tmp_path, monkeypatch):
    # A search collects few matches from its index and tests the incidents' words for many (see
    # IncidentSearch.filter); the export reads the kept rows of either (exports.kept_rows). A bound
    # of 0 makes every search's matches many.
    monkeypatch.setattr(search, "COLLECT_BELOW", {"collected": 10**9, "tested_in_order": 0}[plan])
    for name, reader in READERS.items():
        user = reader()
        for query in SEARCHES:
            assert exported_rows(user, query, tmp_path) == expected_rows(user, query), (name, query)
            if name == "confidential":
                assert recorded_export(user, query, tmp_path) == _recorded(expected_record(user, query)), query
    # The searches did select: rows, but not every row, and not the same for every reader.
    found = {name: len(expected_rows(reader(), "q=informant")) for name, reader in READERS.items()}
    assert 0 == found["anonymous"] < found["confidential"] < Incident.objects.count()


def test_a_country_is_found_wherever_it_stands_in_the_countries_cell(tmp_path):
    # The kept rows' country test compares the `; `-joined cell (exports.KeptInCountry): the code
    # alone, first, last and between two others, and never a code that only shares its letters.
    places = {code: make_place(country=code) for code in ("BT", "CN", "KP", "NC", "RU")}
    cells = ["CN", "CN; KP", "BT; CN", "BT; CN; KP", "KP; NC", "BT; KP; RU"]
    for cell in cells:
        make_incident(title=cell, places=[places[code] for code in cell.split("; ")])
    anyone = AnonymousUser()
    exported = exported_rows(anyone, "country=CN", tmp_path)
    assert exported == expected_rows(anyone, "country=CN")
    assert sorted(row["countries"] for row in exported) == sorted(cells[:4])


# A sync's bound, on the edge of incidents' change times (`make_syncs_and_types`).
SYNCED_AT = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

# Filters the kept rows answer by their own columns too (exports.kept_rows), not by the incidents'
# ids: a sync (`updated_since`, which also reports the merged incidents whose survivor the reader may
# see), an incident type with its sub-types, and both with the others.
SYNCS_AND_TYPES = [
    "updated_since=2000-01-01T00:00:00Z",
    # The bound itself is in, a microsecond before it is out.
    "updated_since=2024-03-01T12:00:00Z",
    # A microsecond after the bound, in another zone: the incident changed at the bound is out.
    "updated_since=2024-03-01T17:30:00.000001%2B05:30",
    # A year of three digits, which the kept rows write with four.
    "updated_since=0999-06-01T00:00:00Z",
    "type=violence",
    "type=beating",
    "type=violence&updated_since=2024-03-01T12:00:00Z",
    "type=violence&country=CN&date_from=2024-01-03",
    "updated_since=2024-03-01T12:00:00Z&review_state=draft&min_people=1",
]


def make_syncs_and_types(records: list[Incident]) -> dict[str, Incident]:
    """On top of `make_messy_records`: incidents merged into survivors each reader may or may not
    see, incidents changed on the edges of SYNCED_AT, and a tree of incident types three deep."""
    blank, _, secret_only, hidden, draft = records
    merged = {
        "into_public": make_incident(title="Merged into a public one"),
        "into_draft": make_incident(title="Merged into a draft"),
        "into_in_review": make_incident(title="Merged into one in review"),
        "into_confidential": make_incident(title="Merged into a confidential one"),
        "confidential_into_public": make_incident(title="Confidential, merged", confidential=True),
        "draft_into_public": make_incident(title="Draft, merged", review_state="draft"),
    }
    survivors = {
        "into_public": blank,
        "into_draft": draft,
        "into_in_review": secret_only,
        "into_confidential": hidden,
        "confidential_into_public": blank,
        "draft_into_public": blank,
    }
    for name, incident in merged.items():
        Incident.objects.filter(pk=incident.pk).update(merged_into=survivors[name])
    microsecond = timedelta(microseconds=1)
    for changed_at in (SYNCED_AT - microsecond, SYNCED_AT, SYNCED_AT + microsecond, SYNCED_AT - timedelta(days=400)):
        changed = make_incident(title=f"Changed at {changed_at.isoformat()}")
        # Changed then for every reader: the time given to every audience's columns (migrations
        # 0095, 0102).
        Incident.objects.filter(pk=changed.pk).update(
            updated_at=changed_at, disclosed_updated_at=changed_at, public_updated_at=changed_at
        )
    Incident.objects.filter(pk__in=[incident.pk for incident in merged.values()]).update(
        updated_at=SYNCED_AT, disclosed_updated_at=SYNCED_AT, public_updated_at=SYNCED_AT
    )
    violence = IncidentType.objects.create(slug="violence", name="Violence")
    beating = IncidentType.objects.create(slug="beating", name="Beating", parent=violence)
    caning = IncidentType.objects.create(slug="caning", name="Caning", parent=beating)
    for incident_type, day in ((violence, 3), (beating, 4), (caning, 5), (caning, 1)):
        make_incident(
            title=f"Of type {incident_type.slug}",
            incident_type=incident_type,
            date_start=date(2024, 1, day),
            date_end=date(2024, 1, day + 1),
            places=[Place.objects.get(name="Jilin", parent__name="China")],
        )
    Incident.objects.filter(incident_type__slug="caning").update(
        updated_at=SYNCED_AT, disclosed_updated_at=SYNCED_AT, public_updated_at=SYNCED_AT
    )
    return merged


def test_syncs_and_types_export_what_the_incidents_select(messy_records, tmp_path):
    merged = make_syncs_and_types(messy_records)
    for name, reader in READERS.items():
        user = reader()
        for query in SYNCS_AND_TYPES:
            assert exported_rows(user, query, tmp_path) == expected_rows(user, query), (name, query)
            if name == "confidential":
                assert recorded_export(user, query, tmp_path) == _recorded(expected_record(user, query)), query
            # Answered by the kept rows' own columns, not by the incidents' ids (the fallback).
            assert_answered_by_kept_rows(user, query)
    # The merged incidents each reader follows: those they may see, into a survivor they may see.
    followed = {
        name: {row["title"] for row in exported_rows(reader(), SYNCS_AND_TYPES[0], tmp_path) if row["merged_into"]}
        for name, reader in READERS.items()
    }
    unpublished = ("into_public", "into_draft", "into_in_review", "draft_into_public")
    assert followed == {
        "anonymous": {merged["into_public"].title},
        "analyst": {merged[name].title for name in unpublished},
        "confidential": {incident.title for incident in merged.values()},
    }
    # The bounds did cut: a microsecond either side of SYNCED_AT, and a type's sub-types.
    anyone = AnonymousUser()
    titles = {query: {row["title"] for row in exported_rows(anyone, query, tmp_path)} for query in SYNCS_AND_TYPES}
    assert "Changed at 2024-03-01T12:00:00+00:00" in titles[SYNCS_AND_TYPES[1]]
    assert "Changed at 2024-03-01T11:59:59.999999+00:00" not in titles[SYNCS_AND_TYPES[1]]
    assert "Changed at 2024-03-01T12:00:00+00:00" not in titles[SYNCS_AND_TYPES[2]]
    assert "Changed at 2024-03-01T12:00:00.000001+00:00" in titles[SYNCS_AND_TYPES[2]]
    assert titles[SYNCS_AND_TYPES[3]] == titles[SYNCS_AND_TYPES[0]]
    assert titles["type=violence"] == {"Of type violence", "Of type beating", "Of type caning"}
    assert titles["type=beating"] == {"Of type beating", "Of type caning"}
    # A door that filters the incidents itself (`write_incidents_csv` takes any queryset) may bound
    # them by a time in another zone: the same instant.
    india = timezone(timedelta(hours=5, minutes=30))
    for bound in (SYNCED_AT, SYNCED_AT + timedelta(microseconds=1)):
        incidents = Incident.objects.visible_to(anyone).filter(updated_at__gte=bound.astimezone(india))
        out = io.BytesIO()
        write_incidents_csv(incidents, anyone, out, door=AccessDoor.COMMAND, export_filters={})
        exported = {row["public_id"] for row in csv.DictReader(io.StringIO(out.getvalue().decode()))}
        assert exported == set(incidents.values_list("public_id", flat=True)), bound


# An incident type with its sub-types, alone and with the filters the kept rows answer beside it:
# the tree three deep of `make_syncs_and_types`, and the demo data's own (`execution` and its
# sub-type, `forced-repatriation` without any).
TYPES = [
    "type=violence",
    "type=beating",
    "type=caning",
    "type=violence&date_from=2024-01-05&date_to=2024-01-06",
    "type=violence&date_from=2024-01-02",
    "type=violence&country=CN",
    "type=beating&country=KP",
    "type=execution",
    "type=execution&date_from=2015-01-01&date_to=2020-12-31",
    "type=forced-repatriation&country=CN",
]


def test_an_export_by_type_is_the_incidents_selection_to_the_byte(messy_records, tmp_path, monkeypatch):
    make_syncs_and_types(messy_records)
    violence, caning = IncidentType.objects.get(slug="violence"), IncidentType.objects.get(slug="caning")
    # Each reader sees another part of the tree: a confidential violence, a draft caning.
    january_4 = {"date_start": date(2024, 1, 4), "date_end": date(2024, 1, 4)}
    make_incident(title="Confidential violence", incident_type=violence, confidential=True)
    make_incident(title="Draft caning", incident_type=caning, review_state="draft", **january_4)
    # A type changed through the API: the kept row follows it out of one subtree into another.
    moved = make_incident(title="Moved from violence to caning", incident_type=violence, **january_4)
    _patch_incident(make_user(roles.REVIEWER, is_superuser=True), moved, {"incident_type": "caning"})
    assert_kept_types_are_the_incidents()
    exported = {}
    for name, reader in READERS.items():
        user = reader()
        for query in TYPES:
            by_kept_type = exported_bytes(user, query, tmp_path)
            # Said of the kept rows' type id (exports.kept_rows), not by the incidents' ids.
            sql = " ".join(
                str(part.query) for part in kept_rows(incidents_matching(user=user, filters=QueryDict(query)))
            )
            assert '"incident_type_id" IN (' in sql and '"incident_id" IN (SELECT' not in sql, (name, query)
            # The rows of the incidents the queryset selects by their own type (the fallback).
            by_incidents = fallback_bytes(user, query, tmp_path, monkeypatch)
            assert by_kept_type == by_incidents, (name, query)
            exported[name, query] = {row["title"] for row in csv.DictReader(io.StringIO(by_kept_type.decode()))}
    # The types did select: each subtree and no more, other rows for other readers, and the
    # demo data's types many rows but not every row.
    assert exported["anonymous", "type=violence"] == {
        "Of type violence",
        "Of type beating",
        "Of type caning",
        "Moved from violence to caning",
    }
    assert exported["anonymous", "type=caning"] == {"Of type caning", "Moved from violence to caning"}
    assert exported["analyst", "type=caning"] == exported["anonymous", "type=caning"] | {"Draft caning"}
    assert exported["confidential", "type=violence"] == exported["analyst", "type=violence"] | {"Confidential violence"}
    assert exported["anonymous", "type=violence&date_from=2024-01-05&date_to=2024-01-06"] == {
        "Of type beating",
        "Of type caning",
    }
    assert exported["anonymous", "type=violence&date_from=2024-01-02"] == {
        "Of type violence",
        "Of type beating",
        "Of type caning",
        "Moved from violence to caning",
    }
    assert exported["anonymous", "type=violence&country=CN"] == {
        "Of type violence",
        "Of type beating",
        "Of type caning",
    }
    assert exported["anonymous", "type=beating&country=KP"] == set()
    demo_types = exported["confidential", "type=execution"]
    assert 0 < len(exported["confidential", "type=execution&date_from=2015-01-01&date_to=2020-12-31"]) < len(demo_types)
    assert 0 < len(demo_types) < Incident.objects.count()


def test_readers_see_confidential_claims_and_records_only_with_the_permission(messy_records, tmp_path):
    _, both_claims, secret_only, hidden, _ = messy_records
    for name, reader in READERS.items():
        rows = {row["public_id"]: row for row in exported_rows(reader(), "", tmp_path)}
        confidential = name == "confidential"
        assert (hidden.public_id in rows) is confidential
        assert rows[both_claims.public_id]["source_count"] == ("3" if confidential else "2"), name
        assert ("Informant" in rows.get(secret_only.public_id, {}).get("sources", "")) is confidential, name
        # Found by a word only the confidential claim's excerpt holds: only by who may read it.
        found = {row["public_id"] for row in exported_rows(reader(), "q=informant", tmp_path)}
        assert (both_claims.public_id in found) is confidential, name


# Every kind of write that changes what a row shows, each through a door people use (the API, the
# admin, the import command), by an `editor` who may make them all. The rows are kept by triggers
# in the statement that writes (migration 0028): these check that no write leaves one stale.
RECORDS = ("blank", "both_claims", "secret_only", "hidden", "draft")


def _answered(answer, status: int = 200):
    assert answer.status_code == status, answer.content
    return answer


def _patch_incident(editor, incident: Incident, body: dict) -> None:
    incident.refresh_from_db()
    _answered(client_for(editor).patch(incident_url(incident), {**body, "version": incident.version}, format="json"))


def _patch(editor, resource: str, record, body: dict) -> None:
    record.refresh_from_db()
    body = {**body, "version": record.version}
    _answered(client_for(editor).patch(f"{API}/{resource}/{record.pk}/", body, format="json"))


def _press_release() -> Source:
    return Source.objects.get(title="Press release", cites=None)


def edit_incident(editor, records, tmp_path):
    fields = {
        "title": "=1+1, edited",
        "date_start": "2019-05-01",
        "date_end": "2019-05-31",
        "date_precision": "month",
        "people_count": 12,
        "people_count_min": 10,
        "people_count_max": 15,
        "count_qualifier": "about",
        "verification": "verified",
    }
    _patch_incident(editor, records["both_claims"], fields)


def publish(editor, records, tmp_path):
    _patch_incident(editor, records["secret_only"], {"review_state": "published"})


def make_confidential(editor, records, tmp_path):
    # The kept rows answer a reader's visibility themselves (exports.kept_rows): their flag follows.
    _patch_incident(editor, records["both_claims"], {"confidential": True})


def make_confidential_by_a_bulk_update(editor, records, tmp_path):
    # No version bump, no service: only the flag changes, as a bulk update or SQL would change it.
    Incident.objects.filter(pk__in=[records["blank"].pk, records["secret_only"].pk]).update(confidential=True)


def replace_places(editor, records, tmp_path):
    places = Place.objects.filter(name__in=["=Yellow Sea", "Shelter; north wing", "Lao Cai"])
    _patch_incident(editor, records["blank"], {"places": [place.pk for place in places]})


def replace_claims(editor, records, tmp_path):
    kept = Claim.objects.get(incident=records["both_claims"], source=_press_release(), confidential=False)
    claims = [
        {"id": kept.pk, "source": kept.source_id, "people_count": 45, "source_connection": "third_party"},
        {"source": make_source(title="Witness; second").pk, "people_count": 7, "confidential": True},
        {"source": make_source(title=" Padded ").pk, "people_count_min": 2, "people_count_max": 500},
    ]
    _patch_incident(editor, records["both_claims"], {"claims": claims})


def replace_perpetrators(editor, records, tmp_path):
    organizations = [Organization.objects.get(name="Red Cross"), make_organization(name='"Unit" 7')]
    involvements = [{"organization": organization.pk, "role": "perpetrator"} for organization in organizations]
    _patch_incident(editor, records["both_claims"], {"involvements": involvements})


def rename_source(editor, records, tmp_path):
    _patch(editor, "sources", _press_release(), {"title": "Communiqué; final"})


def make_source_confidential(editor, records, tmp_path):
    _patch(editor, "sources", _press_release(), {"confidential": True})


def relay_another_source(editor, records, tmp_path):
    # The relay of the informant's account now relays the public press release: its origin, for
    # every reader, and so both_claims' count of origins (migration 0043).
    relay = Source.objects.get(title="Press release", cites__isnull=False)
    _patch(editor, "sources", relay, {"cites": _press_release().pk})


def make_relayed_source_public(editor, records, tmp_path):
    _patch(editor, "sources", Source.objects.get(title="Informant's account"), {"confidential": False})


def rename_organization(editor, records, tmp_path):
    _patch(editor, "organizations", Organization.objects.get(name="Border guard; unit 2"), {"name": "Border guard"})


def rename_province(editor, records, tmp_path):
    # Jilin the city, and the shelter and dormitory under it, show the province in their paths.
    _patch(editor, "places", Place.objects.get(name="Jilin", parent__name="China"), {"name": "Jilin > province"})


def move_place(editor, records, tmp_path):
    shelter = Place.objects.get(name="Shelter; north wing")
    _patch(editor, "places", shelter, {"parent": Place.objects.get(name="China").pk})


def change_place_country(editor, records, tmp_path):
    _patch(editor, "places", Place.objects.get(name="=Yellow Sea"), {"country": "KP"})


def rename_incident_type(editor, records, tmp_path):
    _patch(editor, "incident-types", IncidentType.objects.get(slug="forced-repatriation"), {"slug": "sent-back"})


def change_type(editor, records, tmp_path):
    _patch_incident(editor, records["both_claims"], {"incident_type": "torture"})


def _merge(editor, records) -> None:
    pair = DuplicatePair.objects.create(incident_a=records["blank"], incident_b=records["both_claims"], score=0.9)
    merge = {"survivor": records["blank"].public_id}
    _answered(client_for(editor).post(f"{API}/duplicates/{pair.pk}/merge/", merge, format="json"), 201)


def merge(editor, records, tmp_path):
    _merge(editor, records)


def merge_and_undo(editor, records, tmp_path):
    _merge(editor, records)
    undo = f"{API}/incidents/{records['both_claims'].public_id}/unmerge/"
    _answered(client_for(editor).post(undo, {}, format="json"))


def delete_through_the_api(editor, records, tmp_path):
    _answered(client_for(editor).delete(incident_url(records["both_claims"])), 204)


def delete_in_the_admin(editor, records, tmp_path):
    client = Client()
    client.force_login(editor)
    url = reverse("admin:incidents_incident_delete", args=[records["draft"].pk])
    _answered(client.post(url, {"post": "yes"}), 302)


def import_a_file(editor, records, tmp_path):
    both_claims = Incident.objects.get(pk=records["both_claims"].pk)
    secret = Source.objects.get(title="Informant's account")
    content = (
        "public_id,version,title,type,date_start,date_end,places,perpetrators,sources\n"
        f"{both_claims.public_id},{both_claims.version},Imported title,deportation,2024-01-02,2024-01-04,"
        f"'=Yellow Sea,Red Cross,Press release [#{_press_release().pk}]\n"
        ",,New; imported,forced-repatriation,2022-03-01,2022-03-01,"
        f"China > Jilin > Jilin; =Yellow Sea,Red Cross,Informant's account [#{secret.pk}]\n"
    )
    run_import(editor, tmp_path, content, "--allow-duplicates")


WRITES = [
    edit_incident,
    publish,
    make_confidential,
    make_confidential_by_a_bulk_update,
    replace_places,
    replace_claims,
    replace_perpetrators,
    rename_source,
    make_source_confidential,
    relay_another_source,
    make_relayed_source_public,
    rename_organization,
    rename_province,
    move_place,
    change_place_country,
    rename_incident_type,
    change_type,
    merge,
    merge_and_undo,
    delete_through_the_api,
    delete_in_the_admin,
    import_a_file,
]

# The whole export, an incremental sync's (which reports merged incidents with `merged_into`), and
# filters the kept rows answer by their own columns and a search by their ids (exports.kept_rows),
# which must follow too.
AFTER_WRITES = [
    "",
    "updated_since=2000-01-01T00:00:00Z",
    "country=KP",
    "country=CN&date_from=2024-01-03",
    "q=Jilin&date_from=2024-01-02",
    # Not forced-repatriation, which a write renames: the types both_claims is changed to.
    "type=deportation",
    "type=torture&country=CN",
    "min_origins=2",
]


@pytest.mark.parametrize("write", WRITES, ids=[write.__name__ for write in WRITES])
def test_every_cell_stays_what_the_records_say_after_each_kind_of_write(write, tmp_path):
    records = dict(zip(RECORDS, make_messy_records(10), strict=True))
    assert_kept_types_are_the_incidents()
    editor = make_user(roles.REVIEWER, confidential=True, is_superuser=True)
    readers = {name: reader() for name, reader in READERS.items()}
    shown = ("", "min_origins=2")
    before = {name: [exported_rows(user, query, tmp_path) for query in shown] for name, user in readers.items()}

    write(editor, records, tmp_path)

    assert_kept_types_are_the_incidents()
    assert_kept_origins_are_the_incidents()
    for name, user in readers.items():
        for query in AFTER_WRITES:
            assert exported_rows(user, query, tmp_path) == expected_rows(user, query), (name, query)
    # The confidential claims each row keeps for the record of an export (migration 0030).
    confidential = readers["confidential"]
    for query in AFTER_WRITES:
        assert recorded_export(confidential, query, tmp_path) == _recorded(expected_record(confidential, query)), query
    # The write did change what the export shows someone, or which incidents have two origins.
    after = {name: [exported_rows(user, query, tmp_path) for query in shown] for name, user in readers.items()}
    assert after != before


def kept_export_rows() -> list[tuple]:
    """Every column of every kept export row, by incident."""
    columns = [field.attname for field in IncidentExportRow._meta.concrete_fields]
    return list(IncidentExportRow.objects.order_by("incident_id").values_list(*columns))


def export_rows_a_refresh_makes() -> list[tuple]:
    """Every incident's export row made again, from nothing, by the function every trigger calls."""
    with connection.cursor() as cursor:
        # Once the foreign keys' checks deferred until now have run: a table with pending ones
        # cannot be emptied.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("DELETE FROM incidents_incidentexportrow")
        cursor.execute("SELECT incident_export_refresh(ARRAY(SELECT id FROM incidents_incident))")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    return kept_export_rows()


@contextmanager
def plpgsql_calls():
    """How many times each PL/pgSQL function ran within the block: {name: calls}, filled on exit.
    Counted for this transaction, which a test's requests share."""

    def counted() -> Counter:
        cursor.execute("SELECT funcname, calls FROM pg_stat_xact_user_functions")
        return Counter(dict(cursor.fetchall()))

    calls = Counter()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL track_functions = 'pl'")
        before = counted()
        yield calls
        calls.update(counted() - before)


def test_a_source_made_confidential_and_public_again_keeps_what_a_refresh_from_scratch_makes():
    # A reviewer makes a source confidential, then public again. Every incident citing it gets a
    # new version and a history entry naming the reviewer; every kept row (export rows, search
    # words, statistics' totals), of those incidents and of those citing a source relaying it, is
    # what a refresh from scratch makes; and the work is done once, not again for each incident.
    records = make_messy_records(10)
    origin = Source.objects.get(pk=make_links(records)["origin"])
    reviewer = make_user(roles.REVIEWER, confidential=True, is_superuser=True)
    citing = sorted(set(Claim.objects.filter(source=origin).values_list("incident_id", flat=True)))
    assert len(citing) == 3
    versions = dict(Incident.objects.values_list("pk", "version"))
    update_events = Incident.pgh_event_models["update"].objects.filter(pgh_label="update")
    first_new_event = (update_events.order_by("-pgh_id").values_list("pgh_id", flat=True).first() or 0) + 1

    for confidential in (True, False):
        with plpgsql_calls() as calls:
            _patch(reviewer, "sources", origin, {"confidential": confidential})
        # The export rows made once, by the source's trigger, and not again by the incidents' new
        # versions; the incidents' history written in one statement, not by a trigger for each:
        # one context stored for the source's own history row, one for the incidents', one for
        # the new versions of the sources citing it (whose trigger finds no export row to make).
        assert (calls["incident_export_refresh"], calls["_pgh_attach_context"]) == (2, 3)
        assert kept_export_rows() == export_rows_a_refresh_makes(), confidential
        assert search_words() == search_words_an_edit_computes(), confidential
        assert_kept_totals_are_recounted()
        assert_kept_origins_are_the_incidents()

    bumped = {pk: version for pk, version in Incident.objects.values_list("pk", "version") if version != versions[pk]}
    assert bumped == {pk: versions[pk] + 2 for pk in citing}
    # Each new version's history entry: who, when, and the incident as it then was.
    new_events = update_events.filter(pgh_id__gte=first_new_event)
    assert sorted(new_events.values_list("pgh_obj_id", "version")) == [
        (pk, versions[pk] + step) for pk in citing for step in (1, 2)
    ]
    # Not the columns the database derives, which the history leaves out.
    derived = {*KEPT_VERSION_FIELDS, "disclosed_updated_by"}
    tracked = [field.attname for field in Incident._meta.concrete_fields if field.name not in derived]
    for incident in Incident.objects.filter(pk__in=citing):
        last = new_events.filter(pgh_obj_id=incident.pk).latest("pgh_id")
        assert [getattr(last, name) for name in tracked] == [getattr(incident, name) for name in tracked]
        assert (last.pgh_context.metadata["user"], incident.updated_by_id) == (reviewer.pk, reviewer.pk)


def test_the_sql_rule_for_formulas_is_the_python_one():
    cells = ["=1", "+1", "-1", "@A1", "\tx", "\rx", "'=1", "''+1", "'x", "x=1", " =1", "plain", ""]
    with connection.cursor() as cursor:
        for cell in cells:
            cursor.execute("SELECT csv_neutralised(%s)", [cell])
            assert cursor.fetchone()[0] == _neutralised(cell), repr(cell)


def while_a_reviewer_runs(statement: str, parameters: list, analyst_writes) -> None:
    """Run `analyst_writes` on a connection of its own while a reviewer's transaction has run
    `statement` with `parameters` and not yet committed; the reviewer commits a second later."""

    def analyst():
        try:
            analyst_writes()
        finally:
            connection.close()

    with psycopg.connect(**connection.get_connection_params()) as reviewer:
        reviewer.execute(statement, parameters)
        analyst_thread = threading.Thread(target=analyst)
        analyst_thread.start()
        # Time for the analyst's write to meet the uncommitted change; were it later, it would
        # only find the change committed, and the test would check the plain case.
        time.sleep(1)
    analyst_thread.join(10)


def while_a_reviewer_makes_confidential(source: Source, analyst_writes) -> None:
    """`analyst_writes` while a reviewer's transaction has made `source` confidential."""
    while_a_reviewer_runs("UPDATE incidents_source SET confidential = true WHERE id = %s", [source.pk], analyst_writes)


@pytest.mark.django_db(transaction=True)
def test_a_claim_added_while_its_source_is_made_confidential_does_not_show_the_source_to_the_public():
    # A reviewer marks a source confidential (an informant) while an analyst cites it on an
    # incident. The kept rows' refresh of each reads the other's change only if the two wait for
    # each other (the claims' `lock_source` trigger); without it the analyst's refresh read the
    # source as public, the reviewer's did not see the new claim, and the informant's title stayed
    # in the public export and search words.
    incident = make_incident(title="Deportation at the border")
    informant = make_source(title="Zanzibarite informant")
    while_a_reviewer_makes_confidential(informant, lambda: make_claim(incident=incident, source=informant))

    public = client_for()
    exported = b"".join(public.get(f"{API}/incidents.csv").streaming_content).decode()
    assert "Deportation at the border" in exported
    assert "Zanzibarite" not in exported
    assert public.get(f"{API}/incidents/", {"q": "Zanzibarite"}).json()["results"] == []
    confidential_reader = client_for(make_user(roles.REVIEWER, confidential=True))
    assert "Zanzibarite" in b"".join(confidential_reader.get(f"{API}/incidents.csv").streaming_content).decode()


@pytest.mark.django_db(transaction=True)
def test_relays_cited_while_the_source_they_relay_is_made_confidential_are_counted_as_their_own_origins():
    # Two outlets relay one informant's testimony. A reviewer marks the testimony confidential while
    # an analyst records a new incident citing both outlets. To a reader without Confidential access
    # each outlet is then an origin of its own: 2. The new incident's kept count is right only if the
    # two writes wait for each other over the whole chain (the claims' `lock_source` trigger locks
    # the cited source and every source up its `cites`): without it the analyst's refresh read the
    # testimony as public (one origin for both outlets), and the reviewer's refresh, of the
    # incidents citing the outlets, could not see an incident not yet committed.
    testimony = make_source(title="Testimony", kind="testimony")
    outlets = [make_source(title=title, cites=testimony) for title in ("First outlet", "Second outlet")]
    recorded = []

    def analyst_records_the_incident():
        incident = make_incident(title="Relayed twice")
        for outlet in outlets:
            make_claim(incident=incident, source=outlet)
        recorded.append(incident)

    while_a_reviewer_makes_confidential(testimony, analyst_records_the_incident)

    assert_kept_origins_are_the_incidents()
    corroborated = client_for().get(f"{API}/incidents/", {"min_origins": 2}).json()["results"]
    assert [found["public_id"] for found in corroborated] == [incident.public_id for incident in recorded]


def make_links(records: list[Incident]) -> dict[str, int]:
    """On top of `make_messy_records`: a publisher with a public source and a confidential one relaying
    it, a public source relaying the confidential one, incidents citing each (one in a confidential
    claim of the public source only), a confidential incident its publisher is involved in, and a
    merged incident in Jilin citing and involving them all. The ids the link filters take."""
    _, _, _, hidden, _ = records
    china = Place.objects.get(name="China", parent=None)
    jilin_province = Place.objects.get(name="Jilin", parent=china)
    jilin_city = Place.objects.get(name="Jilin", parent=jilin_province)
    publisher = make_organization(name="Jilin Daily", kind="media")
    origin = make_source(title="Origin report", publisher=publisher)
    relayed = make_source(title="Relayed in confidence", cites=origin, confidential=True, publisher=publisher)
    echo = make_source(title="Echo", cites=relayed)

    def citing(title, source, *, confidential=False, **fields):
        incident = make_incident(title=title, date_start=date(2024, 1, 3), date_end=date(2024, 1, 4), **fields)
        make_claim(incident=incident, source=source, confidential=confidential)
        return incident

    citing("Cites the origin", origin, places=[jilin_city])
    citing("Cites the confidential relay", relayed, places=[Place.objects.get(name='Dormitory "B"')])
    citing("Cites the echo", echo, review_state="draft")
    citing("Cites the origin in confidence", origin, confidential=True)
    Involvement.objects.create(incident=hidden, organization=publisher, role="other")
    merged = citing("Merged, in Jilin", origin, places=[jilin_city])
    Involvement.objects.create(incident=merged, organization=publisher, role="perpetrator")
    Incident.objects.filter(pk=merged.pk).update(merged_into=records[0])
    return {
        "province": jilin_province.pk,
        "city": jilin_city.pk,
        "shelter": Place.objects.get(name="Shelter; north wing").pk,
        "sea": Place.objects.get(name="=Yellow Sea").pk,
        "press_release": _press_release().pk,
        "origin": origin.pk,
        "relayed": relayed.pk,
        "publisher": publisher.pk,
        "perpetrator": Organization.objects.get(name="Border guard; unit 2").pk,
        "bystander": Organization.objects.get(name="Red Cross").pk,
    }


# The link filters, said of the kept rows (exports.kept_rows: filters.LinkedToIncident), alone and
# with the filters the kept rows answer by their own columns; `{name}` is an id of `make_links`.
LINK_FILTERS = [
    "place={province}",
    "place={city}",
    "place={shelter}",
    "place={sea}",
    "source={press_release}",
    "source={origin}",
    "organization={perpetrator}",
    "organization={publisher}",
    "organization={bystander}",
    "place={province}&date_from=2024-01-03&date_to=2024-01-05",
    "organization={perpetrator}&country=CN",
    "source={origin}&review_state=draft&review_state=published",
    "place={city}&q=Jilin",
    "place={city}&updated_since=2000-01-01T00:00:00Z",
    "organization={publisher}&source={origin}&min_people=0",
]
# A source only the confidential reader may choose: for the others, "not a valid choice".
CONFIDENTIAL_LINK_FILTERS = ["source={relayed}", "organization={publisher}&source={relayed}"]


def test_link_filters_export_what_the_incidents_select(messy_records, tmp_path, monkeypatch):
    ids = make_links(messy_records)
    for name, reader in READERS.items():
        user = reader()
        queries = LINK_FILTERS + (CONFIDENTIAL_LINK_FILTERS if name == "confidential" else [])
        for query in (query.format(**ids) for query in queries):
            by_links = exported_bytes(user, query, tmp_path)
            assert by_links == fallback_bytes(user, query, tmp_path, monkeypatch), (name, query)
            assert exported_rows(user, query, tmp_path) == expected_rows(user, query), (name, query)
            if name == "confidential":
                assert recorded_export(user, query, tmp_path) == _recorded(expected_record(user, query)), query
            assert_answered_by_kept_rows(user, query)
    # The filters did select, and by what each reader may see: a chain of sources is followed, and a
    # claim counted, only through what the reader may see.
    titles = {
        name: {
            query: {row["title"] for row in exported_rows(reader(), query.format(**ids), tmp_path)}
            for query in ("source={origin}", "organization={publisher}", "place={province}")
        }
        for name, reader in READERS.items()
    }
    assert titles["anonymous"]["source={origin}"] == {"Cites the origin"}
    assert titles["analyst"]["source={origin}"] == {"Cites the origin"}
    assert titles["confidential"]["source={origin}"] == {
        "Cites the origin",
        "Cites the confidential relay",
        "Cites the echo",
        "Cites the origin in confidence",
    }
    assert titles["anonymous"]["organization={publisher}"] == {"Cites the origin"}
    assert titles["confidential"]["organization={publisher}"] == {
        "Cites the origin",
        "Cites the confidential relay",
        "Cites the origin in confidence",
        "Confidential incident",
    }
    # Jilin and the places inside it, four deep; never the merged incident.
    assert {"Jilin both claims", "Cites the origin", "Cites the confidential relay"} <= titles["anonymous"][
        "place={province}"
    ]
    assert "Merged, in Jilin" not in set().union(*(by_query["place={province}"] for by_query in titles.values()))
    assert "Only a secret source" in titles["analyst"]["place={province}"]


def listed_ids(user, query: str) -> list[str]:
    """The public ids of the incidents the API's list gives `user` for `query`, every page."""
    client = client_for(user if user.is_authenticated else None)
    url, ids = f"{API}/incidents/?{query}&page_size=200", []
    while url:
        body = _answered(client.get(url)).json()
        ids += [incident["public_id"] for incident in body["results"]]
        url = body["next"]
    return ids


def assert_kept_origins_are_the_incidents() -> None:
    """Every kept row holds its incident's independent origins as each audience may know them
    (`IncidentQuerySet.with_independent_origins`), whatever the incident's state (migration 0043)."""
    for user in (AnonymousUser(), make_user(roles.VIEWER, confidential=True)):
        counted = Incident.objects.with_independent_origins(user).values_list("public_id", "independent_origins")
        kept = IncidentExportRow.objects.values_list("public_id", exports.origin_cells(user))
        assert dict(kept) == dict(counted), exports.origin_cells(user)


def make_chains() -> dict[str, Source]:
    """Chains of relays: one public throughout, one through a confidential source in its middle,
    and incidents citing them, published, a draft and a confidential one, some in confidence."""
    origin = make_source(title="Chain origin")
    echo = make_source(title="Echo", cites=origin)
    echo_of_echo = make_source(title="Echo of the echo", cites=echo)
    vault = make_source(title="Vault", cites=origin, confidential=True, kind="testimony")
    leak = make_source(title="Leak", cites=vault)
    own = make_source(title="Own reporting")

    def citing(title, *sources, in_confidence=(), **fields):
        incident = make_incident(title=title, date_start=date(2024, 2, 1), date_end=date(2024, 2, 2), **fields)
        for source in sources:
            make_claim(incident=incident, source=source, confidential=source in in_confidence)

    citing("Echoes and their origin", echo, echo_of_echo, origin)
    citing("A leak and its origin", leak, origin)
    citing("A leak and own reporting", leak, own, review_state="draft")
    citing("The vault alone", vault)
    citing("Own reporting, the origin in confidence", own, origin, in_confidence=(origin,))
    citing("Confidential, three origins", own, origin, make_source(), confidential=True)
    return {"origin": origin, "echo": echo, "echo_of_echo": echo_of_echo, "vault": vault, "leak": leak}


# The filters on independent origins, alone and with those the kept rows answer by their own columns.
ORIGIN_FILTERS = [
    "min_origins=0",
    "min_origins=1",
    "min_origins=2",
    "min_origins=3",
    "min_origins=2&date_from=2024-01-03&review_state=draft&review_state=published",
]
CHAIN_TITLES = {
    "Echoes and their origin",
    "A leak and its origin",
    "A leak and own reporting",
    "The vault alone",
    "Own reporting, the origin in confidence",
    "Confidential, three origins",
}


def test_min_origins_exports_what_the_api_lists_as_sources_change(tmp_path):
    make_messy_records(20)
    sources = make_chains()
    editor = make_user(roles.REVIEWER, confidential=True, is_superuser=True)
    readers = {name: reader() for name, reader in READERS.items()}

    def vault_made_public():
        _patch(editor, "sources", sources["vault"], {"confidential": False})

    def echo_cites_nothing():
        # Its relay, which cites it, ends at it too: both rows' counts follow.
        _patch(editor, "sources", sources["echo"], {"cites": None})

    def origin_made_confidential():
        _patch(editor, "sources", sources["origin"], {"confidential": True})

    def relay_deleted():
        echoes = Incident.objects.get(title="Echoes and their origin")
        claims = [{"source": source.pk} for source in (sources["echo"], sources["origin"])]
        _patch_incident(editor, echoes, {"claims": claims})
        _answered(client_for(editor).delete(f"{API}/sources/{sources['echo_of_echo'].pk}/"), 204)

    def merged():
        pair = DuplicatePair.objects.create(
            incident_a=Incident.objects.get(title="A leak and its origin"),
            incident_b=Incident.objects.get(title="The vault alone"),
            score=0.9,
        )
        survivor = {"survivor": pair.incident_a.public_id}
        _answered(client_for(editor).post(f"{API}/duplicates/{pair.pk}/merge/", survivor, format="json"), 201)

    # After each write, the incidents of the chains with at least two origins, for each reader: a
    # chain ends, for a reader without the confidential permission, at the last source they may see.
    steps = [
        (
            lambda: None,
            {"A leak and its origin"},
            {"A leak and its origin", "A leak and own reporting"},
            {"A leak and own reporting", "Own reporting, the origin in confidence", "Confidential, three origins"},
        ),
        (
            vault_made_public,
            set(),
            {"A leak and own reporting"},
            {"A leak and own reporting", "Own reporting, the origin in confidence", "Confidential, three origins"},
        ),
        (
            echo_cites_nothing,
            {"Echoes and their origin"},
            {"Echoes and their origin", "A leak and own reporting"},
            {
                "Echoes and their origin",
                "A leak and own reporting",
                "Own reporting, the origin in confidence",
                "Confidential, three origins",
            },
        ),
    ]
    confidential_origin = {
        "Echoes and their origin",
        "A leak and own reporting",
        "Own reporting, the origin in confidence",
        "Confidential, three origins",
    }
    steps += [
        (write, set(), {"A leak and own reporting"}, confidential_origin)
        for write in (origin_made_confidential, relay_deleted, merged)
    ]
    for write, *corroborated in steps:
        write()
        assert_kept_origins_are_the_incidents()
        for (name, user), expected in zip(readers.items(), corroborated, strict=True):
            for query in ORIGIN_FILTERS:
                exported = [row["public_id"] for row in exported_rows(user, query, tmp_path)]
                assert sorted(exported) == sorted(listed_ids(user, query)), (write.__name__, name, query)
                assert_answered_by_kept_rows(user, query)
            assert exported_rows(user, "min_origins=2", tmp_path) == expected_rows(user, "min_origins=2")
            titles = {row["title"] for row in exported_rows(user, "min_origins=2", tmp_path)}
            assert titles & CHAIN_TITLES == expected, (write.__name__, name)


# The admin's changelist export (`export.csv?<the changelist's query>`) and its action's selection.
ADMIN_QUERIES = [
    "",
    "date_from=2024-01-03&date_to=2024-01-05&country=CN",
    "q=Jilin",
    "q=informant&review_state__exact=in_review",
    "review_state__exact=draft",
    "confidential__exact=1",
    "verification__exact=alleged&date_from=2024-01-03",
]


def test_the_admin_exports_what_its_changelist_selects(messy_records, client, tmp_path, monkeypatch):
    make_links(messy_records)
    statements = []
    copy_statement = exports.copy_statement

    def recorded_statement(*args, **kwargs):
        statements.append(copy_statement(*args, **kwargs))
        return statements[-1]

    monkeypatch.setattr(exports, "copy_statement", recorded_statement)
    chosen = [incident.pk for incident in Incident.objects.order_by("pk")[:40:3]] + [messy_records[3].pk]
    for name in ("analyst", "confidential"):
        user = READERS[name]()
        client.force_login(user)
        newest = ConfidentialAccess.objects.order_by("-id").values_list("id", flat=True).first() or 0
        # The list offers its Confidential filter only to those who may see confidential records.
        offered = [query for query in ADMIN_QUERIES if name == "confidential" or "confidential__" not in query]
        for query in offered:
            url = reverse("admin:incidents_incident_export_csv") + f"?{query}"
            exported = b"".join(client.get(url).streaming_content)
            with monkeypatch.context() as patched:
                patched.setattr(exports, "_said_of_kept_rows", lambda query, where: None)
                assert exported == b"".join(client.get(url).streaming_content), (name, query)
                assert '"incidents_incident"' in statements[-1]  # the fallback: the incidents' ids
            # The kept rows by their own columns: the incidents are not read at all.
            assert '"incidents_incident"' not in statements[-2], (name, query)
        action = {"action": "export_selected_as_csv", "_selected_action": chosen}
        selected = b"".join(client.post(reverse("admin:incidents_incident_changelist"), action).streaming_content)
        assert '"incidents_incident"' not in statements[-1]
        with monkeypatch.context() as patched:
            patched.setattr(exports, "_said_of_kept_rows", lambda query, where: None)
            fallback = client.post(reverse("admin:incidents_incident_changelist"), action)
            assert selected == b"".join(fallback.streaming_content), name
        # The whole changelist is the whole export; the selection holds only what the reader may see.
        everything = exported_bytes(user, "", tmp_path)
        assert b"".join(client.get(reverse("admin:incidents_incident_export_csv")).streaming_content) == everything
        selected_ids = {row["public_id"] for row in csv.DictReader(io.StringIO(selected.decode()))}
        visible = Incident.objects.visible_to(user).filter(pk__in=chosen)
        assert selected_ids == set(visible.values_list("public_id", flat=True))
        assert (messy_records[3].public_id in selected_ids) is (name == "confidential")
        # The confidential reader's exports were recorded with what they held, on either path alike.
        records = ConfidentialAccess.objects.filter(id__gt=newest, user=user).order_by("id")
        pairs = list(records.values_list("row_count", "incident_ids"))
        if name == "confidential":
            assert pairs and all(pairs[index] == pairs[index + 1] for index in range(0, len(pairs) - 1, 2))
        else:
            assert pairs == []


# The refresh before migration 0042, as its own function: the kept rows must not change by a byte.
# With the confidential sources' and claims' marks of migrations 0088 and 0094, the only changes since
# to the cells it wrote.
_REFRESH_OF_0040 = (
    importlib.import_module("incidents.migrations.0030_export_rows_filters_and_record")
    ._edited(
        importlib.import_module("incidents.migrations.0040_export_rows_by_type").REFRESH_SQL,
        (
            importlib.import_module("incidents.migrations.0088_export_marks_confidential_sources").ITEM_MARKED,
            importlib.import_module("incidents.migrations.0094_export_marks_confidential_claims").ITEM_MARKED,
        ),
    )
    .replace("FUNCTION incident_export_refresh(", "FUNCTION pg_temp.incident_export_refresh_of_0040(", 1)
)


def test_the_refresh_keeps_the_rows_migration_0040_kept_to_the_byte(messy_records):
    """Migration 0042 reads the records in another order, and 0043 also counts the independent
    origins (0088 marks confidential sources, in both); every kept row, as the triggers and the demo
    data keep them and as one refresh of every incident writes them, is the old refresh's in every
    column it wrote, and holds its incident's origins."""
    make_syncs_and_types(messy_records)
    make_chains()
    # Names on the edges of the list items' grammar, repeated, and in more than one cell.
    tower = make_place(name="Tower > east", parent=Place.objects.get(name="Jilin", parent__name="China"), country="CN")
    quoted = make_source(title=' "Quoted" report; part 2 ')
    for title, organization in (("-minus", "=cmd > x"), ("@at", ' "Unit" 9 ')):
        incident = make_incident(title=title, places=[tower, Place.objects.get(name="=Yellow Sea")])
        make_claim(incident=incident, source=quoted, people_count=None)
        make_claim(incident=incident, source=quoted, people_count=7, confidential=True)
        Involvement.objects.create(
            incident=incident, organization=make_organization(name=organization), role="perpetrator"
        )
    assert_kept_origins_are_the_incidents()
    # Written since (0043; 0095, 0102: each audience's version and change time).
    written_since = (
        "disclosed_origins",
        "complete_origins",
        "disclosed_updated_at",
        "disclosed_version",
        "public_updated_at",
        "public_version",
    )
    columns = [field.column for field in IncidentExportRow._meta.concrete_fields if field.column not in written_since]
    every_row = f"SELECT {', '.join(columns)} FROM incidents_incidentexportrow"
    differing = f"SELECT count(*) FROM (({every_row}) EXCEPT ALL (SELECT * FROM kept)) AS more" + (
        f" UNION ALL SELECT count(*) FROM ((SELECT * FROM kept) EXCEPT ALL ({every_row})) AS fewer"
    )
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE kept AS {every_row}")
        cursor.execute(_REFRESH_OF_0040)
        # The old refresh writes no origins: zero for its rows, in this test's transaction alone (once
        # the foreign keys' checks deferred until now have run: a table with pending ones cannot change).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "ALTER TABLE incidents_incidentexportrow ALTER COLUMN disclosed_origins SET DEFAULT 0,"
            " ALTER COLUMN complete_origins SET DEFAULT 0, ALTER COLUMN disclosed_updated_at SET DEFAULT '',"
            " ALTER COLUMN disclosed_version SET DEFAULT 0, ALTER COLUMN public_updated_at SET DEFAULT '',"
            " ALTER COLUMN public_version SET DEFAULT 0"
        )
        cursor.execute("DELETE FROM incidents_incidentexportrow")
        # Every id twice: the refresh keeps each incident's row once.
        cursor.execute(
            "SELECT pg_temp.incident_export_refresh_of_0040(ARRAY(SELECT id FROM incidents_incident UNION ALL"
            " SELECT id FROM incidents_incident))"
        )
        cursor.execute(differing)
        assert [count for (count,) in cursor.fetchall()] == [0, 0]
        cursor.execute("DELETE FROM incidents_incidentexportrow")
        cursor.execute(
            "SELECT incident_export_refresh(ARRAY(SELECT id FROM incidents_incident UNION ALL"
            " SELECT id FROM incidents_incident))"
        )
        cursor.execute(differing)
        assert [count for (count,) in cursor.fetchall()] == [0, 0]
        cursor.execute("SELECT count(*) FROM kept")
        assert cursor.fetchone()[0] == Incident.objects.count()
    assert_kept_origins_are_the_incidents()


PLACE_CHANGES = {
    "its country": ("UPDATE incidents_place SET country = 'KP' WHERE id = %s", "city"),
    "its province's name": ("UPDATE incidents_place SET name = 'Ryanggang' WHERE id = %s", "province"),
    "its province's parent": ("UPDATE incidents_place SET parent_id = NULL WHERE id = %s", "province"),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", PLACE_CHANGES)
def test_an_incident_recorded_at_a_place_while_the_place_changes_counts_and_exports_as_it_now_is(change, tmp_path):
    # A reviewer corrects a place (its country, or the province above it) while an analyst records
    # an incident there. The kept export row and statistics' totals of the new incident follow the
    # correction only if the two writes wait for each other: the reviewer's refresh cannot see an
    # incident not yet committed, and the analyst's must not read the place as it was.
    china = make_place(name="China", kind="country", country="CN")
    province = make_place(name="Jilin", kind="province", parent=china)
    city = make_place(name="Hyesan", parent=province)
    statement, changed = PLACE_CHANGES[change]
    recorded = []
    while_a_reviewer_runs(
        statement,
        [{"city": city, "province": province}[changed].pk],
        lambda: recorded.append(make_incident(title="Recorded at the border", places=[city])),
    )
    assert recorded

    for query in ["", "country=KP", "country=CN", f"place={china.pk}"]:
        assert exported_rows(AnonymousUser(), query, tmp_path) == expected_rows(AnonymousUser(), query), query
    assert_kept_totals_are_recounted()


def assert_kept_totals_are_recounted() -> None:
    """The statistics' totals the triggers keep are those `recount_statistics` counts afresh."""
    facet_key = [field.name for field in IncidentFacetTotal._meta.fields if field.name not in ("id", "incidents")]

    def totals():
        return [
            sorted(
                IncidentRollup.objects.values_list(
                    "dimension", "country", "place_id", "incidents", "incidents_without_figure"
                )
            ),
            list(IncidentFacetTotal.objects.order_by(*facet_key).values_list(*facet_key, "incidents")),
        ]

    kept = totals()
    call_command("recount_statistics", stdout=io.StringIO())
    assert kept == totals()


def public_search(words: str) -> list[str]:
    """The public ids of the incidents the public API's search for `words` finds."""
    return [found["public_id"] for found in client_for().get(f"{API}/incidents/", {"q": words}).json()["results"]]


# A reviewer's change of an organization, the word it brings into the incident's kept rows, and the
# analyst's write that makes the organization the incident's perpetrator meanwhile.
ORGANIZATION_RACES = {
    "renamed while added": ("name = 'Zanzibarite Guard'", "Zanzibarite", "added"),
    "given an acronym while added": ("acronym = 'ZNZG'", "ZNZG", "added"),
    "renamed while made perpetrator": ("name = 'Zanzibarite Guard'", "Zanzibarite", "made perpetrator"),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("race", ORGANIZATION_RACES)
def test_a_perpetrator_named_while_the_organization_is_renamed_exports_and_is_found_as_it_now_is(race, tmp_path):
    # A reviewer renames an organization while an analyst names it as an incident's perpetrator.
    # The incident's kept export row (its perpetrators) and search words follow the new name only
    # if the two writes wait for each other: the reviewer's refresh cannot see an involvement not
    # yet committed, and the analyst's must not read the organization as it was.
    change, new_word, write = ORGANIZATION_RACES[race]
    incident = make_incident(title="Deportation at the border")
    guard = make_organization(name="Border guard", kind="government")
    if write == "made perpetrator":
        # Its search words already hold the name, which the reviewer's refresh of them rewrites.
        facilitator = Involvement.objects.create(incident=incident, organization=guard, role="facilitator")

    def analyst_writes():
        if write == "added":
            Involvement.objects.create(incident=incident, organization=guard, role="perpetrator")
        else:
            Involvement.objects.filter(pk=facilitator.pk).update(role="perpetrator")

    while_a_reviewer_runs(f"UPDATE incidents_organization SET {change} WHERE id = %s", [guard.pk], analyst_writes)

    assert Involvement.objects.filter(incident=incident, role="perpetrator").exists()
    assert exported_rows(AnonymousUser(), "", tmp_path) == expected_rows(AnonymousUser(), "")
    assert public_search(new_word) == [incident.public_id]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("write", ["a claim added", "the source's publisher changed"])
def test_a_claim_recorded_while_its_publisher_is_renamed_is_found_by_the_new_name(write):
    # A reviewer renames a publisher while an analyst cites one of its sources on an incident (or
    # makes it the publisher of a source the incident cites). The incident's search words hold the
    # claims' publishers' names; they follow the new name only if the two writes wait for each other.
    incident = make_incident(title="Deportation at the border")
    daily = make_organization(name="Hyesan Herald", kind="media")
    source = make_source(title="Press report", publisher=daily if write == "a claim added" else None)
    if write != "a claim added":
        make_claim(incident=incident, source=source)

    def analyst_writes():
        if write == "a claim added":
            make_claim(incident=incident, source=source)
        else:
            Source.objects.filter(pk=source.pk).update(publisher=daily)

    while_a_reviewer_runs(
        "UPDATE incidents_organization SET name = 'Zanzibarite Daily' WHERE id = %s", [daily.pk], analyst_writes
    )

    assert Claim.objects.filter(incident=incident, source__publisher=daily).exists()
    assert public_search("Zanzibarite") == [incident.public_id]
    assert public_search("Herald") == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("write", ["recorded", "moved"])
def test_an_incident_of_a_type_whose_slug_changes_meanwhile_exports_the_new_slug(write, tmp_path):
    # A reviewer changes a type's slug while an analyst records an incident of that type, or moves
    # one to it. The incident's kept export row (its type cell) shows the new slug only if the two
    # writes wait for each other.
    removal = IncidentType.objects.create(slug="border-removal", name="Border removal")
    incident = make_incident(title="Deportation at the border")

    def analyst_writes():
        if write == "recorded":
            make_incident(title="Removed at the border", incident_type=removal)
        else:
            Incident.objects.filter(pk=incident.pk).update(incident_type=removal)

    while_a_reviewer_runs(
        "UPDATE incidents_incidenttype SET slug = 'zanzibarite-removal' WHERE id = %s", [removal.pk], analyst_writes
    )

    assert Incident.objects.filter(incident_type=removal).count() == 1
    assert_kept_types_are_the_incidents()
    assert exported_rows(AnonymousUser(), "", tmp_path) == expected_rows(AnonymousUser(), "")
    assert len(exported_rows(AnonymousUser(), "type=zanzibarite-removal", tmp_path)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("named", ["perpetrator", "publisher"])
def test_an_import_naming_an_organization_while_it_changes_keeps_the_words_it_now_has(named, tmp_path):
    # A reviewer gives an organization an acronym while an analyst imports an incident that names it
    # as perpetrator, or cites a source it publishes. The import turns the row triggers that lock
    # what a link refers to off, and locks everything it links at once (`incident_links_lock`):
    # without that, its search words kept the organization without its acronym.
    guard = make_organization(name="Border guard", kind="government")
    make_source(title="Press report", publisher=guard)
    analyst = make_user(roles.ANALYST)
    perpetrators = "Border guard" if named == "perpetrator" else ""
    content = (
        "title,type,date_start,date_end,perpetrators,sources\n"
        f"Imported at the border,forced-repatriation,2024-01-01,2024-01-01,{perpetrators},Press report\n"
    )
    while_a_reviewer_runs(
        "UPDATE incidents_organization SET acronym = 'ZNZG' WHERE id = %s",
        [guard.pk],
        lambda: run_import(analyst, tmp_path, content),
    )

    assert Incident.objects.filter(title="Imported at the border").exists()
    assert search_words() == search_words_an_edit_computes()


@pytest.mark.django_db(transaction=True)
def test_an_import_citing_a_source_while_it_is_made_confidential_does_not_show_the_source_to_the_public(tmp_path):
    # A reviewer marks a source confidential while an analyst imports an incident citing it. The
    # import turns the claims' `lock_source` trigger off and locks every source its claims cite at
    # once (`incident_sources_lock`, migration 0077): without that, the import's kept rows read the
    # source as public, and the reviewer's refresh could not see an incident not yet committed.
    informant = make_source(title="Zanzibarite informant")
    content = (
        "title,type,date_start,date_end,sources\n"
        "Imported at the border,forced-repatriation,2024-01-01,2024-01-01,Zanzibarite informant\n"
    )
    while_a_reviewer_makes_confidential(informant, lambda: run_import(make_user(roles.ANALYST), tmp_path, content))

    imported = Incident.objects.get(title="Imported at the border")
    kept = IncidentExportRow.objects.get(incident=imported)
    assert (kept.disclosed_source_count, kept.disclosed_sources) == (0, None)
    assert (kept.complete_source_count, kept.complete_sources) == (
        1,
        f"Zanzibarite informant [#{informant.pk}] [confidential]",
    )
    assert search_words() == search_words_an_edit_computes()
    assert kept_export_rows() == export_rows_a_refresh_makes()


@pytest.mark.django_db(transaction=True)
def test_an_import_citing_relays_while_the_source_they_relay_is_made_confidential_counts_their_own_origins(
    tmp_path,
):
    # As `test_relays_cited_while_the_source_they_relay_is_made_confidential_are_counted_as_their_own_origins`,
    # through an import: its lock covers the sources up the chains of those its claims cite.
    testimony = make_source(title="Testimony", kind="testimony")
    for title in ("First outlet", "Second outlet"):
        make_source(title=title, cites=testimony)
    content = (
        "title,type,date_start,date_end,sources\n"
        "Relayed twice,forced-repatriation,2024-01-01,2024-01-01,First outlet; Second outlet\n"
    )
    while_a_reviewer_makes_confidential(testimony, lambda: run_import(make_user(roles.ANALYST), tmp_path, content))

    assert Incident.objects.filter(title="Relayed twice").exists()
    assert_kept_origins_are_the_incidents()


def while_a_merge_is_open(statement: str, merge_writes) -> None:
    """Run a reviewer's `statement` on a connection of its own, and commit it, while `merge_writes`
    (a merge or its undo) has moved the links and not yet committed; the merge commits a second
    later. (The other order, `while_a_reviewer_runs`, the merge survives on its own: its moves wait
    at the kept rows of the incident the reviewer's refresh wrote, and its later writes read the
    change committed.)"""
    moved = threading.Event()
    save_changed = merges._save_changed

    def saved_then_paused(*args, **kwargs):
        save_changed(*args, **kwargs)
        if not moved.is_set():
            moved.set()
            time.sleep(1)

    def merge():
        try:
            merge_writes()
        finally:
            connection.close()

    merges._save_changed = saved_then_paused
    try:
        merge_thread = threading.Thread(target=merge)
        merge_thread.start()
        assert moved.wait(10)
        with psycopg.connect(**connection.get_connection_params()) as reviewer:
            reviewer.execute(statement)
        merge_thread.join(10)
    finally:
        merges._save_changed = save_changed


# A reviewer's change of a record a duplicate links to, made while a merge moves the link.
MERGE_RACES = {
    "a place's country": "UPDATE incidents_place SET country = 'KP' WHERE name = 'Hyesan'",
    "an organization's name": "UPDATE incidents_organization SET name = 'Zanzibarite' WHERE name = 'Border guard'",
    "a source made confidential": "UPDATE incidents_source SET confidential = true WHERE title = 'Informant note'",
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("door", ["merge", "undo"])
@pytest.mark.parametrize("race", MERGE_RACES)
def test_links_moved_by_a_merge_while_what_they_refer_to_changes_export_and_are_found_as_it_now_is(
    race, door, tmp_path
):
    # A reviewer changes a place, an organization or a source that a duplicate links to while
    # another merges the duplicate into its survivor (or undoes that merge). The merge moves the
    # links with an UPDATE of their incident, which the row triggers that lock what a link refers
    # to do not see; the moved links' incident keeps its kept rows right only if the two writes
    # wait for each other: the reviewer's refresh cannot see a move not yet committed, and the
    # merge's must not read the record as it was.
    merging = make_user(roles.REVIEWER, confidential=True)
    survivor = make_incident(title="Sent back from Tumen", places=[make_place(name="Tumen")])
    duplicate = make_incident(title="Sent back at the border", places=[make_place(name="Hyesan")])
    Involvement.objects.create(
        incident=duplicate, organization=make_organization(name="Border guard"), role="perpetrator"
    )
    make_claim(incident=duplicate, source=make_source(title="Informant note"))
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=duplicate, score=0.9)
    merge = merges.incident_merge(user=merging, pair=pair) if door == "undo" else None

    def reviewer_merges():
        if merge is None:
            merges.incident_merge(user=merging, pair=pair)
        else:
            merges.incident_merge_undo(user=merging, merge=merge)

    while_a_merge_is_open(MERGE_RACES[race], reviewer_merges)

    moved_to = survivor if door == "merge" else duplicate
    assert Involvement.objects.get().incident_id == moved_to.pk
    for reader in (AnonymousUser(), merging):
        assert exported_rows(reader, "", tmp_path) == expected_rows(reader, ""), reader
    assert search_words() == search_words_an_edit_computes()
    assert_kept_totals_are_recounted()


VERSION_CELLS = [
    "version",
    "updated_at",
    "disclosed_version",
    "disclosed_updated_at",
    "public_version",
    "public_updated_at",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("hidden", [{"review_state": "draft"}, {"confidential": True}], ids=["draft", "confidential"])
def test_an_organization_renamed_keeps_each_audiences_change_time_in_the_rows_of_incidents_hidden_from_it(hidden):
    """The rows of the incidents it is involved in but not as perpetrator took the rename's time in
    every change-time cell, where the incident (and its row made again) keeps the change time of an
    audience it is hidden from (migration 0110)."""
    organization = make_organization(name="Red Cross office")
    incident = make_incident(**hidden)
    Involvement.objects.create(incident=incident, organization=organization, role="other")
    organization.refresh_from_db()

    answer = client_for(make_user(roles.REVIEWER, confidential=True)).patch(
        f"{API}/organizations/{organization.pk}/",
        {"name": "Red Cross delegation", "version": organization.version},
        format="json",
    )
    assert answer.status_code == 200, answer.content

    kept = IncidentExportRow.objects.filter(incident=incident).values(*VERSION_CELLS).get()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM incidents_incidentexportrow WHERE incident_id = %s", [incident.pk])
        cursor.execute("SELECT incident_export_refresh(ARRAY[%s]::bigint[])", [incident.pk])
    made_again = IncidentExportRow.objects.filter(incident=incident).values(*VERSION_CELLS).get()
    stored = Incident.objects.filter(pk=incident.pk).values(*VERSION_CELLS).get()
    assert kept == made_again
    assert kept["public_updated_at"] == exports.kept_time(stored["public_updated_at"])
