"""Titles and names are one line (incidents.text_fields), and a place's name is unique in its
parent, an organization's name unique, whatever their case.

Before the constraints: line breaks and control characters stored before (by the API or the CSV
import) become a space, each run of them one space, which is what the title or name meant ("About
500\nreturned" is "About 500 returned"; the admin would have saved it glued), as a new version
of the record, so that incremental syncs read it again. Names that would then differ only in case
(or not at all), which the new unique constraints (or the old) would refuse, are listed first and
the migration stops, for an analyst to rename or merge them (the demo data and the sample fixture
hold none)."""

import importlib
import re

import django.db.models.functions.text
import django.db.models.lookups
from django.conf import settings
from django.db import migrations, models

import incidents.text_fields
from incidents.text_fields import NOT_ONE_LINE_PATTERN

_0086 = importlib.import_module("incidents.migrations.0086_searched_texts_bounded")

# (table, column) of the one-line fields; True for a list of names.
ONE_LINE_COLUMNS = [
    ("incidents_incident", "title", False),
    ("incidents_source", "title", False),
    ("incidents_source", "author", False),
    ("incidents_place", "name", False),
    ("incidents_place", "alternate_names", True),
    ("incidents_organization", "name", False),
    ("incidents_organization", "acronym", False),
    ("incidents_organization", "aliases", True),
    ("incidents_incidenttype", "name", False),
]


def one_line(text: str) -> str:
    return f"regexp_replace({text}, %(runs)s, ' ', 'g')"


def stored_text_made_one_line(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for table, column, items in ONE_LINE_COLUMNS:
            if items:
                cursor.execute(
                    f"UPDATE {table} SET version = version + 1, updated_at = now(), {column} = ARRAY(SELECT {one_line('item')} FROM unnest({column})"
                    " WITH ORDINALITY AS listed(item, position) ORDER BY position)"
                    f" WHERE array_to_string({column}, ' ') ~ %(pattern)s",
                    {"runs": NOT_ONE_LINE_PATTERN + "+", "pattern": NOT_ONE_LINE_PATTERN},
                )
            else:
                cursor.execute(
                    f"UPDATE {table} SET version = version + 1, updated_at = now(), {column} = {one_line(column)} WHERE {column} ~ %(pattern)s",
                    {"runs": NOT_ONE_LINE_PATTERN + "+", "pattern": NOT_ONE_LINE_PATTERN},
                )


def _shown(name: str) -> str:
    """A stored name as the refusal lists it: its line breaks and control characters written as
    escapes ("Daily\\nNK"), which would otherwise break the line or vanish."""
    return re.sub(NOT_ONE_LINE_PATTERN, lambda character: repr(character.group())[1:-1], name)


def no_names_alike_once_one_line(apps, schema_editor):
    """Run before the names are made one line: names that would then differ only in case (places
    in one parent, organizations), or not at all (incident types, whose names were already unique),
    are listed and the migration stops. Run after, "Daily\nNK" made "Daily NK" beside a stored
    "Daily NK", and the update stopped on the unique constraint those names already had, with
    PostgreSQL's UniqueViolation naming neither."""
    one_lined = one_line("name")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"SELECT array_agg(name ORDER BY id) FROM incidents_place GROUP BY lower({one_lined}), parent_id"
            " HAVING count(*) > 1"
            f" UNION ALL SELECT array_agg(name ORDER BY id) FROM incidents_organization GROUP BY lower({one_lined})"
            " HAVING count(*) > 1"
            f" UNION ALL SELECT array_agg(name ORDER BY id) FROM incidents_incidenttype GROUP BY {one_lined}"
            " HAVING count(*) > 1",
            {"runs": NOT_ONE_LINE_PATTERN + "+"},
        )
        namesakes = [" / ".join(_shown(name) for name in names) for (names,) in cursor.fetchall()]
    if namesakes:
        raise RuntimeError(
            "Places in one parent (or organizations, or incident types) whose names differ only in case "
            "or in line breaks: " + "; ".join(namesakes) + ". Rename one of each, or merge them, then migrate again."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0088_export_marks_confidential_sources"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Rows stored before migration 0086 may hold a text longer than its bounds, which PostgreSQL
        # holds on every row written (`bounds_set_aside`).
        _0086.bounds_set_aside(),
        migrations.RunPython(no_names_alike_once_one_line, migrations.RunPython.noop),
        migrations.RunPython(stored_text_made_one_line, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="place",
            name="place_name_unique_in_parent",
        ),
        migrations.AlterField(
            model_name="incident",
            name="title",
            field=models.CharField(max_length=300, validators=[incidents.text_fields.OneLineValidator("A title")]),
        ),
        migrations.AlterField(
            model_name="incidentevent",
            name="title",
            field=models.CharField(max_length=300, validators=[incidents.text_fields.OneLineValidator("A title")]),
        ),
        migrations.AlterField(
            model_name="incidenttype",
            name="name",
            field=models.CharField(
                max_length=128, unique=True, validators=[incidents.text_fields.OneLineValidator("A name")]
            ),
        ),
        migrations.AlterField(
            model_name="incidenttypeevent",
            name="name",
            field=models.CharField(max_length=128, validators=[incidents.text_fields.OneLineValidator("A name")]),
        ),
        migrations.AlterField(
            model_name="organization",
            name="acronym",
            field=models.CharField(
                blank=True, max_length=32, validators=[incidents.text_fields.OneLineValidator("An acronym")]
            ),
        ),
        migrations.AlterField(
            model_name="organization",
            name="aliases",
            field=incidents.text_fields.NameListField(
                base_field=models.CharField(
                    max_length=255, validators=[incidents.text_fields.OneLineValidator("An alias")]
                ),
                blank=True,
                default=list,
                help_text="Other spellings and names in other languages, one per line.",
            ),
        ),
        migrations.AlterField(
            model_name="organization",
            name="name",
            field=models.CharField(max_length=255, validators=[incidents.text_fields.OneLineValidator("A name")]),
        ),
        migrations.AlterField(
            model_name="organizationevent",
            name="acronym",
            field=models.CharField(
                blank=True, max_length=32, validators=[incidents.text_fields.OneLineValidator("An acronym")]
            ),
        ),
        migrations.AlterField(
            model_name="organizationevent",
            name="aliases",
            field=incidents.text_fields.NameListField(
                base_field=models.CharField(
                    max_length=255, validators=[incidents.text_fields.OneLineValidator("An alias")]
                ),
                blank=True,
                default=list,
                help_text="Other spellings and names in other languages, one per line.",
            ),
        ),
        migrations.AlterField(
            model_name="organizationevent",
            name="name",
            field=models.CharField(max_length=255, validators=[incidents.text_fields.OneLineValidator("A name")]),
        ),
        migrations.AlterField(
            model_name="place",
            name="alternate_names",
            field=incidents.text_fields.NameListField(
                base_field=models.CharField(
                    max_length=255, validators=[incidents.text_fields.OneLineValidator("An other name")]
                ),
                blank=True,
                default=list,
                help_text="Names in Korean, Chinese and their romanisations, one per line.",
            ),
        ),
        migrations.AlterField(
            model_name="place",
            name="name",
            field=models.CharField(max_length=255, validators=[incidents.text_fields.OneLineValidator("A name")]),
        ),
        migrations.AlterField(
            model_name="placeevent",
            name="alternate_names",
            field=incidents.text_fields.NameListField(
                base_field=models.CharField(
                    max_length=255, validators=[incidents.text_fields.OneLineValidator("An other name")]
                ),
                blank=True,
                default=list,
                help_text="Names in Korean, Chinese and their romanisations, one per line.",
            ),
        ),
        migrations.AlterField(
            model_name="placeevent",
            name="name",
            field=models.CharField(max_length=255, validators=[incidents.text_fields.OneLineValidator("A name")]),
        ),
        migrations.AlterField(
            model_name="source",
            name="author",
            field=models.CharField(
                blank=True, max_length=255, validators=[incidents.text_fields.OneLineValidator("An author")]
            ),
        ),
        migrations.AlterField(
            model_name="source",
            name="title",
            field=models.CharField(max_length=500, validators=[incidents.text_fields.OneLineValidator("A title")]),
        ),
        migrations.AlterField(
            model_name="sourceevent",
            name="author",
            field=models.CharField(
                blank=True, max_length=255, validators=[incidents.text_fields.OneLineValidator("An author")]
            ),
        ),
        migrations.AlterField(
            model_name="sourceevent",
            name="title",
            field=models.CharField(max_length=500, validators=[incidents.text_fields.OneLineValidator("A title")]),
        ),
        migrations.AddConstraint(
            model_name="incident",
            constraint=incidents.text_fields.OneLineConstraint(
                condition=models.Q(
                    django.db.models.lookups.Regex(models.F("title"), "[\\x01-\\x1f\\x7f-\\x9f\\u2028\\u2029]"),
                    _negated=True,
                ),
                name="incident_title_one_line",
            ),
        ),
        migrations.AddConstraint(
            model_name="incidenttype",
            constraint=incidents.text_fields.OneLineConstraint(
                condition=models.Q(
                    django.db.models.lookups.Regex(models.F("name"), "[\\x01-\\x1f\\x7f-\\x9f\\u2028\\u2029]"),
                    _negated=True,
                ),
                name="incident_type_name_one_line",
            ),
        ),
        migrations.AddConstraint(
            model_name="organization",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("name"),
                name="organization_name_unique",
                violation_error_code="name_taken",
            ),
        ),
        migrations.AddConstraint(
            model_name="organization",
            constraint=incidents.text_fields.OneLineConstraint(
                condition=models.Q(
                    django.db.models.lookups.Regex(models.F("name"), "[\\x01-\\x1f\\x7f-\\x9f\\u2028\\u2029]"),
                    _negated=True,
                ),
                name="organization_name_one_line",
            ),
        ),
        migrations.AddConstraint(
            model_name="organization",
            constraint=incidents.text_fields.OneLineConstraint(
                condition=models.Q(
                    django.db.models.lookups.Regex(models.F("acronym"), "[\\x01-\\x1f\\x7f-\\x9f\\u2028\\u2029]"),
                    _negated=True,
                ),
                name="organization_acronym_one_line",
            ),
        ),
        migrations.AddConstraint(
            model_name="organization",
            constraint=incidents.text_fields.OneLineConstraint(
                condition=models.Q(
                    django.db.models.lookups.Regex(
                        models.Func(
                            models.F("aliases"),
                            models.Value(" "),
                            function="array_to_string",
                            output_field=models.TextField(),
                        ),
                        "[\\x01-\\x1f\\x7f-\\x9f\\u2028\\u2029]",
                    ),
                    _negated=True,
                ),
                name="organization_aliases_one_line",
            ),
        ),
        migrations.AddConstraint(
            model_name="place",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("name"),
                models.F("parent"),
                name="place_name_unique_in_parent",
                nulls_distinct=False,
                violation_error_code="name_taken",
            ),
        ),
        migrations.AddConstraint(
            model_name="place",
            constraint=incidents.text_fields.OneLineConstraint(
                condition=models.Q(
                    django.db.models.lookups.Regex(models.F("name"), "[\\x01-\\x1f\\x7f-\\x9f\\u2028\\u2029]"),
                    _negated=True,
                ),
                name="place_name_one_line",
            ),
        ),
        migrations.AddConstraint(
            model_name="place",
            constraint=incidents.text_fields.OneLineConstraint(
                condition=models.Q(
                    django.db.models.lookups.Regex(
                        models.Func(
                            models.F("alternate_names"),
                            models.Value(" "),
                            function="array_to_string",
                            output_field=models.TextField(),
                        ),
                        "[\\x01-\\x1f\\x7f-\\x9f\\u2028\\u2029]",
                    ),
                    _negated=True,
                ),
                name="place_alternate_names_one_line",
            ),
        ),
        migrations.AddConstraint(
            model_name="source",
            constraint=incidents.text_fields.OneLineConstraint(
                condition=models.Q(
                    django.db.models.lookups.Regex(models.F("title"), "[\\x01-\\x1f\\x7f-\\x9f\\u2028\\u2029]"),
                    _negated=True,
                ),
                name="source_title_one_line",
            ),
        ),
        migrations.AddConstraint(
            model_name="source",
            constraint=incidents.text_fields.OneLineConstraint(
                condition=models.Q(
                    django.db.models.lookups.Regex(models.F("author"), "[\\x01-\\x1f\\x7f-\\x9f\\u2028\\u2029]"),
                    _negated=True,
                ),
                name="source_author_one_line",
            ),
        ),
        _0086.bounds_added_back(),
    ]
