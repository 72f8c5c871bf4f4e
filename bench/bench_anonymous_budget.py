"""What an anonymous request of the public pages costs the database, and what the budget answers.

For each address below, as an anonymous reader (each request from another client address, so the
public pages' rate does not refuse them): the status, the wall time, and the statements sent with
the time they took as the client sees them (PostgreSQL's work plus the round trips), median over
--runs. In-process through Django's test client, DEBUG on (so that the pages find their static
files without `collectstatic`); TRACKER_ANON_STATEMENT_TIMEOUT as the environment sets it (`0`:
unbounded, what each request would cost).

    DATABASE_URL=postgres://… .venv/bin/python bench/bench_anonymous_budget.py --runs 3
"""

import argparse
import os
import statistics
import time

from django_setup import setup_django

PARSER = argparse.ArgumentParser()
PARSER.add_argument("--runs", type=int, default=3)
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
os.environ["DJANGO_DEBUG"] = "1"
setup_django()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

ADDRESSES = [
    # The audit's heaviest browse page: a value of every facet chosen and a search (2026-12-05).
    "/?country=KP&verification=alleged&date_from=2005-01-01&date_to=2030-12-31&perpetrator=2"
    "&type=forced-repatriation&q=%22by%20in%22",
    "/incidents.geojson?organization=1&min_people=60",
    "/incidents.geojson",
    "/",
    "/?country=KP&type=forced-repatriation",
    "/statistics/",
    "/statistics/?group_by=country&q=north",
    "/map/",
    "/map/incidents.geojson",
]


class StatementTimes:
    """Installed before the request's own wrappers, so it times each statement as sent."""

    def __init__(self):
        self.times = []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.times.append(time.perf_counter() - started)


def measure(client: Client, address: str, number: int) -> tuple[int, float, int, float]:
    statements = StatementTimes()
    started = time.perf_counter()
    with connection.execute_wrapper(statements):
        response = client.get(address, REMOTE_ADDR=f"198.51.100.{number % 250 + 1}")
        if response.streaming:
            b"".join(response.streaming_content)
    return response.status_code, time.perf_counter() - started, len(statements.times), sum(statements.times)


def main(arguments: argparse.Namespace) -> None:
    client = Client()
    print(f"TRACKER_ANON_STATEMENT_TIMEOUT={settings.ANON_STATEMENT_TIMEOUT} ms, median of {arguments.runs}")
    print(f"{'status':>6} {'wall s':>7} {'stmts':>5} {'SQL s':>6}  address")
    number = 0
    for address in ADDRESSES:
        runs = []
        for _ in range(arguments.runs):
            number += 1
            runs.append(measure(client, address, number))
        statuses = "/".join(sorted({str(run[0]) for run in runs}))
        wall = statistics.median(run[1] for run in runs)
        count = statistics.median(run[2] for run in runs)
        sql = statistics.median(run[3] for run in runs)
        print(f"{statuses:>6} {wall:7.2f} {count:5.0f} {sql:6.2f}  {address}")


if __name__ == "__main__":
    main(ARGUMENTS)
