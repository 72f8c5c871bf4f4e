"""CSV import: time to validate and write ROWS new incidents, rolled back afterwards.

Usage (DATABASE_URL set): python bench/bench_csv_import.py [ROWS]   (default 1000)
Each row names two places, a perpetrator and two sources, so name matching, claims and
involvements are all exercised. The write is rolled back, so the database is left as it was.
"""

import argparse
import csv
import io
import time

from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
PARSER.add_argument("rows", nargs="?", type=int, default=1000, help="new rows to import (default 1000)")
# Read before Django is set up, so that --help and a refused argument answer at once; not when
# imported (bench_import_limits.py uses its file).
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from demo_rows import reference_records  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from incidents.importers import Duplicates, import_incidents_csv  # noqa: E402


def bench_file(rows: int) -> bytes:
    places, organizations, sources = reference_records()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["title", "type", "date_start", "date_end", "people_count", "places", "perpetrators", "sources"])
    for n in range(rows):
        writer.writerow(
            [
                f"Imported incident {n}",
                "forced-repatriation",
                "2024-01-01",
                "2024-01-05",
                n % 300,
                f"{places[n % 20].name}; {places[(n + 7) % 20].name}",
                organizations[n % 10].name,
                f"{sources[n % 50].title}; {sources[(n + 3) % 50].title}",
            ]
        )
    return out.getvalue().encode()


def main(rows: int):
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_superuser": True, "is_staff": True}
    )
    content = bench_file(rows)
    # The row limit guards servers' memory; a benchmark of a larger import lifts it for itself.
    settings.IMPORT_MAX_ROWS = max(settings.IMPORT_MAX_ROWS, rows)

    started = time.perf_counter()
    # Every row alike: all possible duplicates of each other, created all the same, as a large
    # trusted load is (--allow-duplicates), without the search for them.
    report = import_incidents_csv(io.BytesIO(content), user=user, dry_run=True, duplicates=Duplicates.ALLOW)
    validated = time.perf_counter() - started
    assert not report.errors, report.errors[:5]

    with transaction.atomic():
        started = time.perf_counter()
        report = import_incidents_csv(io.BytesIO(content), user=user, duplicates=Duplicates.ALLOW)
        # What a commit would do: the deferred triggers count the new incidents into the
        # statistics' totals (see incidents/migrations/0011). The bench rolls back, so it has
        # them run here, inside the timing.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        imported = time.perf_counter() - started
        assert len(report.created) == rows, report.summary()
        transaction.set_rollback(True)

    print(f"rows: {rows} ({len(content) / 1e6:.1f} MB)")
    print(f"validate only (--dry-run): {validated:.2f} s ({rows / validated:,.0f} rows/s)")
    print(f"validate + write:          {imported:.2f} s ({rows / imported:,.0f} rows/s)")
    print(f"estimate for 100,000 rows: {100_000 / rows * imported:.0f} s")


if __name__ == "__main__":
    main(ARGUMENTS.rows)
