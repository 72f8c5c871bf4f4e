"""The kept export rows hold their incident's type id (issue 19, goal 1): an export by type selects
the rows of its types' ids (`incident_type_id IN (…)`, exports.kept_rows), which PostgreSQL counts
from its statistics, and reads a rare type's rows from an index of their own, newest first
(`export_row_type`). Said of the slug cell, the types' slugs were read in the statement itself, so
PostgreSQL could not tell a rare type from a common one and read every row through the order index.

`incident_export_refresh` (migrations 0028, 0030) writes the new column with the cells; its triggers
already refresh a row when its incident's type changes. The existing rows are filled by rewriting the
table in the order they are stored, so that they stay stored newest first (the export reads them
so), with its indexes built anew: 52-74 seconds at 1,000,000 incidents on a busy 2-core machine, during
which the kept rows are locked (ACCESS EXCLUSIVE): exports, and writes to incidents, wait for it
(bench/README.md, "Incident types said of the kept rows' type id").
"""

import importlib

from django.db import migrations, models

_FILTERS_AND_RECORD = importlib.import_module("incidents.migrations.0030_export_rows_filters_and_record")

_TABLE = "incidents_incidentexportrow"
_COLUMNS_OF_0030 = _FILTERS_AND_RECORD._COLUMNS
_COLUMNS = tuple(
    new for column in _COLUMNS_OF_0030 for new in ((column, "incident_type_id") if column == "type" else (column,))
)

# 0030's refresh, which also writes the incident's type id beside its slug.
REFRESH_SQL = _FILTERS_AND_RECORD._edited(
    _FILTERS_AND_RECORD.REFRESH_SQL,
    (
        (", ".join(_COLUMNS_OF_0030) + ")", ", ".join(_COLUMNS) + ")"),
        (
            ", ".join(f"{column} = EXCLUDED.{column}" for column in _COLUMNS_OF_0030[1:]),
            ", ".join(f"{column} = EXCLUDED.{column}" for column in _COLUMNS[1:]),
        ),
        ("           incident_type.slug,\n", "           incident_type.slug,\n           incident.incident_type_id,\n"),
    ),
)

# Filled by rewriting the table (a change of the column's type to itself, computed from each row's
# incident by a function: a USING clause may not hold a subquery), in the order the rows are stored,
# with every index built anew. An UPDATE of every row left the table and its indexes twice their
# size (460 -> 929 MB, 695 -> 1,565 MB with its indexes at 1,000,000 incidents) until a VACUUM FULL.
FILL_SQL = f"""
CREATE FUNCTION pg_temp.incident_type_of(incident bigint) RETURNS bigint LANGUAGE sql STABLE
RETURN (SELECT incident_type_id FROM incidents_incident WHERE id = incident);
ALTER TABLE {_TABLE} ALTER COLUMN incident_type_id TYPE bigint USING pg_temp.incident_type_of(incident_id),
    ALTER COLUMN incident_type_id SET NOT NULL;
DROP FUNCTION pg_temp.incident_type_of(bigint);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0039_export_rows_by_change_time_and_merged"),
    ]

    operations = [
        # Added empty, then filled: NOT NULL once every row holds its type.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="incidentexportrow",
                    name="incident_type_id",
                    field=models.BigIntegerField(),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"ALTER TABLE {_TABLE} ADD COLUMN incident_type_id bigint",
                    reverse_sql=f"ALTER TABLE {_TABLE} DROP COLUMN incident_type_id",
                ),
            ],
        ),
        migrations.RunSQL(REFRESH_SQL, reverse_sql=_FILTERS_AND_RECORD.REFRESH_SQL),
        migrations.RunSQL(FILL_SQL, reverse_sql=migrations.RunSQL.noop),
        # After the rewrite, which leaves no updated row behind (no `indcheckxmin`, migration 0030).
        migrations.AddIndex(
            model_name="incidentexportrow",
            index=models.Index(fields=["incident_type_id", "-date_start", "-incident"], name="export_row_type"),
        ),
        # A change of a column's type drops its statistics, without which PostgreSQL takes each type
        # for 0.5% of the rows: it would sort the 600,000 rows of two common types rather than read
        # them in order. A third of a second at 1,000,000 incidents.
        migrations.RunSQL(f"ANALYZE {_TABLE} (incident_type_id)", reverse_sql=migrations.RunSQL.noop),
    ]
