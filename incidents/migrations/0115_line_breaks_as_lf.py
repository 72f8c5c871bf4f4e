"""Line breaks stored as LF, as every write now puts them (`incidents.text_fields.normal_text`): a
description saved from a browser held CR LF (HTML's form submission sends a textarea's line breaks
so), one written through the API or the import LF, and the same text compared as another.

Only the rows holding a CR are written; each one written is recorded in its history, as a write by
SQL is. (A write sending such a text back as read was already no change: `services.same_text`.)
"""

import importlib

from django.db import migrations

_0086 = importlib.import_module("incidents.migrations.0086_searched_texts_bounded")

# (model, field): the texts of more than one line analysts write (migration 0112's others are one line).
TEXTS = [
    ("Organization", "description"),
    ("IncidentType", "description"),
    ("Source", "notes"),
    ("Incident", "description"),
    ("VictimGroup", "description"),
    ("Claim", "excerpt"),
    ("Claim", "locator"),
    ("Response", "description"),
]


def line_breaks_as_lf(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for model_name, name in TEXTS:
            model = apps.get_model("incidents", model_name)
            table, column = model._meta.db_table, model._meta.get_field(name).column
            cursor.execute(
                f"UPDATE {table} SET {column} = regexp_replace({column}, E'\\r\\n?', E'\\n', 'g') "
                f"WHERE strpos({column}, E'\\r') > 0"
            )


class Migration(migrations.Migration):
    dependencies = [("incidents", "0114_release_citation_frozen")]

    operations = [
        # Rows stored before migration 0086 may hold a text longer than its bounds, which PostgreSQL
        # holds on every row written (`bounds_set_aside`).
        _0086.bounds_set_aside(),
        migrations.RunPython(line_breaks_as_lf, migrations.RunPython.noop),
        _0086.bounds_added_back(),
    ]
