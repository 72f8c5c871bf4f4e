import re
import time

import psycopg
from django.core.management.base import BaseCommand, CommandError

from incidents.management.arguments import database_address, path_name
from tracker import backup


class Command(BaseCommand):
    help = (
        "Restore a file written by `backup` into an empty database (by default DATABASE_URL's), in one "
        "transaction: all of it or nothing. Every chunk is checked against TRACKER_BACKUP_KEY first."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE", type=path_name, help="A file written by `manage.py backup`.")
        parser.add_argument(
            "--into",
            metavar="URL",
            type=database_address,
            help="postgres://… of the empty database to fill (default: DATABASE_URL).",
        )

    def handle(self, *args, file, into, **options):
        started = time.monotonic()
        option = "--into" if into else "DATABASE_URL"
        try:
            with file.open("rb") as source:
                owner = backup.restore_database(source, into or backup.configured_database())
        except psycopg.OperationalError as error:
            # Only reaching the database raises it (pg_restore reports its own errors): a database
            # not created yet, a mistyped name, host or password.
            raise CommandError(
                f"{option}: cannot connect to the database to restore into ({_without_password(str(error), into)}). "
                "Create it first, empty and owned by the app's role (createdb -O …; see the README's "
                "Backups and recovery)."
            ) from None
        except OSError as error:
            # Missing, a directory, unreadable: told before any database is touched; a read that fails
            # midway leaves nothing either, the restore being one transaction.
            raise CommandError(f"FILE: cannot read {file}: {error.strerror}.") from None
        except backup.BackupError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(self.style.SUCCESS(f"Restored {file} in {time.monotonic() - started:.1f} s."))
        # Restored as postgres, every table was the superuser's and the app's own role read none.
        self.stdout.write(f"Its tables belong to the role {owner}: the app reads them only if it connects as {owner}.")


def _without_password(reason: str, address: str | None) -> str:
    """libpq's `reason` with no piece of the password `address` (`--into`) gives: a password holding
    an unencoded @ is read as ending there, its tail taken for the host ("failed to resolve host
    'tail@127.0.0.1'"), which reached cron's mail and CI's logs."""
    if not address or "://" not in address:
        return reason
    user_info = address.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
    password = user_info.partition(":")[2]
    for piece in sorted(re.split(r"[@:/%]", password), key=len, reverse=True):
        if len(piece) >= 3:
            reason = reason.replace(piece, "…")
    return reason
