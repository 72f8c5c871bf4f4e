"""An incident's search words leave out the invisible characters that sit inside a word in text
pasted from a PDF or a web page (text_fields.py's `INVISIBLE_IN_WORDS`): a soft hyphen (where a PDF
broke the word across lines), a zero-width space (a page's break opportunity in a long
word), a word joiner or a byte order mark. PostgreSQL's parser took each for a break between two
words, so `repatriation` did not find the incident whose title reads "repatriation" on every page.

The joiners that carry meaning are kept: a zero-width non-joiner parts a Persian word as its writer
meant (می‌خواهم), a zero-width joiner makes a ligature or an emoji sequence.

A zero-width space beside a letter of a script written without spaces between its words (Thai,
Lao, Tibetan, Myanmar, Khmer: text_fields.py's `UNSPACED_LETTERS`) parts two words, as Unicode means it
there, and is read as a space: left out, a Thai report's "ผู้ลี้ภัย" and "เกาหลีเหนือ" ("North Korean
refugees") parted by one would be one word, which `เกาหลีเหนือ` would not find.

Every incident's words are made again, as migration 0118 made them."""

import importlib

from django.db import migrations

_WORDS_0118 = importlib.import_module("incidents.migrations.0118_search_words_of_every_script")

# text_fields.py's INVISIBLE_IN_WORDS, which must stay the same, as PostgreSQL's escapes.
_INVISIBLE_IN_WORDS = r"U&'\00AD\200B\2060\FEFF'"

_TEXT_0118 = _WORDS_0118.TEXT_SQL.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
assert _TEXT_0118.count("normalize(words, NFKC)") == 1, "migration 0118's search text no longer has the expected shape"
# text_fields.py's UNSPACED_LETTERS, which must stay the same.
_UNSPACED_LETTERS = "\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff"
_UNSPACED_BREAK = f"(?<=[{_UNSPACED_LETTERS}])\u200b|\u200b(?=[{_UNSPACED_LETTERS}])"
TEXT_SQL = _TEXT_0118.replace(
    "normalize(words, NFKC)",
    f"normalize(translate(regexp_replace(words, '{_UNSPACED_BREAK}', ' ', 'g'), {_INVISIBLE_IN_WORDS}, ''), NFKC)",
)


class Migration(migrations.Migration):
    dependencies = [("incidents", "0118_search_words_of_every_script")]

    operations = [
        migrations.RunSQL(TEXT_SQL, reverse_sql=_TEXT_0118),
        migrations.RunSQL(_WORDS_0118.REBUILD_SQL, reverse_sql=_WORDS_0118.REBUILD_SQL),
    ]
