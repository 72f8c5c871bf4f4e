"""Counts and sums of people over a filtered set of incidents, grouped by year, month, country,
type or perpetrator, without ever counting an incident twice.

An incident at two places in the same country, or with one perpetrator named twice in two roles,
must add its people once to that group. So each grouping first reduces the filtered incidents to
distinct (incident, group) pairs and only then sums: the filtered ids are a subquery (the SQL of the
caller's queryset, already limited by `visible_to` and the filter set), never a join that fans out.
"""

from django.db import connection
from django_countries import countries

from incidents.models import Incident, IncidentPlace, IncidentType, Involvement, InvolvementRole, Organization, Place

GROUPINGS = ("year", "month", "country", "type", "perpetrator")

_incident = Incident._meta.db_table
_incident_place = IncidentPlace._meta.db_table
_place = Place._meta.db_table
_type = IncidentType._meta.db_table
_involvement = Involvement._meta.db_table
_organization = Organization._meta.db_table

# Each grouping: the SQL giving distinct (incident_id, grp, label) rows for the ids in `matching`.
# LEFT JOINs keep incidents with no place or no perpetrator, as a group of their own (null).
_PAIRS = {
    "year": f"SELECT i.id AS incident_id, to_char(i.date_start, 'YYYY') AS grp, NULL AS label "
    f"FROM {_incident} i WHERE i.id IN (matching)",
    "month": f"SELECT i.id AS incident_id, to_char(i.date_start, 'YYYY-MM') AS grp, NULL AS label "
    f"FROM {_incident} i WHERE i.id IN (matching)",
    "type": f"SELECT i.id AS incident_id, t.slug AS grp, t.name AS label "
    f"FROM {_incident} i JOIN {_type} t ON t.id = i.incident_type_id WHERE i.id IN (matching)",
    "country": f"SELECT DISTINCT i.id AS incident_id, NULLIF(p.country, '') AS grp, NULL AS label "
    f"FROM {_incident} i LEFT JOIN {_incident_place} ip ON ip.incident_id = i.id "
    f"LEFT JOIN {_place} p ON p.id = ip.place_id WHERE i.id IN (matching)",
    "perpetrator": f"SELECT DISTINCT i.id AS incident_id, o.id::text AS grp, o.name AS label "
    f"FROM {_incident} i LEFT JOIN {_involvement} v ON v.incident_id = i.id AND v.role = %s "
    f"LEFT JOIN {_organization} o ON o.id = v.organization_id WHERE i.id IN (matching)",
}
_PAIR_PARAMS = {"perpetrator": [InvolvementRole.PERPETRATOR]}

_SUMS = (
    "COUNT(*), SUM(i.people_count), SUM(COALESCE(i.people_count_min, i.people_count)), "
    "SUM(COALESCE(i.people_count_max, i.people_count))"
)


def _figures(row) -> dict:
    incidents, people, people_min, people_max = row
    return {
        "incidents": incidents,
        "people_count": people,
        "people_count_min": people_min,
        "people_count_max": people_max,
    }


def incident_statistics(incidents, group_by: str) -> dict:
    """One row per group of `incidents` (a filtered queryset) and the overall total. Two queries.

    `people_count_min`/`_max` sum each incident's range, taking the best estimate where a bound is
    unknown; incidents without a best estimate count as incidents but add no people."""
    matching_sql, matching_params = incidents.order_by().values("pk").query.sql_with_params()
    pairs_sql = _PAIRS[group_by].replace("matching", matching_sql)
    pairs_params = [*_PAIR_PARAMS.get(group_by, []), *matching_params]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT g.grp, MAX(g.label), {_SUMS} FROM ({pairs_sql}) g JOIN {_incident} i ON i.id = g.incident_id "
            "GROUP BY g.grp ORDER BY g.grp NULLS LAST",
            pairs_params,
        )
        groups = cursor.fetchall()
        cursor.execute(f"SELECT {_SUMS} FROM {_incident} i WHERE i.id IN ({matching_sql})", matching_params)
        total = cursor.fetchone()
    return {
        "group_by": group_by,
        "results": [
            {"group": group, "label": _label(group_by, group, label), **_figures(figures)}
            for group, label, *figures in groups
        ],
        "total": _figures(total),
    }


def _label(group_by: str, group: str | None, label: str | None) -> str:
    if group is None:
        return "Not recorded"
    if group_by == "country":
        return countries.name(group) or group
    return label or group
