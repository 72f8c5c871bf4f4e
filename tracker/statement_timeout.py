"""A bound on the database time of every statement an anonymous request runs
(`TRACKER_ANON_STATEMENT_TIMEOUT`, milliseconds).

Anyone may combine every filter, ordering and search of the lists, statistics and public pages, and
a few combinations make PostgreSQL read most of a million incidents (bench/README.md, "What an
anonymous request costs"). The rate limits bound how many requests a client makes, not what each
costs, and the public pages have none. So each statement of an anonymous request may run this long
at most: PostgreSQL cancels one that runs longer, and the request answers 503 saying why and with
which parameters, instead of holding a thread and a core for seconds. Signed-in readers, who are
known and counted by account, are not bounded.

How: `SET LOCAL statement_timeout` goes with the statement in one query string, which PostgreSQL
runs as one implicit transaction, so the setting lasts for that statement only and costs no round
trip. Inside a transaction (an atomic block) it would hold until the transaction ends, for every
later statement of it whoever runs them (a token's reader once DRF has accepted it, a command in a
test), so there a reset follows the statement, on the connection itself rather than in the same
string: django-pghistory's wrapper reads a string's last result as the statement's. A cancelled
statement aborts the transaction, which undoes the setting too. Nothing is set for the connection's
session, which a pool (or PgBouncer in transaction mode) hands to another client next. Django's
client-side binding (the default: `server_side_binding` unset, as "Scaling" in the README requires)
sends such a string as one simple query. A server-side cursor (`QuerySet.iterator()`) cannot run
two statements, and COPY (the CSV export, bounded by its own slots and rate) does not go through
here: both run unbounded.
"""

from contextlib import ExitStack, contextmanager

import psycopg
from django.conf import settings
from django.db import connections
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _


class AnonymousStatementTimeoutMiddleware:
    """After authentication (and the second factor's middleware), so that it knows who asks; the
    API authenticates a token inside its view, and the bound is dropped from then on."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        milliseconds = settings.ANON_STATEMENT_TIMEOUT
        # Resolved here, before any statement is bounded: the session's queries must not pass
        # through the wrapper that asks who the user is.
        if not milliseconds or request.user.is_authenticated:
            return self.get_response(request)
        bound = _BoundStatements(request, milliseconds)
        with ExitStack() as wrapped:
            # Every alias this request may read: the primary and each replica.
            for alias in connections:
                wrapped.enter_context(connections[alias].execute_wrapper(bound))
            return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception.__cause__, psycopg.errors.QueryCanceled) or request.user.is_authenticated:
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


@contextmanager
def waiting_unbounded(request):
    """Statements `request` runs meanwhile wait for another request (a lock it holds) rather than
    work: how long they take says nothing of what they cost the database, so the bound does not
    apply to them. A sign-in attempt waits for the one before it at the same account from the same
    address (`accounts.lockout.attempts_in_turn`), a password hash's time or more; bounded, the
    second of two attempts sent at once answered 503 telling its sender to narrow a search. What
    may wait is bounded elsewhere (the sign-in throttle counts attempts per address)."""
    request.statement_bound_waived = True
    try:
        yield
    finally:
        del request.statement_bound_waived


class _BoundStatements:
    """A `connection.execute_wrapper` that sends each statement after `SET LOCAL statement_timeout`
    while the request's user is anonymous (DRF replaces `request.user` once a token is accepted)."""

    def __init__(self, request, milliseconds: int):
        self.request = request
        self.setting = f"SET LOCAL statement_timeout = {int(milliseconds)}; "

    def __call__(self, execute, sql, params, many, context):
        cursor = context["cursor"].cursor
        if (
            many
            or isinstance(cursor, psycopg.ServerCursor)
            or getattr(self.request, "statement_bound_waived", False)
            or self.request.user.is_authenticated
        ):
            return execute(sql, params, many, context)
        result = execute(self.setting + sql, params, many, context)
        # The setting's own (empty) result comes first; the statement's is next.
        cursor.nextset()
        if context["connection"].in_atomic_block:
            # On another cursor: this one holds the statement's rows, not yet read.
            context["connection"].connection.execute("SET LOCAL statement_timeout TO DEFAULT")
        return result
