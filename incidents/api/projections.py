"""The incident list's representation, built by PostgreSQL in the page's one query.

Serializing a page of 50 incidents through DRF meant building about 630 model instances (incidents,
places, claims, sources, involvements, organizations) and running a serializer field over each of
their values: 35-40 ms of Python on a query that takes 8-10 ms. Here each incident arrives as one
JSON text, nested collections included, so a page costs one query and one `json.loads` per row.

`IncidentSerializer` stays the contract: the names and order of the fields here are read from it
and its nested serializers, each value comes from the same visibility rules (`visible_to`,
`coordinates_for`), and tests assert that every incident reads the same in the list as in its
detail (which the serializer renders) for every kind of reader.
"""

import json
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS
from django.db.models import F, Func, JSONField, OuterRef, Subquery, TextField, Value
from django.db.models.aggregates import Aggregate
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils import timezone
from rest_framework.fields import DateTimeField

from incidents.api.serializers import (
    ClaimSerializer,
    IncidentSerializer,
    InvolvementSerializer,
    PlaceLocationSerializer,
    VictimGroupSerializer,
)
from incidents.models import Claim, Incident, IncidentPlace, IncidentType, Involvement, VictimGroup
from incidents.querysets import can_see_confidential, can_see_exact_locations, can_see_unpublished, coordinates_for

# Formatted by DRF's own field after the query (time zone and format settings apply), not in SQL.
# They are the serializer's last fields, so the JSON keeps its order when they are added.
TIMESTAMP_FIELDS = ("created_at", "updated_at")


class JSONBuildObject(Func):
    """`json_build_object(key, value, …)`. Django's `JSONObject` builds `jsonb`, which stores keys
    sorted by length: the list would not read in the serializer's field order."""

    function = "json_build_object"
    output_field = JSONField()

    def __init__(self, fields: dict):
        pairs = ((Cast(Value(name), TextField()), value) for name, value in fields.items())
        super().__init__(*(part for pair in pairs for part in pair))


class JSONAgg(Aggregate):
    """`json_agg(… ORDER BY …)`; Django ships only `JSONBAgg`, which reorders keys (see above)."""

    function = "json_agg"
    allow_order_by = True
    output_field = JSONField()


class EmptyArrayIfNull(Func):
    """A subquery's JSON array, or `[]` when it found no row (an aggregate over no row is null)."""

    template = "COALESCE(%(expressions)s, '[]'::json)"
    output_field = JSONField()


def _fields(serializer_class, values: dict) -> dict:
    """The serializer's fields in its order, each read from `values` or else from the model field
    of the same name."""
    return {name: values.get(name, F(name)) for name in serializer_class.Meta.fields}


def _collection(rows, serializer_class, values: dict, order_by: Iterable[str]) -> EmptyArrayIfNull:
    """The JSON array of `rows` belonging to the outer incident, each an object of the serializer's fields."""
    aggregated = (
        rows.filter(incident=OuterRef("pk"))
        .order_by()
        .values("incident")
        .annotate(json=JSONAgg(JSONBuildObject(_fields(serializer_class, values)), order_by=list(order_by)))
        .values("json")
    )
    return EmptyArrayIfNull(Subquery(aggregated))


def _username(user, field: str):
    if not can_see_unpublished(user):
        return Value(None, output_field=TextField())
    users = get_user_model().objects.filter(pk=OuterRef(f"{field}_id"))
    return Subquery(users.values(get_user_model().USERNAME_FIELD))


def _representation(user) -> JSONBuildObject:
    """The incident's JSON as `user` may read it, without its timestamps. Correlated subqueries
    only (no join), so that it compiles to a self-contained fragment of SQL."""
    latitude, longitude = coordinates_for(user, "place")
    places = _collection(
        IncidentPlace.objects.all(),
        PlaceLocationSerializer,
        {
            "id": F("place_id"),
            "name": F("place__name"),
            "kind": F("place__kind"),
            "country": F("place__country"),
            "latitude": latitude,
            "longitude": longitude,
        },
        order_by=["place__name", "place_id"],
    )
    involvements = _collection(
        Involvement.objects.all(),
        InvolvementSerializer,
        {"organization": F("organization_id"), "organization_name": F("organization__name")},
        order_by=["id"],
    )
    victim_groups = _collection(VictimGroup.objects.all(), VictimGroupSerializer, {}, order_by=["id"])
    claims = _collection(
        Claim.objects.disclosed_to(user),
        ClaimSerializer,
        {"source": F("source_id"), "source_title": F("source__title")},
        order_by=["id"],
    )
    fields = _fields(
        IncidentSerializer,
        {
            "incident_type": Subquery(
                IncidentType.objects.filter(pk=OuterRef("incident_type_id")).order_by().values("slug")
            ),
            **Incident.objects.claim_range(user),
            "places": places,
            "involvements": involvements,
            "victim_groups": victim_groups,
            "claims": claims,
            "created_by": _username(user, "created_by"),
            "updated_by": _username(user, "updated_by"),
        },
    )
    for name in TIMESTAMP_FIELDS:
        del fields[name]
    return JSONBuildObject(fields)


def _audience(user) -> tuple[bool, ...]:
    """Everything about `user` that the rules behind a representation depend on (querysets.py
    decides visibility through these predicates only)."""
    return can_see_unpublished(user), can_see_confidential(user), can_see_exact_locations(user)


# Building and compiling the representation's ~60 expressions took 15-20 ms of every request, twice
# the query itself; its SQL depends on nothing but the audience, so it is compiled once per audience.
_compiled_representations: dict[tuple[bool, ...], RawSQL] = {}


def _compiled_representation(user) -> RawSQL:
    audience = _audience(user)
    if audience not in _compiled_representations:
        query = Incident.objects.annotate(representation=Cast(_representation(user), TextField())).query
        sql, params = query.get_compiler(DEFAULT_DB_ALIAS).compile(query.annotations["representation"])
        # The fragment names the incident by its table, which is also the outer query's alias.
        _compiled_representations[audience] = RawSQL(sql, params, output_field=TextField())
    return _compiled_representations[audience]


def with_representations(incidents, user):
    """`incidents` (filtered, visible to `user`) as `.values()` rows carrying `representation`, the
    incident's JSON as `user` may read it, beside the columns lists are ordered by. One query."""
    return incidents.values(
        "id", "date_start", "people_count_sortable", *TIMESTAMP_FIELDS, representation=_compiled_representation(user)
    )


def representations(rows: Iterable[dict]) -> list[dict]:
    """The incidents of `with_representations` rows, as the serializer would render them."""
    # DRF's own field formats the timestamps; given the time zone, it does not look it up per value.
    timestamp = DateTimeField(default_timezone=timezone.get_current_timezone())
    incidents = []
    for row in rows:
        incident = json.loads(row["representation"])
        for name in TIMESTAMP_FIELDS:
            incident[name] = timestamp.to_representation(row[name])
        incidents.append(incident)
    return incidents
