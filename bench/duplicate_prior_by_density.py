"""Should the score's prior follow the database's density? The queue's precision and recall at the
default threshold with the fitted prior (`BASE_EVIDENCE`) moved by each of a few shifts, in log-odds.

Fellegi-Sunter's prior is the chance that a candidate pair is a duplicate: the true pairs over the
candidate pairs. It was fitted at 100,000 generated incidents (21.2 candidate pairs per incident);
a smaller database has fewer candidates per incident for as many duplicates, so it would call for a
higher prior, ln(21.2 / its own candidates per incident). This measures whether that holds.

Usage (DATABASE_URL set), after
    python manage.py generate_demo_data --incidents 20000 --duplicates 0.05 --duplicates-truth truth.csv
run
    python bench/duplicate_prior_by_density.py truth.csv
It scores every candidate pair of the database (`scored_pairs`) with the fitted prior (the
prior's move by the database's density, `duplicates.prior`, turned off), writing nothing."""

import argparse
import csv
import time

import numpy as np
from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
PARSER.add_argument("truth", help="the --duplicates-truth file of generate_demo_data")
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from incidents import duplicates  # noqa: E402
from incidents.duplicates import PROPOSAL_THRESHOLD, scored_pairs  # noqa: E402
from incidents.models import Incident  # noqa: E402

SHIFTS = [0, 0.5, 1, 1.5, 2, 2.5, 3, 4]


def main(truth_path: str) -> None:
    with open(truth_path, newline="") as file:
        named = [(row["incident_a"], row["incident_b"]) for row in csv.DictReader(file)]
    ids = dict(Incident.objects.values_list("public_id", "pk"))
    truth = {tuple(sorted((ids[a], ids[b]))) for a, b in named}
    duplicates.PRIOR_SHIFT_LIMIT = 0.0
    started = time.monotonic()
    scored = scored_pairs(at_least=0.0)
    print(
        f"{len(ids):,} incidents, {len(scored):,} candidate pairs, {len(scored) / len(ids):.2f} per incident, "
        f"{len(truth):,} true pairs; scored in {time.monotonic() - started:.0f} s"
    )
    # The scores are rounded to four places: clipped, so that 0 and 1 keep a finite log-odds.
    score = np.clip(np.array([score for _, _, score in scored]), 1e-4, 1 - 1e-4)
    log_odds = np.log(score / (1 - score))
    is_true = np.array([(a, b) in truth for a, b, _ in scored])
    for shift in SHIFTS:
        proposed = 1 / (1 + np.exp(-(log_odds + shift))) >= PROPOSAL_THRESHOLD
        found = (proposed & is_true).sum()
        print(
            f"prior {shift:+.1f}: {proposed.sum():,} proposed, precision {found / max(proposed.sum(), 1):.3f}, "
            f"recall {found / len(truth):.3f}"
        )


if __name__ == "__main__":
    main(ARGUMENTS.truth)
