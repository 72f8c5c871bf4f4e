"""Each release as one zip (`models.ReleaseZip`, `releases.release_zip_chunks`): its size and
sha256, written with every release from now on, and here for those made before, read through
their stored files once (a slice at a time: some 550 MB at a million incidents, a few seconds).
Immutable like the releases (migration 0018's trigger)."""

import django.db.models.deletion
from django.db import migrations, models

from incidents import releases

ZIP_IMMUTABLE = """
CREATE TRIGGER release_zip_immutable BEFORE UPDATE OR DELETE ON incidents_releasezip
    FOR EACH ROW EXECUTE FUNCTION release_immutable();
"""
ZIP_MUTABLE = "DROP TRIGGER release_zip_immutable ON incidents_releasezip;"


def zips_of_earlier_releases(apps, schema_editor):
    # The zip is the files as `release_zip_chunks` writes them now, which never changes (the
    # digests stored here are its bytes); it reads these models' fields alone.
    Release = apps.get_model("incidents", "Release")
    ReleaseZip = apps.get_model("incidents", "ReleaseZip")
    database = schema_editor.connection.alias
    for release in Release.objects.using(database).filter(zip__isnull=True):
        ReleaseZip.objects.using(database).create(release=release, **releases.release_zip_figures(release))


class Migration(migrations.Migration):
    dependencies = [("incidents", "0115_line_breaks_as_lf")]

    operations = [
        migrations.CreateModel(
            name="ReleaseZip",
            fields=[
                (
                    "release",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        primary_key=True,
                        related_name="zip",
                        serialize=False,
                        to="incidents.release",
                    ),
                ),
                ("sha256", models.CharField(help_text="SHA-256 of the zip file, in hexadecimal.", max_length=64)),
                ("size", models.PositiveBigIntegerField(help_text="Size of the zip file in bytes.")),
            ],
        ),
        migrations.RunSQL(ZIP_IMMUTABLE, ZIP_MUTABLE),
        migrations.RunPython(zips_of_earlier_releases, migrations.RunPython.noop),
    ]
