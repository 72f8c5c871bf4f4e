from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from incidents.access import confidential_among, record_confidential_access
from incidents.importers import Duplicates, import_incidents_csv
from incidents.management.arguments import path_name
from incidents.models import AccessDoor


class Command(BaseCommand):
    help = (
        "Import incidents from a CSV file with the export's columns: rows with a public_id update that incident "
        "(if its version still matches), rows without one create incidents. Every row is checked first; "
        "if any is wrong, nothing is written and every error is listed. New rows that may duplicate an incident "
        "(or an earlier row) are listed, and stop the import unless --skip-duplicates or --allow-duplicates says "
        "what to do with them. Exits non-zero on any error."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE", type=path_name)
        parser.add_argument(
            "--user", required=True, metavar="USERNAME", help="Import as this user (history names them)."
        )
        parser.add_argument("--dry-run", action="store_true", help="Check every row and report; write nothing.")
        parser.add_argument(
            "--create-missing",
            action="store_true",
            help="Create the types, places, organizations and sources the file names but the database lacks.",
        )
        duplicates = parser.add_mutually_exclusive_group()
        duplicates.add_argument(
            "--skip-duplicates",
            action="store_const",
            dest="duplicates",
            const=Duplicates.SKIP,
            default=Duplicates.STOP,
            help="Leave out new rows that may duplicate an incident or an earlier row; import the rest.",
        )
        duplicates.add_argument(
            "--allow-duplicates",
            action="store_const",
            dest="duplicates",
            const=Duplicates.ALLOW,
            help="Create new rows even if they may duplicate an incident (without looking for duplicates).",
        )

    def handle(self, *args, file, user, dry_run, create_missing, duplicates, **options):
        try:
            importer = get_user_model().objects.get_by_natural_key(user)
        except get_user_model().DoesNotExist:
            raise CommandError(f"--user: no user is called {user!r}.") from None
        try:
            with open(file, "rb") as csv_file:
                report = import_incidents_csv(
                    csv_file,
                    user=importer,
                    create_missing=create_missing,
                    dry_run=dry_run,
                    duplicates=duplicates,
                    file_name=str(file),
                )
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}.") from None
        # The lines below name them: a read of the confidential ones, as the admin's preview is.
        record_confidential_access(
            user=importer,
            door=AccessDoor.COMMAND,
            records=confidential_among(report.records_shown(), importer),
            path="manage.py import_incidents",
        )
        for row in report.duplicates:
            skipped = ("would be skipped, " if dry_run else "skipped, ") if report.skipped else ""
            self.stderr.write(f"{file}: line {row.line}: {row.title!r} {skipped}may duplicate {row.duplicates_text()}")
        for row in report.claims_removed:
            self.stderr.write(f"{file}: line {row.line}: {row.claims_removed_text()}")
        for row in report.confidential_claims_kept:
            self.stderr.write(f"{file}: line {row.line}: {row.confidential_claims_kept_text()}")
        for row in report.confidential_claims_added:
            self.stderr.write(f"{file}: line {row.line}: {row.confidential_claims_added_text()}")
        for error in report.errors:
            self.stderr.write(f"{file}: {error}")
        if report.errors:
            raise CommandError(report.summary())
        self.stdout.write(self.style.SUCCESS(report.summary()))
