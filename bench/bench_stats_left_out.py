"""How long the statistics of a search that only leaves words out take, against the database
DATABASE_URL names, with the kept totals less the left-out incidents (`after`) or with every
incident counted (`before`: that subtraction switched off), as an anonymous reader through the
whole Django stack (test client), a local memory cache and no throttle, so that nothing is written.
Prints, for each request, the first time, the median and max of the next five, and the load average.

    PGOPTIONS='-c default_transaction_read_only=on' DATABASE_URL=postgres://…/tracker_big DJANGO_DEBUG=0 \\
        .venv/bin/python bench/bench_stats_left_out.py before|after [QUERY …]

`SUBTRACT_BELOW=N` in the environment tries another bound on the incidents taken away.
"""

import argparse
import os
import statistics
import time

from django_setup import setup_django

QUERIES = ["group_by=perpetrator&q=-dandong", "group_by=year&q=-dandong", "group_by=country&q=-dandong"]

PARSER = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
PARSER.add_argument(
    "mode",
    nargs="?",
    choices=["before", "after"],
    default="after",
    help="without or with the subtraction (default after)",
)
PARSER.add_argument("queries", nargs="*", metavar="QUERY", default=QUERIES, help="stats query strings (default: three)")
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from django.conf import settings  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from incidents import statistics as incident_statistics  # noqa: E402


def main(mode: str, queries: list[str]) -> None:
    if mode == "before":
        incident_statistics._kept_minus_left_out = lambda *args: None
    if os.environ.get("SUBTRACT_BELOW"):
        incident_statistics.SUBTRACT_BELOW = int(os.environ["SUBTRACT_BELOW"])
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None}},
    ):
        client = Client()
        for query in queries:
            times = []
            for _ in range(6):
                started = time.perf_counter()
                response = client.get(f"/api/v1/incidents/stats/?{query}", secure=True)
                times.append((time.perf_counter() - started) * 1000)
            total = response.json()["total"]["incidents"]
            print(
                f"{mode} {query}: {response.status_code}, total {total}, first {times[0]:.0f} ms, "
                f"median of the next 5 {statistics.median(times[1:]):.1f} ms (max {max(times[1:]):.1f} ms), "
                f"load {os.getloadavg()}",
                flush=True,
            )


if __name__ == "__main__":
    main(ARGUMENTS.mode, ARGUMENTS.queries)
