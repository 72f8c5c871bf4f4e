"""Who read the informant's testimony: a record of every showing and export of confidential records.

Every door that shows confidential incidents, claims or sources (the admin's record and history
pages, the API's detail, history and lists, CSV downloads, the export command) asks the selectors
here which confidential records it showed, and hands them to `record_confidential_access`, which
writes one append-only `ConfidentialAccess` row per request, whatever the number of records (the
lists of incidents, read most, learn them from their page's own query, `shown_incident_columns`,
and the API's writes the record in that same statement: `recording_list_access`; an export's
record is computed and written by one statement over the rows it copies: `record_export_access`).
A reader without the confidential permission is shown none, so their reads cost nothing here.

What is confidential is decided by the models' flags and `ClaimQuerySet.confidential()` (a claim
is when it or its source is): the same rule that hides those records from everyone else.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from django.contrib.postgres.expressions import ArraySubquery
from django.core.exceptions import EmptyResultSet
from django.db import connection, connections, router, transaction
from django.db.models import F, Model, Q, QuerySet
from django.db.models.query import ValuesIterable
from psycopg.types.json import Jsonb

from incidents.models import (
    AccessDoor,
    Claim,
    ConfidentialAccess,
    DuplicatePair,
    Incident,
    IncidentExportRow,
    IncidentMerge,
    NoteWrittenInConfidence,
    Source,
)
from incidents.querysets import can_see_confidential

# Who may read the record of accesses: it names the colleagues who read an informant's testimony.
VIEW_ACCESSES_PERMISSION = "incidents.view_confidentialaccess"


@dataclass(frozen=True)
class ConfidentialRecords:
    """The confidential records one request showed, by primary key."""

    incident_ids: frozenset[int] = frozenset()
    claim_ids: frozenset[int] = frozenset()
    source_ids: frozenset[int] = frozenset()
    # The pairs and merges whose note written in confidence was shown (`NoteWrittenInConfidence`).
    duplicate_pair_ids: frozenset[int] = frozenset()
    merge_ids: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return any(getattr(self, field.name) for field in fields(self))

    def __or__(self, other: "ConfidentialRecords") -> "ConfidentialRecords":
        """What one page shows in its several parts (its record, what it links to, its history)."""
        return ConfidentialRecords(
            **{field.name: getattr(self, field.name) | getattr(other, field.name) for field in fields(self)}
        )


NO_RECORDS = ConfidentialRecords()


def can_see_accesses(user) -> bool:
    """Reviewers with confidential access (and superusers) may read who read what."""
    return can_see_confidential(user) and user.is_staff and user.has_perm(VIEW_ACCESSES_PERMISSION)


def _from_claims(claims: QuerySet, incident_ids: Iterable[int] = ()) -> ConfidentialRecords:
    """The confidential claims among `claims`, with their sources where those are confidential. One query."""
    claim_ids, source_ids = set(), set()
    for claim_id, source_id, source_confidential in claims.confidential().values_list(
        "pk", "source_id", "source__confidential"
    ):
        claim_ids.add(claim_id)
        if source_confidential:
            source_ids.add(source_id)
    return ConfidentialRecords(frozenset(incident_ids), frozenset(claim_ids), frozenset(source_ids))


def confidential_records_of(record: Model, user) -> ConfidentialRecords:
    """The confidential records that a page of one record shows to `user` by that record's own
    content: an incident with its claims and their sources (as its change, history and detail pages
    show them), a source, or nothing for a record of another kind (which is never confidential).
    Nothing for a reader without the confidential permission, who is shown none. One query for an
    incident, none otherwise."""
    if isinstance(record, Incident):
        return confidential_records_of_incidents([record], user)
    return confidential_among([record], user)


def confidential_records_of_incidents(incidents: Iterable[Incident], user) -> ConfidentialRecords:
    """The confidential incidents among `incidents`, and their confidential claims with those
    claims' confidential sources: what a list of incidents shows with each one's span of figures
    ("sources: 40-500", an informant's 500 among them), as the API's list records them. One query;
    nothing, and no query, for a reader without the confidential permission."""
    if not can_see_confidential(user):
        return NO_RECORDS
    incidents = list(incidents)
    hidden = [incident.pk for incident in incidents if incident.confidential]
    return _from_claims(Claim.objects.filter(incident__in=[incident.pk for incident in incidents]), hidden)


def confidential_among(records: Iterable[Model | None], user) -> ConfidentialRecords:
    """The confidential ones among the records a page shows `user` by their own fields (a title, an
    excerpt), of whatever kind: incidents and sources by their flag; a claim when it or its source
    is, and then its source too (a claim is shown with its source's title, loaded with it); a
    duplicate pair or a merge whose note, written in confidence, is shown (`NoteWrittenInConfidence`:
    its words may name what only readers with Confidential access could see). Other kinds, and None
    (an empty link), are never confidential. No query for claims loaded with their sources; nothing,
    and no query, for a reader without the confidential permission."""
    if not can_see_confidential(user):
        return NO_RECORDS
    incident_ids, claim_ids, source_ids = set(), set(), set()
    notes = {DuplicatePair: set(), IncidentMerge: set()}
    for record in records:
        if isinstance(record, NoteWrittenInConfidence):
            if record.note_confidential and record.note:
                notes[type(record)].add(record.pk)
        elif isinstance(record, Incident) and record.confidential:
            incident_ids.add(record.pk)
        elif isinstance(record, Source) and record.confidential:
            source_ids.add(record.pk)
        elif isinstance(record, Claim) and record.needs_confidential_access:
            claim_ids.add(record.pk)
            if record.source.confidential:
                source_ids.add(record.source_id)
    return ConfidentialRecords(
        frozenset(incident_ids),
        frozenset(claim_ids),
        frozenset(source_ids),
        frozenset(notes[DuplicatePair]),
        frozenset(notes[IncidentMerge]),
    )


def confidential_links_of_responses(responses: Iterable[Model], user) -> ConfidentialRecords:
    """The confidential incidents and source that `responses` (read `with_links_for` `user`) name:
    their incidents' public ids, and their source's id, as a response's page and answer show them.
    One query for a page of responses that names any source; nothing, and no query, for a reader
    without the confidential permission."""
    if not can_see_confidential(user):
        return NO_RECORDS
    responses = list(responses)
    incidents = [incident for response in responses for incident in response.incidents.all()]
    source_ids = {response.visible_source_id for response in responses} - {None}
    sources = Source.objects.filter(pk__in=source_ids, confidential=True) if source_ids else []
    return confidential_among([*incidents, *sources], user)


def confidential_records_of_sources(sources: Iterable[Source], user) -> ConfidentialRecords:
    """The confidential sources that `sources` (read `visible_cites_id` for `user`) show: each one,
    and the one each cites, by its id, as a source's answer shows it (that a public article relays
    an informant's testimony). One query for a page that cites any source; nothing, and no query,
    for a reader without the confidential permission."""
    if not can_see_confidential(user):
        return NO_RECORDS
    sources = list(sources)
    cited_ids = {source.visible_cites_id for source in sources} - {None}
    cited = Source.objects.filter(pk__in=cited_ids, confidential=True) if cited_ids else []
    return confidential_among([*sources, *cited], user)


def shown_incident_columns(user) -> dict[str, Any]:
    """The columns a list's `.values()` adds for `record_list_access` to know which confidential
    records a page showed: the incident's id and flag (its confidential claims and sources are then
    read from the page's kept export rows by `record_confidential_page_access`, migration 0033).
    None for a reader without the confidential permission, whose pages hold nothing to record."""
    if not can_see_confidential(user):
        return {}
    return {"shown_id": F("pk"), "shown_confidential": F("confidential")}


# One statement, in its own transaction, that does not wait for the disk to flush it: a read's only
# write would otherwise wait 7-25 ms for the flush on a busy machine (more than the incident list
# itself), and BEGIN, SET LOCAL and COMMIT cost three more round trips. Without the wait, a crash of
# the database server can lose the accesses of its last moment (at most 3 x wal_writer_delay, 0.6 s
# by default), never corrupt them or anything else (PostgreSQL's "asynchronous commit"). Inside the
# caller's transaction, the record is part of it, committed with everything else, as it waits for.
_ASYNCHRONOUS_COMMIT = "(SELECT set_config('synchronous_commit', 'off', true)) AS asynchronous_commit"
_INSERT_WITHOUT_WAITING_FOR_THE_DISK = f"""
INSERT INTO {ConfidentialAccess._meta.db_table}
    (at, user_id, door, path, incident_ids, claim_ids, source_ids, duplicate_pair_ids, merge_ids)
SELECT now(), %(user_id)s, %(door)s, %(path)s, %(incident_ids)s::bigint[], %(claim_ids)s::bigint[],
    %(source_ids)s::bigint[], %(duplicate_pair_ids)s::bigint[], %(merge_ids)s::bigint[]
FROM {_ASYNCHRONOUS_COMMIT}
"""


def _recorded_text(text: str) -> str:
    """`text` as PostgreSQL's JSON may hold it: it refuses the NUL character, which a query string's
    names and values may carry once decoded (`?%00=1`), so the record of an export's filters failed
    the export it recorded. Shown as U+FFFD, the character that stands for one that cannot be
    shown. (The recorded path keeps the query string encoded, `%00`.)"""
    return text.replace("\x00", "\ufffd")


def _recorded_path(path: str) -> str:
    """The page or endpoint as its column holds it: a longer query string is cut, never refused."""
    return path[: ConfidentialAccess._meta.get_field("path").max_length]


def _recorded_json(value: Any) -> Any:
    """`value` (an export's filters: names, values, lists of them, ids) with every text recorded
    as `_recorded_text` records it."""
    if isinstance(value, str):
        return _recorded_text(value)
    if isinstance(value, Mapping):
        return {_recorded_text(name): _recorded_json(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_recorded_json(item) for item in value]
    return value


def record_confidential_access(*, user, door: AccessDoor, records: ConfidentialRecords, path: str = "") -> None:
    """Record that `user` was shown the confidential `records` through `door`: one row, whatever
    their number. Records nothing when none of them was confidential. One query."""
    if not records:
        return
    values = {
        "user_id": user.pk,
        "door": door,
        "path": _recorded_path(path),
        "incident_ids": sorted(records.incident_ids),
        "claim_ids": sorted(records.claim_ids),
        "source_ids": sorted(records.source_ids),
        "duplicate_pair_ids": sorted(records.duplicate_pair_ids),
        "merge_ids": sorted(records.merge_ids),
    }
    if connection.in_atomic_block:
        # Part of the caller's transaction, which commits it with everything else.
        ConfidentialAccess.objects.create(**values)
        return
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_WITHOUT_WAITING_FOR_THE_DISK, {**values, "door": str(door)})


# What the record of an export reads of the kept rows it copies: all held by their order index
# (`export_row_newest`) with the columns of the common filters, so that PostgreSQL reads the index
# alone.
RECORDED_COLUMNS = ("incident_id", "confidential", "disclosed_source_count", "complete_source_count")

# The record of an export, computed and written by PostgreSQL in one statement from the SQL of the
# kept rows the export copies (`{rows}`, giving at least their RECORDED_COLUMNS): how many, the
# confidential incidents among them, and the confidential claims and sources their rows keep
# (migration 0030), read for the rows that hold some, those with more claims in all than disclosed
# (the same claims the refresh counts and lists), from the index of those rows
# (`export_row_confidential`). Nothing is written when the rows hold nothing confidential. No array
# goes through Python: the rows' ids and the claims' arrays of a million-row export came back to be
# sorted and sent again.
_RECORD_EXPORT = """
WITH exported AS (
    SELECT count(*) AS row_count,
           coalesce(array_agg(incident_id ORDER BY incident_id) FILTER (WHERE confidential), '{{}}') AS incident_ids,
           array_agg(incident_id) FILTER (WHERE complete_source_count > disclosed_source_count) AS hiding_ids
    FROM ({rows}) AS exported_row
),
hiding AS MATERIALIZED (
    SELECT kept.confidential_claim_ids, kept.confidential_source_ids
    FROM {export_rows} AS kept, exported
    WHERE kept.confidential_claim_ids IS NOT NULL AND kept.incident_id = ANY (exported.hiding_ids)
),
record AS MATERIALIZED (
    SELECT row_count, incident_ids,
           ARRAY(SELECT DISTINCT claim_id FROM hiding, unnest(confidential_claim_ids) AS claim_id ORDER BY 1)
               AS claim_ids,
           ARRAY(SELECT DISTINCT source_id FROM hiding, unnest(confidential_source_ids) AS source_id ORDER BY 1)
               AS source_ids
    FROM exported
)
INSERT INTO {accesses}
    (at, user_id, door, path, incident_ids, claim_ids, source_ids, export_filters, row_count)
SELECT now(), %s, %s, %s, incident_ids, claim_ids, source_ids, %s, row_count
FROM record{asynchronous_commit}
WHERE cardinality(incident_ids) + cardinality(claim_ids) + cardinality(source_ids) > 0
"""


def record_export_access(
    rows: tuple[str, Sequence[Any]],
    user,
    *,
    door: AccessDoor,
    path: str,
    export_filters: Mapping[str, Any],
    planner_settings: str,
) -> None:
    """Record that `user` exported the kept rows (IncidentExportRow) `rows`, the SQL and parameters
    of those the export copies (at least their RECORDED_COLUMNS), through `door`,
    selected by `export_filters`: its row count, and the confidential incidents, claims and sources
    they show. Nothing for a reader without the confidential permission, whose exports hold nothing
    to record, and no query; one query otherwise, which records nothing when nothing is confidential.
    `planner_settings`, a statement of `set_config(…, true)` calls (the export's own), is run first in
    the record's transaction (a second query), so that the record is planned as its export is."""
    if not can_see_confidential(user):
        return
    rows_sql, rows_params = rows
    asynchronous_commit = "" if connection.in_atomic_block else f", {_ASYNCHRONOUS_COMMIT}"
    statement = _RECORD_EXPORT.format(
        rows=rows_sql,
        export_rows=IncidentExportRow._meta.db_table,
        accesses=ConfidentialAccess._meta.db_table,
        asynchronous_commit=asynchronous_commit,
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(planner_settings)
        cursor.execute(
            statement, [*rows_params, user.pk, str(door), _recorded_path(path), Jsonb(_recorded_json(export_filters))]
        )


# Migration 0033: the confidential claims and sources of the page's incidents, as their kept export
# rows name them, and the insert, when anything on the page is confidential.
_RECORD_PAGE = "SELECT record_confidential_page_access(%s, %s, %s, %s::bigint[], %s::bigint[], %s)"


def record_list_access(*, user, door: AccessDoor, rows: Iterable[Mapping[str, Any]], path: str = "") -> None:
    """Record that `user` was shown the confidential records of a page of incident rows carrying
    `shown_incident_columns`: the confidential incidents among them and their confidential claims
    (with those claims' confidential sources), as their representations hold them. Nothing for a
    reader without the confidential permission, nor for a page that showed nothing confidential.
    One query, on the database that takes writes (the page may have come from a replica)."""
    rows = list(rows)
    if not rows or "shown_id" not in rows[0]:
        return
    database = connections[router.db_for_write(ConfidentialAccess)]
    with database.cursor() as cursor:
        cursor.execute(
            _RECORD_PAGE,
            [
                user.pk,
                str(door),
                _recorded_path(path),
                [row["shown_id"] for row in rows],
                sorted(row["shown_id"] for row in rows if row["shown_confidential"]),
                database.in_atomic_block,
            ],
        )


# A page's query wrapped so that the same statement records what the page shows: the page's rows
# kept aside (MATERIALIZED, in their order), the first `shown` of them (a paginator fetches one more
# to learn whether another page follows) handed to `record_confidential_page_access` (migration
# 0033), and the rows returned. A CTE runs at most once, and this one runs because the final SELECT
# joins its one row. `{page}` is the page's own SQL.
_PAGE_RECORDING_ITS_ACCESS = """
WITH page AS MATERIALIZED (
    SELECT page_rows.*, row_number() OVER () AS page_position FROM ({page}) AS page_rows
),
recorded AS MATERIALIZED (
    SELECT record_confidential_page_access(
        %s, %s, %s,
        ARRAY(SELECT shown_id FROM page WHERE page_position <= %s),
        ARRAY(SELECT shown_id FROM page WHERE page_position <= %s AND shown_confidential ORDER BY shown_id),
        %s
    )
)
SELECT page.* FROM page, recorded ORDER BY page_position
"""


class _PageRecordingItsAccess(ValuesIterable):
    """The `.values()` rows of a page of incidents carrying `shown_incident_columns`, fetched by a
    statement that also records the page's confidential records (`_PAGE_RECORDING_ITS_ACCESS`).

    Hand-written: the ORM builds no `WITH` around a query. Recorded separately, the access cost the
    list a second round trip, about 1 ms of a 15-20 ms request (bench/README.md)."""

    # Set on the subclass `recording_list_access` makes for one request.
    user: Any
    door: AccessDoor
    path: str
    shown: int

    def __iter__(self):
        queryset = self.queryset
        if queryset.db != router.db_for_write(Incident):
            # A read replica writes nothing: the page from there, its record on the primary.
            rows = list(super().__iter__())
            record_list_access(user=self.user, door=self.door, rows=rows[: self.shown], path=self.path)
            yield from rows
            return
        compiler = queryset.query.get_compiler(queryset.db)
        try:
            page, parameters = compiler.as_sql()
        except EmptyResultSet:
            return
        database = connections[queryset.db]
        # Inside a transaction the record commits with the caller's writes, as they would.
        arguments = [
            self.user.pk,
            str(self.door),
            _recorded_path(self.path),
            self.shown,
            self.shown,
            database.in_atomic_block,
        ]
        with database.cursor() as cursor:
            cursor.execute(_PAGE_RECORDING_ITS_ACCESS.format(page=page), [*parameters, *arguments])
            rows = cursor.fetchall()
        query = queryset.query
        names = list(query.selected or [*query.extra_select, *query.values_select, *query.annotation_select])
        columns = [selected[0] for selected in compiler.select[: compiler.col_count]]
        if converters := compiler.get_converters(columns):
            rows = compiler.apply_converters(rows, converters)
        for row in rows:
            yield dict(zip(names, row, strict=False))  # each row ends with its page_position


def recording_list_access(rows: QuerySet, *, user, door: AccessDoor, path: str = "", shown: int) -> QuerySet:
    """`rows`, `.values()` of incidents carrying `shown_incident_columns(user)`, fetched by one
    statement that also records that `user` was shown the confidential records of the first `shown`
    of them through `door` (as `record_list_access` would from the rows). `rows` unchanged for a
    reader without the confidential permission, whose pages hold nothing to record."""
    if not can_see_confidential(user):
        return rows
    recording = rows.all()
    recording._iterable_class = type(
        "PageRecordingItsAccess",
        (_PageRecordingItsAccess,),
        {"user": user, "door": door, "path": path, "shown": shown},
    )
    return recording


def reads_of(record: Incident | Source) -> QuerySet:
    """The recorded accesses that showed `record` (for an incident, also its claims), newest first.
    One query, served by the arrays' GIN indexes."""
    if isinstance(record, Source):
        condition = Q(source_ids__contains=[record.pk])
    else:
        claims = ArraySubquery(Claim.objects.filter(incident=record).order_by().values("pk"))
        condition = Q(incident_ids__contains=[record.pk]) | Q(claim_ids__overlap=claims)
    return ConfidentialAccess.objects.filter(condition).select_related("user")
