"""The table of the PostgreSQL cache that holds the API's throttle counters for every worker
(settings.CACHES), created by migrate so `make run`, the tests and deployments cannot forget it.
With REDIS_URL set there is no database cache, and this does nothing."""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_hash_existing_tokens")]

    operations = [migrations.RunPython(create_cache_tables, migrations.RunPython.noop)]
