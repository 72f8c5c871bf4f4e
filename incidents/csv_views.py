"""The HTTP door of the CSV export: `GET /api/v1/incidents.csv?<incident list filters>[&bom=1]`.

A DRF view, so it authenticates like the rest of the API (session, token); the rows are a COPY
stream from `incidents.exports`, never serialized by DRF.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView

from incidents.api.renderers import JSONRenderer
from incidents.api.throttling import ExportThrottle
from incidents.exports import stream_incidents_csv
from incidents.filters import IncidentFilterBackend, IncidentFilterSet
from incidents.models import AccessDoor
from incidents.selectors import incidents_read_by


def incidents_csv_response(
    queryset: QuerySet,
    request,
    *,
    export_filters: Mapping[str, Any],
    bom: bool = False,
    page_url_prefix: str | None = None,
) -> StreamingHttpResponse:
    """A streamed CSV download of `queryset`, which the caller has limited with `visible_to(request.user)`
    and selected with `export_filters` (recorded with the download when it holds confidential records).

    The rows are read while the response is sent, not here: the first bytes leave before the
    database has produced the last row. Shared by this view, the admin, the API's `?format=csv` and
    the public pages' downloads (which add each row's `page_url_prefix`, see
    `incidents.exports.copy_statement`)."""
    filename = f"incidents-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv"
    rows = stream_incidents_csv(
        queryset,
        request.user,
        door=AccessDoor.CSV,
        export_filters=export_filters,
        path=request.get_full_path(),
        bom=bom,
        page_url_prefix=page_url_prefix,
    )
    return StreamingHttpResponse(
        rows,
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


class CsvOptionsSerializer(serializers.Serializer):
    bom = serializers.BooleanField(
        default=False, help_text="Start the file with a UTF-8 byte order mark, so Excel reads Korean and Chinese."
    )


@extend_schema(
    filters=True,
    parameters=[CsvOptionsSerializer],
    responses={(200, "text/csv"): OpenApiTypes.BINARY, 400: OpenApiTypes.OBJECT},
)
class IncidentCsvView(GenericAPIView):
    """The incidents the user may see, filtered like the incident list, as CSV (columns in the README)."""

    # Set here rather than left to the project's DRF settings, so the endpoint is documented and
    # filtered the same way whatever those settings say.
    schema = AutoSchema()
    filter_backends = [IncidentFilterBackend]
    filterset_class = IncidentFilterSet
    # Errors are JSON whatever the client asked for: the success body is CSV, which no renderer
    # produces, so content negotiation must not turn a 400 into a 406.
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)

    def get_throttles(self):
        return [*super().get_throttles(), ExportThrottle()]

    def get_queryset(self):
        return incidents_read_by(self.request.user, self.request.query_params)

    def get(self, request):
        return filtered_csv_response(self, request, self.get_queryset())


def filtered_csv_response(view, request, incidents: QuerySet) -> StreamingHttpResponse:
    """`incidents` (already limited by visible_to) filtered by `view`'s filter set and streamed as CSV.

    Serves this view and the incident list's `?format=csv`. Every bad parameter is reported at
    once, the filters' and the CSV options' alike."""
    options = CsvOptionsSerializer(data=request.query_params)
    errors = {} if options.is_valid() else dict(options.errors)
    try:
        incidents = view.filter_queryset(incidents)
    except ValidationError as error:
        errors.update(error.detail)
    if errors:
        raise ValidationError(errors)
    return incidents_csv_response(
        incidents, request, export_filters=dict(request.query_params.lists()), bom=options.validated_data["bom"]
    )
