"""A confidential claim is marked in the kept `sources` cell of the readers who may see it:
`Daily NK [#12] [confidential claim]`, after the source's own mark if it has one. Without it, an
export by a Reviewer with Confidential access named a public source's confidential claim as any
other, and README's "Into another database" recipe imported it there as a public claim: the
informant's figures published. The mark is on the claim's item, in brackets of its own, as the
source's (migration 0088), so that a source claimed both publicly and in confidence by one incident
is listed twice, once marked. Only a claim that is hidden is marked, and hidden claims are never in
the `disclosed` cells: only the `complete` cells of the rows holding a confidential claim change,
refreshed here (those `confidential_claim_ids` names).
"""

import importlib

from django.db import migrations

_MARKS_SOURCES = importlib.import_module("incidents.migrations.0088_export_marks_confidential_sources")
_edited = importlib.import_module("incidents.migrations.0030_export_rows_filters_and_record")._edited

ITEM_MARKED = (
    _MARKS_SOURCES.ITEM_MARKED[1],
    "               csv_list_item(source.title) || ' [#' || claim.source_id || ']'\n"
    "                   || CASE WHEN source.confidential THEN ' [confidential]' ELSE '' END\n"
    "                   || CASE WHEN claim.confidential THEN ' [confidential claim]' ELSE '' END AS item,\n",
)

REFRESH_SQL = _edited(_MARKS_SOURCES.REFRESH_SQL, (ITEM_MARKED,))

REFRESH_ROWS_HOLDING_CONFIDENTIAL_CLAIMS = """
SELECT incident_export_refresh(ARRAY(
    SELECT incident_id FROM incidents_incidentexportrow WHERE confidential_claim_ids IS NOT NULL
));
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0093_notes_read_in_confidence_recorded"),
    ]

    operations = [
        migrations.RunSQL(
            REFRESH_SQL + REFRESH_ROWS_HOLDING_CONFIDENTIAL_CLAIMS,
            reverse_sql=_MARKS_SOURCES.REFRESH_SQL + REFRESH_ROWS_HOLDING_CONFIDENTIAL_CLAIMS,
        ),
    ]
