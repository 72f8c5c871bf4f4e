"""gunicorn's settings for the deployment the README describes: one 2-core machine, PostgreSQL
beside it or on its own machine (`gunicorn -c tracker/gunicorn.conf.py tracker.wsgi`).

- Two worker processes (one per core: the work is Python between database round trips), each
  with four threads (gthread), so eight requests are served at once and a request waiting on
  PostgreSQL does not hold a core. Each worker's threads share its database pool
  (DATABASE_POOL_SIZE, 4 by default: one connection per thread, 8 in all, per replica too).
- A long CSV export streams from one thread while the other threads keep answering: it cannot
  starve them. gthread's `timeout` is the worker's heartbeat, which its main thread keeps
  beating while request threads work, so a ten-minute export is not killed by it; a worker that
  truly hangs still is.
- GUNICORN_WORKERS, GUNICORN_THREADS and GUNICORN_BIND override the defaults (e.g. workers = cores
  on a bigger machine; keep threads equal to DATABASE_POOL_SIZE).
"""

import os


def count_from_environment(name: str, default: int) -> int:
    """A count of 1 or more from the environment; anything else stops gunicorn naming the variable
    (`int()`'s traceback named neither, and 0 workers or threads serve nothing)."""
    raw = os.environ.get(name, str(default))
    if not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
        raise SystemExit(f"{name} must be a whole number of 1 or more; got {raw!r}.")
    return int(raw)


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = count_from_environment("GUNICORN_WORKERS", 2)
worker_class = "gthread"
threads = count_from_environment("GUNICORN_THREADS", 4)
# Heartbeat of a worker process, not a limit on a request (see above).
timeout = 60
# On restart, requests under way (an export included) get this long to finish.
graceful_timeout = 120
# Behind a proxy that reuses connections: longer than the proxy keeps an idle one (nginx's upstream
# keepalive_timeout, 60 s by default), so that gunicorn never closes a connection at the moment the
# proxy sends a request on it (the request then fails: "connection reset by peer", seen under the
# load test with 5 s, when people pause longer than that between requests). An idle connection
# costs the worker a socket in its poller, not a thread.
keepalive = 75
# Requests waiting for a thread queue here rather than being refused.
backlog = 256
accesslog = os.environ.get("GUNICORN_ACCESS_LOG")
# No control socket (gunicorn 25.1+, for its `gunicornc` tool, which this deployment does not use: a
# supervisor's signals start, reload and stop it). Its default path is one per user account
# (~/.gunicorn/gunicorn.ctl): a service account without a writable home logged "Control server
# error" at every start, and a second instance under the same account (another site, or the new
# one of a restart started before the old one stops) took the first one's socket over.
control_socket_disable = True


def post_worker_init(worker):
    """Connect once as each worker starts, so that a database it cannot reach (a mistyped
    DATABASE_URL) is said here, in one line with the reason, rather than in the traceback of
    every request. The worker serves on: the database may only be starting, and each request then
    fails at once, saying the same."""
    from django.db import OperationalError, connection

    try:
        connection.ensure_connection()
    except OperationalError as error:
        worker.log.error("%s", error)
    finally:
        # Back to the pool: requests take connections on their own threads.
        connection.close()
