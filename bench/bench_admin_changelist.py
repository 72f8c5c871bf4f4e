"""How long the incident changelist takes on the server, against the database DATABASE_URL names.

Goal (issue 3): under 500 ms for the unfiltered list and for two filters plus a search, at
1,000,000 incidents (`make demo-data`). Requests go through the whole Django stack with the test
client (middleware, admin, templates), as an analyst without confidential access would see it;
only the network is left out. Prints, for each case, the median and best of a few runs and the
number of queries.

    DATABASE_URL=postgres://… DJANGO_DEBUG=1 .venv/bin/python bench/bench_admin_changelist.py [--runs 5]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")

import django

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection, reset_queries  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from incidents import roles  # noqa: E402
from incidents.models import Incident, IncidentType  # noqa: E402
from incidents.querysets import estimated_row_count  # noqa: E402

BENCH_USERNAME = "bench-analyst"


def bench_analyst() -> User:
    """An Analyst without confidential access: the list carries the visibility filter real users get."""
    user, _ = User.objects.get_or_create(username=BENCH_USERNAME, defaults={"is_staff": True})
    user.groups.set([Group.objects.get(name=roles.ANALYST)])
    return user


def measure(client: Client, url: str, params: dict, runs: int) -> tuple[float, float, int]:
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
    return statistics.median(timings), min(timings), len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed requests per case, after one warm-up")
    args = parser.parse_args()

    client = Client()
    client.force_login(bench_analyst())
    url = reverse("admin:incidents_incident_changelist")
    # Seeded by migration 0002, so present in every database.
    forced_repatriation = IncidentType.objects.get(slug="forced-repatriation").pk
    cases = {
        "unfiltered": {},
        "two filters + search": {
            "review_state__exact": "published",
            "incident_type__id__exact": forced_repatriation,
            "q": "Korean",
        },
    }
    # Fresh statistics, as autovacuum keeps them on a live server; the list's count relies on them.
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Incident._meta.db_table}")
    print(f"Incidents (PostgreSQL estimate): {estimated_row_count(Incident):,}")
    for name, params in cases.items():
        median, best, query_count = measure(client, url, params, args.runs)
        print(f"{name:<22} median {median:7.1f} ms   best {best:7.1f} ms   {query_count} queries   {params}")


if __name__ == "__main__":
    main()
