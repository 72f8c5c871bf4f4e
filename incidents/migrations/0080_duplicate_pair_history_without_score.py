"""A duplicate pair's history no longer keeps its score (`DuplicatePair`'s tracker excludes it).

The score is worked out again by every rescoring, not entered by anyone, and one worked out while
the pair's incidents were confidential compared every claim's origin (an informant both incidents
relay): the pair's next event once they were made public (its withdrawal by the rescoring, a
decision) carried it, and the incident's history showed it to staff without Confidential access.
The column is dropped from the events already recorded, with the scores they kept; the update
trigger now fires only when a column it records changed (a decision, its note), so a rescoring
that only moves the score records nothing.

Undone, the column comes back empty and nullable (the scores it held are gone), so that the
triggers of either side, today's that `PGTRIGGER_INSTALL_ON_MIGRATE` installs after a migrate or
those of migration 0018, can write a pair's events on a table that already holds some.
"""

import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0079_in_review_count_from_the_index"),
    ]

    operations = [
        pgtrigger.migrations.RemoveTrigger(
            model_name="duplicatepair",
            name="insert_insert",
        ),
        pgtrigger.migrations.RemoveTrigger(
            model_name="duplicatepair",
            name="update_update",
        ),
        pgtrigger.migrations.RemoveTrigger(
            model_name="duplicatepair",
            name="delete_delete",
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveField(model_name="duplicatepairevent", name="score")],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE incidents_duplicatepairevent DROP COLUMN score",
                    reverse_sql="ALTER TABLE incidents_duplicatepairevent ADD COLUMN score double precision NULL",
                )
            ],
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="duplicatepair",
            trigger=pgtrigger.compiler.Trigger(
                name="insert_insert",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN (current_setting('tracker.insert_triggers_off', true) IS DISTINCT FROM 'on')",
                    func='INSERT INTO "incidents_duplicatepairevent" ("decided_at", "decided_by_id", "decision", "id", "incident_a_id", "incident_b_id", "note", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id") VALUES (NEW."decided_at", NEW."decided_by_id", NEW."decision", NEW."id", NEW."incident_a_id", NEW."incident_b_id", NEW."note", _pgh_attach_context(), NOW(), \'insert\', NEW."id"); RETURN NULL;',
                    hash="c8e45dad9759ea954b5afd60c6980031d82a4144",
                    operation="INSERT",
                    pgid="pgtrigger_insert_insert_463e6",
                    table="incidents_duplicatepair",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="duplicatepair",
            trigger=pgtrigger.compiler.Trigger(
                name="update_update",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition='WHEN (OLD."decided_at" IS DISTINCT FROM (NEW."decided_at") OR OLD."decided_by_id" IS DISTINCT FROM (NEW."decided_by_id") OR OLD."decision" IS DISTINCT FROM (NEW."decision") OR OLD."id" IS DISTINCT FROM (NEW."id") OR OLD."incident_a_id" IS DISTINCT FROM (NEW."incident_a_id") OR OLD."incident_b_id" IS DISTINCT FROM (NEW."incident_b_id") OR OLD."note" IS DISTINCT FROM (NEW."note"))',
                    func='INSERT INTO "incidents_duplicatepairevent" ("decided_at", "decided_by_id", "decision", "id", "incident_a_id", "incident_b_id", "note", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id") VALUES (NEW."decided_at", NEW."decided_by_id", NEW."decision", NEW."id", NEW."incident_a_id", NEW."incident_b_id", NEW."note", _pgh_attach_context(), NOW(), \'update\', NEW."id"); RETURN NULL;',
                    hash="7f9a1de93cb18fe93dc29fc7131c43f8e36732a9",
                    operation="UPDATE",
                    pgid="pgtrigger_update_update_59aea",
                    table="incidents_duplicatepair",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="duplicatepair",
            trigger=pgtrigger.compiler.Trigger(
                name="delete_delete",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func='INSERT INTO "incidents_duplicatepairevent" ("decided_at", "decided_by_id", "decision", "id", "incident_a_id", "incident_b_id", "note", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id") VALUES (OLD."decided_at", OLD."decided_by_id", OLD."decision", OLD."id", OLD."incident_a_id", OLD."incident_b_id", OLD."note", _pgh_attach_context(), NOW(), \'delete\', OLD."id"); RETURN NULL;',
                    hash="1e53c3f9caa578c2fcf56d3bbe734a0ee11647c4",
                    operation="DELETE",
                    pgid="pgtrigger_delete_delete_ec271",
                    table="incidents_duplicatepair",
                    when="AFTER",
                ),
            ),
        ),
    ]
