"""A duplicate queue for the queue's benchmark on a database too large for `find_duplicates`: the
generator's true pairs (its --duplicates-truth file), scored by `incidents.duplicates` itself,
those at or above the threshold proposed, and a share of them decided as a queue in use has them.

At 1,000,000 incidents `find_duplicates` holds every candidate pair in memory and was killed at
22 GB on the 24 GB machine, and the worker's rescoring of 1,000 incidents at a time took five
minutes a batch (eight hours in all); this takes two minutes. The queue then lacks the false
positives (4% of the pairs `find_duplicates` proposes at 100,000 incidents), which changes nothing
the queue's pages do.

Usage (DATABASE_URL set):
    python bench/duplicate_pairs_from_truth.py truth.csv [--decided 0.10] [--seed 1]
Of the pairs proposed, --decided are marked decided at random (5% of them "same incident" and not
merged, which still wait; the others "different" or "unsure"), as by a reviewer, without history."""

import argparse
import csv
import random
from datetime import timedelta

from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
PARSER.add_argument("truth", help="the --duplicates-truth file of generate_demo_data")
PARSER.add_argument("--decided", type=float, default=0.10, help="the share of proposed pairs decided (default 0.10)")
PARSER.add_argument("--seed", type=int, default=1)
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from django.utils import timezone  # noqa: E402

from incidents.duplicates import PROPOSAL_THRESHOLD, load_features, score_pairs  # noqa: E402
from incidents.models import DuplicatePair, Incident  # noqa: E402


def main(options: argparse.Namespace):
    with open(options.truth, newline="") as file:
        rows = list(csv.DictReader(file))
    public_ids = {row[side] for row in rows for side in ("incident_a", "incident_b")}
    ids = dict(Incident.objects.filter(public_id__in=public_ids).values_list("public_id", "pk"))
    pairs = sorted({tuple(sorted((ids[row["incident_a"]], ids[row["incident_b"]]))) for row in rows})
    scores = score_pairs(pairs, load_features({incident for pair in pairs for incident in pair}))
    proposed = [
        DuplicatePair(incident_a_id=a, incident_b_id=b, score=float(score))
        for (a, b), score in zip(pairs, scores, strict=True)
        if score >= PROPOSAL_THRESHOLD
    ]
    chance, now = random.Random(options.seed), timezone.now()
    for pair in proposed:
        if chance.random() < options.decided:
            pair.decision = chance.choices(["same", "different", "unsure"], weights=[5, 65, 30])[0]
            pair.decided_at = now - timedelta(days=chance.uniform(0, 90))
    DuplicatePair.objects.bulk_create(
        proposed,
        update_conflicts=True,
        unique_fields=["incident_a", "incident_b"],
        update_fields=["score", "decision", "decided_at"],
        batch_size=5000,
    )
    decided = sum(pair.decision != "pending" for pair in proposed)
    print(f"{len(pairs):,} true pairs scored, {len(proposed):,} proposed, {decided:,} of them decided.")


if __name__ == "__main__":
    main(ARGUMENTS)
