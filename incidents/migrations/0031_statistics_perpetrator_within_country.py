import importlib

from django.db import migrations, models

# The statistics by perpetrator of one country (`group_by=perpetrator&country=CN`) were the one
# grouping of a country filter that the kept totals did not answer: the incidents themselves were
# grouped instead, 1-2 s at a million incidents, and under the load test the statistics' p99 was
# that query's. Now the count keeps each perpetrator (or none) also within each country of the
# incident (`within_country`), as the country totals keep each country within each other; the
# perpetrator totals over all incidents are those within no country (blank), as before. Only the
# count's cells change, so the function is read from 0029 (which last replaced it) and edited.
_COUNT_BEFORE = importlib.import_module("incidents.migrations.0029_facet_totals").COUNT_AFTER

_PERPETRATORS = """        SELECT changes.*, 'perpetrator', '', '', perpetrator.id, NULL
        FROM changes,
             unnest(CASE WHEN changes.perpetrators = '{}' THEN '{NULL}' ELSE changes.perpetrators END) AS perpetrator(id)
"""
# An incident in no country (blank) is in no country's totals: no filter chooses "no country".
_PERPETRATORS_WITHIN_COUNTRIES = """        UNION ALL
        SELECT changes.*, 'perpetrator', '', within.country, perpetrator.id, NULL
        FROM changes,
             unnest(array_remove(changes.countries, '')) AS within(country),
             unnest(CASE WHEN changes.perpetrators = '{}' THEN '{NULL}' ELSE changes.perpetrators END) AS perpetrator(id)
"""
if _COUNT_BEFORE.count(_PERPETRATORS) != 1:
    raise ValueError("Migration 0029's count changed: its perpetrator cells are not found once.")
COUNT_AFTER = _COUNT_BEFORE.replace(_PERPETRATORS, _PERPETRATORS + _PERPETRATORS_WITHIN_COUNTRIES)

# The incidents already counted, from what each counted as (its entry): no need to count them again.
# Changes made meanwhile wait for this migration to commit to be counted.
COUNT_EXISTING = """
LOCK TABLE incidents_incidentrollupentry IN SHARE MODE;
SET LOCAL work_mem = '256MB';
INSERT INTO incidents_incidentrollup (
    start_month, end_month, incident_type_id, verification, review_state, confidential,
    dimension, country, within_country, organization_id, place_id, incidents,
    people_count, people_count_known, people_count_min, people_count_min_known,
    people_count_max, people_count_max_known
)
SELECT start_month, end_month, incident_type_id, verification, review_state, confidential,
       'perpetrator', '', within.country, perpetrator.id, NULL, count(*),
       coalesce(sum(people_count), 0), count(people_count),
       coalesce(sum(people_count_min), 0), count(people_count_min),
       coalesce(sum(people_count_max), 0), count(people_count_max)
FROM incidents_incidentrollupentry AS entry,
     unnest(array_remove(entry.countries, '')) AS within(country),
     unnest(CASE WHEN entry.perpetrators = '{}' THEN '{NULL}' ELSE entry.perpetrators END) AS perpetrator(id)
GROUP BY start_month, end_month, incident_type_id, verification, review_state, confidential, within.country,
         perpetrator.id;
"""
REMOVE_COUNTED = "DELETE FROM incidents_incidentrollup WHERE dimension = 'perpetrator' AND within_country <> '';"


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0030_export_rows_filters_and_record"),
    ]

    operations = [
        migrations.RunSQL(COUNT_AFTER + COUNT_EXISTING, reverse_sql=_COUNT_BEFORE + REMOVE_COUNTED),
        # The perpetrator totals are read within no country or within one: that column first.
        migrations.RemoveIndex(model_name="incidentrollup", name="incident_rollup_by_perpetrator"),
        migrations.AddIndex(
            model_name="incidentrollup",
            index=models.Index(
                condition=models.Q(("dimension", "perpetrator")),
                fields=["within_country", "review_state", "confidential", "organization"],
                include=(
                    "start_month",
                    "end_month",
                    "incident_type",
                    "verification",
                    "incidents",
                    "people_count",
                    "people_count_known",
                    "people_count_min",
                    "people_count_min_known",
                    "people_count_max",
                    "people_count_max_known",
                ),
                name="incident_rollup_by_perpetrator",
            ),
        ),
    ]
