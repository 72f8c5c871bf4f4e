"""Dataset releases: the list of frozen, citable releases, and a Reviewer's button to freeze the next.

Releases are never changed or deleted (the database refuses it too); making one goes through
`releases.release_create`, which decides who may."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from incidents import services
from incidents.admin.base import OfferedFiltersOnlyMixin
from incidents.models import Release, ReleaseFile
from incidents.releases import ReleaseMadeMeanwhile, missing_license_warning, release_create, release_zip_name


@admin.register(Release)
# No filters, so no lookup in its URL (OfferedFiltersOnlyMixin): `?name__regex=(` was a 500.
class ReleaseAdmin(OfferedFiltersOnlyMixin, admin.ModelAdmin):
    list_display = ["name", "incidents", "as_of", "created_at", "created_by"]
    list_select_related = ["created_by"]
    fields = ["name", "citation", "incidents", "as_of", "created_at", "created_by", "zip_file", "file_list"]
    readonly_fields = fields

    # Anyone may read a release (it is public data), so every member of staff may see the list.
    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    # The add button is "Freeze a release", shown to those the service lets make one.
    def has_add_permission(self, request):
        return services.may_publish(request.user)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="As one zip")
    def zip_file(self, release):
        """The whole release in one file, to cite or deposit (`releases.release_zip_chunks`)."""
        return format_html(
            '<a href="{}">{}</a> ({} bytes, sha256 <code>{}</code>)',
            reverse("release-zip", kwargs={"name": release.name}),
            release_zip_name(release.name),
            f"{release.zip.size:,}",
            release.zip.sha256,
        )

    @admin.display(description="Files")
    def file_list(self, release):
        files = ReleaseFile.objects.filter(release=release).defer("content").order_by("name")
        rows = (
            (
                reverse("release-file", kwargs={"name": release.name, "file_name": release_file.name}),
                release_file.name,
                f"{release_file.size:,}",
                release_file.sha256,
            )
            for release_file in files
        )
        return format_html(
            "<ul>{}</ul>",
            format_html_join("", '<li><a href="{}">{}</a> ({} bytes, sha256 <code>{}</code>)</li>', rows),
        )

    def add_view(self, request, form_url="", extra_context=None):
        """A confirmation page; posting it freezes the published data as the next release."""
        if request.method == "POST":
            try:
                release = release_create(user=request.user, latest_seen=request.POST.get("latest_seen"))
            except PermissionDenied as refusal:
                self.message_user(request, str(refusal), messages.ERROR)
                return HttpResponseRedirect(reverse("admin:incidents_release_changelist"))
            except ReleaseMadeMeanwhile as meanwhile:
                return self.response_made_meanwhile(request, meanwhile.release)
            counted = f"{release.incidents:,} incident{'' if release.incidents == 1 else 's'}"
            self.message_user(request, f"Released {release.name}: {counted}.", messages.SUCCESS)
            if warning := missing_license_warning(release.name):
                self.message_user(request, warning, messages.WARNING)
            return HttpResponseRedirect(reverse("admin:incidents_release_change", args=[release.pk]))
        if not self.has_add_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Freeze a release",
            "opts": self.opts,
            "latest": Release.objects.first(),
        }
        return TemplateResponse(request, "admin/incidents/release/freeze.html", context)

    def response_made_meanwhile(self, request, release):
        """The freezing page's button pressed again before its answer came (or after going back):
        answered with the release the first press made. Another Reviewer's: told, and asked again."""
        if release.created_by_id == request.user.pk:
            self.message_user(
                request,
                f"{release.name} was released by your first press of the button; nothing was released again.",
                messages.INFO,
            )
            return HttpResponseRedirect(reverse("admin:incidents_release_change", args=[release.pk]))
        self.message_user(
            request,
            f"{release.name} was released meanwhile by someone else; nothing was released. "
            "Freeze again if another release is wanted.",
            messages.WARNING,
        )
        return HttpResponseRedirect(reverse("admin:incidents_release_add"))
