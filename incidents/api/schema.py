"""OpenAPI schema details drf-spectacular cannot infer: the errors every operation may answer, the
headers a client sends and reads (If-Match, ETag, Location, Retry-After), and fields that read
differently from how they are written."""

from drf_spectacular.contrib.django_filters import DjangoFilterExtension
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import build_array_type, build_basic_type, build_object_type
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.permissions import SAFE_METHODS

from incidents.api.permissions import ReadOrModelPermission

DETAIL_ERROR = build_object_type(
    properties={"detail": build_basic_type(OpenApiTypes.STR)}, required=["detail"], description="An error."
)
MERGED_REDIRECT = build_object_type(
    properties={"detail": build_basic_type(OpenApiTypes.STR), "merged_into": build_basic_type(OpenApiTypes.STR)},
    required=["detail", "merged_into"],
    description="The incident was merged into `merged_into`; `Location` gives its address.",
)
# A new source that looks like one recorded (`errors.looks_like_another_response`); any other 409 of
# the operation (another write met at the same moment) is a DETAIL_ERROR, whose `code` and
# `sources` are absent.
LOOKS_LIKE_ANOTHER_ERROR = build_object_type(
    properties={
        "detail": build_basic_type(OpenApiTypes.STR),
        "code": {"type": "string", "enum": ["looks_like_another_source"]},
        "sources": build_array_type(
            build_object_type(
                properties={
                    "id": build_basic_type(OpenApiTypes.INT),
                    "title": build_basic_type(OpenApiTypes.STR),
                    "field": {"type": "string", "description": "What they share: `url`, or `title` (and publisher)."},
                },
                required=["id", "title", "field"],
            )
        ),
    },
    required=["detail"],
    description="Not saved: `sources` names the recorded sources it looks like (send `another_source_confirmed`: "
    "true to record it all the same); without `code`, another write met at the same moment.",
)
STOPPED_ERROR = build_object_type(
    properties={
        "detail": build_basic_type(OpenApiTypes.STR),
        "parameters": build_array_type(build_basic_type(OpenApiTypes.STR)),
    },
    required=["detail", "parameters"],
    description="Stopped: `parameters` names the request's query parameters.",
)
# The incident list's 503: every export slot busy (`format=csv`, with Retry-After), or an anonymous
# request stopped for its cost, whose `parameters` STOPPED_ERROR declares on every other read.
BUSY_OR_STOPPED_ERROR = build_object_type(
    properties={
        "detail": build_basic_type(OpenApiTypes.STR),
        "parameters": build_array_type(build_basic_type(OpenApiTypes.STR)),
    },
    required=["detail"],
    description="Every export slot is busy (`format=csv`: see Retry-After), or an anonymous request was stopped: "
    "`parameters` names its query parameters.",
)
FIELD_ERRORS = {
    **build_object_type(
        description="Each key names the field or query parameter at fault (`claims[0].people_count`, "
        "`date_from`, `non_field_errors`) with its messages; or `detail` for a request-wide error."
    ),
    "additionalProperties": {},
}

# The version a write was made from, for the views that read it (`ResourceViewSet._check_if_match`).
IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description='The version you edited, as the record\'s ETag gave it (`"staff.3"`: the audience you read it as, '
    "and its version); 412 if it has changed since, or if you read it with access you no longer have. "
    "Or send `version` and `version_audience` in the body instead (409 if stale).",
)
# A new incident's key, for the create that reads it (`IncidentViewSet.create`).
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="A key of your choosing (a UUID), new for each incident: a POST sent again with it, as a "
    "retry after a timeout, adds nothing and is answered with the incident the first added (201), or, merged "
    "since into one you may see, 303 to it (`merged_into`); the key sent with another body is a 422. Up to 255 "
    "printable ASCII characters; each account has its own keys.",
)
# The copy a client holds, for the details that answer 304 (`ResourceViewSet._unless_held`).
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description='The ETag of the copy you hold (`"staff.3"`): 304 and no body if the record is still at that '
    "version for you.",
)
# Response headers: `response` names the status codes that send them.
ETAG = OpenApiParameter(
    "ETag",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[200, 201],
    required=True,
    description='The record\'s version, named for the audience you read it as (`"staff.3"`): send it back '
    "as If-Match with your change.",
)
CREATED_LOCATION = OpenApiParameter(
    "Location",
    OpenApiTypes.URI,
    OpenApiParameter.HEADER,
    response=[201],
    required=True,
    description="The new record's address.",
)
MERGED_LOCATION = OpenApiParameter(
    "Location",
    OpenApiTypes.URI,
    OpenApiParameter.HEADER,
    response=[301],
    required=True,
    description="The address of the incident it was merged into.",
)
# A new incident's POST retried (`IDEMPOTENCY_KEY`) after the incident it added was merged.
MERGED_SEE_OTHER = OpenApiParameter(
    "Location",
    OpenApiTypes.URI,
    OpenApiParameter.HEADER,
    response=[303],
    required=True,
    description="The address of the incident that the one your key added was merged into.",
)
# Not required: DRF's throttles leave it out when a client's history holds more requests than
# the rate (since lowered) allows. The sign-in lockout sends it (its whole cool-off).
THROTTLED_RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[429],
    description="Seconds to wait before trying again.",
)
# Downloads that take an export slot (`csv_views.export_slots_busy`), or find no room for their file
# (`csv_views.SPOOL_FULL_ERRNOS`); the 503 of a stopped anonymous statement says to narrow the
# request instead, and sends no Retry-After.
BUSY_RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[503],
    description="Every export slot is busy, or the server has no room for the download: seconds to wait "
    "before trying again.",
)


class OpenReadsAutoSchema(AutoSchema):
    """Says that anyone may read where ReadOrModelPermission lets them, credentials only widening
    what is seen: the read lists "no credentials" among its options, as drf-spectacular does for
    IsAuthenticatedOrReadOnly. Without it the schema asked a token or a session of every read, and a
    generated client refused to read published incidents anonymously."""

    def get_auth(self):
        auths = super().get_auth()
        permissions = self.view.get_permissions()
        reads_are_open = any(isinstance(permission, ReadOrModelPermission) for permission in permissions)
        if self.method in SAFE_METHODS and reads_are_open and {} not in auths:
            auths.append({})
        return auths


class TrackerAutoSchema(OpenReadsAutoSchema):
    """Documents on every operation the errors it can answer, so clients (and schemathesis) know
    them: bad input, authentication, permission, hidden or unknown records, throttling (and its
    Retry-After); for writes, a body in a format it does not read and conflicts (in use, stale
    version, another write at the same moment: `tracker.write_conflicts`); failed If-Match
    preconditions where the operation reads If-Match, and 304 where it reads If-None-Match."""

    def get_override_parameters(self):
        return [*super().get_override_parameters(), THROTTLED_RETRY_AFTER]

    def _reads(self, header: OpenApiParameter) -> bool:
        return any(parameter is header for parameter in self.get_override_parameters())

    def _get_response_for_code(self, serializer, status_code, media_types=None, direction="response"):
        if not isinstance(serializer, dict):
            return super()._get_response_for_code(serializer, status_code, media_types, direction)
        # A schema written out as a dict (the GeoJSON FeatureCollection) is the whole body of its
        # media type: drf-spectacular would wrap it, on a list, in the paginated JSON envelope
        # ("results" required), which a FeatureCollection never has. Built as for any body that is
        # not a list, then given the schema as it is.
        response = super()._get_response_for_code(OpenApiTypes.OBJECT, status_code, media_types, direction)
        for media_type in response.get("content", {}).values():
            media_type["schema"] = serializer
        return response

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        errors = {
            "400": ("Malformed parameter or field; the body names it.", FIELD_ERRORS),
            "401": ("Bad or missing credentials (send `Authorization: Token …`).", DETAIL_ERROR),
            "403": ("Your role lacks the permission this needs.", DETAIL_ERROR),
            "404": ("No such record, or one you may not see.", DETAIL_ERROR),
            "429": ("Too many requests; retry after the Retry-After header's seconds.", DETAIL_ERROR),
        }
        if self.method in ("POST", "PUT", "PATCH"):
            errors["415"] = ("The body's Content-Type is none this endpoint reads (send JSON).", DETAIL_ERROR)
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            errors["409"] = (
                "In use by other records, a stale `version`, another write met at the same moment "
                "(nothing was saved: send it again), or a new source that looks like one recorded "
                "(`sources` names it; send `another_source_confirmed`).",
                DETAIL_ERROR,
            )
        if self._reads(IF_MATCH):
            errors["412"] = ("The If-Match header names a stale version.", DETAIL_ERROR)
        if self._reads(IDEMPOTENCY_KEY):
            errors["422"] = ("The Idempotency-Key was used before, with another body.", FIELD_ERRORS)
        if self._reads(IF_NONE_MATCH):
            responses.setdefault("304", {"description": "Your If-None-Match names the version you may read: no body."})
        # An error answers in the format the client asked for (JSON, or GeoJSON's media type).
        success = next((response for code, response in responses.items() if code.startswith("2")), {})
        media_types = list(success.get("content", {})) or ["application/json"]
        for code, (description, schema) in errors.items():
            if code not in responses:
                # Built as drf-spectacular builds a declared response, so it carries its headers (Retry-After).
                responses[code] = {**self._get_response_for_code(schema, code, media_types), "description": description}
        if getattr(self.view, "action", None) not in getattr(self.view, "sent_as_stored", ()):
            # DRF's content negotiation, before the view: an Accept header naming no format the
            # operation answers (`text/csv` of a JSON list), answered in JSON, its first renderer's.
            responses.setdefault(
                "406",
                {
                    **self._get_response_for_code(DETAIL_ERROR, "406", ["application/json"]),
                    "description": "Your Accept header names no format this operation answers.",
                },
            )
        if self.method == "GET":
            # tracker/statement_timeout.py: always JSON, whatever the format asked for.
            responses.setdefault(
                "503",
                {
                    "description": "An anonymous request that needs more of the database than "
                    "TRACKER_ANON_STATEMENT_TIMEOUT allows a statement; narrow it or sign in.",
                    "content": {"application/json": {"schema": STOPPED_ERROR}},
                },
            )
        return responses


GEOJSON_POSITION = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
FEATURE_COLLECTION = build_object_type(
    description="RFC 7946 FeatureCollection of one page of incidents; `next`/`previous` page like the JSON list.",
    properties={
        "type": {"type": "string", "enum": ["FeatureCollection"]},
        "features": {
            "type": "array",
            "items": build_object_type(
                properties={
                    "type": {"type": "string", "enum": ["Feature"]},
                    "id": {"type": "string", "example": "INC-000042"},
                    "geometry": {
                        "oneOf": [
                            build_object_type(
                                properties={
                                    "type": {"type": "string", "enum": ["Point"]},
                                    "coordinates": GEOJSON_POSITION,
                                },
                                required=["type", "coordinates"],
                            ),
                            build_object_type(
                                properties={
                                    "type": {"type": "string", "enum": ["MultiPoint"]},
                                    "coordinates": {"type": "array", "items": GEOJSON_POSITION},
                                },
                                required=["type", "coordinates"],
                            ),
                        ],
                        "nullable": True,
                        "description": "[longitude, latitude]; to readers who are not staff, a sensitive place, "
                        "every place inside one and a place whose coordinates are not recorded have those of the "
                        "nearest place containing them that is neither sensitive nor inside a sensitive one, and "
                        "has some.",
                    },
                    "properties": {
                        "type": "object",
                        "properties": {
                            "places": {
                                "type": "array",
                                "items": {"type": "string"},
                                "description": "The names of all the incident's places, with a point or not.",
                            },
                            "point_places": {
                                "type": "array",
                                "items": build_object_type(
                                    properties={"id": {"type": "integer"}, "name": {"type": "string"}},
                                    required=["id", "name"],
                                ),
                                "description": "The place of each point of `geometry`, in its order: its id "
                                "(`/api/v1/places/{id}/`) and name. A place shown at a containing place's "
                                "coordinates (see `geometry`) is named itself, as in the JSON's `places`.",
                            },
                        },
                        "additionalProperties": {},
                    },
                },
                required=["type", "id", "geometry", "properties"],
            ),
        },
        "next": {"type": "string", "format": "uri", "nullable": True},
        "previous": {"type": "string", "format": "uri", "nullable": True},
    },
    required=["type", "features"],
)


class IncidentPlaceFieldExtension(OpenApiSerializerFieldExtension):
    """An incident's places are read as places with country and coordinates, and written as ids or
    as read: by the `id` of such an object, its other fields read-only, any other key refused."""

    target_class = "incidents.api.serializers.IncidentPlaceField"

    def map_serializer_field(self, auto_schema, direction):
        from incidents.api.serializers import PlaceLocationSerializer

        if direction == "response":
            return auto_schema.resolve_serializer(PlaceLocationSerializer, direction).ref
        read_only = {"description": "As read; read-only, left as stored."}
        as_read = {
            "type": "object",
            "description": "The place as read: its `id` names it.",
            "properties": {
                name: build_basic_type(OpenApiTypes.INT) if name == "id" else read_only
                for name in PlaceLocationSerializer.Meta.fields
            },
            "required": ["id"],
            "additionalProperties": False,
        }
        return {"oneOf": [build_basic_type(OpenApiTypes.INT), as_read]}


class LabelledFilterExtension(DjangoFilterExtension):
    """drf-spectacular leaves out the label of a filter whose type a class decorator gives
    (`IdFilter`, `SlugFilter`, `CountryFilter`, `WholeNumberFilter`): the docs listed `type`,
    `country`, `place`, `source`, `organization`, `perpetrator` and `min_origins` without a word
    of what they take."""

    priority = 1

    def resolve_filter_field(self, auto_schema, model, filterset_class, field_name, filter_field):
        parameters = super().resolve_filter_field(auto_schema, model, filterset_class, field_name, filter_field)
        if filter_field.label:
            for parameter in parameters:
                parameter.setdefault("description", str(filter_field.label))
        return parameters
