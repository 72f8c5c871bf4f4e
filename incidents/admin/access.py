"""Who read the informant's testimony, in the admin: confidential records shown on any screen are
recorded (`incidents.access`, through `RecordedReadsMixin`), a record's page says who read it, and
the record of accesses is a list that reviewers with confidential access can filter and nobody can
change."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from incidents.access import can_see_accesses, reads_of
from incidents.admin.base import FilterValueRefused, OfferedFiltersOnlyMixin, ParametersListFilter
from incidents.models import ConfidentialAccess, Incident, Source
from incidents.numbers import MAX_ID, is_whole_number
from incidents.querysets import can_see_confidential

# How many of a record's latest reads its page lists; the list of accesses has them all.
READ_BY_SHOWN = 10


class ConfidentialReadsMixin:
    """For the screens of records that may be confidential (incidents, sources): readers allowed to
    see who read what find the latest reads on the record's page ("Read by"). Every page that shows
    confidential records records them (`RecordedReadsMixin`).

    The list's Confidential filter and column are for those who may see confidential records. To
    anyone else every record listed is not confidential: the column said "no" on every row and the
    filter's "Yes" always listed nothing, as if records were there and held back. Without the
    filter, its parameter is refused as any filter the list does not offer."""

    def get_list_filter(self, request):
        list_filter = super().get_list_filter(request)
        if can_see_confidential(request.user):
            return list_filter
        return [each for each in list_filter if each != "confidential"]

    def get_list_display(self, request):
        list_display = super().get_list_display(request)
        if can_see_confidential(request.user):
            return list_display
        return [each for each in list_display if each != "confidential"]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return [*readonly, "read_by"] if self._shows_reads(request, obj) else readonly

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if not self._shows_reads(request, obj):
            return fieldsets
        # Beside the confidentiality switch, where the question arises.
        return [
            (name, {**options, "fields": [*options["fields"], "read_by"]})
            if "confidential" in options["fields"]
            else (name, options)
            for name, options in fieldsets
        ]

    @staticmethod
    def _shows_reads(request, obj) -> bool:
        return obj is not None and can_see_accesses(request.user)

    @admin.display(description="Read by")
    def read_by(self, obj):
        """The latest reads of this record (for an incident, also of its claims). Two queries."""
        reads = reads_of(obj)
        latest = list(reads[:READ_BY_SHOWN])
        if not latest:
            return "Nobody has read it since reads were recorded."
        parameter = "source" if isinstance(obj, Source) else "incident"
        everything = f"{reverse('admin:incidents_confidentialaccess_changelist')}?{parameter}={obj.pk}"
        rows = format_html_join(
            "",
            "<li>{} ({}, {} UTC)</li>",
            ((read.user.get_username(), read.get_door_display(), f"{read.at:%Y-%m-%d %H:%M}") for read in latest),
        )
        every_read = format_html('<a href="{}">Every read ({})</a>', everything, reads.count())
        return format_html('<ul class="read-by">{}</ul>{}', rows, every_read)


class ReadRecordFilter(ParametersListFilter):
    """`?incident=<id>` or `?source=<id>`: the reads of one record, as its page links to them."""

    title = "record"
    parameter_names = ("incident", "source")

    def has_output(self):
        # Reached from a record's page, not chosen from the sidebar: shown only while applied.
        return bool(self.values)

    def choices(self, changelist):
        yield {
            "selected": False,
            "query_string": changelist.get_query_string(remove=self.parameter_names),
            "display": "Every record",
        }
        for name, value in self.values.items():
            yield {"selected": True, "query_string": changelist.get_query_string(), "display": f"{name} #{value}"}

    def queryset(self, request, queryset):
        for name, model in (("incident", Incident), ("source", Source)):
            value = self.values.get(name)
            if value is None:
                continue
            if not is_whole_number(value):
                raise FilterValueRefused({name: ["Give the record's id, a whole number."]})
            if int(value) > MAX_ID:
                return queryset.none()
            queryset = queryset.filter(pk__in=reads_of(model(pk=int(value))).values("pk"))
        return queryset


@admin.register(ConfidentialAccess)
class ConfidentialAccessAdmin(OfferedFiltersOnlyMixin, admin.ModelAdmin):
    """Read-only for everyone, superusers included; the database refuses changes too. Its list takes
    only the filters it offers: Django's own default took any lookup on the record's fields, and
    `?incident_ids=1` reached PostgreSQL as a malformed array (a 500)."""

    list_display = ["at", "user", "door", "records", "path"]
    list_filter = ["door", ("user", admin.RelatedOnlyFieldListFilter), ReadRecordFilter]
    list_select_related = ["user"]
    search_fields = ["user__username", "path"]
    search_help_text = "Searches usernames and the pages or endpoints read."
    date_hierarchy = "at"
    show_facets = admin.ShowFacets.NEVER
    fields = [
        "at",
        "user",
        "door",
        "path",
        "incident_ids",
        "claim_ids",
        "source_ids",
        "duplicate_pair_ids",
        "merge_ids",
        "export_filters",
        "row_count",
    ]

    @admin.display(description="What")
    def records(self, access):
        shown = {
            "incident": access.incident_ids,
            "claim": access.claim_ids,
            "source": access.source_ids,
            "duplicate pair note": access.duplicate_pair_ids,
            "merge note": access.merge_ids,
        }
        parts = [f"{len(ids)} {name}{'' if len(ids) == 1 else 's'}" for name, ids in shown.items() if ids]
        if access.row_count is not None:
            parts.append(f"export of {access.row_count:,} rows")
        return ", ".join(parts)

    def has_module_permission(self, request):
        return can_see_accesses(request.user)

    def has_view_permission(self, request, obj=None):
        return can_see_accesses(request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
