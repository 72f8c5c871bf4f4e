"""What a locked-out client is told (django-axes calls lockout_response), and the check the
second-factor step makes before trying a code."""

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib import admin
from django.http import JsonResponse
from django.template.response import TemplateResponse


def lockout_minutes() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)


def lockout_message() -> str:
    return (
        f"Too many failed sign-in attempts for this account from your address. It is locked here for "
        f"{lockout_minutes()} minutes after the last attempt; try again later, or ask an administrator to unlock it."
    )


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
