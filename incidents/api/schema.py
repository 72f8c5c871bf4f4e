"""OpenAPI schema details drf-spectacular cannot infer: the errors every operation may answer, and
fields that read differently from how they are written."""

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import build_basic_type, build_object_type
from drf_spectacular.types import OpenApiTypes

DETAIL_ERROR = build_object_type(
    properties={"detail": build_basic_type(OpenApiTypes.STR)}, required=["detail"], description="An error."
)
FIELD_ERRORS = {
    **build_object_type(
        description="Each key names the field or query parameter at fault (`claims[0].people_count`, "
        "`date_from`, `non_field_errors`) with its messages; or `detail` for a request-wide error."
    ),
    "additionalProperties": {},
}


class TrackerAutoSchema(AutoSchema):
    """Documents on every operation the errors it can answer, so clients (and schemathesis) know
    them: bad input, authentication, permission, hidden or unknown records, throttling; and for
    writes, conflicts (in use, stale version) and failed If-Match preconditions."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        errors = {
            "400": ("Malformed parameter or field; the body names it.", FIELD_ERRORS),
            "401": ("Bad or missing credentials (send `Authorization: Token …`).", DETAIL_ERROR),
            "403": ("Your role lacks the permission this needs.", DETAIL_ERROR),
            "404": ("No such record, or one you may not see.", DETAIL_ERROR),
            "429": ("Too many requests; retry after the Retry-After header's seconds.", DETAIL_ERROR),
        }
        if self.method in ("PUT", "PATCH", "DELETE"):
            errors["409"] = ("In use by other records, or the body's `version` is stale.", DETAIL_ERROR)
            errors["412"] = ("The If-Match header names a stale version.", DETAIL_ERROR)
        for code, (description, schema) in errors.items():
            responses.setdefault(
                code, {"description": description, "content": {"application/json": {"schema": schema}}}
            )
        return responses


class IncidentPlaceFieldExtension(OpenApiSerializerFieldExtension):
    """An incident's places are written as ids and read as places with country and coordinates."""

    target_class = "incidents.api.serializers.IncidentPlaceField"

    def map_serializer_field(self, auto_schema, direction):
        from incidents.api.serializers import PlaceLocationSerializer

        if direction == "request":
            return build_basic_type(OpenApiTypes.INT)
        return auto_schema.resolve_serializer(PlaceLocationSerializer, direction).ref
