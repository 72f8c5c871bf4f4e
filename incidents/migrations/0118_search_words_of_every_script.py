"""An incident's search words are made so that a word is found as its readers write it, in each of
the languages the incidents are recorded in (incidents/search.py):

- Chinese and Japanese put no space between words, and Korean writes its nouns together
  (강제북송, "forced repatriation", is 강제 + 북송): each run of their characters is searched by its
  overlapping pairs (中国公安 is 中国 国公 公安), so `延吉` and `脱北者` find 中国公安在延吉市抓捕了脱北者,
  and `북송` finds 강제북송을. A search of such a word is the phrase of its pairs (search.py).
- A letter's accents are left out (the `unaccent` extension's dictionary): `Sinuiju` finds
  `Sinŭiju` and the other way round, `Tumen` `Tümen`, `еще` `ещё`.
- Compatibility forms are their plain ones (NFKC): full-width `HRW` is `HRW`, half-width katakana
  the full-width.
- McCune-Reischauer's apostrophe of an aspirated consonant (k', t', p', ch' before a vowel) is
  left out: `Chongjin` finds `Ch'ŏngjin`, `Pyongyang` `P'yŏngyang`, `Manpo` `Manp'o`. An English
  apostrophe is kept as the break it was (`Korea's` is `korea s`).
- A hyphenated word is its parts alone (`Kim Jong-un` is `kim jong un`), where `simple` also kept
  the whole (`jong-un`), which a search of `Jong-un` required and `Kim Jong Un` lacked.

The words are kept in the same table and indexes; every incident's are made again here: the table
emptied, its indexes dropped, the words written, the indexes built over them (faster than an update
of every row, and no dead rows left). Searches wait meanwhile (an ACCESS EXCLUSIVE lock).

A text's pairs take more room than its words: the 250,000 characters of text a tsvector always
holds (migration 0087) are counted on the text as parsed, its pairs written out, so that bound
holds as it did. (Of the accents' replacements only `©`, `®` and `±` are longer than the character
they replace, and those are no letters: the parser never hands them to the dictionary.)
"""

import importlib

from django.contrib.postgres.operations import UnaccentExtension
from django.db import migrations

_TEXTS_BEFORE = importlib.import_module("incidents.migrations.0035_search_texts_in_a_fixed_order").TEXTS_SQL
_WORDS_BEFORE = importlib.import_module("incidents.migrations.0087_search_words_of_any_length")
_REFRESH_BEFORE = _WORDS_BEFORE.REFRESH_SQL

# The characters of Korean, Chinese and Japanese words (search.py's `CJK_LETTERS`, which must stay
# the same): Hangul jamo and syllables, kana (without the middle dot ・, which parts names), the
# iteration marks (U+3005-U+3007), and the CJK ideographs.
CJK_LETTERS = (
    r"\u1100-\u11ff\u3005-\u3007\u3040-\u30fa\u30fc-\u30ff\u3130-\u318f\u31f0-\u31ff"
    r"\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3\uf900-\ufaff\U00020000-\U0003134f"
)

# McCune-Reischauer's apostrophe of aspiration (search.py's `MR_APOSTROPHE`, which must stay the
# same): after k, t, p or (c)h and before a vowel, in any of the forms it is typed in.
MR_APOSTROPHE = "(?<=[kpthKPTH])['’ʼ‘`](?=[aeiouwyAEIOUWYŏŭöüŎŬÖÜ])"

CONFIG_SQL = """
CREATE TEXT SEARCH CONFIGURATION incident_search (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION incident_search ALTER MAPPING FOR word, hword_part, numword WITH unaccent, simple;
ALTER TEXT SEARCH CONFIGURATION incident_search DROP MAPPING FOR asciihword, hword, numhword;
"""
_CONFIG_BEFORE = "DROP TEXT SEARCH CONFIGURATION incident_search;"

TEXT_SQL = f"""
CREATE FUNCTION incident_search_text(words text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
-- McCune-Reischauer's apostrophes left out; each run of CJK letters apart from the letters around
-- it, then each letter inside a run doubled: 中国公安 is 中国 国公 公安. A text of ASCII alone (most,
-- in English: one byte a character) is in normal form and has no CJK letter, which counting its
-- characters tells at a fraction of the cost of the other steps.
RETURN CASE WHEN octet_length(words) = length(words) THEN regexp_replace(words, $mr${MR_APOSTROPHE}$mr$, '', 'g')
ELSE regexp_replace(
    regexp_replace(
        regexp_replace(normalize(words, NFKC), $mr${MR_APOSTROPHE}$mr$, '', 'g'),
        '[{CJK_LETTERS}]+', ' \\& ', 'g'
    ),
    '(?<=[{CJK_LETTERS}])[{CJK_LETTERS}](?=[{CJK_LETTERS}])', '\\& \\&', 'g'
) END;
"""
_TEXT_BEFORE = "DROP FUNCTION incident_search_text(text);"

# The texts as parsed (migration 0035's, each through incident_search_text).
_AS_PARSED = {
    "    SELECT incident.id,\n           concat_ws(": "    SELECT incident.id,\n           incident_search_text(concat_ws(",
    "               claims.disclosed),\n           claims.confidential\n": (
        "               claims.disclosed)),\n           incident_search_text(claims.confidential)\n"
    ),
}
TEXTS_SQL = _TEXTS_BEFORE
for before, now in _AS_PARSED.items():
    assert TEXTS_SQL.count(before) == 1, "migration 0035's search texts no longer have the expected shape"
    TEXTS_SQL = TEXTS_SQL.replace(before, now)


def _in_incident_search(sql: str, occurrences: int) -> str:
    assert sql.count("to_tsvector('simple', ") == occurrences, "the search words no longer have the expected shape"
    return sql.replace("to_tsvector('simple', ", "to_tsvector('incident_search', ")


REFRESH_SQL = _in_incident_search(_REFRESH_BEFORE, 2)
WORDS_SQL = _in_incident_search(_WORDS_BEFORE.WORDS_SQL, 2).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
_WORDS_SQL_BEFORE = _WORDS_BEFORE.WORDS_SQL.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")

REBUILD_SQL = """
SET LOCAL maintenance_work_mem = '256MB';
-- Checks still deferred in this transaction, run first: TRUNCATE refuses a table with pending
-- trigger events (a `migrate` run in a transaction that wrote incidents before it, as a test's).
SET CONSTRAINTS ALL IMMEDIATE;
LOCK TABLE incidents_incidentsearchdocument IN ACCESS EXCLUSIVE MODE;
DROP INDEX incident_search_disclosed;
DROP INDEX incident_search_complete;
TRUNCATE incidents_incidentsearchdocument;
SELECT incident_search_refresh(ARRAY(SELECT id FROM incidents_incident ORDER BY id));
CREATE INDEX incident_search_disclosed ON incidents_incidentsearchdocument USING gin (disclosed);
CREATE INDEX incident_search_complete ON incidents_incidentsearchdocument USING gin (complete);
ANALYZE incidents_incidentsearchdocument;
"""


class Migration(migrations.Migration):
    dependencies = [("incidents", "0117_dates_begun")]

    operations = [
        UnaccentExtension(),
        migrations.RunSQL(CONFIG_SQL + TEXT_SQL, reverse_sql=_TEXT_BEFORE + _CONFIG_BEFORE),
        # Back, every incident's words made again once the functions are as they were.
        migrations.RunSQL(migrations.RunSQL.noop, reverse_sql=REBUILD_SQL),
        migrations.RunSQL(
            TEXTS_SQL + REFRESH_SQL + WORDS_SQL, reverse_sql=_TEXTS_BEFORE + _REFRESH_BEFORE + _WORDS_SQL_BEFORE
        ),
        migrations.RunSQL(REBUILD_SQL, reverse_sql=migrations.RunSQL.noop),
    ]
