"""CSV out: one row per incident, produced by PostgreSQL's `COPY … TO STDOUT` from the filtered queryset.

The caller passes a queryset it has already limited with `visible_to(user)` (and filtered with
IncidentFilterSet); this module turns it into one SQL statement, so the database sends every row
and Python only moves bytes. The rows are not computed at export time: each incident's row is
kept rendered in IncidentExportRow by triggers, in the statement that changes what it shows
(migration 0028), so an export is a COPY of the kept rows of the queryset's incidents, newest first
(where computing them from places, perpetrators and claims took 12-40x a flat COPY of the same
bytes at 1,000,000 incidents; bench/README.md). The cells built from claims (`source_count`,
`sources`, `claim_min`, `claim_max`) are kept once per audience, and `claim_cells` chooses the ones
the user may see.

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
from django.db.models import QuerySet, Value

from incidents.access import export_contents, record_confidential_access
from incidents.models import AccessDoor, Incident, IncidentExportRow
from incidents.querysets import can_see_confidential

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

# Multi-valued cells hold items separated by "; "; a place is its path, outermost first, with its
# segments separated by " > "; a source is its title and its id: `Press release [#12]`. An item (or
# segment, or title) that holds one of these characters, or starts or ends with white space, is
# written in double quotes with inner quotes doubled: the SQL function csv_list_item (migration
# 0018) in the kept rows (migration 0028), `csv_list_item` below for the import's messages. README
# "CSV export".
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
# stays lossless. One regular expression, valid in PostgreSQL and Python: the SQL function
# csv_neutralised (migration 0028) applies it to the free-text cells (title, places, perpetrators,
# sources) as their rows are kept.
FORMULA_LIKE = r"^'*[=+\-@\t\r]"

# Rows are gathered into chunks of about this size: one network write per chunk instead of per row.
CHUNK_BYTES = 64 * 1024

# The cells built from claims, kept once per audience in IncidentExportRow (`disclosed_<name>`,
# `complete_<name>`).
CLAIM_COLUMNS = ("source_count", "sources", "claim_min", "claim_max")


def claim_cells(user) -> str:
    """Which of the kept claim cells `user` reads: `complete` (every claim) only with the
    confidential permission, `disclosed` otherwise. The one place that chooses: a reader without
    the permission is never given a cell built from a claim they may not see."""
    return "complete" if can_see_confidential(user) else "disclosed"


def _exported_ids(queryset: QuerySet) -> QuerySet:
    """The ids of `queryset`'s incidents; for a queryset Django proves empty (a bound beyond a
    column's range), for which it writes no SQL at all, the same query matching nothing: the CSV
    of no incidents is still its header."""
    try:
        queryset.values("id").query.sql_with_params()
    except EmptyResultSet:
        return Incident.objects.filter(Value(False)).values("id")
    return queryset.order_by().values("id")


# "One row per incident, newest first" (README "CSV export"): Incident.Meta.ordering, whatever
# order the caller's queryset had.
ORDER_BY = "export_row.date_start DESC, export_row.incident_id DESC"


def copy_statement(
    queryset: QuerySet, user, pg_connection: psycopg.Connection, *, page_url_prefix: str | None = None
) -> str:
    """The COPY statement for the queryset (also what bench/ runs bare), with its parameters bound
    client-side (COPY accepts no server-side parameters): the kept rows (IncidentExportRow) of the
    queryset's incidents, newest first, the claims' cells those `user` may read (`claim_cells`).
    With `page_url_prefix` (the public pages' downloads), a last column `page_url` holds each
    incident's page: the prefix, its public id and a slash."""
    audience = claim_cells(user)
    cells = [
        f'export_row."{audience}_{name}" AS "{name}"' if name in CLAIM_COLUMNS else f'export_row."{name}"'
        for name in COLUMNS
    ]
    params = ()
    if page_url_prefix is not None:
        cells.append('%s || export_row."public_id" || \'/\' AS "page_url"')
        params = (page_url_prefix,)
    # Limited by the queryset's own SQL, so PostgreSQL knows from its statistics how many incidents
    # it selects: a hash of their ids against the kept rows for a large export, index lookups for
    # a few.
    selected, selected_params = _exported_ids(queryset).query.sql_with_params()
    select = (
        f"SELECT {', '.join(cells)} FROM {IncidentExportRow._meta.db_table} AS export_row "
        f"WHERE export_row.incident_id IN ({selected}) ORDER BY {ORDER_BY}"
    )
    statement = f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')"
    return psycopg.ClientCursor(pg_connection).mogrify(statement, (*params, *selected_params))


_EXPORT_SETTINGS = "SELECT " + ", ".join(
    f"set_config('{name}', '{value}', true)"
    for name, value in (
        ("datestyle", "ISO, YMD"),
        ("work_mem", "64MB"),
        ("jit", "off"),
        ("max_parallel_workers_per_gather", "0"),
    )
)


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
        # For the transaction only, in one statement: dates as YYYY-MM-DD whatever the server's
        # default DateStyle. The selected ids' hash in one batch (a million take 47 MB), so that the
        # join hands the kept rows on in the order they are stored, newest first, and the sort finds
        # them sorted (1.4 s instead of 2.9 s at 1,000,000 incidents). No JIT, which compiled the
        # statement for half a second to copy rows, and no parallel workers, which made it no faster
        # on two cores.
        cursor.execute(_EXPORT_SETTINGS)
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
