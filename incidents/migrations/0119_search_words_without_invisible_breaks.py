"""An incident's search words leave out the invisible characters that sit inside a word in text
pasted from a PDF or a web page (search.py's `INVISIBLE_IN_WORDS`): a soft hyphen (where a PDF
broke the word across lines), a zero-width space (a page's break opportunity in a long
word), a word joiner or a byte order mark. PostgreSQL's parser took each for a break between two
words, so `repatriation` did not find the incident whose title reads "repatriation" on every page.

The joiners that carry meaning are kept: a zero-width non-joiner parts a Persian word as its writer
meant (می‌خواهم), a zero-width joiner makes a ligature or an emoji sequence.

Every incident's words are made again, as migration 0118 made them."""

import importlib

from django.db import migrations

_WORDS_0118 = importlib.import_module("incidents.migrations.0118_search_words_of_every_script")

# search.py's INVISIBLE_IN_WORDS, which must stay the same, as PostgreSQL's escapes.
_INVISIBLE_IN_WORDS = r"U&'\00AD\200B\2060\FEFF'"

_TEXT_0118 = _WORDS_0118.TEXT_SQL.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
assert _TEXT_0118.count("normalize(words, NFKC)") == 1, "migration 0118's search text no longer has the expected shape"
TEXT_SQL = _TEXT_0118.replace("normalize(words, NFKC)", f"normalize(translate(words, {_INVISIBLE_IN_WORDS}, ''), NFKC)")


class Migration(migrations.Migration):
    dependencies = [("incidents", "0118_search_words_of_every_script")]

    operations = [
        migrations.RunSQL(TEXT_SQL, reverse_sql=_TEXT_0118),
        migrations.RunSQL(_WORDS_0118.REBUILD_SQL, reverse_sql=_WORDS_0118.REBUILD_SQL),
    ]
