import os
import tempfile
import time

from django.core.management.base import BaseCommand, CommandError

from incidents.management.arguments import path_name
from tracker import backup


class Command(BaseCommand):
    help = (
        "Write an encrypted, compressed dump of the whole database (pg_dump custom format, AES-256-GCM "
        "under TRACKER_BACKUP_KEY) to a file. `restore` brings it back into an empty database."
    )

    def add_arguments(self, parser):
        parser.add_argument("-o", "--output", type=path_name, help="The file to write (never overwritten).")
        parser.add_argument("--new-key", action="store_true", help="Print a new key for TRACKER_BACKUP_KEY and stop.")

    def handle(self, *args, output, new_key, **options):
        if new_key:
            self.stdout.write(backup.new_key())
            return
        if output is None:
            raise CommandError("Name the file to write with -o/--output.")
        started = time.monotonic()
        if output.exists():
            raise CommandError(f"-o/--output: {output} exists already: choose a new name.")
        try:
            # Written under a name of its own, given the backup's name only once whole: a backup cut
            # off (a full disk, Ctrl-C, cron's timeout, a database that went away) left a file that a
            # listing, and a script keeping the newest 48, took for a backup. Readable by its owner
            # alone, as mkstemp makes it.
            descriptor, partial = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial")
        except OSError as error:
            raise CommandError(f"-o/--output: cannot write {output}: {error.strerror}.") from None
        try:
            with open(descriptor, "wb") as target:
                written = backup.backup_database(target)
            # A link, not a rename: it never replaces a file given that name meanwhile.
            os.link(partial, output)
        except backup.BackupError as error:
            raise CommandError(str(error)) from error
        except FileExistsError:
            raise CommandError(f"-o/--output: {output} exists already: choose a new name.") from None
        except OSError as error:
            # The disk filled, or a quota: a cut-off file is no backup, and would pass for one.
            raise CommandError(f"-o/--output: writing {output} failed: {error.strerror}. Nothing was kept.") from None
        finally:
            os.unlink(partial)
        self.stdout.write(
            self.style.SUCCESS(f"Wrote {output} ({written:,} bytes) in {time.monotonic() - started:.1f} s.")
        )
