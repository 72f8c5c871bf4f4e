#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")
    # In a checkout where `make run` ran: its DJANGO_DEBUG and database, unless the environment says otherwise.
    from tracker import checkout_env

    checkout_env.load()
    from django.core.management import execute_from_command_line
    from django.db import OperationalError

    try:
        execute_from_command_line(sys.argv)
    except OperationalError as error:
        from tracker.postgresql.base import DatabaseUnreachable

        # A database that cannot be reached: its one line says which and why; a traceback through
        # whichever command first queried adds nothing for the operator.
        if isinstance(error.__cause__, DatabaseUnreachable):
            sys.exit(str(error))
        raise


if __name__ == "__main__":
    main()
