"""One-line texts (names, titles) stored with a no-break or typographic space written with the plain
one, without Hangul fillers at their ends, nor the directional embeddings, overrides and isolates
there where they hold none inside, as every write now puts them (`text_fields.normal_text`): so
that the unique names and the import's matching compare a stored "Daily NK" pasted from a page
with the one typed now.

Migration 0112's rules: only the rows not so already are written, each one recorded in its history;
a name whose new form another record (of its parent, for a place) bears, or would bear, is left as
it is for an analyst to tell which is meant, and so is a text that would be blank."""

import importlib

from django.db import migrations

_0112 = importlib.import_module("incidents.migrations.0112_texts_in_normal_form")
_0086 = importlib.import_module("incidents.migrations.0086_searched_texts_bounded")

# As `incidents.text_fields._INVISIBLE`, `_DIRECTIONAL` and `_SPACES_NOT_PLAIN` hold them.
INVISIBLE = _0112.INVISIBLE + "\u3164\uffa0"
DIRECTIONAL = "\u202a-\u202e\u2066-\u2069"
SPACES = "\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f"


def normalize(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for model_name, name, one_line in _0112.TEXTS:
            if one_line:
                model = apps.get_model("incidents", model_name)
                cursor.execute(
                    _0112.statement(model, name, one_line, invisible=INVISIBLE, spaces=SPACES, directional=DIRECTIONAL)
                )


class Migration(migrations.Migration):
    dependencies = [("incidents", "0119_search_words_without_invisible_breaks")]

    operations = [
        # Rows stored before migration 0086 may hold a text longer than its bounds, which PostgreSQL
        # holds on every row written (`bounds_set_aside`).
        _0086.bounds_set_aside(),
        migrations.RunPython(normalize, migrations.RunPython.noop),
        _0086.bounds_added_back(),
    ]
