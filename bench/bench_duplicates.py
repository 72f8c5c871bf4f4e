"""Duplicate finding: blocking recall, the queue's precision and recall at the default threshold,
the whole database's scoring time and one changed incident's rescoring time.

Usage (DATABASE_URL set), after
    python manage.py generate_demo_data --incidents 100000 --duplicates 0.05 --duplicates-truth truth.csv
run
    python bench/bench_duplicates.py truth.csv [--samples 100]
It reads the true pairs the generator kept aside (every two incidents reporting one event),
refreshes the queue as `manage.py find_duplicates` does and times it, compares the waiting pairs
with the truth, then rescores changed incidents one by one as a save does (after commit) and times
each. Everything it writes is rolled back at the end: the database is left as it was."""

import argparse
import csv
import os
import random
import statistics
import time

from django_setup import setup_django

DEFAULT_TRUTH = "duplicates-truth.csv"

PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
PARSER.add_argument("truth", nargs="?", default=DEFAULT_TRUTH)
PARSER.add_argument("--samples", type=int, default=100)
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from django.db import transaction  # noqa: E402

from incidents.duplicates import PROPOSAL_THRESHOLD, candidate_pairs, duplicate_pairs_refresh  # noqa: E402
from incidents.models import DuplicatePair, Incident  # noqa: E402


class Rollback(Exception):
    pass


def main(truth_path: str, samples: int) -> None:
    with open(truth_path, newline="") as file:
        named = [(row["incident_a"], row["incident_b"]) for row in csv.DictReader(file)]
    ids = dict(Incident.objects.values_list("public_id", "pk"))
    truth = {tuple(sorted((ids[a], ids[b]))) for a, b in named}
    print(f"{len(ids):,} incidents, {len(truth):,} true pairs; load average {os.getloadavg()[0]:.2f}")

    started = time.monotonic()
    blocked = candidate_pairs()
    print(
        f"blocking: {len(blocked):,} candidate pairs in {time.monotonic() - started:.1f} s, "
        f"pair recall {len(truth & blocked) / len(truth):.3f}"
    )
    try:
        with transaction.atomic():
            DuplicatePair.objects.all().delete()
            started = time.monotonic()
            waiting = duplicate_pairs_refresh()
            print(f"whole database scored and queued in {time.monotonic() - started:.1f} s ({waiting:,} pairs wait)")
            proposed = set(DuplicatePair.objects.values_list("incident_a", "incident_b"))
            found = proposed & truth
            print(
                f"queue at the default threshold {PROPOSAL_THRESHOLD}: precision "
                f"{len(found) / max(len(proposed), 1):.3f}, recall {len(found) / len(truth):.3f}"
            )
            chosen = random.Random(1).sample(sorted(ids.values()), samples)
            timings = []
            for incident_id in chosen:
                started = time.monotonic()
                duplicate_pairs_refresh(incident_ids=[incident_id])
                timings.append((time.monotonic() - started) * 1000)
            percentiles = statistics.quantiles(timings, n=20)
            print(
                f"one changed incident rescored: p50 {statistics.median(timings):.0f} ms, "
                f"p95 {percentiles[18]:.0f} ms ({samples} incidents); load average {os.getloadavg()[0]:.2f}"
            )
            raise Rollback
    except Rollback:
        pass


if __name__ == "__main__":
    if ARGUMENTS.truth == DEFAULT_TRUTH and not os.path.exists(DEFAULT_TRUTH):
        # `make bench` runs every script with its defaults: without duplicates made with their truth,
        # there is nothing to measure, which is no failure of the other benchmarks.
        print(
            f"Duplicates: skipped, no {DEFAULT_TRUTH}. Make duplicates with their truth first: manage.py "
            f"generate_demo_data --incidents 100000 --duplicates 0.05 --duplicates-truth {DEFAULT_TRUTH}"
        )
    else:
        main(ARGUMENTS.truth, ARGUMENTS.samples)
