"""Confirming who one is before changing accounts ("sudo mode"): a session lasts a working day, and
whoever stole its cookie holds it without the password or the phone. Changes to accounts, their
roles and their second factors (CONFIRMED_MODELS, in the admin) are let through only in a session
whose owner typed their password, and a current code when they have a second factor, within the
last TRACKER_CONFIRMATION_MINUTES (accounts.views.confirm_identity). One's own password is changed
only on the page that asks for the current one (accounts.admin.StaffUserAdmin)."""

import time

from django.conf import settings
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

# When this session's owner last confirmed who they are (seconds since the epoch).
CONFIRMED_AT_SESSION_KEY = "accounts_confirmed_at"

# The admin's records whose changes give or take a way into an account or its powers: accounts
# (their passwords, staff and superuser flags, roles and permissions), roles themselves, second
# factors, and django-axes' records (deleting one's own attempts would undo the lockout that counts
# a thief's guesses at the password). Revoking API tokens and setup links only takes a way in away.
CONFIRMED_MODELS = frozenset(
    {
        "auth.user",
        "auth.group",
        "otp_totp.totpdevice",
        "otp_static.staticdevice",
        "axes.accessattempt",
        "axes.accesslog",
        "axes.accessfailurelog",
    }
)


def identity_confirmed(request) -> bool:
    """Whether this session's owner confirmed who they are within TRACKER_CONFIRMATION_MINUTES."""
    confirmed_at = request.session.get(CONFIRMED_AT_SESSION_KEY)
    return isinstance(confirmed_at, int | float) and time.time() - confirmed_at <= settings.CONFIRMATION_MINUTES * 60


def identity_confirmed_now(request) -> None:
    """Marks this session confirmed, under a new key: the key a confirmation raised the powers of is
    not one that may have been seen before (session fixation)."""
    request.session.cycle_key()
    request.session[CONFIRMED_AT_SESSION_KEY] = time.time()


def changes_need_confirmation(options) -> bool:
    """Whether changes to the model of `options` (its `_meta`, an admin page's `opts`) need a recent
    confirmation: CONFIRMED_MODELS."""
    return getattr(options, "label_lower", None) in CONFIRMED_MODELS


def confirmation_needed(request, model):
    """None when `model`'s changes need no confirmation or this session confirmed recently; else
    the redirect to the page that asks, which comes back to this one."""
    if not changes_need_confirmation(model._meta) or identity_confirmed(request):
        return None
    return redirect(f"{reverse('accounts:confirm')}?{urlencode({'next': request.get_full_path()})}")
