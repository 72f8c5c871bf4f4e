"""What a locked-out client is told (django-axes calls lockout_response), the check the
second-factor step makes before trying a code, the username django-axes counts an attempt under,
and the sign-in rate of the admin's login."""

import math

from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.http import JsonResponse
from django.template.response import TemplateResponse

from incidents.api.throttling import SignInThrottle


def lockout_minutes() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)


def lockout_message() -> str:
    return (
        f"Too many failed sign-in attempts for this account from your address. It is locked here for "
        f"{lockout_minutes()} minutes after the last attempt; try again later, or ask an administrator to unlock it."
    )


def attempted_username(request, credentials=None) -> str | None:
    """The username django-axes records a sign-in attempt under (AXES_USERNAME_CALLABLE): the one
    typed, as django-axes reads it, cut to the length its records hold. Neither the admin's login
    form nor the token request bounds what is typed, and a longer name failed the record's insert:
    the sign-in answered 500. No account's username is that long (150 characters at most), so the
    cut never merges an account's count with another's."""
    if credentials:
        username = credentials.get(settings.AXES_USERNAME_FORM_FIELD)
    else:
        username = getattr(request, "data", request.POST).get(settings.AXES_USERNAME_FORM_FIELD)
    if username is None:
        return None
    return username[: AccessAttempt._meta.get_field("username").max_length]


def is_locked_out(request, username: str) -> bool:
    """Runs queries: whether `username` is locked out for this request's client."""
    return not AxesProxyHandler.is_allowed(request, {"username": username})


def lockout_response(request, original_response=None, credentials=None):
    """429 with the message: JSON under /api/ (as every API error), an admin-styled page elsewhere."""
    status = settings.AXES_HTTP_RESPONSE_CODE
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": lockout_message()}, status=status)
    context = {**admin.site.each_context(request), "title": "Sign-in locked", "message": lockout_message()}
    return TemplateResponse(request, "accounts/locked_out.html", context, status=status).render()


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
