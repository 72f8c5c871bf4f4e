"""A confidential source is marked in the kept `sources` cell of the readers who may see it:
`Testimony [#12] [confidential]`. Without the mark, an export by a Reviewer with Confidential access
named the informant's source as any other, and README's "Into another database" recipe (the ids
emptied, `import_incidents --create-missing`) created it there as an ordinary public source.

The mark follows the item's `[#ID]`, in brackets of its own, so that the recipe's removal of the
ids leaves it (`Testimony [confidential]`), and it cannot be read as part of a title: a title
holding `[` is written in double quotes (`csv_list_item`). The claims' items are built once for both
audiences; only a claim of a confidential source is marked, and such a claim is `hidden`, never in
the `disclosed` cells: those of every row stay as they were, and only the `complete` cells of the
rows citing a confidential source change, the rows `confidential_source_ids` names, refreshed here
(10,900 of 200,000 demo incidents, `--seed 7`: 4.0 s on a 2-core machine at a load of 5; at
1,000,000, about 55,000 rows and 20 s, estimated). `VACUUM` the table after it, so that the record
of a confidential reader's export reads the order index alone again. The incident's own confidentiality is the kept `confidential` column (migration
0030), which the export writes as it is (`exports.copy_statement`).
"""

import importlib

from django.db import migrations

_ORIGINS = importlib.import_module("incidents.migrations.0043_export_rows_independent_origins")
_edited = importlib.import_module("incidents.migrations.0030_export_rows_filters_and_record")._edited

# The claims' item, as 0028 wrote it and as it is marked now (tests apply it to older refreshes too).
ITEM_MARKED = (
    "               csv_list_item(source.title) || ' [#' || claim.source_id || ']' AS item,\n",
    "               csv_list_item(source.title) || ' [#' || claim.source_id || ']'\n"
    "                   || CASE WHEN source.confidential THEN ' [confidential]' ELSE '' END AS item,\n",
)

REFRESH_SQL = _edited(_ORIGINS.REFRESH_SQL, (ITEM_MARKED,))

REFRESH_ROWS_CITING_CONFIDENTIAL_SOURCES = """
SELECT incident_export_refresh(ARRAY(
    SELECT incident_id FROM incidents_incidentexportrow WHERE confidential_source_ids IS NOT NULL
));
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0087_search_words_of_any_length"),
    ]

    operations = [
        migrations.RunSQL(
            REFRESH_SQL + REFRESH_ROWS_CITING_CONFIDENTIAL_SOURCES,
            reverse_sql=_ORIGINS.REFRESH_SQL + REFRESH_ROWS_CITING_CONFIDENTIAL_SOURCES,
        ),
    ]
