"""CSV out: one row per incident, produced by PostgreSQL's `COPY … TO STDOUT` from the filtered queryset.

The caller passes a queryset it has already limited with `visible_to(user)` (and filtered with
IncidentFilterSet); this module turns it into one SQL statement, so the database builds every row
and Python only moves bytes. The statement is set-based: the incidents' own columns joined with one
aggregate per multi-valued source (places, perpetrators, claims), each a GROUP BY over its table
limited to the queryset's incidents by a semi-join, rather than a correlated subquery per incident
and cell (44.9x a flat COPY of the same bytes at 1,000,000 incidents; bench/README.md). The claims
behind `source_count`, `sources`, `claim_min` and `claim_max` are limited to the ones the user may see.

Every door (the HTTP endpoint and the incident list's `?format=csv`, the admin, the public pages'
downloads, `manage.py export_incidents`) streams through `stream_incidents_csv`, so they all produce
the same columns under the same rules.
"""

import codecs
import re
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

import psycopg
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    Expression,
    F,
    Func,
    OuterRef,
    Q,
    QuerySet,
    StringAgg,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast, Concat

from incidents.access import export_contents, record_confidential_access
from incidents.models import AccessDoor, Claim, Incident, IncidentPlace, Involvement, InvolvementRole
from incidents.querysets import claim_people_span

# The documented, stable column set (README "CSV export"); `version` comes last so that a file
# exported, edited and imported again carries the version its rows were read at.
COLUMNS = (
    "public_id",
    "title",
    "type",
    "date_start",
    "date_end",
    "date_precision",
    "date_label",
    "people_count",
    "people_count_min",
    "people_count_max",
    "count_qualifier",
    "countries",
    "places",
    "perpetrators",
    "verification",
    "review_state",
    "merged_into",
    "source_count",
    "sources",
    "claim_min",
    "claim_max",
    "updated_at",
    "version",
)

# Cells analysts type freely, which a spreadsheet could run as a formula.
FREE_TEXT_COLUMNS = frozenset({"title", "places", "perpetrators", "sources"})

# Multi-valued cells hold items separated by "; "; a place is its path, outermost first, with its
# segments separated by " > "; a source is its title and its id: `Press release [#12]`. An item (or
# segment, or title) that holds one of these characters, or starts or ends with white space, is
# written in double quotes with inner quotes doubled: the SQL function csv_list_item (migration
# 0018) in the export, `csv_list_item` below for the import's messages. README "CSV export".
MULTI_VALUE_SEPARATOR = "; "
PLACE_PATH_SEPARATOR = " > "
NEEDS_QUOTING = re.compile(r'[;>\["]|^\s|\s$')


def csv_list_item(item: str) -> str:
    """One name as the export writes it in a multi-valued cell (the SQL function of that name)."""
    return '"' + item.replace('"', '""') + '"' if NEEDS_QUOTING.search(item) else item


def csv_source_item(title: str, source_id: int) -> str:
    """A source as the export writes it: titles repeat ("Press release"), its id does not."""
    return f"{csv_list_item(title)} [#{source_id}]"


# A spreadsheet runs a cell starting with = + - @ (or a tab or carriage return hiding one) as a
# formula; a leading apostrophe makes it plain text. A cell that already starts with apostrophes
# before such a character gets one more, so the importer removes exactly one and the round trip
# stays lossless. One regular expression, valid in PostgreSQL and Python; applied in SQL so the
# export stays a single COPY.
FORMULA_LIKE = r"^'*[=+\-@\t\r]"


def _neutralised(cell: str) -> str:
    pattern = FORMULA_LIKE.replace("'", "''")
    return f"CASE WHEN {cell} ~ '{pattern}' THEN '''' || {cell} ELSE {cell} END"


# Rows are gathered into chunks of about this size: one network write per chunk instead of per row.
CHUNK_BYTES = 64 * 1024


class IsoTimestamp(Func):
    """ISO 8601 in UTC (`2024-03-01T09:30:00.000000Z`), whatever the session's DateStyle and TimeZone."""

    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    output_field = TextField()


class ListItem(Func):
    """A name quoted, if need be, as an item of a multi-valued cell (see csv_list_item)."""

    function = "csv_list_item"
    output_field = TextField()


class PlacePath(Func):
    """A place, by id, as the export writes it: `Vietnam > Lao Cai > Lao Cai` (migration 0018)."""

    function = "csv_place_path"
    output_field = TextField()


class JoinedWith(Func):
    """Its arguments joined with `separator`, leaving out NULLs (PostgreSQL's concat_ws)."""

    function = "concat_ws"
    output_field = TextField()

    def __init__(self, separator: str, *expressions):
        super().__init__(Value(separator), *expressions)


def _place_path(place: str) -> Case:
    """The path of the place `place` names, as PlacePath writes it. Places are rarely more than three
    deep (city, province, country): those are joined with their parents in the query itself, ten
    times faster than a call of the PL/pgSQL function per place, which serves only deeper ones."""
    levels = [place, f"{place}__parent", f"{place}__parent__parent"]
    return Case(
        When(**{f"{levels[-1]}__parent__isnull": False}, then=PlacePath(f"{place}_id")),
        default=JoinedWith(PLACE_PATH_SEPARATOR, *(ListItem(f"{level}__name") for level in reversed(levels))),
        output_field=TextField(),
    )


# "One row per incident, newest first" (README "CSV export"): Incident.Meta.ordering, whatever
# order the caller's queryset had.
ORDER_BY = 'export_incidents."csv_date_start" DESC, export_incidents."id" DESC'


def _joined(item: Expression, *, distinct: bool = False, **options) -> StringAgg:
    """`item` of a group's rows, sorted and joined with "; "."""
    return StringAgg(item, Value(MULTI_VALUE_SEPARATOR), distinct=distinct, order_by=item, **options)


def _per_incident(rows: QuerySet, selected: QuerySet, **aggregates) -> QuerySet:
    """`aggregates` of `rows`, one row (`incident_id` and each aggregate) per incident of `selected`
    that has any: one GROUP BY over the table, limited to those incidents by a semi-join, rather
    than a subquery run for each incident."""
    return rows.filter(incident_id__in=selected.values("id")).order_by().values("incident_id").annotate(**aggregates)


def _exported(queryset: QuerySet) -> QuerySet:
    """`queryset` without its order; for a queryset Django proves empty (a bound beyond a column's
    range), for which it writes no SQL at all, the same query matching nothing: the CSV of no
    incidents is still its header."""
    try:
        queryset.values("id").query.sql_with_params()
    except EmptyResultSet:
        return Incident.objects.filter(Value(False))
    return queryset.order_by()


def _row_sources(queryset: QuerySet, user) -> dict[str, QuerySet]:
    """The queries the export's columns come from, by alias: the exported incidents' own columns
    (`export_incidents`, each column `csv_<name>`) and the per-incident aggregates joined to them.

    Each aggregate is limited to the exported incidents by the queryset's own SQL, so PostgreSQL
    knows from its statistics how many they are (hash joins over whole tables for a large export,
    index lookups for a few rows), where the ids selected once into a common table expression
    left it guessing 200 and choosing nested loops: 26-28 s against 17-20 s at 200,000 incidents."""
    selected = _exported(queryset)
    incidents = selected.values(
        "id",
        **{
            f"csv_{name}": F(field)
            for name, field in (
                ("public_id", "public_id"),
                ("title", "title"),
                ("type", "incident_type__slug"),
                ("date_start", "date_start"),
                ("date_end", "date_end"),
                ("date_precision", "date_precision"),
                ("date_label", "date_label"),
                ("people_count", "people_count"),
                ("people_count_min", "people_count_min"),
                ("people_count_max", "people_count_max"),
                ("count_qualifier", "count_qualifier"),
                ("verification", "verification"),
                ("review_state", "review_state"),
                ("version", "version"),
            )
        },
        # Blank but on the merged incidents an incremental export (`updated_since`) reports.
        csv_merged_into=Subquery(Incident.objects.filter(pk=OuterRef("merged_into_id")).order_by().values("public_id")),
        csv_updated_at=IsoTimestamp("updated_at"),
    )
    places = _per_incident(
        IncidentPlace.objects,
        selected,
        # ISO codes: never a character that needs quoting.
        countries=_joined(F("place__country"), distinct=True, filter=~Q(place__country="")),
        places=_joined(_place_path("place")),
    )
    perpetrators = _per_incident(
        Involvement.objects.filter(role=InvolvementRole.PERPETRATOR),
        selected,
        perpetrators=_joined(ListItem("organization__name")),
    )
    # Of the exported incidents (visible to `user`), the claims `user` may see.
    claims = _per_incident(
        Claim.objects.disclosed_to(user),
        selected,
        source_count=Count("pk"),
        sources=_joined(
            Concat(
                ListItem("source__title"),
                Value(" [#"),
                Cast("source_id", TextField()),
                Value("]"),
                output_field=TextField(),
            )
        ),
        **claim_people_span(),
    )
    return {
        "export_incidents": incidents,
        "export_places": places,
        "export_perpetrators": perpetrators,
        "export_claims": claims,
    }


# Each column's cell in the outer SELECT, from the aliases of `_row_sources`.
CELLS = {
    **{
        name: f'export_incidents."csv_{name}"'
        for name in COLUMNS
        if name not in {"countries", "places", "perpetrators", "source_count", "sources", "claim_min", "claim_max"}
    },
    "countries": 'export_places."countries"',
    "places": 'export_places."places"',
    "perpetrators": 'export_perpetrators."perpetrators"',
    "source_count": 'coalesce(export_claims."source_count", 0)',
    "sources": 'export_claims."sources"',
    "claim_min": 'export_claims."claim_people_min"',
    "claim_max": 'export_claims."claim_people_max"',
}


def copy_statement(
    queryset: QuerySet, user, pg_connection: psycopg.Connection, *, page_url_prefix: str | None = None
) -> str:
    """The COPY statement for the queryset (also what bench/ runs bare), with its parameters bound
    client-side (COPY accepts no server-side parameters): the incidents' own columns joined with
    their places', perpetrators' and claims' aggregates (see `_row_sources`), newest first. The
    outer SELECT names the columns and neutralises formulas. With `page_url_prefix` (the public
    pages' downloads), a last column `page_url` holds each incident's page: the prefix, its public
    id and a slash."""
    params = ()
    cells = []
    for name in COLUMNS:
        cell = CELLS[name]
        if name in FREE_TEXT_COLUMNS:
            cell = _neutralised(cell)
        cells.append(f'{cell} AS "{name}"')
    if page_url_prefix is not None:
        cells.append('%s || export_incidents."csv_public_id" || \'/\' AS "page_url"')
        params = (*params, page_url_prefix)
    sources = []
    for alias, rows in _row_sources(queryset, user).items():
        sql, rows_params = rows.query.sql_with_params()
        if sources:
            sources.append(f"LEFT JOIN ({sql}) AS {alias} ON {alias}.incident_id = export_incidents.id")
        else:
            sources.append(f"({sql}) AS {alias}")
        params = (*params, *rows_params)
    select = f"SELECT {', '.join(cells)} FROM {' '.join(sources)} ORDER BY {ORDER_BY}"
    statement = f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')"
    return psycopg.ClientCursor(pg_connection).mogrify(statement, params)


def stream_incidents_csv(
    queryset: QuerySet,
    user,
    *,
    door: AccessDoor,
    export_filters: Mapping[str, Any],
    path: str = "",
    bom: bool = False,
    on_rows: Callable[[int], None] | None = None,
    page_url_prefix: str | None = None,
) -> Iterator[bytes]:
    """Yield the CSV of `queryset` (already limited to what `user` may see) in chunks of whole rows.

    Runs one COPY statement in its own transaction when iterated, not when called, so an HTTP
    response can stream it after the view has returned. `on_rows(n)` is told how many data rows
    each chunk holds, for progress bars; `page_url_prefix` adds the `page_url` column (see
    `copy_statement`). Memory stays at one chunk whatever the row count.

    When the rows hold confidential records, the export is recorded (`record_confidential_access`)
    with `door`, `path`, the `export_filters` that selected them and its row count before the first
    byte leaves: a download broken off, or a worker killed midway, has still been recorded."""
    shown, row_count = export_contents(queryset, user)
    record_confidential_access(
        user=user, door=door, records=shown, path=path, export_filters=export_filters, row_count=row_count
    )
    if bom:
        yield codecs.BOM_UTF8
    with transaction.atomic(), connection.cursor() as cursor:
        # Dates as YYYY-MM-DD whatever the server's default DateStyle. No parallel workers: each
        # would build every aggregate's hash table again (they are not shared), three times the
        # work for the same rows. One statement, for the transaction only.
        cursor.execute(
            "SELECT set_config('datestyle', 'ISO, YMD', true), set_config('max_parallel_workers_per_gather', '0', true)"
        )
        pg_cursor = cursor.cursor
        buffer, rows_in_buffer = bytearray(), -1  # the first row COPY sends is the header
        with pg_cursor.copy(
            copy_statement(queryset, user, pg_cursor.connection, page_url_prefix=page_url_prefix)
        ) as copy:
            for row in copy:
                buffer += row
                rows_in_buffer += 1
                if len(buffer) >= CHUNK_BYTES:
                    yield bytes(buffer)
                    if on_rows:
                        on_rows(rows_in_buffer)
                    buffer.clear()
                    rows_in_buffer = 0
        if buffer:
            yield bytes(buffer)
            if on_rows:
                on_rows(rows_in_buffer)


def write_incidents_csv(
    queryset: QuerySet,
    user,
    out: IO[bytes],
    *,
    door: AccessDoor,
    export_filters: Mapping[str, Any],
    path: str = "",
    bom: bool = False,
    on_rows: Callable[[int], None] | None = None,
) -> None:
    """Write the CSV of `queryset` to the binary file `out`; see `stream_incidents_csv`."""
    chunks = stream_incidents_csv(
        queryset, user, door=door, export_filters=export_filters, path=path, bom=bom, on_rows=on_rows
    )
    for chunk in chunks:
        out.write(chunk)
