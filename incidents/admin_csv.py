"""CSV in the incident admin: mix `IncidentCsvAdminMixin` into the incident ModelAdmin.

It adds the action "Export selected as CSV", an "Export CSV" button on the changelist that exports
what the current filters and search select (`<changelist>/export.csv?<the changelist's query>`),
and an import page (`<changelist>/import/`: upload, preview, confirm). Exports go through
`incidents.exports` and imports through `incidents.importers`, like every other door.
"""

from django.contrib import admin
from django.contrib.admin.options import IS_POPUP_VAR, ActionLocation, IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest
from django.urls import path

from incidents.csv_views import incidents_csv_response
from incidents.models import Incident

# The changelist's own parameters are its filters; this one is the export's.
BOM_PARAMETER = "bom"


class IncidentCsvAdminMixin:
    change_list_template = "admin/incidents/incident/change_list_csv.html"

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("export.csv", self.admin_site.admin_view(self.export_changelist_csv), name=f"{name}_export_csv"),
            *super().get_urls(),
        ]

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        # Added here rather than in `actions`, which the incident admin sets for its own actions.
        actions = super().get_actions(request, action_location=action_location)
        action = self.get_action("export_selected_as_csv", action_location)
        if (
            action
            and self.actions is not None
            and IS_POPUP_VAR not in request.GET
            and self.has_view_permission(request)
        ):
            actions[action.name] = action
        return actions

    @admin.action(description="Export selected as CSV")
    def export_selected_as_csv(self, request, queryset):
        return self._csv_response(request, queryset)

    def export_changelist_csv(self, request):
        """What the changelist shows with the same query string (filters, search, date drill-down)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        bom = request.GET.get(BOM_PARAMETER) == "1"
        request.GET = request.GET.copy()
        request.GET.pop(BOM_PARAMETER, None)
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters as error:
            return HttpResponseBadRequest(f"These changelist filters are not valid: {error}")
        return self._csv_response(request, changelist.get_queryset(request), bom=bom)

    def _csv_response(self, request, queryset, *, bom: bool = False):
        # Whatever the admin's own queryset allows, the export holds only what visible_to allows.
        incidents = Incident.objects.visible_to(request.user).filter(pk__in=queryset.values("pk"))
        return incidents_csv_response(incidents, request.user, bom=bom)
