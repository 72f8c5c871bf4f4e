"""Who read the informant's testimony: a record of every showing and export of confidential records.

Every door that shows confidential incidents, claims or sources (the admin's record and history
pages, the API's detail, history and lists, CSV downloads, the export command) asks the selectors
here which confidential records it showed, and hands them to `record_confidential_access`, which
writes one append-only `ConfidentialAccess` row per request, whatever the number of records (the
API's incident list, read most, finds and writes in one statement: `record_list_access`). A
reader without the confidential permission is shown none, so their reads cost nothing here.

What is confidential is decided by the models' flags and `ClaimQuerySet.confidential()` (a claim
is when it or its source is): the same rule that hides those records from everyone else.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.contrib.postgres.aggregates import ArrayAgg
from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection
from django.db.models import Case, Count, F, Q, QuerySet, Value, When
from django.db.models.expressions import RawSQL
from psycopg.types.json import Jsonb

from incidents.models import AccessDoor, Claim, ConfidentialAccess, Incident, Source
from incidents.querysets import can_see_confidential

# Who may read the record of accesses: it names the colleagues who read an informant's testimony.
VIEW_ACCESSES_PERMISSION = "incidents.view_confidentialaccess"


@dataclass(frozen=True)
class ConfidentialRecords:
    """The confidential records one request showed, by primary key."""

    incident_ids: frozenset[int] = frozenset()
    claim_ids: frozenset[int] = frozenset()
    source_ids: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.incident_ids or self.claim_ids or self.source_ids)


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


def confidential_records_of(record: Incident | Source, user) -> ConfidentialRecords:
    """The confidential records that a page of one incident (with its claims and their sources, as
    its change, history and detail pages show) or of one source shows to `user`. Nothing for a
    reader without the confidential permission, who is shown none. One query for an incident, none
    for a source."""
    if not can_see_confidential(user):
        return NO_RECORDS
    if isinstance(record, Source):
        return ConfidentialRecords(source_ids=frozenset({record.pk})) if record.confidential else NO_RECORDS
    return _from_claims(Claim.objects.filter(incident=record), [record.pk] if record.confidential else [])


def confidential_among(records: Iterable[Incident | Source], user) -> ConfidentialRecords:
    """The confidential ones among the incidents or sources a list shows `user` (their own fields
    only, as the admin's lists and the API's source list show them). No query."""
    if not can_see_confidential(user):
        return NO_RECORDS
    incident_ids, source_ids = set(), set()
    for record in records:
        if record.confidential:
            (source_ids if isinstance(record, Source) else incident_ids).add(record.pk)
    return ConfidentialRecords(incident_ids=frozenset(incident_ids), source_ids=frozenset(source_ids))


def export_contents(incidents: QuerySet, user) -> tuple[ConfidentialRecords, int | None]:
    """The confidential records among `incidents` (filtered, visible to `user`) and their claims, as
    an export of them shows, and how many rows the export holds. Two queries; none, and no count,
    for a reader without the confidential permission, whose exports hold nothing to record."""
    if not can_see_confidential(user):
        return NO_RECORDS, None
    incidents = incidents.order_by()
    totals = incidents.aggregate(
        rows=Count("pk"), confidential=ArrayAgg("pk", filter=Q(confidential=True), default=Value([]))
    )
    records = _from_claims(Claim.objects.filter(incident__in=incidents.values("pk")), totals["confidential"])
    return records, totals["rows"]


def shown_incident_columns(user) -> tuple[str, ...]:
    """The columns a list's `.values()` adds for `record_list_access` to know which incidents a
    page showed: none for a reader without the confidential permission, whose pages hold nothing
    to record."""
    return ("pk", "confidential") if can_see_confidential(user) else ()


# One statement, in its own transaction, that does not wait for the disk to flush it: a read's only
# write would otherwise wait 7-25 ms for the flush on a busy machine (more than the incident list
# itself), and BEGIN, SET LOCAL and COMMIT cost three more round trips. Without the wait, a crash of
# the database server can lose the accesses of its last moment (at most 3 x wal_writer_delay, 0.6 s
# by default), never corrupt them or anything else (PostgreSQL's "asynchronous commit").
_INSERT_WITHOUT_WAITING_FOR_THE_DISK = f"""
INSERT INTO {ConfidentialAccess._meta.db_table}
    (at, user_id, door, path, incident_ids, claim_ids, source_ids, export_filters, row_count)
SELECT now(), %(user_id)s, %(door)s, %(path)s, %(incident_ids)s::bigint[], %(claim_ids)s::bigint[],
    %(source_ids)s::bigint[], %(export_filters)s, %(row_count)s
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS asynchronous_commit
RETURNING id, at
"""


def record_confidential_access(
    *,
    user,
    door: AccessDoor,
    records: ConfidentialRecords,
    path: str = "",
    export_filters: Mapping[str, Any] | None = None,
    row_count: int | None = None,
) -> ConfidentialAccess | None:
    """Record that `user` was shown (or, with `export_filters` and `row_count`, exported) the
    confidential `records` through `door`: one row, whatever their number. Records nothing when
    none of them was confidential. One query."""
    if not records:
        return None
    values = {
        "user_id": user.pk,
        "door": door,
        "path": path[: ConfidentialAccess._meta.get_field("path").max_length],
        "incident_ids": sorted(records.incident_ids),
        "claim_ids": sorted(records.claim_ids),
        "source_ids": sorted(records.source_ids),
        "export_filters": None if export_filters is None else dict(export_filters),
        "row_count": row_count,
    }
    if connection.in_atomic_block:
        # Part of the caller's transaction, which commits it with everything else.
        return ConfidentialAccess.objects.create(**values)
    parameters = {
        **values,
        "door": str(door),
        "export_filters": None if export_filters is None else Jsonb(values["export_filters"]),
    }
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_WITHOUT_WAITING_FOR_THE_DISK, parameters)
        access_id, at = cursor.fetchone()
    return ConfidentialAccess(id=access_id, at=at, **values)


# Built once per process, like the list's representation: building the queryset each time cost
# twice what running the statement does.
@cache
def _list_access_statement(*, asynchronous: bool) -> str:
    """The statement `record_list_access` runs, taking the reader, door, path, the page's
    confidential incidents and all its incidents. Each confidential claim of the page comes with
    its source's id when the source is confidential too, through the one join to the claim's
    source: asked apart, the sources were found by scanning every confidential source (3 ms a page
    at 1,000,000 incidents)."""
    page_incidents = RawSQL("SELECT unnest(%s::bigint[])", ["page"])
    claims = (
        Claim.objects.filter(incident__in=page_incidents)
        .confidential()
        .values("pk", confidential_source=Case(When(source__confidential=True, then=F("source_id"))))
        .order_by()
    )
    claims_sql, _ = claims.query.sql_with_params()
    # Outside a transaction, one of its own that does not wait for the disk (see above); inside
    # one, part of it, committed with everything else.
    commit = ", (SELECT set_config('synchronous_commit', 'off', true)) AS asynchronous_commit" if asynchronous else ""
    return f"""
        INSERT INTO {ConfidentialAccess._meta.db_table} (at, user_id, door, path, incident_ids, claim_ids, source_ids)
        SELECT now(), %s, %s, %s, shown.incident_ids, shown.claim_ids, shown.source_ids
        FROM (
            SELECT %s::bigint[] AS incident_ids,
                   coalesce(array_agg(claim.pk ORDER BY claim.pk), '{{}}') AS claim_ids,
                   coalesce(array_agg(DISTINCT claim.confidential_source)
                            FILTER (WHERE claim.confidential_source IS NOT NULL), '{{}}') AS source_ids
            FROM ({claims_sql}) AS claim
        ) AS shown{commit}
        WHERE cardinality(shown.incident_ids) > 0 OR cardinality(shown.claim_ids) > 0
    """


def record_list_access(*, user, door: AccessDoor, rows: Iterable[Mapping[str, Any]], path: str = "") -> None:
    """Record that `user` was shown the confidential records of a page of incident rows carrying
    `shown_incident_columns`: the confidential incidents among them and their confidential claims
    (with those claims' confidential sources), as their representations hold them. Nothing for a
    reader without the confidential permission.

    One statement finds the claims and records them: finding them in the page's own query (a
    subquery per row) and inserting after cost the list 10-20% of its time at 1,000,000 incidents."""
    rows = list(rows)
    if not rows or "confidential" not in rows[0]:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _list_access_statement(asynchronous=not connection.in_atomic_block),
            [
                user.pk,
                str(door),
                path[: ConfidentialAccess._meta.get_field("path").max_length],
                sorted(row["pk"] for row in rows if row["confidential"]),
                [row["pk"] for row in rows],
            ],
        )


def reads_of(record: Incident | Source) -> QuerySet:
    """The recorded accesses that showed `record` (for an incident, also its claims), newest first.
    One query, served by the arrays' GIN indexes."""
    if isinstance(record, Source):
        condition = Q(source_ids__contains=[record.pk])
    else:
        claims = ArraySubquery(Claim.objects.filter(incident=record).order_by().values("pk"))
        condition = Q(incident_ids__contains=[record.pk]) | Q(claim_ids__overlap=claims)
    return ConfidentialAccess.objects.filter(condition).select_related("user")
