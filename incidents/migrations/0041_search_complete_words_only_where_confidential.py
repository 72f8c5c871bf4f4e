"""An incident's `complete` search words (migration 0016) are kept only when it has confidential
claim words: NULL otherwise, where they were a copy of its `disclosed` words.

At 1,000,000 demo incidents 86,754 have confidential claim words: the other 913,246 copies made the
table twice as wide as its words (1,635 MB), its second GIN index as large as the first, and every
refresh (the demo load, an import) parse and write both. A reader with the confidential permission
now searches `complete` where it is kept and `disclosed` where it is not (`IncidentSearchDocument`'s
`complete__or_disclosed` lookup, incidents/search.py); a reader without it reads `disclosed` as before.

The stored words are converted by rewriting the table once (`ALTER COLUMN … TYPE … USING`): a new,
compact heap and every index built anew from it, where an UPDATE of 913,246 rows would add a row
version and an entry in both GIN indexes for each and leave the old ones for a VACUUM FULL. The
rewrite holds an ACCESS EXCLUSIVE lock on the table until the migration commits (searches wait). A
row is emptied where its `complete` words equal its `disclosed` ones, which is exactly when the refresh
found no confidential claim word (these words come after the disclosed ones: any of them makes the
two differ), without parsing any text again. The rewrite drops the column's statistics: taken again.
"""

import importlib

import django.contrib.postgres.search
from django.db import migrations

# The refresh of migration 0026, now writing NULL when the confidential claims have no word:
# `to_tsvector` of no text (NULL) or an empty one (nullif) is NULL, and so is `disclosed || NULL`.
_COMPLETE_BEFORE = "words.disclosed || to_tsvector('simple', coalesce(texts.confidential, ''))"
_COMPLETE_NOW = "words.disclosed || nullif(to_tsvector('simple', texts.confidential), '')"

_REFRESH_BEFORE = importlib.import_module("incidents.migrations.0026_counts_and_search_words_in_bulk").REFRESH_SQL
assert _REFRESH_BEFORE.count(_COMPLETE_BEFORE) == 1, "migration 0026's search refresh no longer has the expected shape"
REFRESH_SQL = _REFRESH_BEFORE.replace(_COMPLETE_BEFORE, _COMPLETE_NOW)

CONVERT_SQL = """
SET LOCAL maintenance_work_mem = '256MB';
ALTER TABLE incidents_incidentsearchdocument ALTER COLUMN complete TYPE tsvector USING nullif(complete, disclosed);
ANALYZE incidents_incidentsearchdocument;
"""
# Back: every row's complete words again, before the column is NOT NULL again.
_CONVERT_BEFORE = """
SET LOCAL maintenance_work_mem = '256MB';
ALTER TABLE incidents_incidentsearchdocument ALTER COLUMN complete TYPE tsvector USING coalesce(complete, disclosed);
ANALYZE incidents_incidentsearchdocument;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0040_export_rows_by_type"),
    ]

    operations = [
        migrations.AlterField(
            model_name="incidentsearchdocument",
            name="complete",
            field=django.contrib.postgres.search.SearchVectorField(null=True),
        ),
        migrations.RunSQL(REFRESH_SQL, reverse_sql=_REFRESH_BEFORE),
        migrations.RunSQL(CONVERT_SQL, reverse_sql=_CONVERT_BEFORE),
    ]
