"""Starting a new version of every incident that cites a source made confidential (or public again)
records their update history in one statement, and makes their export rows once.

services.record_save bumped those incidents' versions after the source's UPDATE, whose trigger had
just made their export rows again; the bump made them again (its version and time are in them), and
its history row trigger wrote one row at a time, planning the event table's generated columns anew
for each (5,000 incidents: 2.0 s of a 5-6 s change, the export rows 0.6 s; bench/README.md). While
the new switch is on (`tracker.incident_update_triggers_off`,
incidents.history.set_incident_update_triggers) the incidents' update history trigger and the
statement trigger that makes their export rows on update do not fire: the service bumps the
versions first, writes their history rows itself (the same rows: a snapshot of each, label
"update", the transaction's time, the current context), and the source's UPDATE that follows makes
their export rows, with the new versions, once. The setting is transaction-local: every other
write, and the rest of that transaction, keep both by the triggers as before.
"""

import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations

_UPDATE_CONDITION = "WHEN (current_setting('tracker.incident_update_triggers_off', true) IS DISTINCT FROM 'on')"


def _export_update_trigger(condition: str) -> str:
    # As migration 0028 made it, with `condition`.
    return f"""
CREATE OR REPLACE TRIGGER incident_export_update AFTER UPDATE ON incidents_incident
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT {condition}
    EXECUTE FUNCTION incident_export_incidents_changed();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0053_lock_source_only_when_it_changes"),
    ]

    operations = [
        migrations.RunSQL(_export_update_trigger(_UPDATE_CONDITION), reverse_sql=_export_update_trigger("")),
        pgtrigger.migrations.RemoveTrigger(
            model_name="incident",
            name="update_update",
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="incident",
            trigger=pgtrigger.compiler.Trigger(
                name="update_update",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN (OLD.* IS DISTINCT FROM NEW.* AND current_setting('tracker.incident_update_triggers_off', true) IS DISTINCT FROM 'on')",
                    func='INSERT INTO "incidents_incidentevent" ("confidential", "count_qualifier", "created_at", "created_by_id", "date_end", "date_precision", "date_start", "description", "id", "incident_type_id", "merged_into_id", "people_count", "people_count_max", "people_count_min", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "review_state", "title", "updated_at", "updated_by_id", "verification", "version") VALUES (NEW."confidential", NEW."count_qualifier", NEW."created_at", NEW."created_by_id", NEW."date_end", NEW."date_precision", NEW."date_start", NEW."description", NEW."id", NEW."incident_type_id", NEW."merged_into_id", NEW."people_count", NEW."people_count_max", NEW."people_count_min", _pgh_attach_context(), NOW(), \'update\', NEW."id", NEW."review_state", NEW."title", NEW."updated_at", NEW."updated_by_id", NEW."verification", NEW."version"); RETURN NULL;',
                    hash="d2028b1e0d9aa16499fbeaaf840c7e2307f4f1aa",
                    operation="UPDATE",
                    pgid="pgtrigger_update_update_41444",
                    table="incidents_incident",
                    when="AFTER",
                ),
            ),
        ),
    ]
