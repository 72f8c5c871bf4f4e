import importlib
import re

from django.db import migrations

# The count of an incident into the kept totals (migration 0023) worked out each incident's
# countries, perpetrators and places with three subqueries per incident, one of them a recursive
# walk up the place tree. Per incident that walk hashed the whole place table at each level (the
# planner's choice for a handful of rows against a table of a few thousand), about 0.9 ms per
# incident: 900 s of a 1,000,000-incident demo load, and as much for a full recount. Here the same
# arrays come from one join per kind over all the incidents counted at once, and the walk starts
# from their places together, so its cost grows with the places rather than with the incidents.
# For the single incident an edit counts, the joins stay index lookups. The arrays hold the same
# values, sorted (the entries' arrays are only ever unnested), and the rest of the function is
# 0023's, unchanged.
_BEFORE = importlib.import_module("incidents.migrations.0023_statistics_by_place").COUNT_SQL
_FUNCTION_BEFORE = _BEFORE[: _BEFORE.index("-- A place moved")]

_COUNTED_NOW = """    WITH RECURSIVE linked AS (
        SELECT link.incident_id, link.place_id FROM incidents_incidentplace AS link
        WHERE link.incident_id = ANY (incident_ids)
    ), around(place_id, id, parent_id) AS (
        -- Each linked place, and the places containing it (UNION also stops at a cycle).
        SELECT place.id, place.id, place.parent_id FROM incidents_place AS place
        WHERE place.id IN (SELECT linked.place_id FROM linked)
        UNION
        SELECT around.place_id, parent.id, parent.parent_id FROM around
        JOIN incidents_place AS parent ON parent.id = around.parent_id
    ), countries AS (
        -- Each country once, however many of its places lie in it; blank for a place without one.
        SELECT linked.incident_id, array_agg(DISTINCT place.country) AS countries
        FROM linked JOIN incidents_place AS place ON place.id = linked.place_id
        GROUP BY linked.incident_id
    ), places AS (
        -- Its places and the places containing them, each once.
        SELECT linked.incident_id, array_agg(DISTINCT around.id) AS places
        FROM linked JOIN around ON around.place_id = linked.place_id
        GROUP BY linked.incident_id
    ), perpetrators AS (
        -- Each perpetrator once: the involvement's unique constraint covers the role.
        SELECT involvement.incident_id, array_agg(involvement.organization_id ORDER BY involvement.organization_id)
            AS perpetrators
        FROM incidents_involvement AS involvement
        WHERE involvement.incident_id = ANY (incident_ids) AND involvement.role = 'perpetrator'
        GROUP BY involvement.incident_id
    ), counted_now AS (
        SELECT incident.id AS incident_id,
               date_trunc('month', incident.date_start)::date AS start_month,
               date_trunc('month', incident.date_end)::date AS end_month,
               incident.incident_type_id, incident.verification, incident.review_state, incident.confidential,
               incident.people_count,
               coalesce(incident.people_count_min, incident.people_count) AS people_count_min,
               coalesce(incident.people_count_max, incident.people_count) AS people_count_max,
               coalesce(countries.countries, '{}') AS countries,
               coalesce(perpetrators.perpetrators, '{}') AS perpetrators,
               coalesce(places.places, '{}') AS places
        FROM incidents_incident AS incident
        LEFT JOIN countries ON countries.incident_id = incident.id
        LEFT JOIN perpetrators ON perpetrators.incident_id = incident.id
        LEFT JOIN places ON places.incident_id = incident.id
        -- Merged incidents are left out, as every read does (migration 0020).
        WHERE incident.id = ANY (incident_ids) AND incident.merged_into_id IS NULL
    ), changes AS ("""

COUNT_SQL, _replaced = re.subn(
    r"    WITH counted_now AS \(\n.*?\n    \), changes AS \(", lambda _: _COUNTED_NOW, _FUNCTION_BEFORE, flags=re.DOTALL
)
assert _replaced == 1, "migration 0023's count no longer has the expected shape"

# The search words (migration 0016): the planner flattened the subquery that computes an incident's
# words once into both columns that use them, so each incident's texts were put together and
# parsed twice (to_tsvector is most of the cost: 6.3 CPU-seconds per 50,000 incidents, 4.2 with the
# words computed once). OFFSET 0 keeps the subquery whole; the words are the same.
_REFRESH_BEFORE = re.search(
    r"CREATE FUNCTION incident_search_refresh\(.*?\n\$\$;\n",
    importlib.import_module("incidents.migrations.0016_one_search").SEARCH_SQL,
    re.DOTALL,
)[0].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
_WORDS_ONCE = "(SELECT to_tsvector('simple', texts.disclosed) AS disclosed) AS words"
assert _WORDS_ONCE in _REFRESH_BEFORE, "migration 0016's search words no longer have the expected shape"
REFRESH_SQL = _REFRESH_BEFORE.replace(_WORDS_ONCE, _WORDS_ONCE.replace(" AS disclosed)", " AS disclosed OFFSET 0)"))


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0024_access_from_public_pages"),
    ]

    operations = [
        migrations.RunSQL(COUNT_SQL, reverse_sql=_FUNCTION_BEFORE),
        migrations.RunSQL(REFRESH_SQL, reverse_sql=_REFRESH_BEFORE),
    ]
