"""A source's origin is the end of its whole `cites` chain, however long. `source_origin` (migrations
0018, 0051) stopped after 64 steps: the 65th relay of one report had the first relay for its origin,
so an incident with a claim of the report and one of that relay counted 2 independent origins where
there is one, in every count (API, public pages, statistics, `min_origins`, exports) and
in the duplicates' scores (kept until their pair is rescored), while the public page's citation chain (`_sources_cited_from`) shows it
to its end. The walk needs no limit: it ends at a source citing nothing, at one hidden from the
reader, or back at a source it walked (a loop, migration 0051). The locks that keep the counts
consistent with concurrent writes (`lock_source`, `incident_sources_lock`) follow the whole chain
too, and the kept counts of the incidents citing a source more than 64 steps from its origin are
made again."""

import importlib

import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations

_SOURCE_ORIGIN_OF_0051 = importlib.import_module("incidents.migrations.0051_source_origin_of_a_loop").SOURCE_ORIGIN

# The walk of 0018 without its limit. A loop is found as Brent's algorithm finds one, by a source
# kept at each power of two steps that the walk comes back to, rather than by every source walked
# kept in an array (0051) and searched at each step, which made a chain of 3,000 relays take three
# times as long (0.37 s against 0.11 s, on a busy machine). Once round the loop then names it by its lowest id, as 0051 does.
SOURCE_ORIGIN = """
CREATE OR REPLACE FUNCTION source_origin(start_id bigint, through_confidential boolean)
RETURNS bigint LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    current_id bigint := start_id;
    kept_id bigint := start_id;
    steps integer := 0;
    next_keep integer := 1;
    lowest bigint;
    cited record;
BEGIN
    LOOP
        SELECT source.id, source.confidential INTO cited
        FROM incidents_source citing JOIN incidents_source source ON source.id = citing.cites_id
        WHERE citing.id = current_id;
        EXIT WHEN NOT FOUND OR (cited.confidential AND NOT through_confidential);
        current_id := cited.id;
        IF current_id = kept_id THEN
            -- Every source of the loop was walked, and is seen by this reader: once round it.
            lowest := current_id;
            LOOP
                SELECT cites_id INTO current_id FROM incidents_source WHERE id = current_id;
                EXIT WHEN current_id = kept_id;
                lowest := least(lowest, current_id);
            END LOOP;
            RETURN lowest;
        END IF;
        steps := steps + 1;
        IF steps = next_keep THEN
            kept_id := current_id;
            steps := 0;
            next_keep := next_keep * 2;
        END IF;
    END LOOP;
    RETURN current_id;
END
$$;
"""

# As far up `cites` as `source_origin` walks, by id (UNION: a loop ends).
SOURCES_LOCK = """
CREATE OR REPLACE FUNCTION incident_sources_lock(incident_ids bigint[]) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- PERFORM reads every row (a SQL function's last SELECT would stop at the first).
    PERFORM FROM incidents_source AS source
    WHERE source.id IN (
        WITH RECURSIVE chain(id) AS (
            SELECT claim.source_id FROM incidents_claim AS claim WHERE claim.incident_id = ANY (incident_ids)
            UNION
            SELECT cited.cites_id FROM chain JOIN incidents_source AS cited ON cited.id = chain.id
            WHERE cited.cites_id IS NOT NULL
        )
        SELECT id FROM chain
    )
    ORDER BY source.id
    FOR SHARE OF source;
END
$$;
"""

SOURCES_LOCK_OF_0052 = """
CREATE OR REPLACE FUNCTION incident_sources_lock(incident_ids bigint[]) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM FROM incidents_source AS source
    WHERE source.id IN (
        WITH RECURSIVE chain(id, depth) AS (
            SELECT claim.source_id, 0 FROM incidents_claim AS claim
            WHERE claim.incident_id = ANY (incident_ids)
            UNION
            SELECT cited.cites_id, chain.depth + 1
            FROM chain JOIN incidents_source AS cited ON cited.id = chain.id
            WHERE cited.cites_id IS NOT NULL AND chain.depth < 64
        )
        SELECT id FROM chain
    )
    ORDER BY source.id
    FOR SHARE OF source;
END
$$;
"""

# The incidents with a claim of a source whose chain goes on past 64 steps (a loop's included,
# whose origins did not change: a few more rows made again, by a walk that ends at 65 steps).
REFRESH_LONG_CHAINS = """
SELECT incident_export_refresh(ARRAY(
    WITH RECURSIVE walk(start_id, id, depth) AS (
        SELECT id, cites_id, 1 FROM incidents_source WHERE cites_id IS NOT NULL
        UNION ALL
        SELECT walk.start_id, source.cites_id, walk.depth + 1
        FROM walk JOIN incidents_source AS source ON source.id = walk.id
        WHERE source.cites_id IS NOT NULL AND walk.depth <= 64
    )
    SELECT DISTINCT claim.incident_id FROM incidents_claim AS claim
    WHERE claim.source_id IN (SELECT start_id FROM walk WHERE depth = 65)
));
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0068_claim_source_connection_help"),
    ]

    operations = [
        migrations.RunSQL(SOURCE_ORIGIN, reverse_sql=_SOURCE_ORIGIN_OF_0051),
        migrations.RunSQL(SOURCES_LOCK, reverse_sql=SOURCES_LOCK_OF_0052),
        pgtrigger.migrations.RemoveTrigger(
            model_name="claim",
            name="lock_source",
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="claim",
            trigger=pgtrigger.compiler.Trigger(
                name="lock_source",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    declare="DECLARE cited bigint; kept bigint; steps integer := 0; next_keep integer := 1;",
                    func="\n                IF TG_OP = 'UPDATE' AND NEW.source_id = OLD.source_id THEN\n                    RETURN NEW;\n                END IF;\n                kept := NEW.source_id;\n                SELECT cites_id INTO cited FROM incidents_source WHERE id = NEW.source_id FOR SHARE;\n                WHILE cited IS NOT NULL AND cited <> kept LOOP\n                    steps := steps + 1;\n                    IF steps = next_keep THEN\n                        kept := cited;\n                        steps := 0;\n                        next_keep := next_keep * 2;\n                    END IF;\n                    SELECT cites_id INTO cited FROM incidents_source WHERE id = cited FOR SHARE;\n                END LOOP;\n                RETURN NEW;\n                ",
                    hash="45700f80c84f6b5df11af536f12b467a8846beb3",
                    operation='INSERT OR UPDATE OF "source_id"',
                    pgid="pgtrigger_lock_source_811a2",
                    table="incidents_claim",
                    when="BEFORE",
                ),
            ),
        ),
        migrations.RunSQL(REFRESH_LONG_CHAINS, reverse_sql=migrations.RunSQL.noop),
    ]
