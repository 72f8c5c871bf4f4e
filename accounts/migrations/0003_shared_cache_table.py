"""The table of the PostgreSQL cache that holds the API's throttle counters for every worker
(settings.CACHES), created by migrate so `make run`, the tests and deployments cannot forget it.
With REDIS_URL set there is no database cache, and this does nothing.

UNLOGGED: every throttled request writes a counter, and a cache needs neither the write-ahead log
(each commit waiting for a disk flush) nor a copy on replicas; a crash empties it, which only
resets the counts."""

from django.conf import settings
from django.core.cache.backends.db import DatabaseCache
from django.core.management import call_command
from django.db import migrations
from django.utils.module_loading import import_string


def create_cache_tables(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)
    for cache in settings.CACHES.values():
        # Django's DatabaseCache or ours, derived from it (tracker/cache.py); createcachetable made both.
        if issubclass(import_string(cache["BACKEND"]), DatabaseCache):
            table = schema_editor.quote_name(cache["LOCATION"])
            schema_editor.execute(f"ALTER TABLE {table} SET UNLOGGED")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_hash_existing_tokens")]

    operations = [migrations.RunPython(create_cache_tables, migrations.RunPython.noop)]
