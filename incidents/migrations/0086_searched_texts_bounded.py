"""An incident's description and a claim's excerpt hold at most 200,000 characters
(`SEARCHED_TEXT_MAX_LENGTH`): every door refuses more naming the field, where a text whose words
overflowed the incident's one tsvector (1 MB) failed in the search trigger with a 500 page.

The check constraints are added NOT VALID: PostgreSQL holds them for every row written from now on
without reading every incident and claim under an exclusive lock, and a row already longer (which
only prose whose words fit the tsvector can be) stays as it is until it is next edited, when the
door asks for it shorter. `ALTER TABLE … VALIDATE CONSTRAINT …` proves the old rows when wanted.
"""

import django.core.validators
import django.db.models.functions.text
import django.db.models.lookups
from django.db import migrations, models


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
                migrations.RunSQL(
                    "ALTER TABLE incidents_claim ADD CONSTRAINT claim_excerpt_bounded CHECK (length(excerpt) <= 200000) NOT VALID",
                    reverse_sql="ALTER TABLE incidents_claim DROP CONSTRAINT claim_excerpt_bounded",
                ),
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
                migrations.RunSQL(
                    "ALTER TABLE incidents_incident ADD CONSTRAINT incident_description_bounded CHECK (length(description) <= 200000) NOT VALID",
                    reverse_sql="ALTER TABLE incidents_incident DROP CONSTRAINT incident_description_bounded",
                ),
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
