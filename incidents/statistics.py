"""Counts and sums of people over a filtered set of incidents, grouped by year, month, country,
type or perpetrator, without ever counting an incident twice.

The caller's queryset (already limited by `visible_to` and the filter set) is aggregated directly,
never joined back to itself through an `id IN (…)` list: on a million incidents that self-join
hashed every matching id and spilled to disk.

- year, month, type: each incident is in exactly one group, so one GROUP BY over the incidents
  answers the groups and the total is their sum.
- perpetrator: an organization is a perpetrator of an incident at most once (the involvement's
  unique constraint covers incident, organization and role), so a LEFT JOIN on the perpetrator
  involvements yields distinct (incident, group) rows without DISTINCT.
- country: an incident at two places of one country must count once there, so its distinct
  (incident, country) rows are taken first and summed after; the total sums them once more per
  incident, in the same query.
An incident can have several perpetrators, so there the total is a second query.
"""

from django.db import connection
from django.db.models import Count, F, FilteredRelation, Q, Sum, Value
from django.db.models.functions import Coalesce, ExtractYear, NullIf, TruncMonth
from django_countries import countries

from incidents.models import InvolvementRole

GROUPINGS = ("year", "month", "country", "type", "perpetrator")
_ONE_GROUP_EACH = ("year", "month", "type")

# An incident's low and high figures: a missing bound falls back to the best estimate.
_LOW = Coalesce("people_count_min", "people_count")
_HIGH = Coalesce("people_count_max", "people_count")
# Aliases differ from the field names: Django refuses an aggregate named like the field it sums.
_SUMS = {"incidents": Count("pk"), "people": Sum("people_count"), "low": Sum(_LOW), "high": Sum(_HIGH)}


def incident_statistics(incidents, group_by: str) -> dict:
    """One row per group of `incidents` (a filtered queryset) and the overall total. One query, two
    for perpetrators.

    `people_count_min`/`_max` sum each incident's range, taking the best estimate where a bound is
    unknown; incidents without a best estimate count as incidents but add no people."""
    incidents = incidents.order_by()
    if group_by == "country":
        groups, total = _country_sums(incidents)
    else:
        groups = list(_grouped(incidents, group_by).annotate(**_SUMS).order_by(F("group").asc(nulls_last=True)))
        # An incident with two perpetrators is in two groups: that total is counted on its own.
        total = _sum_of(groups) if group_by in _ONE_GROUP_EACH else incidents.aggregate(**_SUMS)
    return {
        "group_by": group_by,
        "results": [
            {"group": _group_name(group_by, row["group"]), "label": _label(group_by, row), **_figures(row)}
            for row in groups
        ],
        "total": _figures(total),
    }


def _grouped(incidents, group_by: str):
    """`incidents` as `.values()` of its group (and the group's label, where it has one)."""
    if group_by == "year":
        return incidents.values(group=ExtractYear("date_start"))
    if group_by == "month":
        return incidents.values(group=TruncMonth("date_start"))
    if group_by == "type":
        return incidents.values(group=F("incident_type__slug"), label=F("incident_type__name"))
    # LEFT JOIN: incidents without a perpetrator form a group of their own (null).
    perpetrations = incidents.annotate(
        perpetration=FilteredRelation("involvements", condition=Q(involvements__role=InvolvementRole.PERPETRATOR))
    )
    return perpetrations.values(group=F("perpetration__organization_id"), label=F("perpetration__organization__name"))


def _country_sums(incidents) -> tuple[list[dict], dict]:
    """The groups and the total in one pass: the distinct (incident, country) pairs are taken
    once (a CTE used twice is computed once), summed per country, then per distinct incident."""
    # LEFT JOIN through the places: incidents without a place (or a place without a country)
    # form a group of their own (null).
    pairs = incidents.values("pk", "people_count", group=NullIf("places__country", Value("")), low=_LOW, high=_HIGH)
    pairs_sql, params = pairs.distinct().query.sql_with_params()
    sums = "COUNT(*), SUM(people_count), SUM(low), SUM(high)"
    with connection.cursor() as cursor:
        cursor.execute(
            f'WITH pairs AS ({pairs_sql}) SELECT false AS is_total, "group", {sums} FROM pairs GROUP BY "group" '
            f"UNION ALL SELECT true, NULL, {sums} FROM (SELECT DISTINCT pk, people_count, low, high FROM pairs) each "
            "ORDER BY is_total, 2 NULLS LAST",
            params,
        )
        rows = [dict(zip(["is_total", "group", *_SUMS], row, strict=True)) for row in cursor.fetchall()]
    return rows[:-1], rows[-1]


def _sum_of(groups: list[dict]) -> dict:
    """The total of groups that share no incident; a figure no group has stays null."""
    total = {"incidents": sum(row["incidents"] for row in groups)}
    for name in ("people", "low", "high"):
        values = [row[name] for row in groups if row[name] is not None]
        total[name] = sum(values) if values else None
    return total


def _figures(row: dict) -> dict:
    return {
        "incidents": row["incidents"],
        "people_count": row["people"],
        "people_count_min": row["low"],
        "people_count_max": row["high"],
    }


def _group_name(group_by: str, group) -> str | None:
    if group is None:
        return None
    if group_by == "month":
        return group.strftime("%Y-%m")
    return str(group)


def _label(group_by: str, row: dict) -> str:
    group = row["group"]
    if group is None:
        return "Not recorded"
    if group_by == "country":
        return countries.name(group) or group
    return row.get("label") or _group_name(group_by, group)
