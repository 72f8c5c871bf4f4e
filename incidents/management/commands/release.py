import os
from collections.abc import Iterable
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from incidents import services
from incidents.management.arguments import path_name
from incidents.management.stopping import sigterm_as_ctrl_c
from incidents.releases import (
    missing_license_warning,
    next_release_name,
    release_create,
    release_file_chunks,
    release_zip_chunks,
    release_zip_name,
)


class Command(BaseCommand):
    help = (
        "Freeze the published data as the next citable release, incident-tracker-YYYY.N: CSV files, "
        "datapackage.json, codebook.md, CHANGES.csv and README.md, kept in the database for good and listed at "
        "/api/v1/releases/. Only a Reviewer may."
    )

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, metavar="USERNAME", help="Release as this Reviewer.")
        parser.add_argument(
            "--output",
            metavar="DIRECTORY",
            type=path_name,
            help="Also write the release's files into DIRECTORY/<release name>/, and the whole release as "
            "DIRECTORY/<release name>.zip.",
        )

    def handle(self, *args, user, output, **options):
        try:
            reviewer = get_user_model().objects.get_by_natural_key(user)
        except get_user_model().DoesNotExist:
            raise CommandError(f"--user: no user is called {user!r}.") from None
        if output:
            # Asked before the directory is made (release_create asks again): a refused release left
            # the directory it named created, and empty.
            if not services.may_publish(reviewer):
                raise CommandError(f"--user: {user} may not make a release: only Reviewers may.")
            # Before the release, which cannot be undone: a directory it cannot write is refused with
            # nothing released, not found once the release exists.
            try:
                Path(output).mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise CommandError(f"--output: cannot write into {output}: {error.strerror}.") from None
            if not os.access(output, os.W_OK):
                raise CommandError(f"--output: cannot write into {output}: Permission denied.")
            name, _, _ = next_release_name()
            if (Path(output) / name).exists() and not (Path(output) / name).is_dir():
                raise CommandError(f"--output: {Path(output) / name} is a file: move it, or name another directory.")
            if (Path(output) / release_zip_name(name)).is_dir():
                raise CommandError(
                    f"--output: {Path(output) / release_zip_name(name)} is a directory: move it, or name another "
                    "directory."
                )
        try:
            release = release_create(user=reviewer)
        except PermissionDenied as refusal:
            raise CommandError(f"--user: {refusal}") from None
        if output:
            directory = Path(output) / release.name
            try:
                directory.mkdir(parents=True, exist_ok=True)
                # A file at a time, a slice at a time: together they are hundreds of megabytes.
                with sigterm_as_ctrl_c():
                    for release_file in release.files.defer("content"):
                        _write_whole(directory / release_file.name, release_file_chunks(release_file))
                    _write_whole(Path(output) / release_zip_name(release.name), release_zip_chunks(release))
            except OSError as error:
                # The release is made, and stays (releases never change): say where its files are.
                raise CommandError(
                    f"--output: {release.name} is released, but its files could not be written into {directory}: "
                    f"{error.strerror}. Download them from /api/v1/releases/{release.name}/."
                ) from None
            self.stdout.write(f"Wrote its files to {directory}, and all of them as {release_zip_name(release.name)}.")
        self.stdout.write(self.style.SUCCESS(f"Released {release.name}: {release.incidents:,} incidents."))
        if warning := missing_license_warning(release.name):
            self.stderr.write(self.style.WARNING(f"Warning: {warning}"))


def _write_whole(path: Path, chunks: Iterable[bytes]) -> None:
    """Write `chunks` to `path`, removed again if the write fails or is stopped: a full disk left a
    cut-off file under the release's own name (a shorter incidents.csv of whole rows reads as a
    valid one), for whoever deposits the directory to take for the release's."""
    try:
        with path.open("wb") as written:
            written.writelines(chunks)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
