"""The export's kept rows answer its filters and its record themselves (issue 19, goal 1).

Migration 0028 keeps each incident's CSV row (IncidentExportRow); an export copied the kept rows of
the incidents its queryset selected. Selecting them first cost more than copying them (at 1,000,000
incidents, a country's semi-join over every place link, then every kept row read for a hash of the
ids), and a reader with confidential access was recorded (incidents.access.export_contents) by a
query of its own over every claim of the exported incidents, with their sources (1.3-2.8 s: it read
all 1.75M claims to find the 89,400 confidential ones), which ran the selection twice more.

Now each kept row also holds:
- `confidential`, the incident's flag: with its review state, merge and dates, which it held
  already, the kept rows can answer a reader's visibility and the common filters by their own
  columns (incidents.exports.kept_rows);
- `confidential_claim_ids` and `confidential_source_ids`: what ClaimQuerySet.confidential() selects
  among the incident's claims, and the confidential sources among theirs, NULL for none, computed
  by `incident_export_refresh` from the same claims as the claims' cells, in the same statements;
and three indexes serve the export: its order (newest first, as the rows are stored), its date
range (a GiST index of the rows' ranges), and the rows with confidential claims.
The trigger on incidents also refreshes a row when only the incident's confidentiality changed.
"""

import importlib

import django.contrib.postgres.fields
import django.contrib.postgres.indexes
import django.db.models.expressions
from django.db import migrations, models

_EXPORT_ROWS = importlib.import_module("incidents.migrations.0028_incident_export_rows")


_SQL = _EXPORT_ROWS.EXPORT_SQL
# 0028's refresh, as a statement that replaces the function.
_REFRESH_OF_0028 = _SQL[
    _SQL.index("CREATE FUNCTION incident_export_refresh") : _SQL.index(
        "CREATE FUNCTION incident_export_incidents_changed"
    )
].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)

_NEW_COLUMNS = ("confidential", "confidential_claim_ids", "confidential_source_ids")
_COLUMNS = (*_EXPORT_ROWS.COLUMNS[:-2], *_NEW_COLUMNS, *_EXPORT_ROWS.COLUMNS[-2:])


def _edited(function: str, replacements: tuple[tuple[str, str], ...]) -> str:
    for old, new in replacements:
        if function.count(old) != 1:
            raise ValueError(f"migration 0028's refresh no longer holds {old!r} once")
        function = function.replace(old, new)
    return function


# The claims' CTEs also keep each claim's id and whether its source is confidential, and the claims'
# aggregate gathers what ClaimQuerySet.confidential() selects (a confidential claim, or a claim of a
# confidential source) and the confidential sources among theirs: NULL when there are none.
REFRESH_SQL = _edited(
    _REFRESH_OF_0028,
    (
        (", ".join(_EXPORT_ROWS.COLUMNS) + ")", ", ".join(_COLUMNS) + ")"),
        (
            ", ".join(f"{column} = EXCLUDED.{column}" for column in _EXPORT_ROWS.COLUMNS[1:]),
            ", ".join(f"{column} = EXCLUDED.{column}" for column in _COLUMNS[1:]),
        ),
        (
            "claim.confidential OR source.confidential AS hidden,",
            "claim.id AS claim_id, claim.source_id, source.confidential AS source_confidential,\n"
            "               claim.confidential OR source.confidential AS hidden,",
        ),
        (
            "max(high) AS complete_claim_max\n",
            "max(high) AS complete_claim_max,\n"
            "               array_agg(claim_id ORDER BY claim_id) FILTER (WHERE hidden) AS confidential_claim_ids,\n"
            "               array_agg(DISTINCT source_id ORDER BY source_id) FILTER (WHERE source_confidential)\n"
            "                   AS confidential_source_ids\n",
        ),
        (
            "claims.complete_claim_max,\n",
            "claims.complete_claim_max,\n           incident.confidential,\n           claims.confidential_claim_ids,\n"
            "           claims.confidential_source_ids,\n",
        ),
    ),
)

# 0028's trigger on incidents, which also refreshes the rows whose incident's confidentiality changed.
_INCIDENTS_CHANGED_OF_0028 = _SQL[
    _SQL.index("CREATE FUNCTION incident_export_incidents_changed") : _SQL.index("-- Place links, involvements")
].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
INCIDENTS_CHANGED_SQL = _edited(
    _INCIDENTS_CHANGED_OF_0028,
    (
        (
            "new_rows.merged_into_id, new_rows.updated_at,",
            "new_rows.merged_into_id, new_rows.confidential, new_rows.updated_at,",
        ),
        (
            "old_rows.merged_into_id, old_rows.updated_at,",
            "old_rows.merged_into_id, old_rows.confidential, old_rows.updated_at,",
        ),
    ),
)

# The rows of incidents with confidential claims, the only ones not NULL, and of confidential
# incidents, the only ones not false: the same as the refresh computes, over those alone.
FILL_SQL = """
UPDATE incidents_incidentexportrow AS export_row
SET confidential_claim_ids = kept.claim_ids, confidential_source_ids = kept.source_ids
FROM (
    SELECT claim.incident_id,
           array_agg(claim.id ORDER BY claim.id) AS claim_ids,
           array_agg(DISTINCT claim.source_id ORDER BY claim.source_id) FILTER (WHERE source.confidential)
               AS source_ids
    FROM incidents_claim AS claim JOIN incidents_source AS source ON source.id = claim.source_id
    WHERE claim.confidential OR source.confidential
    GROUP BY claim.incident_id
) AS kept
WHERE export_row.incident_id = kept.incident_id;
UPDATE incidents_incidentexportrow AS export_row SET confidential = true
FROM incidents_incident AS incident WHERE incident.id = export_row.incident_id AND incident.confidential;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0029_facet_totals"),
    ]

    operations = [
        migrations.AddField(
            model_name="incidentexportrow",
            name="confidential_claim_ids",
            field=django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), null=True, size=None),
        ),
        migrations.AddField(
            model_name="incidentexportrow",
            name="confidential_source_ids",
            field=django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), null=True, size=None),
        ),
        migrations.AddField(
            model_name="incidentexportrow",
            name="confidential",
            field=models.BooleanField(default=False),
            preserve_default=False,
        ),
        migrations.RunSQL(
            REFRESH_SQL + INCIDENTS_CHANGED_SQL, reverse_sql=_REFRESH_OF_0028 + _INCIDENTS_CHANGED_OF_0028
        ),
        # Before the rows are filled, which then update it: built after, over the rows the fill
        # updated, PostgreSQL would leave it unused by transactions older than itself
        # (`indcheckxmin`), and a long one elsewhere on the server kept it unused for minutes.
        migrations.AddIndex(
            model_name="incidentexportrow",
            index=models.Index(
                fields=["incident"],
                include=["confidential_claim_ids", "confidential_source_ids"],
                condition=models.Q(confidential_claim_ids__isnull=False),
                name="export_row_confidential",
            ),
        ),
        migrations.AddIndex(
            model_name="incidentexportrow",
            index=django.contrib.postgres.indexes.GistIndex(
                django.db.models.expressions.Func(
                    models.F("date_start"),
                    models.F("date_end"),
                    models.Value("[]"),
                    function="daterange",
                    output_field=django.contrib.postgres.fields.DateRangeField(),
                ),
                name="export_row_span",
            ),
        ),
        migrations.AddIndex(
            model_name="incidentexportrow",
            index=models.Index(fields=["-date_start", "-incident"], name="export_row_newest"),
        ),
        migrations.RunSQL(FILL_SQL, reverse_sql=migrations.RunSQL.noop),
    ]
