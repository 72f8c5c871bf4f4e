"""CSV export: wall time against a bare COPY of the same statement, and the exporter's peak memory.

Usage (DATABASE_URL set): python bench/bench_csv_export.py [ROWS]
Without ROWS it exports the incidents already in the database; with ROWS it first tops the
database up to ROWS incidents (bench/demo_rows.py). Output goes to /dev/null.
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from demo_rows import ensure_incidents
from django.contrib.auth import get_user_model
from django.db import connection

from incidents.exports import copy_statement, write_incidents_csv
from incidents.models import AccessDoor, Incident

ROOT = Path(__file__).resolve().parent.parent
RUNS = 3


def bench_user():
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_superuser": True, "is_staff": True}
    )
    return user


def time_export(user) -> float:
    started = time.perf_counter()
    with open(os.devnull, "wb") as out:
        write_incidents_csv(Incident.objects.visible_to(user), user, out, door=AccessDoor.COMMAND, export_filters={})
    return time.perf_counter() - started


def time_bare_copy(user) -> float:
    """The same SELECT through psycopg alone: no Django, no chunking, no transaction block."""
    connection.ensure_connection()
    pg_connection = connection.connection
    statement = copy_statement(Incident.objects.visible_to(user), user, pg_connection)
    started = time.perf_counter()
    with open(os.devnull, "wb") as out, pg_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for data in copy:
            out.write(data)
    elapsed = time.perf_counter() - started
    pg_connection.rollback()
    return elapsed


def peak_rss_mb(*filters: str) -> float:
    """Peak resident memory of `manage.py export_incidents` run as its own process, in MB."""
    command = [sys.executable, "manage.py", "export_incidents", "--user=bench", "-o", os.devnull, *filters]
    process = subprocess.Popen(command, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed ({status}).")
    return usage.ru_maxrss / 1024  # kilobytes on Linux


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else None
    if rows is not None:
        created = ensure_incidents(rows)
        if created:
            print(f"created {created} incidents")
    user = bench_user()
    total = Incident.objects.count()
    export = [time_export(user) for _ in range(RUNS)]
    bare = [time_bare_copy(user) for _ in range(RUNS)]
    print(f"incidents: {total}")
    print(f"export (best of {RUNS}):   {min(export):.2f} s   median {statistics.median(export):.2f} s")
    print(f"bare COPY (best of {RUNS}): {min(bare):.2f} s   median {statistics.median(bare):.2f} s")
    print(f"ratio (best/best):     {min(export) / min(bare):.2f}x")
    empty = peak_rss_mb("--date-to=1000-01-01")
    full = peak_rss_mb()
    print(f"peak RSS exporting 0 rows: {empty:.0f} MB; all {total} rows: {full:.0f} MB (+{full - empty:.0f} MB)")


if __name__ == "__main__":
    main()
