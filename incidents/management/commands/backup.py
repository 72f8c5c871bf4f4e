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
        try:
            # Exclusive creation: a backup never overwrites an older one.
            target = output.open("xb")
        except FileExistsError:
            raise CommandError(f"-o/--output: {output} exists already: choose a new name.") from None
        except OSError as error:
            raise CommandError(f"-o/--output: cannot write {output}: {error.strerror}.") from None
        try:
            with target:
                written = backup.backup_database(target)
        except backup.BackupError as error:
            output.unlink(missing_ok=True)
            raise CommandError(str(error)) from error
        except OSError as error:
            # The disk filled, or a quota: a cut-off file is no backup, and would pass for one.
            output.unlink(missing_ok=True)
            raise CommandError(f"-o/--output: writing {output} failed: {error.strerror}. Nothing was kept.") from None
        self.stdout.write(
            self.style.SUCCESS(f"Wrote {output} ({written:,} bytes) in {time.monotonic() - started:.1f} s.")
        )
