"""The incident list's representation, built by PostgreSQL in the page's one query.

Serializing a page of 50 incidents through DRF meant building about 630 model instances (incidents,
places, claims, sources, involvements, organizations) and running a serializer field over each of
their values: 35-40 ms of Python on a query that takes 8-10 ms. Here each incident arrives as one
JSON text, nested collections included, so a page costs one query.

`IncidentSerializer` stays the contract: the names and order of the fields here are read from it
and its nested serializers, each value comes from the same visibility rules (`visible_to`,
`coordinates_for`), and tests assert that every incident reads the same in the list as in its
detail (which the serializer renders) for every kind of reader.

The texts are not even decoded: each row is handed to the renderer as an `orjson.Fragment`, which
writes it into the response as it is.
"""

from collections.abc import Iterable

import orjson
from django.contrib.auth import get_user_model
from django.contrib.postgres.aggregates import ArrayAgg
from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import Count, F, Func, JSONField, OuterRef, Subquery, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Coalesce

from incidents.access import shown_incident_columns
from incidents.api.serializers import (
    ClaimSerializer,
    IncidentSerializer,
    InvolvementSerializer,
    PlaceLocationSerializer,
    VictimGroupSerializer,
)
from incidents.models import Claim, Incident, IncidentPlace, IncidentType, Involvement, VictimGroup
from incidents.querysets import (
    JSONBuildObject,
    audience_name,
    can_see_confidential,
    can_see_exact_locations,
    can_see_unpublished,
    claim_origin,
    claim_people_span,
    compiled_fragment,
    coordinates_for,
    corroboration_object,
    version_fields,
)


class ISOTimestamp(Func):
    """A timestamp as DRF's `DateTimeField` writes it in the API's time zone, UTC (`settings.TIME_ZONE`):
    `2024-05-01T08:30:00.250000Z`, without the fraction on a whole second, as Python's `isoformat()`."""

    template = (
        "to_char(%(expressions)s AT TIME ZONE 'UTC', CASE WHEN date_trunc('second', %(expressions)s) = %(expressions)s "
        """THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)"""
    )
    arity = 1
    output_field = TextField()


class ArrayToJSON(Func):
    """`array_to_json(ARRAY(subquery))`: a JSON array of the subquery's rows, `[]` when it found
    none. Unlike `json_agg` over a subquery grouped by incident, it needs neither GROUP BY nor
    COALESCE: PostgreSQL plans and runs the list's four collections about 0.1-0.2 ms faster, of a
    4-6 ms query (`EXPLAIN ANALYZE` with bench_api.py's filters), and Django's own `ArraySubquery`
    replaces two hand-written expressions."""

    function = "array_to_json"
    output_field = JSONField()


def _fields(serializer_class, values: dict, column=F) -> dict:
    """The serializer's fields in its order, each read from `values` or else from the model field
    of the same name (`column(name)`)."""
    return {name: values.get(name, column(name)) for name in serializer_class.Meta.fields}


def _collection(rows, serializer_class, values: dict, order_by: Iterable[str]) -> ArrayToJSON:
    """The JSON array of `rows` belonging to the incident, each an object of the serializer's fields."""
    objects = (
        rows.filter(incident=_incident("pk"))
        .order_by(*order_by)
        .values(json=JSONBuildObject(_fields(serializer_class, values)))
    )
    return ArrayToJSON(ArraySubquery(objects))


def _incident(column: str) -> OuterRef:
    """A column of the incident, from a subquery inside the aggregate of its claims (`_representation`)."""
    return OuterRef(OuterRef(column))


def _username(user, field: str):
    if not can_see_unpublished(user):
        return Value(None, output_field=TextField())
    users = get_user_model().objects.filter(pk=_incident(f"{field}_id"))
    return Subquery(users.values(get_user_model().USERNAME_FIELD))


def _representation(user) -> Subquery:
    """The incident's JSON as `user` may read it: one aggregate over the claims `user` may see of the
    incident, which gives its claims, their span and their corroboration in one pass over them (a
    subquery each read them four times: 2.2 ms of PostgreSQL's CPU for a page of 200 incidents), and
    always one row, claims or none. The incident's own columns and its other collections are read
    from the outer row. Correlated subqueries only (no join), so that it compiles to a
    self-contained fragment of SQL."""
    latitude, longitude = coordinates_for(user, "place")
    told = version_fields(user).of(Incident)
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
    claims = ArrayAgg(
        JSONBuildObject(_fields(ClaimSerializer, {"source": F("source_id"), "source_title": F("source__title")})),
        order_by=["id"],
    )
    fields = _fields(
        IncidentSerializer,
        {
            "incident_type": Subquery(
                IncidentType.objects.filter(pk=_incident("incident_type_id")).order_by().values("slug")
            ),
            **claim_people_span(),
            "corroboration": corroboration_object(
                Count(claim_origin(user), distinct=True), Count("source_id", distinct=True)
            ),
            "places": places,
            "involvements": involvements,
            "victim_groups": victim_groups,
            # `[]` without claims, as `array_to_json(ARRAY(…))` writes an empty collection.
            "claims": Coalesce(ArrayToJSON(claims), RawSQL("'[]'::json", ())),
            "merged_into": Subquery(
                Incident.objects.filter(pk=_incident("merged_into_id")).order_by().values("public_id")
            ),
            "created_by": _username(user, "created_by"),
            "updated_by": _username(user, told.updated_by),
            "version": OuterRef(told.version),
            "version_audience": Value(audience_name(user), output_field=TextField()),
            "created_at": ISOTimestamp(OuterRef(told.created_at)),
            "updated_at": ISOTimestamp(OuterRef(told.updated_at)),
        },
        column=OuterRef,
    )
    aggregate = (
        Claim.objects.disclosed_to(user).filter(incident=OuterRef("pk")).order_by().values(json=JSONBuildObject(fields))
    )
    # No GROUP BY: an aggregate over the incident's claims, one row even when it has none (MIN gives
    # null, COUNT 0, as the subqueries did), where Django would group by every column of a claim.
    aggregate.query.group_by = None
    return Subquery(aggregate, output_field=JSONField())


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
        _compiled_representations[audience] = compiled_fragment(
            Incident, Cast(_representation(user), TextField()), TextField()
        )
    return _compiled_representations[audience]


def with_representations(incidents, user, *positions: str):
    """`incidents` (filtered, visible to `user`) as `.values()` rows carrying `representation`, the
    incident's JSON as `user` may read it, beside `positions`, the columns a page's cursor is read
    from, and, for a reader with confidential access, which confidential records the row shows
    (`incidents.access.shown_incident_columns`). One query."""
    return incidents.values(*positions, **shown_incident_columns(user), representation=_compiled_representation(user))


def representations(rows: Iterable[dict], *, decoded: bool = False) -> list[orjson.Fragment] | list[dict]:
    """The incidents of `with_representations` rows: JSON texts for the renderer to write as they
    are, or `decoded` for a renderer that reads them (GeoJSON)."""
    if decoded:
        return [orjson.loads(row["representation"]) for row in rows]
    return [orjson.Fragment(row["representation"]) for row in rows]
