from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from incidents.importers import import_incidents_csv


class Command(BaseCommand):
    help = (
        "Import incidents from a CSV file with the export's columns: rows with a public_id update that incident "
        "(if its version still matches), rows without one create incidents. Every row is checked first; "
        "if any is wrong, nothing is written and every error is listed. Exits non-zero on any error."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE")
        parser.add_argument(
            "--user", required=True, metavar="USERNAME", help="Import as this user (history names them)."
        )
        parser.add_argument("--dry-run", action="store_true", help="Check every row and report; write nothing.")
        parser.add_argument(
            "--create-missing",
            action="store_true",
            help="Create the types, places, organizations and sources the file names but the database lacks.",
        )

    def handle(self, *args, file, user, dry_run, create_missing, **options):
        try:
            importer = get_user_model().objects.get_by_natural_key(user)
        except get_user_model().DoesNotExist:
            raise CommandError(f"--user: no user is called {user!r}.") from None
        try:
            with open(file, "rb") as csv_file:
                report = import_incidents_csv(
                    csv_file, user=importer, create_missing=create_missing, dry_run=dry_run, file_name=file
                )
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}.") from None
        for error in report.errors:
            self.stderr.write(f"{file}: {error}")
        if report.errors:
            raise CommandError(report.summary())
        self.stdout.write(self.style.SUCCESS(report.summary()))
