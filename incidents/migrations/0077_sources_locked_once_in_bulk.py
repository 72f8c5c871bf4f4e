"""Writers in bulk lock the sources their claims cite once, not claim by claim. `lock_source`, the
claims' row trigger that share-locks a new claim's source and every source up its `cites` (so that
the kept export rows and search words read a source that a concurrent write cannot make
confidential meanwhile: migrations 0032, 0047), stayed on in bulk: an import of 100,000 incidents
with two claims each ran it 200,000 times, a locking query or more each, for 50 sources (8.5 of the
19.8 s of inserting 200,000 claims, `EXPLAIN ANALYZE` on a busy machine; bench/README.md). It is
now off in bulk like the other row triggers that lock what a link refers to (migration 0050), and
the bulk writers call `incident_sources_lock` once every claim is written, before
`incident_links_lock` reads the sources' publishers and before their kept rows are made.

`incident_sources_lock` (migrations 0052, 0069) read each source's whole chain in one statement
and then locked it: a source whose `cites` another transaction changed meanwhile was locked, but
the source it now cites was not, where `lock_source` reads `cites` under the lock. It now locks the
chains step by step, as `lock_source` does: each step's sources are locked, then what they cite is
read, in a statement of its own that sees the change committed, and locked in turn (a merge, which
calls it too, locks as the triggers do). A loop ends at a source already locked."""

import importlib

import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations

_SOURCES_LOCK_OF_0069 = importlib.import_module("incidents.migrations.0069_source_origin_whole_chain").SOURCES_LOCK

SOURCES_LOCK = """
CREATE OR REPLACE FUNCTION incident_sources_lock(incident_ids bigint[]) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    step bigint[];
    locked bigint[] := '{}';
BEGIN
    step := ARRAY(
        SELECT DISTINCT claim.source_id FROM incidents_claim AS claim WHERE claim.incident_id = ANY (incident_ids)
    );
    WHILE cardinality(step) > 0 LOOP
        -- PERFORM reads every row (a SQL function's last SELECT would stop at the first).
        PERFORM FROM incidents_source AS source WHERE source.id = ANY (step) ORDER BY source.id FOR SHARE;
        locked := locked || step;
        -- Read once locked, in a statement of its own: what they cite as committed, which stays.
        step := ARRAY(
            SELECT DISTINCT source.cites_id FROM incidents_source AS source
            WHERE source.id = ANY (step) AND source.cites_id IS NOT NULL
              AND source.cites_id NOT IN (SELECT unnest(locked))
        );
    END LOOP;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0076_duplicate_queue_in_score_order"),
    ]

    operations = [
        migrations.RunSQL(SOURCES_LOCK, reverse_sql=_SOURCES_LOCK_OF_0069),
        pgtrigger.migrations.RemoveTrigger(
            model_name="claim",
            name="lock_source",
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="claim",
            trigger=pgtrigger.compiler.Trigger(
                name="lock_source",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN (current_setting('tracker.insert_triggers_off', true) IS DISTINCT FROM 'on')",
                    declare="DECLARE cited bigint; kept bigint; steps integer := 0; next_keep integer := 1;",
                    func="\n                IF TG_OP = 'UPDATE' AND NEW.source_id = OLD.source_id THEN\n                    RETURN NEW;\n                END IF;\n                kept := NEW.source_id;\n                SELECT cites_id INTO cited FROM incidents_source WHERE id = NEW.source_id FOR SHARE;\n                WHILE cited IS NOT NULL AND cited <> kept LOOP\n                    steps := steps + 1;\n                    IF steps = next_keep THEN\n                        kept := cited;\n                        steps := 0;\n                        next_keep := next_keep * 2;\n                    END IF;\n                    SELECT cites_id INTO cited FROM incidents_source WHERE id = cited FOR SHARE;\n                END LOOP;\n                RETURN NEW;\n                ",
                    hash="ff71d7789fb157a032963ebf64053c0877ea33be",
                    operation='INSERT OR UPDATE OF "source_id"',
                    pgid="pgtrigger_lock_source_811a2",
                    table="incidents_claim",
                    when="BEFORE",
                ),
            ),
        ),
    ]
