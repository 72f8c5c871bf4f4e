"""API views: each starts from `visible_to(request.user)` and hands writes to the services.

Lists prefetch what they show (the incident list has PostgreSQL build it: `projections`), so
their query count does not depend on the page size. Hidden records are simply absent from the
querysets, so they answer 404 like records that never existed.
"""

import re
from typing import ClassVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.signals import setting_changed
from django.db.models import Prefetch
from django.dispatch import receiver
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.cache import get_conditional_response
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django_filters.rest_framework import DjangoFilterBackend
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from drf_spectacular.views import SpectacularAPIView
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.permissions import IsAuthenticatedOrReadOnly
from rest_framework.response import Response
from rest_framework.reverse import reverse

from incidents import releases, services
from incidents.access import (
    confidential_among,
    confidential_links_of_responses,
    confidential_records_of,
    confidential_records_of_sources,
    record_confidential_access,
    recording_list_access,
)
from incidents.api.errors import IdempotencyKeyReused, PreconditionFailed, VersionMismatch, chosen_parameter
from incidents.api.pagination import HistoryPagination, RecordWithdrawalPagination, WithdrawalPagination
from incidents.api.parameters import ReadParametersOnlyMixin
from incidents.api.parsers import FiniteJSONParser
from incidents.api.permissions import StaffReader, StaffRevisionsReader
from incidents.api.projections import representations, with_representations
from incidents.api.renderers import GeoJSONRenderer
from incidents.api.schema import (
    BUSY_OR_STOPPED_ERROR,
    BUSY_RETRY_AFTER,
    CREATED_LOCATION,
    DETAIL_ERROR,
    ETAG,
    FEATURE_COLLECTION,
    IDEMPOTENCY_KEY,
    IF_MATCH,
    IF_NONE_MATCH,
    LOOKS_LIKE_ANOTHER_ERROR,
    MERGED_LOCATION,
    MERGED_REDIRECT,
    MERGED_SEE_OTHER,
)
from incidents.api.serializers import (
    IncidentSerializer,
    IncidentTypeSerializer,
    IncidentWithdrawalSerializer,
    OrganizationSerializer,
    PlaceSerializer,
    RecordWithdrawalSerializer,
    ReleaseSerializer,
    ResponseSerializer,
    RevisionDecisionSerializer,
    RevisionSerializer,
    SourceSerializer,
)
from incidents.converters import PublicIdConverter
from incidents.csv_views import CsvOptionsSerializer, filtered_csv_response, spooled_download
from incidents.exports import SpooledDownload
from incidents.filters import ChangedSinceFilterSet, IncidentFilterBackend, IncidentFilterSet, WithdrawalFilterSet
from incidents.history import history_entries, history_visible_to
from incidents.merges import MERGED_REDIRECT_HEADERS, redirect_target
from incidents.models import (
    AccessDoor,
    Claim,
    Incident,
    IncidentRevision,
    IncidentType,
    IncidentWithdrawal,
    Involvement,
    Organization,
    Place,
    RecordWithdrawal,
    Release,
    ReleaseFile,
    RevisionState,
    Source,
    VictimGroup,
)
from incidents.models import Response as OrganizationResponse
from incidents.querysets import (
    EditedVersion,
    access_changed_since_read,
    people_estimate,
    told_version_tag,
    version_fields,
    version_seen_by,
    version_tag,
    visible_source_id,
)
from incidents.selectors import incidents_read_by
from incidents.statistics import GROUPINGS, incident_statistics


@extend_schema_view(
    create=extend_schema(parameters=[CREATED_LOCATION]),
    retrieve=extend_schema(parameters=[ETAG, IF_NONE_MATCH]),
    update=extend_schema(parameters=[IF_MATCH, ETAG]),
    partial_update=extend_schema(parameters=[IF_MATCH, ETAG]),
    destroy=extend_schema(parameters=[IF_MATCH]),
)
class ResourceViewSet(ReadParametersOnlyMixin, viewsets.ModelViewSet):
    """List, read and (with the model permission) write one kind of record, ordered by id. A
    record's version is its ETag, and a change names the version it was made from (`version` in the
    body, or If-Match): a stale one is refused (409; 412 for If-Match) rather than written over a
    newer one."""

    orderings = {"id": ("id",)}

    def retrieve(self, request, *args, **kwargs):
        record = self.get_object()
        self.record_read(record)
        return self._unless_held(self._with_etag(Response(self.get_serializer(record).data), record))

    def _unless_held(self, response):
        """`response`, or 304 and no body if the request's If-None-Match names its ETag: a partner
        tool checking the copy it holds reads nothing again. An ETag names the audience it was read
        as (`version_tag`), so a copy read as another (before access changed) is sent anew."""
        return get_conditional_response(self.request, etag=response["ETag"], response=response)

    def record_read(self, record) -> None:
        """What reading `record` leaves behind (the record of confidential reads); nothing here."""

    def perform_create(self, serializer):
        self._reread(serializer, serializer.save())

    def get_success_headers(self, data):
        # DRF's gives the body's `url` as Location: a source's is the article it cites, not its address.
        return {"Location": self._address(data["id"])}

    def _address(self, lookup_value) -> str:
        """The absolute address of the record `lookup_value` (its id, an incident's public id) names."""
        return reverse(f"{self.basename}-detail", kwargs={self.lookup_field: lookup_value}, request=self.request)

    def update(self, request, *args, **kwargs):
        record = self.get_object()
        by_header = self._check_if_match(record, any_version_matches=False)
        serializer = self.get_serializer(record, data=request.data, partial=kwargs.get("partial", False))
        if not serializer.is_valid():
            if by_header is not None and by_header.number != version_seen_by(record, request.user, by_header.told):
                # Stale by its writer's own change alone (`_check_if_match`), a change is theirs
                # sent again only if it holds what is stored, which one refused here does not (the
                # parent type it names renamed since by that change): stale, as any other.
                raise PreconditionFailed(self._stale_if_match(record, by_header))
            raise serializers.ValidationError(serializer.errors)
        edited = self._edited_version(serializer, record, by_header)
        try:
            saved = serializer.save(expected_version=edited.number, told=edited.told)
        except services.VersionConflict as conflict:
            raise (PreconditionFailed if by_header else VersionMismatch)(str(conflict)) from None
        return self._answer_update(serializer, saved)

    def _answer_update(self, serializer, saved):
        self._reread(serializer, saved)
        # The ETag of the record read again, as the body: `saved` was read back before its links were
        # written, whose triggers move the versions of readers without Confidential access, so its
        # ETag was the one before, and the writer's next edit with it was refused as stale.
        return self._with_etag(Response(serializer.data), serializer.instance)

    def destroy(self, request, *args, **kwargs):
        record = self.get_object()
        self._check_if_match(record, any_version_matches=True)
        services.record_delete(user=request.user, record=record)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _check_if_match(self, record, *, any_version_matches: bool) -> EditedVersion | None:
        """The version the request names in If-Match, if it names one; 412 if that version is stale,
        or was read with access the writer no longer has (`services.check_version`). A change's
        version stale by its writer's own change alone is theirs (`VersionConflict.by_the_writer_alone`),
        for the service to answer as saved or refuse.

        `*` matches any version where `any_version_matches` (a DELETE: whatever is stored goes). A
        change is made from one version, and to it `*` names none: the body's `version` then, or a
        400 naming it; `*` passed, and the stored version stood in for the one edited, so a stale
        edit sent with `*` wrote over a colleague's newer one."""
        header = self.request.headers.get("If-Match")
        if header is None:
            return None
        tags = {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")} - {""}
        if not tags:
            # An empty header (a script's `If-Match: $ETAG` with ETAG unset) names no version: "stale,
            # reload" sent it round the same loop for ever.
            raise serializers.ValidationError(
                {
                    "If-Match": [
                        _('Name the version you edited, as its ETag gave it ("staff.3"), or leave If-Match out.')
                    ]
                }
            )
        if "*" in tags:
            if any_version_matches:
                return None
            tags.discard("*")
            if not tags:
                return None
        try:
            named = [EditedVersion.parse(tag) for tag in sorted(tags)]
        except ValueError as error:
            raise serializers.ValidationError({"If-Match": [str(error)]}) from None
        user = self.request.user
        for edited in named:
            if edited.told is not None and (change := access_changed_since_read(edited.told, user, record)):
                raise PreconditionFailed(str(services.AccessChangedSinceRead(record, change)))
            if edited.number == version_seen_by(record, user, edited.told):
                return edited
        if all(edited.number > version_seen_by(record, user, edited.told) for edited in named):
            # Not a race but a wrong or forged value, a 400 as in the body (`check_version`): it
            # was answered "was changed by someone else", which no one had, "reload" curing nothing.
            try:
                services.check_version(record, named[0].number, reader=user, field="If-Match", told=named[0].told)
            except DjangoValidationError as never_had:
                raise serializers.ValidationError(never_had.message_dict) from None
        if not any_version_matches and services.changed_by_the_writer_alone(
            record, named[0].number, reader=user, told=named[0].told
        ):
            # Perhaps the writer's change sent again (a retry after a timeout): the service answers
            # it as saved if it changes nothing, else refuses it as stale. (A DELETE has no content to
            # compare: stale, it is refused here.)
            return named[0]
        raise PreconditionFailed(self._stale_if_match(record, named[0]))

    def _stale_if_match(self, record, edited: EditedVersion) -> str:
        """Why the If-Match naming `edited` is refused as stale."""
        user = self.request.user
        return (
            f"{services.last_change(record, user, edited.told)}: it is now at version "
            f'"{edited.now(record, user)}"; your If-Match ({self.request.headers["If-Match"]}) is stale. '
            "Reload it, then apply your changes again."
        )

    def _edited_version(self, serializer, record, by_header: EditedVersion | None) -> EditedVersion:
        """The version a change was made from: If-Match's (checked already), or the body's `version`
        (as its `version_audience` counts it); both when both are sent, and they must agree. An HTTP
        library adds If-Match from its latest read while the body's `version` is the one the edit was
        made from: reading If-Match alone wrote a stale edit over the newer one. So for the audience
        each names: a body made from "confidential.2" sent with If-Match "staff.2" (its writer's
        access taken away since, their library's latest read) was compared as "staff.2". A bare
        number on either side agrees with any audience of its number, and the other names it."""
        validated = serializer.validated_data
        body = None
        if "version" in validated:
            body = EditedVersion(validated["version"], validated.get("version_audience"))
        if by_header is None and body is None:
            raise serializers.ValidationError(
                {"version": ["Send the version you edited, in the body or as an If-Match header."]}
            )
        if by_header is None or body is None:
            return by_header or body
        audiences_differ = None not in (body.told, by_header.told) and body.told != by_header.told
        if body.number != by_header.number or audiences_differ:
            raise VersionMismatch(
                f"Your body's version ({body.tag}) is not the version your If-Match names ({by_header.tag}), "
                f"the current one: the change was made from version {body.tag}, and is not saved. "
                "Reload, then apply your changes again."
            )
        return EditedVersion(by_header.number, by_header.told or body.told)

    def _with_etag(self, response, record):
        response["ETag"] = f'"{version_tag(record, self.request.user)}"'
        return response

    def shown(self, records):
        """`records` with what this user may see of them annotated or prefetched (links to hidden
        records dropped, coarsened coordinates), for the serializer; reads and answers to writes alike."""
        return records

    def _reread(self, serializer, saved):
        """Answer a write with the record as a read would show it to this user (links to hidden
        records dropped), not as the bare saved object, whose links hold every record. Even when
        the write took the record out of their sight (they unlinked from a response the last
        incident they see, and it stays about a hidden one): they wrote it, but not its hidden links.
        The answer shows the record as a read does, and is recorded as one (`record_read`): a PATCH
        that changes nothing was a read of a confidential source that left no trace."""
        serializer.instance = self.shown(type(saved)._default_manager.filter(pk=saved.pk)).get()
        self.record_read(serializer.instance)


def orderings_by_change_time(user, model) -> dict[str, tuple[str, ...]]:
    """A list's orderings by the change time `user` is told and syncs by (`version_fields`), ties
    broken by id: an incremental sync's pages (`updated_since`) stay in order while records change."""
    updated_at = version_fields(user).of(model).updated_at
    return {"-updated_at": (f"-{updated_at}", "-id"), "updated_at": (updated_at, "id")}


def withdrawn_page(view, withdrawals, serializer_class):
    """A page of `withdrawals` (filtered by `since`), for a list's `withdrawn/`."""
    page = view.paginate_queryset(view.filter_queryset(withdrawals))
    return view.get_paginated_response(serializer_class(page, many=True).data)


class ChangedSinceMixin:
    """A list a partner tool keeps a copy of: `updated_since` and `ordering=updated_at` read what
    changed, by the change time the reader is told."""

    filter_backends = [DjangoFilterBackend]
    filterset_class = ChangedSinceFilterSet

    @property
    def orderings(self):
        user = getattr(self.request, "user", None)
        return {"id": ("id",), **orderings_by_change_time(user, self.serializer_class.Meta.model)}


class SyncedRecordsMixin(ChangedSinceMixin):
    """A list of records that leave some readers' view (sources, responses), kept in step as
    incidents are: what changed, and `withdrawn/` for what left the reader's view."""

    @extend_schema(
        filters=True,
        responses=RecordWithdrawalSerializer(many=True),
        description="The records of this list that left what you may see since `since` (a source made "
        "confidential or deleted; a response about no incident you may see any more, or deleted), oldest first, "
        "each once: an incremental sync drops them from its copy. Only records you could see before they left; "
        "none you may see again, which the list reports with `updated_since` instead.",
    )
    @action(
        detail=False,
        filter_backends=[DjangoFilterBackend],
        filterset_class=WithdrawalFilterSet,
        pagination_class=RecordWithdrawalPagination,
    )
    def withdrawn(self, request, format=None):
        withdrawals = RecordWithdrawal.objects.reported_to(request.user, self.serializer_class.Meta.model)
        return withdrawn_page(self, withdrawals, RecordWithdrawalSerializer)


# Organizations and places hide nothing from any reader (a place's exact coordinates aside, which
# its public change time keeps), so none leaves a view but by a deletion, which nothing records:
# rare, as both are protected while anything refers to them.
class OrganizationViewSet(ChangedSinceMixin, ResourceViewSet):
    queryset = Organization.objects.all()
    serializer_class = OrganizationSerializer


class IncidentTypeViewSet(ResourceViewSet):
    queryset = IncidentType.objects.select_related("parent")
    serializer_class = IncidentTypeSerializer


class PlaceViewSet(ChangedSinceMixin, ResourceViewSet):
    serializer_class = PlaceSerializer

    def get_queryset(self):
        return self.shown(Place.objects.all())

    def shown(self, records):
        return records.with_coordinates_for(self.request.user)


def revisions_shown(request, revisions, context) -> RevisionSerializer:
    """The revisions serialized as the reader reads them, read together (`services.revisions_read`:
    a fixed number of queries for a page), with the confidential records they show recorded: by the
    revisions' list and detail, and by the answer to an edit that waits as a revision, which
    showed an informant's claim and recorded nothing."""
    readings = services.revisions_read(revisions, request.user)
    shown = [record for reading in readings.values() for record in reading.records]
    _record_api_access(request, confidential_among(shown, request.user))
    return RevisionSerializer(revisions, many=True, context={**context, "readings": readings})


def _record_api_access(request, records) -> None:
    record_confidential_access(user=request.user, door=AccessDoor.API, records=records, path=request.get_full_path())


# A new source that looks like one recorded is refused naming it (`errors.looks_like_another_response`):
# declared as a bare `detail`, a generated client dropped the `sources` it must choose from.
@extend_schema_view(create=extend_schema(responses={201: SourceSerializer, 409: LOOKS_LIKE_ANOTHER_ERROR}))
class SourceViewSet(SyncedRecordsMixin, ResourceViewSet):
    serializer_class = SourceSerializer

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        _record_api_access(request, confidential_records_of_sources(page, request.user))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def record_read(self, source):
        _record_api_access(self.request, confidential_records_of_sources([source], self.request.user))

    def get_queryset(self):
        return self.shown(Source.objects.visible_to(self.request.user))

    def shown(self, records):
        return records.annotate(visible_cites_id=visible_source_id(self.request.user, "cites_id"))


class ResponseViewSet(SyncedRecordsMixin, ResourceViewSet):
    serializer_class = ResponseSerializer

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        _record_api_access(request, confidential_links_of_responses(page, request.user))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def record_read(self, response):
        # Its confidential incidents' public ids and its confidential source's id, as the admin's
        # page of the response records them.
        _record_api_access(self.request, confidential_links_of_responses([response], self.request.user))

    def get_queryset(self):
        return self.shown(OrganizationResponse.objects.visible_to(self.request.user))

    def shown(self, records):
        return records.with_links_for(self.request.user)


class StatsQuerySerializer(serializers.Serializer):
    group_by = serializers.ChoiceField(
        choices=GROUPINGS,
        help_text="`year` and `month` count each incident once: in the year or month its whole date range lies in, "
        "or, where it runs over more than one (2022-2023; a Year, by month; an unknown date), in the group null "
        '("Over more than one year", "Over more than one month"). `country` and `perpetrator` count it in '
        "each of its groups; `total` counts it once.",
    )


class StatsFiguresSerializer(serializers.Serializer):
    incidents = serializers.IntegerField()
    incidents_without_figure = serializers.IntegerField(
        help_text="How many of `incidents` give no figure at all (no best estimate, minimum or maximum): they "
        "add no people to the sums, which count only the others."
    )
    people_count = serializers.IntegerField(allow_null=True)
    people_count_min = serializers.IntegerField(allow_null=True)
    people_count_max = serializers.IntegerField(allow_null=True)


class StatsGroupSerializer(StatsFiguresSerializer):
    group = serializers.CharField(
        allow_null=True,
        help_text="2023, 2023-08, CN, a type's slug, an organization id; null: dated over more than one year or "
        "month, or no country or perpetrator recorded.",
    )
    label = serializers.CharField()


class StatsSerializer(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=GROUPINGS)
    results = StatsGroupSerializer(many=True)
    total = StatsFiguresSerializer(help_text="Every matching incident once, whatever its groups.")


class HistoryEventSerializer(serializers.Serializer):
    """One `incidents.history.HistoryEntry`: what the admin's History page shows, and the raw event."""

    at = serializers.DateTimeField(
        source="when",
        allow_null=True,
        help_text="When it was made; null, as who made it, where that was decided in confidence "
        "(a merge's `merged_at`: null).",
    )
    user = serializers.CharField(
        source="user.get_username", allow_null=True, default=None, help_text="Who made the change, if known."
    )
    summary = serializers.CharField(help_text='What happened, as the admin says it: "Place: Yanji added".')
    import_file = serializers.CharField(allow_null=True, help_text="The CSV file an import wrote it from, if any.")
    action = serializers.CharField(
        help_text="insert, update or delete (a record made public, to readers who may not see what it was "
        "before: insert)"
    )
    record = serializers.CharField(source="event.pgh_obj_model", help_text="e.g. incidents.Incident, incidents.Claim")
    record_id = serializers.CharField(source="event.pgh_obj_id", allow_null=True)
    changes = serializers.JSONField(
        source="raw_changes",
        allow_null=True,
        help_text="field: [before, after], for updates; the id of a record you may not see is null.",
    )
    data = serializers.JSONField(
        source="raw_data",
        help_text="The record as it was after the change; the id of a record you may not see is null.",
    )


# `?format=geojson` is DRF's format override; documented as a parameter of the list.
FORMAT_PARAMETER = OpenApiParameter(
    "format",
    OpenApiTypes.STR,
    enum=["json", "geojson", "csv"],
    description=(
        "`geojson`: a GeoJSON FeatureCollection (RFC 7946) of the page. `csv`: every matching incident "
        "(not a page) as CSV, like `/api/v1/incidents.csv`; `bom=1` adds a byte order mark for Excel."
    ),
)


# An Idempotency-Key as the IETF's draft (draft-ietf-httpapi-idempotency-key-header) allows it.
IDEMPOTENCY_KEY_SHAPE = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,253}[\x21-\x7e]|[\x21-\x7e]")


# Read with `format=csv` alone (`IncidentViewSet.query_parameters`), as `/api/v1/incidents.csv` reads it;
# undeclared, a generated client could not ask the list's CSV for Excel's byte order mark.
BOM_PARAMETER = OpenApiParameter(
    "bom",
    OpenApiTypes.BOOL,
    description="With `format=csv` only (a 400 otherwise): start the file with a UTF-8 byte order mark, so Excel "
    "reads Korean and Chinese.",
)


@extend_schema_view(
    list=extend_schema(
        parameters=[FORMAT_PARAMETER, BOM_PARAMETER, BUSY_RETRY_AFTER],
        responses={
            (200, "application/json"): IncidentSerializer(many=True),
            (200, "application/geo+json"): FEATURE_COLLECTION,
            (200, "text/csv"): OpenApiTypes.BINARY,
            # Every export slot busy (`?format=csv`: `csv_views.incidents_csv_response`), or an
            # anonymous request stopped (`tracker/statement_timeout.py`), which names its parameters.
            (503, "application/json"): BUSY_OR_STOPPED_ERROR,
        },
        description="Incidents you may see, newest first. `?format=geojson` answers a GeoJSON FeatureCollection.",
    ),
    retrieve=extend_schema(
        parameters=[ETAG, IF_NONE_MATCH, MERGED_LOCATION],
        responses={200: IncidentSerializer, 301: MERGED_REDIRECT},
        description="The incident. A merged incident answers 301 to the incident it was merged into (`Location`, "
        "and `merged_into` in the body) if you may see both; otherwise 404.",
    ),
    # Answered as its detail is (`_read`), with its version as ETag.
    # A retry whose incident was merged since answers 303 to the survivor, as its address does 301.
    create=extend_schema(
        parameters=[IDEMPOTENCY_KEY, ETAG, CREATED_LOCATION, MERGED_SEE_OTHER],
        responses={201: IncidentSerializer, 303: MERGED_REDIRECT},
    ),
    # An edit of a published incident by an Analyst waits for a Reviewer (`_answer_update`).
    update=extend_schema(parameters=[IF_MATCH, ETAG], responses={200: IncidentSerializer, 202: RevisionSerializer}),
    partial_update=extend_schema(
        parameters=[IF_MATCH, ETAG], responses={200: IncidentSerializer, 202: RevisionSerializer}
    ),
)
class IncidentViewSet(ResourceViewSet):
    serializer_class = IncidentSerializer
    # JSON only: an incident's claims, places, victim groups and involvements are lists of objects,
    # which a form or multipart body cannot hold, though the schema offered both; such a body now
    # gets 415 naming its media type.
    parser_classes = [FiniteJSONParser]
    lookup_field = "public_id"
    lookup_value_regex = PublicIdConverter.regex
    filter_backends = [IncidentFilterBackend]
    filterset_class = IncidentFilterSet

    @property
    def orderings(self):
        return {
            "-date_start": ("-date_start", "-id"),
            "date_start": ("date_start", "id"),
            # Unknown counts sort below zero: the cursor needs a value it can compare.
            "-people_count": ("-people_count_sortable", "-id"),
            "people_count": ("people_count_sortable", "id"),
            **orderings_by_change_time(getattr(self.request, "user", None), Incident),
        }

    # Formats the incident list renders beyond JSON (`?format=csv` is streamed instead; see list()).
    list_renderer_classes = [GeoJSONRenderer]

    def wants_csv(self) -> bool:
        return self.action == "list" and self.request.query_params.get("format") == "csv"

    def query_parameters(self):
        if self.wants_csv():
            # Every matching incident, in the export's order: no page, no ordering, and the CSV's options.
            reads, repeatable = self.filter_parameters()
            return {"format", *reads, *CsvOptionsSerializer().fields}, repeatable
        return super().query_parameters()

    def perform_content_negotiation(self, request, force=False):
        # The CSV body is a COPY stream (incidents.exports) that no renderer produces; its errors
        # are JSON, so negotiation must neither 404 on `format=csv` nor answer 406.
        return super().perform_content_negotiation(request, force=force or self.wants_csv())

    def list(self, request, *args, **kwargs):
        if self.wants_csv():
            return filtered_csv_response(self, request, self.visible_incidents())
        incidents = self.filter_queryset(self.get_queryset())
        # A cursor holds the values of the ordering's columns: the columns read beside the JSON.
        positions = [field.lstrip("-") for field in self.paginator.get_ordering(request, incidents, self)]
        if positions[0] == "people_count_sortable":
            # Signed: -1 is outside a PositiveIntegerField's range, which Django would treat as "any".
            # Only for this ordering: building the expression cost every other list request too.
            incidents = incidents.annotate(people_count_sortable=people_estimate(unknown=-1))
        rows = recording_list_access(
            with_representations(incidents, request.user, *positions),
            user=request.user,
            door=AccessDoor.API,
            path=request.get_full_path(),
            shown=self.paginator.get_page_size(request),
        )
        page = self.paginate_queryset(rows)
        decoded = getattr(request.accepted_renderer, "reads_results", False)
        return self.get_paginated_response(representations(page, decoded=decoded))

    def get_renderers(self):
        renderers = super().get_renderers()
        if self.action == "list":
            renderers += [renderer() for renderer in self.list_renderer_classes]
        return renderers

    def visible_incidents(self):
        if self.action == "list":
            return incidents_read_by(self.request.user, self.request.query_params)
        return Incident.objects.visible_to(self.request.user)

    def get_queryset(self):
        # Writes load the bare record: a prefetched (visible-only) set of claims would stand in for
        # the incident's real claims inside the services.
        if self.action == "retrieve":
            return self.representation_queryset()
        return self.visible_incidents()

    def representation_queryset(self):
        user = self.request.user
        # 1 query for the incident (type, users, claim range and corroboration joined or subqueried), then one
        # prefetch each for places, visible claims (with sources), involvements (with
        # organizations) and victim groups. Lists are built by PostgreSQL instead (projections).
        return (
            self.visible_incidents()
            .with_claim_range(user)
            .with_corroboration(user)
            .select_related("incident_type", "created_by", "updated_by", "disclosed_updated_by")
            .prefetch_related(
                Prefetch("places", queryset=Place.objects.with_coordinates_for(user).order_by("name", "id")),
                Prefetch("claims", queryset=Claim.objects.visible_to(user).select_related("source")),
                Prefetch("involvements", queryset=Involvement.objects.select_related("organization").order_by("id")),
                Prefetch("victim_groups", queryset=VictimGroup.objects.order_by("id")),
            )
        )

    def _shown(self, incidents, response_status=status.HTTP_200_OK):
        """The one incident of `incidents` as its detail shows it, with its version as ETag, built by
        PostgreSQL in one query (`projections`) that also records the confidential records it shows;
        None if there is none. The serializer over five queries' model instances took three quarters
        of a detail request's CPU, and as much of a write's."""
        request = self.request
        version = version_fields(request.user).of(Incident).version
        row = recording_list_access(
            with_representations(incidents, request.user, version),
            user=request.user,
            door=AccessDoor.API,
            path=request.get_full_path(),
            shown=1,
        ).first()
        if row is None:
            return None
        decoded = getattr(request.accepted_renderer, "reads_results", False)
        (incident,) = representations([row], decoded=decoded)
        etag = told_version_tag(row[version], request.user)
        return Response(incident, status=response_status, headers={"ETag": f'"{etag}"'})

    def _read(self, incident, response_status=status.HTTP_200_OK):
        """Answer a write with the incident as stored now, as its detail shows it to its writer,
        even one they may no longer read (an account with the write permission that may not see
        drafts, which returned it to draft): the representation holds only the claims, sources and
        coordinates they may see, where the incident as saved holds every claim (an informant's)."""
        return self._shown(Incident.objects.filter(pk=incident.pk), response_status)

    def retrieve(self, request, *args, **kwargs):
        incidents = self.filter_queryset(self.visible_incidents()).filter(public_id=kwargs["public_id"])
        response = self._shown(incidents)
        if response is None:
            survivor = redirect_target(user=request.user, public_id=kwargs["public_id"])
            if survivor is None:
                raise Http404
            # Permanently: the merged incident's address now names the survivor, for every client
            # (until a Reviewer undoes the merge: MERGED_REDIRECT_HEADERS).
            return self._to_survivor(kwargs["public_id"], survivor, status.HTTP_301_MOVED_PERMANENTLY)
        return self._unless_held(response)

    def _to_survivor(self, public_id: str, survivor: str, response_status: int):
        """The answer naming `survivor`, the incident `public_id` was merged into, at its address."""
        return Response(
            {"detail": f"{public_id} was merged into {survivor}.", "merged_into": survivor},
            status=response_status,
            headers={"Location": self._address(survivor), **MERGED_REDIRECT_HEADERS},
        )

    def create(self, request, *args, **kwargs):
        submission = self._submission()
        try:
            if submission is not None:
                # Before the body is checked: a retry is answered as the first was, even where the
                # body would be refused now (a source it cites deleted since).
                services.refuse_submitted_before(request.user, submission)
            serializer = self.get_serializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            incident = serializer.save(submission=submission)
        except services.SubmittedBefore as before:
            if not before.same:
                message = (
                    f"Already used for {before.incident.public_id}, with another body: "
                    "send each new incident with a new key."
                )
                raise IdempotencyKeyReused({"Idempotency-Key": [message]}) from None
            # A retry: answered as the first request was, with the incident it added as it is now.
            incident = before.incident
            if incident.merged_into is not None:
                # Merged since into one the writer may see (`services.refuse_submitted_before`):
                # where the answer to their POST now lives (303 See Other), named as a merged
                # incident's address names it.
                return self._to_survivor(incident.public_id, incident.merged_into.public_id, status.HTTP_303_SEE_OTHER)
        response = self._read(incident, status.HTTP_201_CREATED)
        response["Location"] = self._address(incident.public_id)
        return response

    def _submission(self) -> services.Submission | None:
        """The request's `Idempotency-Key` with a digest of its body (as parsed: a retry that writes
        its JSON's keys in another order is the same request), or None without one."""
        key = self.request.headers.get("Idempotency-Key")
        if key is None:
            return None
        if not IDEMPOTENCY_KEY_SHAPE.fullmatch(key):
            message = "Give a key of 1 to 255 printable ASCII characters (a UUID), new for each incident."
            raise serializers.ValidationError({"Idempotency-Key": [message]})
        return services.Submission(key=key, fingerprint=services.submission_fingerprint(self.request.data))

    def _answer_update(self, serializer, written):
        if isinstance(written, IncidentRevision):
            # Published content changes only through a Reviewer: the change waits as a revision,
            # and readers keep seeing the published incident.
            # Shown as its proposer may read it (the serializer's request), like every other answer.
            return Response(
                revisions_shown(self.request, [written], self.get_serializer_context()).data[0],
                status=status.HTTP_202_ACCEPTED,
            )
        return self._read(serializer.instance)

    @extend_schema(
        filters=True,
        parameters=[StatsQuerySerializer],
        responses=StatsSerializer,
        description="Counts and people per group over the incidents matching the filters; an incident "
        "counts once per group and once in `total`.",
    )
    @action(detail=False, pagination_class=None, extra_query_parameters=tuple(StatsQuerySerializer().fields))
    def stats(self, request, format=None):
        query = StatsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filterset = self.filterset_class(request.query_params, queryset=self.visible_incidents(), request=request)
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)
        return Response(incident_statistics(filterset, query.validated_data["group_by"]))

    @extend_schema(
        filters=True,
        responses=IncidentWithdrawalSerializer(many=True),
        description="The incidents that left what you may see since `since` (returned to draft, made "
        "confidential, merged into one you may not see, deleted), oldest first, each once: an incremental "
        "sync drops them from its copy. Only incidents you could see before they left; none you may see "
        "again, which the list reports with `updated_since` instead.",
    )
    @action(
        detail=False,
        filter_backends=[DjangoFilterBackend],
        filterset_class=WithdrawalFilterSet,
        pagination_class=WithdrawalPagination,
    )
    def withdrawn(self, request, format=None):
        return withdrawn_page(self, IncidentWithdrawal.objects.reported_to(request.user), IncidentWithdrawalSerializer)

    @extend_schema(
        filters=False,
        responses=HistoryEventSerializer(many=True),
        description="Who changed what and when, for the incident and its claims, places, victim groups and "
        "involvements, oldest first. Claims you may not see are left out. A merged incident's history is read "
        "at its own address, by whoever may follow it to its survivor.",
    )
    @action(detail=True, permission_classes=[StaffReader], filter_backends=[], pagination_class=HistoryPagination)
    def history(self, request, public_id=None, format=None):
        incident = get_object_or_404(Incident.objects.history_read_by(request.user), public_id=public_id)
        self.check_object_permissions(request, incident)
        # A page of events; those where only bookkeeping moved (updated_at) are left out of it.
        events = self.paginate_queryset(history_visible_to(incident, request.user))
        entries = history_entries(events, request.user, incident)
        # The incident with its claims, and what the entries name (the other incident of a pair).
        named = [record for entry in entries for record in entry.named]
        _record_api_access(
            request, confidential_records_of(incident, request.user) | confidential_among(named, request.user)
        )
        return self.get_paginated_response(HistoryEventSerializer(entries, many=True).data)


@extend_schema_view(
    list=extend_schema(
        description="Proposed changes to published incidents you may review, newest first.",
        parameters=[
            OpenApiParameter(
                "state", OpenApiTypes.STR, enum=RevisionState.values, description="Only the revisions in this state"
            )
        ],
    ),
)
class RevisionViewSet(ReadParametersOnlyMixin, viewsets.ReadOnlyModelViewSet):
    """Revisions that Analysts proposed for published incidents; Reviewers accept or reject them."""

    serializer_class = RevisionSerializer
    permission_classes = [StaffRevisionsReader]
    orderings = {"-id": ("-id",)}

    @property
    def extra_query_parameters(self):
        # The list's filter alone, as the schema declares it: a revision's page, an accept or a
        # reject read it too, undeclared, and answered 404 for a revision in another state.
        return ("state",) if self.action == "list" else ()

    def get_queryset(self):
        revisions = IncidentRevision.objects.visible_to(self.request.user).select_related(
            "incident", "proposed_by", "decided_by"
        )
        state = chosen_parameter(self.request.query_params, "state", RevisionState)
        return revisions.filter(state=state) if state else revisions

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self._shown(page).data)

    def retrieve(self, request, *args, **kwargs):
        return Response(self._shown([self.get_object()]).data[0])

    def _shown(self, revisions):
        return revisions_shown(self.request, revisions, self.get_serializer_context())

    @extend_schema(request=RevisionDecisionSerializer, responses=RevisionSerializer)
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None, format=None):
        decision = RevisionDecisionSerializer(data=request.data)
        decision.is_valid(raise_exception=True)
        revision = self.get_object()
        try:
            services.incident_revision_accept(
                revision=revision, user=request.user, note=decision.validated_data["note"]
            )
        except services.VersionConflict as conflict:
            raise VersionMismatch(str(conflict)) from None
        revision.refresh_from_db()
        return self._decided(revision)

    @extend_schema(request=RevisionDecisionSerializer, responses=RevisionSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None, format=None):
        decision = RevisionDecisionSerializer(data=request.data)
        decision.is_valid(raise_exception=True)
        revision = services.incident_revision_reject(
            revision=self.get_object(), user=request.user, note=decision.validated_data["note"]
        )
        return self._decided(revision)

    def _decided(self, revision):
        """The answer to a decision: the revision as its detail shows it, and recorded as a read of
        the confidential claims and sources it shows (`_shown`)."""
        return Response(self._shown([revision]).data[0])


# What a release's downloads (a file, the zip) read and answer, besides the file itself.
RELEASE_DOWNLOAD_HEADERS = [
    OpenApiParameter(
        "ETag",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200, 206],
        required=True,
        description="The file's sha256, quoted: send it back as If-None-Match or If-Range.",
    ),
    # The request headers the download reads (`_byte_range`, `get_conditional_response`).
    OpenApiParameter(
        "Range",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="`bytes=START-END` or `bytes=START-`: one range, answered 206 (416 past the file's end). "
        "Several ranges, or another unit, are answered with the whole file.",
    ),
    OpenApiParameter(
        "If-Range",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="The ETag of the copy being resumed: the range only if the file is still that one.",
    ),
    OpenApiParameter(
        "If-None-Match",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="The ETag of the copy you hold: 304 and no body if it is still this file.",
    ),
    OpenApiParameter(
        "If-Match",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="The ETag you expect: 412 if the file is another.",
    ),
    BUSY_RETRY_AFTER,
]
RELEASE_DOWNLOAD_ANSWERS = {
    # The conditional answers have no body (`get_conditional_response`).
    304: None,
    412: None,
    # Errors are JSON whatever the file's type.
    (404, "application/json"): DETAIL_ERROR,
    (416, "application/json"): DETAIL_ERROR,
    (503, "application/json"): DETAIL_ERROR,
    (429, "application/json"): DETAIL_ERROR,
}


@extend_schema_view(
    list=extend_schema(
        description="The citable releases of the published data, newest first, with their files' checksums."
    ),
    create=extend_schema(request=None, description="Freeze the published data as the next release (Reviewers only)."),
)
class ReleaseViewSet(ReadParametersOnlyMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Dataset releases: anyone may list and download them; a Reviewer makes one."""

    serializer_class = ReleaseSerializer
    lookup_field = "name"
    lookup_value_regex = r"incident-tracker-\d{4}\.\d+"
    # Who may release is the service's rule (`release_create`); the door only asks for an account.
    permission_classes = [IsAuthenticatedOrReadOnly]
    orderings = {"-id": ("-id",)}

    # The actions whose file goes out as it is stored, whatever the Accept header (never a 406).
    sent_as_stored = ("download", "download_zip")

    def perform_content_negotiation(self, request, force=False):
        """A file goes out as it is stored, as the schema declares it (text/csv, text/markdown,
        application/json): a client asking for its type (`Accept: text/csv`) was refused with 406,
        the renderers offering JSON and HTML only. They render the errors."""
        return super().perform_content_negotiation(request, force=force or self.action in self.sent_as_stored)

    def get_queryset(self):
        # 1 query for the releases with their zips' figures, 1 for their files without their content.
        files = ReleaseFile.objects.defer("content").order_by("name")
        return Release.objects.select_related("zip").prefetch_related(Prefetch("files", queryset=files))

    def create(self, request, *args, **kwargs):
        release = releases.release_create(user=request.user)
        return Response(
            self.get_serializer(self.get_queryset().get(pk=release.pk)).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        parameters=RELEASE_DOWNLOAD_HEADERS,
        responses={
            **{
                (status_code, media_type): OpenApiTypes.BINARY
                for status_code in (200, 206)
                for media_type in sorted(set(releases.MEDIA_TYPES.values()))
            },
            **RELEASE_DOWNLOAD_ANSWERS,
        },
        description=(
            "One file of a release, as it was frozen; its ETag is its sha256. `Range: bytes=START-END` (one range) "
            "resumes a download (206); `If-None-Match` with the ETag answers 304."
        ),
    )
    @action(detail=True, url_path=r"files/(?P<file_name>[A-Za-z0-9_.]+)", url_name="file", pagination_class=None)
    def download(self, request, name=None, file_name=None, format=None):
        release_file = ReleaseFile.objects.defer("content").filter(release__name=name, name=file_name).first()
        if release_file is None:
            raise Http404
        return _release_download(
            request,
            size=release_file.size,
            sha256=release_file.sha256,
            content_type=f"{release_file.media_type}; charset=utf-8",
            file_name=f"{name}-{release_file.name}",
            read=lambda start, end: releases.release_file_chunks(release_file, start, end),
        )

    @extend_schema(
        parameters=RELEASE_DOWNLOAD_HEADERS,
        responses={
            (200, releases.ZIP_MEDIA_TYPE): OpenApiTypes.BINARY,
            (206, releases.ZIP_MEDIA_TYPE): OpenApiTypes.BINARY,
            **RELEASE_DOWNLOAD_ANSWERS,
        },
        description=(
            "The whole release as one zip file, to cite or deposit: its files in a folder named for it "
            "(`incident-tracker-2026.1/datapackage.json`, …), stored uncompressed, the same bytes at every "
            "download; its ETag is its sha256, as listed (`zip`). Downloaded, resumed and cached as one file is."
        ),
    )
    @action(detail=True, url_path="zip", url_name="zip", pagination_class=None)
    def download_zip(self, request, name=None, format=None):
        release = get_object_or_404(Release.objects.select_related("zip"), name=name)
        return _release_download(
            request,
            size=release.zip.size,
            sha256=release.zip.sha256,
            content_type=releases.ZIP_MEDIA_TYPE,
            file_name=releases.release_zip_name(release.name),
            read=lambda start, end: releases.release_zip_chunks(release, start, end),
        )


def _release_download(request, *, size: int, sha256: str, content_type: str, file_name: str, read):
    """A release's file, or the whole release as a zip, as it was frozen: `size` bytes whose
    sha256 is `sha256`, sent from `read(start, end)` (the bytes from `start` up to `end`, excluded),
    a range of them or none (HEAD, a copy the client holds)."""
    etag = f'"{sha256}"'
    headers = {
        "ETag": etag,
        # A release never changes: its checksum is its version, and caches may keep it for good.
        "Cache-Control": "public, max-age=31536000, immutable",
        "Accept-Ranges": "bytes",
    }
    conditional = get_conditional_response(request, etag=etag)
    if conditional is not None:  # 304 for a copy the client holds (If-None-Match), 412 (If-Match)
        for header, value in headers.items():
            conditional[header] = value
        return conditional
    byte_range = _byte_range(request, size, etag)
    if byte_range is _UNSATISFIABLE:
        detail = f"Range: this file has {size:,} bytes; ask for a range that starts before its end."
        return JsonResponse({"detail": detail}, status=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = byte_range or (0, size)
    file_headers = {
        **headers,
        "Content-Type": content_type,
        "Content-Length": end - start,
        "Content-Disposition": f'attachment; filename="{file_name}"',
    }
    if byte_range:
        file_headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if request.method == "HEAD":
        # The headers alone (`curl -I`, a link checker, a download manager before it resumes),
        # all of them in the file's row: a HEAD answered as a GET read the whole file into a
        # spool file under an export slot, to send none of it.
        return HttpResponse(status=206 if byte_range else 200, headers=file_headers)
    # A release file (some 400 MB at a million incidents) is read from the database into a file
    # under an export slot and sent from there, as a CSV export is, one download at a time per
    # client (`spooled_download`): a slow client holds neither a slot nor the database. Not
    # counted against the export rate: it reads stored bytes, not a query over the incidents,
    # a client resumes a broken download with a Range request (each one a request), and the
    # file never changes, so a cache in front may serve it for good.
    download = spooled_download(
        request,
        lambda: read(start, end),
        busy_message=_("Too many downloads are running at once (at most %(count)d). Try again in %(seconds)d seconds."),
    )
    if not isinstance(download, SpooledDownload):
        return download
    return StreamingHttpResponse(download, status=206 if byte_range else 200, headers=file_headers)


# ASCII digits only (RFC 9110's DIGIT): `\d` also matched "٣", which int() reads as 3.
_BYTE_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
# Beyond the end of any file a release holds (PostgreSQL keeps at most 1 GB in a value).
_PAST_ANY_FILE = 10**18


def _position(digits: str) -> int:
    """A byte position of a `Range`, as a number; a longer one than any file's is `_PAST_ANY_FILE`,
    so that no header makes int() read thousands of digits (it refuses more than 4,300: a 500)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < len(str(_PAST_ANY_FILE)) else _PAST_ANY_FILE


_UNSATISFIABLE = object()


def _byte_range(request, size: int, etag: str):
    """The one byte range a download's `Range` asks for, as (start, end), `end` excluded; None for
    the whole file: no `Range`, one this server ignores as RFC 9110 lets it (several ranges, another
    unit, a malformed one) or an `If-Range` naming another version; `_UNSATISFIABLE` for a range
    that starts past the end. By hand: Django serves no ranges (only WhiteNoise does, for static
    files), and a download of a million incidents' 400 MB over a poor connection must be resumable."""
    asked = _BYTE_RANGE.fullmatch(request.headers.get("Range", "").strip())
    if_range = request.headers.get("If-Range")
    if asked is None or (if_range is not None and if_range != etag):
        return None
    first, last = asked.groups()
    if first:  # bytes=START-END or bytes=START-
        start, end = _position(first), _position(last) + 1 if last else size
        if last and end <= start:
            return None
    elif last:  # bytes=-LENGTH: the last LENGTH bytes
        start, end = size - _position(last), size
        if start == size:
            return _UNSATISFIABLE
    else:
        return None
    if start >= size:
        return _UNSATISFIABLE
    return max(start, 0), min(end, size)


class SchemaView(SpectacularAPIView):
    """The schema (`/api/v1/schema/`), built and rendered once per process and format: it depends on
    the code alone, the same for every reader (SERVE_PUBLIC), in English like the rest of the API
    and in one version, and building and rendering it took 0.4-0.8 s of CPU, which any anonymous
    client could ask for twice a second within its rate (bench/README.md, "What an anonymous request
    costs"). Forgotten when a setting changes (tests override some the schema shows)."""

    _rendered: ClassVar[dict[tuple[type, str], bytes]] = {}

    @extend_schema(exclude=True)  # As drf-spectacular leaves its own view out (SERVE_INCLUDE_SCHEMA).
    def get(self, request, *args, **kwargs):
        # Keyed by what the server chose, never by what the client wrote (an Accept header's
        # parameters, drf-spectacular's `?lang=` and `?version=`), so a client cannot make it build
        # another: the renderer, and the language LocaleMiddleware chose among the site's.
        renderer = request.accepted_renderer
        key = (type(renderer), get_language())
        if key not in self._rendered:
            schema = self._get_schema_response(request).data
            self._rendered[key] = renderer.render(schema, renderer.media_type, self.get_renderer_context())
        content_type = f"{renderer.media_type}; charset={renderer.charset}" if renderer.charset else renderer.media_type
        response = HttpResponse(self._rendered[key], content_type=content_type)
        response["Content-Disposition"] = f'inline; filename="{self._get_filename(request, None)}"'
        return response

    def _get_version_parameter(self, request):
        return None


@receiver(setting_changed)
def _forget_rendered_schema(**kwargs):
    SchemaView._rendered.clear()
