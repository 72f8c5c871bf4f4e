"""A source's and a response's version and change time per audience, as an incident's (migration
0095): `disclosed_version` and `disclosed_updated_at`, those of readers without Confidential access,
move only with a change they can see.

A public article given a confidential source to cite, or a response linked to a confidential
incident as well, showed the public a new `version`, `updated_at` and ETag with `"cites": null` and
the same `incidents` as before: they learned that something hidden about it had changed. The
database keeps both columns, whoever writes:

- the row trigger `record_disclosed_keep` of both tables counts a new version as a change they see
  when a column other than the bookkeeping ones and the record's link to a source (its first
  argument: a source's `cites_id`, a response's `source_id`) changed, or that link as they read it
  (null for a confidential source: `disclosed_source_id`), or when its writer says so by setting
  `disclosed_updated_at` to the new `updated_at`, once a version. Every other write of the two
  columns is undone: a save writes back what it read. It is migration 0095's
  `incident_disclosed_keep` made general: the incidents' row trigger runs it too, with no link and
  their own bookkeeping columns as arguments;
- the statement triggers `response_disclosed_*` of a response's links to incidents say so for the
  responses whose links to an incident not confidential changed (`response_disclosed_changed`).
  The history's update event of both tables leaves out a write of the two columns alone.

A source's staff-only `notes` count as seen: staff without Confidential access read them. A link to
a draft incident counts too: those staff see drafts, and the public is told their versions (one
per audience without Confidential access, as an incident's). The existing rows start with both
columns equal to their own (nothing moves for any reader).
"""

import importlib

import django.utils.timezone
import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations

import incidents.models

_INCIDENTS_KEPT = importlib.import_module("incidents.migrations.0095_versions_per_audience")

_TABLES = ("incidents_source", "incidents_response")

# The columns of every record kept so that are bookkeeping, not what a reader sees change; the
# trigger's further arguments name a table's own.
_BOOKKEEPING = "ARRAY['version', 'updated_at', 'disclosed_version', 'disclosed_updated_at']"

# A response's link to an incident readers without Confidential access see (drafts too: staff without
# that access see them).
_LINK_SEEN = (
    "NOT EXISTS (SELECT FROM incidents_incident AS incident "
    "WHERE incident.id = {link}.incident_id AND incident.confidential)"
)

FUNCTIONS_SQL = f"""
CREATE FUNCTION disclosed_source_id(linked bigint) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT linked WHERE NOT EXISTS (SELECT FROM incidents_source AS source WHERE source.id = linked AND source.confidential)
$$;

CREATE FUNCTION record_disclosed_keep() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    link text := TG_ARGV[0];
    said_seen boolean;
    before jsonb;
    after jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.disclosed_version := NEW.version;
        NEW.disclosed_updated_at := NEW.updated_at;
        RETURN NEW;
    END IF;
    said_seen := NEW.disclosed_updated_at = NEW.updated_at
        AND NEW.disclosed_updated_at IS DISTINCT FROM OLD.disclosed_updated_at;
    NEW.disclosed_version := OLD.disclosed_version;
    NEW.disclosed_updated_at := OLD.disclosed_updated_at;
    -- Once a version: a new one, or the one whose change time is not yet theirs.
    IF NEW.version IS NOT DISTINCT FROM OLD.version AND OLD.disclosed_updated_at IS NOT DISTINCT FROM NEW.updated_at THEN
        RETURN NEW;
    END IF;
    before := to_jsonb(OLD) - {_BOOKKEEPING} - TG_ARGV[1:];
    after := to_jsonb(NEW) - {_BOOKKEEPING} - TG_ARGV[1:];
    IF said_seen
        OR (before - link) IS DISTINCT FROM (after - link)
        OR link <> '' AND disclosed_source_id((before ->> link)::bigint) IS DISTINCT FROM disclosed_source_id((after ->> link)::bigint)
    THEN
        NEW.disclosed_version := OLD.disclosed_version + 1;
        NEW.disclosed_updated_at := NEW.updated_at;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER record_disclosed_keep BEFORE INSERT OR UPDATE ON incidents_source
    FOR EACH ROW EXECUTE FUNCTION record_disclosed_keep('cites_id');
CREATE TRIGGER record_disclosed_keep BEFORE INSERT OR UPDATE ON incidents_response
    FOR EACH ROW EXECUTE FUNCTION record_disclosed_keep('source_id');

-- An incident links to no source itself (its claims' triggers count theirs). Who changed it last
-- is bookkeeping, and its generated columns are not yet computed in a BEFORE trigger's NEW (they
-- follow the columns they are computed from). Named as before, so that it runs in the same order.
DROP TRIGGER incident_disclosed_keep ON incidents_incident;
DROP FUNCTION incident_disclosed_keep();
CREATE TRIGGER incident_disclosed_keep BEFORE INSERT OR UPDATE ON incidents_incident
    FOR EACH ROW EXECUTE FUNCTION record_disclosed_keep('', 'updated_by_id', 'public_id', 'date_label');

-- The responses' new versions whose links to an incident not confidential changed: their change
-- time is said to be theirs (`record_disclosed_keep` counts it), once a version.
CREATE FUNCTION response_disclosed_changed(response_ids bigint[]) RETURNS void LANGUAGE sql AS $$
    UPDATE incidents_response SET disclosed_updated_at = updated_at
    WHERE id = ANY (response_ids) AND disclosed_updated_at IS DISTINCT FROM updated_at
$$;

CREATE FUNCTION response_disclosed_links_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM response_disclosed_changed(ARRAY(
            SELECT response_id FROM new_rows AS link WHERE {_LINK_SEEN.format(link="link")}
        ));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM response_disclosed_changed(ARRAY(
            SELECT response_id FROM old_rows AS link WHERE {_LINK_SEEN.format(link="link")}
        ));
    ELSE
        -- A link moved: from the response and incident it was, to those it is.
        PERFORM response_disclosed_changed(ARRAY(
            SELECT link.response_id
            FROM old_rows AS before JOIN new_rows AS after USING (id),
                 LATERAL (VALUES (before.response_id, before.incident_id), (after.response_id, after.incident_id))
                     AS link (response_id, incident_id)
            WHERE (before.response_id, before.incident_id) IS DISTINCT FROM (after.response_id, after.incident_id)
              AND {_LINK_SEEN.format(link="link")}
        ));
    END IF;
    RETURN NULL;
END
$$;
"""

_LINK_EVENTS = (
    ("INSERT", "NEW TABLE AS new_rows"),
    ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("DELETE", "OLD TABLE AS old_rows"),
)

TRIGGERS_SQL = FUNCTIONS_SQL + "".join(
    f"""
CREATE TRIGGER response_disclosed_{event.lower()} AFTER {event} ON incidents_response_incidents
    REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION response_disclosed_links_changed();
"""
    for event, transition in _LINK_EVENTS
)

DROP_TRIGGERS_SQL = (
    "".join(
        f"DROP TRIGGER response_disclosed_{event.lower()} ON incidents_response_incidents;\n"
        for event, _ in _LINK_EVENTS
    )
    + "".join(f"DROP TRIGGER record_disclosed_keep ON {table};\n" for table in _TABLES)
    + "DROP TRIGGER incident_disclosed_keep ON incidents_incident;\n"
    + _INCIDENTS_KEPT.KEEP_SQL
    + """
DROP FUNCTION response_disclosed_links_changed();
DROP FUNCTION response_disclosed_changed(bigint[]);
DROP FUNCTION record_disclosed_keep();
DROP FUNCTION disclosed_source_id(bigint);
"""
)

# Each reader's columns as they were: the record's own. The history's update events leave out a
# write of these columns alone (the new condition, installed before).
COLUMNS_SQL = "".join(
    f"""
ALTER TABLE {table} ADD COLUMN disclosed_version integer, ADD COLUMN disclosed_updated_at timestamptz;
UPDATE {table} SET disclosed_version = version, disclosed_updated_at = updated_at;
"""
    for table in _TABLES
) + "".join(
    f"""
-- PostgreSQL alters no table with trigger events pending: the deferred ones run now.
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE {table} ALTER COLUMN disclosed_version SET NOT NULL,
    ADD CONSTRAINT {table}_disclosed_version_check CHECK (disclosed_version >= 0),
    ALTER COLUMN disclosed_updated_at SET NOT NULL;
"""
    for table in _TABLES
)

DROP_COLUMNS_SQL = "SET CONSTRAINTS ALL IMMEDIATE;\n" + "".join(
    f"ALTER TABLE {table} DROP COLUMN disclosed_version, DROP COLUMN disclosed_updated_at;\n" for table in _TABLES
)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0095_versions_per_audience"),
    ]

    operations = [
        # The kept totals' deferred counts run now (those of writes earlier in one transaction):
        # PostgreSQL alters no table with trigger events pending.
        migrations.RunSQL("SET CONSTRAINTS ALL IMMEDIATE", migrations.RunSQL.noop),
        # First, so that filling the columns in records no history event.
        pgtrigger.migrations.RemoveTrigger(model_name="response", name="update_update"),
        pgtrigger.migrations.RemoveTrigger(model_name="source", name="update_update"),
        pgtrigger.migrations.AddTrigger(
            model_name="response",
            trigger=pgtrigger.compiler.Trigger(
                name="update_update",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN ((to_jsonb(OLD) - 'disclosed_version' - 'disclosed_updated_at') IS DISTINCT FROM (to_jsonb(NEW) - 'disclosed_version' - 'disclosed_updated_at'))",
                    func='INSERT INTO "incidents_responseevent" ("created_at", "date", "description", "id", "kind", "organization_id", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "source_id", "updated_at", "version") VALUES (NEW."created_at", NEW."date", NEW."description", NEW."id", NEW."kind", NEW."organization_id", _pgh_attach_context(), NOW(), \'update\', NEW."id", NEW."source_id", NEW."updated_at", NEW."version"); RETURN NULL;',
                    hash="501703ece23e4a40f2fa2666877c5c40687c5326",
                    operation="UPDATE",
                    pgid="pgtrigger_update_update_afc3f",
                    table="incidents_response",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="source",
            trigger=pgtrigger.compiler.Trigger(
                name="update_update",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN ((to_jsonb(OLD) - 'disclosed_version' - 'disclosed_updated_at') IS DISTINCT FROM (to_jsonb(NEW) - 'disclosed_version' - 'disclosed_updated_at'))",
                    func='INSERT INTO "incidents_sourceevent" ("archive_url", "author", "cites_id", "confidential", "created_at", "id", "kind", "language", "notes", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "published_on", "publisher_id", "title", "updated_at", "url", "version") VALUES (NEW."archive_url", NEW."author", NEW."cites_id", NEW."confidential", NEW."created_at", NEW."id", NEW."kind", NEW."language", NEW."notes", _pgh_attach_context(), NOW(), \'update\', NEW."id", NEW."published_on", NEW."publisher_id", NEW."title", NEW."updated_at", NEW."url", NEW."version"); RETURN NULL;',
                    hash="5f83250edc0e2d5b86c6445b12d1ef5985988dbf",
                    operation="UPDATE",
                    pgid="pgtrigger_update_update_cb591",
                    table="incidents_source",
                    when="AFTER",
                ),
            ),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(COLUMNS_SQL, reverse_sql=DROP_COLUMNS_SQL)],
            state_operations=[
                migrations.AddField(
                    model_name=model_name,
                    name="disclosed_updated_at",
                    field=incidents.models.KeptByDatabaseDateTimeField(
                        blank=True, default=django.utils.timezone.now, editable=False
                    ),
                )
                for model_name in ("response", "source")
            ]
            + [
                migrations.AddField(
                    model_name=model_name,
                    name="disclosed_version",
                    field=incidents.models.KeptByDatabasePositiveIntegerField(default=1, editable=False),
                )
                for model_name in ("response", "source")
            ],
        ),
        migrations.RunSQL(TRIGGERS_SQL, reverse_sql=DROP_TRIGGERS_SQL),
        # The same on the way back, where this runs first.
        migrations.RunSQL(migrations.RunSQL.noop, "SET CONSTRAINTS ALL IMMEDIATE"),
    ]
