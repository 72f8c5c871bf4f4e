"""Time the incidents' history trigger takes per row: an `UPDATE` of --rows incidents in one statement
(as a bulk update, SQL run outside the application or an import's updates meet it), under `EXPLAIN
ANALYZE`, rolled back. Prints the statement's time and the update history trigger's own, per run:

    DATABASE_URL=postgres://… .venv/bin/python bench/bench_history_trigger.py --rows 5000 --runs 3

Every other trigger of the statement (export rows, search words, totals) runs too and is printed,
so that the history's share of an incident's change can be read beside theirs.
"""

import argparse
import re

from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
PARSER.add_argument("--rows", type=int, default=5000)
PARSER.add_argument("--runs", type=int, default=3)
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from django.db import connection, transaction  # noqa: E402

from incidents.models import Incident  # noqa: E402

TRIGGER_LINE = re.compile(r"Trigger (?P<name>\S+): time=(?P<ms>[\d.]+) calls=(?P<calls>\d+)")


class RolledBack(Exception):
    pass


def one_run(rows: int) -> tuple[float, dict[str, tuple[float, int]]]:
    """The statement's execution time and each trigger's (time, calls), in ms; nothing is kept."""
    table = Incident._meta.db_table
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"EXPLAIN (ANALYZE, COSTS OFF) UPDATE {table} SET version = version + 1 "
                f"WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT %s)",
                [rows],
            )
            plan = "\n".join(line for (line,) in cursor.fetchall())
            raise RolledBack(plan)
    except RolledBack as rolled_back:
        plan = rolled_back.args[0]
    executed = float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))
    triggers = {match["name"]: (float(match["ms"]), int(match["calls"])) for match in TRIGGER_LINE.finditer(plan)}
    return executed, triggers


def main(arguments: argparse.Namespace):
    for run in range(1, arguments.runs + 1):
        executed, triggers = one_run(arguments.rows)
        print(f"run {run}: UPDATE of {arguments.rows:,} incidents {executed / 1000:.2f} s")
        for name, (ms, calls) in sorted(triggers.items(), key=lambda item: -item[1][0]):
            per_row = f" ({ms / calls:.3f} ms a call)" if calls > 1 else ""
            print(f"  {name}: {ms / 1000:.2f} s, {calls:,} call(s){per_row}")


if __name__ == "__main__":
    main(ARGUMENTS)
