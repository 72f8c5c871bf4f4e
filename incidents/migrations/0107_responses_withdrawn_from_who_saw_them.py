"""A response is withdrawn only from readers who saw it: not when it is made already linked to
hidden incidents, nor, deleted, from every member of staff.

A response is written before its links, one statement after the other. Made about confidential
incidents alone, in one transaction (the API, the admin), it was about no incident between the
two, which all staff read, and its links' trigger recorded that it left the view of staff without
Confidential access, who never saw it: its id and time were in their `responses/withdrawn/`.
Deleted, Django removes its links first, and its row's trigger read it as about no incident: it was
withdrawn from those staff too. The links' trigger now leaves out a response made in the same
transaction (its history's insert event, stamped with the transaction's start), and the row's
trigger reads the links removed in it. No data changes: withdrawals recorded so before stay."""

import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations

# Migration 0105's trigger of inserted links, and what it now leaves out.
INSERTED_LINKS_WITHDRAWALS = """
CREATE OR REPLACE FUNCTION response_withdrawals_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO incidents_recordwithdrawal (record_type, record_id, audience, withdrawn_at)
    SELECT 'response', changed.response_id, seen.audience, clock_timestamp()
    FROM (SELECT DISTINCT response_id FROM new_rows) AS changed,
    LATERAL (
        SELECT COALESCE(min(incident_audience(incident.review_state, incident.confidential, incident.merged_into_id)), 1)
        FROM (SELECT response_id, incident_id FROM incidents_response_incidents WHERE id NOT IN (SELECT id FROM new_rows))
            AS link JOIN incidents_incident AS incident ON incident.id = link.incident_id
        WHERE link.response_id = changed.response_id
    ) AS seen (audience)
    WHERE seen.audience < response_audience(changed.response_id)%s;
    RETURN NULL;
END
$$;
"""
MADE_IN_THIS_TRANSACTION = """
        AND NOT EXISTS (
            SELECT FROM incidents_responseevent AS made
            WHERE made.pgh_obj_id = changed.response_id AND made.pgh_label = 'insert' AND made.pgh_created_at = now()
        )"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0106_undone_merges_go_with_their_incidents"),
    ]

    operations = [
        migrations.RunSQL(
            INSERTED_LINKS_WITHDRAWALS % MADE_IN_THIS_TRANSACTION, reverse_sql=INSERTED_LINKS_WITHDRAWALS % ""
        ),
        pgtrigger.migrations.RemoveTrigger(
            model_name="response",
            name="record_withdrawal",
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="response",
            trigger=pgtrigger.compiler.Trigger(
                name="record_withdrawal",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="\n                INSERT INTO incidents_recordwithdrawal (record_type, record_id, audience, withdrawn_at)\n                SELECT 'response', OLD.id, COALESCE(removed.audience, response_audience(OLD.id)), clock_timestamp()\n                FROM (\n                    SELECT min(incident_audience(incident.review_state, incident.confidential, incident.merged_into_id))\n                    FROM incidents_responseincidentevent AS link\n                    JOIN incidents_incident AS incident ON incident.id = link.incident_id\n                    WHERE link.response_id = OLD.id AND link.pgh_label = 'delete' AND link.pgh_created_at = now()\n                        AND NOT EXISTS (SELECT FROM incidents_response_incidents WHERE response_id = OLD.id)\n                ) AS removed (audience);\n                RETURN NULL;\n                ",
                    hash="2c0d695c328a67d0b156e858b93cf9f62897e866",
                    operation="DELETE",
                    pgid="pgtrigger_record_withdrawal_14abc",
                    table="incidents_response",
                    when="AFTER",
                ),
            ),
        ),
    ]
