"""The Reviewers' queue of changes proposed to published incidents: each revision side by side with
the incident as it is now, accepted or rejected with a note. The decision is the services'."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from incidents import services
from incidents.admin.base import (
    SERVICE_REFUSALS,
    OfferedFiltersOnlyMixin,
    RecordedReadsMixin,
    StaffRecordMixin,
    VisibilityMixin,
    WaitingFirstFilter,
    refusal_text,
)
from incidents.models import WHO_AND_WHEN_WITHHELD, IncidentRevision


class RevisionStateFilter(WaitingFirstFilter):
    title = "state"
    parameter_name = "state__exact"


@admin.register(IncidentRevision)
# Only the filters the list offers (OfferedFiltersOnlyMixin): Django's default took any lookup on
# the revision's fields, and `?state__regex=(` reached PostgreSQL as a bad regular expression (a 500).
class IncidentRevisionAdmin(
    OfferedFiltersOnlyMixin, StaffRecordMixin, RecordedReadsMixin, VisibilityMixin, admin.ModelAdmin
):
    list_display = ["__str__", "incident_link", "proposer", "proposed_at", "state", "decider"]
    list_filter = [RevisionStateFilter]
    list_select_related = ["incident", "proposed_by", "decided_by"]
    search_fields = ["incident__title"]
    readonly_fields = [
        "incident_link",
        "base_version",
        "proposer",
        "proposed_at",
        "state",
        "decider",
        "decided_when",
        "decision_note",
    ]
    fields = readonly_fields
    change_form_template = "admin/incidents/incidentrevision/change_form.html"

    @admin.display(description="Incident")
    def incident_link(self, revision):
        url = reverse("admin:incidents_incident_change", args=[revision.incident_id])
        return format_html('<a href="{}">{}</a>', url, revision.incident)

    # Who proposed it and when, unless a merge decided in confidence did (`proposal_withheld`, which
    # the list's and the page's rows carry for their reader: `IncidentRevisionQuerySet.visible_to`).
    @admin.display(description="Proposed by")
    def proposer(self, revision):
        return WHO_AND_WHEN_WITHHELD if revision.proposal_withheld else revision.proposed_by

    @admin.display(description="Proposed at", ordering="created_at")
    def proposed_at(self, revision):
        return WHO_AND_WHEN_WITHHELD if revision.proposal_withheld else revision.created_at

    # Who decided it and when, unless the undo of such a merge rejected it (`decision_withheld`).
    @admin.display(description="Decided by")
    def decider(self, revision):
        return WHO_AND_WHEN_WITHHELD if revision.decision_withheld else revision.decided_by

    @admin.display(description="Decided at", ordering="decided_at")
    def decided_when(self, revision):
        return WHO_AND_WHEN_WITHHELD if revision.decision_withheld else revision.decided_at

    def records_listed(self, request, rows) -> list:
        return [revision.incident for revision in rows]

    def records_shown(self, request, revision) -> list:
        return services.revision_read(revision, request.user).records

    def change_view(self, request, object_id, form_url="", extra_context=None):
        revision = self.get_object(request, object_id)
        pending = revision is not None and revision.state == "pending"
        extra_context = {
            **(extra_context or {}),
            # The page shows what accepting would change, against the incident as it is now.
            "differences": services.revision_read(revision, request.user).differences if pending else None,
            "may_decide": pending and services.may_publish(request.user),
            # Changed since the proposal: accepting is refused (services.StaleRevision), so the page
            # says so and offers Reject alone rather than a button that cannot work.
            "stale": pending and revision.is_stale,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        decide = self.admin_site.admin_view(self.decide_view)
        return [
            path("<int:object_id>/decide/", decide, name="incidents_incidentrevision_decide"),
            *super().get_urls(),
        ]

    def decide_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        revision = get_object_or_404(self.get_queryset(request), pk=object_id)
        note = request.POST.get("note", "")
        if ("accept" in request.POST) == ("reject" in request.POST):
            # Each button names itself: a POST naming neither (or both) rejected the revision.
            self.message_user(request, "Nothing was changed: choose Accept or Reject.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:incidents_incidentrevision_change", args=[revision.pk]))
        try:
            if "accept" in request.POST:
                services.incident_revision_accept(revision=revision, user=request.user, note=note)
                self.message_user(request, f"Accepted: {revision.incident.public_id} now shows these changes.")
            else:
                services.incident_revision_reject(revision=revision, user=request.user, note=note)
                self.message_user(
                    request, f"Rejected revision {revision.pk}; {revision.incident.public_id} is unchanged."
                )
        except PermissionDenied as refusal:
            self.message_user(request, str(refusal), messages.ERROR)
        except SERVICE_REFUSALS as refusal:
            self.message_user(request, f"Nothing was changed. {refusal_text(refusal)}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:incidents_incidentrevision_change", args=[revision.pk]))
        return HttpResponseRedirect(reverse("admin:incidents_incidentrevision_changelist") + "?state__exact=pending")
