"""How long searches for phrases of common words take, against the database DATABASE_URL names, as
an anonymous reader through the whole Django stack (test client), a local memory cache and no
throttle, so that nothing is written. Prints, for each request, its status, the first time and the
median and max of the next three, and the load average; with `--explain`, also the EXPLAIN
(ANALYZE, BUFFERS) of the request's slowest statement (run again, after the timed runs).

    TRACKER_ANON_STATEMENT_TIMEOUT=0 DATABASE_URL=postgres://…/tracker_phrase DJANGO_DEBUG=1 \\
        .venv/bin/python bench/bench_search_phrases.py [--explain] [PATH …]

TRACKER_ANON_STATEMENT_TIMEOUT=0 lifts the anonymous bound of 1 s, so that a slow request is timed
rather than answered 503; DJANGO_DEBUG=1 serves the public pages' static files without collecting them.
"""

import argparse
import os
import statistics
import time
from urllib.parse import quote

from django_setup import setup_django

# 66 words of most demo incidents, in an order none has them (199 characters quoted).
LONG_PHRASE = " ".join(["in", "by"] * 33)
BY_IN = quote('"by in"')
ORDERINGS = ["-date_start", "date_start", "-people_count", "people_count", "-updated_at", "updated_at"]
PATHS = [
    *(f"/api/v1/incidents/?ordering={ordering}&q={BY_IN}" for ordering in ORDERINGS),
    f"/?q={BY_IN}",
    f"/map/?q={BY_IN}",
    f"/incidents.geojson?q={BY_IN}",
    *(
        f"/api/v1/incidents/?ordering=-people_count&q={quote(q)}"
        for q in ['"the the"', '"inc inc"', '"in* in*"', f'"{LONG_PHRASE}"']
    ),
    # Common phrases and prefixes, which are counted now too.
    *(f"/api/v1/incidents/?q={quote(q)}" for q in ['"north korea"', '"border guards"', "th*", "detain*"]),
    *(f"/api/v1/incidents/?q={quote(q)}" for q in ['-"by in"', '-"inc inc"', "-inc", "-zzzz"]),
    f"/api/v1/incidents/stats/?group_by=type&q={quote('-"inc inc"')}",
    f"/?q={quote('-"inc inc"')}",
]

PARSER = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
PARSER.add_argument("--explain", action="store_true", help="also EXPLAIN (ANALYZE, BUFFERS) each slowest statement")
PARSER.add_argument("paths", nargs="*", metavar="PATH", default=PATHS, help="addresses to time (default: the phrases')")
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, override_settings  # noqa: E402


def timed(client: Client, path: str) -> tuple[int, float]:
    started = time.perf_counter()
    response = client.get(path, secure=True)
    if response.streaming:
        b"".join(response.streaming_content)
    return response.status_code, (time.perf_counter() - started) * 1000


def explain_slowest(client: Client, path: str) -> str:
    with CaptureQueriesContext(connection) as queries:
        client.get(path, secure=True)
    slowest = max(queries.captured_queries, key=lambda query: float(query["time"]))
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {slowest['sql']}")
        return "\n".join(f"    {row[0]}" for row in cursor.fetchall())


def main(paths: list[str], explain: bool) -> None:
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None}},
    ):
        client = Client()
        for path in paths:
            runs = [timed(client, path) for _ in range(4)]
            times = [milliseconds for _, milliseconds in runs]
            print(
                f"{path}: {runs[-1][0]}, first {times[0]:.0f} ms, median of the next 3 "
                f"{statistics.median(times[1:]):.1f} ms (max {max(times[1:]):.1f} ms), load {os.getloadavg()}",
                flush=True,
            )
            if explain:
                print(explain_slowest(client, path), flush=True)


if __name__ == "__main__":
    main(ARGUMENTS.paths, ARGUMENTS.explain)
