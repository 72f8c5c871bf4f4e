"""A realistic, deterministic synthetic data set for development and benchmarks.

The same `seed` always produces the same rows. Reference data (organizations, places) is reused by
name, so the generator can run against a database that already holds the sample data. Incidents
and everything hanging off them are written with PostgreSQL's COPY in batches, all in one
transaction: row-by-row saves would take hours at a million incidents, COPY takes minutes. COPY
still runs every CHECK, unique and foreign key constraint, so the rows satisfy the same rules as those
entered by hand, and the statistics' kept totals count them, the search holds their words and the
CSV export their rows (each once, at the end of the load, by the functions the triggers call:
`statistics_counted_once`, `_kept_rows_computed_once`).

One thing is skipped: the audit history's insert events of these synthetic rows (incidents, their
claims, places, involvements and victim groups, sources, and the localities made for them). Each
audit row costs a PL/pgSQL call with two subtransactions; measured on 5,000 incidents, 1.6 s with
them against 0.17 s without, which would turn a few minutes at a million incidents into half an
hour, and the history would say nothing an analyst did. The reference rows made on a first run
(countries, cities, governments, outlets) are audited as any insert, and updates and deletes of
demo rows are audited like any other. The incidents in review are the exception: each gets its
insert event, written in one statement and dated by the incident's last change, since the
in-review list reads when an incident was submitted from its history and showed demo data's as
unknown.
"""

import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from django.db import connection, transaction
from django.db.models import Max

from incidents.demo_duplicates import write_demo_duplicates
from incidents.demo_text import LOCALITIES_PER_CITY, DemoReports
from incidents.history import set_insert_triggers
from incidents.models import (
    Claim,
    DatePrecision,
    Incident,
    IncidentExportRow,
    IncidentFacetTotal,
    IncidentPlace,
    IncidentRollup,
    IncidentRollupEntry,
    IncidentSearchDocument,
    IncidentType,
    Involvement,
    Organization,
    Place,
    Source,
    VictimGroup,
)
from incidents.services import record_events
from incidents.statistics import statistics_counted_once

# (country code, name, latitude, longitude, [(province, [cities])])
GEOGRAPHY = [
    ("CN", "China", 35.0, 103.0, [
        ("Liaoning", ["Dandong", "Shenyang", "Kuandian"]),
        ("Jilin", ["Yanji", "Tumen", "Changbai", "Hunchun", "Longjing", "Helong", "Ji'an"]),
        ("Heilongjiang", ["Harbin", "Mudanjiang"]),
        ("Yunnan", ["Kunming", "Mengla"]),
        ("Shandong", ["Qingdao", "Yantai"]),
    ]),
    ("KP", "North Korea", 40.0, 127.0, [
        ("North Pyongan", ["Sinuiju", "Sakju"]),
        ("Ryanggang", ["Hyesan", "Samjiyon"]),
        ("North Hamgyong", ["Hoeryong", "Musan", "Onsong", "Chongjin"]),
        ("Chagang", ["Manpo"]),
    ]),
    ("RU", "Russia", 61.5, 105.3, [("Primorsky Krai", ["Vladivostok", "Khasan", "Ussuriysk"]),
                                   ("Khabarovsk Krai", ["Khabarovsk"])]),
    ("LA", "Laos", 19.9, 102.5, [("Luang Namtha", ["Boten"]), ("Vientiane Prefecture", ["Vientiane"])]),
    ("VN", "Vietnam", 14.1, 108.3, [("Lao Cai", ["Lao Cai"]), ("Hanoi", ["Hanoi"])]),
    ("TH", "Thailand", 15.9, 100.9, [("Chiang Rai", ["Mae Sai", "Chiang Saen"]), ("Bangkok", ["Bangkok"])]),
    ("MN", "Mongolia", 46.9, 103.8, [("Dornogovi", ["Zamyn-Uud"]), ("Ulaanbaatar", ["Ulaanbaatar"])]),
    ("MM", "Myanmar", 21.9, 95.9, [("Shan", ["Muse", "Tachileik"])]),
]  # fmt: skip

ORGANIZATIONS = [
    ("Demo Refugee Rights Network", "ngo"),
    ("Demo Border Monitor", "ngo"),
    ("Demo Daily News", "media"),
    ("Demo Asia Broadcasting", "media"),
    ("Demo Institute for Migration Studies", "research"),
    ("Demo Faith Outreach", "religious"),
    ("Demo Regional Human Rights Body", "intergovernmental"),
]

# (value, weight) pairs: how often each value occurs.
TYPE_WEIGHTS = [
    ("forced-repatriation", 40),
    ("arbitrary-detention", 20),
    ("deportation", 15),
    ("enforced-disappearance", 6),
    ("torture", 6),
    ("forced-labour", 5),
    ("trafficking", 4),
    ("sexual-violence", 2),
    ("execution", 1),
    ("extrajudicial-execution", 1),
]
PRECISION_WEIGHTS = [("day", 50), ("month", 20), ("week", 5), ("year", 10), ("range", 10), ("unknown", 5)]
QUALIFIER_WEIGHTS = [("exact", 40), ("about", 35), ("at_least", 15), ("at_most", 5), ("unknown", 5)]
VERIFICATION_WEIGHTS = [("alleged", 50), ("corroborated", 30), ("verified", 12), ("disputed", 6), ("retracted", 2)]
REVIEW_WEIGHTS = [("published", 80), ("in_review", 8), ("draft", 12)]
SOURCE_KIND_WEIGHTS = [("news_article", 50), ("ngo_report", 25), ("testimony", 10), ("government_statement", 10)]
CONNECTION_WEIGHTS = [("third_party", 60), ("witness", 15), ("victim", 10), ("informant", 5), ("official", 10)]
FIRST_DAY, LAST_DAY = date(1995, 1, 1), date(2025, 12, 31)


def _choices(weighted: list[tuple[str, int]]) -> tuple[list[str], list[int]]:
    return [value for value, _ in weighted], [weight for _, weight in weighted]


@dataclass
class Reference:
    """The rows incidents point to, looked up or created once per run."""

    type_ids: dict[str, int]
    country_place_ids: dict[str, int]
    leaf_places: list[tuple[int, str]]  # (place id, country code)
    government_ids: dict[str, int]
    publisher_ids: list[int]
    source_ids: list[int] = field(default_factory=list)


def _ensure_reference_data() -> Reference:
    type_ids = dict(IncidentType.objects.filter(slug__in=[slug for slug, _ in TYPE_WEIGHTS]).values_list("slug", "pk"))
    missing = {slug for slug, _ in TYPE_WEIGHTS} - type_ids.keys()
    if missing:
        raise ValueError(f"Incident types missing (run migrate): {', '.join(sorted(missing))}")
    country_place_ids, leaf_places, government_ids = {}, [], {}
    for code, name, latitude, longitude, provinces in GEOGRAPHY:
        country, _ = Place.objects.get_or_create(
            name=name,
            parent=None,
            defaults={"kind": "country", "country": code, "latitude": latitude, "longitude": longitude},
        )
        country_place_ids[code] = country.pk
        for index, (province_name, cities) in enumerate(provinces):
            province, _ = Place.objects.get_or_create(
                name=province_name,
                parent=country,
                # Its country is the country's (`Place.save`), as an analyst's province's is.
                defaults={
                    "kind": "province",
                    "latitude": round(latitude + index, 4),
                    "longitude": round(longitude + index, 4),
                },
            )
            for city_index, city_name in enumerate(cities):
                city, _ = Place.objects.get_or_create(
                    name=city_name,
                    parent=province,
                    # Every other city is a sensitive location (e.g. a shelter's town).
                    defaults={"kind": "city", "sensitive": city_index % 2 == 1},
                )
                leaf_places.append((city.pk, code))
        government, _ = Organization.objects.get_or_create(
            name=f"Government of {name} (demo)", defaults={"kind": "government", "country": code}
        )
        government_ids[code] = government.pk
    publisher_ids = [
        Organization.objects.get_or_create(name=name, defaults={"kind": kind})[0].pk for name, kind in ORGANIZATIONS
    ]
    return Reference(type_ids, country_place_ids, leaf_places, government_ids, publisher_ids)


def _reserve_ids(model, count: int) -> int:
    """Reserve `count` consecutive primary keys and return the first, so child rows can point at
    parents written in the same COPY batch without a round trip per row. (A development tool: it
    assumes no other writer takes ids from the same sequence at the same instant.)"""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(sequence, nextval(sequence) + %s - 1) FROM pg_get_serial_sequence(%s, 'id') AS sequence",
            [count, model._meta.db_table],
        )
        return cursor.fetchone()[0] - count + 1


# The columns each table's rows are written in, by the generator and its duplicates phase.
COPY_COLUMNS = {
    Source: ["id", "title", "kind", "url", "publisher_id", "author", "published_on", "language", "archive_url",
             "cites_id", "confidential", "notes", "created_at", "updated_at"],
    Incident: ["id", "title", "incident_type_id", "description", "date_start", "date_end", "date_precision",
               "people_count", "people_count_min", "people_count_max", "count_qualifier", "verification",
               "review_state", "confidential", "version", "created_at", "updated_at"],
    IncidentPlace: ["incident_id", "place_id"],
    Involvement: ["incident_id", "organization_id", "role"],
    VictimGroup: ["incident_id", "count", "sex", "age_group", "nationality", "description"],
    Claim: ["incident_id", "source_id", "people_count", "people_count_min", "people_count_max", "count_qualifier",
            "date_start", "date_end", "date_precision", "excerpt", "locator", "source_connection", "confidential",
            "created_at", "updated_at"],
}  # fmt: skip


def _copy(model, columns: list[str], rows: Iterator[tuple]) -> None:
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


class DemoDataGenerator:
    def __init__(self, *, seed: int):
        self.random = random.Random(seed)
        self.reports = DemoReports(seed)
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def pick(self, weighted: list[tuple[str, int]]) -> str:
        values, weights = _choices(weighted)
        return self.random.choices(values, weights)[0]

    def dates(self) -> tuple[date, date, str]:
        # Skewed towards recent years, as documentation is.
        span = (LAST_DAY - FIRST_DAY).days
        start = FIRST_DAY + timedelta(days=int(span * (self.random.random() ** 0.5)))
        precision = self.pick(PRECISION_WEIGHTS)
        if precision == "month":
            start = start.replace(day=1)
            end = (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        elif precision == "year":
            start, end = start.replace(month=1, day=1), start.replace(month=12, day=31)
        elif precision == "week":
            start -= timedelta(days=start.weekday())
            end = start + timedelta(days=6)
        elif precision == "range":
            end = start + timedelta(days=self.random.randint(1, 60))
        elif precision == "unknown":
            start = start.replace(month=1, day=1)
            end = start.replace(year=start.year + self.random.randint(0, 3), month=12, day=31)
        else:
            end = start
        return start, min(end, LAST_DAY), precision

    def counts(self, best: int | None = None) -> tuple[int | None, int | None, int | None, str]:
        """(best, min, max, qualifier): a plausible uncertain figure, around `best` if given."""
        if best is None:
            best = max(1, int(self.random.lognormvariate(2.5, 1.2)))
        else:
            best = max(1, int(best * self.random.uniform(0.7, 1.3)))
        qualifier = self.pick(QUALIFIER_WEIGHTS)
        if qualifier == "about":
            return best, int(best * 0.8), int(best * 1.2) + 1, qualifier
        if qualifier == "at_least":
            return best, best, None, qualifier
        if qualifier == "at_most":
            return best, None, best, qualifier
        if qualifier == "unknown":
            return None, None, None, qualifier
        return best, None, None, qualifier

    def sources(self, reference: Reference, count: int) -> None:
        first_id = _reserve_ids(Source, count)
        now = self.now

        def rows():
            for offset in range(count):
                source_id = first_id + offset
                # One in five relays an earlier source, forming citation chains.
                cites = self.random.randint(first_id, source_id - 1) if offset and self.random.random() < 0.2 else None
                kind = self.pick(SOURCE_KIND_WEIGHTS)
                published_on = FIRST_DAY + timedelta(days=self.random.randint(0, (LAST_DAY - FIRST_DAY).days))
                confidential = kind == "testimony" and self.random.random() < 0.3
                yield (
                    source_id,
                    f"Demo {kind.replace('_', ' ')} #{source_id}",
                    kind,
                    "",
                    None if kind == "testimony" else self.random.choice(reference.publisher_ids),
                    "",
                    published_on,
                    self.random.choice(["en", "ko", "zh", "ru"]),
                    "",
                    cites,
                    confidential,
                    "",
                    now,
                    now,
                )
                reference.source_ids.append(source_id)

        _copy(Source, COPY_COLUMNS[Source], rows())

    def incidents(self, reference: Reference, first_id: int, count: int) -> "IncidentBatch":
        """Make (without writing them) `count` incidents with ids from `first_id` on, with their places,
        involvements, victim groups and claims, and the localities they are the first to need. Touches
        no database connection, so it can run in a thread while the previous batch is written."""
        incident_rows, place_rows, involvement_rows, victim_rows, claim_rows = [], [], [], [], []
        type_slugs, type_weights = _choices(TYPE_WEIGHTS)
        for offset in range(count):
            incident_id = first_id + offset
            start, end, precision = self.dates()
            best, low, high, qualifier = self.counts()
            slug = self.random.choices(type_slugs, type_weights)[0]
            place_id, country = self.random.choice(reference.leaf_places)
            updated_at = self.now - timedelta(minutes=self.random.randint(0, 60 * 24 * 365 * 3))
            title, description, place_id = self.reports.original(
                incident_id, slug=slug, place_id=place_id, best=best, start=start, end=end, precision=precision
            )
            incident_rows.append(
                (
                    incident_id,
                    title,
                    reference.type_ids[slug],
                    description,
                    start,
                    end,
                    precision,
                    best,
                    low,
                    high,
                    qualifier,
                    self.pick(VERIFICATION_WEIGHTS),
                    self.pick(REVIEW_WEIGHTS),
                    self.random.random() < 0.03,
                    1,
                    updated_at,
                    updated_at,
                )
            )
            place_rows.append((incident_id, place_id))
            # Some incidents span a border: the receiving country as a second place.
            if country != "KP" and self.random.random() < 0.3:
                place_rows.append((incident_id, reference.country_place_ids["KP"]))
            involvement_rows.append((incident_id, reference.government_ids[country], "perpetrator"))
            if slug in ("forced-repatriation", "deportation"):
                involvement_rows.append((incident_id, reference.government_ids["KP"], "receiving_state"))
            if best is not None and self.random.random() < 0.5:
                victim_rows.append(
                    (incident_id, best, self.random.choice(["female", "male", "mixed", "unknown"]),
                     self.random.choice(["adult", "child", "mixed", "unknown"]), "KP", "")
                )  # fmt: skip
            for source_id in self.random.sample(reference.source_ids, self.random.choice([1, 1, 2, 3])):
                claim_best, claim_low, claim_high, claim_qualifier = self.counts(best)
                claim_rows.append(
                    (incident_id, source_id, claim_best, claim_low, claim_high, claim_qualifier, None, None,
                     DatePrecision.UNKNOWN, "", "", self.pick(CONNECTION_WEIGHTS), self.random.random() < 0.02,
                     updated_at, updated_at)
                )  # fmt: skip
        return IncidentBatch(
            self.reports.take_new_places(),
            {
                Incident: incident_rows,
                IncidentPlace: place_rows,
                Involvement: involvement_rows,
                VictimGroup: victim_rows,
                Claim: claim_rows,
            },
        )


@dataclass
class IncidentBatch:
    """One batch's rows, made by `DemoDataGenerator.incidents` and written by `write`."""

    new_places: list[Place]
    rows: dict[type, list[tuple]]

    def write(self) -> None:
        Place.objects.bulk_create(self.new_places)
        for model, rows in self.rows.items():
            _copy(model, COPY_COLUMNS[model], iter(rows))


def _write_incidents(generator: DemoDataGenerator, reference: Reference, *, count: int, batch_size: int, progress):
    """Make and write `count` incidents, batch N+1 made in a thread while batch N is written: the
    rows' wording is Python's work and the COPY PostgreSQL's, on the machine's other core. The
    thread only computes (the load's transaction stays on this thread's connection), and makes the
    batches one after the other from the one seeded generator, so a seed gives the same data as
    before. Returns the first incident's id (the others follow it)."""
    first_id = _reserve_ids(Incident, count)
    starts = range(first_id, first_id + count, batch_size)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-rows") as maker:

        def make(start: int):
            return maker.submit(generator.incidents, reference, start, min(batch_size, first_id + count - start))

        pending = make(starts[0])
        for next_start in [*starts[1:], None]:
            batch = pending.result()
            if next_start is not None:
                pending = make(next_start)
            batch.write()
            progress(len(batch.rows[Incident]))
    return first_id


# The tables a load fills, and those the kept totals, the search words and the export's rows fill
# from them; their secondary indexes and foreign keys are rebuilt rather than kept up row by row when
# the load is at least as large as what is there (the export rows' foreign key alone was one
# lookup of the incident per row written). The totals' unique keys too: they are then counted
# anew into empty tables (`statistics_counted_once`), where no total is looked up by its key.
_BULK_MODELS = (Incident, IncidentPlace, Involvement, VictimGroup, Claim)
_DERIVED_MODELS = (IncidentSearchDocument, IncidentExportRow, IncidentRollup, IncidentFacetTotal, IncidentRollupEntry)
_TOTALS_MODELS = (IncidentRollup, IncidentFacetTotal)


def _outgrows_what_is_there(adding: int) -> bool:
    """Whether `adding` incidents are at least as many as the incidents table holds (by the
    planner's figure: no count of a large table). One query."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [Incident._meta.db_table])
        return adding >= max(cursor.fetchone()[0], 1)


@contextmanager
def _indexes_and_foreign_keys_rebuilt_after(models, *, unique_keys_of=()):
    """Drop the secondary indexes and foreign keys of `models`' tables, and the unique keys of
    `unique_keys_of`'s, and add them again at the end, as pg_restore does: building an index sorts
    the rows once, while growing it (the trigram and full-text GIN indexes above all, and the
    totals' unique keys of 11 and 12 columns) costs far more per row; adding a foreign key checks
    every row in one join, instead of one query per row. Adding them back checks every row, old
    and new, so every constraint still holds when the transaction commits; primary keys, and the
    unique keys of the other tables, stay throughout. Dropping them locks the tables (ACCESS
    EXCLUSIVE) until the transaction ends: readers wait for the load rather than see it half done."""
    tables = [model._meta.db_table for model in models]
    unique_tables = [model._meta.db_table for model in unique_keys_of]
    with connection.cursor() as cursor:
        # A unique constraint's index goes with its constraint (below).
        cursor.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indrelid = ANY (%s::regclass[]) AND NOT indisprimary"
            " AND (NOT indisunique OR indrelid = ANY (%s::regclass[]))"
            " AND NOT EXISTS (SELECT FROM pg_constraint WHERE conindid = indexrelid)",
            [tables, unique_tables],
        )
        indexes = cursor.fetchall()
        cursor.execute(
            "SELECT conrelid::regclass::text, quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE (contype = 'f' AND conrelid = ANY (%s::regclass[]))"
            " OR (contype = 'u' AND conrelid = ANY (%s::regclass[]))",
            [tables, unique_tables],
        )
        constraints = cursor.fetchall()
        for table, name, _ in constraints:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {name}")
        yield
        for _, definition in indexes:
            cursor.execute(definition)
        for table, name, definition in constraints:
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")


# The rows PostgreSQL keeps for each incident from the tables below, each by the function its
# statement triggers call: the search words (migration 0016) and the CSV export's rows (migration
# 0028). Their insert triggers are off while the insert history is (`set_insert_triggers`,
# migrations 0028 and 0034).
_KEPT_ROW_TABLES = (Incident, IncidentPlace, Involvement, Claim)
_SEARCH_WORDS_CHUNK = 50_000


@contextmanager
def _kept_rows_computed_once(*, after: int):
    """Compute the search words and export rows of the incidents added in the block (ids above
    `after`) once, at its end, instead of at each of the four COPY statements that write an
    incident's rows; the block runs with the insert triggers off. With the link tables' indexes
    dropped (`_indexes_and_foreign_keys_rebuilt_after`, entered inside this block so that the rows
    are computed after the indexes are back), each of those recomputations scanned the link tables
    whole: a million incidents from an empty database were still at 60,000 after twenty minutes.
    The rows come from the functions the triggers call, the search words in chunks of bounded
    memory."""
    yield
    with connection.cursor() as cursor:
        for model in _KEPT_ROW_TABLES:
            # The planner's figures for the tables just filled: without them it hashes every source
            # once per incident (5,000 incidents: 6.9 s before, 2.0 s after).
            cursor.execute(f"ANALYZE {model._meta.db_table}")
        cursor.execute(f"ANALYZE {Source._meta.db_table}")
        # The work of the triggers that lock what each link refers to (off with the insert
        # triggers), once for every link (migrations 0050, 0077): the sources first, as an import.
        new_ids = "ARRAY(SELECT id FROM incidents_incident WHERE id > %s)"
        cursor.execute(f"SELECT incident_sources_lock({new_ids})", [after])
        cursor.execute(f"SELECT incident_links_lock({new_ids})", [after])
        cursor.execute("SELECT max(id) FROM incidents_incident")
        newest = cursor.fetchone()[0] or after
        for first in range(after + 1, newest + 1, _SEARCH_WORDS_CHUNK):
            cursor.execute(
                "SELECT incident_search_refresh(ARRAY(SELECT id FROM incidents_incident WHERE id BETWEEN %s AND %s))",
                [first, first + _SEARCH_WORDS_CHUNK - 1],
            )
        # In one statement, which stores them newest first as the export reads them (migration 0028).
        cursor.execute(
            "SELECT incident_export_refresh(ARRAY(SELECT id FROM incidents_incident WHERE id > %s))", [after]
        )


def generate_demo_data(
    *,
    incidents: int,
    seed: int = 42,
    batch_size: int = 20_000,
    progress: Callable[[int], None] = lambda done: None,
    duplicates: float = 0,
    duplicates_truth: Path | None = None,
) -> None:
    """Add `incidents` synthetic incidents (and about one source per ten incidents), in batches of
    `batch_size`, all in one transaction; `progress` is called with the number written. The
    fraction `duplicates` of them report again an event that another reports
    (`demo_duplicates.py`), and every such pair is written to `duplicates_truth`.

    One transaction so that the statistics' kept totals count the new incidents once, at the end
    (`statistics_counted_once`), rather than at each batch's commit: readers see all the new
    incidents with their totals, or none."""
    originals = incidents - round(incidents * duplicates)
    if originals < 1:
        raise ValueError(f"--duplicates {duplicates} of {incidents} incidents leaves no incident to report again.")
    generator = DemoDataGenerator(seed=seed)
    with transaction.atomic():
        with connection.cursor() as cursor:
            # For this transaction only: its large statements run once each, so compiling them (JIT)
            # costs seconds and saves nothing, and its sorts and hashes (the totals' cells, the
            # indexes) stay in memory rather than in temporary files.
            cursor.execute("SET LOCAL jit = off; SET LOCAL work_mem = '256MB'")
            cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        # Outside the statistics' block: the totals and the search words are written without their
        # secondary indexes, which are built once after both.
        in_bulk = _outgrows_what_is_there(incidents)
        with (
            _indexes_and_foreign_keys_rebuilt_after(_DERIVED_MODELS, unique_keys_of=_TOTALS_MODELS)
            if in_bulk
            else nullcontext(),
            statistics_counted_once(every_incident_anew=in_bulk),
        ):
            reference = _ensure_reference_data()
            set_insert_triggers(enabled=False)
            localities = len(reference.leaf_places) * LOCALITIES_PER_CITY
            first_place_id = _reserve_ids(Place, localities)
            generator.reports.read_places(free_ids=range(first_place_id, first_place_id + localities))
            generator.sources(reference, max(10, incidents // 10))
            newest_before = Incident.objects.aggregate(newest=Max("id"))["newest"] or 0
            with _kept_rows_computed_once(after=newest_before):
                with _indexes_and_foreign_keys_rebuilt_after(_BULK_MODELS) if in_bulk else nullcontext():
                    first_id = _write_incidents(
                        generator, reference, count=originals, batch_size=batch_size, progress=progress
                    )
                # After the indexes are back: the duplicates read their originals by id.
                if originals < incidents:
                    write_demo_duplicates(
                        generator=generator,
                        reference=reference,
                        count=incidents - originals,
                        originals=range(first_id, first_id + originals),
                        truth=duplicates_truth,
                    )
                    progress(incidents - originals)
            # The one event the in-review list's submission time reads (`with_submitted_at`): each
            # incident in review as stored, dated by its last change, so the list shows when each
            # was submitted and opens oldest first. One INSERT … SELECT of the 8% in review.
            in_review = Incident.objects.filter(pk__gt=newest_before, review_state="in_review")
            in_review_ids = list(in_review.values_list("pk", flat=True))
            record_events({Incident: "id"}, in_review_ids, label="insert", dated_by="updated_at")
            # Back on for whatever the caller's transaction writes next (a test's records), which the
            # history and the export's rows must see like any other.
            set_insert_triggers(enabled=True)
    with connection.cursor() as cursor:
        # Fresh statistics, so the planner (and the admin's estimated count) see the new rows.
        for model in (
            Incident,
            IncidentPlace,
            Claim,
            Involvement,
            VictimGroup,
            Source,
            IncidentSearchDocument,
            IncidentExportRow,
        ):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
