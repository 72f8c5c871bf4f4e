"""An incident's description and a claim's excerpt hold at most 200,000 characters
(`SEARCHED_TEXT_MAX_LENGTH`): every door refuses more naming the field, where a text whose words
overflowed the incident's one tsvector (1 MB) failed in the search trigger with a 500 page.

The check constraints are added NOT VALID: PostgreSQL holds them for every row written from now on
without reading every incident and claim under an exclusive lock, and a row already longer (which
only prose whose words fit the tsvector can be) stays as it is until it is next edited, when the
door asks for it shorter. `ALTER TABLE … VALIDATE CONSTRAINT …` proves the old rows when wanted.
(PostgreSQL holds them on every row written, whichever column changed: the later migrations that
write rows stored before set them aside meanwhile, `bounds_set_aside`.)
"""

import django.core.validators
import django.db.models.functions.text
import django.db.models.lookups
from django.db import migrations, models

# The bounds' constraints: table, name, condition.
BOUNDS = {
    "incidents_claim": ("claim_excerpt_bounded", "length(excerpt) <= 200000"),
    "incidents_incident": ("incident_description_bounded", "length(description) <= 200000"),
}


def _bound_added(table: str) -> str:
    name, condition = BOUNDS[table]
    return f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID;"


def _bound_dropped(table: str) -> str:
    return f"ALTER TABLE {table} DROP CONSTRAINT {BOUNDS[table][0]};"


# PostgreSQL holds a NOT VALID constraint on every row written, whichever of its columns changed: a
# later migration that writes the incidents or claims stored before this one (a column filled in
# every row, a text put in normal form) stopped at a description or an excerpt longer than the
# bound. Such a migration sets the bounds aside before it writes and adds them back after, as here,
# which reads no row; the deferred checks run first, as PostgreSQL alters no table with trigger
# events pending.
_BOUNDS_DROPPED = "SET CONSTRAINTS ALL IMMEDIATE;" + "".join(_bound_dropped(table) for table in BOUNDS)
_BOUNDS_ADDED = "SET CONSTRAINTS ALL IMMEDIATE;" + "".join(_bound_added(table) for table in BOUNDS)


def bounds_set_aside() -> migrations.RunSQL:
    return migrations.RunSQL(_BOUNDS_DROPPED, reverse_sql=_BOUNDS_ADDED)


def bounds_added_back() -> migrations.RunSQL:
    return migrations.RunSQL(_BOUNDS_ADDED, reverse_sql=_BOUNDS_DROPPED)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0085_dates_checked_with_typed_dates"),
    ]

    operations = [
        migrations.AlterField(
            model_name="claim",
            name="excerpt",
            field=models.TextField(
                blank=True,
                help_text="The source's own words.",
                validators=[django.core.validators.MaxLengthValidator(200000)],
            ),
        ),
        migrations.AlterField(
            model_name="claimevent",
            name="excerpt",
            field=models.TextField(
                blank=True,
                help_text="The source's own words.",
                validators=[django.core.validators.MaxLengthValidator(200000)],
            ),
        ),
        migrations.AlterField(
            model_name="incident",
            name="description",
            field=models.TextField(blank=True, validators=[django.core.validators.MaxLengthValidator(200000)]),
        ),
        migrations.AlterField(
            model_name="incidentevent",
            name="description",
            field=models.TextField(blank=True, validators=[django.core.validators.MaxLengthValidator(200000)]),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(_bound_added("incidents_claim"), reverse_sql=_bound_dropped("incidents_claim")),
            ],
            state_operations=[
                migrations.AddConstraint(
                    model_name="claim",
                    constraint=models.CheckConstraint(
                        condition=models.Q(
                            django.db.models.lookups.LessThanOrEqual(
                                django.db.models.functions.text.Length("excerpt"), 200000
                            )
                        ),
                        name="claim_excerpt_bounded",
                        violation_error_code="max_length",
                        violation_error_message="The excerpt is longer than 200,000 characters.",
                    ),
                ),
            ],
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(_bound_added("incidents_incident"), reverse_sql=_bound_dropped("incidents_incident")),
            ],
            state_operations=[
                migrations.AddConstraint(
                    model_name="incident",
                    constraint=models.CheckConstraint(
                        condition=models.Q(
                            django.db.models.lookups.LessThanOrEqual(
                                django.db.models.functions.text.Length("description"), 200000
                            )
                        ),
                        name="incident_description_bounded",
                        violation_error_code="max_length",
                        violation_error_message="The description is longer than 200,000 characters.",
                    ),
                ),
            ],
        ),
    ]
