"""The test database's address, for tests that start another process against it (a gunicorn
server, an importer), on either documented path: a PostgreSQL server named by DATABASE_URL, or the
embedded one that `make test` starts without it, reached through its socket directory."""

from urllib.parse import quote

from django.core.management import call_command
from django.db import connection


def this_test_database_address() -> dict:
    """psycopg's connection arguments for the test database."""
    database = connection.settings_dict
    return {
        "host": database["HOST"],
        "port": database["PORT"] or None,
        "user": database["USER"],
        "password": database["PASSWORD"] or None,
        "dbname": database["NAME"],
    }


def database_url(*, host: str, port: str | None, user: str, password: str | None, dbname: str) -> str:
    """A DATABASE_URL. The host may be a socket directory: percent-encoded, as tracker.embedded_db
    writes it, it stays the host instead of being read as the path to the database."""
    credentials = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    return f"postgres://{credentials}@{quote(host, safe='')}{f':{port}' if port else ''}/{quote(dbname, safe='')}"


def this_test_database_url() -> str:
    return database_url(**this_test_database_address())


def migrate_incidents_back_to(migration: str) -> None:
    """Migrate the incidents app back to `migration`, with the triggers that its migrations install
    then, as a migrate back leaves them (`incidents.trigger_migrations.install_triggers_once_migrated`).

    A test in a transaction (pytest-django's default) may hold writes whose deferred triggers have not
    run, and PostgreSQL refuses an index made on their table meanwhile ("pending trigger events"):
    they run first, as they would have at the commit before an operator's `migrate`."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    call_command("migrate", "incidents", migration, verbosity=0)
