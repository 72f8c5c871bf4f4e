"""An incident's version and change time for the public: `public_version` and `public_updated_at`,
which do not move with a correction of the exact coordinates of a sensitive place it happened at.

The public reads an incident as staff without Confidential access read it (`disclosed_*`, migration
0095), but for the places it happened at: a sensitive place, or a place inside one, shows it the
coarsened coordinates (`coordinates_for`), the same before and after staff correct the place's own.
Its incidents' version moved all the same (`services._incidents_show_place_changed`): the public's
`version`, `updated_at` and ETag, its incremental sync (the API's and the CSV's) and the next
release's CHANGES.csv told it that staff had corrected where the place lies, and when. The database
keeps the public's columns, whoever writes, as it keeps `disclosed_*`:

- the incident's row trigger `incident_public_keep` is migration 0098's `record_public_keep`, with
  the arguments 0097 gives `record_disclosed_keep` (no link; the writers and the generated columns
  are bookkeeping): a change of the row is one the public sees, as it is one staff without
  Confidential access see, and so is a write that says so (`public_updated_at` set to the new
  `updated_at`, once a version);
- `incident_disclosed_changed`, through which the statement triggers of the claims, victim groups,
  involvements and places' links count the new version of the incidents whose rows those staff see
  changed, says so to the public too (it sees those rows alike), and makes the export rows' public
  cells with theirs. It now picks the incidents whose change time either audience is not yet told.

The services' new versions of many incidents at once (`_incidents_new_version`) say so for the
audiences they name: all but for a place's exact coordinates corrected while it is coarsened.

The export rows keep the public's cells (`exports.version_cells`), and both tables an index for the
public's sync, as for theirs. The existing rows start with the public's columns equal to `disclosed_*`
(nothing moves for any reader), set-based, with the incidents' history and export triggers off;
`VACUUM` both tables after it.
"""

import importlib
import re

import django.db.models.functions.comparison
import django.utils.timezone
from django.db import migrations, models

import incidents.models

# The refresh as migration 0100 left it.
_REFRESH = importlib.import_module("incidents.migrations.0100_claim_span_from_any_figure")
_INCIDENTS_KEPT = importlib.import_module("incidents.migrations.0095_versions_per_audience")
_edited = importlib.import_module("incidents.migrations.0030_export_rows_filters_and_record")._edited
_0086 = importlib.import_module("incidents.migrations.0086_searched_texts_bounded")

KEPT_TIME = _INCIDENTS_KEPT.KEPT_TIME

REFRESH_SQL = _edited(
    _REFRESH.REFRESH_SQL,
    (
        (
            "version, disclosed_updated_at, disclosed_version)",
            "version, disclosed_updated_at, disclosed_version, public_updated_at, public_version)",
        ),
        (
            "           incident.disclosed_version\n",
            "           incident.disclosed_version,\n"
            f"           {KEPT_TIME.format('incident.public_updated_at')},\n"
            "           incident.public_version\n",
        ),
        (
            "disclosed_version = EXCLUDED.disclosed_version;",
            "disclosed_version = EXCLUDED.disclosed_version, public_updated_at = EXCLUDED.public_updated_at, "
            "public_version = EXCLUDED.public_version;",
        ),
    ),
)

# Migration 0095's `incident_disclosed_changed`, made again as it was on the way back.
CHANGED_BEFORE_SQL = (
    re.search(r"CREATE FUNCTION incident_disclosed_changed\(.*?\n\$\$;\n", _INCIDENTS_KEPT.FUNCTIONS_SQL, re.DOTALL)
    .group(0)
    .replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
)

CHANGED_SQL = _edited(
    CHANGED_BEFORE_SQL,
    (
        (
            "WHERE id = ANY (incident_ids) AND disclosed_updated_at IS DISTINCT FROM updated_at\n",
            "WHERE id = ANY (incident_ids)\n"
            "          AND (disclosed_updated_at IS DISTINCT FROM updated_at OR public_updated_at IS DISTINCT FROM updated_at)\n",
        ),
        (
            "SET disclosed_updated_at = updated_at WHERE",
            "SET disclosed_updated_at = updated_at, public_updated_at = updated_at WHERE",
        ),
        (
            f"        disclosed_updated_at = {KEPT_TIME.format('incident.disclosed_updated_at')}\n",
            f"        disclosed_updated_at = {KEPT_TIME.format('incident.disclosed_updated_at')},\n"
            "        public_version = incident.public_version,\n"
            f"        public_updated_at = {KEPT_TIME.format('incident.public_updated_at')}\n",
        ),
    ),
)

# After `incident_disclosed_keep` and `incident_disclosed_keep_writer` (PostgreSQL runs a table's
# BEFORE triggers in the order of their names), which it does not depend on.
KEEP_SQL = """
CREATE TRIGGER incident_public_keep BEFORE INSERT OR UPDATE ON incidents_incident
    FOR EACH ROW EXECUTE FUNCTION record_public_keep('', 'updated_by_id', 'disclosed_updated_by_id', 'public_id', 'date_label');
"""

DROP_KEEP_SQL = "DROP TRIGGER incident_public_keep ON incidents_incident;\n"

# The public's columns as they were: the disclosed ones. The incidents' history and export triggers
# stay off meanwhile (their search words and totals' triggers compare their columns).
COLUMNS_SQL = """
ALTER TABLE incidents_incident ADD COLUMN public_version integer, ADD COLUMN public_updated_at timestamptz;
ALTER TABLE incidents_incidentexportrow ADD COLUMN public_version integer, ADD COLUMN public_updated_at text;
SELECT set_config('tracker.incident_update_triggers_off', 'on', true);
UPDATE incidents_incident SET public_version = disclosed_version, public_updated_at = disclosed_updated_at;
SELECT set_config('tracker.incident_update_triggers_off', '', true);
UPDATE incidents_incidentexportrow SET public_version = disclosed_version, public_updated_at = disclosed_updated_at;
-- The kept totals' deferred count runs now: PostgreSQL alters no table with trigger events pending.
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE incidents_incident ALTER COLUMN public_version SET NOT NULL,
    ADD CONSTRAINT incidents_incident_public_version_check CHECK (public_version >= 0),
    ALTER COLUMN public_updated_at SET NOT NULL;
ALTER TABLE incidents_incidentexportrow ALTER COLUMN public_version SET NOT NULL,
    ALTER COLUMN public_updated_at SET NOT NULL;
"""

DROP_COLUMNS_SQL = """
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE incidents_incident DROP COLUMN public_version, DROP COLUMN public_updated_at;
ALTER TABLE incidents_incidentexportrow DROP COLUMN public_version, DROP COLUMN public_updated_at;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0101_place_public_versions"),
    ]

    operations = [
        # The kept totals' deferred counts run now (those of writes earlier in one transaction):
        # PostgreSQL alters no table with trigger events pending.
        migrations.RunSQL("SET CONSTRAINTS ALL IMMEDIATE", migrations.RunSQL.noop),
        # Rows stored before migration 0086 may hold a text longer than its bounds, which PostgreSQL
        # holds on every row written (`bounds_set_aside`).
        _0086.bounds_set_aside(),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(COLUMNS_SQL, reverse_sql=DROP_COLUMNS_SQL)],
            state_operations=[
                migrations.AddField(
                    model_name="incident",
                    name="public_updated_at",
                    field=incidents.models.KeptByDatabaseDateTimeField(
                        blank=True, default=django.utils.timezone.now, editable=False
                    ),
                ),
                migrations.AddField(
                    model_name="incident",
                    name="public_version",
                    field=incidents.models.KeptByDatabasePositiveIntegerField(default=1, editable=False),
                ),
                migrations.AddField(
                    model_name="incidentexportrow",
                    name="public_updated_at",
                    field=models.TextField(default=None),
                    preserve_default=False,
                ),
                migrations.AddField(
                    model_name="incidentexportrow",
                    name="public_version",
                    field=models.IntegerField(default=None),
                    preserve_default=False,
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="incident",
            index=models.Index(fields=["public_updated_at", "id"], name="incident_public_updated"),
        ),
        migrations.AddIndex(
            model_name="incidentexportrow",
            index=models.Index(
                django.db.models.functions.comparison.Collate("public_updated_at", "C"),
                name="export_row_public_updated",
            ),
        ),
        migrations.RunSQL(
            REFRESH_SQL + CHANGED_SQL + KEEP_SQL,
            reverse_sql=DROP_KEEP_SQL + CHANGED_BEFORE_SQL + _REFRESH.REFRESH_SQL,
        ),
        _0086.bounds_added_back(),
        # The same on the way back, where this runs first.
        migrations.RunSQL(migrations.RunSQL.noop, "SET CONSTRAINTS ALL IMMEDIATE"),
    ]
