"""The HTTP door of the CSV export: `GET /api/v1/incidents.csv?<incident list filters>[&bom=1]`.

A DRF view, so it authenticates like the rest of the API (session, token); the rows are a COPY
stream from `incidents.exports`, never serialized by DRF.
"""

import logging
import math
from collections.abc import Callable, Generator, Mapping
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import HttpResponse, HttpResponseBase, JsonResponse, QueryDict, StreamingHttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request

from incidents.api.parameters import ReadParametersOnlyMixin
from incidents.api.renderers import JSONRenderer
from incidents.api.schema import BUSY_RETRY_AFTER, DETAIL_ERROR, THROTTLED_RETRY_AFTER, OpenReadsAutoSchema
from incidents.api.throttling import ExportThrottle
from incidents.exports import (
    SpooledDownload,
    export_client_release,
    export_client_take,
    export_slot_release,
    export_slot_take,
    spooled,
    stream_incidents_csv,
)
from incidents.filters import IncidentFilterBackend, IncidentFilterSet
from incidents.models import AccessDoor
from incidents.parameters import parameter_errors
from incidents.selectors import incidents_read_by
from tracker.statement_timeout import outside_the_budget
from tracker.uploads import NO_ROOM_ERRNOS, NO_ROOM_RETRY_SECONDS

# The export's own parameter beside the filters, at every HTTP door: `bom=1` starts the file with
# a UTF-8 byte order mark, without which Excel reads UTF-8 as the Windows code page and garbles
# Korean and Chinese names.
BOM_PARAMETER = "bom"


def bom_requested(query: QueryDict) -> bool:
    """Whether `query` asks for a byte order mark, read as the API reads its `bom`
    (`CsvOptionsSerializer`: `1`, `true`, `yes`, `on` or their opposites, in the usual cases); a
    ValidationError naming `bom` for any other value, which the admin and the public pages took
    for "no mark" (`bom=true` sent none)."""
    # Given twice, refused as every other door refuses it (`parameter_errors`): the admin's export
    # read the last value.
    repeated = parameter_errors(query, reads={BOM_PARAMETER}, others_refused=False)
    options = _csv_options(query)
    if repeated or options.errors:
        raise DjangoValidationError(repeated or {BOM_PARAMETER: options.errors[BOM_PARAMETER]})
    return options.validated_data[BOM_PARAMETER]


# The periods a rate is given in (`tracker.settings.env_rate`), as a refusal names them: the rate's
# own text, "20/hour", read in English on the Korean pages.
RATE_PERIODS = {
    "second": gettext_lazy("second"),
    "minute": gettext_lazy("minute"),
    "hour": gettext_lazy("hour"),
    "day": gettext_lazy("day"),
}


def rate_words(rate: str) -> dict[str, str]:
    """A throttle's rate ("20/hour") as a refusal says it, in the reader's language."""
    count, period = rate.split("/")
    return {"count": count, "period": RATE_PERIODS[period]}


def _csv_options(query: Mapping[str, str]) -> "CsvOptionsSerializer":
    """The export's options in `query`, validated, read alike at every door: from a plain dict, as
    DRF reads a QueryDict as a form, where an empty value falls back to the default. An empty `bom=`
    (a script's unset variable) was "no mark" at the API and a 400 at the admin and the public pages."""
    options = CsvOptionsSerializer(data={BOM_PARAMETER: query[BOM_PARAMETER]} if BOM_PARAMETER in query else {})
    options.is_valid()
    return options


# How long a client sent away because every export slot is busy, or because a download of its own
# is still running, should wait: about what a whole export of 1,000,000 incidents took to download
# under load (12-18 s, bench/README.md "Load test").
EXPORT_SLOT_RETRY_SECONDS = 15

logger = logging.getLogger(__name__)


def incidents_csv_response(
    queryset: QuerySet,
    request,
    *,
    export_filters: Mapping[str, Any],
    bom: bool = False,
    page_url_prefix: str | None = None,
) -> HttpResponseBase:
    """A CSV download of `queryset`, which the caller has limited with `visible_to(request.user)`
    and selected with `export_filters` (recorded with the download when it holds confidential
    records, before its first byte is sent).

    The rows are copied into a file here, at the database's speed, then sent from it
    (`spooled_download`, which says how downloads are bounded). Shared by this view, the admin, the
    API's `?format=csv` and the public pages' downloads (which add each row's `page_url`, see
    `incidents.exports.copy_statement`), so every door is bounded alike. Each export counts against
    the client's export rate (`ExportThrottle`, one count per client whichever door it exports
    through)."""
    download = spooled_download(
        request,
        lambda: stream_incidents_csv(
            queryset,
            request.user,
            door=AccessDoor.CSV,
            export_filters=export_filters,
            path=request.get_full_path(),
            bom=bom,
            page_url_prefix=page_url_prefix,
        ),
        busy_message=_(
            "Too many CSV exports are running at once (at most %(count)d). Try again in %(seconds)d seconds."
        ),
        throttle=ExportThrottle(),
    )
    if not isinstance(download, SpooledDownload):
        return download
    filename = f"incidents-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv"
    return StreamingHttpResponse(
        download,
        content_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Content-Length": download.size,
            "Cache-Control": "no-store",
        },
    )


def spooled_download(
    request,
    read: Callable[[], Generator[bytes, None, None]],
    *,
    busy_message: str,
    throttle: ExportThrottle | None = None,
) -> SpooledDownload | HttpResponse:
    """The bytes `read()` yields (a CSV export, a release file), written to a file while this thread
    holds an export slot, ready to be sent from it; or the refusal to answer instead (runs a few
    queries):

    - 429 while the same client (account, or address when anonymous: as `ExportThrottle` counts
      them) has another download running, on any worker (`export_client_take`): one at a time, so
      that one client cannot take every slot by asking for several at once. Its turn is held until
      the response is closed (`SpooledDownload`).
    - 503 while EXPORTS_AT_ONCE downloads are being read from the database (`export_slot_take`):
      each holds a server thread and a connection meanwhile, and a burst of them would leave none
      to other requests; `busy_message` says so.
    - 503 when the file cannot be written for want of room (a full disk or quota: NO_ROOM_ERRNOS),
      logged for the operator; nothing is left behind (`spooled`), and the client's rate is not
      spent.
    - 429 once the client has spent `throttle`'s rate, when given. Counted only once a slot is
      taken, so a client that a busy server sent away, and that comes back after Retry-After, has
      not spent its rate on downloads never run.

    The slot is given back, and the transaction of `read`'s statements has ended, before the first
    byte is sent: a client reading slowly holds its server thread and its turn, never the
    database's snapshot or a slot (`incidents.exports.spooled`)."""
    client = ExportThrottle().get_cache_key(request, view=None)
    if not export_client_take(client):
        return _export_refused(
            request,
            status=429,
            seconds=EXPORT_SLOT_RETRY_SECONDS,
            message=_(
                "Another download of yours is still running; one at a time. Try again in %(seconds)d seconds, "
                "once it has ended."
            ),
        )
    spool = None
    try:
        slot = export_slot_take()
        if slot is None:
            return export_slots_busy(request, busy_message)
        try:
            if throttle is not None and not throttle.allow_request(request, view=None):
                return _export_refused(
                    request,
                    status=429,
                    # No wait when the client's history holds more than the rate (since lowered) allows: a period.
                    seconds=math.ceil(throttle.wait() or throttle.duration),
                    message=_(
                        "Too many CSV exports from you (at most %(count)s per %(period)s). "
                        "Try again in %(seconds)d seconds."
                    ),
                    **rate_words(throttle.rate),
                )
            try:
                with outside_the_budget(request):
                    spool = spooled(read())
            except OSError as error:
                if error.errno not in NO_ROOM_ERRNOS:
                    raise
                # The operator's to act on (free room, or move TRACKER_EXPORT_SPOOL_DIR); the
                # client is told to come back, as when every slot is busy.
                logger.error(
                    "A download could not be written to TRACKER_EXPORT_SPOOL_DIR (%s): %s",
                    settings.EXPORT_SPOOL_DIR or "the system's temporary directory",
                    error,
                )
                # Nothing was sent: as a client a busy server sent away, it has not spent its rate.
                if throttle is not None:
                    throttle.uncount()
                return _export_refused(
                    request,
                    status=503,
                    seconds=NO_ROOM_RETRY_SECONDS,
                    message=_(
                        "The server has no room to prepare the download just now. Try again in %(seconds)d seconds."
                    ),
                )
        finally:
            export_slot_release(slot)
    finally:
        if spool is None:  # refused, or failed: nothing will be sent
            export_client_release(client)
    return SpooledDownload(spool, client)


def export_slots_busy(request, message: str) -> HttpResponse:
    """503 while EXPORTS_AT_ONCE downloads (CSV exports, release files) hold every export slot, and
    when to come back: `message` says what, with `%(count)d` and `%(seconds)d`."""
    return _export_refused(
        request, status=503, seconds=EXPORT_SLOT_RETRY_SECONDS, message=message, count=settings.EXPORTS_AT_ONCE
    )


def _export_refused(request, *, status: int, seconds: int, message: str, **values) -> HttpResponse:
    """An export not started, and when to try again (`message` with `seconds` and `values`): JSON at
    the API, like DRF's own throttling (`{"detail": …}`), plain text at the admin and the public
    pages, whose downloads a browser shows."""
    text = message % {"seconds": seconds, **values}
    headers = {"Retry-After": str(seconds)}
    if isinstance(request, Request):
        return JsonResponse({"detail": text}, status=status, headers=headers)
    return HttpResponse(text, content_type="text/plain; charset=utf-8", status=status, headers=headers)


class CsvOptionsSerializer(serializers.Serializer):
    bom = serializers.BooleanField(
        default=False, help_text="Start the file with a UTF-8 byte order mark, so Excel reads Korean and Chinese."
    )


@extend_schema(
    filters=True,
    parameters=[CsvOptionsSerializer, BUSY_RETRY_AFTER, THROTTLED_RETRY_AFTER],
    responses={
        (200, "text/csv"): OpenApiTypes.BINARY,
        400: OpenApiTypes.OBJECT,
        # Refusals are JSON whatever the export's type (`incidents_csv_response`).
        (401, "application/json"): DETAIL_ERROR,
        (429, "application/json"): DETAIL_ERROR,
        (503, "application/json"): DETAIL_ERROR,
    },
)
class IncidentCsvView(ReadParametersOnlyMixin, GenericAPIView):
    """The incidents the user may see, filtered like the incident list, as CSV (columns in the README)."""

    # Set here rather than left to the project's DRF settings, so the endpoint is documented and
    # filtered the same way whatever those settings say; its errors are declared above, as JSON.
    schema = OpenReadsAutoSchema()
    filter_backends = [IncidentFilterBackend]
    filterset_class = IncidentFilterSet
    # Errors are JSON whatever the client asked for: the success body is CSV, which no renderer
    # produces, so content negotiation must not turn a 400 into a 406.
    renderer_classes = [JSONRenderer]
    # Every matching incident, in the export's order: no page, no ordering (`pagination_class`).
    pagination_class = None
    extra_query_parameters = tuple(CsvOptionsSerializer().fields)

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)

    def get_queryset(self):
        return incidents_read_by(self.request.user, self.request.query_params)

    def get(self, request):
        return filtered_csv_response(self, request, self.get_queryset())


def filtered_csv_response(view, request, incidents: QuerySet) -> HttpResponseBase:
    """`incidents` (already limited by visible_to) filtered by `view`'s filter set and streamed as CSV.

    Serves this view and the incident list's `?format=csv`. Every bad parameter is reported at
    once, the filters' and the CSV options' alike."""
    options = _csv_options(request.query_params)
    errors = dict(options.errors)
    try:
        incidents = view.filter_queryset(incidents)
    except ValidationError as error:
        errors.update(error.detail)
    if errors:
        raise ValidationError(errors)
    return incidents_csv_response(
        incidents, request, export_filters=dict(request.query_params.lists()), bom=options.validated_data["bom"]
    )
