"""An incident's search words are stored whatever the length of its texts: where they hold more
distinct words than one tsvector does (1 MB of them and their positions), the words of as much of
their start as one always holds, where the refresh failed ("string is too long for tsvector",
SQLSTATE 54000) and with it the save that started it, a 500 page.

A description and an excerpt are bounded (migration 0086) so that each fits alone, but an
incident's words are all of its texts together: its claims' excerpts (up to 500 a write), its
places' alternate names and its organizations' aliases, however many, and renaming a place or an
organization refreshes every incident naming it. No real prose comes near (English repeats its
words: 1.4 million characters took 177 KB); texts of every word new can.

A text of up to 250,000 characters always fits, since a character takes at most 4 bytes of the
tsvector (two-character words of 4-byte characters, all new): those, nearly every incident's, are
parsed as before, without the subtransaction of a PL/pgSQL exception handler. A longer one is parsed
whole, and only when PostgreSQL refuses it are the words of its first 250,000 characters kept.
The `complete` words (the disclosed ones and the confidential claims'), joined, may overflow too:
then they are the words of the start of both texts, the disclosed first.
"""

import importlib

from django.db import migrations

_REFRESH_BEFORE = importlib.import_module(
    "incidents.migrations.0041_search_complete_words_only_where_confidential"
).REFRESH_SQL

_COMPLETE_BEFORE = "words.disclosed || nullif(to_tsvector('simple', texts.confidential), '')"
_COMPLETE_NOW = """CASE WHEN length(texts.disclosed) + coalesce(length(texts.confidential), 0) <= 250000
           THEN words.disclosed || nullif(to_tsvector('simple', texts.confidential), '')
           ELSE incident_search_words_joined(words.disclosed, texts.disclosed, texts.confidential) END"""
_DISCLOSED_BEFORE = "SELECT to_tsvector('simple', texts.disclosed) AS disclosed"
_DISCLOSED_NOW = """SELECT CASE WHEN length(texts.disclosed) <= 250000 THEN to_tsvector('simple', texts.disclosed)
        ELSE incident_search_words(texts.disclosed) END AS disclosed"""
assert _REFRESH_BEFORE.count(_COMPLETE_BEFORE) == 1, "migration 0041's search refresh no longer has the expected shape"
assert _REFRESH_BEFORE.count(_DISCLOSED_BEFORE) == 1, "migration 0041's search refresh no longer has the expected shape"

WORDS_SQL = """
CREATE FUNCTION incident_search_words(words text) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN to_tsvector('simple', words);
EXCEPTION WHEN program_limit_exceeded THEN
    -- More distinct words than one tsvector holds: those of the start that always fits.
    RETURN to_tsvector('simple', left(words, 250000));
END
$$;

CREATE FUNCTION incident_search_words_joined(disclosed tsvector, disclosed_text text, confidential_text text)
RETURNS tsvector LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN disclosed || nullif(incident_search_words(confidential_text), '');
EXCEPTION WHEN program_limit_exceeded THEN
    RETURN incident_search_words(concat_ws(' ', disclosed_text, confidential_text));
END
$$;
"""
_WORDS_BEFORE = """
DROP FUNCTION incident_search_words_joined(tsvector, text, text);
DROP FUNCTION incident_search_words(text);
"""

REFRESH_SQL = _REFRESH_BEFORE.replace(_COMPLETE_BEFORE, _COMPLETE_NOW).replace(_DISCLOSED_BEFORE, _DISCLOSED_NOW)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0086_searched_texts_bounded"),
    ]

    operations = [
        migrations.RunSQL(WORDS_SQL, reverse_sql=_WORDS_BEFORE),
        migrations.RunSQL(REFRESH_SQL, reverse_sql=_REFRESH_BEFORE),
    ]
