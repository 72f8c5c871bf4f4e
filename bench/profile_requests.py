"""Where each request of the load test's mix spends its time, one request at a time.

Runs in-process with the settings `bench/bench_load.sh` gives gunicorn (DEBUG off, Django's pool,
the production throttles unless --no-throttles), calling the WSGI application as a gunicorn thread
does. For each kind of request of `bench/locustfile.py` it prints, per request (median over --runs):

- CPU: this thread's CPU time (Python, Django, DRF, psycopg), which is what a worker's core spends;
- SQL: the statements sent and their time as the client sees it (PostgreSQL's work plus the round
  trips), measured around each statement;
- PG CPU: the CPU time of the PostgreSQL backends that ran them, from the kernel's count for each
  backend process (`/proc/PID/schedstat`; the server must run on this machine, else it is blank);
  with --parallel-workers, also that of the parallel workers a statement starts (each a process);
- wall: the whole request.

Each anonymous request comes from another client address (`REMOTE_ADDR` taken in turn from a pool
of --clients), as a crowd's would, so the throttles count as in production without refusing.

    DATABASE_URL=postgres://… .venv/bin/python bench/profile_requests.py --runs 50
    … bench/profile_requests.py --only detail --profile 30   # cProfile's top 30 functions, by own time
    … bench/profile_requests.py --sql                        # each kind's statements, with their time

Writes (the analysts' PATCH) change the database: run it against a copy.
"""

import argparse
import cProfile
import os
import pstats
import random
import re
import statistics
import sys
import threading
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit
from wsgiref.util import setup_testing_defaults

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")
# bench_load.sh's environment for gunicorn (production settings on loopback), unless already set.
for name, value in {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "load-test-only",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    "DJANGO_SECURE_SSL_REDIRECT": "0",
}.items():
    os.environ[name] = value
if "--no-throttles" in sys.argv:
    os.environ.update(TRACKER_API_ANON_RATE="off", TRACKER_API_USER_RATE="off")

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Max  # noqa: E402

from accounts.services import token_create  # noqa: E402
from incidents.models import Incident, ReviewState  # noqa: E402
from tracker.wsgi import application  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_mix import API, COUNTRIES, GROUPINGS, TYPES, WORDS, year_range  # noqa: E402


def backend_cpu_ns(pid: int) -> int | None:
    """The CPU time a PostgreSQL backend process has run, in nanoseconds; None if it is not on this machine."""
    try:
        with open(f"/proc/{pid}/schedstat") as counters:
            return int(counters.read().split()[0])
    except OSError:
        return None


class ParallelWorkers(threading.Thread):
    """Watches, while a statement runs, the parallel workers PostgreSQL starts for `leader` (children
    of the postmaster named "parallel worker for PID …"), each a process of its own whose CPU the
    leader's count leaves out; `cpu_ns` is their CPU time when last seen (a little short of their end)."""

    def __init__(self, leader: int):
        super().__init__(daemon=True)
        with open(f"/proc/{leader}/stat") as stat:
            self.postmaster = int(stat.read().rsplit(")", 1)[1].split()[1])
        self.name_part = f"parallel worker for PID {leader}".encode()
        self.seen: dict[int, int] = {}
        self.done = threading.Event()

    def run(self):
        children = f"/proc/{self.postmaster}/task/{self.postmaster}/children"
        while not self.done.is_set():
            with open(children) as listing:
                pids = listing.read().split()
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        if self.name_part not in cmdline.read():
                            continue
                except OSError:
                    continue
                cpu = backend_cpu_ns(int(pid))
                if cpu is not None:
                    self.seen[int(pid)] = cpu
            time.sleep(0.0002)

    def cpu_ns(self) -> int:
        self.done.set()
        self.join()
        return sum(self.seen.values())


class Statements:
    """Every statement of a request, with its time as the client sees it, and the backends that ran them."""

    def __init__(self, parallel_workers: bool = False):
        self.timings: list[tuple[str, float, float | None]] = []
        self.backends_started: dict[int, int | None] = {}
        self.parallel_workers = parallel_workers
        self.workers_cpu_ns = 0
        self.workers_started = 0

    def __call__(self, execute, sql, params, many, context):
        pid = context["cursor"].connection.info.backend_pid
        backend_before = backend_cpu_ns(pid)
        self.backends_started.setdefault(pid, backend_before)
        workers = ParallelWorkers(pid) if self.parallel_workers and backend_before is not None else None
        if workers:
            workers.start()
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            wall = (time.perf_counter() - started) * 1000
            backend_after = backend_cpu_ns(pid)
            workers_cpu = workers.cpu_ns() if workers else 0
            self.workers_cpu_ns += workers_cpu
            self.workers_started += len(workers.seen) if workers else 0
            known = backend_before is not None and backend_after is not None
            backend = (backend_after - backend_before + workers_cpu) / 1e6 if known else None
            self.timings.append((sql, wall, backend))

    def backend_cpu_ms(self) -> float | None:
        """The CPU time the request's backends ran from their first statement of it until now."""
        total = 0
        for pid, started in self.backends_started.items():
            ended = backend_cpu_ns(pid)
            if started is None or ended is None:
                return None
            total += ended - started
        return (total + self.workers_cpu_ns) / 1e6


class Mix:
    """The requests of bench/locustfile.py, each kind with its own stream of parameters."""

    def __init__(self, clients: int):
        self.random = random.Random(1)
        self.addresses = [f"10.{n // 250}.{n % 250}.{1 + n % 7}" for n in range(clients)]
        self.turn = 0
        public = Incident.objects.visible_to(None).order_by("-date_start", "-id")
        self.public_ids = list(public.values_list("public_id", flat=True)[:200])
        drafts = Incident.objects.filter(review_state=ReviewState.DRAFT, merged_into=None).order_by("-date_start")
        self.drafts = list(drafts.values_list("public_id", flat=True)[:200])
        users = get_user_model().objects
        # The analysts' token as made after the admin's second factor, which staff tokens need.
        self.token = token_create(user=users.get(username="admin"), name="profile", second_factor=True)[1]
        # A partner tool's account, without any role (as bench_load.sh makes them): no second factor.
        partner = users.get_or_create(username="load-partner-1")[0]
        self.partner_token = token_create(user=partner, name="profile", second_factor=False)[1]
        # The partner tools walk the incidents changed since 1-365 days before now, following `next`.
        # The demo data's changes end on 2026-01-01 (generate_demo_data), so most of those walks
        # are one empty page, and the others pages of 200 to the end: those are measured here,
        # walking from 1-30 days before the newest change the partner may see.
        self.newest_change = public.aggregate(newest=Max("updated_at"))["newest"]
        self.sync_next = None

    def address(self) -> str:
        self.turn += 1
        return self.addresses[self.turn % len(self.addresses)]

    def kinds(self) -> dict:
        r = self.random
        return {
            "list with filters": lambda: self.get(
                f"{API}/incidents/", country=r.choice(COUNTRIES), type=r.choice(TYPES), **year_range(r)
            ),
            "detail": lambda: self.get(f"{API}/incidents/{r.choice(self.public_ids)}/"),
            "statistics": lambda: self.get(
                f"{API}/incidents/stats/",
                group_by=r.choice(GROUPINGS),
                **({"country": r.choice(COUNTRIES)} if r.random() < 0.5 else {}),
            ),
            "search": lambda: self.get(f"{API}/incidents/", q=r.choice(WORDS)),
            "geojson": lambda: self.get(
                f"{API}/incidents/", format="geojson", country=r.choice(COUNTRIES), page_size=100
            ),
            "list (first page, 200)": lambda: self.get(f"{API}/incidents/", page_size=200),
            "sync (page of 200)": self.sync_page,
            "detail (analyst)": lambda: self.get(f"{API}/incidents/{r.choice(self.drafts)}/", token=self.token),
            "write (PATCH counts)": self.patch,
        }

    def environ(self, method: str, path: str, query: dict, token: str | None) -> dict:
        from urllib.parse import urlencode

        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": urlencode(query)}
        environ["REMOTE_ADDR"] = self.address()
        if token:
            environ["HTTP_AUTHORIZATION"] = f"Token {token}"
        setup_testing_defaults(environ)
        return environ

    def get(self, path: str, token: str | None = None, **query):
        return call(self.environ("GET", path, query, token))

    def sync_page(self):
        """The partner's next page, or the first page of a new walk once the last one ended."""
        if self.sync_next is None:
            since = self.newest_change - timedelta(days=self.random.randint(1, 30))
            query = {"updated_since": since.strftime("%Y-%m-%dT%H:%M:%SZ"), "ordering": "updated_at", "page_size": 200}
        else:
            query = dict(parse_qsl(urlsplit(self.sync_next).query))
        content = self.get(f"{API}/incidents/", token=self.partner_token, **query)
        # The page begins with its `next` link: read from there, so as not to time decoding the page.
        self.sync_next = orjson.loads(re.match(rb'\{"next":(null|"[^"]*")', content)[1])
        return content

    def patch(self):
        public_id = self.random.choice(self.drafts)
        version = Incident.objects.get(public_id=public_id).version
        body = orjson.dumps(
            {
                "people_count": self.random.randint(1, 500),
                "people_count_min": None,
                "people_count_max": None,
                "count_qualifier": "about",
            }
        )
        environ = self.environ("PATCH", f"{API}/incidents/{public_id}/", {}, self.token)
        environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)), HTTP_IF_MATCH=f'"{version}"')
        environ["wsgi.input"] = __import__("io").BytesIO(body)
        return call(environ)


def call(environ: dict) -> bytes:
    statuses = []
    body = application(environ, lambda status, headers, exc_info=None: statuses.append(status))
    content = b"".join(body)
    body.close()  # the end of the request, as a server signals it (the connection goes back to the pool)
    assert statuses[0][:1] == "2", (statuses[0], content[:300])
    return content


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="timed requests per kind (default 30)")
    parser.add_argument("--clients", type=int, default=1000, help="client addresses taken in turn (default 1000)")
    parser.add_argument("--only", action="append", help="only this kind (repeatable)")
    parser.add_argument("--profile", type=int, metavar="N", help="print cProfile's top N functions per kind")
    parser.add_argument("--sort", default="tottime", help="cProfile's order: tottime (default), cumulative")
    parser.add_argument("--sql", action="store_true", help="each kind's statements, median time and PG CPU")
    parser.add_argument(
        "--parallel-workers",
        action="store_true",
        help="add the CPU of the parallel workers PostgreSQL starts to PG CPU (polls /proc while a statement runs)",
    )
    parser.add_argument("--no-throttles", action="store_true", help="throttles off, as bench_load.sh ran them")
    arguments = parser.parse_args()

    mix = Mix(arguments.clients)
    kinds = {name: request for name, request in mix.kinds().items() if not arguments.only or name in arguments.only}
    print(
        f"{Incident.objects.count():,} incidents on {connection.settings_dict['NAME']}; "
        f"{arguments.runs} runs per kind; throttles {'off' if arguments.no_throttles else 'on'}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    for request in kinds.values():  # warm up: every statement prepared, every template loaded
        for _ in range(3):
            request()
    widths = {"CPU ms": 7, "PG CPU": 7, "SQL ms": 7, "queries": 7, "wall ms": 8, "wall p95": 8, "bytes": 8}
    print(f"{'request':24} " + " ".join(f"{column:>{width}}" for column, width in widths.items()))
    for name, request in kinds.items():
        cpu, pg_cpu, sql, walls, counts, sizes, workers = [], [], [], [], [], [], []
        per_statement = defaultdict(list)
        profiler = cProfile.Profile(time.thread_time) if arguments.profile else None
        for _ in range(arguments.runs):
            statements = Statements(arguments.parallel_workers)
            with connection.execute_wrapper(statements):
                started, started_cpu = time.perf_counter(), time.thread_time()
                if profiler:
                    profiler.enable()
                body = request()
                if profiler:
                    profiler.disable()
                cpu.append((time.thread_time() - started_cpu) * 1000)
                walls.append((time.perf_counter() - started) * 1000)
            pg_cpu.append(statements.backend_cpu_ms())
            sizes.append(len(body))
            workers.append(statements.workers_started)
            sql.append(sum(ms for _, ms, _ in statements.timings))
            counts.append(len(statements.timings))
            for statement, ms, backend in statements.timings:
                per_statement[re.sub(r'"s\d+_x\d+"', "s…", " ".join(statement.split()))[:110]].append((ms, backend))
        walls.sort()
        backend = "" if None in pg_cpu else f"{statistics.median(pg_cpu):.1f}"
        print(
            f"{name:24} {statistics.median(cpu):7.1f} {backend:>7} {statistics.median(sql):7.1f} "
            f"{statistics.median(counts):7.0f} {statistics.median(walls):8.1f} "
            f"{walls[max(0, round(0.95 * len(walls)) - 1)]:8.1f} {statistics.median(sizes):8.0f}"
            + (f"  {statistics.mean(workers):.2f} parallel workers a request" if arguments.parallel_workers else "")
        )
        if arguments.sql:
            for statement, timings in per_statement.items():
                calls = len(timings) / arguments.runs
                backends = [backend for _, backend in timings]
                backend = "" if None in backends else f"{statistics.median(backends):6.2f}"
                print(
                    f"    {calls:5.2f} x {statistics.median(ms for ms, _ in timings):6.2f} ms"
                    f" (PG CPU {backend:>6} ms)  {statement}"
                )
        if profiler:
            pstats.Stats(profiler).sort_stats(arguments.sort).print_stats(arguments.profile)


if __name__ == "__main__":
    main()
