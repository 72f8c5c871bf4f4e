"""A merge's record names the revision its undo proposed back (`revision_back`): the survivor's own
dates and counts, after the undo of a merge whose proposal was accepted. Its proposer and time are
then withheld from readers without Confidential access, as the merge's (or undo's) decided in
confidence are (`IncidentRevisionQuerySet.visible_to`); unlinked, the revision named the Reviewer
with that access who undid it, and when. Undos before it left no link: their revisions stay as
they were."""

import django.db.models.deletion
import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0098_public_versions"),
    ]

    operations = [
        pgtrigger.migrations.RemoveTrigger(
            model_name="incidentmerge",
            name="insert_insert",
        ),
        pgtrigger.migrations.RemoveTrigger(
            model_name="incidentmerge",
            name="update_update",
        ),
        pgtrigger.migrations.RemoveTrigger(
            model_name="incidentmerge",
            name="delete_delete",
        ),
        migrations.AddField(
            model_name="incidentmerge",
            name="revision_back",
            field=models.ForeignKey(
                blank=True,
                editable=False,
                help_text="After the undo of a merge whose proposal was accepted: the survivor's own dates and counts proposed back.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="incidents.incidentrevision",
            ),
        ),
        migrations.AddField(
            model_name="incidentmergeevent",
            name="revision_back",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                editable=False,
                help_text="After the undo of a merge whose proposal was accepted: the survivor's own dates and counts proposed back.",
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                related_query_name="+",
                to="incidents.incidentrevision",
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="incidentmerge",
            trigger=pgtrigger.compiler.Trigger(
                name="insert_insert",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN (current_setting('tracker.insert_triggers_off', true) IS DISTINCT FROM 'on')",
                    func='INSERT INTO "incidents_incidentmergeevent" ("id", "merged_at", "merged_by_id", "merged_id", "note", "note_confidential", "pair_before", "pair_id", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "revision_back_id", "revision_id", "survivor_id", "undone_at", "undone_by_id") VALUES (NEW."id", NEW."merged_at", NEW."merged_by_id", NEW."merged_id", NEW."note", NEW."note_confidential", NEW."pair_before", NEW."pair_id", _pgh_attach_context(), NOW(), \'insert\', NEW."id", NEW."revision_back_id", NEW."revision_id", NEW."survivor_id", NEW."undone_at", NEW."undone_by_id"); RETURN NULL;',
                    hash="caba4ab58777c3c857220b2e65b008e3dbb2a846",
                    operation="INSERT",
                    pgid="pgtrigger_insert_insert_53bdb",
                    table="incidents_incidentmerge",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="incidentmerge",
            trigger=pgtrigger.compiler.Trigger(
                name="update_update",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition='WHEN (OLD."id" IS DISTINCT FROM (NEW."id") OR OLD."merged_id" IS DISTINCT FROM (NEW."merged_id") OR OLD."merged_at" IS DISTINCT FROM (NEW."merged_at") OR OLD."merged_by_id" IS DISTINCT FROM (NEW."merged_by_id") OR OLD."note" IS DISTINCT FROM (NEW."note") OR OLD."note_confidential" IS DISTINCT FROM (NEW."note_confidential") OR OLD."pair_id" IS DISTINCT FROM (NEW."pair_id") OR OLD."pair_before" IS DISTINCT FROM (NEW."pair_before") OR OLD."revision_id" IS DISTINCT FROM (NEW."revision_id") OR OLD."revision_back_id" IS DISTINCT FROM (NEW."revision_back_id") OR OLD."survivor_id" IS DISTINCT FROM (NEW."survivor_id") OR OLD."undone_at" IS DISTINCT FROM (NEW."undone_at") OR OLD."undone_by_id" IS DISTINCT FROM (NEW."undone_by_id"))',
                    func='INSERT INTO "incidents_incidentmergeevent" ("id", "merged_at", "merged_by_id", "merged_id", "note", "note_confidential", "pair_before", "pair_id", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "revision_back_id", "revision_id", "survivor_id", "undone_at", "undone_by_id") VALUES (NEW."id", NEW."merged_at", NEW."merged_by_id", NEW."merged_id", NEW."note", NEW."note_confidential", NEW."pair_before", NEW."pair_id", _pgh_attach_context(), NOW(), \'update\', NEW."id", NEW."revision_back_id", NEW."revision_id", NEW."survivor_id", NEW."undone_at", NEW."undone_by_id"); RETURN NULL;',
                    hash="a5fde9b10e2f7fc54cd3a599590ab6b0cf744b7b",
                    operation="UPDATE",
                    pgid="pgtrigger_update_update_e6f1d",
                    table="incidents_incidentmerge",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="incidentmerge",
            trigger=pgtrigger.compiler.Trigger(
                name="delete_delete",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func='INSERT INTO "incidents_incidentmergeevent" ("id", "merged_at", "merged_by_id", "merged_id", "note", "note_confidential", "pair_before", "pair_id", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "revision_back_id", "revision_id", "survivor_id", "undone_at", "undone_by_id") VALUES (OLD."id", OLD."merged_at", OLD."merged_by_id", OLD."merged_id", OLD."note", OLD."note_confidential", OLD."pair_before", OLD."pair_id", _pgh_attach_context(), NOW(), \'delete\', OLD."id", OLD."revision_back_id", OLD."revision_id", OLD."survivor_id", OLD."undone_at", OLD."undone_by_id"); RETURN NULL;',
                    hash="e2e5751f95bd96f8b7180cf47509ea2754ff0e07",
                    operation="DELETE",
                    pgid="pgtrigger_delete_delete_5fd57",
                    table="incidents_incidentmerge",
                    when="AFTER",
                ),
            ),
        ),
    ]
