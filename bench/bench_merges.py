"""What merging costs: the time of a merge and of its undo, and what leaving merged incidents out
of every read (`IncidentQuerySet.visible_to`'s `merged_into IS NULL`) adds to the reads that scan
the most incidents: a page of the newest, and the statistics that the kept totals cannot answer
(aggregated over the incidents themselves).

Against whatever DATABASE_URL points to, after `manage.py generate_demo_data`. It WRITES: it merges
--pairs pairs of published incidents (as a Reviewer it creates, `bench-merger`) and undoes each
merge at once, leaving their history, the merges' records and new versions behind. Use a copy.

    DATABASE_URL=postgres://…/tracker_copy .venv/bin/python bench/bench_merges.py --pairs 20 --runs 30
"""

import argparse
import statistics
import time
from datetime import date

from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
PARSER.add_argument("--pairs", type=int, default=20)
PARSER.add_argument("--runs", type=int, default=30)
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from django.contrib.auth.models import AnonymousUser, Group, User  # noqa: E402
from django.db.models import Count, Sum  # noqa: E402

from incidents import roles  # noqa: E402
from incidents.merges import incident_merge, incident_merge_undo  # noqa: E402
from incidents.models import DuplicatePair, Incident  # noqa: E402


def timed(function, runs: int) -> tuple[float, float]:
    """p50 and p95 of `function`, in milliseconds, after one warm-up call."""
    function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, round(len(times) * 0.95) - 1)]


def reads(runs: int) -> None:
    anonymous = AnonymousUser()
    kept_out = Incident.objects.visible_to(anonymous)
    # The same reader's incidents without the condition: what every read ran before merges existed.
    before = Incident.objects.seen_by(anonymous)
    cases = {
        "page of 50, newest first": lambda incidents: list(
            incidents.order_by("-date_start", "-id").values_list("id", flat=True)[:50]
        ),
        # A mid-month start: the kept totals cannot answer it, so statistics sum the incidents.
        "statistics over the incidents (date from mid-2020)": lambda incidents: incidents.filter(
            date_end__gte=date(2020, 6, 15)
        ).aggregate(incidents=Count("pk"), people=Sum("people_count")),
    }
    print("| read | p50 / p95 without | p50 / p95 with `merged_into IS NULL` |")
    print("|---|---|---|")
    for name, read in cases.items():
        without = timed(lambda read=read: read(before), runs)
        with_condition = timed(lambda read=read: read(kept_out), runs)
        figures = [f"{p50:.1f} / {p95:.1f} ms" for p50, p95 in (without, with_condition)]
        print(f"| {name} | {figures[0]} | {figures[1]} |")


def merges(pairs: int) -> None:
    reviewer, _ = User.objects.get_or_create(username="bench-merger", defaults={"is_staff": True})
    reviewer.groups.add(Group.objects.get(name=roles.REVIEWER))
    reviewer = User.objects.get(pk=reviewer.pk)  # permissions read afresh
    incidents = list(
        Incident.objects.visible_to(AnonymousUser()).order_by("-id").values_list("pk", flat=True)[: pairs * 2]
    )
    merge_times, undo_times = [], []
    for first, second in zip(incidents[::2], incidents[1::2], strict=True):
        pair, _ = DuplicatePair.objects.get_or_create(
            incident_a_id=min(first, second), incident_b_id=max(first, second), defaults={"score": 0.9}
        )
        start = time.perf_counter()
        merge = incident_merge(user=reviewer, pair=pair)
        merge_times.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        incident_merge_undo(user=reviewer, merge=merge)
        undo_times.append((time.perf_counter() - start) * 1000)
    for name, times in (("merge", merge_times), ("undo", undo_times)):
        times.sort()
        print(f"{name}: p50 {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms over {len(times)} pairs")


if __name__ == "__main__":
    print(f"{Incident.objects.count():,} incidents")
    reads(ARGUMENTS.runs)
    if ARGUMENTS.pairs:
        merges(ARGUMENTS.pairs)
