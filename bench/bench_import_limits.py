"""The CSV import's worst cases: wall time and peak memory of `manage.py import_incidents --dry-run`,
each run as its own process (peak resident memory from GNU time, /usr/bin/time), for:

- a header bomb: `title` repeated 100,000 times (600 KB), which the import refuses;
- files at the size limit (TRACKER_IMPORT_MAX_BYTES) that the import refuses for their width: a
  header repeating `title`, one row of two-letter cells under a 4-column header, and ROWS rows of
  666 such cells (the shape an audit found held 1,135 MB before widths were checked while reading);
- ROWS new rows each naming NAMES_PER_ROW distinct unknown places (the names limit), checked as they
  are and, each written under a country, with --create-missing (each name an unsaved place), and
  the same plus one name, refused;
- one row (the process's own baseline);
- new incidents: ROWS rows (default: the row limit, TRACKER_IMPORT_MAX_ROWS) of bench_csv_import's
  shape, and the same plus one row, which the import refuses;
- updates: the first ROWS rows of an export (every column, each row an existing incident with its
  places, perpetrators and sources loaded), when the database holds that many incidents.

Usage (DATABASE_URL set): python bench/bench_import_limits.py [ROWS]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django_setup import ROOT, setup_django

PARSER = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
PARSER.add_argument("rows", nargs="?", type=int, help="rows of the largest files (default: the row limit)")
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from bench_csv_import import bench_file  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402

from incidents.importers import NAMES_PER_ROW  # noqa: E402
from incidents.models import Incident  # noqa: E402


def dry_run(path: Path, *options: str) -> tuple[float, float, str]:
    """Wall time in seconds, peak resident memory in MB and first error (if refused) of a dry-run import of `path`.
    The peak is GNU time's: Linux copies a process's peak into the children it forks, so this
    process's own peak would be the floor of a child's `ru_maxrss`, while time's child inherits
    only time's."""
    command = [sys.executable, "manage.py", "import_incidents", str(path), "--user=bench", "--dry-run", *options]
    with tempfile.NamedTemporaryFile("r") as peak_file:
        started = time.perf_counter()
        process = subprocess.Popen(
            ["/usr/bin/time", "-f", "%M", "-o", peak_file.name, *command],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # Read what the command says before waiting, so a long error list cannot fill the pipe and stall it.
        errors = process.stderr.read().decode()
        status = process.wait()
        elapsed = time.perf_counter() - started
        peak_kilobytes = int(peak_file.read().split()[-1])
    refusal = errors.strip().splitlines()[0][:160] if status else ""
    return elapsed, peak_kilobytes / 1024, refusal


def repeated(text: str, times: int, per_piece: int = 100_000):
    """`text` `times` times over, as pieces of up to `per_piece` copies."""
    for start in range(0, times, per_piece):
        yield text * min(per_piece, times - start)


def named_rows(rows: int, extra: int = 0, under: str = ""):
    """A header and `rows` new rows, each naming NAMES_PER_ROW places no database has (the last
    `extra` more), each by its path under `under` if given."""
    yield "title,type,date_start,date_end,places\n"
    path = f"{under} > " if under else ""
    for row in range(rows):
        names = NAMES_PER_ROW + (extra if row == rows - 1 else 0)
        places = ";".join(f"{path}p{row}-{number}" for number in range(names))
        yield f"T{row},deportation,2024-01-01,2024-01-01,{places}\n"


def exported_rows(rows: int, directory: Path) -> Path | None:
    """The header and first `rows` rows of an export of every incident, or None if there are fewer."""
    if Incident.objects.count() < rows:
        return None
    full = directory / "export.csv"
    subprocess.run(
        [sys.executable, "manage.py", "export_incidents", "--user=bench", "-o", str(full)], cwd=ROOT, check=True
    )
    path = directory / "updates.csv"
    with full.open("rb") as source, path.open("wb") as out:
        # Export rows hold no line breaks of their own (titles are single lines), so lines are rows.
        for _ in range(rows + 1):
            out.write(source.readline())
    return path


def main(rows: int):
    get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True, "is_staff": True})
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        size, header = settings.IMPORT_MAX_BYTES - 1024, "title,type,date_start,date_end\n"
        wide = ",".join(f"{n % 9}{chr(97 + n % 26)}" for n in range(666)) + "\n"
        # Each file as pieces written one at a time: a child's peak resident memory counts this
        # process's peak (Linux copies it at fork), so 50 MB files held whole would be every case's floor.
        cases = {
            "header bomb (title x 100,000)": [",".join(["title"] * 100_000), "\nA\n"],
            "header bomb at the size limit": [*repeated("title,", size // 6), "title\nA\n"],
            "one wide row at the size limit": [header, *repeated("ab,", size // 3), "ab\n"],
            f"{rows:,} rows of 666 cells": [header, *repeated(wide, min(rows, size // len(wide)))],
            f"{rows * NAMES_PER_ROW:,} unknown places": [*named_rows(rows)],
            f"{rows * NAMES_PER_ROW + 1:,} unknown places": [
                *named_rows(rows),
                "X,deportation,2024-01-01,2024-01-01,p\n",
            ],
            # --create-missing makes a new top-level place only of a country's name (Mongolia, made
            # too if unknown): the others are made under it, as an analyst writes a new town's path.
            # Its rows, one day in one country, are left unchecked for duplicates (as those in no
            # country were never found to be), so that it measures the new places alone.
            f"{rows * NAMES_PER_ROW:,} unknown places in Mongolia": [*named_rows(rows, under="Mongolia")],
            "1 new row": [bench_file(1)],
            f"{rows:,} new rows": [bench_file(rows)],
            f"{rows + 1:,} new rows": [bench_file(rows + 1)],
        }
        paths = {}
        for label, pieces in cases.items():
            paths[label] = directory / f"{len(paths)}.csv"
            with paths[label].open("wb") as out:
                for piece in pieces:
                    out.write(piece if isinstance(piece, bytes) else piece.encode())
        updates = exported_rows(rows, directory)
        if updates is not None:
            paths[f"{rows:,} updates (export rows)"] = updates
        print(
            f"TRACKER_IMPORT_MAX_ROWS={settings.IMPORT_MAX_ROWS:,}, "
            f"TRACKER_IMPORT_MAX_BYTES={settings.IMPORT_MAX_BYTES:,}"
        )
        print(f"{'case':34} {'MB file':>8} {'seconds':>8} {'peak MB':>8}")
        created_label = f"{rows * NAMES_PER_ROW:,} unknown places in Mongolia"
        runs = [(label, path, ()) for label, path in paths.items() if label != created_label]
        runs.append((f"{created_label}, created", paths[created_label], ("--create-missing", "--allow-duplicates")))
        for label, path, options in runs:
            elapsed, peak, refusal = dry_run(path, *options)
            print(f"{label:34} {path.stat().st_size / 1e6:8.1f} {elapsed:8.1f} {peak:8.0f}")
            if refusal:
                print(f"    refused: {refusal}")


if __name__ == "__main__":
    # The default, the row limit, is a setting: known once Django is set up.
    main(settings.IMPORT_MAX_ROWS if ARGUMENTS.rows is None else ARGUMENTS.rows)
