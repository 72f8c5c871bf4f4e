"""What a locked-out client is told (django-axes calls lockout_response), the check the
second-factor step makes before trying a code, the username django-axes counts an attempt under,
the sign-in rate of the admin's login, attempts at one account taken in turn, and django-axes'
records kept (AttemptsHandler)."""

import hashlib
import math
import unicodedata
from contextlib import contextmanager

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.db import connection, transaction
from django.http import JsonResponse
from django.template.response import TemplateResponse

from accounts.clients import client_ip
from incidents.api.throttling import SignInThrottle
from tracker.statement_timeout import waiting_unbounded

# Sign-in attempts taken in turn: session-level advisory locks on the primary, keyed (this
# namespace, a hash of the account and the address), the two-key form, apart from the export slots'.
_SIGN_IN_NAMESPACE = "hashtext('accounts.sign_in')"


def lockout_minutes() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)


def lockout_message() -> str:
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
    """Attempts at `username` from this request's client (what the lockout counts together) wait
    for each other: each is checked, and its failure counted, before the next is let in.

    django-axes checks the count before the password and adds to it after, a password hash's time
    later; guesses sent at once were each checked against a count the others had not yet added to,
    so they all got their try, however many, where one after another the fifth wrong one locks.
    django-axes offers no lock of its own. The lock is PostgreSQL's, on the primary, which every
    worker of every app server shares; held by this thread's connection, and given back when the
    attempt is over, or by PostgreSQL if the worker dies. Attempts at other accounts, or from other
    addresses, never wait for these. A hash of the pair keys it, so a username PostgreSQL's text
    cannot hold (a NUL) is no error: two pairs that share a hash only wait for each other."""
    if username is None:
        yield
        return
    digest = hashlib.blake2b(f"{username}\n{client_ip(request)}".encode(), digest_size=4).digest()
    key = int.from_bytes(digest, "big", signed=True)
    with waiting_unbounded(request), connection.cursor() as cursor:
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
        response = JsonResponse({"detail": lockout_message()}, status=status)
    else:
        context = {**admin.site.each_context(request), "title": "Sign-in locked", "message": lockout_message()}
        response = TemplateResponse(request, "accounts/locked_out.html", context, status=status).render()
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
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


class AttemptsHandler(AxesDatabaseHandler):
    """django-axes' records in the database (AXES_HANDLER), as django-axes keeps them, but for the
    clean-up of expired attempts that each sign-in runs first, which never waits for another's.

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
