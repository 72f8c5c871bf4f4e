"""A claim saved again with the source it had locks nothing (the claims' `lock_source` trigger, as
the link triggers of migration 0050 already do). An incident saved through the API with its claims
sent back as they were, while a reviewer renamed or made confidential one of their sources, waited
for the source while the reviewer's refresh waited for the incident's export row the save held: a
deadlock, which PostgreSQL ended by stopping one of the two (tests/test_write_conflicts.py)."""

import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0052_lock_links_moved_by_merges"),
    ]

    operations = [
        pgtrigger.migrations.RemoveTrigger(
            model_name="claim",
            name="lock_source",
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="claim",
            trigger=pgtrigger.compiler.Trigger(
                name="lock_source",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    declare="DECLARE cited bigint; depth integer := 0;",
                    func="\n                IF TG_OP = 'UPDATE' AND NEW.source_id = OLD.source_id THEN\n                    RETURN NEW;\n                END IF;\n                SELECT cites_id INTO cited FROM incidents_source WHERE id = NEW.source_id FOR SHARE;\n                WHILE cited IS NOT NULL AND depth < 64 LOOP\n                    SELECT cites_id INTO cited FROM incidents_source WHERE id = cited FOR SHARE;\n                    depth := depth + 1;\n                END LOOP;\n                RETURN NEW;\n                ",
                    hash="eff903d83076a4d9168e746d083ec781239139c9",
                    operation='INSERT OR UPDATE OF "source_id"',
                    pgid="pgtrigger_lock_source_811a2",
                    table="incidents_claim",
                    when="BEFORE",
                ),
            ),
        ),
    ]
