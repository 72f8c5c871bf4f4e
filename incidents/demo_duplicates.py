"""Realistic duplicates for the demo data, with the truth kept aside, to measure duplicate finding.

A duplicate is the same event reported again by another outlet (`demo_text.report_text` with the
original's event facts): other words for the title and description, or none; the count said
otherwise (rounded, as a range, "at least", not at all, now and then simply wrong); the date less
or more precise ("July 2021" against 14 July 2021, or a few days off); the place as the village, its
city, the province, a neighbouring town or only the country; a claim from the original's own source, a relay
of it, or an independent outlet; the perpetrator named or not. Some events are reported three or
four times.

The truth, every pair of incidents reporting one event, is written to a CSV file and nowhere in the
database: no table, API, export, release or history can show it, a dump does not carry it, and
the duplicate finder cannot read it by mistake. `bench/bench_duplicates.py` and the tests compare
the finder's proposals with it.

Written with COPY, like the rest of the demo data (`demo_data.py`), in the generator's
transaction, so the statistics count them once and their insert events are not audited either.
"""

import calendar
import csv
import itertools
import random
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

from incidents.demo_text import FAMILY, DemoReports, RandomDraws, report_text
from incidents.models import Claim, Incident, IncidentPlace, Involvement, Place, Source


def _recounted(original: dict, rng: random.Random) -> tuple[int | None, int | None, int | None, str]:
    """(best, min, max, qualifier) as another outlet gives the original's count."""
    best = original["people_count"]
    if best is None:
        best = original["people_count_min"] or original["people_count_max"]
    roll = rng.random()
    if best is None or roll < 0.08:
        return None, None, None, "unknown"
    if roll < 0.40:
        return best, None, None, "exact"
    if roll < 0.70:
        rounded = max(1, round(best, -1) if best >= 20 else round(best * rng.uniform(0.85, 1.15)))
        return rounded, int(rounded * 0.8), int(rounded * 1.2) + 1, "about"
    if roll < 0.85:
        low = max(1, int(best * rng.uniform(0.5, 0.95)))
        return low, low, None, "at_least"
    if roll < 0.95:
        low, high = max(1, int(best * rng.uniform(0.6, 0.95))), int(best * rng.uniform(1.05, 1.6)) + 1
        return None, low, high, "unknown"
    # A misreport: the same event with a figure far off (a typo, a confusion with another group).
    return max(1, int(best * rng.choice([0.4, 2, 2.5, 10]))), None, None, "exact"


def _redated(original: dict, rng: random.Random) -> tuple[date, date, str]:
    start, end, precision = original["date_start"], original["date_end"], original["date_precision"]
    roll = rng.random()
    if precision == "day":
        if roll < 0.45:
            return start, end, precision
        if roll < 0.60:
            # The report's date is the day it learnt of it, or the day of arrest rather than handover.
            shifted = start + timedelta(days=rng.choice([-3, -2, -1, 1, 2, 3]))
            return shifted, shifted, precision
        if roll < 0.72:
            monday = start - timedelta(days=start.weekday())
            return monday, monday + timedelta(days=6), "week"
        if roll < 0.95:
            last = calendar.monthrange(start.year, start.month)[1]
            return start.replace(day=1), start.replace(day=last), "month"
        return start.replace(month=1, day=1), start.replace(month=12, day=31), "year"
    if roll < 0.75 or (end - start).days < 2:
        return start, end, precision
    # A more precise report of a vaguely dated event: a day within its range.
    day = start + timedelta(days=rng.randint(0, (end - start).days))
    return day, day, "day"


class _Places:
    """The demo's places: each one's parent, country and the cities under each province."""

    def __init__(self):
        rows = list(Place.objects.values_list("pk", "parent_id", "kind", "country"))
        self.parent = {pk: parent for pk, parent, _, _ in rows}
        self.kind = {pk: kind for pk, _, kind, _ in rows}
        self.children = defaultdict(list)
        for pk, parent, _, _ in rows:
            if parent is not None:
                self.children[parent].append(pk)

    def as_reported(self, place_id: int, rng: random.Random) -> int:
        """The same place, one up (the city of a village, the province of a city), the province, a
        neighbouring town of the province, or the country."""
        lineage = [place_id]
        while self.parent.get(lineage[-1]) is not None:
            lineage.append(self.parent[lineage[-1]])
        roll = rng.random()
        if roll < 0.60 or len(lineage) < 3:
            return place_id
        if roll < 0.80:
            return lineage[1]
        if roll < 0.92:
            return lineage[-2]
        city, province = lineage[-3], lineage[-2]
        neighbours = [other for other in self.children[province] if other != city]
        if roll < 0.97 and neighbours:
            return rng.choice(neighbours)
        return lineage[-1]


def write_demo_duplicates(*, generator, reference, count: int, originals: range, truth: Path) -> None:
    """Write `count` incidents that report again events of the incidents `originals` (ids just
    written by `generator`), and the true pairs to `truth`. One COPY per table."""
    # Imported here: demo_data calls this module from inside its own load.
    from incidents.demo_data import COPY_COLUMNS, _copy, _reserve_ids

    reports: DemoReports = generator.reports
    rng = random.Random(f"duplicates:{reports.seed}")
    chosen = [rng.choice(originals) for _ in range(count)]
    rows = {
        row["id"]: row
        for row in Incident.objects.filter(pk__in=set(chosen)).values(
            "id", "incident_type_id", "incident_type__slug", "date_start", "date_end", "date_precision",
            "people_count", "people_count_min", "people_count_max", "review_state", "confidential",
        )
    }  # fmt: skip
    places, claims, involvements = defaultdict(list), defaultdict(list), defaultdict(list)
    for incident_id, place_id in (
        IncidentPlace.objects.filter(incident__in=rows).order_by("pk").values_list("incident", "place")
    ):
        places[incident_id].append(place_id)
    for incident_id, source_id in Claim.objects.filter(incident__in=rows).values_list("incident", "source"):
        claims[incident_id].append(source_id)
    for incident_id, organization_id, role in Involvement.objects.filter(incident__in=rows).values_list(
        "incident", "organization", "role"
    ):
        involvements[incident_id].append((organization_id, role))
    geography = _Places()

    first_id = _reserve_ids(Incident, count)
    first_source_id = _reserve_ids(Source, count)
    incident_rows, place_rows, involvement_rows, claim_rows, source_rows = [], [], [], [], []
    events = defaultdict(list)
    now = generator.now
    for offset, original_id in enumerate(chosen):
        incident_id, original = first_id + offset, rows[original_id]
        events[original_id].append(incident_id)
        best, low, high, qualifier = _recounted(original, rng)
        start, end, precision = _redated(original, rng)
        reported_at = geography.as_reported(places[original_id][0], rng)
        name, parent_id, country = reports.place(reported_at)
        # A village or district is told with its city: "in Sambong-ri, Hyesan".
        locality, name = (name, reports.place(parent_id)[0]) if geography.kind[reported_at] == "other" else (None, name)
        title, description = report_text(
            reports.event_facts(original_id), RandomDraws(rng), family=FAMILY[original["incident_type__slug"]],
            country=country, place_name=name, locality=locality, best=best if best is not None else low,
            start=start, end=end, precision=precision,
        )  # fmt: skip
        updated_at = now - timedelta(minutes=rng.randint(0, 60 * 24 * 365 * 3))
        incident_rows.append(
            (incident_id, title, original["incident_type_id"], description if rng.random() < 0.9 else "", start,
             end, precision, best, low, high, qualifier, "alleged", rng.choice(["draft", "in_review", "published"]),
             original["confidential"], 1, updated_at, updated_at)
        )  # fmt: skip
        place_rows.append((incident_id, reported_at))
        place_rows.extend((incident_id, other) for other in places[original_id][1:] if rng.random() < 0.5)
        involvement_rows.extend(
            (incident_id, organization_id, role)
            for organization_id, role in involvements[original_id]
            if rng.random() < 0.85
        )
        # The original's own outlet again (a follow-up), a relay of it, or an independent report.
        roll, original_source = rng.random(), rng.choice(claims[original_id] or reference.source_ids)
        if roll < 0.15:
            source_id = original_source
        elif roll < 0.40:
            source_id = first_source_id + offset
            source_rows.append(
                (source_id, f"Demo relay of source #{original_source}", "news_article", "",
                 rng.choice(reference.publisher_ids), "", start, "en", "", original_source, False, "", now, now)
            )  # fmt: skip
        else:
            source_id = rng.choice(reference.source_ids)
        claim_rows.append(
            (incident_id, source_id, best, low, high, qualifier, None, None, "unknown", "", "", "third_party", False,
             now, now)
        )  # fmt: skip
    for model, new_rows in (
        (Source, source_rows),
        (Incident, incident_rows),
        (IncidentPlace, place_rows),
        (Involvement, involvement_rows),
        (Claim, claim_rows),
    ):
        _copy(model, COPY_COLUMNS[model], iter(new_rows))
    public_ids = dict(Incident.objects.filter(pk__gte=first_id).values_list("pk", "public_id"))
    public_ids.update(Incident.objects.filter(pk__in=events).values_list("pk", "public_id"))
    with truth.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["incident_a", "incident_b"])
        for original_id, duplicates in sorted(events.items()):
            for a, b in itertools.combinations([original_id, *duplicates], 2):
                writer.writerow([public_ids[a], public_ids[b]])
