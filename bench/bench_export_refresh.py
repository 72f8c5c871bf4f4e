"""How long `incident_export_refresh` takes for many incidents and for one.

    DATABASE_URL=postgres://…/tracker_NAME DJANGO_DEBUG=1 .venv/bin/python bench/bench_export_refresh.py 100000 3

Each round, in transactions rolled back: the kept rows of the N lowest incident ids deleted, then
rendered again in one call (as after an import); then the rows of the 1,000 lowest ids refreshed one
call each (as edits do; the first call, which plans the statements, untimed). Prints wall time and
the CPU time of the PostgreSQL backend (on a shared machine, what the call would take alone). To
compare two versions of the function, migrate the same database back and forth between rounds
(bench/README.md, "The export rows' refresh in id order").
"""

import argparse
import os
import time
from pathlib import Path

from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
PARSER.add_argument(
    "count", nargs="?", type=int, default=100_000, help="incidents refreshed in one call (default 100000)"
)
PARSER.add_argument("rounds", nargs="?", type=int, default=1, help="rounds (default 1)")
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from django.db import connection, transaction  # noqa: E402

EDITS = 1_000


def backend_cpu_seconds(pid: int) -> float:
    """utime + stime of a PostgreSQL backend on this machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(count: int, rounds: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
        cursor.execute("SELECT id FROM incidents_incident ORDER BY id LIMIT %s", [max(count, EDITS)])
        ids = [incident_id for (incident_id,) in cursor.fetchall()]
    for _ in range(rounds):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM incidents_incidentexportrow WHERE incident_id = ANY (%s)", [ids[:count]])
            started, backend_started = time.monotonic(), backend_cpu_seconds(backend)
            cursor.execute("SELECT incident_export_refresh(%s::bigint[])", [ids[:count]])
            wall, cpu = time.monotonic() - started, backend_cpu_seconds(backend) - backend_started
            transaction.set_rollback(True)
        print(f"{count:,} incidents in one call: {wall:.2f} s wall, {cpu:.2f} s PostgreSQL CPU", flush=True)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT incident_export_refresh(ARRAY[%s]::bigint[])", [ids[0]])
            started, backend_started = time.monotonic(), backend_cpu_seconds(backend)
            for incident_id in ids[:EDITS]:
                cursor.execute("SELECT incident_export_refresh(ARRAY[%s]::bigint[])", [incident_id])
            wall, cpu = time.monotonic() - started, backend_cpu_seconds(backend) - backend_started
            transaction.set_rollback(True)
        each = f"{wall / EDITS * 1000:.2f} ms wall, {cpu / EDITS * 1000:.2f} ms CPU each"
        print(f"  one incident a call, x{EDITS:,}: {each}")
        print(f"  load average: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main(ARGUMENTS.count, ARGUMENTS.rounds)
