"""CSV out: one row per incident, produced by PostgreSQL's `COPY … TO STDOUT` from the filtered queryset.

The caller passes a queryset it has already limited with `visible_to(user)` (and filtered with
IncidentFilterSet); this module turns it into one SQL statement, so the database sends every row
and Python only moves bytes. The rows are not computed at export time: each incident's row is
kept rendered in IncidentExportRow by triggers, in the statement that changes what it shows
(migration 0028), so an export is a COPY of the kept rows of the queryset's incidents, selected by
their own columns where they can (`kept_rows`), newest first (where computing them from places,
perpetrators and claims took 12-40x a flat COPY of the same bytes at 1,000,000 incidents;
bench/README.md). The cells built from claims (`source_count`,
`sources`, `claim_min`, `claim_max`) are kept once per audience, and `claim_cells` chooses the ones
the user may see.

Every door (the HTTP endpoint and the incident list's `?format=csv`, the admin, the public pages'
downloads, `manage.py export_incidents`) streams through `stream_incidents_csv`, so they all produce
the same columns under the same rules.
"""

import codecs
import operator
import os
import re
import tempfile
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import closing
from datetime import UTC, date, datetime
from functools import reduce
from typing import IO, Any

import psycopg
from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import BooleanField, Exists, Expression, F, Lookup, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.expressions import Col
from django.db.models.functions import Coalesce, Collate
from django.db.models.lookups import Exact, GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual
from django.db.models.sql.constants import INNER
from django.db.models.sql.query import Query
from django.db.models.sql.where import AND, WhereNode

from incidents.access import RECORDED_COLUMNS, record_export_access
from incidents.filters import HasPlaceInCountry, LinkedToIncident
from incidents.models import AccessDoor, Incident, IncidentExportRow, IncidentSearchDocument
from incidents.querysets import KeptOriginsAtLeast, audience_name, can_see_confidential, version_fields
from incidents.search import IdIn

# The documented, stable column set (README "CSV export"); `version` and the readers it is told to
# (`version_audience`) come last so that a file exported, edited and imported again carries the
# version its rows were read at, and whose version that is.
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
    "confidential",
    "merged_into",
    "source_count",
    "sources",
    "claim_min",
    "claim_max",
    "updated_at",
    "version",
    "version_audience",
)
# The public pages' downloads add each incident's page after these (`copy_statement`).
PAGE_URL_COLUMN = "page_url"

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


# After a confidential source's id, in the `sources` cell of a reader who may see it (migration
# 0088): `Testimony [#12] [confidential]`. In brackets of their own, so that removing the ids for
# another database (README) leaves it, and never part of a bare title, which cannot hold `[`.
CONFIDENTIAL_SOURCE_MARK = "[confidential]"
# After that, a claim confidential itself (migration 0094): `Daily NK [#12] [confidential claim]`, so
# that a public source's confidential claim is imported elsewhere as one, not as a public claim.
CONFIDENTIAL_CLAIM_MARK = "[confidential claim]"


def csv_source_item(title: str, source_id: int, *, confidential: bool = False, claim_confidential: bool = False) -> str:
    """A source (and its claim) as the export writes it: titles repeat ("Press release"), its id does not."""
    marks = [
        mark
        for mark, marked in ((CONFIDENTIAL_SOURCE_MARK, confidential), (CONFIDENTIAL_CLAIM_MARK, claim_confidential))
        if marked
    ]
    return " ".join([f"{csv_list_item(title)} [#{source_id}]", *marks])


# A spreadsheet runs a cell starting with = + - @ (or a tab or carriage return hiding one) as a
# formula; a leading apostrophe makes it plain text. A cell that already starts with apostrophes
# before such a character gets one more, so the importer removes exactly one and the round trip
# stays lossless. One regular expression, valid in PostgreSQL and Python: the SQL function
# csv_neutralised (migration 0028) applies it to the free-text cells (title, places, perpetrators,
# sources) as their rows are kept.
FORMULA_LIKE = r"^'*[=+\-@\t\r]"

# Rows are gathered into chunks of about this size: one network write per chunk instead of per row.
CHUNK_BYTES = 64 * 1024

# The `confidential` cell, `true` or `false` (COPY writes a boolean as `t` or `f`), so that a file
# exported by a reader who may see confidential incidents says which are, and an import elsewhere
# (README "Into another database") keeps them so. A reader without that access sees no confidential
# incident, so the kept column would read `false` on every row of theirs: it is not even read for
# them. A confidential source is marked in the `sources` cell itself (migration 0088).
CONFIDENTIAL_CELLS = {
    "complete": "CASE WHEN export_row.confidential THEN 'true' ELSE 'false' END",
    "disclosed": "'false'",
}

# The cells built from claims, kept once per audience in IncidentExportRow (`disclosed_<name>`,
# `complete_<name>`).
CLAIM_COLUMNS = ("source_count", "sources", "claim_min", "claim_max")


def claim_cells(user) -> str:
    """Which of the kept claim cells `user` reads: `complete` (every claim) only with the
    confidential permission, `disclosed` otherwise. The one place that chooses: a reader without
    the permission is never given a cell built from a claim they may not see."""
    return "complete" if can_see_confidential(user) else "disclosed"


def version_cells(user) -> dict[str, str]:
    """The SQL of the `updated_at`, `version` and `version_audience` cells `user` reads: the kept
    cells of the version they are told (`querysets.version_fields`), as every other door tells it,
    and that audience's name (`audience_name`), so that a Reviewer importing the file an Analyst or
    the public downloaded is compared with the version it holds, not their own."""
    kept = version_fields(user).of(Incident)
    return {
        "updated_at": f'export_row."{kept.updated_at}"',
        "version": f'export_row."{kept.version}"',
        "version_audience": f"'{audience_name(user)}'",
    }


def origin_cells(user) -> str:
    """The kept count of independent origins `user`'s `min_origins` reads (not a cell of the CSV):
    the one of the claims `claim_cells` gives them, so that the filter and the cells count the same
    claims."""
    return f"{claim_cells(user)}_origins"


def _exported_ids(queryset: QuerySet) -> QuerySet:
    """The ids of `queryset`'s incidents; for a queryset Django proves empty (a bound beyond a
    column's range), for which it writes no SQL at all, the same query matching nothing: the CSV
    of no incidents is still its header."""
    try:
        queryset.values("id").query.sql_with_params()
    except EmptyResultSet:
        return Incident.objects.filter(Value(False)).values("id")
    return queryset.order_by().values("id")


class KeptSpanHolds(Expression):
    """The kept row's date range holds the day before `date_from` and `date_from` itself: the
    incident started before `date_from` and lasts into it, written so that the kept rows' GiST
    index (`export_row_span`) finds these few, where `date_start < date_from AND date_end >=
    date_from` would read every row on one side of the bound."""

    conditional = True
    output_field = BooleanField()

    def __init__(self, date_from):
        super().__init__()
        self.date_from = date_from

    def as_sql(self, compiler, connection):
        row = compiler.quote_name(compiler.query.base_table)
        return (
            f"daterange({row}.date_start, {row}.date_end, '[]') @> daterange(%s::date - 1, %s::date, '[]')",
            (self.date_from, self.date_from),
        )


class KeptInCountry(Expression):
    """The kept row's `countries` cell (its places' countries, `; `-joined) holds `country`: what
    `filters.HasPlaceInCountry` asks of the incident's place links. Four comparisons of the cell as
    it is, the code alone, first, last or between two others, rather than `= ANY
    (string_to_array(…))`, which built an array for every row read (45 ms of a 290,000 rows' date
    range at 1,000,000 incidents, against 13 ms)."""

    conditional = True
    output_field = BooleanField()

    def __init__(self, country: str):
        super().__init__()
        self.country = country

    def as_sql(self, compiler, connection):
        cell = f"{compiler.quote_name(compiler.query.base_table)}.countries"
        code = re.sub(r"([\\%_])", r"\\\1", self.country)  # literal in a LIKE pattern
        return (
            f"({cell} = %s OR {cell} LIKE %s OR {cell} LIKE %s OR {cell} LIKE %s)",
            (self.country, f"{code}; %", f"%; {code}", f"%; {code}; %"),
        )


# A time column as the kept row's cells write it, in SQL (as `kept_time` in Python; migration 0095).
KEPT_TIME_SQL = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def kept_time(value: datetime) -> str:
    """`value` as the kept row's `updated_at` cell writes a time (migration 0028: `to_char(… AT TIME
    ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`). Every such text has the same width and its
    fields in the order of their weight, so that comparing two of them byte by byte (collation "C")
    compares their times, to the microsecond."""
    value = value.astimezone(UTC)
    return f"{value.year:04d}-{value:%m-%dT%H:%M:%S.%f}Z"


# The incident's columns each kept row holds as they are (migration 0028; `confidential` 0030), and
# the lookups on them a condition may use there unchanged.
_KEPT_COLUMNS = {
    "date_start",
    "date_end",
    "review_state",
    "confidential",
    "verification",
    "people_count",
    "people_count_min",
    "people_count_max",
}
_KEPT_LOOKUPS = {"exact", "in", "gt", "gte", "lt", "lte"}
# The incident's change times each kept row holds as a text of the same name (`kept_time`): every
# reader's own (`version_cells`).
_KEPT_TIMES = {"updated_at", "disclosed_updated_at", "public_updated_at"}
_KEPT_TIME_LOOKUPS = {
    "exact": Exact,
    "gt": GreaterThan,
    "gte": GreaterThanOrEqual,
    "lt": LessThan,
    "lte": LessThanOrEqual,
}


def _survivor_seen(exists: Exists) -> Q | None:
    """`exists`, said of a merged incident's kept row, when it is the test of a sync
    (`IncidentQuerySet.synced_to`) that the incident's survivor is one the reader may see: an
    incident whose id is the merged one's `merged_into`, and its own columns' conditions. The kept
    row knows its survivor by its public id, which the survivor is then looked up by (unique,
    indexed), with the same conditions; None for any other subquery.

    Said as a scalar subquery, `COALESCE((SELECT true … LIMIT 1), false)`, never an EXISTS, which
    PostgreSQL may prepare hashed: at the first merged row, a hash of the public id of every
    incident the reader may see (1,000,000 at 1,000,000 incidents) for a test of a few rows. A
    scalar subquery is run as it is, one index lookup per merged row."""
    inner = exists.query
    where = inner.where
    if inner.model is not Incident or where.connector != AND or where.negated:
        return None
    if any(count for alias, count in inner.alias_refcount.items() if alias != inner.base_table):
        return None
    linked, conditions = False, []
    for child in where.children:
        if not isinstance(child, Lookup) or not isinstance(child.lhs, Col) or child.lhs.alias != inner.base_table:
            return None
        column = child.lhs.target.name
        if (
            child.lhs.target == Incident._meta.pk
            and child.lookup_name == "exact"
            and isinstance(child.rhs, Col)
            and child.rhs.alias == Incident._meta.db_table
            and child.rhs.target.name == "merged_into"
        ):
            linked = True
        elif (
            column in _KEPT_COLUMNS
            and child.lookup_name in _KEPT_LOOKUPS
            and not isinstance(child.rhs, (Expression, QuerySet))
        ):
            conditions.append(Q(**{f"{column}__{child.lookup_name}": child.rhs}))
        else:
            return None
    if not linked:
        return None
    survivor = Incident.objects.filter(*conditions, public_id=OuterRef("merged_into")).order_by()
    survivor = survivor.values(seen=Value(True))
    return Q(Coalesce(Subquery(survivor[:1]), Value(False), output_field=BooleanField()))


def _kept_condition(node, incident_alias: str, search_alias: str | None) -> Q | None:
    """The condition `node` of an incident query's WHERE (`incident_alias`, the alias of its table),
    said of the kept rows' own columns, or None when they cannot say it (another join, a subquery, a
    column they do not keep). A search (`search.IncidentSearch.filter`) is said of the kept rows'
    incident ids: the search words' own (`search_alias`, the alias of their join) or those it
    collected from their index (`IdIn`). A link filter (`filters.LinkedToIncident`: a place, a
    source, an organization) is its own EXISTS, said of the kept row's key, the incident's id. A
    selection of incidents by another incident query (the admin's `pk__in` of its changelist) is
    that query's own conditions, said of the kept rows alike."""
    if isinstance(node, WhereNode):
        parts = [_kept_condition(child, incident_alias, search_alias) for child in node.children]
        if node.negated or not parts or None in parts:
            return None
        return reduce(operator.and_ if node.connector == AND else operator.or_, parts)
    if not isinstance(node, Lookup):
        return None
    if isinstance(node.lhs, Col) and node.lhs.alias == search_alias:
        # The incidents whose words match, found by the words' index: for a few thousand,
        # PostgreSQL then reads their kept rows by id, where the incidents' join to their words
        # read the index of every visible incident for a hash first (0.22-0.24 s against 0.30-0.38 s
        # at 1,000,000 incidents, `q=repatriation`). The same lookup as the search's, whichever
        # words it reads (`search._words_read_by`).
        words = IncidentSearchDocument.objects.filter(**{f"{node.lhs.target.name}__{node.lookup_name}": node.rhs})
        return Q(incident_id__in=words.values("incident_id"))
    if isinstance(node.lhs, IdIn) and node.lookup_name == "exact" and node.rhs is True:
        incident_id, collected = node.lhs.get_source_expressions()
        if isinstance(incident_id, Col) and incident_id.target == Incident._meta.pk:
            return Q(IdIn(F("incident_id"), collected))
        return None
    if isinstance(node.lhs, LinkedToIncident) and node.lookup_name == "exact" and node.rhs is True:
        # The same queryset, its `OuterRef("pk")` now resolved against the kept row: its key is the
        # incident's id. Read for each kept row the order index hands on, by the links' index on
        # the incident, rather than the incidents selected first for a hash of their ids.
        return Q(LinkedToIncident(node.lhs.links))
    if _selects_incidents(node, incident_alias):
        return _said_of_kept_rows(node.rhs, node.rhs.where)
    if isinstance(node.lhs, Coalesce) and node.lookup_name in _KEPT_LOOKUPS and isinstance(node.rhs, Value):
        # `min_people`/`max_people` (a lookup given whole, so its number a Value): the figure the
        # statistics count (`people_estimate`), of the kept row's own figures.
        kept = _kept_columns(node.lhs, incident_alias)
        return None if kept is None else Q(node.__class__(kept, node.rhs))
    if isinstance(node.rhs, (Expression, QuerySet, Query)):
        return None
    if isinstance(node.lhs, KeptOriginsAtLeast) and node.lookup_name == "exact" and node.rhs is True:
        # `min_origins`: the kept row's own count for the reader's audience (migration 0043).
        return Q(**{f"{origin_cells(node.lhs.user)}__gte": node.lhs.count})
    if isinstance(node.lhs, HasPlaceInCountry) and node.lookup_name == "exact" and node.rhs is True:
        return Q(KeptInCountry(node.lhs.country))
    if not isinstance(node.lhs, Col) or node.lhs.alias != incident_alias:
        return None
    column = node.lhs.target.name
    if node.lhs.target == Incident._meta.pk and node.lookup_name in ("exact", "in"):
        # The admin action's selection of ids.
        return Q(**{f"incident_id__{node.lookup_name}": node.rhs})
    if column == "merged_into" and node.lookup_name == "isnull":
        # The survivor's public id, kept only while it is merged.
        return Q(merged_into__isnull=node.rhs)
    if column in _KEPT_COLUMNS and node.lookup_name in _KEPT_LOOKUPS:
        return Q(**{f"{column}__{node.lookup_name}": node.rhs})
    if column == "incident_type" and node.lookup_name in ("exact", "in"):
        # The kept type id (migration 0040), the ids written in the statement: PostgreSQL counts a
        # type's rows from its statistics and chooses how to read them, mostly from their own index
        # (`export_row_type`). Said of the kept slug cell, against the slugs read in the statement,
        # every type was priced alike and read the whole order index (20,162 rows of `execution`
        # and its sub-type at 1,000,000 incidents: 0.4 s against 0.12 s for the statement).
        return Q(**{f"incident_type_id__{node.lookup_name}": node.rhs})
    if (
        column in _KEPT_TIMES
        and node.lookup_name in _KEPT_TIME_LOOKUPS
        and isinstance(node.rhs, datetime)
        and node.rhs.tzinfo is not None
    ):
        # An incremental sync's `updated_since`; a naive time, which Django would read in the
        # server's zone, is left to the incidents.
        return Q(_KEPT_TIME_LOOKUPS[node.lookup_name](Collate(F(column), "C"), kept_time(node.rhs)))
    return None


def _kept_columns(expression, incident_alias: str):
    """`expression` of the incident's columns said of the kept row's (`_KEPT_COLUMNS`), or None when
    it reads another."""
    if isinstance(expression, Col):
        column = expression.target.name
        return F(column) if expression.alias == incident_alias and column in _KEPT_COLUMNS else None
    if isinstance(expression, Value):
        return expression
    if not isinstance(expression, Coalesce):
        return None
    sources = [_kept_columns(source, incident_alias) for source in expression.get_source_expressions()]
    if None in sources:
        return None
    kept = expression.copy()
    kept.set_source_expressions(sources)
    return kept


def _selects_incidents(node, incident_alias: str) -> bool:
    """`node` is `id IN (<an incident query selecting its ids>)`: the admin's export of what its
    changelist (or its action) selects, `visible_to(user).filter(pk__in=<its queryset>)`."""
    return (
        isinstance(node, Lookup)
        and node.lookup_name == "in"
        and isinstance(node.lhs, Col)
        and node.lhs.alias == incident_alias
        and node.lhs.target == Incident._meta.pk
        and isinstance(node.rhs, Query)
        and node.rhs.model is Incident
        and len(node.rhs.select) == 1
        and isinstance(node.rhs.select[0], Col)
        and node.rhs.select[0].alias == node.rhs.base_table
        and node.rhs.select[0].target == Incident._meta.pk
    )


def _said_of_kept_rows(query, where: WhereNode) -> Q | None:
    """`where`, the conditions of the incident query `query` (all of them, or all but a sync's
    merges: `_merges_followed`), said of the kept rows (`_kept_condition`); None when one of them
    cannot be, or the query does more than select incidents (another join, a grouping, a slice, an
    annotation selected). An annotation the query holds but neither selects nor filters on (the
    admin list's columns, in the ids of its selection: `id IN (<its query>)`) changes no row."""
    search_alias = _search_join(query)
    if (query.distinct or query.is_sliced or query.combinator or query.extra or query.annotation_select) or any(
        count and alias not in (query.base_table, search_alias) for alias, count in query.alias_refcount.items()
    ):
        return None
    return _kept_condition(where, query.base_table, search_alias) if where.children else Q()


def kept_rows(queryset: QuerySet) -> list[QuerySet]:
    """The kept rows (IncidentExportRow) of `queryset`'s incidents, in parts that share no row.

    When every condition of the queryset is on columns the kept rows hold too (its visibility:
    review state, confidentiality, merges; the filters on dates, country, counts, verification) or
    is a search (`_kept_condition`), the same conditions on the kept rows' own columns: a filtered
    export then reads the kept rows of its date range alone, where selecting the incidents first
    took longer than copying their rows (the country's semi-join over every place link, then every
    kept row read for a hash of the ids: 4.1 s against 0.8 s at 1,000,000 incidents). A range from
    `date_from` is read in two parts, the rows starting in it, by the order index's range of dates
    (`export_row_newest`), and the few started before it that last into it (`KeptSpanHolds`): the
    first comes newest first from the index, the second follows it whole, so the export's order
    costs no sort of the rows (which took 0.2 s of 0.5 s for 115,000 rows at 1,000,000 incidents).
    A sync (`updated_since`: its bound said of the kept rows' change time, `kept_time`) reads the
    rows not merged apart from the merged ones it reports (`_merges_followed`); an incident type is
    said of the kept rows' type id; a place, a source or an organization is its own
    EXISTS over the links, said of the kept row's key (`filters.LinkedToIncident`); `min_origins` is
    said of the kept rows' count of independent origins for the reader's audience (`origin_cells`);
    the admin's selection is the conditions of the incident query it selects the ids of. Otherwise,
    those whose incident the queryset selects (`incident_id IN (<its SQL>)`), whatever its
    conditions."""
    query = queryset.query
    where, merges_followed = _merges_followed(query.where)
    kept = _said_of_kept_rows(query, where)
    if kept is None:
        return [IncidentExportRow.objects.filter(incident_id__in=_exported_ids(queryset))]
    rows = IncidentExportRow.objects.filter(kept)
    selections = [rows]
    if merges_followed is not None:
        # A sync's rows in two parts: those not merged, without the survivor's test, which PostgreSQL
        # would price as run for each of them (as much as the rest of reading a row: it then preferred
        # any index that reads fewer rows, in any order, to the order index), and the few merged ones
        # with it, from their own index (`export_row_merged`).
        selections = [rows.filter(merged_into__isnull=True), rows.filter(merges_followed)]
    date_from = _date_from(query)
    parts = selections
    if date_from is not None:
        parts = [
            part
            for rows in selections
            for part in (rows.filter(date_start__gte=date_from), rows.filter(KeptSpanHolds(date_from)))
        ]
    # A bound Django proves matches nothing: as for the incidents, no SQL; the rows of none.
    return [part for part in parts if _has_sql(part)] or [IncidentExportRow.objects.filter(Value(False))]


def _merges_followed(where: WhereNode) -> tuple[WhereNode, Q | None]:
    """`where` without a sync's test that an incident is not merged or merged into a survivor the
    reader may see (`IncidentQuerySet.synced_to`), and that test's second half said of the kept rows
    (`_survivor_seen`); `where` itself and None without it."""
    if where.connector != AND or where.negated:
        return where, None
    for child in where.children:
        if not isinstance(child, WhereNode) or child.connector == AND or child.negated or len(child.children) != 2:
            continue
        not_merged, survivor = child.children
        if (
            isinstance(not_merged, Lookup)
            and isinstance(not_merged.lhs, Col)
            and not_merged.lhs.alias == Incident._meta.db_table
            and (not_merged.lhs.target.name, not_merged.lookup_name, not_merged.rhs) == ("merged_into", "isnull", True)
            and isinstance(survivor, Lookup)
            and isinstance(survivor.lhs, Exists)
            and (survivor.lookup_name, survivor.rhs) == ("exact", True)
        ):
            seen = _survivor_seen(survivor.lhs)
            if seen is not None:
                rest = [other for other in where.children if other is not child]
                return WhereNode(rest, AND), Q(merged_into__isnull=False) & seen
    return where, None


def _search_join(query) -> str | None:
    """The alias of the incidents' inner join to their search words (one row each: it selects,
    never repeats), through which a search for many incidents tests their words; None without."""
    for alias, join in query.alias_map.items():
        if (
            join.table_name == IncidentSearchDocument._meta.db_table
            and join.join_type == INNER
            and join.parent_alias == query.base_table
            and join.join_field.name == "search_document"
        ):
            return alias
    return None


def _has_sql(rows: QuerySet) -> bool:
    """False for rows Django proves none (a bound beyond a column's range), for which it writes no SQL."""
    try:
        rows.query.sql_with_params()
    except EmptyResultSet:
        return False
    return True


def _date_from(query) -> date | None:
    """The bound an overlap filter's `date_from` (`IncidentQuerySet.overlapping`) puts on all the
    incidents of `query`, `date_end >= date_from`, among the conditions every row must meet, or
    those of the incident query it selects the ids of (the admin's export: `_selects_incidents`);
    None without."""
    where = query.where
    if where.connector != AND or where.negated:
        return None
    for child in where.children:
        if (
            isinstance(child, Lookup)
            and isinstance(child.lhs, Col)
            and (child.lhs.target.name, child.lookup_name) == ("date_end", "gte")
            and not isinstance(child.rhs, Expression)
        ):
            return child.rhs
    selections = (child.rhs for child in where.children if _selects_incidents(child, query.base_table))
    return next((bound for bound in map(_date_from, selections) if bound is not None), None)


def kept_rows_sql(parts: list[QuerySet], *columns: str) -> tuple[str, tuple]:
    """The SQL and parameters of the kept rows `parts` (`kept_rows`): all their columns, several
    parts each newest first, so that PostgreSQL merges their orders rather than sorting them; or
    only `columns`, in no order."""
    if columns:
        compiled = [part.order_by().values(*columns).query.sql_with_params() for part in parts]
    elif len(parts) > 1:
        compiled = [part.order_by(*NEWEST_FIRST).query.sql_with_params() for part in parts]
    else:
        compiled = [part.query.sql_with_params() for part in parts]
    if len(compiled) == 1:
        return compiled[0]
    sql = " UNION ALL ".join(f"({part_sql})" for part_sql, _ in compiled)
    return sql, tuple(param for _, params in compiled for param in params)


# "One row per incident, newest first" (README "CSV export"): Incident.Meta.ordering, whatever
# order the caller's queryset had.
NEWEST_FIRST = ("-date_start", "-incident_id")
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
    versions = version_cells(user)
    cells = [
        f'export_row."{audience}_{name}" AS "{name}"'
        if name in CLAIM_COLUMNS
        else f'{CONFIDENTIAL_CELLS[audience]} AS "{name}"'
        if name == "confidential"
        else f'{versions[name]} AS "{name}"'
        if name in versions
        else f'export_row."{name}"'
        for name in COLUMNS
    ]
    params = ()
    if page_url_prefix is not None:
        cells.append(f'%s || export_row."public_id" || \'/\' AS "{PAGE_URL_COLUMN}"')
        params = (page_url_prefix,)
    # The kept rows the queryset selects, by their own columns where they hold every one it names,
    # else by its own SQL (`kept_rows`): a subquery PostgreSQL plans as if written in place.
    selected, selected_params = kept_rows_sql(kept_rows(queryset))
    select = f"SELECT {', '.join(cells)} FROM ({selected}) AS export_row ORDER BY {ORDER_BY}"
    statement = f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')"
    return psycopg.ClientCursor(pg_connection).mogrify(statement, (*params, *selected_params))


_EXPORT_SETTINGS = "SELECT " + ", ".join(
    f"set_config('{name}', '{value}', true)"
    for name, value in (
        ("datestyle", "ISO, YMD"),
        ("work_mem", "64MB"),
        ("jit", "off"),
        ("max_parallel_workers_per_gather", "0"),
        ("random_page_cost", "1.1"),
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

    Runs one COPY statement in its own transaction when iterated, not when called; the HTTP doors
    iterate it into a file at once (`spooled`), so that the transaction never waits for a client.
    `on_rows(n)` is told how many data rows
    each chunk holds, for progress bars; `page_url_prefix` adds the `page_url` column (see
    `copy_statement`). Memory stays at one chunk whatever the row count.

    When the rows hold confidential records, the export is recorded (`record_export_access`) with
    `door`, `path`, the `export_filters` that selected them and its row count before the first byte
    leaves: a download broken off, or a worker killed midway, has still been recorded."""
    # Planned under the export's own settings: with PostgreSQL's default work_mem (4 MB), the ids a
    # link filter selects (the 399,163 incidents a government is involved in, at 1,000,000) do not
    # fit a hash, and PostgreSQL then tested each kept row by an index lookup (8.1 s, against 2.3 s
    # with the hash).
    record_export_access(
        kept_rows_sql(kept_rows(queryset), *RECORDED_COLUMNS),
        user,
        door=door,
        path=path,
        export_filters=export_filters,
        planner_settings=_EXPORT_SETTINGS,
    )
    if bom:
        yield codecs.BOM_UTF8
    with transaction.atomic(), connection.cursor() as cursor:
        # For the transaction only, in one statement: dates as YYYY-MM-DD whatever the server's
        # default DateStyle. The selected ids' hash in one batch (a million take 47 MB), so that the
        # join hands the kept rows on in the order they are stored, newest first, and the sort finds
        # them sorted (1.4 s instead of 2.9 s at 1,000,000 incidents). No JIT, which compiled the
        # statement for half a second to copy rows, and no parallel workers, which made it no faster
        # on two cores. Random reads priced nearly as reads in turn (PostgreSQL's default prices them
        # as from a spinning disk: 4 to 1), as they are for kept rows read from memory: otherwise
        # PostgreSQL reads a date range's rows in storage order and sorts them rather than through
        # the order index, which hands them on sorted (0.44 s against 0.33 s for the COPY of
        # 115,000 rows of a date range and a country at 1,000,000 incidents).
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


# The export slots: session-level advisory locks on the primary, keyed (this namespace, slot number
# 1 to EXPORTS_AT_ONCE), the two-key form, apart from the one-key locks of releases.
_EXPORT_SLOT_NAMESPACE = "hashtext('incidents.export_slot')"
# A client's turn (`export_client_take`): keyed (this namespace, a hash of the client's name).
_EXPORT_CLIENT_NAMESPACE = "hashtext('incidents.export_client')"


def export_slot_take() -> int | None:
    """Take a free export slot and return its number, or None while EXPORTS_AT_ONCE exports hold
    every one. Runs one query per slot tried.

    The slot is an advisory lock of this thread's connection to the primary, the connection the
    export's COPY then runs on (`stream_incidents_csv`), whether or not the request's other reads
    go to a replica: every worker of every app server shares the primary, where each replica would
    count only its own. Session-level, so that it is held whatever transactions the export opens
    and ends; given back by `export_slot_release` once the download is spooled (`spooled`), or by
    PostgreSQL when the connection dies with its worker. One statement per slot rather than one for
    them all: PostgreSQL does not promise to stop calling a locking function in a WHERE once a LIMIT
    is met, and a slot taken by a row left out would be held for nothing."""
    with connection.cursor() as cursor:
        for slot in range(1, settings.EXPORTS_AT_ONCE + 1):
            cursor.execute(f"SELECT pg_try_advisory_lock({_EXPORT_SLOT_NAMESPACE}, %s)", [slot])
            if cursor.fetchone()[0]:
                return slot
    return None


def export_slot_release(slot: int) -> None:
    """Give back a slot `export_slot_take` returned on this thread's connection. Runs a query."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_advisory_unlock({_EXPORT_SLOT_NAMESPACE}, %s)", [slot])


def export_client_take(client: str) -> bool:
    """Take `client`'s turn (a name for an account or an address: `ExportThrottle`'s), or False
    while another download of theirs holds it, on any worker. Runs a query.

    One download at a time per client, so that one client cannot take every export slot by asking
    for several at once. An advisory lock on the primary like the slots, keyed by a 32-bit hash of
    the name: two clients whose names share a hash (one chance in some four billion for a pair)
    take turns. Given back by `export_client_release`, or when the connection dies."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_try_advisory_lock({_EXPORT_CLIENT_NAMESPACE}, hashtext(%s))", [client])
        return cursor.fetchone()[0]


def export_client_release(client: str) -> None:
    """Give back the turn `export_client_take` took on this thread's connection. Runs a query."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_advisory_unlock({_EXPORT_CLIENT_NAMESPACE}, hashtext(%s))", [client])


def spooled(chunks: Generator[bytes, None, None]) -> IO[bytes]:
    """`chunks` (an export's, or a release file's) written to an anonymous temporary file in
    EXPORT_SPOOL_DIR, read back from its start; closed at once if anything fails.

    Why: a download's client reads at its own speed, a few KB/s for a slow or hostile one. Streamed
    from the COPY, the download held its export slot, its transaction and the transaction's snapshot
    for as long as the client took (hours for 60 MB at 2 KB/s): two such clients held every slot, and
    VACUUM could remove no row that died meanwhile, in any table. Written here at the database's
    speed, the transaction and the slot end before the first byte is sent. The file is unlinked as
    it is made (`TemporaryFile`), so a worker killed midway leaves nothing behind; memory stays at
    one chunk."""
    spool = tempfile.TemporaryFile(dir=settings.EXPORT_SPOOL_DIR)  # noqa: SIM115 (the caller's to close)
    try:
        with closing(chunks):
            for chunk in chunks:
                spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


class SpooledDownload:
    """A spooled download (`spooled`) as a response's iterable, in chunks of CHUNK_BYTES, holding its
    client's turn (`export_client_take`) until the response is closed.

    A WSGI server closes the response however the download ends: sent to the last byte, failed
    midway, broken off by a client that went away, or never started. The file is closed (and so
    gone), then the turn is given back."""

    def __init__(self, spool: IO[bytes], client: str):
        self._spool = spool
        self._client = client
        self.size = os.fstat(spool.fileno()).st_size
        # A response dropped without being closed (Django's test client closes a streaming one only
        # once it is read to its end) still closes its file when it is collected, rather than
        # leaving it to the file's own finalizer, which warns of an unclosed file.
        self._close_spool = weakref.finalize(self, spool.close)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self._spool.read(CHUNK_BYTES):
            yield chunk

    def close(self) -> None:
        self._close_spool()
        if self._client is not None:
            client, self._client = self._client, None
            export_client_release(client)


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
    # Closed at once if a write fails (a full disk, a closed pipe): the COPY is ended and its
    # transaction rolled back then, not left streaming on the connection until the generator is
    # collected.
    with closing(chunks):
        for chunk in chunks:
            out.write(chunk)
