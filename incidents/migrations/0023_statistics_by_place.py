import importlib
import re

import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models

# The kept totals (migration 0011) also per place, for the public pages' place facet and the place
# filter: each incident counts once at each of its places and at every place that contains one
# (a city's incident also counts in its province and its country), so a place's total is what
# the place filter selects (the place and everything inside it). The count of an incident and the
# places' trigger are replaced; the rest of 0011 stays as it is.
COUNT_SQL = """
CREATE OR REPLACE FUNCTION incident_rollup_count(incident_ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'incident statistics are kept by READ COMMITTED transactions only, not %',
            current_setting('transaction_isolation');
    END IF;
    PERFORM FROM incidents_incidentrollupentry WHERE incident_id = ANY (incident_ids)
        ORDER BY incident_id FOR UPDATE;

    WITH counted_now AS (
        SELECT incident.id AS incident_id,
               date_trunc('month', incident.date_start)::date AS start_month,
               date_trunc('month', incident.date_end)::date AS end_month,
               incident.incident_type_id, incident.verification, incident.review_state, incident.confidential,
               incident.people_count,
               coalesce(incident.people_count_min, incident.people_count) AS people_count_min,
               coalesce(incident.people_count_max, incident.people_count) AS people_count_max,
               -- Each country once, however many of its places lie in it; blank for a place without one.
               ARRAY(
                   SELECT DISTINCT place.country FROM incidents_incidentplace AS link
                   JOIN incidents_place AS place ON place.id = link.place_id
                   WHERE link.incident_id = incident.id
               ) AS countries,
               -- Each perpetrator once: the involvement's unique constraint covers the role.
               ARRAY(
                   SELECT involvement.organization_id FROM incidents_involvement AS involvement
                   WHERE involvement.incident_id = incident.id AND involvement.role = 'perpetrator'
               ) AS perpetrators,
               -- Its places and the places containing them, each once (UNION also stops at a cycle).
               ARRAY(
                   WITH RECURSIVE around(id, parent_id) AS (
                       SELECT place.id, place.parent_id FROM incidents_incidentplace AS link
                       JOIN incidents_place AS place ON place.id = link.place_id
                       WHERE link.incident_id = incident.id
                       UNION
                       SELECT parent.id, parent.parent_id FROM incidents_place AS parent
                       JOIN around ON parent.id = around.parent_id
                   )
                   SELECT id FROM around ORDER BY id
               ) AS places
        FROM incidents_incident AS incident
        -- Merged incidents are left out, as every read does (migration 0020).
        WHERE incident.id = ANY (incident_ids) AND incident.merged_into_id IS NULL
    ), changes AS (
        SELECT 1 AS sign, * FROM counted_now
        UNION ALL
        SELECT -1, incident_id, start_month, end_month, incident_type_id, verification, review_state, confidential,
               people_count, people_count_min, people_count_max, countries, perpetrators, places
        FROM incidents_incidentrollupentry WHERE incident_id = ANY (incident_ids)
    ), cells AS (
        SELECT changes.*, 'incident' AS dimension, '' AS country, '' AS within_country,
               NULL::bigint AS organization_id, NULL::bigint AS place_id
        FROM changes
        UNION ALL
        -- An incident without a place with a country counts as in no country (blank), as in the
        -- statistics' query over the incidents.
        SELECT changes.*, 'country', grouped.country, within.country, NULL, NULL
        FROM changes,
             unnest(CASE WHEN changes.countries = '{}' THEN '{""}' ELSE changes.countries END) AS within(country),
             unnest(CASE WHEN changes.countries = '{}' THEN '{""}' ELSE changes.countries END) AS grouped(country)
        UNION ALL
        SELECT changes.*, 'perpetrator', '', '', perpetrator.id, NULL
        FROM changes,
             unnest(CASE WHEN changes.perpetrators = '{}' THEN '{NULL}' ELSE changes.perpetrators END) AS perpetrator(id)
        UNION ALL
        -- An incident without a place is in no place's total.
        SELECT changes.*, 'place', '', '', NULL, place.id
        FROM changes, unnest(changes.places) AS place(id)
    ), deltas AS (
        SELECT start_month, end_month, incident_type_id, verification, review_state, confidential,
               dimension, country, within_country, organization_id, place_id,
               sum(sign) AS incidents,
               coalesce(sum(sign * people_count), 0) AS people_count,
               coalesce(sum(sign) FILTER (WHERE people_count IS NOT NULL), 0) AS people_count_known,
               coalesce(sum(sign * people_count_min), 0) AS people_count_min,
               coalesce(sum(sign) FILTER (WHERE people_count_min IS NOT NULL), 0) AS people_count_min_known,
               coalesce(sum(sign * people_count_max), 0) AS people_count_max,
               coalesce(sum(sign) FILTER (WHERE people_count_max IS NOT NULL), 0) AS people_count_max_known
        FROM cells
        GROUP BY start_month, end_month, incident_type_id, verification, review_state, confidential,
                 dimension, country, within_country, organization_id, place_id
    ), entries_gone AS (
        DELETE FROM incidents_incidentrollupentry AS entry
        WHERE entry.incident_id = ANY (incident_ids)
          AND NOT EXISTS (SELECT FROM counted_now WHERE counted_now.incident_id = entry.incident_id)
    ), entries AS (
        INSERT INTO incidents_incidentrollupentry AS entry (
            incident_id, start_month, end_month, incident_type_id, verification, review_state, confidential,
            people_count, people_count_min, people_count_max, countries, perpetrators, places
        )
        SELECT * FROM counted_now
        ON CONFLICT (incident_id) DO UPDATE SET
            start_month = excluded.start_month, end_month = excluded.end_month,
            incident_type_id = excluded.incident_type_id, verification = excluded.verification,
            review_state = excluded.review_state, confidential = excluded.confidential,
            people_count = excluded.people_count, people_count_min = excluded.people_count_min,
            people_count_max = excluded.people_count_max, countries = excluded.countries,
            perpetrators = excluded.perpetrators, places = excluded.places
    )
    INSERT INTO incidents_incidentrollup AS cell (
        start_month, end_month, incident_type_id, verification, review_state, confidential,
        dimension, country, within_country, organization_id, place_id, incidents,
        people_count, people_count_known, people_count_min, people_count_min_known,
        people_count_max, people_count_max_known
    )
    SELECT * FROM deltas
    WHERE (incidents, people_count, people_count_known, people_count_min, people_count_min_known,
           people_count_max, people_count_max_known) <> (0, 0, 0, 0, 0, 0, 0)
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

    DELETE FROM incidents_incidentrollup WHERE incidents = 0;
END
$$;

-- A place moved to another country moves its incidents' country totals; a place moved into
-- another place moves the place totals of its incidents and of every place inside it.
CREATE OR REPLACE FUNCTION incident_rollup_mark_places() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM incident_rollup_mark(ARRAY(
        SELECT link.incident_id
        FROM old_rows AS before
        JOIN new_rows AS after USING (id)
        JOIN incidents_incidentplace AS link ON link.place_id = after.id
        WHERE before.country IS DISTINCT FROM after.country
        UNION
        SELECT link.incident_id
        FROM (
            WITH RECURSIVE moved(id) AS (
                SELECT after.id FROM old_rows AS before JOIN new_rows AS after USING (id)
                WHERE before.parent_id IS DISTINCT FROM after.parent_id
                UNION
                SELECT inside.id FROM incidents_place AS inside JOIN moved ON inside.parent_id = moved.id
            )
            SELECT id FROM moved
        ) AS moved
        JOIN incidents_incidentplace AS link ON link.place_id = moved.id
    ));
    RETURN NULL;
END
$$;

-- Count every incident anew, now with its places.
TRUNCATE incidents_incidentrollup, incidents_incidentrollupentry;
SELECT incident_rollup_count(ARRAY(SELECT id FROM incidents_incident));
"""


def _functions_before() -> str:
    """Going back: the count as migration 0020 left it, 0011's trigger on places, and the totals
    without places."""
    merges = importlib.import_module("incidents.migrations.0020_incident_merges")
    rollup_sql = importlib.import_module("incidents.migrations.0011_statistics_rollup_triggers").ROLLUP_SQL
    mark_places = re.search(r"CREATE FUNCTION incident_rollup_mark_places\(.*?\n\$\$;\n", rollup_sql, re.DOTALL)[0]
    return (
        "DELETE FROM incidents_incidentrollup WHERE dimension = 'place';\n"
        + merges.COUNT_AFTER
        + "\n"
        + mark_places.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0021_duplicate_date_span"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="incidentrollup",
            name="incident_rollup_cell",
        ),
        migrations.AddField(
            model_name="incidentrollup",
            name="place",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="incidents.place",
            ),
        ),
        migrations.AddField(
            model_name="incidentrollupentry",
            name="places",
            field=django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), default=list),
        ),
        migrations.AlterField(
            model_name="incidentrollup",
            name="dimension",
            field=models.CharField(
                choices=[
                    ("incident", "Incident"),
                    ("country", "Country"),
                    ("perpetrator", "Perpetrator"),
                    ("place", "Place"),
                ],
                max_length=12,
            ),
        ),
        migrations.AddIndex(
            model_name="incidentrollup",
            index=models.Index(
                condition=models.Q(("dimension", "place")),
                fields=["review_state", "confidential", "place"],
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
                name="incident_rollup_by_place",
            ),
        ),
        migrations.AddConstraint(
            model_name="incidentrollup",
            constraint=models.UniqueConstraint(
                fields=(
                    "start_month",
                    "end_month",
                    "incident_type",
                    "verification",
                    "review_state",
                    "confidential",
                    "dimension",
                    "country",
                    "within_country",
                    "organization",
                    "place",
                ),
                name="incident_rollup_cell",
                nulls_distinct=False,
            ),
        ),
        migrations.RunSQL(COUNT_SQL, reverse_sql=_functions_before()),
    ]
