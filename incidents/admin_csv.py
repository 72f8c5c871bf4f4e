"""CSV in the incident admin: mix `IncidentCsvAdminMixin` into the incident ModelAdmin.

It adds the action "Export selected as CSV", an "Export CSV" button on the changelist that exports
what the current filters and search select (`<changelist>/export.csv?<the changelist's query>`),
and an import page (`<changelist>/import/`: upload, then a preview with one "Import N rows" button). Exports go through
`incidents.exports` and imports through `incidents.importers`, like every other door.
"""

import io
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IS_POPUP_VAR, ActionLocation
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from incidents.access import confidential_among, record_confidential_access
from incidents.admin.base import FilterCannotBeApplied
from incidents.csv_views import BOM_PARAMETER, bom_requested, incidents_csv_response
from incidents.importers import Duplicates, csv_file_text, import_incidents_csv
from incidents.models import AccessDoor, Incident, PendingImport
from incidents.search import IncidentSearch
from tracker.uploads import takes_file

# Between preview and confirm the file waits in the database (PendingImport, one per account), so
# the confirmation may reach any app server; the preview's confirm form holds its key, so that it
# confirms the file it showed, not one uploaded since in another tab or session.
PENDING_IMPORT_KEY_FIELD = "key"
# A pending import's key as the preview writes it: `secrets.token_hex(16)`.
_IMPORT_KEY = re.compile(r"[0-9a-f]{32}\Z")


def delete_stale_pending_imports():
    """Delete the pending imports older than a session's lifetime (SESSION_COOKIE_AGE): such a
    one outlived the session that previewed it, and is gone to every reader."""
    PendingImport.objects.filter(uploaded_at__lt=_stale_before()).delete()


def _stale_before():
    return timezone.now() - timedelta(seconds=settings.SESSION_COOKIE_AGE)


def search_errors(request) -> dict[str, list[str]]:
    """Why the changelist cannot run the request's search (`q`), as the API says it: the list
    answers it with a message and no row (accounts.admin_site.BoundedSearchMixin), which a download
    cannot show, so its export sent an empty file, read as "nothing matches" (a NUL, which Django's
    search form dropped, sent every incident). May run the query `IncidentSearch.parse` runs for a
    search that only leaves words out."""
    try:
        IncidentSearch.parse(request.GET.get(SEARCH_VAR, ""))
    except ValidationError as refusal:
        return {SEARCH_VAR: refusal.messages}
    return {}


class IncidentCsvAdminMixin:
    change_list_template = "admin/incidents/incident/change_list_csv.html"
    import_template = "admin/incidents/incident/import_csv.html"
    import_preview_template = "admin/incidents/incident/import_csv_preview.html"

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("export.csv", self.admin_site.admin_view(self.export_changelist_csv), name=f"{name}_export_csv"),
            path(
                "import/",
                self.admin_site.admin_view(
                    takes_file("file", lambda: settings.IMPORT_MAX_BYTES, may_upload=self.may_upload_import)(
                        self.import_csv_view
                    )
                ),
                name=f"{name}_import_csv",
            ),
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
        selection = {
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across") == "1",
        }
        return self._csv_response(request, queryset, export_filters={**dict(request.GET.lists()), **selection})

    def export_changelist_csv(self, request):
        """What the changelist shows with the same query string (filters, search, date drill-down)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        # The changelist's own parameters are its filters; this one is the export's.
        try:
            bom, errors = bom_requested(request.GET), {}
        except ValidationError as refusal:
            bom, errors = False, refusal.message_dict
        request.GET = request.GET.copy()
        request.GET.pop(BOM_PARAMETER, None)
        try:
            if errors := {**errors, **search_errors(request)}:
                raise FilterCannotBeApplied(errors, request)
            changelist = self.get_changelist_instance(request)
        except FilterCannotBeApplied as refusal:
            # A value the list's filters refuse (`?country=zz`): the list's own 400, where the
            # refusal, which only the list's page caught, was a 500.
            return self.filters_refused_response(request, refusal)
        return self._csv_response(
            request, changelist.get_queryset(request), export_filters=dict(request.GET.lists()), bom=bom
        )

    def exported_incidents(self, request, queryset):
        """The incidents an export of the admin's `queryset` (the changelist's, or an action's
        selection of it) holds: whatever the admin's own queryset allows, only what visible_to
        allows."""
        return Incident.objects.visible_to(request.user).filter(pk__in=queryset.values("pk"))

    def _csv_response(self, request, queryset, *, export_filters, bom: bool = False):
        incidents = self.exported_incidents(request, queryset)
        return incidents_csv_response(incidents, request, export_filters=export_filters, bom=bom)

    def may_import(self, request) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def may_upload_import(self, request) -> bool:
        """Whom the import page takes a file from (tracker.uploads refuses anyone else's before
        writing a byte of it): the admin's own check, then the import view's."""
        return self.admin_site.has_permission(request) and self.may_import(request)

    def import_csv_view(self, request):
        """Upload a CSV; see a preview of what it would create and update (and its possible
        duplicates, to skip or create), or every error; then import it.

        Importing validates the stored file again and writes it all or nothing."""
        if not self.may_import(request):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "opts": self.opts}
        if request.method == "POST" and "confirm" in request.POST:
            return self._import_pending_csv(request, context)
        if request.method == "POST":
            upload = request.FILES.get("file")
            if upload is None:
                return self._upload_page(request, context, upload_error="Choose a CSV file to upload.")
            create_missing = request.POST.get("create_missing") == "on"
            report = import_incidents_csv(
                upload, user=request.user, create_missing=create_missing, dry_run=True, file_name=upload.name
            )
            if report.errors:
                return self._upload_page(request, context, report=report)
            # Valid, hence readable (UTF-8 or UTF-16 with its mark) and within the size limit.
            upload.seek(0)
            key = secrets.token_hex(16)
            delete_stale_pending_imports()
            pending, _ = PendingImport.objects.update_or_create(
                user=request.user,
                defaults={
                    "key": key,
                    "content": csv_file_text(upload.read()).encode(),
                    "create_missing": create_missing,
                    "file_name": upload.name.replace("\x00", ""),
                },
            )
            return self._preview_page(request, context, report, pending)
        return self._upload_page(request, context)

    def _import_pending_csv(self, request, context):
        delete_stale_pending_imports()
        # The pending file locked until it is imported and deleted, or kept: a preview confirmed twice
        # at once (a double click, two tabs) imported it twice, each having read it before the other
        # deleted it. The second confirmation now waits, then finds nothing waiting.
        with transaction.atomic():
            return self._import_locked_pending_csv(request, context)

    def _import_locked_pending_csv(self, request, context):
        key = request.POST.get(PENDING_IMPORT_KEY_FIELD, "")
        # Only a key the preview could have written (`secrets.token_hex(16)`) is looked up: a NUL in
        # another reached PostgreSQL's text, a 500.
        pending = (
            PendingImport.objects.select_for_update().filter(user=request.user, key=key).first()
            if _IMPORT_KEY.match(key)
            else None
        )
        if pending is None:
            # Never previewed, already imported, replaced by a file uploaded since (another tab or
            # session), or older than a session's lifetime.
            messages.error(request, "Nothing is waiting to be imported: upload the file again.")
            return HttpResponseRedirect(request.path)
        choice = request.POST.get("duplicates")
        report = self._import_pending(
            request,
            pending,
            duplicates=Duplicates(choice) if choice in (Duplicates.SKIP, Duplicates.ALLOW) else Duplicates.STOP,
        )
        if report.stopped_for_duplicates:
            # The file is still good: ask again, on the same preview.
            return self._preview_page(
                request,
                context,
                report,
                pending,
                status=400,
                duplicates_error="Choose what to do with the possible duplicates.",
            )
        if report.met_another_write:
            # Nothing was written, and the file may still be good: preview it again as the database now
            # stands (the other write may have changed what it does), so that one click imports it.
            preview = self._import_pending(request, pending, dry_run=True)
            if not preview.errors:
                return self._preview_page(
                    request, context, preview, pending, status=409, import_error=str(report.errors[0])
                )
        # Unless another tab's upload replaced it meanwhile.
        PendingImport.objects.filter(pk=pending.pk, key=key).delete()
        if report.errors:
            return self._upload_page(request, context, report=report)
        messages.success(request, report.summary())
        return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"))

    @staticmethod
    def _import_pending(request, pending, **options):
        return import_incidents_csv(
            io.BytesIO(pending.content),
            user=request.user,
            create_missing=pending.create_missing,
            file_name=pending.file_name,
            **options,
        )

    @staticmethod
    def _record_report_shown(request, report) -> None:
        """A page showing `report` is a read of the confidential records it names (`records_shown`)."""
        record_confidential_access(
            user=request.user,
            door=AccessDoor.ADMIN,
            records=confidential_among(report.records_shown(), request.user),
            path=request.get_full_path(),
        )

    def _upload_page(self, request, context, *, report=None, upload_error=""):
        """The file chooser, with the last file's errors, if any, above it."""
        if report is not None:
            self._record_report_shown(request, report)
        context.update(
            title=f"{report.file_name} cannot be imported" if report else "Import incidents from CSV",
            report=report,
            upload_error=upload_error,
        )
        status = 400 if report or upload_error else 200
        return TemplateResponse(request, self.import_template, context, status=status)

    def _preview_page(self, request, context, report, pending, *, status=200, duplicates_error="", import_error=""):
        """What the waiting file would do, and one button to import it: no file chooser, so that the
        next step cannot be mistaken for uploading again."""
        self._record_report_shown(request, report)
        context.update(
            title=f"Preview: import {report.file_name}",
            report=report,
            duplicates_error=duplicates_error,
            import_error=import_error,
            upload_url=request.path,
            pending_key=pending.key,
            pending_key_field=PENDING_IMPORT_KEY_FIELD,
        )
        return TemplateResponse(request, self.import_preview_template, context, status=status)
