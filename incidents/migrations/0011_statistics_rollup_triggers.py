from django.db import migrations

# How `incidents_incidentrollup` is kept equal to the incidents, in the transaction that changes them:
#
# 1. Statement triggers on the incidents, their place links, their involvements and the places
#    (a change of country) note the ids of the incidents a statement touched in
#    `incidents_rollup_pending`, and that the transaction has some in `incidents_rollup_commit`.
# 2. When the transaction commits, a deferred constraint trigger on `incidents_rollup_commit`
#    (once per transaction) counts each noted incident again: the totals take away what
#    `incidents_incidentrollupentry` says they counted for it and add what it is now. So a change
#    costs in proportion to the incidents it touches, whatever the size of the database.
#
# Concurrent transactions: the count first locks the entries of its incidents, in id order, so a
# transaction counting an incident another is counting waits for it to commit and then, in READ
# COMMITTED, reads after it. Totals are added to, never recomputed, so transactions counting
# different incidents of the same totals need not wait for each other except to update a row, in
# the totals' key order (no deadlock). Under REPEATABLE READ the waiting one could not read after
# the other, so the count refuses to run there.
#
# Triggers by hand, not pgtrigger: a deferred constraint trigger on a table Django does not model,
# and statement triggers with transition tables sharing functions, are beyond what it declares.
ROLLUP_SQL = """
CREATE UNLOGGED TABLE incidents_rollup_pending (
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    incident_id bigint NOT NULL,
    PRIMARY KEY (transaction_id, incident_id)
);
CREATE UNLOGGED TABLE incidents_rollup_commit (
    transaction_id xid8 PRIMARY KEY DEFAULT pg_current_xact_id()
);

CREATE FUNCTION incident_rollup_mark(incident_ids bigint[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO incidents_rollup_pending (incident_id)
    SELECT DISTINCT touched.id FROM unnest(incident_ids) AS touched(id) WHERE touched.id IS NOT NULL
    ON CONFLICT DO NOTHING;
    INSERT INTO incidents_rollup_commit SELECT WHERE cardinality(incident_ids) > 0 ON CONFLICT DO NOTHING;
$$;

CREATE FUNCTION incident_rollup_count(incident_ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
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
               ) AS perpetrators
        FROM incidents_incident AS incident
        WHERE incident.id = ANY (incident_ids)
    ), changes AS (
        SELECT 1 AS sign, * FROM counted_now
        UNION ALL
        SELECT -1, incident_id, start_month, end_month, incident_type_id, verification, review_state, confidential,
               people_count, people_count_min, people_count_max, countries, perpetrators
        FROM incidents_incidentrollupentry WHERE incident_id = ANY (incident_ids)
    ), cells AS (
        SELECT changes.*, 'incident' AS dimension, '' AS country, '' AS within_country, NULL::bigint AS organization_id
        FROM changes
        UNION ALL
        -- An incident without a place with a country counts as in no country (blank), as in the
        -- statistics' query over the incidents.
        SELECT changes.*, 'country', grouped.country, within.country, NULL
        FROM changes,
             unnest(CASE WHEN changes.countries = '{}' THEN '{""}' ELSE changes.countries END) AS within(country),
             unnest(CASE WHEN changes.countries = '{}' THEN '{""}' ELSE changes.countries END) AS grouped(country)
        UNION ALL
        SELECT changes.*, 'perpetrator', '', '', perpetrator.id
        FROM changes,
             unnest(CASE WHEN changes.perpetrators = '{}' THEN '{NULL}' ELSE changes.perpetrators END) AS perpetrator(id)
    ), deltas AS (
        SELECT start_month, end_month, incident_type_id, verification, review_state, confidential,
               dimension, country, within_country, organization_id,
               sum(sign) AS incidents,
               coalesce(sum(sign * people_count), 0) AS people_count,
               coalesce(sum(sign) FILTER (WHERE people_count IS NOT NULL), 0) AS people_count_known,
               coalesce(sum(sign * people_count_min), 0) AS people_count_min,
               coalesce(sum(sign) FILTER (WHERE people_count_min IS NOT NULL), 0) AS people_count_min_known,
               coalesce(sum(sign * people_count_max), 0) AS people_count_max,
               coalesce(sum(sign) FILTER (WHERE people_count_max IS NOT NULL), 0) AS people_count_max_known
        FROM cells
        GROUP BY start_month, end_month, incident_type_id, verification, review_state, confidential,
                 dimension, country, within_country, organization_id
    ), entries_gone AS (
        DELETE FROM incidents_incidentrollupentry AS entry
        WHERE entry.incident_id = ANY (incident_ids)
          AND NOT EXISTS (SELECT FROM counted_now WHERE counted_now.incident_id = entry.incident_id)
    ), entries AS (
        INSERT INTO incidents_incidentrollupentry AS entry
        SELECT * FROM counted_now
        ON CONFLICT (incident_id) DO UPDATE SET
            start_month = excluded.start_month, end_month = excluded.end_month,
            incident_type_id = excluded.incident_type_id, verification = excluded.verification,
            review_state = excluded.review_state, confidential = excluded.confidential,
            people_count = excluded.people_count, people_count_min = excluded.people_count_min,
            people_count_max = excluded.people_count_max, countries = excluded.countries,
            perpetrators = excluded.perpetrators
    )
    INSERT INTO incidents_incidentrollup AS cell (
        start_month, end_month, incident_type_id, verification, review_state, confidential,
        dimension, country, within_country, organization_id, incidents,
        people_count, people_count_known, people_count_min, people_count_min_known,
        people_count_max, people_count_max_known
    )
    SELECT * FROM deltas
    WHERE (incidents, people_count, people_count_known, people_count_min, people_count_min_known,
           people_count_max, people_count_max_known) <> (0, 0, 0, 0, 0, 0, 0)
    -- In the key's order, so that transactions updating the same totals lock them in one order.
    ORDER BY start_month, end_month, incident_type_id, verification, review_state, confidential,
             dimension, country, within_country, organization_id
    ON CONFLICT (start_month, end_month, incident_type_id, verification, review_state, confidential,
                 dimension, country, within_country, organization_id) DO UPDATE SET
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

CREATE FUNCTION incident_rollup_count_pending() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    incident_ids bigint[];
BEGIN
    DELETE FROM incidents_rollup_commit WHERE transaction_id = pg_current_xact_id();
    WITH taken AS (
        DELETE FROM incidents_rollup_pending WHERE transaction_id = pg_current_xact_id() RETURNING incident_id
    )
    SELECT array_agg(incident_id) INTO incident_ids FROM taken;
    IF incident_ids IS NOT NULL THEN
        PERFORM incident_rollup_count(incident_ids);
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER incident_rollup_count AFTER INSERT ON incidents_rollup_commit
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION incident_rollup_count_pending();

CREATE FUNCTION incident_rollup_mark_incidents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM incident_rollup_mark(ARRAY(SELECT id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM incident_rollup_mark(ARRAY(SELECT id FROM old_rows));
    ELSE
        -- Only changes of what the totals count: editing a title counts nothing again.
        PERFORM incident_rollup_mark(ARRAY(
            SELECT id
            FROM old_rows AS before
            JOIN new_rows AS after USING (id)
            WHERE (before.date_start, before.date_end, before.incident_type_id, before.verification,
                   before.review_state, before.confidential, before.people_count, before.people_count_min,
                   before.people_count_max)
                IS DISTINCT FROM (after.date_start, after.date_end, after.incident_type_id, after.verification,
                   after.review_state, after.confidential, after.people_count, after.people_count_min,
                   after.people_count_max)
        ));
    END IF;
    RETURN NULL;
END
$$;

-- For place links and involvements: the incidents whose rows changed.
CREATE FUNCTION incident_rollup_mark_linked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM incident_rollup_mark(ARRAY(SELECT incident_id FROM new_rows));
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM incident_rollup_mark(ARRAY(SELECT incident_id FROM old_rows));
    END IF;
    RETURN NULL;
END
$$;

-- A place moved to another country moves its incidents' country totals. (A place with incidents
-- cannot be deleted: its links protect it.)
CREATE FUNCTION incident_rollup_mark_places() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM incident_rollup_mark(ARRAY(
        SELECT link.incident_id
        FROM old_rows AS before
        JOIN new_rows AS after USING (id)
        JOIN incidents_incidentplace AS link ON link.place_id = after.id
        WHERE before.country IS DISTINCT FROM after.country
    ));
    RETURN NULL;
END
$$;
"""

TRIGGERS = [
    ("incidents_incident", "incident_rollup_mark_incidents", ("INSERT", "UPDATE", "DELETE")),
    ("incidents_incidentplace", "incident_rollup_mark_linked", ("INSERT", "UPDATE", "DELETE")),
    ("incidents_involvement", "incident_rollup_mark_linked", ("INSERT", "UPDATE", "DELETE")),
    ("incidents_place", "incident_rollup_mark_places", ("UPDATE",)),
]
TRANSITION_TABLES = {
    "INSERT": "NEW TABLE AS new_rows",
    "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "DELETE": "OLD TABLE AS old_rows",
}


def trigger_name(table: str, event: str) -> str:
    return f"{table}_rollup_{event.lower()}"


CREATE_TRIGGERS = "\n".join(
    f"CREATE TRIGGER {trigger_name(table, event)} AFTER {event} ON {table} "
    f"REFERENCING {TRANSITION_TABLES[event]} FOR EACH STATEMENT EXECUTE FUNCTION {function}();"
    for table, function, events in TRIGGERS
    for event in events
)
DROP_TRIGGERS = "\n".join(
    f"DROP TRIGGER {trigger_name(table, event)} ON {table};" for table, _, events in TRIGGERS for event in events
)

# Count the incidents already there.
COUNT_EXISTING = "SELECT incident_rollup_count(ARRAY(SELECT id FROM incidents_incident));"

DROP_ROLLUP_SQL = """
DROP FUNCTION incident_rollup_mark_places();
DROP FUNCTION incident_rollup_mark_linked();
DROP FUNCTION incident_rollup_mark_incidents();
DROP TABLE incidents_rollup_commit;
DROP TABLE incidents_rollup_pending;
DROP FUNCTION incident_rollup_count_pending();
DROP FUNCTION incident_rollup_count(bigint[]);
DROP FUNCTION incident_rollup_mark(bigint[]);
"""


class Migration(migrations.Migration):
    # The totals' unique constraint, which their updates rely on, exists once 0010 has committed.
    dependencies = [("incidents", "0010_statistics_rollup")]

    operations = [
        migrations.RunSQL(ROLLUP_SQL + CREATE_TRIGGERS + COUNT_EXISTING, reverse_sql=DROP_TRIGGERS + DROP_ROLLUP_SQL),
    ]
