"""How long `generate_demo_data` takes, and where the time goes.

    DATABASE_URL=postgres://…/tracker_NAME DJANGO_DEBUG=1 .venv/bin/python bench/bench_demo_data.py 200000

Adds N incidents (seed 7) to DATABASE_URL's database, then prints the wall time, the CPU time of
this process and of its PostgreSQL backend (on a shared machine, CPU time is what the load would
take alone), the time spent building indexes and counting the statistics' totals, and checks that
the kept totals count every incident once.
"""

import argparse
import os
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
PARSER.add_argument("count", nargs="?", type=int, default=200_000, help="incidents to add (default 200000)")
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from django.db import connection  # noqa: E402

from incidents.demo_data import generate_demo_data  # noqa: E402
from incidents.models import Incident, IncidentRollup, IncidentSearchDocument, RollupDimension  # noqa: E402

# The kept totals' tables, as their unique keys' definitions name them.
TOTALS = ("incidents_incidentrollup ", "incidents_incidentfacettotal ")


def backend_cpu_seconds(pid: int) -> float:
    """utime + stime of a PostgreSQL backend on this machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(count: int) -> None:
    phases = defaultdict(lambda: [0.0, 0.0])
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), (SELECT count(*) FROM incidents_incident)")
        backend, before = cursor.fetchone()

    def timed(execute, sql, params, many, context):
        started, backend_started = time.monotonic(), backend_cpu_seconds(backend)
        try:
            return execute(sql, params, many, context)
        finally:
            kind = (
                # With the count: rebuilding the totals' unique keys, which a count into them keeps up
                # row by row (migration 0036).
                "count totals"
                if "incident_rollup_count" in sql or (" UNIQUE " in sql and any(t in sql for t in TOTALS))
                else "build indexes"
                if sql.startswith("CREATE")
                else "write search words"
                if "incident_search_refresh" in sql
                else "write export rows"
                if "incident_export_refresh" in sql
                else None
            )
            if kind:
                phases[kind][0] += time.monotonic() - started
                phases[kind][1] += backend_cpu_seconds(backend) - backend_started

    load = os.getloadavg()
    cpu_before, backend_before = resource.getrusage(resource.RUSAGE_SELF), backend_cpu_seconds(backend)
    started = time.monotonic()
    with connection.execute_wrapper(timed):
        generate_demo_data(incidents=count, seed=7)
    wall = time.monotonic() - started
    cpu_after, backend_after = resource.getrusage(resource.RUSAGE_SELF), backend_cpu_seconds(backend)

    counted = IncidentRollup.objects.filter(dimension=RollupDimension.INCIDENT).values_list("incidents", flat=True)
    total, kept, searchable = Incident.objects.count(), sum(counted), IncidentSearchDocument.objects.count()
    print(f"generate_demo_data --incidents {count:,} into {before:,} incidents: {wall:.1f} s wall")
    print(f"  CPU: this process {cpu_after.ru_utime - cpu_before.ru_utime:.1f} s, "
          f"PostgreSQL backend {backend_after - backend_before:.1f} s")  # fmt: skip
    for phase, (seconds, backend_seconds) in phases.items():
        print(f"  of which {phase}: {seconds:.1f} s wall, {backend_seconds:.1f} s PostgreSQL CPU")
    print(f"  load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; after: {os.getloadavg()[0]:.1f}")
    print(f"  kept totals count {kept:,} incidents of {total:,}: {'OK' if kept == total else 'WRONG'}")
    print(f"  search words for {searchable:,} incidents of {total:,}: {'OK' if searchable == total else 'WRONG'}")
    if not kept == searchable == total:
        sys.exit(1)


if __name__ == "__main__":
    main(ARGUMENTS.count)
