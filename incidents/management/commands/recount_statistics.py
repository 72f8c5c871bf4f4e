import time

from django.core.management.base import BaseCommand

from incidents.statistics import recount_statistics


class Command(BaseCommand):
    help = (
        "Rebuild the totals that statistics and the browse page's facets read, from the incidents themselves. "
        "PostgreSQL keeps them "
        "in every transaction; this is for data loaded with triggers disabled. Writes wait while it runs."
    )

    def handle(self, *args, **options):
        started = time.monotonic()
        counted = recount_statistics()
        self.stdout.write(
            self.style.SUCCESS(
                f"Counted {counted:,} incidents into the statistics in {time.monotonic() - started:.1f} s."
            )
        )
