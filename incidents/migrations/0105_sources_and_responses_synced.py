"""Incremental sync for sources and responses: what left a reader's view is recorded, as for incidents.

A partner tool read the sources' and responses' lists again in full, and never learnt that a source
it copied was made confidential or deleted, nor that a response left its view with its incidents.
`RecordWithdrawal` records each such departure, with the narrowest audience that saw the record
before (0: the public, 1: staff without Confidential access, 2: staff with it), so that
`/api/v1/sources/withdrawn/` and `/api/v1/responses/withdrawn/` tell only readers who could see it:

- a source's row trigger `record_withdrawal`, on its deletion and on its being made confidential;
- a response's visibility follows its incidents (`ResponseQuerySet.visible_to`), said here in SQL as
  the narrowest audience that sees it (`response_audience`): the narrowest that sees one of its
  incidents (`incident_audience`: 3, no one, for a merged incident), or staff (1) for a response
  about none. It leaves a view when an incident it is about does (Incident's row trigger
  `record_response_withdrawals`, which reads the incident as it was), when its links change (the
  statement triggers `response_withdrawals_*` of its links' table, Django's own, as migration 0098's,
  which compare its links before the statement with those after it: one statement may remove or
  add several), and when it is deleted (its row trigger `record_withdrawal`; Django removes its
  links first).

The sources' departures before this migration are read from their history, as migration 0057 did
for incidents; the responses' are not (their visibility is told by their incidents' history and
their links', not their own), and a sync that started before it reads the responses again in full.
"""

import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations, models

# The narrowest audience that sees an incident as a response's link to it (`IncidentQuerySet.visible_to`,
# whose readers are nested), and that sees a response: 3 when none does. `response_audience`'s second
# and third arguments read one incident as it was before the change that fires a trigger.
FUNCTIONS_SQL = """
CREATE FUNCTION incident_audience(review_state text, confidential boolean, merged_into_id bigint)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN merged_into_id IS NOT NULL THEN 3
        WHEN confidential THEN 2
        WHEN review_state <> 'published' THEN 1
        ELSE 0
    END
$$;

CREATE FUNCTION response_audience(response bigint, changed_incident bigint DEFAULT NULL, changed_audience integer DEFAULT NULL)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT COALESCE(min(CASE WHEN incident.id = changed_incident THEN changed_audience
        ELSE incident_audience(incident.review_state, incident.confidential, incident.merged_into_id) END), 1)
    FROM incidents_response_incidents AS link JOIN incidents_incident AS incident ON incident.id = link.incident_id
    WHERE link.response_id = response
$$;
"""

DROP_FUNCTIONS_SQL = """
DROP FUNCTION response_audience(bigint, bigint, integer);
DROP FUNCTION incident_audience(text, boolean, bigint);
"""

_LINKS_NOW = "SELECT response_id, incident_id FROM incidents_response_incidents"
_LINKS_ADDED_LEFT_OUT = f"{_LINKS_NOW} WHERE id NOT IN (SELECT id FROM new_rows)"
_LINKS_REMOVED = "SELECT response_id, incident_id FROM old_rows"
# Each event of the links' table: its transition tables, the responses whose links it changed, and
# their links before it.
_LINK_EVENTS = {
    "INSERT": ("NEW TABLE AS new_rows", "SELECT response_id FROM new_rows", _LINKS_ADDED_LEFT_OUT),
    "UPDATE": (
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "SELECT response_id FROM old_rows UNION SELECT response_id FROM new_rows",
        f"{_LINKS_ADDED_LEFT_OUT} UNION ALL {_LINKS_REMOVED}",
    ),
    "DELETE": ("OLD TABLE AS old_rows", "SELECT response_id FROM old_rows", f"{_LINKS_NOW} UNION ALL {_LINKS_REMOVED}"),
}

LINK_TRIGGERS_SQL = "".join(
    f"""
CREATE FUNCTION response_withdrawals_{event.lower()}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO incidents_recordwithdrawal (record_type, record_id, audience, withdrawn_at)
    SELECT 'response', changed.response_id, seen.audience, clock_timestamp()
    FROM (SELECT DISTINCT response_id FROM ({changed}) AS changed) AS changed,
    LATERAL (
        SELECT COALESCE(min(incident_audience(incident.review_state, incident.confidential, incident.merged_into_id)), 1)
        FROM ({before}) AS link JOIN incidents_incident AS incident ON incident.id = link.incident_id
        WHERE link.response_id = changed.response_id
    ) AS seen (audience)
    WHERE seen.audience < response_audience(changed.response_id);
    RETURN NULL;
END
$$;
CREATE TRIGGER response_withdrawals_{event.lower()} AFTER {event} ON incidents_response_incidents
    REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION response_withdrawals_{event.lower()}();
"""
    for event, (transition, changed, before) in _LINK_EVENTS.items()
)

DROP_LINK_TRIGGERS_SQL = "".join(
    f"""
DROP TRIGGER response_withdrawals_{event.lower()} ON incidents_response_incidents;
DROP FUNCTION response_withdrawals_{event.lower()}();
"""
    for event in _LINK_EVENTS
)

# The sources' departures before this migration, read from their history: each deletion, with the
# confidentiality it was deleted in, and each update that made one confidential. A source written
# without history (the demo data's) has no event before its first change: none is recorded for it.
BACKFILL_FROM_HISTORY = """
INSERT INTO incidents_recordwithdrawal (record_type, record_id, audience, withdrawn_at)
SELECT 'source', pgh_obj_id, CASE WHEN confidential_before THEN 2 ELSE 0 END, pgh_created_at
FROM (
    SELECT
        pgh_obj_id,
        pgh_created_at,
        CASE WHEN pgh_label = 'delete' THEN confidential ELSE LAG(confidential) OVER events END AS confidential_before,
        pgh_label = 'delete' OR confidential AND NOT LAG(confidential) OVER events AS left_a_view
    FROM incidents_sourceevent
    WHERE pgh_label IN ('insert', 'update', 'delete')
    WINDOW events AS (PARTITION BY pgh_obj_id ORDER BY pgh_id)
) AS changes
WHERE left_a_view
ORDER BY pgh_created_at, pgh_obj_id
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0104_created_per_audience"),
    ]

    operations = [
        # PostgreSQL alters no table with trigger events pending: the deferred ones run now.
        migrations.RunSQL("SET CONSTRAINTS ALL IMMEDIATE", migrations.RunSQL.noop),
        migrations.RunSQL(FUNCTIONS_SQL, reverse_sql=DROP_FUNCTIONS_SQL),
        migrations.CreateModel(
            name="RecordWithdrawal",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "record_type",
                    models.CharField(choices=[("source", "Source"), ("response", "Response")], max_length=8),
                ),
                ("record_id", models.BigIntegerField()),
                (
                    "audience",
                    models.PositiveSmallIntegerField(
                        choices=[
                            (0, "The public"),
                            (1, "Staff without Confidential access"),
                            (2, "Staff with Confidential access"),
                        ]
                    ),
                ),
                ("withdrawn_at", models.DateTimeField()),
            ],
        ),
        migrations.AddIndex(
            model_name="response",
            index=models.Index(fields=["updated_at", "id"], name="response_changed"),
        ),
        migrations.AddIndex(
            model_name="response",
            index=models.Index(fields=["disclosed_updated_at", "id"], name="response_disclosed_changed"),
        ),
        migrations.AddIndex(
            model_name="response",
            index=models.Index(fields=["public_updated_at", "id"], name="response_public_changed"),
        ),
        migrations.AddIndex(
            model_name="source",
            index=models.Index(fields=["updated_at", "id"], name="source_changed"),
        ),
        migrations.AddIndex(
            model_name="source",
            index=models.Index(
                condition=models.Q(("confidential", False)),
                fields=["disclosed_updated_at", "id"],
                name="source_disclosed_changed",
            ),
        ),
        migrations.AddIndex(
            model_name="source",
            index=models.Index(
                condition=models.Q(("confidential", False)),
                fields=["public_updated_at", "id"],
                name="source_public_changed",
            ),
        ),
        migrations.RunSQL(BACKFILL_FROM_HISTORY, reverse_sql=migrations.RunSQL.noop),
        pgtrigger.migrations.AddTrigger(
            model_name="incident",
            trigger=pgtrigger.compiler.Trigger(
                name="record_response_withdrawals",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN (OLD.merged_into_id IS NULL AND NEW.merged_into_id IS NOT NULL OR NOT OLD.confidential AND NEW.confidential OR OLD.review_state = 'published' AND NEW.review_state <> 'published')",
                    func="\n                INSERT INTO incidents_recordwithdrawal (record_type, record_id, audience, withdrawn_at)\n                SELECT 'response', link.response_id, seen.audience, clock_timestamp()\n                FROM incidents_response_incidents AS link,\n                    response_audience(\n                        link.response_id, OLD.id,\n                        incident_audience(OLD.review_state, OLD.confidential, OLD.merged_into_id)\n                    ) AS seen (audience)\n                WHERE link.incident_id = OLD.id AND seen.audience < response_audience(link.response_id);\n                RETURN NULL;\n                ",
                    hash="06cf817a7753a31fbd0fc15fe54047130f5a5b01",
                    operation='UPDATE OF "review_state", "confidential", "merged_into_id"',
                    pgid="pgtrigger_record_response_withdrawals_15994",
                    table="incidents_incident",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="response",
            trigger=pgtrigger.compiler.Trigger(
                name="record_withdrawal",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="\n                INSERT INTO incidents_recordwithdrawal (record_type, record_id, audience, withdrawn_at)\n                SELECT 'response', OLD.id, seen.audience, clock_timestamp()\n                FROM response_audience(OLD.id) AS seen (audience)\n                WHERE seen.audience IS NOT NULL;\n                RETURN NULL;\n                ",
                    hash="9da4688bcc9bc869e2ddae6484ff984ed62b593f",
                    operation="DELETE",
                    pgid="pgtrigger_record_withdrawal_14abc",
                    table="incidents_response",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="source",
            trigger=pgtrigger.compiler.Trigger(
                name="record_withdrawal",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="\n                IF TG_OP = 'UPDATE' AND (OLD.confidential OR NOT NEW.confidential) THEN\n                    RETURN NULL;\n                END IF;\n                INSERT INTO incidents_recordwithdrawal (record_type, record_id, audience, withdrawn_at)\n                VALUES (\n                    'source', OLD.id,\n                    CASE WHEN OLD.confidential THEN 2 ELSE 0 END,\n                    clock_timestamp()\n                );\n                RETURN NULL;\n                ",
                    hash="b4aef2a54aa466df571eee575f55a9e9860bd0e4",
                    operation='DELETE OR UPDATE OF "confidential"',
                    pgid="pgtrigger_record_withdrawal_58983",
                    table="incidents_source",
                    when="AFTER",
                ),
            ),
        ),
        migrations.AddIndex(
            model_name="recordwithdrawal",
            index=models.Index(fields=["record_type", "withdrawn_at", "record_id"], name="record_withdrawal_at"),
        ),
        migrations.AddIndex(
            model_name="recordwithdrawal",
            index=models.Index(fields=["record_type", "record_id", "id"], name="record_withdrawal_record"),
        ),
        migrations.RunSQL(LINK_TRIGGERS_SQL, reverse_sql=DROP_LINK_TRIGGERS_SQL),
        # The same on the way back, where this runs first.
        migrations.RunSQL(migrations.RunSQL.noop, "SET CONSTRAINTS ALL IMMEDIATE"),
    ]
