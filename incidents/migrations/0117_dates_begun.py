"""A source's publication and a response's date are days begun somewhere (`models.validate_day_begun`), as
an incident's and a claim's start are: a field validator, no database change (the rule moves with the clock)."""

from django.db import migrations, models

import incidents.models


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0116_release_zip"),
    ]

    operations = [
        migrations.AlterField(
            model_name="response",
            name="date",
            field=models.DateField(validators=[incidents.models.validate_day_begun]),
        ),
        migrations.AlterField(
            model_name="responseevent",
            name="date",
            field=models.DateField(validators=[incidents.models.validate_day_begun]),
        ),
        migrations.AlterField(
            model_name="source",
            name="published_on",
            field=models.DateField(blank=True, null=True, validators=[incidents.models.validate_day_begun]),
        ),
        migrations.AlterField(
            model_name="sourceevent",
            name="published_on",
            field=models.DateField(blank=True, null=True, validators=[incidents.models.validate_day_begun]),
        ),
    ]
