"""Merging a duplicate pair from the review queue, after a page that shows what will move and what
conflicts; the merges made, each with "Undo merge". Who may do what, and what a reader is shown,
is `incidents.merges`'."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst

from incidents import merges, services
from incidents.access import confidential_among
from incidents.admin.base import StaffRecordMixin, TrackedModelAdmin, refusal_text
from incidents.models import (
    NOTE_WITHHELD,
    WHO_AND_WHEN_WITHHELD,
    Claim,
    DuplicatePair,
    Incident,
    IncidentMerge,
    NoteWrittenInConfidence,
)
from incidents.numbers import is_whole_number
from incidents.querysets import EditedVersion, version_tag
from incidents.templatetags.public_pages import people as people_label

# What stops a merge or its undo, shown as the page's message.
REFUSALS = (merges.MergeRefused, ValidationError)
# What a merge moves besides claims, as its page counts them: (key in `moved`, one, several).
MOVED_KINDS = (
    ("places", "place", "places"),
    ("victim_groups", "victim group", "victim groups"),
    ("involvements", "organization involved", "organizations involved"),
    ("responses", "response", "responses"),
)


def confirm_url(pair: DuplicatePair) -> str:
    return reverse("admin:incidents_incidentmerge_confirm", args=[pair.pk])


def _incident_link(incident: Incident):
    return format_html('<a href="{}">{}</a>', reverse("admin:incidents_incident_change", args=[incident.pk]), incident)


def figure(record) -> str:
    """An incident's or a claim's figure worded as the incident list and the public pages word it
    (`people`: "about 500 (300-600)", "40-60", "from 40", with an en dash), "unknown" when it gives none. Given bare,
    "about 500" read "500", as if exact, beside an incident of exactly 500, and "at least 40" read
    "40-?", where a Reviewer decides whether two incidents are one (the duplicate pairs' side by
    side, the merge's confirmation)."""
    return people_label(record) or "unknown"


def proposal_rows(proposal) -> list[tuple[str, object, object]]:
    """A merge's proposed dates and counts as the incident's page labels them: (field's label,
    now, proposed), a choice by its label ("Range", not "range")."""
    rows = []
    for name, values in proposal.items():
        field = Incident._meta.get_field(name)
        shown = [dict(field.flatchoices).get(value, value) if field.choices else value for value in values]
        rows.append((capfirst(field.verbose_name), *shown))
    return rows


class MergedIncidentRedirectMixin:
    """For the incident admin: a merged incident's page (out of the list like any other read)
    leads to its survivor's, for staff who may see both, and its history stays at its own address; to
    anyone else both are missing, as before."""

    def history_subject(self, request, object_id):
        # A merged incident's history stays at its own address, for whoever may follow it (its
        # page leads to the survivor's): what it said before the merge is told nowhere else.
        if not is_whole_number(str(object_id)):
            return None
        return Incident.objects.history_read_by(request.user).filter(pk=object_id).first()

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        public_id = (
            Incident.objects.filter(pk=object_id).values_list("public_id", flat=True).first()
            if is_whole_number(str(object_id))
            else None
        )
        survivor = public_id and merges.redirect_target(user=request.user, public_id=public_id)
        if not survivor:
            return super()._get_obj_does_not_exist_redirect(request, opts, object_id)
        # The merge itself, where it is undone: the page led to the survivor with no way back to it.
        merge = (
            IncidentMerge.objects.visible_to(request.user)
            .filter(merged__public_id=public_id, undone_at__isnull=True)
            .order_by("-pk")
            .first()
        )
        if merge is None:
            self.message_user(request, f"{public_id} was merged into {survivor}.", messages.INFO)
        else:
            url = reverse("admin:incidents_incidentmerge_change", args=[merge.pk])
            told = format_html(
                '{} was merged into {} (<a href="{}">the merge</a>, where it can be undone).', public_id, survivor, url
            )
            self.message_user(request, told, messages.INFO)
        survivor_pk = Incident.objects.values_list("pk", flat=True).get(public_id=survivor)
        return HttpResponseRedirect(reverse("admin:incidents_incident_change", args=[survivor_pk]))


def decided_as_read(record: NoteWrittenInConfidence, field: str, user):
    """Who decided or when (`NoteWrittenInConfidence.decided_fields`), as a page shows it to `user`."""
    return WHO_AND_WHEN_WITHHELD if record.decided_withheld_from(user) else getattr(record, field)


def decided_field(model: type[NoteWrittenInConfidence], field: str):
    """A page's read-only field of who decided or when, as the record's reader may read it
    (`decided_as_read`): the record carries its reader (`viewer`, set in `get_object`), as the
    admin instance is shared between requests."""

    @admin.display(description=capfirst(model._meta.get_field(field).verbose_name))
    def as_read(model_admin, record):
        return decided_as_read(record, field, record.viewer)

    return as_read


def decided_column(model: type[NoteWrittenInConfidence], field: str, user):
    """A list's column of who decided or when, as `user` may read it (`decided_as_read`): a column
    callable takes only the row, so the reader is bound in it."""

    @admin.display(description=capfirst(model._meta.get_field(field).verbose_name))
    def column(record):
        return decided_as_read(record, field, user)

    column.__name__ = field
    return column


@admin.register(IncidentMerge)
class IncidentMergeAdmin(StaffRecordMixin, TrackedModelAdmin):
    list_select_related = ["survivor", "merged", "merged_by"]
    list_filter = [("undone_at", admin.EmptyFieldListFilter)]
    readonly_fields = [
        "survivor_link",
        "merged_public_id",
        "moved_records",
        "revision_link",
        "note_as_read",
        "merged_by_as_read",
        "merged_at_as_read",
        "undone_by_as_read",
        "undone_at_as_read",
    ]
    fields = readonly_fields
    change_form_template = "admin/incidents/incidentmerge/change_form.html"

    def get_list_display(self, request):
        shown = [
            decided_column(IncidentMerge, field, request.user) for field in ("merged_by", "merged_at", "undone_at")
        ]
        return ["__str__", "survivor_link", *shown]

    merged_by_as_read = decided_field(IncidentMerge, "merged_by")
    merged_at_as_read = decided_field(IncidentMerge, "merged_at")
    undone_by_as_read = decided_field(IncidentMerge, "undone_by")
    undone_at_as_read = decided_field(IncidentMerge, "undone_at")

    @admin.display(description="Survivor")
    def survivor_link(self, merge):
        return _incident_link(merge.survivor)

    @admin.display(description="Merged incident")
    def merged_public_id(self, merge):
        # Out of every list while merged, its page the survivor's: its history is what is left to read.
        history = reverse("admin:incidents_incident_history", args=[merge.merged_id])
        return format_html('{} (<a href="{}">its history</a>)', merge.merged.public_id, history)

    @admin.display(description="Proposed revision")
    def revision_link(self, merge):
        if merge.revision_id is None:
            return "None: the survivor's dates and counts already covered both."
        url = reverse("admin:incidents_incidentrevision_change", args=[merge.revision_id])
        return format_html('<a href="{}">Revision {} ({})</a>', url, merge.revision_id, merge.revision.state)

    @admin.display(description="Note")
    def note_as_read(self, merge):
        note = merge.note_read_by(merge.viewer)
        return NOTE_WITHHELD if note is None else note or "—"

    @admin.display(description="What moved")
    def moved_records(self, merge):
        # Only what this reader may see: the record holds hidden rows too, and the claims it moved
        # are read where they are now, which a later merge may have made an incident they may not
        # see (merged on into one made confidential since).
        claims = Claim.objects.filter(pk__in=merge.moved.get("claims", [])).visible_to(merge.viewer)
        conflicts = set(merge.moved.get("conflicts", []))
        lines = [
            (
                f"Claim of {claim.source.label}"
                + (" (conflict: the survivor had one too)" if claim.pk in conflicts else ""),
            )
            for claim in claims.select_related("source__publisher")
        ]
        for kind, one, many in MOVED_KINDS:
            if moved := len(merge.moved.get(kind, [])):
                lines.append((f"{moved} {one if moved == 1 else many}",))
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", lines)) if lines else "—"

    def records_listed(self, request, rows) -> list:
        return [incident for merge in rows for incident in (merge.survivor, merge.merged)]

    def records_shown(self, request, merge) -> list:
        # The note, both incidents (the merged one by its id), and the claims that moved as this reader may see them.
        moved = Claim.objects.filter(pk__in=merge.moved.get("claims", [])).visible_to(request.user)
        return [merge, merge.survivor, merge.merged, *moved.select_related("source")]

    def get_object(self, request, object_id, from_field=None):
        merge = super().get_object(request, object_id, from_field)
        if merge is not None:
            merge.viewer = request.user
        return merge

    def change_view(self, request, object_id, form_url="", extra_context=None):
        merge = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "may_undo": merge is not None and merge.undone_at is None and services.may_publish(request.user),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path(
                "new/<int:pair_id>/",
                self.admin_site.admin_view(self.confirm_view),
                name="incidents_incidentmerge_confirm",
            ),
            path(
                "<int:object_id>/undo/", self.admin_site.admin_view(self.undo_view), name="incidents_incidentmerge_undo"
            ),
            *super().get_urls(),
        ]

    def confirm_view(self, request, pair_id):
        """GET: what merging the pair into the chosen survivor moves, conflicts and proposes.
        POST: merge, as confirmed (the versions shown: a change since refuses it)."""
        pair = get_object_or_404(DuplicatePair, pk=pair_id)
        pair_url = reverse("admin:incidents_duplicatepair_change", args=[pair.pk])
        data = request.POST if request.method == "POST" else request.GET
        try:
            # A pair its reader may not see answers as one that does not exist, before anything in
            # the request is read: a version the page never showed was refused, naming the hidden
            # pair. One merged already is seen, and refused as such by the merge.
            merges.pair_incidents(user=request.user, pair=pair)
            if request.method == "POST":
                merge = merges.incident_merge(
                    user=request.user,
                    pair=pair,
                    survivor=data.get("survivor"),
                    note=data.get("note", ""),
                    **_versions_confirmed(data),
                )
                self.message_user(request, f"{merge}: done. Undo it from this page if it was a mistake.")
                return HttpResponseRedirect(reverse("admin:incidents_incidentmerge_change", args=[merge.pk]))
            plan = merges.merge_plan(user=request.user, pair=pair, survivor=data.get("survivor"))
        except services.RecordNotFound:
            raise Http404(f"No duplicate pair {pair_id}.") from None
        except REFUSALS as refusal:
            self.message_user(request, f"Nothing was merged. {refusal_text(refusal)}", messages.ERROR)
            return HttpResponseRedirect(pair_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Merge {plan.merged.public_id} into {plan.survivor.public_id}?",
            "opts": self.opts,
            "pair": pair,
            "plan": plan,
            # The versions the Reviewer is told, which the merge compares (`merges.incident_merge`).
            "survivor_version": version_tag(plan.survivor, request.user),
            "merged_version": version_tag(plan.merged, request.user),
            "proposal_rows": proposal_rows(plan.proposal),
            # A claim of "between 40 and 60" moved without a figure: only a best estimate was shown.
            # Each source with its publisher and date, as the pair's page names them (`Source.label`).
            "moving_claims": [(claim.source.label, figure(claim)) for claim in plan.claims],
            "choices": [plan.survivor, plan.merged]
            if plan.survivor.pk < plan.merged.pk
            else [plan.merged, plan.survivor],
            "pair_url": pair_url,
            # The pair's note, to carry on into the merge's: not one withheld from this Reviewer.
            "note": pair.note_read_by(request.user) or "",
            "note_withheld": NOTE_WITHHELD if pair.note_withheld_from(request.user) else "",
        }
        self.record_shown(
            request,
            confidential_among([pair, plan.survivor, plan.merged, *plan.claims, *plan.conflicts], request.user),
        )
        return TemplateResponse(request, "admin/incidents/incidentmerge/confirm.html", context)

    def undo_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        merge = get_object_or_404(self.get_queryset(request), pk=object_id)
        try:
            undone = merges.incident_merge_undo(user=request.user, merge=merge, note=request.POST.get("note", ""))
            proposed_back = (
                f" The dates and counts it had changed are proposed back: revision {undone.revision_back.pk}."
                if undone.revision_back
                else ""
            )
            self.message_user(
                request,
                f"Undone: {merge.merged.public_id} and {merge.survivor.public_id} are as they were.{proposed_back}",
            )
        except PermissionDenied as refusal:
            self.message_user(request, str(refusal), messages.ERROR)
        except REFUSALS as refusal:
            self.message_user(request, f"Nothing was changed. {refusal_text(refusal)}", messages.ERROR)
        return HttpResponseRedirect(reverse("admin:incidents_incidentmerge_change", args=[merge.pk]))


def _versions_confirmed(data) -> dict:
    """The versions of both incidents the confirmation page showed (`version_tag`), as
    `merges.incident_merge` takes them: both read at once, as one audience."""
    versions, told = {}, set()
    for name in ("survivor_version", "merged_version"):
        value = data.get(name, "")
        if not value:
            versions[name] = None
            continue
        try:
            edited = EditedVersion.parse(value)
        except ValueError:
            raise ValidationError({name: ["This is no version the page showed: review the merge again."]}) from None
        versions[name] = edited.number
        told.add(edited.told)
    if len(told) > 1:
        raise ValidationError({"merged_version": ["Both versions are read as one audience, as the page showed them."]})
    return {**versions, "told": told.pop() if told else None}
