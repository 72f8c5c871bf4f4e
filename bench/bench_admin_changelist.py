"""How long the incident changelist takes on the server, against the database DATABASE_URL names.

Goals: under 500 ms for the unfiltered list and for two filters plus a search (issue 3), and p95
under 300 ms for a search of a common word (issue 18), at 1,000,000 incidents (`make demo-data`).
Requests go through the whole Django stack with the test client (middleware, admin, templates), as
an analyst without confidential access would see it; only the network is left out. Prints, for each
case, the median, p95 and best of the runs, and the number of queries with their time in PostgreSQL.

    DATABASE_URL=postgres://… DJANGO_DEBUG=1 .venv/bin/python bench/bench_admin_changelist.py [--runs 5]
"""

import argparse
import statistics
import time

from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
PARSER.add_argument("--runs", type=int, default=20, help="timed requests per case, after one warm-up")
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection, reset_queries  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from incidents import roles  # noqa: E402
from incidents.models import Incident  # noqa: E402
from incidents.querysets import estimated_row_count  # noqa: E402

BENCH_USERNAME = "bench-analyst"


def bench_analyst() -> User:
    """An Analyst without confidential access: the list carries the visibility filter real users get."""
    user, _ = User.objects.get_or_create(username=BENCH_USERNAME, defaults={"is_staff": True})
    user.groups.set([Group.objects.get(name=roles.ANALYST)])
    return user


def measure(client: Client, url: str, params: dict, runs: int) -> tuple[float, float, float, int, float]:
    # Each request clears the query log as it starts; clear it first so the capture lines up.
    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params)
    if response.status_code != 200:
        raise SystemExit(f"{url} {params} answered {response.status_code}")
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(url, params)
        timings.append((time.perf_counter() - started) * 1000)
    p95 = statistics.quantiles(timings, n=20, method="inclusive")[-1] if runs > 1 else timings[0]
    # What the first request's queries took in PostgreSQL, beside the page's whole time (rendering
    # the page of 100 rows is most of it, the same with or without filters).
    sql = sum(float(query["time"]) for query in queries.captured_queries) * 1000
    return statistics.median(timings), p95, min(timings), len(queries), sql


def main(args: argparse.Namespace) -> None:

    client = Client()
    client.force_login(bench_analyst())
    url = reverse("admin:incidents_incident_changelist")
    cases = {
        "unfiltered": {},
        # The type is seeded by migration 0002, so present in every database.
        "two filters + search": {"review_state__exact": "published", "type": "forced-repatriation", "q": "Korean"},
        # Common words of the demo data: in 40% of its incidents, and in most of them.
        "search: common word": {"q": "repatriation"},
        "search: two common words": {"q": "north korea"},
        "search: rare word": {"q": "Dandong"},
        # Issue 17: only leaving a word out; and the bound on words, refused with a message.
        "search: -zzzz": {"q": "-zzzz"},
        "search: 40 one-letter words": {"q": " ".join("abcdefghijklmnopqrstuvwxyzabcdefghijklmn")},
    }
    # Fresh statistics, as autovacuum keeps them on a live server; the list's count relies on them.
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Incident._meta.db_table}")
    print(f"Incidents (PostgreSQL estimate): {estimated_row_count(Incident):,}")
    for name, params in cases.items():
        median, p95, best, query_count, sql = measure(client, url, params, args.runs)
        print(
            f"{name:<28} median {median:7.1f} ms   p95 {p95:7.1f} ms   best {best:7.1f} ms   "
            f"{query_count} queries ({sql:5.1f} ms)   {params}"
        )


if __name__ == "__main__":
    main(ARGUMENTS)
