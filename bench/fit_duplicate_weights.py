"""Fit the duplicate score's weights (`*_EVIDENCE` in incidents/duplicates.py) on one generated
database's labelled candidate pairs, and print the queue's precision and recall at thresholds.

Usage (DATABASE_URL set), after
    python manage.py generate_demo_data --incidents 100000 --duplicates 0.05 --duplicates-truth truth.csv
run
    python bench/fit_duplicate_weights.py truth.csv
A logistic regression (Newton's method, numpy) on the comparisons the module makes for every
candidate pair, labelled by the generator's truth: the supervised form of the module's
Fellegi-Sunter model, so its coefficients are the weights, in log-odds, printed in the module's
terms. Fit on one seed and check the result with bench_duplicates.py on another: the pairs of one
seed are not evidence about themselves. Reads only; takes a few minutes at 100,000 incidents."""

import argparse
import csv

import numpy as np
from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
PARSER.add_argument("truth", help="the --duplicates-truth file of generate_demo_data")
# Read before Django is set up, so that --help and a refused argument answer at once; not when
# imported (duplicate_model_ceiling.py uses its model).
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from incidents.duplicates import candidate_pairs, compare, load_features  # noqa: E402
from incidents.models import Incident  # noqa: E402

# An independent outlet's report against the candidates' usual: every generated pair has sources
# on both sides, so the fit cannot set this apart from the prior; from the share of true pairs
# with no origin in common (about 59%) against all but a few in a thousand of the others.
UNSHARED_ORIGINS = -0.5


def columns(compared: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    gap, length, people, places = compared["gap"], compared["length"], compared["people"], compared["places"]
    overlapping = gap == 0
    same_span = compared["same_span"]
    return {
        "dates overlapping, 1 day": overlapping & (length <= 1),
        "dates overlapping, 2-8 days": overlapping & (length > 1) & (length <= 8),
        "dates overlapping, 9-31 days": overlapping & (length > 8) & (length <= 31),
        "dates overlapping, 32-366 days": overlapping & (length > 31) & (length <= 366),
        "dates 1-3 days apart": (gap > 0) & (gap <= 3),
        "dates further apart": gap > 3,
        "same span": same_span,
        "same unusual span": same_span & compared["unusual_span"],
        "counts meet": people >= 1,
        "counts 0.4-1": (people >= 0.4) & (people < 1),
        "counts below 0.4": people < 0.4,
        "same figure of 10 or more": compared["same_figure"] >= 10,
        "places within": places == "within",
        "places apart": places == "apart",
        # Every generated incident placed only by its country is a second report, so the fit finds
        # this for; the module keeps it with "within", by hand.
        "places: one only by its country": places == "country",
        "shared origin": compared["origins"] == 1,
        "texts (cosine)": compared["text"],
        "titles (token set ratio)": compared["title"],
    }


def fit(design: np.ndarray, labels: np.ndarray, rounds: int = 25) -> np.ndarray:
    """Logistic regression by Newton's method, a little ridge so that it converges."""
    weights = np.zeros(design.shape[1])
    ridge = 1e-3 * np.eye(design.shape[1])
    for _ in range(rounds):
        probability = 1 / (1 + np.exp(-(design @ weights)))
        gradient = design.T @ (labels - probability) - ridge @ weights
        hessian = (design * (probability * (1 - probability))[:, None]).T @ design + ridge
        weights += np.linalg.solve(hessian, gradient)
    return weights


def main(truth_path: str) -> None:
    ids = dict(Incident.objects.values_list("public_id", "pk"))
    with open(truth_path, newline="") as file:
        truth = {tuple(sorted((ids[row["incident_a"]], ids[row["incident_b"]]))) for row in csv.DictReader(file)}
    pairs = sorted(candidate_pairs())
    labels = np.array([pair in truth for pair in pairs])
    named = columns(compare(pairs, load_features(None)))
    design = np.column_stack([*(np.asarray(values, dtype=float) for values in named.values()), np.ones(len(pairs))])
    weights = fit(design, labels.astype(float))
    print(f"{len(pairs):,} candidate pairs, {labels.sum():,} true")
    for name, weight in zip([*named, "prior (BASE_EVIDENCE + UNSHARED)"], weights, strict=True):
        print(f"  {name}: {weight:+.2f}")
    print(f"  so BASE_EVIDENCE {weights[-1] - UNSHARED_ORIGINS:+.2f} with UNSHARED_ORIGINS_EVIDENCE {UNSHARED_ORIGINS}")
    # The prior fitted is that of this database's density (`duplicates.prior` moves it by others').
    print(f"  and FITTED_CANDIDATES_PER_INCIDENT {len(pairs) / len(ids):.1f}")
    scores = 1 / (1 + np.exp(-(design @ weights)))
    for threshold in (0.5, 0.6, 0.65, 0.7, 0.8, 0.9):
        proposed = scores >= threshold
        found = (proposed & labels).sum()
        print(
            f"at {threshold}: precision {found / max(proposed.sum(), 1):.3f}, recall {found / labels.sum():.3f}"
            " (the fitted model on its own pairs)"
        )


if __name__ == "__main__":
    main(ARGUMENTS.truth)
