"""How far the duplicate score's comparisons can go at all: models the module does not use, fitted
on one generated database's labelled candidate pairs and measured on another's.

Usage (DATABASE_URL set to each database in turn), after generating two databases with
    python manage.py generate_demo_data --incidents 100000 --seed S --duplicates 0.05 --duplicates-truth truth-S.csv
run
    python bench/duplicate_model_ceiling.py dump truth-101.csv pairs-101.npz   # on seed 101's database
    python bench/duplicate_model_ceiling.py dump truth-202.csv pairs-202.npz   # on seed 202's database
    python bench/duplicate_model_ceiling.py compare pairs-101.npz pairs-202.npz
`dump` keeps every candidate pair's comparisons (`duplicates.compare`) and label (3 minutes, 250 MB);
`compare` fits on the first file and reports, on the second, the recall each model reaches at
precision 0.95 with the threshold chosen on the first (and, in brackets, with the best threshold
for the second, which no deployment could choose):
- the module's model (a logistic regression on `fit_duplicate_weights.columns`);
- gradient-boosted trees (scikit-learn, bench/requirements.txt) on the raw comparisons, which find
  any interaction of them (a vague date and the same village and close words) the sum cannot;
- both again with each pair's standing among its incidents' other candidates: how far its score is
  above the best other pair of either incident, and how many candidates each has (a queue that
  ranks each incident's candidates against each other, or assigns them one to one);
- each incident's best candidate on both sides ("mutual best") at several thresholds;
- the transitive closure of the module's queue (if A~B and B~C are proposed, so is A~C).
Reads only; a few minutes per model on the shared 2-core machine."""

import argparse
import csv
import itertools
import sys
import time

import numpy as np
from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
COMMANDS = PARSER.add_subparsers(dest="command", required=True)
DUMPING = COMMANDS.add_parser("dump", help="keep one database's candidate pairs' comparisons and labels")
DUMPING.add_argument("truth", help="the --duplicates-truth file of generate_demo_data")
DUMPING.add_argument("out", help="the .npz file to write")
COMPARING = COMMANDS.add_parser("compare", help="fit on the first file, measure on the second")
COMPARING.add_argument("fit")
COMPARING.add_argument("held_out")
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
try:
    # The benchmarks' own requirements, not the application's: said in a line rather than a traceback.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from sklearn.ensemble import HistGradientBoostingClassifier
except ImportError as missing:
    sys.exit(
        f"duplicate_model_ceiling.py needs scipy and scikit-learn, which the application does not install "
        f"(no module {missing.name.partition('.')[0]}): .venv/bin/python -m pip install -r bench/requirements.txt"
    )
setup_django()

from fit_duplicate_weights import columns, fit  # noqa: E402

from incidents.duplicates import PLACE_EVIDENCE, candidate_pairs, compare, load_features  # noqa: E402
from incidents.models import Incident  # noqa: E402

PRECISION = 0.95


def dump(truth_path: str, out: str) -> None:
    ids = dict(Incident.objects.values_list("public_id", "pk"))
    with open(truth_path, newline="") as file:
        named = [(ids[row["incident_a"]], ids[row["incident_b"]]) for row in csv.DictReader(file)]
    truth = sorted({(min(pair), max(pair)) for pair in named})
    pairs = sorted(candidate_pairs())
    compared = compare(pairs, load_features(None))
    known, ends = set(truth), np.array(pairs)
    labels = np.array([pair in known for pair in pairs])
    np.savez(out, a=ends[:, 0], b=ends[:, 1], label=labels, truth=np.array(truth), **compared)
    print(f"{len(pairs):,} candidate pairs, {len(truth):,} true pairs, written to {out}")


def raw(data: dict) -> np.ndarray:
    """The comparisons themselves, places as a number (trees split it as they need)."""
    places = np.select([data["places"] == level for level in PLACE_EVIDENCE], list(range(len(PLACE_EVIDENCE))))
    return np.column_stack(
        [data["gap"], data["length"], data["same_span"], data["unusual_span"], data["people"], data["same_figure"],
         places, data["origins"], data["perpetrators"], data["text"], data["title"]]
    ).astype(float)  # fmt: skip


def standing(first: np.ndarray, second: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """For each pair: its score above the best other pair of `first`, and of `second` (capped at
    ±30 when either has no other), and how many candidates each has (log)."""
    size = int(max(first.max(), second.max())) + 1
    incident = np.concatenate([first, second])
    score = np.concatenate([scores, scores])
    pair = np.concatenate([np.arange(len(first))] * 2)
    order = np.lexsort((-score, incident))
    incident, score, pair = incident[order], score[order], pair[order]
    starts = np.flatnonzero(np.r_[True, incident[1:] != incident[:-1]])
    best, runner_up, best_pair = np.full(size, -np.inf), np.full(size, -np.inf), np.full(size, -1)
    best[incident[starts]], best_pair[incident[starts]] = score[starts], pair[starts]
    seconds = starts[starts + 1 < len(incident)] + 1
    seconds = seconds[incident[seconds] == incident[seconds - 1]]
    runner_up[incident[seconds]] = score[seconds]
    counts = np.bincount(incident, minlength=size)
    own = np.arange(len(first))
    other_first = np.where(best_pair[first] == own, runner_up[first], best[first])
    other_second = np.where(best_pair[second] == own, runner_up[second], best[second])
    margins = [np.clip(scores - other_first, -30, 30), np.clip(scores - other_second, -30, 30)]
    return np.column_stack([*margins, np.log(counts[first]), np.log(counts[second])])


def threshold_for(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(recall, threshold): the lowest threshold whose queue is still at least PRECISION right."""
    order = np.argsort(-scores, kind="stable")
    found = np.cumsum(labels[order])
    right = np.flatnonzero(found / np.arange(1, len(order) + 1) >= PRECISION)
    if not len(right):
        return 0.0, np.inf
    return found[right[-1]] / labels.sum(), scores[order[right[-1]]]


def report(name: str, fit_scores, fit_labels, held_scores, held_labels, true_pairs: int) -> None:
    """Held-out precision and recall at the threshold chosen on the fit's own pairs. Recall counts
    against every true pair, blocked or not."""
    _, threshold = threshold_for(fit_scores, fit_labels)
    proposed = held_scores >= threshold
    found = (proposed & held_labels).sum()
    best, _ = threshold_for(held_scores, held_labels)
    print(
        f"{name}: precision {found / max(proposed.sum(), 1):.3f}, recall {found / true_pairs:.3f} "
        f"(best possible at precision {PRECISION}: recall {best * held_labels.sum() / true_pairs:.3f})"
    )


def trees(fit_design, fit_labels, held_design) -> tuple[np.ndarray, np.ndarray]:
    """Gradient-boosted trees' probabilities for the fit's pairs and the held-out ones. Regularised:
    without it a leaf of a few pure pairs says 1.0 for unrelated pairs."""
    model = HistGradientBoostingClassifier(
        max_iter=150, learning_rate=0.1, l2_regularization=1.0, min_samples_leaf=200, early_stopping=False
    )
    model.fit(fit_design, fit_labels)
    return model.predict_proba(fit_design)[:, 1], model.predict_proba(held_design)[:, 1]


def compare_models(fit_path: str, held_path: str) -> None:
    fitted, held = dict(np.load(fit_path)), dict(np.load(held_path))
    fit_labels, held_labels = fitted["label"], held["label"]
    true_pairs = len(held["truth"])
    print(f"fit on {fit_path} ({fit_labels.sum():,} true of {len(fit_labels):,} candidate pairs)")
    print(f"measured on {held_path} ({held_labels.sum():,} true of {len(held_labels):,}; {true_pairs:,} true pairs)")

    def design(data):
        named = [np.asarray(values, dtype=float) for values in columns(data).values()]
        return np.column_stack([*named, np.ones(len(data["gap"]))])

    fit_design, held_design = design(fitted), design(held)
    weights = fit(fit_design, fit_labels.astype(float))
    fit_scores, held_scores = fit_design @ weights, held_design @ weights
    report("the module's model (logistic regression)", fit_scores, fit_labels, held_scores, held_labels, true_pairs)

    started = time.monotonic()
    fit_trees, held_trees = trees(raw(fitted), fit_labels, raw(held))
    report("trees on the raw comparisons", fit_trees, fit_labels, held_trees, held_labels, true_pairs)
    print(f"  ({time.monotonic() - started:.0f} s)")

    fit_standing = standing(fitted["a"], fitted["b"], fit_scores)
    held_standing = standing(held["a"], held["b"], held_scores)
    staged = np.column_stack([fit_scores, fit_standing, np.ones(len(fit_scores))])
    second_weights = fit(staged, fit_labels.astype(float))
    held_staged = np.column_stack([held_scores, held_standing, np.ones(len(held_scores))])
    report(
        "the module's score and each pair's standing among its incidents' candidates (logistic regression)",
        staged @ second_weights,
        fit_labels,
        held_staged @ second_weights,
        held_labels,
        true_pairs,
    )
    started = time.monotonic()
    fit_trees, held_trees = trees(
        np.column_stack([raw(fitted), fit_scores, fit_standing]),
        fit_labels,
        np.column_stack([raw(held), held_scores, held_standing]),
    )
    report("trees on the raw comparisons and the standing", fit_trees, fit_labels, held_trees, held_labels, true_pairs)
    print(f"  ({time.monotonic() - started:.0f} s)")

    _, threshold = threshold_for(fit_scores, fit_labels)
    mutual = (held_standing[:, 0] > 0) & (held_standing[:, 1] > 0)
    print(
        f"mutual best (each the other's best candidate): {(mutual & held_labels).sum() / true_pairs:.3f} "
        f"of true pairs, and {(mutual & ~held_labels).sum():,} other pairs"
    )
    for shift in (-3, -2, -1, 0, 1):
        proposed = mutual & (held_scores >= threshold + shift)
        found = (proposed & held_labels).sum()
        print(
            f"  and a score at least the threshold {shift:+d} (log-odds): "
            f"precision {found / max(proposed.sum(), 1):.3f}, recall {found / true_pairs:.3f}"
        )

    proposed = held_scores >= threshold
    first, second = held["a"][proposed], held["b"][proposed]
    size = int(max(held["a"].max(), held["b"].max())) + 1
    graph = coo_matrix((np.ones(len(first)), (first, second)), shape=(size, size))
    _, cluster = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for incident in np.unique(np.concatenate([first, second])):
        members.setdefault(cluster[incident], []).append(int(incident))
    closure = {(a, b) for group in members.values() for a, b in itertools.combinations(sorted(group), 2)}
    truth = set(map(tuple, held["truth"].tolist()))
    queued = set(zip(first.tolist(), second.tolist(), strict=True))
    for name, chosen in (("the module's queue", queued), ("its transitive closure", closure)):
        found = len(chosen & truth)
        print(f"{name}: {len(chosen):,} pairs, precision {found / len(chosen):.3f}, recall {found / true_pairs:.3f}")


if __name__ == "__main__":
    if ARGUMENTS.command == "dump":
        dump(ARGUMENTS.truth, ARGUMENTS.out)
    else:
        compare_models(ARGUMENTS.fit, ARGUMENTS.held_out)
