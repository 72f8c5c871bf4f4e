import importlib

from django.db import migrations

# A perpetrator's statistics grouped by country (`group_by=country&perpetrator=N`) were counted from
# the incidents: for the largest perpetrator at a million incidents, longer than an anonymous
# reader's bound (a 503). The kept totals held each perpetrator within each country of its
# incidents (migration 0031) but not within none, so the "no country" group (incidents without a
# place with a country, or at a place without one, as the country statistics count them) could
# not be told. The count now also keeps each perpetrator (or none) within no country, as
# `within_country` '-', which no country code can be; the perpetrator totals over all incidents
# stay those within blank. Only the cells change: both counts are read from the migrations that
# last replaced them (0031, 0036) and edited.
_COUNT_BEFORE = importlib.import_module("incidents.migrations.0031_statistics_perpetrator_within_country").COUNT_AFTER
_INTO_EMPTY_BEFORE = importlib.import_module("incidents.migrations.0036_count_totals_in_bulk").COUNT_INTO_EMPTY

NO_COUNTRY = "-"
_WITHIN_COUNTRIES = "             unnest(array_remove(changes.countries, '')) AS within(country),\n"
_WITHIN_COUNTRIES_OR_NONE = (
    "             unnest(array_replace(CASE WHEN changes.countries = '{}' THEN '{\"\"}' ELSE changes.countries END,"
    f" '', '{NO_COUNTRY}')) AS within(country),\n"
)


def _edited(text: str) -> str:
    if text.count(_WITHIN_COUNTRIES) != 1:
        raise ValueError("The count changed: its perpetrator cells within a country are not found once.")
    return text.replace(_WITHIN_COUNTRIES, _WITHIN_COUNTRIES_OR_NONE)


COUNT_AFTER = _edited(_COUNT_BEFORE)
COUNT_INTO_EMPTY = _edited(_INTO_EMPTY_BEFORE)

# The incidents already counted, from what each counted as (its entry), as migration 0031 did.
# Changes made meanwhile wait for this migration to commit to be counted.
COUNT_EXISTING = f"""
LOCK TABLE incidents_incidentrollupentry IN SHARE MODE;
SET LOCAL work_mem = '256MB';
INSERT INTO incidents_incidentrollup (
    start_month, end_month, incident_type_id, verification, review_state, confidential,
    dimension, country, within_country, organization_id, place_id, incidents,
    people_count, people_count_known, people_count_min, people_count_min_known,
    people_count_max, people_count_max_known
)
SELECT start_month, end_month, incident_type_id, verification, review_state, confidential,
       'perpetrator', '', '{NO_COUNTRY}', perpetrator.id, NULL, count(*),
       coalesce(sum(people_count), 0), count(people_count),
       coalesce(sum(people_count_min), 0), count(people_count_min),
       coalesce(sum(people_count_max), 0), count(people_count_max)
FROM incidents_incidentrollupentry AS entry,
     unnest(CASE WHEN entry.perpetrators = '{{}}' THEN '{{NULL}}' ELSE entry.perpetrators END) AS perpetrator(id)
WHERE entry.countries = '{{}}' OR '' = ANY (entry.countries)
GROUP BY start_month, end_month, incident_type_id, verification, review_state, confidential, perpetrator.id;
"""
REMOVE_COUNTED = (
    f"DELETE FROM incidents_incidentrollup WHERE dimension = 'perpetrator' AND within_country = '{NO_COUNTRY}';"
)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0055_incident_history_copies_generated_columns"),
    ]

    operations = [
        migrations.RunSQL(
            COUNT_AFTER + COUNT_INTO_EMPTY + COUNT_EXISTING,
            reverse_sql=_COUNT_BEFORE + _INTO_EMPTY_BEFORE + REMOVE_COUNTED,
        ),
    ]
