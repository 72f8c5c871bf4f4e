"""An undone merge goes with its incidents when either is deleted (Django's on_delete only: no SQL).

Protected, an incident ever merged could never be deleted, the merge undone or not: the merge's
record kept it ("still used by incident merges"), and no door removes that record.
`services.record_delete` refuses one whose merge is not undone."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0105_sources_and_responses_synced"),
    ]

    operations = [
        migrations.AlterField(
            model_name="incidentmerge",
            name="merged",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="merges", to="incidents.incident"
            ),
        ),
        migrations.AlterField(
            model_name="incidentmerge",
            name="survivor",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="merges_received", to="incidents.incident"
            ),
        ),
    ]
