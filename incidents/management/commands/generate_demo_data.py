import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from incidents.demo_data import generate_demo_data
from incidents.management.arguments import path_name

DUPLICATES_TRUTH = "duplicates-truth.csv"


def positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(value)
    return number


def fraction(value: str) -> float:
    # Below 1: a duplicate reports the event of an incident that is not one.
    number = float(value)
    if not 0 < number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Add a realistic, deterministic synthetic data set: N incidents with claims, places, organizations, "
        "victim groups and sources. The same --seed gives the same data. For development and benchmarks."
    )

    def add_arguments(self, parser):
        parser.add_argument("--incidents", type=positive_int, required=True, help="How many incidents to add (> 0).")
        parser.add_argument("--seed", type=int, default=42, help="Random seed (default 42).")
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=20_000,
            help="Incidents made and copied at a time (default 20,000); the whole load is one transaction.",
        )
        parser.add_argument(
            "--duplicates",
            type=fraction,
            metavar="FRACTION",
            help=(
                "This fraction of the incidents report again the event of another, worded, counted, dated and "
                "placed otherwise (incidents/demo_duplicates.py)."
            ),
        )
        parser.add_argument(
            "--duplicates-truth",
            type=path_name,
            metavar="FILE",
            help="With --duplicates: where to write the true pairs (incident_a,incident_b public ids); default "
            f"{DUPLICATES_TRUTH}.",
        )

    def handle(self, *args, incidents, seed, batch_size, duplicates, duplicates_truth, **options):
        if duplicates_truth is not None and not duplicates:
            # Else ignored: whoever asked for the truth file would look for pairs never made.
            raise CommandError("--duplicates-truth: it holds the true pairs of --duplicates; give --duplicates too.")
        # A Path from the command line (`path_name`); call_command may pass a string.
        duplicates_truth = Path(duplicates_truth or DUPLICATES_TRUTH)
        started = time.monotonic()
        with tqdm(
            total=incidents, unit="incidents", disable=not sys.stderr.isatty(), file=sys.stderr, smoothing=0.1
        ) as bar:
            try:
                generate_demo_data(
                    incidents=incidents,
                    seed=seed,
                    batch_size=batch_size,
                    progress=bar.update,
                    duplicates=duplicates or 0,
                    duplicates_truth=duplicates_truth,
                )
            except ValueError as error:
                raise CommandError(str(error)) from error
            except OSError as error:
                # The truth is written last, in the load's transaction: nothing was added.
                raise CommandError(f"--duplicates-truth: cannot write {duplicates_truth}: {error.strerror}.") from error
        self.stdout.write(
            self.style.SUCCESS(f"Added {incidents:,} incidents in {time.monotonic() - started:.1f} s (seed {seed}).")
        )
        if duplicates:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{round(incidents * duplicates):,} of them report again another's event; "
                    f"the true pairs are in {duplicates_truth}."
                )
            )
