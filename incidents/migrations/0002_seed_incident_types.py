from django.db import migrations

from incidents.vocabulary import ensure_incident_types


def seed(apps, schema_editor):
    ensure_incident_types(apps.get_model("incidents", "IncidentType"))


class Migration(migrations.Migration):
    dependencies = [("incidents", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
