"""Web addresses (a source's and its archived copy's, an organization's website) with a port out
of range are refused (`text_fields.validate_port`): the validators only, no SQL. Django's took any
five digits, and reading such an address was a 500 wherever it was compared."""

from django.db import migrations, models

import incidents.text_fields


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0107_responses_withdrawn_from_who_saw_them"),
    ]

    operations = [
        migrations.AlterField(
            model_name="organization",
            name="website",
            field=models.URLField(blank=True, validators=[incidents.text_fields.validate_port]),
        ),
        migrations.AlterField(
            model_name="organizationevent",
            name="website",
            field=models.URLField(blank=True, validators=[incidents.text_fields.validate_port]),
        ),
        migrations.AlterField(
            model_name="source",
            name="archive_url",
            field=models.URLField(blank=True, max_length=1000, validators=[incidents.text_fields.validate_port]),
        ),
        migrations.AlterField(
            model_name="source",
            name="url",
            field=models.URLField(blank=True, max_length=1000, validators=[incidents.text_fields.validate_port]),
        ),
        migrations.AlterField(
            model_name="sourceevent",
            name="archive_url",
            field=models.URLField(blank=True, max_length=1000, validators=[incidents.text_fields.validate_port]),
        ),
        migrations.AlterField(
            model_name="sourceevent",
            name="url",
            field=models.URLField(blank=True, max_length=1000, validators=[incidents.text_fields.validate_port]),
        ),
    ]
