import django.contrib.postgres.indexes
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0058_places_within_sensitive"),
    ]

    operations = [
        # The entries' type as a reference, as the kept totals' own (no constraint, no index), so
        # that one function filters both: the column, `incident_type_id`, stays as it is.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name="incidentrollupentry", name="incident_type_id"),
                migrations.AddField(
                    model_name="incidentrollupentry",
                    name="incident_type",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="incidents.incidenttype",
                    ),
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="incidentrollupentry",
            index=django.contrib.postgres.indexes.GinIndex(
                condition=models.Q(("perpetrators__len__gt", 1)), fields=["perpetrators"], name="rollup_entry_fellows"
            ),
        ),
        migrations.AddIndex(
            model_name="incidentrollupentry",
            index=django.contrib.postgres.indexes.GinIndex(
                condition=models.Q(("countries__len__gt", 1)), fields=["perpetrators"], name="rollup_entry_abroad"
            ),
        ),
    ]
