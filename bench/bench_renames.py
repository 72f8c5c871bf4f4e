"""What renaming costs its writer: the organization involved in the most incidents and the source
with the most claims, each renamed through `services.record_save` (which starts a new version of
the incidents showing the name) in a transaction rolled back, `--runs` times; with `--profile`, the
PL/pgSQL functions the organization's rename ran, slowest first.

Usage (DATABASE_URL set, from the checkout to measure): python bench/bench_renames.py [--runs N] [--profile]
"""

import argparse
import sys
import time
from pathlib import Path

from django_setup import setup_django

parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=2)
parser.add_argument("--profile", action="store_true")
# Read before Django is set up, so that --help and a refused argument answer at once.
options = parser.parse_args()
setup_django(Path.cwd())  # the checkout measured: the one it is run from

from django.contrib.auth import get_user_model  # noqa: E402 (once Django is set up)
from django.db import connection, transaction  # noqa: E402
from django.db.models import Count  # noqa: E402

from incidents import services  # noqa: E402
from incidents.models import Organization, Source  # noqa: E402

user = get_user_model().objects.filter(is_superuser=True, is_active=True).first()
if user is None:
    sys.exit("No active superuser: run `python manage.py ensure_admin` first.")
busiest = (
    (Organization.objects.annotate(links=Count("involvements")).order_by("-links").first(), "name"),
    (Source.objects.annotate(links=Count("claims")).order_by("-links").first(), "title"),
)
for record, field in busiest:
    for _ in range(options.runs):
        with transaction.atomic(), connection.cursor() as cursor:
            if options.profile:
                cursor.execute("SET LOCAL track_functions = 'all'")
            started = time.perf_counter()
            services.record_save(
                user=user,
                record=type(record).objects.get(pk=record.pk),
                data={field: f"{getattr(record, field)} (renamed)"},
                expected_version=record.version,
            )
            elapsed = time.perf_counter() - started
            if options.profile and isinstance(record, Organization):
                cursor.execute(
                    "SELECT funcname, calls, round(total_time), round(self_time) FROM pg_stat_xact_user_functions"
                    " ORDER BY total_time DESC LIMIT 8"
                )
                for name, calls, total_ms, self_ms in cursor.fetchall():
                    print(f"  {name}: {calls} calls, {total_ms} ms ({self_ms} ms its own)")
            transaction.set_rollback(True)
        print(f"{type(record).__name__} {record.pk} ({record.links:,} links) renamed: {elapsed:.2f} s")
