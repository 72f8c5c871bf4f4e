#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")
    try:
        import django  # noqa: F401
    except ImportError:
        # Before anything imports the database driver: its traceback hid Django's own hint.
        sys.exit(
            f"Django is not installed for {sys.executable}. Run the commands in the virtualenv `make run` "
            "builds: `. .venv/bin/activate` once per terminal, or `.venv/bin/python manage.py …`."
        )
    # In a checkout where `make run` ran: its DJANGO_DEBUG and database, unless the environment says otherwise.
    from tracker import checkout_env

    checkout_env.load()
    import psycopg
    from django.core.management import execute_from_command_line
    from django.db import OperationalError, ProgrammingError

    try:
        execute_from_command_line(sys.argv)
    except OperationalError as error:
        from tracker.postgresql.base import DatabaseUnreachable

        # A database that cannot be reached: its one line says which and why; a traceback through
        # whichever command first queried adds nothing for the operator.
        if isinstance(error.__cause__, DatabaseUnreachable):
            sys.exit(str(error))
        raise
    except (ProgrammingError, psycopg.ProgrammingError) as error:
        from tracker.schema import unapplied_migrations_refusal

        # A database not migrated yet: the same, with what to run. Not for `migrate` itself, where
        # a missing table is a migration's own bug, whose traceback is what to read.
        if sys.argv[1:2] != ["migrate"] and (refusal := unapplied_migrations_refusal(error)):
            sys.exit(refusal)
        raise


if __name__ == "__main__":
    main()
