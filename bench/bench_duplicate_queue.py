"""The duplicate pairs' admin queue and Home, as an Analyst and as a Reviewer with Confidential
access: the time of each page (median and best of RUNS) and its number of queries.

Usage (DATABASE_URL set, DJANGO_DEBUG=1 so the test client may log in without a second factor),
after `generate_demo_data --incidents 200000 --duplicates 0.05 --seed 3` and `find_duplicates`:
    python bench/bench_duplicate_queue.py [--runs 5] [--before]
`--before` puts back the pairs' visibility as it was before migration 0070 (both incidents among
those the reader may see), to compare on the same database. It adds two staff accounts
(bench_analyst, bench_reviewer) if they are missing; nothing else is written."""

import argparse
import statistics
import time

import demo_rows  # noqa: F401  (sets Django up)
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from incidents import roles
from incidents.models import Incident
from incidents.querysets import DuplicatePairQuerySet, can_see_unpublished

PAGES = {
    "queue (waiting)": "/admin/incidents/duplicatepair/",
    "queue, CN 2020-2023": "/admin/incidents/duplicatepair/?country=CN&date_from=2020-01-01&date_to=2023-12-31",
    "queue, every decision": "/admin/incidents/duplicatepair/?decision__exact=all",
    "home": "/admin/",
}


def visible_before(self, user):
    """The pairs' visibility before migration 0070: both incidents among the visible ones."""
    if not can_see_unpublished(user):
        return self.none()
    incidents = Incident.objects.visible_to(user).values("pk")
    return self.filter(incident_a__in=incidents, incident_b__in=incidents)


def staff(username: str, *groups: str) -> User:
    user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": True})
    user.groups.add(*Group.objects.filter(name__in=groups))
    return user


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", action="store_true")
    options = parser.parse_args()
    if options.before:
        DuplicatePairQuerySet.visible_to = visible_before
    readers = {
        "analyst": staff("bench_analyst", roles.ANALYST),
        "reviewer+confidential": staff("bench_reviewer", roles.REVIEWER, roles.CONFIDENTIAL_ACCESS),
    }
    for name, reader in readers.items():
        client = Client()
        client.force_login(reader)
        for label, url in PAGES.items():
            times = []
            for _ in range(options.runs):
                with CaptureQueriesContext(connection) as queries:
                    start = time.perf_counter()
                    response = client.get(url)
                    times.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            print(
                f"{name:22} {label:22} median {statistics.median(times):6.0f} ms, best {min(times):6.0f} ms, "
                f"{len(queries.captured_queries)} queries"
            )


if __name__ == "__main__":
    main()
