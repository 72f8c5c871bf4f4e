import importlib

from django.db import migrations

# Counting every incident into empty totals (a demo load into an empty or smaller database, a
# recount) through the count every edit runs took 338 of PostgreSQL's 679 CPU-seconds of a
# 1,000,000-incident demo load: its 2.65 million statistics' cells and 4.29 million facets' totals
# went through `INSERT … ON CONFLICT`, each probing and growing a unique index of 11 or 12 columns,
# after grouping the cells by sorting them (the planner expects ten elements per unnested array, so
# it judges a hash table too large): at 200,000 incidents 56 CPU-seconds, of which about 40 the
# sorts (the facets' on disk) and the inserts through the unique indexes.
#
# `incident_rollup_count_into_empty` is that count (0031's, which last replaced it), edited only
# where empty totals make a step idle: nothing is there to conflict with, so it inserts without
# `ON CONFLICT` (and so without the key order kept for the locks of concurrent counts) and deletes
# no emptied totals (every cell counts at least one incident once); it groups by hashing
# (`enable_sort = off` for the function alone). It refuses to run unless the totals and the
# entries are empty. Into tables whose unique keys are dropped meanwhile and built after (as the
# demo generator does), 19-24 CPU-seconds at 200,000 incidents with those builds, instead of 50-56
# (`bench/bench_demo_data.py 200000`, bench/README.md).
#
# A migration that replaces `incident_rollup_count` must replace this function the same way:
# tests/test_commands.py compares the totals of both on the same data.
_COUNT = importlib.import_module("incidents.migrations.0031_statistics_perpetrator_within_country").COUNT_AFTER
_FACETS = importlib.import_module("incidents.migrations.0029_facet_totals")

_EMPTY_ONLY = """CREATE OR REPLACE FUNCTION incident_rollup_count_into_empty(incident_ids bigint[]) RETURNS void
LANGUAGE plpgsql SET enable_sort = off AS $$
BEGIN
    IF EXISTS (SELECT FROM incidents_incidentrollupentry) OR EXISTS (SELECT FROM incidents_incidentrollup)
       OR EXISTS (SELECT FROM incidents_incidentfacettotal) THEN
        RAISE EXCEPTION 'incident_rollup_count_into_empty counts into empty totals only: use incident_rollup_count';
    END IF;
"""
_ENTRIES_UPDATED = """
        ON CONFLICT (incident_id) DO UPDATE SET
            start_month = excluded.start_month, end_month = excluded.end_month,
            incident_type_id = excluded.incident_type_id, verification = excluded.verification,
            review_state = excluded.review_state, confidential = excluded.confidential,
            people_count = excluded.people_count, people_count_min = excluded.people_count_min,
            people_count_max = excluded.people_count_max, countries = excluded.countries,
            perpetrators = excluded.perpetrators, places = excluded.places
"""
_CELLS_ADDED = """
    -- In the key's order, so that transactions updating the same totals lock them in one order.
    ORDER BY start_month, end_month, incident_type_id, verification, review_state, confidential,
             dimension, country, within_country, organization_id, place_id
    ON CONFLICT (start_month, end_month, incident_type_id, verification, review_state, confidential,
                 dimension, country, within_country, organization_id, place_id) DO UPDATE SET
        incidents = cell.incidents + excluded.incidents,
        people_count = cell.people_count + excluded.people_count,
        people_count_known = cell.people_count_known + excluded.people_count_known,
        people_count_min = cell.people_count_min + excluded.people_count_min,
        people_count_min_known = cell.people_count_min_known + excluded.people_count_min_known,
        people_count_max = cell.people_count_max + excluded.people_count_max,
        people_count_max_known = cell.people_count_max_known + excluded.people_count_max_known;
"""
_EMPTIED_DELETED = """
    DELETE FROM incidents_incidentrollup WHERE incidents = 0;
    DELETE FROM incidents_incidentfacettotal WHERE incidents = 0;
"""
EDITS = [
    (
        "CREATE OR REPLACE FUNCTION incident_rollup_count(incident_ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$\n"
        "BEGIN\n",
        _EMPTY_ONLY,
    ),
    (_FACETS.ADD_FACET_DELTAS, _FACETS.INSERT_FACET_DELTAS),
    (_ENTRIES_UPDATED, "\n"),
    (_CELLS_ADDED, ";\n"),
    (_EMPTIED_DELETED, "\n"),
]


def _edited(text: str, edits: list[tuple[str, str]]) -> str:
    for old, new in edits:
        if text.count(old) != 1:
            raise ValueError(f"Migration 0031's count changed: {old[:60]!r}… is not found once.")
        text = text.replace(old, new)
    return text


COUNT_INTO_EMPTY = _edited(_COUNT, EDITS)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0035_search_texts_in_a_fixed_order"),
    ]

    operations = [
        migrations.RunSQL(
            COUNT_INTO_EMPTY, reverse_sql="DROP FUNCTION incident_rollup_count_into_empty(incident_ids bigint[]);"
        ),
    ]
