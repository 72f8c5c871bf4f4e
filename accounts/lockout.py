"""What a locked-out client is told (django-axes calls lockout_response), the check the
second-factor step makes before trying a code, the username django-axes counts an attempt under,
the sign-in rate of the admin's login, attempts at one account taken in turn, the lockout's wide
bounds and the familiar addresses they spare, and django-axes' records kept (AttemptsHandler)."""

import hashlib
import math
import unicodedata
from contextlib import contextmanager
from datetime import datetime, timedelta

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt, AccessFailureLog
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import QuerySet, Subquery
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from accounts.clients import client_ip, parsed_address
from accounts.models import SignInAddress
from accounts.services import wait_in_words
from incidents.api.throttling import SignInThrottle
from tracker.statement_timeout import outside_the_budget

# Sign-in attempts taken in turn: session-level advisory locks on the primary, keyed (this
# namespace, a hash of the account), the two-key form, apart from the export slots'.
_SIGN_IN_NAMESPACE = "hashtext('accounts.sign_in')"
# Set on a request refused by a wide bound (AttemptsHandler): when it lifts, for lockout_response.
_WIDE_LOCKOUT_LIFTS_AT = "accounts_wide_lockout_lifts_at"
# At most this many failures beyond a username's bound deleted at each of its failures
# (AttemptsHandler.remove_out_of_limit_failure_logs): some milliseconds, and a backlog goes a
# thousand times faster than failures come.
FAILURES_DELETED_AT_ONCE = 1_000
# Set beside it when the address is familiar to the account (its own bound, not the wide ones).
_FAMILIAR_ADDRESS = "accounts_wide_lockout_familiar"


def lockout_minutes() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)


def lockout_message(request=None) -> str:
    """What a locked-out client is told: the lock of the account at its address, or (a request
    AttemptsHandler refused by a wide bound) when the wide bound lifts."""
    lifts_at = getattr(request, _WIDE_LOCKOUT_LIFTS_AT, None)
    if lifts_at is not None and getattr(request, _FAMILIAR_ADDRESS, False):
        return (
            "Too many failed sign-in attempts recently for this account from your address: signing in to it from "
            f"here is refused for {wait_in_words(lifts_at - timezone.now())}. Try again later, or ask an administrator "
            "to unlock it."
        )
    if lifts_at is not None:
        return (
            "Too many failed sign-in attempts recently for this account, or from your address: signing in to it "
            f"from here is refused for {wait_in_words(lifts_at - timezone.now())}. The account still signs in from "
            "the places it signed in from before. Try again later, or ask an administrator to unlock it."
        )
    return (
        f"Too many failed sign-in attempts for this account from your address. It is locked here for "
        f"{lockout_minutes()} minutes after the last attempt; try again later, or ask an administrator to unlock it."
    )


def attempted_username(request, credentials=None) -> str | None:
    """The username django-axes records a sign-in attempt under (AXES_USERNAME_CALLABLE), and that
    attempts are taken in turn by (`attempts_in_turn`): the one typed, read as the admin's login form
    reads it (Django's UsernameField: spaces around it dropped, then NFKC, so that "alice" in
    full-width letters is "alice"), cut to the length the records hold.

    The login form signs " alice " and the full-width form in as alice, and django-axes counts
    them under the name the form gives; the attempts in turn were keyed by the name as posted, so
    guesses written in other ways did not wait for each other and each met a count the others had
    not yet added to. Read the same way from the form's data and from the credentials that Django
    or the token request gives, each attempt has one name, whichever door.

    Neither the admin's login form nor the token request bounds what is typed, and a longer name
    failed the record's insert: the sign-in answered 500. No account's username is that long (150
    characters at most), so the cut never merges an account's count with another's."""
    if credentials:
        username = credentials.get(settings.AXES_USERNAME_FORM_FIELD)
    else:
        username = getattr(request, "data", request.POST).get(settings.AXES_USERNAME_FORM_FIELD)
    if not isinstance(username, str):
        return None
    username = unicodedata.normalize("NFKC", username.strip())
    return username[: AccessAttempt._meta.get_field("username").max_length]


def is_locked_out(request, username: str) -> bool:
    """Runs queries: whether `username` is locked out for this request's client."""
    return not AxesProxyHandler.is_allowed(request, {"username": username})


@contextmanager
def attempts_in_turn(request, username: str | None):
    """Attempts at `username`, from any address (what the lockout and the account's wide bound
    count together), wait for each other: each is checked, and its failure counted, before the next
    is let in.

    django-axes checks the count before the password and adds to it after, a password hash's time
    later; guesses sent at once were each checked against a count the others had not yet added to,
    so they all got their try, however many, where one after another the fifth wrong one locks.
    Keyed by the account and the address, as it was, a botnet's guesses from many addresses at once
    each met the account's wide bound unreached. django-axes offers no lock of its own. The lock is
    PostgreSQL's, on the primary, which every worker of every app server shares; held by this
    thread's connection, and given back when the attempt is over, or by PostgreSQL if the worker
    dies. Attempts at other accounts never wait for these: the address's wide bound is not taken in
    turn (an office's staff, behind one address, would sign in one at a time), so guesses sent at
    once from one address at many accounts may pass it by as many as the server answers at once,
    after which it holds. A hash of the account keys it, so a username PostgreSQL's text cannot
    hold (a NUL) is no error: two accounts that share a hash only wait for each other."""
    if username is None:
        yield
        return
    digest = hashlib.blake2b(username.encode(), digest_size=4).digest()
    key = int.from_bytes(digest, "big", signed=True)
    with outside_the_budget(request), connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_advisory_lock({_SIGN_IN_NAMESPACE}, %s)", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT pg_advisory_unlock({_SIGN_IN_NAMESPACE}, %s)", [key])


def lockout_response(request, original_response=None, credentials=None):
    """429 with the message: JSON under /api/ (as every API error), an admin-styled page elsewhere;
    `Retry-After` the whole cool-off, as a try meanwhile starts it again (django-axes' default), so
    that a client that waits as told is let in (the 429 of the sign-in rate says when too)."""
    status = settings.AXES_HTTP_RESPONSE_CODE
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": lockout_message(request)}, status=status)
    else:
        context = {**admin.site.each_context(request), "title": "Sign-in locked", "message": lockout_message(request)}
        response = TemplateResponse(request, "accounts/locked_out.html", context, status=status).render()
    lifts_at = getattr(request, _WIDE_LOCKOUT_LIFTS_AT, None)
    wait = settings.AXES_COOLOFF_TIME if lifts_at is None else lifts_at - timezone.now()
    response["Retry-After"] = str(max(1, math.ceil(wait.total_seconds())))
    return response


def sign_in_throttled(request) -> TemplateResponse | None:
    """Runs queries (the shared cache): None when this client may try another password on the
    admin's login, else a 429 page saying when it may, as the API's token request answers past the
    same count (SignInThrottle)."""
    throttle = SignInThrottle()
    if throttle.allow_request(request, view=None):
        return None
    # No wait when the client's history holds more than the rate (since lowered) allows: a period.
    seconds = math.ceil(throttle.wait() or throttle.duration)
    message = (
        f"Too many sign-ins from your address (at most {throttle.rate}), whichever accounts they were for. "
        f"Try again in {seconds} seconds."
    )
    context = {**admin.site.each_context(request), "title": "Sign-in paused", "message": message}
    response = TemplateResponse(request, "accounts/locked_out.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response.render()


def sign_in_address_record(*, request, user) -> None:
    """Runs queries: `user` finished signing in (its password, and its second factor when it has
    one) from this request's client, whose address is then familiar to the account for
    TRACKER_LOCKOUT_FAMILIAR_DAYS (wide_lockout_lifts_at). The account's addresses older than that
    go, so the table holds what the rule reads."""
    address = client_ip(request)
    if parsed_address(address) is None:
        # No address (a Unix socket's is empty): nothing to be familiar with.
        return
    now = timezone.now()
    # One statement: two sign-ins at once from one address cannot both insert it.
    SignInAddress.objects.bulk_create(
        [SignInAddress(user=user, address=address, last_signed_in_at=now)],
        update_conflicts=True,
        unique_fields=["user", "address"],
        update_fields=["last_signed_in_at"],
    )
    SignInAddress.objects.filter(
        user=user, last_signed_in_at__lt=now - timedelta(days=settings.LOCKOUT_FAMILIAR_DAYS)
    ).delete()


def wide_lockout_lifts_at(request, username: str | None) -> datetime | None:
    """Runs queries: until when this request's client may not try `username`, held by a wide bound
    (TRACKER_LOCKOUT_ACCOUNT_FAILURES failures at the account from any address, or
    TRACKER_LOCKOUT_ADDRESS_FAILURES from this address at any account, within
    TRACKER_LOCKOUT_WINDOW_HOURS), or None: both below their bounds. An address familiar to the
    account (sign_in_address_record) meets neither, only the account's failures from there
    (TRACKER_LOCKOUT_FAMILIAR_FAILURES in the window; `request` is marked so, for its message).

    Counted from django-axes' log of failures, which keeps every failed sign-in, those refused
    while locked included (as the lock at one address counts them): a botnet that keeps trying
    keeps the bound reached, and the owner at home, or at the office, signs in meanwhile."""
    address = request.axes_ip_address
    if parsed_address(address) is None:
        address = None
    window = settings.LOCKOUT_WINDOW
    recent = AccessFailureLog.objects.filter(attempt_time__gte=timezone.now() - window)
    if username is not None and address is not None and _familiar(username, address):
        setattr(request, _FAMILIAR_ADDRESS, True)
        failures = recent.filter(username=username, ip_address=address)
        return _bound_lifts_at(failures, settings.LOCKOUT_FAMILIAR_FAILURES, window)
    bounds = []
    if username is not None:
        bounds.append((recent.filter(username=username), settings.LOCKOUT_ACCOUNT_FAILURES))
    if address is not None:
        bounds.append((recent.filter(ip_address=address), settings.LOCKOUT_ADDRESS_FAILURES))
    lifts = [lifts_at for failures, bound in bounds if (lifts_at := _bound_lifts_at(failures, bound, window))]
    return max(lifts, default=None)


def _familiar(username: str, address: str) -> bool:
    """Runs a query: whether the account named `username` finished signing in from `address`
    within TRACKER_LOCKOUT_FAMILIAR_DAYS. A name that is no account's has no familiar address."""
    since = timezone.now() - timedelta(days=settings.LOCKOUT_FAMILIAR_DAYS)
    account = {f"user__{get_user_model().USERNAME_FIELD}": username}
    return SignInAddress.objects.filter(**account, address=address, last_signed_in_at__gte=since).exists()


def _bound_lifts_at(failures: QuerySet, bound: int, window: timedelta) -> datetime | None:
    """Runs a query: when `failures` (those of the window) fall below `bound` as they age out of
    the window, the `bound`th newest first; None when they already are below it."""
    nth_newest = failures.order_by("-attempt_time").values_list("attempt_time", flat=True)[bound - 1 : bound]
    return next((attempt_time + window for attempt_time in nth_newest), None)


class AttemptsHandler(AxesDatabaseHandler):
    """django-axes' records in the database (AXES_HANDLER), as django-axes keeps them, with the
    wide bounds (wide_lockout_lifts_at) beside its lock of an account at one address. django-axes
    compares one count with one limit (AXES_FAILURE_LIMIT, a callable too, is told neither which
    count nor which address is familiar), so an account's count from every address would lock
    its owner out at the fifth guess of anyone's: the wide bounds are checked here, with limits of
    their own, where django-axes checks its lock before a password and after a failure.

    Also kept from django-axes: its clean-up of expired attempts that each sign-in runs first,
    which here never waits for another's.

    django-axes deletes every attempt whose lockout has expired, anyone's, in a transaction that
    holds each row until it commits; a sign-in meanwhile (any account, any address) waited to delete
    the same rows, and the bound on anonymous statements (tracker/statement_timeout.py) cut that
    wait short: a wrong password answered 503 telling its sender to narrow a search, uncounted
    towards the lockout. Here rows another transaction holds are left to it (SKIP LOCKED): it is
    deleting them, or (django-axes' own select_for_update) counting a new failure on them. The
    delete itself, which works, stays bounded."""

    def clean_expired_user_attempts(self, request=None, credentials=None) -> int:
        if settings.AXES_COOLOFF_TIME is None or getattr(settings, "AXES_USE_ATTEMPT_EXPIRATION", False):
            return super().clean_expired_user_attempts(request, credentials)
        expired = AccessAttempt.objects.filter(attempt_time__lte=get_cool_off_threshold(request))
        with transaction.atomic():
            free = list(expired.select_for_update(skip_locked=True).values_list("pk", flat=True))
            _, deleted = AccessAttempt.objects.filter(pk__in=free).delete()
        return deleted.get(AccessAttempt._meta.label, 0)

    def is_locked(self, request, credentials=None) -> bool:
        if super().is_locked(request, credentials):
            return True
        lifts_at = wide_lockout_lifts_at(request, get_client_username(request, credentials))
        setattr(request, _WIDE_LOCKOUT_LIFTS_AT, lifts_at)
        return lifts_at is not None

    def remove_out_of_limit_failure_logs(self, *, username: str, limit: int | None = None) -> int:
        """django-axes' bound on a username's log of failures (AXES_ACCESS_FAILURE_LOG_PER_USER_LIMIT),
        applied to the oldest, and never to those of the wide bounds' window. django-axes deletes
        the excess in no order (its model's ordering is not inherited): read in the table's order,
        the first rows, which after a vacuum are those written into the room its deletions left.
        At the name every scanner tries (`admin`), past its thousandth failure, each new one was
        deleted as it was written, and the wide bounds counted none.

        Each failure's share of the work is bounded, as its request's database time is (a failed
        sign-in is anonymous): the newest `limit` are found down the index by account and time
        (migration 0007), never counted whole, and at most FAILURES_DELETED_AT_ONCE of the rest
        are deleted, far more than the one the failure adds. Counting them all and deleting every
        one past the window at once, a day of a botnet's guesses at one name (2,000,000, some 140
        addresses at the sign-in rate) made each later failure there spend the request's 3 s: it
        answered 503 and went uncounted (the bound's delete and the failure's insert are one
        transaction), and the wide bounds held no more at that name until the daily clean-up, a month later."""
        limit = settings.AXES_ACCESS_FAILURE_LOG_PER_USER_LIMIT if limit is None else limit
        failures = AccessFailureLog.objects.filter(username=username)
        excess = failures.filter(attempt_time__lt=timezone.now() - settings.LOCKOUT_WINDOW)
        if limit > 0:
            newest_kept = failures.order_by("-attempt_time").values("attempt_time")[limit - 1 : limit]
            # None (no row) while fewer than `limit` are kept: then nothing is older than it.
            excess = excess.filter(attempt_time__lt=Subquery(newest_kept))
        oldest = excess.order_by("attempt_time").values("pk")[:FAILURES_DELETED_AT_ONCE]
        deleted, _ = AccessFailureLog.objects.filter(pk__in=oldest).delete()
        return deleted

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        super().user_login_failed(sender, credentials, request, **kwargs)
        # django-axes locked on its own count only; this failure, now in its log, may reach a wide
        # bound: locked here too, the middleware answers this request with the lockout page.
        if request is None or request.axes_locked_out or self.is_whitelisted(request, credentials):
            return
        lifts_at = wide_lockout_lifts_at(request, get_client_username(request, credentials))
        if lifts_at is not None:
            setattr(request, _WIDE_LOCKOUT_LIFTS_AT, lifts_at)
            request.axes_locked_out = True
            request.axes_credentials = credentials
