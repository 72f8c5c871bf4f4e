"""Representations of the domain for the API, and the translation of writes into services calls.

Serializers hold no rule of their own: what a reader sees was decided by the view's `visible_to`
querysets, and writes are validated by the models' `full_clean()` (other resources) or by
`incident_create`/`incident_update` (incidents), whose errors are translated into 400s.
"""

import copy
from collections.abc import Mapping
from functools import cached_property

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.utils.datastructures import MultiValueDict
from django_countries.serializer_fields import CountryField
from django_countries.serializers import CountryFieldMixin
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.relations import MANY_RELATION_KWARGS, ManyRelatedField
from rest_framework.reverse import reverse

from incidents import services
from incidents.api.errors import validation_error_from_django
from incidents.models import (
    BOTH_COORDINATES_MESSAGE,
    Claim,
    Incident,
    IncidentRevision,
    IncidentType,
    Involvement,
    Organization,
    Place,
    Release,
    ReleaseFile,
    ReleaseZip,
    Response,
    Source,
    VictimGroup,
)
from incidents.numbers import COUNT_MODEL_FIELDS, GROUPED_DIGITS, is_whole_number, whole_number_refused
from incidents.querysets import (
    AUDIENCE_NAMES,
    AUDIENCES_BY_NAME,
    STAFF_ONLY_FIELDS,
    VERSIONS_TOLD_TO,
    VersionFields,
    audience_name,
    can_see_exact_locations,
    can_see_unpublished,
    created_at_seen_by,
    updated_at_seen_by,
    updated_by_seen_by,
    version_fields,
    version_seen_by,
)
from incidents.releases import ZIP_MEDIA_TYPE, release_zip_name
from tracker.formats import date_refused, written_as_a_date


def _request_user(serializer):
    request = serializer.context.get("request")
    return request.user if request is not None else None


class VersionAudienceField(serializers.ChoiceField):
    """Whose version a write's `version` is: the audience its writer read it as, which the
    representation names beside it (`version_audience`, as a CSV export does). A write is compared
    with that audience's version (`querysets.EditedVersion`), so that one whose access changed since
    they read is compared with what they read. Its value is that audience's `VersionFields`."""

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "help_text",
            "Whose version `version` is: the readers it was read by, as the record gave it. On writes, "
            "send it back with `version` (else your own now is assumed); 409 if you read it with access "
            "you no longer have.",
        )
        super().__init__(choices=list(AUDIENCE_NAMES.values()), required=False, **kwargs)

    def get_attribute(self, instance):
        # Whose version the record's `version` is: its reader's, whatever the record.
        return audience_name(_request_user(self.parent))

    def to_internal_value(self, data):
        return VERSIONS_TOLD_TO[AUDIENCES_BY_NAME[super().to_internal_value(data)]]


class DateAsWrittenField(serializers.DateField):
    """A date refused in the admin's words (`tracker.formats.date_refused`): how to write one, or why
    a date so written is no day, where DRF said "Date has wrong format. Use one of these formats
    instead: YYYY-MM-DD." of "2023-02-30", written in that format."""

    def to_internal_value(self, value):
        if isinstance(value, str):
            # Spaces around it, as the other doors and the counts read them.
            value = value.strip()
            if not written_as_a_date(value):
                raise serializers.ValidationError(date_refused(value), code="invalid")
        try:
            return super().to_internal_value(value)
        except serializers.ValidationError as error:
            if error.get_codes() != ["invalid"]:
                raise
            raise serializers.ValidationError(date_refused(value), code="invalid") from None


class WholeNumberSerializerField(serializers.IntegerField):
    """A count, a JSON number or a text in the digits 0-9 alone: DRF's field read "1.000" (a
    thousand, where a dot groups digits) as 1, taking the dot for a decimal point, and full-width
    digits, which the import refuses."""

    def to_internal_value(self, data):
        written = data.strip() if isinstance(data, str) else None
        if written and GROUPED_DIGITS.fullmatch(written):
            raise serializers.ValidationError(whole_number_refused(written), code="invalid")
        value = super().to_internal_value(data)
        # What DRF reads, it reads as meant only when written in the digits 0-9 alone.
        if written is not None and not is_whole_number(written):
            raise serializers.ValidationError(whole_number_refused(written), code="invalid")
        return value


# Every model serializer's date fields are DateAsWrittenField, and its counts WholeNumberSerializerField
# (`serializer_field_mapping` below).
FIELDS_WITH_DATES_AS_WRITTEN = {
    **serializers.ModelSerializer.serializer_field_mapping,
    models.DateField: DateAsWrittenField,
    **dict.fromkeys(COUNT_MODEL_FIELDS, WholeNumberSerializerField),
}


# A source's, a response's and an incident's `created_at`, told per audience (`created_at_seen_by`).
CREATED_AT_TOLD = {
    "help_text": "When you could first see it: for a record hidden from you when it was recorded (confidential, "
    "a draft), the change that showed it to you; it does not move after."
}

# What the browsable API's HTML forms post beside a record's fields: the CSRF token.
_FORM_KEYS = frozenset({"csrfmiddlewaretoken"})


# The fields that read every value a form gives their key (DRF's `getlist`): a list of records by
# key, a list of strings, several choices.
_FIELDS_READING_EVERY_VALUE = (ManyRelatedField, serializers.ListField, serializers.MultipleChoiceField)


class OneValuePerKey(serializers.Serializer):
    """A form body (`application/x-www-form-urlencoded`, `multipart/form-data`) giving a key twice
    is refused, naming it, where its field reads one value: DRF kept the last, whatever the sender
    meant, as Python's JSON parser did with an object naming a key twice (which
    `parsers.FiniteJSONParser` refuses). A field holding a list reads each value, as sent."""

    def to_internal_value(self, data):
        if isinstance(data, MultiValueDict):
            repeated = sorted(
                name
                for name, values in data.lists()
                if len(values) > 1
                and name in self.fields
                and not isinstance(self.fields[name], _FIELDS_READING_EVERY_VALUE)
            )
            if repeated:
                raise serializers.ValidationError(
                    {name: ["Named twice in one form; name it once."] for name in repeated}
                )
        return super().to_internal_value(data)


class KeyField(serializers.PrimaryKeyRelatedField):
    """A record by its id, which is a whole number: DRF hands `3.5` to the lookup, which Django
    reads as 3, so `"places": [3.5]` put the incident at place 3, answered 200. Refused as DRF
    refuses any other value that is not a key."""

    def to_internal_value(self, data):
        if isinstance(data, float) and not data.is_integer():
            self.fail("incorrect_type", data_type=type(data).__name__)
        return super().to_internal_value(data)


class UnknownFieldsRefused(OneValuePerKey):
    """A write naming a field the record does not have is refused, naming it: DRF leaves such keys
    out, so `"peopel_count": 90` answered 200 with nothing changed, and the writer took it as
    saved. Every field the record is read with may be sent back (read-only ones are left alone):
    a client writes what it read."""

    # The relations a model serializer makes of its foreign keys (an involvement's organization).
    serializer_related_field = KeyField

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields) - _FORM_KEYS)
            if unknown:
                known = ", ".join(name for name, field in self.fields.items() if not field.read_only)
                raise serializers.ValidationError(
                    {name: [f"No such field. The fields a write may give: {known}."] for name in unknown}
                )
        return super().to_internal_value(data)


class ModelRulesMixin(UnknownFieldsRefused):
    """Run the model's own validation (`full_clean()`: field rules, `clean()`, database
    constraints) on the would-be object, so the API refuses exactly what the admin refuses, and
    write through `services.record_save`, which holds the rules of who may write what and refuses
    a change made from a version saved over since (the view passes `expected_version`)."""

    serializer_field_mapping = FIELDS_WITH_DATES_AS_WRITTEN

    version = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="On writes: the version you edited (or send If-Match); 409 if stale, 400 if it never was one.",
    )
    version_audience = VersionAudienceField()

    def create(self, validated_data):
        return self._save(self.Meta.model(), validated_data)

    @cached_property
    def versions_told(self) -> VersionFields:
        """The versions the reader is told (`version_fields`): once for a list, whose records share
        this serializer."""
        return version_fields(_request_user(self))

    def to_representation(self, record):
        representation = super().to_representation(record)
        # As the reader is told them, as the ETag and the version a write is checked against: a
        # source's or a response's move for readers without Confidential access only with a change
        # they can see.
        representation["version"] = version_seen_by(record, None, self.versions_told)
        representation["updated_at"] = self.fields["updated_at"].to_representation(
            updated_at_seen_by(record, None, self.versions_told)
        )
        # When the reader first saw it: a source recorded in confidence and made public since was
        # not there for them before.
        representation["created_at"] = self.fields["created_at"].to_representation(
            created_at_seen_by(record, None, self.versions_told)
        )
        return representation

    def update(self, instance, validated_data):
        return self._save(
            instance,
            validated_data,
            expected_version=validated_data.pop("expected_version"),
            told=validated_data.pop("told"),
        )

    def save_options(self, validated_data) -> dict:
        """What the body adds to `services.record_save`'s arguments, taken out of `validated_data`
        (a source's `another_source_confirmed`); nothing here."""
        return {}

    def _save(self, record, validated_data, expected_version=None, told=None):
        validated_data.pop("version", None)
        validated_data.pop("version_audience", None)
        options = self.save_options(validated_data)
        many_to_many = {
            field.name: validated_data.pop(field.name)
            for field in record._meta.many_to_many
            if field.name in validated_data
        }
        return services.record_save(
            user=_request_user(self),
            record=record,
            data=validated_data,
            many_to_many=many_to_many,
            expected_version=expected_version,
            told=told,
            **options,
        )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        model = self.Meta.model
        many_to_many = {field.name for field in model._meta.many_to_many}
        candidate = copy.copy(self.instance) if self.instance is not None else model()
        sent = {
            name: value
            for name, value in attrs.items()
            if name not in many_to_many and name not in ("version", "version_audience")
        }
        if self.instance is not None:
            sent = services.texts_as_read(candidate, sent)
        for name, value in sent.items():
            setattr(candidate, name, value)
        try:
            candidate.full_clean(validate_unique=False)
        except DjangoValidationError as error:
            raise validation_error_from_django(error) from None
        return attrs


# How many items one write may give a list of records (an incident's places, claims, victim groups
# and involvements; a response's incidents): each item is looked up and checked on its own, a few
# queries each, so a 2.5 MB body of 30,000 claims held a worker for minutes before its answer. Far
# more than a report names; refused naming the list before any item is read.
NESTED_ITEMS_MAX = 500


def refuse_too_many(items) -> None:
    """A ValidationError, naming the list's field, for a list longer than NESTED_ITEMS_MAX."""
    if isinstance(items, list) and len(items) > NESTED_ITEMS_MAX:
        message = serializers.ListSerializer.default_error_messages["max_length"]
        raise serializers.ValidationError([message.format(max_length=NESTED_ITEMS_MAX)], code="max_length")


class BoundedManyRelatedField(ManyRelatedField):
    """A list of records by key, refused before any of its items is looked up when too long."""

    def to_internal_value(self, data):
        refuse_too_many(data)
        return super().to_internal_value(data)


class BoundedListSerializer(serializers.ListSerializer):
    """A list of nested rows, refused before any of its rows is checked when too long. Not DRF's
    own `max_length`, whose error is a dict: the API's errors would name `claims.non_field_errors`."""

    def to_internal_value(self, data):
        refuse_too_many(data)
        return super().to_internal_value(data)


class BoundedManyMixin:
    """A relation whose `many=True` is a BoundedManyRelatedField (DRF's documented way: `many_init`)."""

    @classmethod
    def many_init(cls, *args, **kwargs):
        list_kwargs = {key: value for key, value in kwargs.items() if key in MANY_RELATION_KWARGS}
        return BoundedManyRelatedField(child_relation=cls(*args, **kwargs), **list_kwargs)


class VisibleSourceField(KeyField):
    """A source by id, among those the requesting user may see: a hidden id is "does not exist"."""

    def get_queryset(self):
        return Source.objects.visible_to(_request_user(self))


class SlugField(serializers.SlugRelatedField):
    """A record by a text key. A key holding a NUL character names no record (PostgreSQL text
    cannot hold one) and is answered as one that does not exist, instead of the database's error
    (a 500) that looking it up would raise."""

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data.replace("\x00", "\\x00"))
        return super().to_internal_value(data)


class VisibleIncidentField(BoundedManyMixin, SlugField):
    """An incident by public_id, among those the requesting user may see."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="public_id", **kwargs)

    def get_queryset(self):
        return Incident.objects.visible_to(_request_user(self))


COARSENED_COORDINATES_MESSAGE = (
    "This place lies inside a sensitive one: you are shown the coordinates of a place containing it "
    "({shown}), and only staff may change its own. Send those, or leave both out."
)


def shown_coordinates(place: Place) -> tuple[float | None, float | None]:
    """The location the reader may see, as annotated by `Place.objects.with_coordinates_for(user)`."""
    if place.shown_latitude is None:
        return None, None
    return float(place.shown_latitude), float(place.shown_longitude)


class PlaceLocationSerializer(CountryFieldMixin, serializers.ModelSerializer):
    """A place as incidents and maps show it, with (possibly coarsened) coordinates. Read-only but
    for its `id`, as an incident's write reads it (`IncidentPlaceField`): the schema said the
    reverse, so a client that sent back what it read less the read-only fields sent places
    without ids, refused ("this one has no id")."""

    id = serializers.IntegerField(help_text="The place (`/api/v1/places/{id}/`): what a write of the incident names.")
    # Declared, not in `read_only_fields`, which drops `allow_blank`: a place in no country reads "".
    country = CountryField(
        read_only=True, allow_blank=True, help_text="ISO 3166-1 alpha-2; blank for a place in no country."
    )
    latitude = serializers.FloatField(read_only=True, allow_null=True)
    longitude = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Place
        fields = ["id", "name", "kind", "country", "latitude", "longitude"]
        read_only_fields = ["name", "kind"]

    def to_representation(self, place):
        representation = super().to_representation(place)
        representation["latitude"], representation["longitude"] = shown_coordinates(place)
        return representation


class PlaceSerializer(ModelRulesMixin, CountryFieldMixin, serializers.ModelSerializer):
    latitude = serializers.DecimalField(
        max_digits=9, decimal_places=6, allow_null=True, required=False, coerce_to_string=False
    )
    longitude = serializers.DecimalField(
        max_digits=9, decimal_places=6, allow_null=True, required=False, coerce_to_string=False
    )
    # Read by the place's rule (`Place.clean`), as the admin's "In no country" box is.
    in_no_country = serializers.BooleanField(
        write_only=True,
        required=False,
        help_text="true for a place that lies in no country (a sea), kept without parent or country; a place "
        "with neither is refused without it, unless it was saved so before and this is left out.",
    )

    class Meta:
        model = Place
        fields = [
            "id",
            "name",
            "alternate_names",
            "kind",
            "parent",
            "country",
            "country_inherited",
            "in_no_country",
            "latitude",
            "longitude",
            "sensitive",
            "version",
            "version_audience",
            "created_at",
            "updated_at",
        ]

    def validate(self, attrs):
        place = self.instance
        # A writer not shown exact coordinates (`can_see_exact_locations`), of a place that has any.
        writer_shown_coarsened = place is not None and not can_see_exact_locations(_request_user(self))
        given = {"latitude", "longitude"} & attrs.keys()
        if writer_shown_coarsened and place.within_sensitive and len(given) == 1:
            # One coordinate, completed by the stored other, was accepted where the place has exact
            # coordinates and refused where it has none: the answer told a writer shown coarsened
            # ones which it is. Both, or neither, whatever is stored.
            (missing,) = {"latitude", "longitude"} - given
            raise serializers.ValidationError({missing: [BOTH_COORDINATES_MESSAGE]})
        # A writer who sees a sensitive place's coarsened position and sends that very position back
        # (a PUT of what they read) has not moved the place: keep the exact coordinates they were
        # never shown, rather than overwrite them with the parent's, or erase them where no place
        # containing it has coordinates to show (null, null).
        sent = tuple(
            None if value is None else float(value) for value in (attrs.get("latitude"), attrs.get("longitude"))
        )
        if writer_shown_coarsened and len(given) == 2 and sent == shown_coordinates(place):
            del attrs["latitude"], attrs["longitude"]
        elif writer_shown_coarsened and place.within_sensitive and given:
            # Any other position would overwrite exact coordinates they were never shown. Among
            # those, a PUT of what they read before staff moved the place shown in its stead, which
            # moves neither this place's version nor its ETag: the exact ones were overwritten with
            # that place's old ones (or erased), answered 200. Whether exact ones are stored is not told.
            shown = ", ".join("null" if value is None else str(value) for value in shown_coordinates(place))
            raise serializers.ValidationError({"latitude": [COARSENED_COORDINATES_MESSAGE.format(shown=shown)]})
        return super().validate(attrs)

    def to_representation(self, place):
        representation = super().to_representation(place)
        representation["latitude"], representation["longitude"] = shown_coordinates(place)
        return representation


class IncidentTypeSerializer(ModelRulesMixin, serializers.ModelSerializer):
    parent = SlugField(slug_field="slug", queryset=IncidentType.objects.all(), allow_null=True, required=False)

    class Meta:
        model = IncidentType
        fields = [
            "id",
            "slug",
            "name",
            "parent",
            "description",
            "version",
            "version_audience",
            "created_at",
            "updated_at",
        ]


class OrganizationSerializer(ModelRulesMixin, CountryFieldMixin, serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = [
            "id",
            "name",
            "acronym",
            "kind",
            "country",
            "website",
            "description",
            "aliases",
            "version",
            "version_audience",
            "created_at",
            "updated_at",
        ]


class SourceSerializer(ModelRulesMixin, serializers.ModelSerializer):
    cites = VisibleSourceField(allow_null=True, required=False)
    another_source_confirmed = serializers.BooleanField(
        write_only=True,
        required=False,
        default=False,
        help_text="On adding: true records the source even though it looks like one already recorded (same "
        "address, or same title and publisher), which is otherwise refused with 409 naming that source's id.",
    )
    notes = serializers.CharField(
        allow_blank=True,
        allow_null=True,
        required=False,
        help_text="Internal notes; null for readers who are not staff. On writes, null leaves them as they are; "
        "writers who are not staff may send only null or an empty string, which also leaves them.",
    )

    class Meta:
        model = Source
        fields = [
            "id",
            "title",
            "kind",
            "url",
            "publisher",
            "author",
            "published_on",
            "language",
            "archive_url",
            "cites",
            "confidential",
            "notes",
            "another_source_confirmed",
            "version",
            "version_audience",
            "created_at",
            "updated_at",
        ]
        # A language tag longer than the column ("zh-Hant-TW-x-…") is read as its language (the
        # model's validation, `incidents.languages`); the column's length said nothing of that.
        extra_kwargs = {"language": {"max_length": None}, "created_at": CREATED_AT_TOLD}

    def save_options(self, validated_data) -> dict:
        confirmed = validated_data.pop("another_source_confirmed", False)
        return {"another_source_confirmed": confirmed} if self.instance is None else {}

    def to_representation(self, source):
        representation = super().to_representation(source)
        # The view annotates the cited source's id only when the reader may see that source, so a
        # public article never reveals that it relays a confidential testimony.
        if hasattr(source, "visible_cites_id"):
            representation["cites"] = source.visible_cites_id
        if not can_see_unpublished(_request_user(self)):
            representation.update(dict.fromkeys(STAFF_ONLY_FIELDS["source"]))
        return representation


class ResponseSerializer(ModelRulesMixin, serializers.ModelSerializer):
    incidents = VisibleIncidentField(many=True, required=False)
    source = VisibleSourceField(allow_null=True, required=False)

    class Meta:
        model = Response
        fields = [
            "id",
            "organization",
            "kind",
            "date",
            "description",
            "incidents",
            "source",
            "version",
            "version_audience",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {"created_at": CREATED_AT_TOLD}

    def to_representation(self, response):
        representation = super().to_representation(response)
        if hasattr(response, "visible_source_id"):
            representation["source"] = response.visible_source_id
        return representation


class NestedRowSerializer(UnknownFieldsRefused, serializers.ModelSerializer):
    """An incident's nested row. A PATCH is partial for its rows too (DRF passes `partial` down), which
    suits a row with an id (the fields it leaves out keep their stored values), but a row without
    one is a new row: it needs every field a POST needs, refused here as a POST refuses it
    (`claims[0].source: This field is required.`) rather than reaching the services half-built."""

    serializer_field_mapping = FIELDS_WITH_DATES_AS_WRITTEN

    class Meta:
        list_serializer_class = BoundedListSerializer

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if getattr(self.root, "partial", False) and not attrs.get("id"):
            missing = {
                name: [field.error_messages["required"]]
                for name, field in self.fields.items()
                if field.required and not field.read_only and field.source not in attrs
            }
            if missing:
                raise serializers.ValidationError(missing)
        return attrs


class ClaimSerializer(NestedRowSerializer):
    id = serializers.IntegerField(required=False, help_text="Give it to update an existing claim; omit to add one.")
    source = VisibleSourceField()
    source_title = serializers.CharField(source="source.title", read_only=True)

    class Meta(NestedRowSerializer.Meta):
        model = Claim
        fields = [
            "id",
            "source",
            "source_title",
            "people_count",
            "people_count_min",
            "people_count_max",
            "count_qualifier",
            "date_start",
            "date_end",
            "date_precision",
            "date_label",
            "excerpt",
            "locator",
            "source_connection",
            "confidential",
            "merge_conflict",
        ]


class VictimGroupSerializer(CountryFieldMixin, NestedRowSerializer):
    id = serializers.IntegerField(required=False, help_text="Give it to update an existing group; omit to add one.")

    class Meta(NestedRowSerializer.Meta):
        model = VictimGroup
        fields = ["id", "count", "sex", "age_group", "nationality", "description"]


class InvolvementSerializer(NestedRowSerializer):
    id = serializers.IntegerField(required=False, help_text="Give it to update an existing row; omit to add one.")
    organization_name = serializers.CharField(source="organization.name", read_only=True)

    class Meta(NestedRowSerializer.Meta):
        model = Involvement
        fields = ["id", "organization", "organization_name", "role"]


class IncidentPlaceField(BoundedManyMixin, KeyField):
    """Reads as the place with its country and (possibly coarsened) coordinates; writes by id, or as
    read: an incident a client read is written back as it was read (`UnknownFieldsRefused`), where
    its places, read as objects, were refused whole ("Incorrect type. Expected pk value, received
    dict.")."""

    default_error_messages = {
        "not_a_place": 'A place is written by its id: 3, or as read, {{"id": 3, …}}; {problem}.',
    }

    def use_pk_only_optimization(self):
        return False

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            # Only the id names the place; the fields read beside it (its name, its coordinates as
            # this reader was shown them) are read-only, left as stored. A key a place is never read
            # with is refused, as an unknown field of a record is, rather than taken as written.
            unknown = sorted(set(data) - set(self.location_serializer.fields))
            if unknown:
                self.fail("not_a_place", problem=f"no place is read with {', '.join(unknown)}")
            if "id" not in data:
                self.fail("not_a_place", problem="this one has no id")
            data = data["id"]
        return super().to_internal_value(data)

    @cached_property
    def location_serializer(self):
        # One serializer for every place of the page: building its fields (a country list of 250
        # choices) once per place cost more than the queries.
        return PlaceLocationSerializer(context=self.context)

    def to_representation(self, place):
        return self.location_serializer.to_representation(place)

    def get_choices(self, cutoff=None):
        # The browsable API's form offers places by id, what a write sends, and by name; their read
        # representation needs the coordinates annotated for the reader, which choices lack.
        queryset = self.get_queryset()
        if cutoff is not None:
            queryset = queryset[:cutoff]
        return {place.pk: self.display_value(place) for place in queryset}


class CorroborationSerializer(serializers.Serializer):
    """How many independent origins the claims you may see come down to (`IncidentQuerySet.corroboration`)."""

    independent_origins = serializers.IntegerField(
        help_text="Origins at the end of the claims' sources' `cites` chains (as far as you may see them); "
        "sources relaying one origin count once."
    )
    sources = serializers.IntegerField(help_text="Distinct sources of the claims you may see.")
    suggested_verification = serializers.ChoiceField(
        choices=["alleged", "corroborated"],
        help_text="What the origins suggest; `verification` stays the Reviewer's decision.",
    )


class IncidentSerializer(UnknownFieldsRefused, serializers.ModelSerializer):
    serializer_field_mapping = FIELDS_WITH_DATES_AS_WRITTEN
    incident_type = SlugField(slug_field="slug", queryset=IncidentType.objects.all())
    places = IncidentPlaceField(many=True, queryset=Place.objects.all(), required=False)
    claims = ClaimSerializer(many=True, required=False)
    victim_groups = VictimGroupSerializer(many=True, required=False)
    involvements = InvolvementSerializer(many=True, required=False)
    claim_people_min = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Lowest figure among the claims you may see."
    )
    claim_people_max = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Highest figure among the claims you may see."
    )
    corroboration = CorroborationSerializer(read_only=True)
    version = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="On writes: the version you edited (or send If-Match); 409 if stale, 400 if it never was one.",
    )
    version_audience = VersionAudienceField()
    created_by = serializers.SerializerMethodField()
    updated_by = serializers.SerializerMethodField()
    merged_into = serializers.CharField(
        source="merged_into.public_id",
        read_only=True,
        allow_null=True,
        default=None,
        help_text="Null, unless this incident was merged into another (the public id it now lives on as); "
        "an incremental sync (`updated_since`) reports merged incidents so that copies can follow.",
    )

    class Meta:
        model = Incident
        fields = [
            "public_id",
            "title",
            "incident_type",
            "description",
            "date_start",
            "date_end",
            "date_precision",
            "date_label",
            "people_count",
            "people_count_min",
            "people_count_max",
            "count_qualifier",
            "claim_people_min",
            "claim_people_max",
            "places",
            "involvements",
            "victim_groups",
            "claims",
            "verification",
            "corroboration",
            "review_state",
            "confidential",
            "merged_into",
            "version",
            "version_audience",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["public_id", "date_label", "created_at", "updated_at"]
        extra_kwargs = {"created_at": CREATED_AT_TOLD}

    NESTED = ("places", "claims", "victim_groups", "involvements")

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="Username; null unless you are staff."))
    def get_created_by(self, incident):
        return self._username(incident.created_by)

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="Username; null unless you are staff."))
    def get_updated_by(self, incident):
        return self._username(updated_by_seen_by(incident, _request_user(self)))

    def _username(self, user):
        if user is None or not can_see_unpublished(_request_user(self)):
            return None
        return user.get_username()

    def _split(self, validated_data):
        """Scalar fields for the incident, and the nested collections the service writes (None: unchanged)."""
        nested = {name: validated_data.pop(name, None) for name in self.NESTED}
        validated_data.pop("version", None)
        validated_data.pop("version_audience", None)
        return validated_data, nested

    def create(self, validated_data):
        user = _request_user(self)
        submission = validated_data.pop("submission", None)
        data, nested = self._split(validated_data)
        try:
            return services.incident_create(
                user=user, data=data, submission=submission, **{name: value or () for name, value in nested.items()}
            )
        except DjangoValidationError as error:
            raise validation_error_from_django(error) from None

    def update(self, incident, validated_data):
        user = _request_user(self)
        expected_version, told = validated_data.pop("expected_version"), validated_data.pop("told")
        data, nested = self._split(validated_data)
        try:
            return services.incident_update(
                incident=incident, user=user, expected_version=expected_version, told=told, data=data, **nested
            )
        except DjangoValidationError as error:
            raise validation_error_from_django(error) from None


class IncidentWithdrawalSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id", help_text="The incident's public id: drop it from your copy.")
    withdrawn_at = serializers.DateTimeField(help_text="When it left what you may see.")


class RecordWithdrawalSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="record_id", help_text="The record's id: drop it from your copy.")
    withdrawn_at = serializers.DateTimeField(help_text="When it left what you may see.")


class ActingUserField(serializers.SlugRelatedField):
    """Who proposed, decided, merged or undid something, by username: null before anyone did, and
    after their account was deleted (SET_NULL). The schema said a string always, so a generated
    client failed on every pending revision or pair."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "Username; null before anyone did it, or once the account was deleted.")
        super().__init__(slug_field="username", read_only=True, allow_null=True, **kwargs)


class RevisionChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    now = serializers.CharField()
    proposed = serializers.CharField()


class RevisionSerializer(serializers.ModelSerializer):
    """A proposed change to a published incident, waiting for (or decided by) a Reviewer."""

    incident = serializers.SlugRelatedField(slug_field="public_id", read_only=True)
    proposed_by = ActingUserField(
        help_text="Username; null once the account was deleted, and, with `created_at`, for readers without "
        "Confidential access when a merge decided in confidence proposed it."
    )
    decided_by = ActingUserField()
    # Null with `proposed_by` where the proposal is withheld (`to_representation`): the schema said
    # a time always, and a generated client failed on the revision a merge decided in confidence made.
    created_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When it was proposed; null, with `proposed_by`, for readers without Confidential access "
        "when a merge decided in confidence proposed it.",
    )
    changes = serializers.SerializerMethodField(
        help_text="What it proposes, in the shape of an incident's write; without the claims of a source, "
        "or changing a claim, you may not see, nor those sent back in place of such a claim."
    )
    diff = serializers.SerializerMethodField(help_text="What accepting it would change, against the incident now.")

    class Meta:
        model = IncidentRevision
        fields = [
            "id",
            "incident",
            "base_version",
            "state",
            "proposed_by",
            "created_at",
            "changes",
            "diff",
            "decided_by",
            "decided_at",
            "decision_note",
        ]
        read_only_fields = fields

    def to_representation(self, revision):
        representation = super().to_representation(revision)
        user = _request_user(self)
        # Written, or rejected, by a merge or undo decided in confidence (`IncidentRevisionQuerySet.visible_to`).
        if revision.proposal_withheld_from(user):
            representation.update(proposed_by=None, created_at=None)
        if revision.decision_withheld_from(user):
            representation.update(decided_by=None, decided_at=None)
        return representation

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_changes(self, revision):
        return self._reading(revision).changes

    @extend_schema_field(RevisionChangeSerializer(many=True))
    def get_diff(self, revision):
        rows = self._reading(revision).differences
        return [{"field": field, "now": now, "proposed": proposed} for field, now, proposed in rows]

    def _reading(self, revision) -> services.RevisionReading:
        # A page's revisions are read together by the view (`readings`); an answer to a decision
        # reads its one revision here, once for both fields.
        readings = self.context.setdefault("readings", {})
        if revision.pk not in readings:
            readings[revision.pk] = services.revision_read(revision, _request_user(self))
        return readings[revision.pk]


class RevisionDecisionSerializer(UnknownFieldsRefused):
    note = serializers.CharField(required=False, allow_blank=True, default="", help_text="Why, for the history.")


class ReleaseFileSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Where to download it.")

    class Meta:
        model = ReleaseFile
        fields = ["name", "media_type", "size", "sha256", "url"]

    def get_url(self, release_file) -> str:
        path = reverse("release-file", kwargs={"name": release_file.release.name, "file_name": release_file.name})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class ReleaseZipSerializer(serializers.ModelSerializer):
    name = serializers.SerializerMethodField(help_text="The zip's file name, e.g. incident-tracker-2026.1.zip.")
    media_type = serializers.SerializerMethodField(help_text="application/zip.")
    url = serializers.SerializerMethodField(help_text="Where to download it.")

    class Meta:
        model = ReleaseZip
        fields = ["name", "media_type", "size", "sha256", "url"]

    def get_name(self, release_zip) -> str:
        return release_zip_name(release_zip.release.name)

    def get_media_type(self, release_zip) -> str:
        return ZIP_MEDIA_TYPE

    def get_url(self, release_zip) -> str:
        path = reverse("release-zip", kwargs={"name": release_zip.release.name})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class ReleaseSerializer(serializers.ModelSerializer):
    """A frozen, citable copy of the published data (`incidents.releases`)."""

    files = ReleaseFileSerializer(many=True, read_only=True)
    zip = ReleaseZipSerializer(
        read_only=True,
        help_text="The whole release as one zip file, its files in a folder named for it: what to cite and deposit.",
    )

    class Meta:
        model = Release
        fields = ["name", "year", "number", "as_of", "incidents", "created_at", "citation", "zip", "files"]
        read_only_fields = fields
