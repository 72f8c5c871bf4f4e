"""The answer to a request Django refuses before any view runs (`handler400`): too many parameters,
a body too large, a host name the site does not serve, an admin list's filter it does not offer.
Django's own page says "Bad Request (400)" and nothing more, in HTML even to an API client; this one
says what was wrong, as JSON on the API's addresses (as its other errors) and as a page elsewhere,
naming no value the request sent (a parameter's name at most)."""

import logging
import re

from django.conf import settings
from django.contrib.admin.exceptions import DisallowedModelAdminLookup, DisallowedModelAdminToField
from django.core.exceptions import (
    DisallowedHost,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from tracker.uploads import NO_ROOM_RETRY_SECONDS, UploadNoRoom, UploadRefused

API_PREFIX = "/api/"
# Django names the lookup only in its message ("Filtering by cites__id not allowed").
REFUSED_LOOKUP = re.compile(r"Filtering by (?P<parameter>.+) not allowed")


def refusal_message(exception) -> str:
    """What was wrong with the request, in words a client can act on, without its values."""
    if isinstance(exception, TooManyFieldsSent):
        return _("The request sends more than %(count)s parameters or form fields.") % {
            "count": f"{settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,}"
        }
    if isinstance(exception, TooManyFilesSent):
        return _("The request sends more than %(count)s files.") % {
            "count": f"{settings.DATA_UPLOAD_MAX_NUMBER_FILES:,}"
        }
    if isinstance(exception, UploadRefused):
        return str(exception)  # its own words (tracker.uploads), naming no value the request sent
    if isinstance(exception, RequestDataTooBig):
        return _("The request's body is larger than %(megabytes)s MB.") % {
            "megabytes": f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE / 1024 / 1024:g}"
        }
    # The admins of the incidents app name a refused lookup on their own 400 page
    # (OfferedFiltersOnlyMixin); this is the others' (accounts, second factors, lockouts).
    if isinstance(exception, DisallowedModelAdminLookup) and (match := REFUSED_LOOKUP.fullmatch(str(exception))):
        return _("This list offers no such filter: %(parameter)s.") % match.groupdict()
    if isinstance(exception, DisallowedModelAdminToField):
        return _("This page cannot pick records by the field _to_field names.")
    if isinstance(exception, DisallowedHost):
        return _("This server does not answer for the host name the request names.")
    return _("The request could not be read.")


def bad_request(request, exception):
    message = refusal_message(exception)
    if isinstance(exception, UploadNoRoom):
        # Nothing wrong with the request: the server's disk is full. Told when to come back, as a
        # download that finds no room is (`incidents.csv_views.spooled_download`).
        headers = {"Retry-After": str(NO_ROOM_RETRY_SECONDS)}
        if request.path.startswith(API_PREFIX):
            return JsonResponse({"detail": message}, status=503, headers=headers)
        return HttpResponse(message, content_type="text/plain; charset=utf-8", status=503, headers=headers)
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": message}, status=400)
    return render(request, "400.html", {"message": message, "without_query": True}, status=400)


class QueryStringRefusalMiddleware:
    """A query string of more than DATA_UPLOAD_MAX_NUMBER_FIELDS parameters, refused here, before
    any view reads it, with `bad_request`'s answer. Left to Django, that answer came only without
    DEBUG: with it (`make run`), Django's debug page for the refusal reads `request.GET` again,
    fails the same way, and the server answered a bare 500. (Django empties an unreadable body's
    form for its page, not an unreadable query string.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            request.GET  # noqa: B018 (parsed here, once, to know it can be)
        except TooManyFieldsSent as refusal:
            # Logged as Django logs its own refusals.
            logging.getLogger("django.security.TooManyFieldsSent").error(str(refusal))
            return bad_request(request, refusal)
        return self.get_response(request)
