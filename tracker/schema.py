"""Whether the database's schema is behind the code, said in one line when a command fails on it.

A command run against a database that was created but never migrated (the round trip "into another
database", a restore's target) stopped with psycopg's `relation "auth_user" does not exist` and a
traceback through whichever query came first. Django warns of unapplied migrations only in
`runserver`; manage.py asks here when a command fails on a missing table, column or function.
"""

import psycopg.errors
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

# What PostgreSQL answers a statement that needs a migration not applied yet.
MISSING_FROM_THE_SCHEMA = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedFunction,
)


def unapplied_migrations_refusal(error: Exception, using: str = DEFAULT_DB_ALIAS) -> str | None:
    """The line to print instead of `error`'s traceback when the schema lacks migrations; None when
    the error has another cause (a bug, which keeps its traceback)."""
    # Django wraps psycopg's error; a COPY through psycopg's own cursor (the export) raises it bare.
    if not isinstance(error, MISSING_FROM_THE_SCHEMA) and not isinstance(error.__cause__, MISSING_FROM_THE_SCHEMA):
        return None
    connection = connections[using]
    # A new connection: the failed statement may have left the old one's transaction aborted.
    connection.close()
    executor = MigrationExecutor(connection)
    unapplied = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if not unapplied:
        return None
    first, _ = unapplied[0]
    settings_dict = connection.settings_dict
    return (
        f"{settings_dict['URL_VARIABLE']}: database {settings_dict['NAME']!r} lacks "
        f"{len(unapplied)} of this code's migrations ({first.app_label}.{first.name} first). "
        "Run `python manage.py migrate` with the same settings, then this command again."
    )
