"""The API's doors to duplicate pairs and merges: list the pairs, merge one, undo a merge. Thin:
who may do what, and what a reader learns, is decided by `incidents.merges`."""

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from incidents import merges, services
from incidents.access import confidential_among
from incidents.api.parameters import ReadParametersOnlyMixin
from incidents.api.permissions import StaffReader
from incidents.api.schema import DETAIL_ERROR
from incidents.api.serializers import ActingUserField, UnknownFieldsRefused, VersionAudienceField
from incidents.api.views import _record_api_access
from incidents.filters import DuplicatePairFilterSet
from incidents.models import DuplicatePair, IncidentMerge
from incidents.numbers import is_whole_number


class NoteAsReadMixin(serializers.Serializer):
    """A note, who decided and when, as the reader may read them (`NoteWrittenInConfidence`): null,
    with `note_withheld` and `decided_withheld`, when decided while a record it concerns was
    confidential and they lack Confidential access."""

    note = serializers.SerializerMethodField(help_text="Why, for the history; null when withheld from you.")
    note_withheld = serializers.SerializerMethodField(
        help_text="A note was written while a record it concerns was confidential; it is withheld from readers "
        "without Confidential access."
    )

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_note(self, record) -> str | None:
        return record.note_read_by(self.context["request"].user)

    decided_withheld = serializers.SerializerMethodField(
        help_text="Decided while a record it concerns was confidential: who decided and when are null, withheld "
        "from readers without Confidential access."
    )

    def get_note_withheld(self, record) -> bool:
        return record.note_withheld_from(self.context["request"].user)

    def get_decided_withheld(self, record) -> bool:
        return record.decided_withheld_from(self.context["request"].user)

    def to_representation(self, record):
        shown = super().to_representation(record)
        if record.decided_withheld_from(self.context["request"].user):
            shown.update(dict.fromkeys(record.decided_fields))
        return shown


class DuplicatePairSerializer(NoteAsReadMixin, serializers.ModelSerializer):
    incident_a = serializers.SlugRelatedField(slug_field="public_id", read_only=True)
    incident_b = serializers.SlugRelatedField(slug_field="public_id", read_only=True)
    decided_by = ActingUserField()

    class Meta:
        model = DuplicatePair
        fields = [
            "id",
            "incident_a",
            "incident_b",
            "score",
            "decision",
            "decided_by",
            "decided_at",
            "note",
            "note_withheld",
            "decided_withheld",
        ]
        read_only_fields = fields


class MergeRequestSerializer(UnknownFieldsRefused):
    survivor = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="The public id of the incident that survives; by default the published one, else the older.",
    )
    survivor_version = serializers.IntegerField(
        required=False, min_value=1, help_text="The survivor's version you reviewed; if it changed since, 409."
    )
    merged_version = serializers.IntegerField(
        required=False, min_value=1, help_text="The merged incident's version you reviewed; if it changed since, 409."
    )
    # Both versions as the incidents' `version_audience` named them: read at once, as one audience.
    version_audience = VersionAudienceField(source="told")
    note = serializers.CharField(required=False, allow_blank=True, default="", help_text="Why, for the history.")


class UndoRequestSerializer(UnknownFieldsRefused):
    note = serializers.CharField(required=False, allow_blank=True, default="", help_text="Why, for the history.")


class MergeSerializer(NoteAsReadMixin, serializers.ModelSerializer):
    """A merge as its reader may know it: the moved records they may see are on the survivor."""

    survivor = serializers.SlugRelatedField(slug_field="public_id", read_only=True)
    merged = serializers.SlugRelatedField(slug_field="public_id", read_only=True)
    merged_by = ActingUserField(
        help_text="Username; null once the account was deleted, or withheld (`decided_withheld`)."
    )
    # Null when withheld from the reader (`decided_withheld`), though every merge has one.
    merged_at = serializers.DateTimeField(read_only=True, allow_null=True)
    undone_by = ActingUserField()
    revision = serializers.PrimaryKeyRelatedField(
        read_only=True,
        allow_null=True,
        help_text="The survivor's recomputed dates and counts, proposed for a Reviewer; null when they are "
        "the survivor's own.",
    )

    class Meta:
        model = IncidentMerge
        fields = [
            "id",
            "survivor",
            "merged",
            "pair",
            "revision",
            "note",
            "note_withheld",
            "merged_by",
            "merged_at",
            "undone_by",
            "undone_at",
            "decided_withheld",
        ]
        read_only_fields = fields


def _shown_with_their_incidents(pairs) -> list:
    """What a page of pairs shows: each pair (its note) and its two incidents, loaded with it."""
    return [record for pair in pairs for record in (pair, pair.incident_a, pair.incident_b)]


def _merge_shown(merge: IncidentMerge) -> list:
    """What a merge's answer shows: its note and its two incidents (by their public ids)."""
    return [merge, merge.survivor, merge.merged]


class StaffOnly(StaffReader):
    message = "Only staff may see duplicates and merges."


class DuplicatePairViewSet(ReadParametersOnlyMixin, viewsets.ReadOnlyModelViewSet):
    """Possible duplicates waiting for (or decided by) a reviewer, best score first; filtered by
    decision, and by the country and dates of either incident, as the admin's queue is."""

    serializer_class = DuplicatePairSerializer
    permission_classes = [StaffOnly]
    orderings = {"-score": ("-score", "id")}
    filter_backends = [DjangoFilterBackend]
    filterset_class = DuplicatePairFilterSet

    def get_queryset(self):
        return DuplicatePair.objects.visible_to(self.request.user).select_related(
            "incident_a", "incident_b", "decided_by"
        )

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        _record_api_access(request, confidential_among(_shown_with_their_incidents(page), request.user))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, *args, **kwargs):
        pair = self.get_object()
        _record_api_access(request, confidential_among(_shown_with_their_incidents([pair]), request.user))
        return Response(self.get_serializer(pair).data)

    @extend_schema(
        request=MergeRequestSerializer,
        responses={201: MergeSerializer, 409: DETAIL_ERROR},
        description="Merge the pair (a Reviewer): the survivor takes every claim, place, victim group, "
        "involvement and response of the other; the other's address then redirects to it. 409 if either "
        "is merged already, the pair was decided different, or a version given is stale.",
    )
    @action(detail=True, methods=["post"])
    def merge(self, request, pk=None, format=None):
        body = MergeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        # Not get_object(): a pair whose incident is merged already is out of the list, and its
        # second merge must hear why it is refused (the service answers 404 if it is hidden).
        pair = DuplicatePair.objects.filter(pk=pk).first() if is_whole_number(str(pk)) else None
        if pair is None:
            raise services.RecordNotFound(f"No duplicate pair {pk}.")
        merge = merges.incident_merge(user=request.user, pair=pair, **body.validated_data)
        _record_api_access(request, confidential_among(_merge_shown(merge), request.user))
        return Response(MergeSerializer(merge, context={"request": request}).data, status=status.HTTP_201_CREATED)


class IncidentUnmergeView(ReadParametersOnlyMixin, APIView):
    """POST /api/v1/incidents/<merged public id>/unmerge/: undo the merge that merged it."""

    permission_classes = [StaffOnly]

    @extend_schema(
        request=UndoRequestSerializer,
        responses={200: MergeSerializer, 409: DETAIL_ERROR},
        description="Undo the merge of this (merged) incident, by a Reviewer: both incidents are restored "
        "as they were. 409 if the survivor has been merged since.",
    )
    def post(self, request, public_id):
        body = UndoRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        merge = merges.active_merge_of(user=request.user, public_id=public_id)
        undone = merges.incident_merge_undo(user=request.user, merge=merge, note=body.validated_data["note"])
        _record_api_access(request, confidential_among(_merge_shown(undone), request.user))
        return Response(MergeSerializer(undone, context={"request": request}).data)
