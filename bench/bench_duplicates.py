"""Duplicate finding: blocking recall, and precision and recall of the proposals at the default threshold.

Usage (DATABASE_URL set), after `manage.py generate_demo_data --incidents N --duplicates 0.1`:
    python bench/bench_duplicates.py [TRUTH_CSV]   (default duplicates-truth.csv)
Reads the true (original, duplicate) pairs the generator kept aside, scores the whole database as
`manage.py find_duplicates` does (without writing), and times scoring one incident's candidates.
A proposed pair counts as right when it is a true pair; pairs between two duplicates of one
original do not arise (one duplicate per original)."""

import csv
import statistics
import sys
import time

import demo_rows  # noqa: F401  (sets Django up)

from incidents.duplicates import PROPOSAL_THRESHOLD, candidate_pairs, scored_pairs
from incidents.models import Incident


def main(truth_path: str) -> None:
    with open(truth_path, newline="") as file:
        named = [(row["original"], row["duplicate"]) for row in csv.DictReader(file)]
    ids = dict(Incident.objects.values_list("public_id", "pk"))
    truth = {tuple(sorted((ids[a], ids[b]))) for a, b in named}
    incidents = Incident.objects.count()
    print(f"{incidents:,} incidents, {len(truth):,} true duplicate pairs")

    started = time.monotonic()
    blocked = candidate_pairs()
    blocking_seconds = time.monotonic() - started
    started = time.monotonic()
    scored = scored_pairs()
    scoring_seconds = time.monotonic() - started
    proposed = {(a, b) for a, b, score in scored if score >= PROPOSAL_THRESHOLD}
    found = proposed & truth
    recall = len(truth & blocked) / len(truth)
    print(f"blocking: {len(blocked):,} candidate pairs in {blocking_seconds:.1f} s, recall {recall:.3f}")
    print(f"whole database scored in {scoring_seconds:.1f} s (blocking included)")
    precision = len(found) / max(len(proposed), 1)
    print(f"threshold {PROPOSAL_THRESHOLD}: {len(proposed):,} proposed, precision {precision:.3f}, ", end="")
    print(f"recall {len(found) / len(truth):.3f}")

    samples = [Incident.objects.get(pk=pair[1]) for pair in sorted(truth)[:20]]
    timings = []
    for incident in samples:
        started = time.monotonic()
        scored_pairs(incident)
        timings.append((time.monotonic() - started) * 1000)
    print(f"one changed incident: median {statistics.median(timings):.0f} ms, max {max(timings):.0f} ms (20 incidents)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "duplicates-truth.csv")
