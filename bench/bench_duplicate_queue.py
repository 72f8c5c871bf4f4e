"""The duplicate pairs' admin queue and Home, for each kind of reader: the time of each page (p50 and
p95 of RUNS), its number of queries and the part of its time spent in them (as Django measures it).

Pages: the queue as it opens (the waiting pairs), by score band, by country, by dates, by both,
every decision, the best waiting pair's own page, a decision on it leading to the next pair of its
list (the POST, rolled back: nothing is decided), and Home. Readers: a superuser, a Reviewer
without Confidential access, an Analyst, a Reviewer with Confidential access.

Usage (DATABASE_URL set, DJANGO_DEBUG=1 so the test client may log in without a second factor),
after `generate_demo_data --incidents 200000 --duplicates 0.05 --seed 3` and `find_duplicates` (at
1,000,000 incidents, which `find_duplicates` cannot pair in this machine's memory,
`bench/duplicate_pairs_from_truth.py` instead):
    python bench/bench_duplicate_queue.py [--runs 15] [--only PAGE] [--reader NAME] [--before] [--explain MS]
`--before` puts back the pairs' visibility as it was before migration 0070 (both incidents among
those the reader may see), to compare on the same database. `--explain MS` prints EXPLAIN
(ANALYZE, BUFFERS) of every SELECT of a page's last run that took at least MS milliseconds. It adds
staff accounts (bench_superuser; bench_reviewer_plain; bench_analyst; bench_reviewer, with
Confidential access as before) if they are missing; nothing else is written (the decision's POST
runs in a transaction rolled back)."""

import argparse
import statistics
import time
from typing import NamedTuple
from urllib.parse import urlencode

from django_setup import setup_django

PARSER = argparse.ArgumentParser()
PARSER.add_argument("--runs", type=int, default=15)
PARSER.add_argument("--only", action="append", help="Only these pages (by label); repeatable.")
PARSER.add_argument("--reader", action="append", help="Only these readers; repeatable.")
PARSER.add_argument("--before", action="store_true")
PARSER.add_argument("--explain", type=float, metavar="MS")
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.http import QueryDict  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from incidents import roles  # noqa: E402
from incidents.filters import DuplicatePairFilterSet  # noqa: E402
from incidents.models import DuplicatePair, Incident  # noqa: E402
from incidents.querysets import DuplicatePairQuerySet, can_see_unpublished  # noqa: E402

QUEUE = "/admin/incidents/duplicatepair/"
CN_2020_2023 = "country=CN&date_from=2020-01-01&date_to=2023-12-31"
LISTS = {
    "queue (waiting)": "",
    "queue, score 0.90+": "score=high",
    "queue, score 0.65-0.90": "score=medium",
    "queue, country CN": "country=CN",
    "queue, 2020-2023": "date_from=2020-01-01&date_to=2023-12-31",
    "queue, CN 2020-2023": CN_2020_2023,
    "queue, every decision": "decision__exact=all",
}
# The best waiting pair of this list is opened, then decided "unsure", which leads to the next.
PAIR_LISTS = {"pair page": "", "decide -> next pair": "", "decide -> next, CN 2020-2023": CN_2020_2023}


class Page(NamedTuple):
    label: str
    method: str
    url: str
    data: dict | None = None
    # What the database lacks for this page (a fresh one, or one `find_duplicates` paired nothing in,
    # has no waiting pair): the page is named, not timed.
    lacking: str = ""


def visible_before(self, user):
    """The pairs' visibility before migration 0070: both incidents among the visible ones."""
    if not can_see_unpublished(user):
        return self.none()
    incidents = Incident.objects.visible_to(user).values("pk")
    return self.filter(incident_a__in=incidents, incident_b__in=incidents)


def staff(username: str, *groups: str, superuser: bool = False) -> User:
    user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": superuser})
    user.groups.add(*Group.objects.filter(name__in=groups))
    return user


def percentile(times: list[float], share: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def best_waiting_pair(reader, query: str) -> DuplicatePair:
    """The best waiting pair `reader` sees among those the filters of `query` select."""
    pairs = DuplicatePair.objects.visible_to(reader).waiting()
    return DuplicatePairFilterSet(QueryDict(query), queryset=pairs).qs.order_by("-score", "id").first()


def timed(client, method: str, url: str, data=None):
    """One request's time (ms), its queries and its response; a POST is rolled back."""
    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        if method == "post":
            with transaction.atomic():
                response = client.post(url, data)
                transaction.set_rollback(True)
        else:
            response = client.get(url)
        elapsed = (time.perf_counter() - start) * 1000
    return elapsed, queries.captured_queries, response


def explain(queries, at_least_ms: float) -> None:
    for query in queries:
        sql = query["sql"]
        if float(query["time"]) * 1000 < at_least_ms or not sql.lstrip().upper().startswith("SELECT"):
            continue
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        print(f"    -- {float(query['time']) * 1000:.0f} ms:\n    {sql}\n{plan}\n")


def main(options: argparse.Namespace):
    if options.before:
        DuplicatePairQuerySet.visible_to = visible_before
    readers = {
        "superuser": staff("bench_superuser", superuser=True),
        "reviewer": staff("bench_reviewer_plain", roles.REVIEWER),
        "analyst": staff("bench_analyst", roles.ANALYST),
        "reviewer+confidential": staff("bench_reviewer", roles.REVIEWER, roles.CONFIDENTIAL_ACCESS),
    }
    for name, reader in readers.items():
        if options.reader and name not in options.reader:
            continue
        client = Client()
        client.force_login(reader)
        pages = [Page(label, "get", f"{QUEUE}?{query}") for label, query in LISTS.items()]
        for label, query in PAIR_LISTS.items():
            pair = best_waiting_pair(reader, query)
            if pair is None:
                among = f" among {query}" if query else ""
                pages.append(Page(label, "", "", lacking=f"no waiting pair{among} that this reader sees"))
                continue
            change = reverse("admin:incidents_duplicatepair_change", args=[pair.pk])
            if label == "pair page":
                pages.append(Page(label, "get", change))
            else:
                url = f"{change}?{urlencode({'_changelist_filters': query})}"
                # As the page sends it: the decision it was opened at, or the form refuses (200).
                decided = {"decision": "unsure", "note": "", "decision_read": pair.decision_read}
                pages.append(Page(label, "post", url, decided))
        pages.append(Page("home", "get", "/admin/"))
        for label, method, url, data, lacks in pages:
            if options.only and label not in options.only:
                continue
            if lacks:
                print(f"{name:22} {label:30} skipped: {lacks}", flush=True)
                continue
            times, sql_times = [], []
            for _ in range(options.runs):
                elapsed, queries, response = timed(client, method, url, data)
                times.append(elapsed)
                sql_times.append(sum(float(query["time"]) for query in queries) * 1000)
                expected = 302 if method == "post" else 200
                assert response.status_code == expected, (url, response.status_code)
            print(
                f"{name:22} {label:30} p50 {statistics.median(times):6.0f} ms, p95 {percentile(times, 0.95):6.0f} ms, "
                f"{len(queries)} queries (SQL p50 {statistics.median(sql_times):4.0f} ms)",
                flush=True,
            )
            if options.explain is not None:
                explain(queries, options.explain)


if __name__ == "__main__":
    main(ARGUMENTS)
