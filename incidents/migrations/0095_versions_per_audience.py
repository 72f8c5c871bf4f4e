"""An incident's version and change time per audience: `disclosed_version` and `disclosed_updated_at`,
those of readers without Confidential access, move only with a change they can see.

An edit of what only readers with Confidential access see (a confidential claim's excerpt, a claim
of a confidential source added) started a new version for everyone: the public saw the ETag, the
`version` and `updated_at` move with nothing else changed, an incremental sync read the incident
again and the next release listed it as updated, so they learned that something hidden about it
changed. The database keeps both columns, whoever writes:

- the incident's row trigger `incident_disclosed_keep` counts a new version as a change they see
  when a column other than the bookkeeping ones changed, or when its writer says so by setting
  `disclosed_updated_at` to the new `updated_at` (the services' writes of many incidents at once:
  a place or a source's confidentiality changed), once a version: a version is counted when their
  change time is its own. Every other write of the two columns is undone: a save writes back what
  it read;
- the statement triggers `incident_disclosed_*` of the claims, victim groups, involvements and
  places' links count the new version of the incidents whose rows they can see changed (a claim not
  confidential and not of a confidential source, before or after; every row of the others), once a
  version, through `incident_disclosed_changed`: its UPDATE of the incidents runs with their update
  history and export triggers off (nothing of the history's changes) and makes the export rows'
  two cells itself. Named so that they run before the tables' own `incident_export_*` triggers.

The export rows keep both audiences' cells (`exports.version_cells`). The existing rows start with
both audiences' columns equal to the incident's own (nothing moves for any reader); `VACUUM` both
tables after it.
"""

import importlib

import django.db.models.functions.comparison
import django.utils.timezone
from django.db import migrations, models

import incidents.models

_REFRESH = importlib.import_module("incidents.migrations.0094_export_marks_confidential_claims")
_edited = importlib.import_module("incidents.migrations.0030_export_rows_filters_and_record")._edited
_0086 = importlib.import_module("incidents.migrations.0086_searched_texts_bounded")

# How the export rows write a time (migration 0028), compared byte by byte by a sync's bound.
KEPT_TIME = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""

REFRESH_SQL = _edited(
    _REFRESH.REFRESH_SQL,
    (
        (
            "complete_origins, updated_at, version)",
            "complete_origins, updated_at, version, disclosed_updated_at, disclosed_version)",
        ),
        (
            "           incident.version\n",
            "           incident.version,\n"
            f"           {KEPT_TIME.format('incident.disclosed_updated_at')},\n"
            "           incident.disclosed_version\n",
        ),
        (
            "version = EXCLUDED.version;",
            "version = EXCLUDED.version, disclosed_updated_at = EXCLUDED.disclosed_updated_at, "
            "disclosed_version = EXCLUDED.disclosed_version;",
        ),
    ),
)

# The columns of an incident that are bookkeeping, not what a reader sees change: its version and
# times, who changed it last, and the generated columns (not yet computed in a BEFORE trigger's
# NEW; they follow the columns they are computed from).
_BOOKKEEPING = "ARRAY['version', 'updated_at', 'updated_by_id', 'disclosed_version', 'disclosed_updated_at', 'public_id', 'date_label']"

# A claim readers without Confidential access see (`ClaimQuerySet.disclosed_to`).
_CLAIM_DISCLOSED = (
    "NOT {claim}.confidential AND NOT EXISTS "
    "(SELECT FROM incidents_source AS source WHERE source.id = {claim}.source_id AND source.confidential)"
)

# The incident's row trigger (replaced by migration 0096's `record_disclosed_keep`, which sources
# and responses share; its reverse makes this one again).
KEEP_SQL = f"""
CREATE FUNCTION incident_disclosed_keep() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    said_seen boolean;
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
    IF (NEW.version IS DISTINCT FROM OLD.version OR OLD.disclosed_updated_at IS DISTINCT FROM NEW.updated_at) AND (
        said_seen OR (to_jsonb(NEW) - {_BOOKKEEPING}) IS DISTINCT FROM (to_jsonb(OLD) - {_BOOKKEEPING})
    ) THEN
        NEW.disclosed_version := OLD.disclosed_version + 1;
        NEW.disclosed_updated_at := NEW.updated_at;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER incident_disclosed_keep BEFORE INSERT OR UPDATE ON incidents_incident
    FOR EACH ROW EXECUTE FUNCTION incident_disclosed_keep();
"""

FUNCTIONS_SQL = (
    KEEP_SQL
    + f"""
CREATE FUNCTION incident_disclosed_changed(incident_ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    triggers_off text := current_setting('tracker.incident_update_triggers_off', true);
BEGIN
    incident_ids := ARRAY(
        SELECT id FROM incidents_incident
        WHERE id = ANY (incident_ids) AND disclosed_updated_at IS DISTINCT FROM updated_at
        ORDER BY id
    );
    IF cardinality(incident_ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM set_config('tracker.incident_update_triggers_off', 'on', true);
    UPDATE incidents_incident SET disclosed_updated_at = updated_at WHERE id = ANY (incident_ids);
    PERFORM set_config('tracker.incident_update_triggers_off', coalesce(triggers_off, ''), true);
    UPDATE incidents_incidentexportrow AS export_row
    SET disclosed_version = incident.disclosed_version,
        disclosed_updated_at = {KEPT_TIME.format("incident.disclosed_updated_at")}
    FROM incidents_incident AS incident
    WHERE incident.id = export_row.incident_id AND incident.id = ANY (incident_ids);
END
$$;

CREATE FUNCTION incident_disclosed_claims_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM incident_disclosed_changed(ARRAY(
            SELECT incident_id FROM new_rows AS claim WHERE {_CLAIM_DISCLOSED.format(claim="claim")}
        ));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM incident_disclosed_changed(ARRAY(
            SELECT incident_id FROM old_rows AS claim WHERE {_CLAIM_DISCLOSED.format(claim="claim")}
        ));
    ELSE
        -- A claim saved as it was (an edit sends every claim it shows) changes its time alone.
        PERFORM incident_disclosed_changed(ARRAY(
            SELECT unnest(ARRAY[before.incident_id, after.incident_id])
            FROM old_rows AS before JOIN new_rows AS after USING (id)
            WHERE (to_jsonb(before) - 'updated_at') IS DISTINCT FROM (to_jsonb(after) - 'updated_at')
              AND ({_CLAIM_DISCLOSED.format(claim="before")} OR {_CLAIM_DISCLOSED.format(claim="after")})
        ));
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION incident_disclosed_links_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM incident_disclosed_changed(ARRAY(SELECT incident_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM incident_disclosed_changed(ARRAY(SELECT incident_id FROM old_rows));
    ELSE
        PERFORM incident_disclosed_changed(ARRAY(
            SELECT unnest(ARRAY[before.incident_id, after.incident_id])
            FROM old_rows AS before JOIN new_rows AS after USING (id)
            WHERE to_jsonb(before) IS DISTINCT FROM to_jsonb(after)
        ));
    END IF;
    RETURN NULL;
END
$$;
"""
)


def _children_triggers(table: str, function: str) -> str:
    return "".join(
        f"""
CREATE TRIGGER incident_disclosed_{event.lower()} AFTER {event} ON {table}
    REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION {function}();
"""
        for event, transition in (
            ("INSERT", "NEW TABLE AS new_rows"),
            ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            ("DELETE", "OLD TABLE AS old_rows"),
        )
    )


_CHILDREN = (
    ("incidents_claim", "incident_disclosed_claims_changed"),
    ("incidents_victimgroup", "incident_disclosed_links_changed"),
    ("incidents_involvement", "incident_disclosed_links_changed"),
    ("incidents_incidentplace", "incident_disclosed_links_changed"),
)

TRIGGERS_SQL = FUNCTIONS_SQL + "".join(_children_triggers(table, function) for table, function in _CHILDREN)

DROP_TRIGGERS_SQL = (
    "".join(
        f"DROP TRIGGER incident_disclosed_{event} ON {table};\n"
        for table, _ in _CHILDREN
        for event in ("insert", "update", "delete")
    )
    + """
DROP TRIGGER incident_disclosed_keep ON incidents_incident;
DROP FUNCTION incident_disclosed_links_changed();
DROP FUNCTION incident_disclosed_claims_changed();
DROP FUNCTION incident_disclosed_changed(bigint[]);
DROP FUNCTION incident_disclosed_keep();
"""
)

# Each reader's columns as they were: the incident's own. The incidents' history and export
# triggers stay off meanwhile (their search words and totals' triggers compare their columns).
COLUMNS_SQL = """
ALTER TABLE incidents_incident ADD COLUMN disclosed_version integer, ADD COLUMN disclosed_updated_at timestamptz;
ALTER TABLE incidents_incidentexportrow ADD COLUMN disclosed_version integer, ADD COLUMN disclosed_updated_at text;
SELECT set_config('tracker.incident_update_triggers_off', 'on', true);
UPDATE incidents_incident SET disclosed_version = version, disclosed_updated_at = updated_at;
SELECT set_config('tracker.incident_update_triggers_off', '', true);
UPDATE incidents_incidentexportrow SET disclosed_version = version, disclosed_updated_at = updated_at;
-- The kept totals' deferred count runs now: PostgreSQL alters no table with trigger events pending.
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE incidents_incident ALTER COLUMN disclosed_version SET NOT NULL,
    ADD CONSTRAINT incidents_incident_disclosed_version_check CHECK (disclosed_version >= 0),
    ALTER COLUMN disclosed_updated_at SET NOT NULL;
ALTER TABLE incidents_incidentexportrow ALTER COLUMN disclosed_version SET NOT NULL,
    ALTER COLUMN disclosed_updated_at SET NOT NULL;
"""

DROP_COLUMNS_SQL = """
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE incidents_incident DROP COLUMN disclosed_version, DROP COLUMN disclosed_updated_at;
ALTER TABLE incidents_incidentexportrow DROP COLUMN disclosed_version, DROP COLUMN disclosed_updated_at;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0094_export_marks_confidential_claims"),
    ]

    operations = [
        # Rows stored before migration 0086 may hold a text longer than its bounds, which PostgreSQL
        # holds on every row written (`bounds_set_aside`).
        _0086.bounds_set_aside(),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(COLUMNS_SQL, reverse_sql=DROP_COLUMNS_SQL)],
            state_operations=[
                migrations.AddField(
                    model_name="incident",
                    name="disclosed_updated_at",
                    field=incidents.models.KeptByDatabaseDateTimeField(
                        blank=True, default=django.utils.timezone.now, editable=False
                    ),
                ),
                migrations.AddField(
                    model_name="incident",
                    name="disclosed_version",
                    field=incidents.models.KeptByDatabasePositiveIntegerField(default=1, editable=False),
                ),
                migrations.AddField(
                    model_name="incidentexportrow",
                    name="disclosed_updated_at",
                    field=models.TextField(default=None),
                    preserve_default=False,
                ),
                migrations.AddField(
                    model_name="incidentexportrow",
                    name="disclosed_version",
                    field=models.IntegerField(default=None),
                    preserve_default=False,
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="incident",
            index=models.Index(fields=["disclosed_updated_at", "id"], name="incident_disclosed_updated"),
        ),
        migrations.AddIndex(
            model_name="incidentexportrow",
            index=models.Index(
                django.db.models.functions.comparison.Collate("disclosed_updated_at", "C"),
                name="export_row_disclosed_updated",
            ),
        ),
        migrations.RunSQL(REFRESH_SQL + TRIGGERS_SQL, reverse_sql=DROP_TRIGGERS_SQL + _REFRESH.REFRESH_SQL),
        _0086.bounds_added_back(),
    ]
