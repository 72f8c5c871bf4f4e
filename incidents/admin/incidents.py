"""The incident screens: one page to enter an incident with its places, claims, victims and
organizations; a fast list with filters; review actions. Every write goes through the services."""

import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import InlineAdminForm, InlineAdminFormSet
from django.contrib.admin.utils import construct_change_message, display_for_value, flatten_fieldsets
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import models, transaction
from django.db.models import F, Prefetch, Q, Value
from django.db.models.functions import Concat
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseRedirect, QueryDict
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import capfirst
from django_countries import countries

from accounts.admin_site import HeldChoicesAutocompleteSelect, HeldChoicesAutocompleteSelectMultiple
from incidents.access import confidential_among
from incidents.admin.access import ConfidentialReadsMixin
from incidents.admin.base import (
    AsWrittenMixin,
    ConfidentialityOfferedMixin,
    EditedVersionForm,
    EstimatedCountPaginator,
    FilterValueRefused,
    ParametersListFilter,
    TrackedModelAdmin,
    VisibilityMixin,
    nested_refusal_key,
)
from incidents.admin.merges import MergedIncidentRedirectMixin, figure
from incidents.admin_csv import IncidentCsvAdminMixin
from incidents.filters import IncidentFilterSet
from incidents.models import (
    Claim,
    DuplicateDecision,
    DuplicatePair,
    Incident,
    IncidentMerge,
    IncidentRevision,
    IncidentType,
    Involvement,
    Place,
    ReviewState,
    Verification,
    VictimGroup,
    end_date_missing_message,
    in_tree_order,
)
from incidents.querysets import EditedVersion, version_tag
from incidents.search import IncidentSearch
from incidents.services import (
    WORKFLOW,
    Submission,
    SubmittedBefore,
    VersionConflict,
    incident_create,
    incident_set_verification,
    incident_transition,
    incident_update,
    may_publish,
    merges_refusing_deletion,
    refuse_submitted_before,
    responses_left_about_none,
    submission_fingerprint,
)
from incidents.templatetags.public_pages import sources_say

# The list's filters that the project's one IncidentFilterSet applies and validates.
FILTERSET_PARAMETERS = ("type", "country", "date_from", "date_to")


def _filtered_by_filterset(request, queryset, params: dict, filterset_class=IncidentFilterSet):
    """Apply the project's one IncidentFilterSet (or `filterset_class`, the filter set of the
    records listed), so the admin filters mean what the API's do."""
    filterset = filterset_class(params, queryset=queryset, request=request)
    if not filterset.is_valid():
        raise FilterValueRefused({name: list(messages) for name, messages in filterset.errors.items()})
    return filterset.qs


def filter_parameter_errors(request) -> dict[str, list[str]]:
    """What is wrong with the filter parameters of the request, by parameter (none when valid)."""
    params = {name: request.GET[name] for name in FILTERSET_PARAMETERS if name in request.GET}
    filterset = IncidentFilterSet(params, queryset=Incident.objects.none(), user=request.user)
    return {} if filterset.is_valid() else filterset.errors


class IncidentTypeFilter(admin.SimpleListFilter):
    """A type with its sub-types, as the API's `type` means it."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        # Each sub-type indented under its parent, so that choosing the parent reads as "all of these".
        types = in_tree_order(
            IncidentType.objects.order_by("name"),
            key=lambda incident_type: incident_type.pk,
            parent_key=lambda incident_type: incident_type.parent_id,
        )
        return [(incident_type.slug, "\u2003" * depth + incident_type.name) for incident_type, depth in types]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return _filtered_by_filterset(request, queryset, {"type": self.value()})


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def corroboration_summary(figures: dict, verification: str) -> str:
    """The figures as "2 independent origins, 4 sources", and what they suggest when it differs
    from the verification a Reviewer set, which this never changes."""
    origins = _plural(figures["independent_origins"], "independent origin")
    summary = f"{origins}, {_plural(figures['sources'], 'source')}"
    suggested = figures["suggested_verification"]
    if verification in (Verification.ALLEGED, Verification.CORROBORATED) and verification != suggested:
        summary += f": suggests {Verification(suggested).label}; a Reviewer decides."
    return summary


class CountryFilter(admin.SimpleListFilter):
    """The countries of places, which every reader may list (the API's places): no choice tells of
    an incident. The same filter lists duplicate pairs, by the pairs' own filter set."""

    title = "country"
    parameter_name = "country"
    filterset_class = IncidentFilterSet

    def lookups(self, request, model_admin):
        codes = Place.objects.exclude(country="").order_by("country").values_list("country", flat=True).distinct()
        return [(code, countries.name(code)) for code in codes]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return _filtered_by_filterset(request, queryset, {"country": self.value()}, self.filterset_class)


class DateRangeFilter(ParametersListFilter):
    """Incidents whose date range overlaps the days asked for, as in the API's date_from/date_to."""

    title = "dates (overlapping)"
    template = "admin/incidents/date_range_filter.html"
    parameter_names = ("date_from", "date_to")
    filterset_class = IncidentFilterSet

    def has_output(self):
        return True

    def queryset(self, request, queryset):
        if not self.values:
            return queryset
        return _filtered_by_filterset(request, queryset, self.values, self.filterset_class)

    def choices(self, changelist):
        yield {
            "date_from": self.values.get("date_from", ""),
            "date_to": self.values.get("date_to", ""),
            # The other filters, search and ordering in force, kept when the dates are submitted.
            "kept_parameters": [
                (name, value)
                for name, values in changelist.params.items()
                if name not in self.parameter_names
                for value in (values if isinstance(values, list) else [values])
            ],
            "clear_query_string": changelist.get_query_string(remove=self.parameter_names),
        }


class PlacePathChoiceField(forms.ModelMultipleChoiceField):
    """Places chosen, each shown by its path, as the autocomplete offers them (PlaceAdmin): the
    Bangkok picked stays told apart from the other once the page is saved or shown again."""

    def label_from_instance(self, obj):
        return getattr(obj, "path", None) or str(obj)


class IncidentForm(ConfidentialityOfferedMixin, EditedVersionForm):
    # Incident.places goes through IncidentPlace, which the admin will not edit as a plain field;
    # this field offers the same autocomplete and the service writes the links.
    place_list = PlacePathChoiceField(
        queryset=Place.objects.with_path(),
        required=False,
        label="Places",
        widget=HeldChoicesAutocompleteSelectMultiple(Incident._meta.get_field("places"), admin.site),
        help_text="Type to search places by name; the most precise known places (a crossing, a city).",
    )
    # A page is sent once (`services.Submission`): a Save pressed twice before the answer came, or
    # again after the browser's Back, added the incident twice, and a change's second Save was told
    # that the changes were not saved (its version stale by the first). Each page shown has its own key.
    submission_key = forms.CharField(
        widget=forms.HiddenInput, required=False, max_length=255, initial=lambda: uuid.uuid4().hex
    )
    # Set by IncidentAdmin: whether the user may add places, and so gets the "+" beside Places.
    can_add_place = False
    # Refused here, before its rows are read: a row its writer's first Save deleted would be refused
    # on a hidden field no page draws (`EditedVersionForm.clean`). The page sent twice is told by its
    # key (`submission_key`) instead.
    stale_by_the_writer_left_to_the_service = False

    class Meta:
        model = Incident
        # The admin narrows these to its fieldsets; listed here so a new model field is a decision.
        fields = [
            "title",
            "incident_type",
            "description",
            "date_precision",
            "date_start",
            "date_end",
            "people_count",
            "people_count_min",
            "people_count_max",
            "count_qualifier",
            "confidential",
        ]
        # What an uncertain date or figure becomes, where the form named the fields alone and an
        # analyst entering "about 500 ... in July 2021" had to know how the tracker records them.
        help_texts = {
            "date_precision": "Choose it before the dates below. “In July 2021”: Month, from 2021-07-01 to "
            "2021-07-31; “in 2021”: Year, from 1 January to 31 December; between two days: Range. The "
            "label (“July 2021”) is made from these.",
            "people_count_min": "The lowest credible figure, if the sources allow one.",
            "people_count_max": "The highest credible figure.",
            "count_qualifier": "How the figure is given: “about 500” is 500 and About; “at least 40” is 40 "
            "and At least; Exact is one figure, with no other min or max. From the figures: a figure alone is "
            "exact, a minimum alone at least, a maximum alone at most, a range about, none unknown. Each "
            "source's own figure goes on its claim below.",
        }

    def clean(self):
        cleaned_data = super().clean()
        # "This field is required." under the end date left an analyst entering "in July 2021" with
        # the start alone to guess what the end of a Month is: say it, from the start and precision.
        start, precision = cleaned_data.get("date_start"), cleaned_data.get("date_precision")
        if start and self.has_error("date_end", code="required"):
            self.errors["date_end"] = self.error_class([end_date_missing_message(start, precision)])
        return cleaned_data

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The admin gives model fields its "+" (add a record in a pop-up, then pick it); this form
        # field is not a model field, so it is wrapped here the same way.
        self.fields["place_list"].widget = RelatedFieldWidgetWrapper(
            self.fields["place_list"].widget,
            Incident._meta.get_field("places").remote_field,
            admin.site,
            can_add_related=self.can_add_place,
        )
        if self.instance.pk:
            self.fields["place_list"].initial = list(self.instance.places.all())
        if self.is_bound:
            # The key sent is no change of the incident (`changed_data`), where a new one drawn
            # would read as one.
            self.fields["submission_key"].initial = self.data.get(self.add_prefix("submission_key"))


class RowAutocompleteSelect(HeldChoicesAutocompleteSelect):
    """An inline row's autocomplete (a claim's source, an involvement's organization) showing the
    record the row links to as the row was read with it (`select_related`), where Django's widget
    looked each up again: one query per claim and per organization on the incident's page. A value
    other than the row's own (a form sent back with another choice) is looked up as before."""

    row_record = None

    def optgroups(self, name, value, attr=None):
        record = self.row_record
        selected = {str(choice) for choice in value if str(choice) not in self.choices.field.empty_values}
        if record is None or selected != {str(record.pk)}:
            return super().optgroups(name, value, attr)
        options = [] if self.is_required else [self.create_option(name, "", "", False, 0)]
        label = self.choices.field.label_from_instance(record)
        options.append(self.create_option(name, record.pk, label, selected, len(options)))
        return [(None, options, 0)]


@dataclass(frozen=True)
class RowsPage:
    """The rows of an incident's inline that its page shows, when it has more than one page holds
    (`IncidentRowsInline.rows_page`): those of the page asked for when it opens, those it sent when saved."""

    count: int
    first: int
    last: int
    shown_ids: frozenset[int]
    # Each page's number, address (None: this page, or "…") and whether it is this page.
    links: tuple[tuple[str, str | None, bool], ...]


class RowsFormSet(BaseInlineFormSet):
    # What the service refused on the previous attempt at saving (IncidentAdmin.get_formsets_with_inlines).
    service_refusal = None
    # The page of rows shown, on an incident with more than one page holds (IncidentAdmin.get_formsets_with_inlines).
    rows_page = None

    def __init__(self, *args, queryset=None, instance=None, **kwargs):
        if self.rows_page is not None:
            # Read as they are when saved, among those the writer may see (the inline's queryset).
            self.rows_not_shown = queryset.filter(incident=instance).exclude(pk__in=self.rows_page.shown_ids)
            queryset = queryset.filter(pk__in=self.rows_page.shown_ids)
        super().__init__(*args, queryset=queryset, instance=instance, **kwargs)

    def rows_kept(self) -> list[dict]:
        """The rows the page did not show, as the service takes them (`_inline_rows`), each as it is
        stored: a Save keeps them as they are."""
        if self.rows_page is None:
            return []
        names = [name for name in self.form.base_fields if name not in {self.fk.name, "id"}]
        return [{**{name: getattr(row, name) for name in names}, "id": row.pk} for row in self.rows_not_shown]

    def clean(self):
        """The service's refusals of this formset's rows (`claims[1].source`, as the API names
        them), on the row and field they are about: they read at the top of the page as
        "claims[1]: Each source may make only one claim per incident.", counted from 0, where the
        analyst saw "Claim #2"."""
        super().clean()
        self.tell_rows_gone()
        refusal = self.service_refusal
        if not isinstance(refusal, ValidationError) or not hasattr(refusal, "error_dict"):
            return
        sent = _sent_forms(self)
        unplaced = []
        for key, refused in refusal.message_dict.items():
            row = nested_refusal_key(key)
            if row is None or row[0] != self.fk.remote_field.get_accessor_name():
                continue
            _, index, field = row
            form = sent[index] if index < len(sent) else None
            if form is not None and not (field in form.fields and form.fields[field].widget.is_hidden):
                form.add_error(field if field in form.fields else None, refused)
            else:
                # Above the rows: a row past those sent, or a hidden field's refusal (a repeated
                # `id`, whose second row the page does not show: one stored row, one form).
                unplaced += refused
        if unplaced:
            raise ValidationError(unplaced)

    def tell_rows_gone(self):
        """Said on each row sent with an id that none of the incident's rows the writer may see has
        (`add_fields`): one a colleague's save deleted, or made confidential, since the page was
        opened, which the page then refuses as stale (`EditedVersionForm.clean`). The row is shown
        as it was sent (`RowsAdminFormSet`), and its id's refusal is on a hidden field: without
        this, nothing on the row told the writer why it is drawn with no record's name. The same
        words for a row deleted and one hidden, which the writer may not tell apart."""
        for form in self.initial_forms:
            if form.has_error(self._pk_field.name, code="invalid_choice"):
                name = self.model._meta.verbose_name
                form.add_error(
                    None,
                    f"This {name} is no longer one of the incident's that you may see: deleted, or hidden from "
                    "you, since you opened the page. It is shown as you sent it, and was not saved.",
                )

    def add_fields(self, form, index):
        super().add_fields(form, index)
        # A row's `id` among this incident's rows that the writer is shown: Django looks it up among
        # every row of the model (BaseModelFormSet.add_fields), so the id of a claim hidden from
        # them (an informant's, or another incident's) passed, saved as a new row, where an id no
        # row has was refused: the form told which ids are hidden records. Now both are refused.
        form.fields[self._pk_field.name].queryset = self.get_queryset()
        for name, field in form.fields.items():
            widget = getattr(field.widget, "widget", field.widget)  # inside the "+" wrapper
            if isinstance(widget, RowAutocompleteSelect) and form.instance.pk is not None:
                link = form.instance._meta.get_field(name)
                # Only a record read with the row (the inline's select_related): never a query here.
                widget.row_record = getattr(form.instance, name) if link.is_cached(form.instance) else None


class RowsAdminFormSet(InlineAdminFormSet):
    """An inline's rows as the page draws them, each form under the row its id names (the form's
    own instance, looked up by that id among the rows the writer may see), or under no row's name
    when none has it (`RowsFormSet.tell_rows_gone`). Django pairs the forms with the rows stored
    now by position: a save refused because a colleague deleted a row since the page was opened,
    or made it confidential, drew each form after it under the next row's name and left the last
    one off the page, with what was typed in it, which the refusal asks the writer to apply again
    (and the page's counts then named a row it no longer had)."""

    def __iter__(self):
        readonly_fields = self.readonly_fields
        if not self.has_change_permission:
            readonly_fields = [*readonly_fields, *flatten_fieldsets(self.fieldsets)]
        for form in self.formset.initial_forms:
            row = form.instance if form.instance.pk is not None else None
            yield InlineAdminForm(
                self.formset,
                form,
                self.fieldsets,
                self.prepopulated_fields,
                row,
                readonly_fields,
                model_admin=self.opts,
                view_on_site_url=self.opts.get_view_on_site_url(row),
            )
        new_forms = list(self.formset.extra_forms)
        if self.has_add_permission:
            new_forms.append(self.formset.empty_form)  # the one "Add another" copies
        for form in new_forms:
            yield InlineAdminForm(
                self.formset,
                form,
                self.fieldsets,
                self.prepopulated_fields,
                None,
                self.readonly_fields,
                model_admin=self.opts,
            )


class IncidentRowForm(forms.ModelForm):
    """A row of the incident's own. Its keys unique within the incident (a claim's source, an
    involvement's organization and role) are the service's to check, among the rows written
    (`services._unique_errors`), which it writes in an order that holds (`services._in_saving_order`):
    checked here one row at a time against the rows as stored, a correction passing a key from one
    row to another ("police, army" made "army, navy") was refused."""

    def _get_validation_exclusions(self):
        return {*super()._get_validation_exclusions(), "incident"}


class IncidentRowsInline(AsWrittenMixin):
    """Rows of the incident's own (its claims, victim groups, organizations involved). Removing one
    is an edit of the incident, as the service takes it: `incident_update` replaces the rows it is
    given, keeping those the writer may not see, the history records the removal, and an Analyst's
    edit of a published incident waits for a Reviewer. So whoever may change the incident may remove
    a row, as through the API and the import; Django's default asked for the row's delete
    permission, which only Reviewers hold (for records on their own: sources, incidents), and left
    an Analyst unable to take back a claim they added by mistake.

    Each row's autocomplete shows the record the row was read with (RowAutocompleteSelect), so the
    page's queries do not grow with its claims and organizations. The rows are those the reader may
    see (a claim of a source they may not see is not one of them), so is the record each links to."""

    formset = RowsFormSet
    form = IncidentRowForm
    # Set on an inline whose rows may be more than a page can draw (ClaimInline): then shown a page
    # at a time (`?<page_parameter>=N`), and a Save keeps those it did not show (`RowsFormSet.rows_kept`).
    rows_per_page = None
    page_parameter = None

    def has_delete_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in self.get_autocomplete_fields(request) and "widget" not in kwargs:
            kwargs["widget"] = RowAutocompleteSelect(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def rows_page(self, request, incident) -> RowsPage | None:
        """The page of the incident's rows that its page shows, or None when they fit on one (or the
        inline shows them all). A page number out of range is the last page, and none (or not a
        number) the first (Django's `Paginator.get_page`). A Save shows again the rows its page
        sent: one a colleague deleted since is then told gone (`RowsFormSet.tell_rows_gone`), as on
        a page of every row."""
        if self.rows_per_page is None:
            return None
        ids = list(self.get_queryset(request).filter(incident=incident).values_list("pk", flat=True))
        if len(ids) <= self.rows_per_page:
            return None
        paginator = Paginator(ids, self.rows_per_page)
        page = paginator.get_page(request.GET.get(self.page_parameter))
        shown = set(page.object_list)
        if request.method == "POST":
            prefix = self.model._meta.get_field("incident").remote_field.get_accessor_name()
            shown = _row_ids_sent(request.POST, prefix=prefix, among=set(ids))
        links = []
        for number in paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1):
            if number == page.number or number == Paginator.ELLIPSIS:
                links.append((str(number), None, number == page.number))
            else:
                query = request.GET.copy()
                query[self.page_parameter] = number
                links.append((str(number), f"?{query.urlencode()}", False))
        return RowsPage(
            count=len(ids),
            first=page.start_index(),
            last=page.end_index(),
            shown_ids=frozenset(shown),
            links=tuple(links),
        )


class QualifierFromFiguresMixin:
    """The count's qualifier offered blank, labelled "From the figures", and blank on a new record:
    the model reads it from the figures (`QualifierFromFigures`). "Unknown" chosen in advance made an
    analyst's "40" an "unknown 40" unless she thought to change it."""

    # Each field offered blank, with what its blank means.
    blank_choice_labels = {"count_qualifier": "From the figures"}

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name in self.blank_choice_labels:
            kwargs["choices"] = db_field.get_choices(blank_choice=[("", self.blank_choice_labels[db_field.name])])
        return super().formfield_for_choice_field(db_field, request, **kwargs)


class ClaimForm(ConfidentialityOfferedMixin, IncidentRowForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "date_precision" in self.fields:
            # What the source's words become, as the incident's form says it for the incident's dates.
            self.fields["date_precision"].help_text = (
                "Choose it before the dates, as for the incident. “In July 2021”: Month, from 2021-07-01 to "
                "2021-07-31; “since March 2020”: Month, from 2020-03-01, no end; “before 9 October 2023”: Day, "
                "no start, to 2023-10-08, the last day it allows. From the dates: one day or one end alone, Day; "
                "whole months, Month; whole years, Year; other days, Range; none, Unknown."
            )
        # Only a merge sets the mark, for a writer to clear once resolved: a claim without it (every
        # new one) does not offer it, where a checkbox on each claim asked analysts what it meant.
        if not self.instance.merge_conflict:
            self.fields["merge_conflict"].widget = forms.HiddenInput()


class ClaimInline(QualifierFromFiguresMixin, IncidentRowsInline, VisibilityMixin, admin.StackedInline):
    model = Claim
    form = ClaimForm
    extra = 1
    autocomplete_fields = ["source"]
    verbose_name = "claim"
    verbose_name_plural = "Evidence: what each source says"
    # Excerpts are a sentence or two; a short box keeps several claims on one screen.
    formfield_overrides = {models.TextField: {"widget": forms.Textarea(attrs={"rows": 3, "cols": 80})}}
    fieldsets = [
        (None, {"fields": ["source", "source_connection", "confidential", "merge_conflict"]}),
        (None, {"fields": [("people_count", "people_count_min", "people_count_max", "count_qualifier")]}),
        # The precision first, as on the incident: it decides which dates to type.
        (None, {"fields": [("date_precision", "date_start", "date_end"), "date_label"]}),
        (None, {"fields": ["excerpt", "locator"]}),
    ]
    readonly_fields = ["date_label"]
    # A claim's date precision left blank is read from its dates (`PrecisionFromDates`).
    blank_choice_labels = {**QualifierFromFiguresMixin.blank_choice_labels, "date_precision": "From the dates"}

    # A mass event's claims, hundreds of testimonies, each drawn as a form of some 15 KB in 20 ms:
    # 2,001 claims made a page of 31 MB that took 28 s to draw.
    rows_per_page = 100
    page_parameter = "claims_page"
    template = "admin/incidents/incident/claims_inline.html"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("source")

    def get_formset(self, request, obj=None, **kwargs):
        # Each row's box is offered by what that claim is now (ConfidentialityOfferedMixin).
        return super().get_formset(request, obj, form=self.form.for_writer(request.user), **kwargs)


def _back_on_the_page_of_claims_saved(request, response):
    """A Save that leads back to the incident's page ("Save and continue editing", a change
    proposed) opens the page of claims it saved, not the first."""
    page = request.GET.get(ClaimInline.page_parameter)
    if not page or not isinstance(response, HttpResponseRedirect):
        return response
    location = urlsplit(response["Location"])
    if location.path != request.path:
        return response
    query = QueryDict(location.query, mutable=True)
    query[ClaimInline.page_parameter] = page
    response["Location"] = urlunsplit(location._replace(query=query.urlencode()))
    return response


def _row_ids_sent(data, *, prefix: str, among: set[int]) -> set[int]:
    """The ids of the stored rows a formset's page sent, of those in `among` (its incident's rows
    the writer may see): at most as many as there are, whatever its INITIAL_FORMS says."""
    try:
        sent = int(data.get(f"{prefix}-INITIAL_FORMS", ""))
    except ValueError:
        return set()
    ids = set()
    for index in range(min(max(sent, 0), len(among))):
        value = data.get(f"{prefix}-{index}-id", "")
        if value.isascii() and value.isdigit() and int(value) in among:
            ids.add(int(value))
    return ids


class VictimGroupInline(IncidentRowsInline, admin.TabularInline):
    model = VictimGroup
    extra = 0
    verbose_name_plural = "Who: the people it happened to"


class InvolvementInline(IncidentRowsInline, admin.TabularInline):
    model = Involvement
    extra = 0
    autocomplete_fields = ["organization"]
    verbose_name_plural = "Who: organizations involved"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("organization")


def _refusal_reason(refusal: Exception) -> str:
    if isinstance(refusal, ValidationError):
        return " ".join(refusal.messages)
    return str(refusal)


def _sent_forms(formset) -> list[forms.ModelForm]:
    """The forms of the rows an inline formset keeps, in the order the service takes them (and
    names them in its refusals, `claims[1]`): existing rows, and new rows that were filled in; rows
    marked for deletion are left out, so the service deletes them."""
    return [
        form
        for form in formset.forms
        if (form.instance.pk or form.has_changed()) and not (formset.can_delete and formset._should_delete_form(form))
    ]


def _inline_rows(formset) -> list[dict]:
    """The rows an inline formset keeps, as the service takes them (`_sent_forms`), existing ones with their id."""
    rows = []
    for form in _sent_forms(formset):
        row = {
            name: value
            for name, value in form.cleaned_data.items()
            if name not in {formset.fk.name, "id", forms.formsets.DELETION_FIELD_NAME}
        }
        row["id"] = form.instance.pk
        rows.append(row)
    return rows


# Review workflow: each action runs the service for every selected incident in one transaction, so a
# refusal for one leaves all of them as they were. The incident's page offers the same actions, those
# its state allows (`applies_to`), as buttons below its Save: not Django's change-form actions, a menu
# at the top of the form offering every action whatever the state, whose Run sends the form with it.


# What a Save sends beside the page's values: the security token (`fresh_csrf.js` renews it), the
# button pressed (a second press may be another) and the key itself.
_SENT_BESIDE_VALUES = frozenset({"csrfmiddlewaretoken", "_save", "_continue", "_addanother", "submission_key"})


def _submission(request) -> Submission | None:
    """The incident's page as sent, which the service tells from another (`services.Submission`)."""
    key = request.POST.get("submission_key")
    if not key:
        return None
    sent = {name: values for name, values in request.POST.lists() if name not in _SENT_BESIDE_VALUES}
    return Submission(key=key, fingerprint=submission_fingerprint(sent))


def reviewed_version(request) -> dict:
    """The version the incident's page showed, which its review buttons send (`version_tag`), as the
    services take it (`expected_version`, `told`): the action then applies to what the Reviewer
    read, and a colleague's save since the page opened is refused as a stale edit is (publishing a
    version nobody reviewed). Nothing from the list, which shows no version. A value the page never
    writes (a tampered form: letters, a run of digits longer than `int()` reads) is refused, never
    taken for the list's none, which would apply the action to whatever version is stored."""
    sent = request.POST.get("reviewed_version", "")
    if not sent:
        return {}
    try:
        edited = EditedVersion.parse(sent)
    except ValueError:
        raise ValidationError(
            {"reviewed_version": ["This is no version the incident's page showed: reload the page."]}
        ) from None
    return {"expected_version": edited.number, "told": edited.told}


def review_step_action(name: str, step: str, description: str, done: str):
    """The list's action moving the selected incidents one WORKFLOW step."""

    def action(model_admin, request, queryset):
        def write(incident):
            incident_transition(incident=incident, action=step, user=request.user, **reviewed_version(request))

        model_admin.apply_to_selected(request, queryset, write, done)

    action.__name__ = name
    action.applies_to = lambda incident: incident.review_state in WORKFLOW[step][0]
    return admin.action(description=description, permissions=[step])(action)


def verification_action(verification: Verification):
    """The list's action setting the selected incidents' verification: each value has one, so a
    Reviewer can follow the page's "suggests Corroborated" or mark a report disputed or retracted,
    where only "Mark verified" was offered."""

    def action(model_admin, request, queryset):
        def write(incident):
            incident_set_verification(
                incident=incident,
                verification=verification,
                user=request.user,
                **reviewed_version(request),
            )

        model_admin.apply_to_selected(request, queryset, write, f"Marked {verification.label.lower()}")

    action.__name__ = f"mark_{verification.value}"
    action.applies_to = lambda incident: incident.verification != verification
    return admin.action(description=f"Mark {verification.label.lower()}", permissions=["verify"])(action)


@admin.register(Incident)
class IncidentAdmin(
    QualifierFromFiguresMixin,
    MergedIncidentRedirectMixin,
    ConfidentialReadsMixin,
    IncidentCsvAdminMixin,
    TrackedModelAdmin,
):
    form = IncidentForm
    change_form_template = "admin/incidents/incident/change_form.html"
    inlines = [VictimGroupInline, InvolvementInline, ClaimInline]
    autocomplete_fields = ["incident_type"]

    def view_on_site(self, incident):
        """The incident's public page ("View on site"), where a reviewer reads what the public
        reads once it is published; staff see a draft there as their role allows."""
        return reverse("public:incident", args=[incident.public_id])

    readonly_fields = [
        "public_id",
        "date_label",
        "claim_range",
        "review_state",
        "verification",
        "corroboration",
        "created_by",
        "last_changed_by",
        "last_changed_at",
    ]
    fieldsets = [
        ("What", {"fields": ["public_id", "title", "incident_type", "description"]}),
        (
            "When",
            {
                # The precision first: it decides which dates to type ("in July 2021": Month, then
                # the month's first and last day), where an analyst met it after typing them.
                "fields": ["date_precision", ("date_start", "date_end"), "date_label"],
                "description": "How precisely the sources date it, then the range the incident lies in; "
                "for a known day, the same date twice.",
            },
        ),
        (
            "How many",
            {"fields": [("people_count", "people_count_min", "people_count_max"), "count_qualifier", "claim_range"]},
        ),
        ("Where", {"fields": ["place_list"]}),
        (
            "Review",
            {
                "fields": [
                    ("review_state", "verification"),
                    "corroboration",
                    "confidential",
                    ("created_by", "last_changed_by", "last_changed_at"),
                    "expected_version",
                    "submission_key",
                ],
                "description": "Review state and verification change through the review actions: below this "
                "page's Save, and on the incident list.",
            },
        ),
    ]

    list_display = [
        "public_id",
        "title",
        "incident_type",
        "date_label",
        "people",
        "place_names",
        "verification",
        "review_state",
        "last_changed_at",
    ]
    list_display_links = ["public_id", "title"]
    list_filter = [IncidentTypeFilter, "verification", "review_state", CountryFilter, DateRangeFilter, "confidential"]
    list_select_related = ["incident_type"]
    # Only switches the search box on; get_search_results applies the one search (incidents/search.py).
    search_fields = ["public_id", "title", "description"]
    search_help_text = (
        'Every word or "phrase" must match, as a whole word, in ids (INC-000042), titles, descriptions, '
        "places (and their other names), involved organizations (names, acronyms, aliases), or the "
        "sources of claims (titles, publishers, excerpts). End a word with * for the words that start so "
        "(repatriat*; Korean words always match so). -word leaves out what it matches."
    )
    ordering = ["-date_start", "-id"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = [
        review_step_action("submit_for_review", "submit", "Submit for review", "Submitted for review"),
        review_step_action("publish", "publish", "Publish", "Published"),
        review_step_action("return_to_draft", "return_to_draft", "Return to draft", "Returned to draft"),
        *(verification_action(verification) for verification in Verification),
    ]

    def filter_errors(self, request) -> dict[str, list[str]]:
        return {**super().filter_errors(request), **filter_parameter_errors(request)}

    def get_queryset(self, request):
        incidents = (
            super()
            .get_queryset(request)
            .prefetch_related(Prefetch("places", queryset=Place.objects.with_path().order_by("name")))
            .with_last_change_told(request.user)
        )
        # Only the change page shows the range the sources report and their origins; the list need
        # not pay for them.
        if request.resolver_match and request.resolver_match.url_name == "incidents_incident_change":
            incidents = incidents.with_claim_figures(request.user).with_corroboration(request.user)
        elif _lists_in_review(request):
            incidents = incidents.with_submitted_at(request.user)
        return incidents

    def autocomplete_labelled(self, queryset):
        """Each incident offered by the autocomplete (a response's incidents) with its dates: two
        reports of one repatriation, "about 500" and "around 500", read alike by id and title."""
        return queryset.annotate(
            autocomplete_label=Concat(
                "public_id",
                Value(": "),
                "title",
                Value(" ("),
                "date_label",
                Value(")"),
                output_field=models.TextField(),
            )
        )

    def get_ordering(self, request):
        # A Reviewer works through the incidents in review as a queue, oldest submitted first (those
        # whose history records no submission last); it sorted by incident date.
        # The list reads the submission time in its own query (`with_submitted_at`), for the few
        # thousand incidents in review only (README, "The analysts' admin"). An expression, not the
        # name: the admin orders its queryset before `get_queryset` here annotates it.
        if _lists_in_review(request):
            return [F("submitted_at").asc(nulls_last=True), "id"]
        return super().get_ordering(request)

    def get_list_display(self, request):
        # A Reviewer works through the incidents in review oldest submitted first.
        list_display = super().get_list_display(request)
        return [*list_display, "submitted_at"] if _lists_in_review(request) else list_display

    # The change time and last writer the reader is told (`with_last_change_told`): a reader without
    # Confidential access read those of an edit of what is hidden from them (a confidential claim).
    @admin.display(description="Updated at", ordering="last_changed_at")
    def last_changed_at(self, incident):
        # As the admin writes a time field (a method's value is written as Python prints it).
        return display_for_value(getattr(incident, "last_changed_at", None), self.get_empty_value_display())

    @admin.display(description="Updated by")
    def last_changed_by(self, incident):
        return getattr(incident, "last_changed_by", None)

    @admin.display(description="Submitted for review", ordering="submitted_at")
    def submitted_at(self, incident):
        return incident.submitted_at

    # The one search's words, `repatriat*` included, reach get_search_results as typed
    # (accounts/admin_site.py's BoundedSearchMixin).
    searches_prefixes = True

    def get_search_results(self, request, queryset, search_term):
        # Reached within the bounds every admin search keeps (accounts/admin_site.py).
        return IncidentSearch.parse(search_term).filter(queryset, user=request.user), False

    @admin.display(description="People", ordering="people_count")
    def people(self, incident):
        # With its qualifier, as the public pages word it ("about 500 (300-600)"): the bare figure
        # read an "about 500" as exactly 500.
        return figure(incident)

    @admin.display(description="Places")
    def place_names(self, incident):
        # By path, as the autocomplete offers them: two "Tumen" (Jilin's, North Hamgyong's) read alike.
        # One a line: paths joined by commas read as one list of words and ">".
        return format_html_join(mark_safe("<br>"), "{}", ((place.path,) for place in incident.places.all()))

    # What a read-only page shows for the form's place_list field (viewers have no form).
    place_list = place_names

    @admin.display(description="Sources say")
    def claim_range(self, incident):
        # What the saved claims the reader may see say, qualifiers and all, as the public page says
        # it: "500 people, according to every source" read an "about 500" as exactly 500.
        if getattr(incident, "claim_figures", None) is None:
            # The add page, also when it comes back with the claims typed but not saved (a refused
            # save): "No source gives a figure yet" there denied the figures typed below.
            return "Summed up once the incident and its claims are saved."
        said = sources_say(incident) or "No source gives a figure yet."
        if getattr(incident, "claims_typed_unsaved", False):
            # A refused save of the change page shows the claims as typed; this, as saved.
            return f"As saved, before the changes below: {said}"
        return said

    @admin.display(description="Corroboration")
    def corroboration(self, incident):
        figures = getattr(incident, "corroboration", None)
        if figures is None:
            return "Counted once the incident is saved."
        return corroboration_summary(figures, incident.verification)

    # Writing: the incident and its inlines go to one service call, all or nothing.

    def save_model(self, request, obj, form, change):
        """Nothing yet: save_related writes the incident together with its inlines in one service
        call, once the inline formsets have been validated too."""

    def save_related(self, request, form, formsets, change):
        data = {
            field.name: form.cleaned_data[field.name]
            for field in Incident._meta.concrete_fields
            if field.name in form.cleaned_data
        }
        children = {
            formset.fk.remote_field.get_accessor_name(): _inline_rows(formset) + formset.rows_kept()
            for formset in formsets
        }
        places = form.cleaned_data["place_list"]
        if change:
            written = incident_update(
                incident=form.instance,
                user=request.user,
                **form.edited_version(),
                data=data,
                places=places,
                submission=_submission(request),
                **children,
            )
            if isinstance(written, IncidentRevision):
                request.incident_revision = written
            request.saved_unchanged = not isinstance(written, IncidentRevision) and form.saved_unchanged(written)
        else:
            created = incident_create(
                user=request.user, data=data, places=places, submission=_submission(request), **children
            )
            # The admin goes on with the form's instance (to log the addition and redirect): make it
            # the row the service created.
            form.instance.pk = created.pk
            form.instance.refresh_from_db()
            form.instance._state.adding = False

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and request.method == "GET":
            self.tell_about_pending_revisions(request, obj)
            self.tell_about_waiting_duplicate_pairs(request, obj)
        if obj is not None and request.method == "POST":
            # Re-shown after a refused save: the inlines hold what was typed, the summary of the
            # claims (claim_range) what is saved.
            obj.claims_typed_unsaved = True
        if obj is not None:
            # The version the review buttons send (`reviewed_version`), as the Reviewer is told it:
            # on a refused save shown again, the one its form was opened at, not the one stored now,
            # which may be a colleague's save since (the refusal's very reason) that a Publish would
            # have sent out unread. Without it (a tampered form), no button.
            shown = (
                request.POST.get("expected_version", "") if request.method == "POST" else version_tag(obj, request.user)
            )
            context["reviewed_version"] = shown
            context["review_actions"] = [
                (action.name, action.description)
                for action in self.get_actions(request).values()
                if shown and hasattr(action.func, "applies_to") and action.func.applies_to(obj)
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def tell_about_pending_revisions(self, request, incident):
        """The page shows the published version: without a word, an analyst who reopens an incident
        after proposing a change sees the old values, as if the change were lost, and proposes it
        again, making the first one stale once either is accepted; a Reviewer's save makes them all
        stale."""
        pending = list(
            IncidentRevision.objects.visible_to(request.user)
            .filter(incident=incident, state="pending")
            .select_related("proposed_by")
            .order_by("pk")
        )
        if not pending:
            return
        links = format_html_join(
            ", ",
            '<a href="{}">revision {}</a> (by {}{})',
            (
                (
                    reverse("admin:incidents_incidentrevision_change", args=[revision.pk]),
                    revision.pk,
                    revision.proposed_by.get_username()
                    if revision.proposed_by and not revision.proposal_withheld
                    else "someone",
                    "; stale: it cannot be accepted" if revision.is_stale else "",
                )
                for revision in pending
            ),
        )
        if may_publish(request.user):
            saving = "a change saved here applies at once, and the waiting revisions can then no longer be accepted"
        else:
            saving = (
                "a change saved here is proposed as another revision, and once one is accepted "
                "the others can no longer be"
            )
        self.message_user(
            request,
            format_html(
                "Proposed changes of {} wait for a Reviewer: {}. This page shows the published version; {}.",
                incident.public_id,
                links,
                saving,
            ),
            messages.WARNING,
        )

    def tell_about_waiting_duplicate_pairs(self, request, incident):
        """The queue holds the pairs, but the incident's page did not say it was in one: a Reviewer
        publishing it, or an analyst editing it, could not tell it may be a second report of
        another. The pairs are those waiting in the queue's list (both incidents visible to the
        reader), one decided the same and not merged too."""
        pairs = list(
            self.admin_site.get_model_admin(DuplicatePair)
            .get_queryset(request)
            .waiting()
            .filter(Q(incident_a=incident) | Q(incident_b=incident))
            .select_related("incident_a", "incident_b")
            .order_by("-score", "pk")
        )
        if not pairs:
            return
        # The other incidents the message names, which `records_shown` records as read.
        request.incidents_in_messages = [
            pair.incident_b if pair.incident_a_id == incident.pk else pair.incident_a for pair in pairs
        ]
        links = format_html_join(
            ", ",
            '<a href="{}">{}</a> (score {})',
            (
                (
                    reverse("admin:incidents_duplicatepair_change", args=[pair.pk]),
                    pair.incident_b if pair.incident_a_id == incident.pk else pair.incident_a,
                    # Decided the same by a Reviewer, it waits for its merge (`waiting`).
                    f"{pair.score:.2f}; decided the same, not merged yet"
                    if pair.decision == DuplicateDecision.SAME
                    else f"{pair.score:.2f}",
                )
                for pair in pairs
            ),
        )
        self.message_user(
            request,
            format_html(
                "{} may be a second report of: {}. Open a pair to compare and decide.", incident.public_id, links
            ),
            messages.WARNING,
        )

    def get_deleted_objects(self, objs, request):
        """Django's list of what a deletion takes and what protects it, with the responses a
        confidential incident is the only incident of (`services.responses_left_about_none`): the
        service refuses to leave them about none, so the confirmation names them as protecting it."""
        deleted, counts, permissions_needed, protected = super().get_deleted_objects(objs, request)
        # Its duplicate pairs and revisions are its own working records, which go with it (the
        # service deletes it, by its rule: `may_delete`); their admins offer no deletion of their
        # own, and Django refused every incident with a pair (403), most of them once rescored.
        # So are its undone merges (their history kept); one not undone protects it, named below.
        permissions_needed = permissions_needed - {
            str(model._meta.verbose_name) for model in (DuplicatePair, IncidentRevision, IncidentMerge)
        }
        left = responses_left_about_none(list(objs))
        named = [
            format_html(
                '{}: <a href="{}">{}</a>',
                capfirst(response._meta.verbose_name),
                reverse("admin:incidents_response_change", args=[response.pk]),
                response,
            )
            for response in left
        ]
        still_merged = [refusal.args[0] for refusal in merges_refusing_deletion(objs)]
        return deleted, counts, permissions_needed, [*protected, *named, *still_merged]

    def records_shown(self, request, incident) -> list:
        return getattr(request, "incidents_in_messages", [])

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        can_add_place = self.admin_site.get_model_admin(Place).has_add_permission(request)
        # The rows' refusals are shown on their rows (RowsFormSet.clean).
        rows = {inline.model._meta.get_field("incident").remote_field.get_accessor_name() for inline in self.inlines}
        return type(form.__name__, (form,), {"can_add_place": can_add_place, "refusals_shown_on_rows": rows})

    def get_inline_formsets(self, request, formsets, inline_instances, obj=None):
        inline_formsets = super().get_inline_formsets(request, formsets, inline_instances, obj)
        for inline_formset in inline_formsets:
            # Each form drawn under its own row (RowsAdminFormSet): Django's method builds its
            # InlineAdminFormSet itself, and offers no hook for another class.
            inline_formset.__class__ = RowsAdminFormSet
        return inline_formsets

    def get_formsets_with_inlines(self, request, obj=None):
        refusal = getattr(request, "service_refusal", None)
        for formset, inline in super().get_formsets_with_inlines(request, obj):
            page = inline.rows_page(request, obj) if obj is not None else None
            yield type(formset.__name__, (formset,), {"service_refusal": refusal, "rows_page": page}), inline

    def construct_change_message(self, request, form, formsets, add=False):
        # The service, not the formsets, saved the inlines, so only the incident's own fields are
        # summarised here; the History page has every field of every row.
        return construct_change_message(form, [], add)

    def fields_left_out(self, request, obj) -> set[str]:
        left_out = super().fields_left_out(request, obj)
        # A read-only page submits nothing.
        return left_out | {"submission_key"} if "expected_version" in left_out else left_out

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            submission = _submission(request) if object_id is not None and request.method == "POST" else None
            if submission is not None:
                # Before the form's version check, which the first Save made stale.
                refuse_submitted_before(request.user, submission, changed_since=False)
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if submission is not None and response.status_code == 200:
                # Refused as stale by a first Save committed while this one was being checked.
                refuse_submitted_before(request.user, submission, changed_since=False)
            return response
        except SubmittedBefore as before:
            if before.same:
                # Sent again as it was: answered as the first Save was, and told so.
                done = "changed" if object_id is not None else "added"
                self.message_user(
                    request,
                    f"This page's Save reached the tracker more than once (pressed twice, or again after going "
                    f"back): {before.incident.public_id} was {done} once.",
                    messages.INFO,
                )
                if object_id is not None:
                    return self.response_change(request, before.incident)
                return self.response_add(request, before.incident)
            added = before.incident.public_id
        # Changed since it was saved (Back, an edit, Save): kept on the page with a new key, so that
        # a Save after reading why adds it as another incident, as asked.
        request.POST = request.POST.copy()
        request.POST["submission_key"] = uuid.uuid4().hex
        request.service_refusal = ValidationError(
            f"This page was saved already, as {added}, and changed since: nothing was added. "
            f"Save again to add it as another incident, or open {added} to change it."
        )
        return super().changeform_view(request, object_id, form_url, extra_context)

    def response_add(self, request, obj, post_url_continue=None):
        self.warn_about_possible_duplicates(request, obj)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        revision = getattr(request, "incident_revision", None)
        if revision is not None:
            self.message_user(
                request,
                f"{obj.public_id} is published, so your changes wait for a Reviewer as revision {revision.pk}; "
                "readers see the published version until it is accepted.",
                messages.WARNING,
            )
            response = HttpResponseRedirect(reverse("admin:incidents_incident_change", args=[obj.pk]))
        else:
            self.warn_about_possible_duplicates(request, obj)
            response = super().response_change(request, obj)
        return _back_on_the_page_of_claims_saved(request, response)

    def warn_about_possible_duplicates(self, request, incident):
        """Warn, never block: two reports of one event are common, and so are two events alike."""
        duplicates = list(
            Incident.objects.visible_to(request.user)
            .possible_duplicates_of(incident, window_days=settings.DUPLICATE_WINDOW_DAYS)
            .order_by("date_start", "id")[:10]
        )
        if not duplicates:
            return
        # Shown on the page the save leads to, with their titles: a read of the confidential ones.
        self.record_shown(request, confidential_among(duplicates, request.user))
        links = format_html_join(
            ", ",
            '<a href="{}">{}</a> ({})',
            (
                (reverse("admin:incidents_incident_change", args=[duplicate.pk]), duplicate, duplicate.date_label)
                for duplicate in duplicates
            ),
        )
        self.message_user(
            request,
            format_html(
                "Possible duplicates (same type, dates within {} days, same place or country): {}",
                settings.DUPLICATE_WINDOW_DAYS,
                links,
            ),
            messages.WARNING,
        )

    def apply_to_selected(self, request, queryset, write, done: str):
        incidents = list(queryset)
        if not incidents:
            # Said plainly: the success message listed no incident ("Published: .").
            self.message_user(
                request,
                f"Nothing was changed. None of the selected incidents could be {done.lower()}: none is in this "
                "list any longer (deleted, merged, changed out of its filters, or hidden from you since the "
                "page was shown). Reload the list and select them again.",
                messages.ERROR,
            )
            return
        try:
            with transaction.atomic():
                for incident in incidents:
                    write(incident)
        except (PermissionDenied, ValidationError, VersionConflict) as refusal:
            self.message_user(request, f"Nothing was changed. {_refusal_reason(refusal)}", messages.ERROR)
            return
        self.message_user(request, f"{done}: {', '.join(incident.public_id for incident in incidents)}.")

    # The menu offers only the actions the user's role allows (Django asks has_<name>_permission);
    # the services still refuse any other, whatever door it comes through.

    def _may_take(self, request, action: str) -> bool:
        return request.user.has_perm(WORKFLOW[action][2])

    def has_submit_permission(self, request):
        return self._may_take(request, "submit")

    def has_publish_permission(self, request):
        return self._may_take(request, "publish")

    def has_return_to_draft_permission(self, request):
        return self._may_take(request, "return_to_draft")

    def has_verify_permission(self, request):
        return request.user.has_perm("incidents.verify_incident")


def _lists_in_review(request) -> bool:
    """Whether the request is for the incident list filtered to the incidents in review."""
    return (
        request.resolver_match is not None
        and request.resolver_match.url_name == "incidents_incident_changelist"
        and request.GET.get("review_state__exact") == ReviewState.IN_REVIEW
    )
