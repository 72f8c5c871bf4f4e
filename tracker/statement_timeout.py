"""A budget of database time for each anonymous request (`TRACKER_ANON_STATEMENT_TIMEOUT`,
milliseconds; the name is older than the budget, when it bounded each statement apart).

Anyone may combine every filter, ordering and search of the lists, statistics and public pages, and
a few combinations make PostgreSQL read most of a million incidents (bench/README.md, "What an
anonymous request costs"). The rate limits bound how many requests a client makes, not what each
costs. So the statements of one anonymous request may take this long together at most: each is
sent bounded by what its request has left, PostgreSQL cancels one that runs longer, a request that
has spent it all sends no further statement, and either way the request answers 503 saying why and
with which parameters, instead of holding a thread and a core for seconds. Bounded statement by
statement, a browse page with every facet chosen ran seven walks of the incidents, each under the
bound: 4.6 s of the database for one request at 200,000 incidents. Signed-in readers, who are known
and counted by account, are not bounded.

How: `SET LOCAL statement_timeout` goes with the statement in one query string, which PostgreSQL
runs as one implicit transaction, so the setting lasts for that statement only and costs no round
trip. What a statement took is timed here, from sending it to having its result (the rows of a
client-side cursor come with it), so the budget counts what the database and the way to it took.
Inside a transaction (an atomic block) the setting would hold until the transaction ends, for every
later statement of it whoever runs them (a token's reader once DRF has accepted it, a command in a
test), so there a reset follows the statement, on the connection itself rather than in the same
string: django-pghistory's wrapper reads a string's last result as the statement's. A cancelled
statement aborts the transaction, which undoes the setting too. Nothing is set for the connection's
session, which a pool (or PgBouncer in transaction mode) hands to another client next. Django's
client-side binding (the default: `server_side_binding` unset, as "Scaling" in the README requires)
sends such a string as one simple query. A server-side cursor (`QuerySet.iterator()`) cannot run
two statements, a batch (`executemany`) is a write's, and COPY (the CSV export, bounded by its own
slots and rate) does not go through here: all three run unbounded, and neither count against the
budget nor are refused once it is spent. Nor do savepoints, which cost nothing and must run when a
nested block fails (`_TRANSACTION_CONTROL`).
"""

import math
import time
from contextlib import ExitStack, contextmanager, suppress

import psycopg
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _


class DatabaseBudgetSpent(Exception):
    """An anonymous request has spent its database time: its next statement was not sent."""


class ClientShareSpent(Exception):
    """The anonymous requests of this request's address have taken their share of the database this
    minute (`_ClientShare`): its first statement was not sent."""

    def __init__(self, share):
        super().__init__()
        self.share = share


class AnonymousStatementTimeoutMiddleware:
    """After authentication (and the second factor's middleware), so that it knows who asks; the
    API authenticates a token inside its view, and the budget is dropped from then on."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        milliseconds = settings.ANON_STATEMENT_TIMEOUT
        # Resolved here, before any statement is bounded: the session's queries must not pass
        # through the wrapper that asks who the user is.
        if not milliseconds or request.user.is_authenticated:
            return self.get_response(request)
        share = _ClientShare(request)
        # Checked at the request's first statement (`_BoundStatements`): a request that reads
        # nothing of the database (a page not found) reads nothing of the cache either.
        bound = _BoundStatements(request, milliseconds, share=None if _sends_a_token(request) else share)
        try:
            with ExitStack() as wrapped:
                # Every alias this request may read: the primary and each replica.
                for alias in connections:
                    wrapped.enter_context(connections[alias].execute_wrapper(bound))
                return self.get_response(request)
        finally:
            share.add(bound.spent_milliseconds)

    def process_exception(self, request, exception):
        if isinstance(exception, ClientShareSpent):
            return exception.share.refusal(request)
        spent = isinstance(exception, DatabaseBudgetSpent) or isinstance(
            exception.__cause__, psycopg.errors.QueryCanceled
        )
        if not spent or request.user.is_authenticated:
            return None
        parameters = sorted(request.GET)
        detail = _(
            "This request needs more than %(seconds)s s of the database, the most an anonymous request may "
            "take, so it was stopped. Narrow it (a date range, a type, a country) or sign in."
        ) % {"seconds": f"{settings.ANON_STATEMENT_TIMEOUT / 1000:g}"}
        if request.path_info.startswith("/api/"):
            return JsonResponse({"detail": detail, "parameters": parameters}, status=503)
        # Imported here: the middleware is loaded before the app's views may be.
        from incidents.public.views import parameters_named

        # Named as the page names them, like a filter it refuses: its visitor never typed `q`.
        errors = [{"label": parameters_named(parameters) or request.path, "messages": [detail]}]
        return render(request, "public/bad_filters.html", {"errors": errors}, status=503)


def _sends_a_token(request) -> bool:
    """An API request with `Authorization: Token …`, which DRF authenticates in its view or refuses
    (401) before any other statement: a partner tool, counted by its account, is not held by what
    anonymous requests from its address took. Any other scheme DRF refuses too (401, before any
    statement; `accounts.authentication`), unless a signed-in session is read instead; the header
    sent to a page outside the API, which never reads it, is held: made up, it lifted an address's
    share on the public pages."""
    return (
        request.path_info.startswith("/api/")
        and request.META.get("HTTP_AUTHORIZATION", "").split(" ", 1)[0].lower() == "token"
    )


class _ClientShare:
    """What the anonymous requests of one client address (`accounts.clients.client_ip`, an IPv6
    client by its /64, as every rate counts it) have taken of the database in the current minute,
    kept in the shared cache: past TRACKER_ANON_CLIENT_DATABASE_SECONDS, its requests answer 429
    until the minute ends. The budget above bounds each request and the rates count requests, so
    one address could still ask, at its rate, for request after request near the budget.

    Requests under `CHARGED_FROM_MILLISECONDS` are not added: the rates bound what they take
    together (120 a minute at the API and as many on the public site, of 0.1 s: 24 s at most), and
    the common page then costs one read of the cache, not a write too. Two requests of one address running at once may
    each pass on the count before the other adds to it: the share is exceeded by at most what the
    requests running at that moment take, each bounded by the budget."""

    CHARGED_FROM_MILLISECONDS = 100
    WINDOW_SECONDS = 60

    def __init__(self, request):
        # Imported here: the middleware is loaded before the apps.
        from accounts.clients import client_ip

        self.limit_milliseconds = settings.ANON_CLIENT_DATABASE_SECONDS * 1000
        window = int(time.time() // self.WINDOW_SECONDS)
        self.ends_at = (window + 1) * self.WINDOW_SECONDS
        self.key = f"anonymous-database-time:{client_ip(request)}:{window}"

    def is_spent(self) -> bool:
        """Runs a query (the shared cache) when the share is on."""
        return bool(self.limit_milliseconds) and (cache.get(self.key) or 0) >= self.limit_milliseconds

    def add(self, milliseconds: float) -> None:
        if not self.limit_milliseconds or milliseconds < self.CHARGED_FROM_MILLISECONDS:
            return
        # Kept a window longer than it counts, so that a clock a little behind still reads it.
        cache.add(self.key, 0, timeout=2 * self.WINDOW_SECONDS)
        # A ValueError: expired (or culled) between the two calls, when this minute is over for it.
        with suppress(ValueError):
            cache.incr(self.key, math.ceil(milliseconds))

    def refusal(self, request):
        seconds = max(1, math.ceil(self.ends_at - time.time()))
        detail = _(
            "The requests from your address have taken %(share)s s of the database this minute, the most an "
            "anonymous client may take. Try again in %(seconds)s seconds, or sign in."
        ) % {"share": settings.ANON_CLIENT_DATABASE_SECONDS, "seconds": seconds}
        if request.path_info.startswith("/api/"):
            response = JsonResponse({"detail": detail}, status=429)
        else:
            response = render(request, "public/database_share_spent.html", {"detail": detail}, status=429)
        response["Retry-After"] = str(seconds)
        return response


@contextmanager
def outside_the_budget(request):
    """Statements `request` runs meanwhile are neither bounded nor counted by its budget: what they
    take says nothing of what a filter or a search costs the database, and something else bounds
    them. Its two uses:

    - Waiting for another request (a lock it holds): a sign-in attempt waits for the one before it
      at the same account from the same address (`accounts.lockout.attempts_in_turn`), a password
      hash's time or more; bounded, the second of two attempts sent at once answered 503 telling
      its sender to narrow a search. The sign-in throttle counts the attempts per address.
    - A download under an export slot (`csv_views.spooled_download`): the slots, and one download
      at a time per client, bound it, as they bound the CSV export's COPY, which never goes through
      here. A release file is read a slice a statement; counted against the anonymous budget, a
      file whose slices took more than 3 s together (some 600 MB) could never be downloaded
      anonymously, nor resumed, since the spool is written before its first byte is sent.

    `request` is Django's, or DRF's wrapping it: the budget is the Django request's."""
    request = getattr(request, "_request", request)
    request.statement_bound_waived = True
    try:
        yield
    finally:
        del request.statement_bound_waived


# Django's savepoints (a nested atomic block): they cost the database nothing, and the one that undoes
# a failed block's work runs in a transaction that the failure aborted, where PostgreSQL refuses any
# other statement, a `SET LOCAL` sent with it included; so they go unbounded and uncounted.
_TRANSACTION_CONTROL = ("SAVEPOINT ", "RELEASE SAVEPOINT ", "ROLLBACK TO SAVEPOINT ")


class _BoundStatements:
    """A `connection.execute_wrapper` that sends each statement after `SET LOCAL statement_timeout`
    set to what is left of the request's budget, while the request's user is anonymous (DRF
    replaces `request.user` once a token is accepted). One for the request, shared by every
    database alias it reads, so that a replica's statements are counted with the primary's."""

    def __init__(self, request, milliseconds: int, share: "_ClientShare | None" = None):
        self.request = request
        self.budget_milliseconds = milliseconds
        self.spent_milliseconds = 0.0
        # The address's share, checked before the first statement bounded here (then None).
        self.share = share

    def __call__(self, execute, sql, params, many, context):
        cursor = context["cursor"].cursor
        if (
            many
            or sql.startswith(_TRANSACTION_CONTROL)
            or isinstance(cursor, psycopg.ServerCursor)
            or getattr(self.request, "statement_bound_waived", False)
            or self.request.user.is_authenticated
        ):
            return execute(sql, params, many, context)
        if self.share is not None:
            # Cleared first: the cache's own statement passes through here, bounded like any other.
            share, self.share = self.share, None
            if share.is_spent():
                raise ClientShareSpent(share)
        left = self.budget_milliseconds - self.spent_milliseconds
        if left <= 0:
            raise DatabaseBudgetSpent
        # Rounded up: PostgreSQL takes whole milliseconds, and 0 would mean no bound at all.
        setting = f"SET LOCAL statement_timeout = {math.ceil(left)}; "
        started = time.perf_counter()
        try:
            result = execute(setting + sql, params, many, context)
        finally:
            self.spent_milliseconds += (time.perf_counter() - started) * 1000
        # The setting's own (empty) result comes first; the statement's is next.
        cursor.nextset()
        if context["connection"].in_atomic_block:
            # On another cursor: this one holds the statement's rows, not yet read.
            context["connection"].connection.execute("SET LOCAL statement_timeout TO DEFAULT")
        return result
