"""One-line texts (names, titles) stored without the invisible characters that hide inside words (a
soft hyphen, a zero-width space, a word joiner, a byte order mark), and with each direction override
(U+202D, U+202E) inside them written as the embedding of its direction (U+202A, U+202B), as every
write now puts them (`text_fields.normal_text`): "Daily\u200bNK" stored is "DailyNK", and a title
that read "Detention of exe.png" reads as it is written, "Detention of gnp.exe". A zero-width space
that parts two words of Thai, Lao, Tibetan, Myanmar or Khmer stays.

Migration 0112's rules, as 0120 applies them: only the rows not so already are written, each one
recorded in its history; a name whose new form another record (of its parent, for a place) bears,
or would bear, is left as it is for an analyst to tell which is meant, and so is a text that would
be blank."""

import importlib

from django.db import migrations

_0086 = importlib.import_module("incidents.migrations.0086_searched_texts_bounded")
_0112 = importlib.import_module("incidents.migrations.0112_texts_in_normal_form")
_0120 = importlib.import_module("incidents.migrations.0120_names_with_plain_spaces")

# As `incidents.text_fields.UNSPACED_LETTERS`, `_INVISIBLE_INSIDE` and `_OVERRIDES_EMBEDDED` hold them.
UNSPACED_LETTERS = "\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff"
INSIDE = f"(?<![{UNSPACED_LETTERS}])\u200b(?![{UNSPACED_LETTERS}])|[\u00ad\u2060\ufeff]"
OVERRIDES = "\u202d\u202e"


def normalize(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for model_name, name, one_line in _0112.TEXTS:
            if one_line:
                model = apps.get_model("incidents", model_name)
                cursor.execute(
                    _0112.statement(
                        model,
                        name,
                        one_line,
                        invisible=_0120.INVISIBLE,
                        spaces=_0120.SPACES,
                        directional=_0120.DIRECTIONAL,
                        overrides=OVERRIDES,
                        inside=INSIDE,
                    )
                )


class Migration(migrations.Migration):
    dependencies = [("incidents", "0122_people_sorted_as_counted")]

    operations = [
        # Rows stored before migration 0086 may hold a text longer than its bounds, which PostgreSQL
        # holds on every row written (`bounds_set_aside`).
        _0086.bounds_set_aside(),
        migrations.RunPython(normalize, migrations.RunPython.noop),
        _0086.bounds_added_back(),
    ]
