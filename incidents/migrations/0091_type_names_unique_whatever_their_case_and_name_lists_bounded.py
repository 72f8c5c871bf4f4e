"""An incident type's name is unique whatever its case, as places' and organizations' are since
0089; a list of names (a place's other names, an organization's aliases) holds at most
incidents.text_fields.NAMES_MAX of them.

Before the constraints, types whose names differ only in case, and lists longer than that, are
listed and the migration stops, for an analyst to rename or merge the types and shorten the lists
(the demo data and the sample fixture hold none): which name or which names to keep is theirs to
say."""

import django.db.models.functions.text
import django.db.models.lookups
from django.db import migrations, models

import incidents.text_fields

# incidents.text_fields.NAMES_MAX as this migration sets it (the constraints below say 100 too).
NAMES_MAX = 100


def nothing_the_new_constraints_refuse(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'Incident types whose names differ only in case: ' || string_agg(name, ' / ' ORDER BY id)"
            " FROM incidents_incidenttype GROUP BY lower(name) HAVING count(*) > 1"
            " UNION ALL SELECT format('The place %%s (#%%s) has %%s other names', name, id, cardinality(alternate_names))"
            " FROM incidents_place WHERE cardinality(alternate_names) > %(limit)s"
            " UNION ALL SELECT format('The organization %%s (#%%s) has %%s aliases', name, id, cardinality(aliases))"
            " FROM incidents_organization WHERE cardinality(aliases) > %(limit)s",
            {"limit": NAMES_MAX},
        )
        refused = [problem for (problem,) in cursor.fetchall()]
    if refused:
        raise RuntimeError(
            "; ".join(refused)
            + f". Rename one of each such type, or merge them; keep at most {NAMES_MAX} names in a list;"
            " then migrate again."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0090_statistics_best_estimate_within_range"),
    ]

    operations = [
        # The kept totals' deferred counts run now (migration 0090's, when both run in one
        # transaction): PostgreSQL alters no table with trigger events pending.
        migrations.RunSQL("SET CONSTRAINTS ALL IMMEDIATE", migrations.RunSQL.noop),
        migrations.RunPython(nothing_the_new_constraints_refuse, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="incidenttype",
            name="name",
            field=models.CharField(max_length=128, validators=[incidents.text_fields.OneLineValidator("A name")]),
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
                validators=[incidents.text_fields.NamesCountValidator("aliases")],
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
                validators=[incidents.text_fields.NamesCountValidator("aliases")],
            ),
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
                validators=[incidents.text_fields.NamesCountValidator("other names")],
            ),
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
                validators=[incidents.text_fields.NamesCountValidator("other names")],
            ),
        ),
        migrations.AddConstraint(
            model_name="incidenttype",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("name"),
                name="incident_type_name_unique",
                violation_error_code="name_taken",
            ),
        ),
        migrations.AddConstraint(
            model_name="organization",
            constraint=incidents.text_fields.NamesCountConstraint(
                condition=models.Q(
                    django.db.models.lookups.LessThanOrEqual(
                        models.Func(models.F("aliases"), function="cardinality", output_field=models.IntegerField()),
                        100,
                    )
                ),
                name="organization_aliases_count",
            ),
        ),
        migrations.AddConstraint(
            model_name="place",
            constraint=incidents.text_fields.NamesCountConstraint(
                condition=models.Q(
                    django.db.models.lookups.LessThanOrEqual(
                        models.Func(
                            models.F("alternate_names"), function="cardinality", output_field=models.IntegerField()
                        ),
                        100,
                    )
                ),
                name="place_alternate_names_count",
            ),
        ),
        # The same on the way back, where this runs first.
        migrations.RunSQL(migrations.RunSQL.noop, "SET CONSTRAINTS ALL IMMEDIATE"),
    ]
