from django.core.management.base import BaseCommand, CommandError

from incidents.duplicates import PROPOSAL_THRESHOLD, duplicate_pairs_refresh, rescorings_waiting


class Command(BaseCommand):
    help = (
        "Score every candidate pair of possible duplicates (same type, dates within TRACKER_DUPLICATE_WINDOW_DAYS, "
        "one place or two under one place below the country; an incident placed only by its country meets "
        "every incident of that country) and propose those scoring at least --threshold for review in "
        "the admin's duplicates queue. Decided pairs stay as decided, their scores brought up to date: a pair "
        "found different is never proposed again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--threshold",
            type=float,
            default=PROPOSAL_THRESHOLD,
            help=f"Lowest score proposed, from 0 to 1 (default {PROPOSAL_THRESHOLD}).",
        )

    def handle(self, *args, threshold, **options):
        if not 0 <= threshold <= 1:
            raise CommandError(f"--threshold: give a score from 0 to 1, not {threshold}.")
        waiting = duplicate_pairs_refresh(threshold=threshold)
        pairs = "1 pair waits" if waiting == 1 else f"{waiting:,} pairs wait"
        self.stdout.write(self.style.SUCCESS(f"{pairs} for review."))
        if queued := rescorings_waiting():
            rescorings = "1 rescoring waits" if queued == 1 else f"{queued:,} rescorings wait"
            self.stdout.write(
                self.style.WARNING(
                    f"{rescorings} for a worker: the pairs of the incidents they name were left to them. "
                    "Run `python manage.py db_worker`."
                )
            )
