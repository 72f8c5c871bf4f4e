"""CSV import: time to validate and write ROWS new incidents, rolled back afterwards.

Usage (DATABASE_URL set): python bench/bench_csv_import.py [ROWS]   (default 1000)
Each row names two places, a perpetrator and two sources, so name matching, claims and
involvements are all exercised. The write is rolled back, so the database is left as it was.
"""

import argparse
import csv
import io
import time

from demo_rows import reference_records
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from incidents.importers import Duplicates, import_incidents_csv


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="?", type=int, default=1000, help="new rows to import (default 1000)")
    rows = parser.parse_args().rows
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
    main()
