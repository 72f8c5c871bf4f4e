import errno
import os
import shutil
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from incidents.management.arguments import path_name
from incidents.management.stopping import sigterm_as_ctrl_c
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
            # Told before the dump, not after it.
            if output.exists() or output.is_symlink():
                raise CommandError(f"-o/--output: {output} exists already: choose a new name.")
            # Written under a name of its own, given the backup's name only once whole: a backup cut
            # off (a full disk, Ctrl-C, cron's timeout, a database that went away) left a file that a
            # listing, and a script keeping the newest 48, took for a backup. Readable by its owner
            # alone, as mkstemp makes it; a short name, so that any name the backup may have fits.
            descriptor, partial = tempfile.mkstemp(dir=output.parent, prefix=".backup-", suffix=".partial")
        except OSError as error:
            # A name too long, a directory that cannot be searched or written: named, not a traceback.
            raise CommandError(f"-o/--output: cannot write {output}: {error.strerror}.") from None
        # Until the partial file is gone: a backup stopped by SIGTERM left it behind.
        with sigterm_as_ctrl_c():
            try:
                with open(descriptor, "wb") as target:
                    written = backup.backup_database(target)
                _name(partial, output)
            except backup.BackupError as error:
                raise CommandError(str(error)) from error
            except FileExistsError:
                raise CommandError(f"-o/--output: {output} exists already: choose a new name.") from None
            except OSError as error:
                # The disk filled, or a quota: a cut-off file is no backup, and would pass for one.
                raise CommandError(
                    f"-o/--output: writing {output} failed: {error.strerror}. Nothing was kept."
                ) from None
            finally:
                os.unlink(partial)
        self.stdout.write(
            self.style.SUCCESS(f"Wrote {output} ({written:,} bytes) in {time.monotonic() - started:.1f} s.")
        )


# What link() answers on a filesystem without hard links (FAT and exFAT disks, many SMB shares, some
# FUSE mounts). A real lack of permission is told by the copy's own open(), in the same directory.
_NO_HARD_LINKS = {errno.EPERM, errno.EACCES, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def _name(partial: str, output: Path) -> None:
    """Give the whole backup at `partial` the name `output`, never replacing a file of that name
    (which a rename would): a hard link, or where the filesystem has none, a copy into a file created
    for it, removed again if the copy fails."""
    try:
        os.link(partial, output)
        return
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
    named = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(partial, "rb") as source, open(named, "wb") as target:
            shutil.copyfileobj(source, target)
    except BaseException:
        output.unlink(missing_ok=True)
        raise
