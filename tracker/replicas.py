"""Reads from PostgreSQL streaming replicas, writes to the primary (`DATABASE_REPLICA_URLS`).

- **Which reads**: only those of web requests (`ReplicaReadsMiddleware`), and only outside a
  transaction on the primary. Management commands, services and anything inside
  `transaction.atomic()` read the primary, so a write's own checks (versions, visibility, the
  statistics' kept totals) never see a replica's older state.
- **Read your writes**: after any request that may write (POST, PUT, PATCH, DELETE), the client gets
  a short-lived cookie; while it holds it, its reads go to the primary too, so an analyst sees what
  they just saved at once. Clients that do not return cookies (scripts with a token) read the
  replica: they may see their write up to `DATABASE_REPLICA_MAX_LAG_SECONDS` late.
- **Fallback**: each process checks a replica's health at most once every
  `DATABASE_REPLICA_CHECK_SECONDS` (one small query on the primary and one on the replica, on fresh
  connections): a replica that does not answer, is not in recovery, or lags more than
  `DATABASE_REPLICA_MAX_LAG_SECONDS` (measured against the primary's own WAL position) is left out
  until a later check finds it well. A safe request whose replica fails in between is answered again
  from the primary, so the reader sees no error (the failed attempt is logged).

Hand-written: Django provides the router hook and the connection pool, not the replica selection,
health checks or read-your-writes; the libraries that did (django-multidb-router and the like) are
unmaintained.
"""

import contextvars
import logging
import random
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import psycopg
from django.conf import settings
from django.core.signals import got_request_exception
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

# A fresh connection's check, on the replica: in recovery (not promoted, so still following this
# primary), and either it has replayed what the primary had written at a moment within the bound
# (`ReplicaHealth._primary_position`), or the last transaction it replayed was committed within the
# bound. Its own view of what it has received says nothing: a replica whose sender or network
# stalls still streams, with all it was sent replayed, while the primary goes on writing.
_HEALTH_QUERY = """
SELECT pg_is_in_recovery() AND (
    pg_last_wal_replay_lsn() >= %(primary_position)s::pg_lsn
    OR now() - pg_last_xact_replay_timestamp() <= make_interval(secs => %(max_lag)s)
)
"""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Django's DatabaseCache gives its table's model this app label (django.core.cache.backends.db).
CACHE_APP_LABEL = "django_cache"


@dataclass
class _RequestReads:
    """Where the current request reads: the primary only, or the replica picked at its first read."""

    primary_only: bool
    replica: str | None = None
    replica_failed: bool = False


_request_reads: contextvars.ContextVar[_RequestReads | None] = contextvars.ContextVar("request_reads", default=None)


class ReplicaHealth:
    """Each replica's last check, per process: (monotonic time of the check, healthy)."""

    def __init__(self):
        self._checked: dict[str, tuple[float, bool]] = {}
        # The primary's WAL position at each check within the last DATABASE_REPLICA_MAX_LAG_SECONDS:
        # (monotonic time, position), oldest first.
        self._primary_positions: deque[tuple[float, str]] = deque()
        self._lock = threading.Lock()

    def healthy(self, alias: str) -> bool:
        now = time.monotonic()
        checked_at, healthy = self._checked.get(alias, (float("-inf"), False))
        if now - checked_at < settings.DATABASE_REPLICA_CHECK_SECONDS:
            return healthy
        with self._lock:
            # Another thread may have checked while this one waited.
            checked_at, healthy = self._checked.get(alias, (float("-inf"), False))
            if now - checked_at >= settings.DATABASE_REPLICA_CHECK_SECONDS:
                healthy = self._check(alias)
                self._checked[alias] = (time.monotonic(), healthy)
        return healthy

    def mark_failed(self, alias: str) -> None:
        self._checked[alias] = (time.monotonic(), False)

    def forget(self) -> None:
        """Check every replica again at its next use."""
        self._checked.clear()
        self._primary_positions.clear()

    def _check(self, alias: str) -> bool:
        # Its own connections rather than the pool's: with the replica down, a pool waits for its
        # timeout, while a refused connection fails at once (an unanswered one after
        # DATABASE_REPLICA_CONNECT_TIMEOUT, set in the alias's options).
        try:
            primary_position = self._primary_position()
            with psycopg.connect(**connections[alias].get_connection_params(), autocommit=True) as connection:
                healthy = connection.execute(
                    _HEALTH_QUERY,
                    {"primary_position": primary_position, "max_lag": settings.DATABASE_REPLICA_MAX_LAG_SECONDS},
                ).fetchone()[0]
        except psycopg.Error as error:
            logger.warning("Database replica %s is unavailable, reading from the primary: %s", alias, error)
            return False
        if not healthy:
            logger.warning("Database replica %s lags or is not streaming, reading from the primary.", alias)
        return bool(healthy)

    def _primary_position(self) -> str:
        """The primary's WAL position (flushed, so a replica can have received it) at the earliest of
        this process's checks within the lag bound, this one included: a replica that has replayed
        it lags the primary by the bound at most. With no earlier check within the bound, the
        primary's position now (stricter than the bound: the replica must have caught up, or have
        replayed a transaction committed within the bound)."""
        now = time.monotonic()
        with psycopg.connect(**connections[DEFAULT_DB_ALIAS].get_connection_params(), autocommit=True) as connection:
            position = connection.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0]
        self._primary_positions.append((now, position))
        while self._primary_positions[0][0] < now - settings.DATABASE_REPLICA_MAX_LAG_SECONDS:
            self._primary_positions.popleft()
        return self._primary_positions[0][1]


replica_health = ReplicaHealth()


def _read_alias() -> str:
    reads = _request_reads.get()
    if reads is None or reads.primary_only or connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    if reads.replica is None or not replica_health.healthy(reads.replica):
        healthy = [alias for alias in settings.DATABASE_REPLICAS if replica_health.healthy(alias)]
        # One replica for the whole request, so that its reads agree with each other.
        reads.replica = random.choice(healthy) if healthy else None
    return reads.replica or DEFAULT_DB_ALIAS


class PrimaryReplicaRouter:
    """Writes and migrations on the primary; reads as `_read_alias` decides."""

    def db_for_read(self, model, **hints):
        if model._meta.app_label == CACHE_APP_LABEL:
            # The shared cache holds counters read then written back (the throttles' histories, the
            # anonymous database-time shares): read on a replica a second behind, every request of
            # that second found the same old count and wrote it back plus one, so no client was held.
            return DEFAULT_DB_ALIAS
        instance = hints.get("instance")
        if instance is not None and instance._state.db == DEFAULT_DB_ALIAS:
            # Related rows of a record read from the primary come from the primary too.
            return DEFAULT_DB_ALIAS
        return _read_alias()

    def db_for_write(self, model, **hints):
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        # Every alias holds the same database.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == DEFAULT_DB_ALIAS


class ReplicaReadsMiddleware:
    """Lets a request's reads go to a replica unless it may write, or its client wrote within
    `DATABASE_REPLICA_PIN_SECONDS` (the cookie it then got); answers a safe request again from
    the primary when its replica failed during it."""

    COOKIE = "tracker_read_primary"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        safe = request.method in SAFE_METHODS
        reads = _RequestReads(primary_only=not safe or request.COOKIES.get(self.COOKIE) == "1")
        response = self._respond(request, reads)
        if safe and reads.replica_failed:
            # Closing the failed answer also closes the broken replica connection.
            response.close()
            response = self._respond(request, _RequestReads(primary_only=True))
        if not safe:
            response.set_cookie(
                self.COOKIE,
                "1",
                max_age=settings.DATABASE_REPLICA_PIN_SECONDS,
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )
        return response

    def _respond(self, request, reads: _RequestReads):
        token = _request_reads.set(reads)
        try:
            return self.get_response(request)
        finally:
            _request_reads.reset(token)


def _note_replica_failure(sender, request=None, **kwargs):
    """Django turns an exception into a 500 response before the middleware sees it; this signal
    comes first, with the exception being handled."""
    reads = _request_reads.get()
    if reads is None or reads.replica is None:
        return
    error = sys.exc_info()[1]
    if isinstance(error, OperationalError | InterfaceError):
        replica_health.mark_failed(reads.replica)
        reads.replica_failed = True


got_request_exception.connect(_note_replica_failure, dispatch_uid="tracker.replicas.note_replica_failure")
