"""CSV export: wall time against a flat COPY of the very same bytes, and the exporter's peak memory.

Usage (DATABASE_URL set): python bench/bench_csv_export.py [ROWS] [--runs N] [--case NAME ...]
Without ROWS it exports the incidents already in the database; with ROWS it first tops the
database up to ROWS incidents (bench/demo_rows.py). Output goes to /dev/null.

Each case (a reader and filters) is timed as the doors run it (`write_incidents_csv`), and against
its reference: `CREATE TEMPORARY TABLE … AS` the export's own SELECT, then `COPY` of that plain
table, which sends the same bytes without computing any of them (checked by their SHA-256, which
both sides compute as they go).
"""

import argparse
import hashlib
import os
import re
import statistics
import sys
import time

from django_setup import setup_django

# (name, reader, filters as a query string): the whole export for each audience; filtered ones, by
# date and country (the incident list's commonest filters), by a search; a partner's full-history
# sync (`updated_since` far back, which also reports the merged incidents the reader may follow) for
# each audience, and an incremental one (the demo data's last month of changes); an incident type, a
# common one and one with a sub-type, alone, the common one with a date range, the other with a
# country.
CASES = {
    "all, superuser": ("superuser", ""),
    "all, anonymous": ("anonymous", ""),
    "date+country, superuser": ("superuser", "date_from=2015-01-01&date_to=2020-12-31&country=CN"),
    "q, anonymous": ("anonymous", "q=repatriation"),
    "sync, superuser": ("superuser", "updated_since=2000-01-01T00:00:00Z"),
    "sync, anonymous": ("anonymous", "updated_since=2000-01-01T00:00:00Z"),
    "sync last month, anonymous": ("anonymous", "updated_since=2025-12-01T00:00:00Z"),
    "type, anonymous": ("anonymous", "type=forced-repatriation"),
    "type subtree, superuser": ("superuser", "type=execution"),
    "type+date, anonymous": ("anonymous", "type=forced-repatriation&date_from=2015-01-01&date_to=2020-12-31"),
    "type subtree+country, superuser": ("superuser", "type=execution&country=CN"),
    # The filters on an incident's links: a province with its cities and villages (Jilin: 174,658
    # incidents at 1,000,000), a source with the 20 sources relaying it (367 incidents), a government
    # involved in 399,163, and the independent origins of the claims the reader may see (each
    # audience's own count, migration 0043).
    "place, anonymous": ("anonymous", "place=6"),
    "source, analyst": ("analyst", "source=1103"),
    "organization, superuser": ("superuser", "organization=1"),
    "min_origins, anonymous": ("anonymous", "min_origins=2"),
    "min_origins, superuser": ("superuser", "min_origins=2"),
    # The admin's changelist export (`export.csv?<the changelist's query>`): its list filters and its
    # search box, applied by the changelist, then the export's `pk__in` of what it selects.
    "admin date+country, superuser": ("superuser", "admin:date_from=2015-01-01&date_to=2020-12-31&country=CN"),
    "admin all, superuser": ("superuser", "admin:"),
}

PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
PARSER.add_argument("rows", nargs="?", type=int, help="top the database up to this many incidents first")
PARSER.add_argument("--runs", type=int, default=3, help="timed runs of each side (best and median shown)")
PARSER.add_argument("--case", action="append", choices=CASES, help="only these cases (repeatable)")
PARSER.add_argument("--no-rss", action="store_true", help="skip the peak memory runs")
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from demo_rows import ensure_incidents, peak_rss_mb  # noqa: E402
from django.contrib.admin import site  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import AnonymousUser, Group  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.http import QueryDict  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from django.urls import reverse  # noqa: E402

from incidents import roles  # noqa: E402
from incidents.exports import copy_statement, write_incidents_csv  # noqa: E402
from incidents.models import AccessDoor, Incident  # noqa: E402
from incidents.selectors import incidents_matching  # noqa: E402

# The admin's export, as `IncidentCsvAdminMixin.export_changelist_csv` selects it.
ADMIN = "admin:"


def bench_user():
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_superuser": True, "is_staff": True}
    )
    return user


def analyst_user():
    """A staff member who may see drafts, not confidential records (the analysts' role)."""
    user, created = get_user_model().objects.get_or_create(username="bench-analyst", defaults={"is_staff": True})
    if created:
        user.groups.add(Group.objects.get(name=roles.ANALYST))
    return user


def reader(name: str):
    return {"superuser": bench_user, "analyst": analyst_user}.get(name, AnonymousUser)()


def incidents_for(user, filters: str):
    """The incidents a door exports for `user` and `filters`: the API's and the command's, or the
    admin's changelist export's (`filters` starting with ADMIN)."""
    if not filters.startswith(ADMIN):
        return incidents_matching(user=user, filters=QueryDict(filters))
    model_admin = site.get_model_admin(Incident)
    request = RequestFactory().get(reverse("admin:incidents_incident_export_csv"), QueryDict(filters[len(ADMIN) :]))
    request.user = user
    changelist = model_admin.get_changelist_instance(request)
    return model_admin.exported_incidents(request, changelist.get_queryset(request))


class Digest:
    """A file-like sink that keeps the SHA-256 and length of what is written to it."""

    def __init__(self):
        self.hash, self.size = hashlib.sha256(), 0

    def write(self, data) -> None:
        self.hash.update(data)
        self.size += len(data)


def export(user, filters: str, out) -> float:
    """Seconds to export what the doors export, to `out`."""
    started = time.perf_counter()
    incidents = incidents_for(user, filters)
    write_incidents_csv(incidents, user, out, door=AccessDoor.COMMAND, export_filters=dict(QueryDict(filters).lists()))
    return time.perf_counter() - started


def reference(user, filters: str, out) -> float:
    """Seconds to COPY a plain table holding the export's rows, to `out` (the table is made first,
    untimed, and dropped with the transaction)."""
    incidents = incidents_for(user, filters)
    connection.ensure_connection()
    statement = copy_statement(incidents, user, connection.connection)
    select = re.fullmatch(r"COPY \((.*)\) TO STDOUT WITH \((.*)\)", statement, re.DOTALL)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL datestyle TO 'ISO, YMD'")
        cursor.execute(f"CREATE TEMPORARY TABLE export_reference ON COMMIT DROP AS {select[1]}")
        started = time.perf_counter()
        with cursor.cursor.copy(f"COPY export_reference TO STDOUT WITH ({select[2]})") as copy:
            for data in copy:
                out.write(data)
        elapsed = time.perf_counter() - started
        # Rolled back: the table is gone, and no catalog row of it is left behind.
        transaction.set_rollback(True)
    return elapsed


def export_peak_rss_mb(*options: str) -> float:
    """Peak resident memory of `manage.py export_incidents` run as its own process, in MB."""
    return peak_rss_mb([sys.executable, "manage.py", "export_incidents", "-o", os.devnull, *options])


def main(arguments: argparse.Namespace):
    if arguments.rows is not None:
        created = ensure_incidents(arguments.rows)
        if created:
            print(f"created {created} incidents")
    print(f"incidents: {Incident.objects.count()}; load average {os.getloadavg()[0]:.1f}")
    for name in arguments.case or CASES:
        user_name, filters = CASES[name]
        user = reader(user_name)
        # Both sides hash what they send (the same work on each), so every run also checks the bytes.
        exported, copied = Digest(), Digest()
        exports = [export(user, filters, exported if run == 0 else Digest()) for run in range(arguments.runs)]
        references = [reference(user, filters, copied if run == 0 else Digest()) for run in range(arguments.runs)]
        if (exported.hash.digest(), exported.size) != (copied.hash.digest(), copied.size):
            raise SystemExit(f"{name}: the export and its reference differ.")
        print(
            f"{name} ({filters or 'no filter'}): {exported.size / 1e6:.1f} MB; "
            f"export best {min(exports):.2f} s, median {statistics.median(exports):.2f} s; "
            f"flat COPY best {min(references):.2f} s, median {statistics.median(references):.2f} s; "
            f"ratio (best/best) {min(exports) / min(references):.2f}x; load average {os.getloadavg()[0]:.1f}"
        )
    if not arguments.no_rss:
        bench_user()
        empty = export_peak_rss_mb("--user=bench", "--date-to=1000-01-01")
        full = export_peak_rss_mb("--user=bench")
        print(f"peak RSS exporting 0 rows: {empty:.0f} MB; all rows: {full:.0f} MB (+{full - empty:.0f} MB)")


if __name__ == "__main__":
    main(ARGUMENTS)
