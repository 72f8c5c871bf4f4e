"""Screens for what incidents refer to: sources, organizations, places, incident types, responses.

Each has search fields, so the incident page can offer them through autocomplete, and a change
form that carries the version it was opened at (`EditedVersionForm`)."""

import json

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.widgets import AutocompleteMixin, get_select2_language
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import models
from django.db.models import F, Func
from django.db.models.functions import Cast
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from incidents import services
from incidents.access import confidential_among
from incidents.admin.access import ConfidentialReadsMixin
from incidents.admin.base import (
    ConfidentialityOfferedMixin,
    EditedVersionForm,
    HeldChoicesFieldListFilter,
    TrackedModelAdmin,
)
from incidents.languages import LanguageCodeField, language_label, languages_matching
from incidents.models import IncidentType, Organization, Place, Response, Source
from incidents.querysets import STAFF_ONLY_FIELDS, can_see_unpublished


class LanguageAutocomplete(forms.Select):
    """A language picked by its name or code, as the admin's other autocompletes pick a record
    (select2, which the admin ships): the 7,900 languages of ISO 639-3 come from
    `SourceAdmin.languages_view` as the analyst types, where a select holding them all made each
    source's page 400 KB. The page holds the chosen language alone, by its name."""

    media = AutocompleteMixin.media

    def __init__(self, attrs=None):
        super().__init__(attrs)
        self.i18n_name = get_select2_language()

    def build_attrs(self, base_attrs, extra_attrs=None):
        attrs = super().build_attrs(base_attrs, extra_attrs=extra_attrs)
        attrs.update(
            {
                "data-ajax--cache": "true",
                "data-ajax--delay": 250,
                "data-ajax--type": "GET",
                "data-ajax--url": reverse("admin:incidents_source_languages"),
                "data-theme": "admin-autocomplete",
                "data-allow-clear": "true",
                "data-placeholder": "",  # lets the language be cleared: blank, not known
                "lang": self.i18n_name,
                "class": " ".join(filter(None, [attrs.get("class"), "admin-autocomplete"])),
            }
        )
        return attrs

    def optgroups(self, name, value, attrs=None):
        chosen = next((code for code in value if code), "")
        options = [self.create_option(name, "", "", not chosen, 0)]
        if chosen:
            # What the form was sent, named when it is a language: a refused value is shown as sent.
            options.append(self.create_option(name, chosen, language_label(chosen), True, 1))
        return [(None, options, 0)]


class LanguageListFilter(HeldChoicesFieldListFilter):
    """The languages the sources its reader may see are in, by name ("Korean (ko)"), blank as "Not
    known". Its parameter is `language__exact`, as a choices field's: Django's filter of a field's
    values sent `?language=ko`, which the list refuses (`OfferedFiltersOnlyMixin`). The field has no
    choices (ISO 639 has thousands of codes), so the held codes are named and sorted by name here."""

    def held_choices(self, field, held: set) -> list[tuple]:
        named = [(code, language_label(code) if code else "Not known") for code in held]
        return sorted(named, key=lambda choice: (choice[0] == "", choice[1].casefold()))


class SourceForm(ConfidentialityOfferedMixin, EditedVersionForm):
    another_source_confirmed = forms.BooleanField(
        required=False,
        label="This is another source",
        help_text="Tick it if the source named above is not the one you are adding, then save again.",
    )


@admin.register(Source)
class SourceAdmin(ConfidentialReadsMixin, TrackedModelAdmin):
    """On adding a source that looks like one already recorded (services.source_lookalikes), the
    form names it and asks for "This is another source" before saving: the same article entered
    twice split its claims between two records. The box appears only then, and stays once ticked."""

    form = SourceForm
    list_display = ["title", "kind", "publisher", "published_on", "language_shown", "confidential"]
    list_filter = ["kind", "confidential", ("language", LanguageListFilter)]
    list_select_related = ["publisher"]
    search_fields = ["title", "author", "url", "publisher__name", "publisher__acronym"]
    autocomplete_ranked_by = ["title"]
    autocomplete_fields = ["publisher", "cites"]

    def autocomplete_labelled(self, queryset):
        """Each source offered by the autocomplete (a claim's, a response's, a source's `cites`)
        with its publisher and date where it has them: HRW's and Amnesty's "Annual report 2023"
        were offered word for word alike, and one's figure could be pinned on the other."""
        label = Func(
            F("title"),
            F("publisher__name"),
            Cast("published_on", models.TextField()),
            function="concat_ws",
            template="%(function)s(' · ', %(expressions)s)",  # PostgreSQL's: the missing ones left out
            output_field=models.TextField(),
        )
        return queryset.annotate(autocomplete_label=label)

    date_hierarchy = "published_on"
    fieldsets = [
        (None, {"fields": ["title", "kind", "url", "archive_url"]}),
        ("Who and when", {"fields": ["publisher", "author", "published_on", "language"]}),
        ("Chain of sources", {"fields": ["cites"]}),
        ("Protection", {"fields": ["confidential", "notes", "expected_version"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if not can_see_unpublished(request.user):
            # Staff-only fields (the internal notes) as the API shows them to such an account: not
            # at all. Shown, they read the notes the API hid; typed in, they were dropped unsaid.
            hidden = STAFF_ONLY_FIELDS["source"]
            fieldsets = [
                (name, {**options, "fields": [field for field in options["fields"] if field not in hidden]})
                for name, options in fieldsets
            ]
        asked = isinstance(getattr(request, "service_refusal", None), services.SourceLooksLikeAnother)
        if obj is None and (asked or request.POST.get("another_source_confirmed")):
            return [(None, {"fields": ["another_source_confirmed"]}), *fieldsets]
        return fieldsets

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        refusal = getattr(request, "service_refusal", None)
        if isinstance(refusal, services.SourceLooksLikeAnother):
            # The form names the sources the new one looks like: a read of the confidential ones.
            lookalikes = [lookalike.source for lookalike in refusal.lookalikes]
            self.record_shown(request, confidential_among(lookalikes, request.user))
        return super().render_change_form(request, context, add, change, form_url, obj)

    formfield_overrides = {LanguageCodeField: {"widget": LanguageAutocomplete}}

    # The autocomplete's page of languages: as many as Django's own autocomplete gives a page.
    LANGUAGES_PER_PAGE = 20

    def save_options(self, form) -> dict:
        return {"another_source_confirmed": bool(form.cleaned_data.get("another_source_confirmed"))}

    @admin.display(description="language", ordering="language")
    def language_shown(self, source):
        return language_label(source.language) if source.language else ""

    def get_urls(self):
        languages = self.admin_site.admin_view(self.languages_view)
        return [path("languages/", languages, name="incidents_source_languages"), *super().get_urls()]

    def languages_view(self, request):
        """The languages whose name or code holds `term` (the language field's autocomplete), in
        select2's format, a page (`page`) at a time. For those who may add or change a source; no query."""
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        matching = Paginator(languages_matching(request.GET.get("term", "")), self.LANGUAGES_PER_PAGE)
        page = matching.get_page(request.GET.get("page"))
        return JsonResponse(
            {
                "results": [{"id": code, "text": label} for code, label in page],
                "pagination": {"more": page.has_next()},
            }
        )


@admin.register(Organization)
class OrganizationAdmin(TrackedModelAdmin):
    form = EditedVersionForm
    list_display = ["name", "acronym", "kind", "country"]
    list_filter = ["kind", ("country", HeldChoicesFieldListFilter)]
    search_fields = ["name", "acronym"]
    autocomplete_ranked_by = ["name", "acronym"]


class PlaceForm(EditedVersionForm):
    """The place's "In no country" box, which its rule (`Place.clean`) reads: a place with neither
    parent nor country is refused unless ticked."""

    in_no_country = forms.BooleanField(
        label="In no country",
        required=False,
        help_text="A place no country contains, such as a sea: kept without parent or country.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A place already kept in no country was said to be: its edits are not asked again.
        self.fields["in_no_country"].initial = self.instance.pk is not None and self.instance.is_nowhere
        if "parent" in self.fields:  # not on a read-only page (a Viewer's): a KeyError, a 500
            self.fields["parent"].help_text = (
                "The place that contains it, picked by its path (type “Jilin”, pick China > Jilin); it takes "
                "that place's country."
            )

    def clean(self):
        cleaned_data = super().clean()
        # Said before the model's validation (`_post_clean`) and `record_save` read it.
        self.instance.in_no_country = cleaned_data.get("in_no_country", False)
        return cleaned_data


@admin.register(Place)
class PlaceAdmin(TrackedModelAdmin):
    form = PlaceForm
    # Where it is comes first: the "+" pop-up of the incident page showed the parent below the
    # alternate names, and an analyst saved "Tumen" by its name alone.
    fieldsets = [
        (None, {"fields": ["name", "kind"]}),
        ("Where it is", {"fields": ["parent", "country", "country_inherited", "in_no_country"]}),
        ("Other names", {"fields": ["alternate_names"]}),
        ("Coordinates", {"fields": ["latitude", "longitude", "sensitive", "expected_version"]}),
    ]
    # Beside the mark, whether the public sees the place coarsened: a place inside a sensitive one is.
    # Whether its country is its parent's, which it follows: the form says so beside the country.
    readonly_fields = ["country_inherited"]
    list_display = ["name", "kind", "parent", "country", "sensitive", "within_sensitive"]
    list_filter = ["kind", ("country", HeldChoicesFieldListFilter), "sensitive", "within_sensitive"]
    list_select_related = ["parent"]
    # Its other names too, which its form asks for so: a Korean source's "연길" found no Yanji.
    search_fields = ["name", "alternate_names", "parent__name"]
    autocomplete_ranked_by = ["name"]
    autocomplete_fields = ["parent"]

    def autocomplete_labelled(self, queryset):
        """Each place offered by the autocomplete (an incident's places, a place's parent) by its
        path, which tells apart places of one name."""
        return queryset.with_path().annotate(autocomplete_label=F("path"))

    def response_add(self, request, obj, post_url_continue=None):
        return self._chosen_by_path(request, obj, super().response_add(request, obj, post_url_continue))

    def response_change(self, request, obj):
        return self._chosen_by_path(request, obj, super().response_change(request, obj))

    def _chosen_by_path(self, request, place, response):
        """A place made (or changed) in the incident page's "+" pop-up goes back to that page by its
        path, as the autocomplete offers it, not by its name alone."""
        if IS_POPUP_VAR in request.POST and isinstance(response, TemplateResponse):
            chosen = json.loads(response.context_data["popup_response_data"])
            chosen["obj"] = Place.objects.with_path().values_list("path", flat=True).get(pk=place.pk)
            response.context_data["popup_response_data"] = json.dumps(chosen)
        return response


@admin.register(IncidentType)
class IncidentTypeAdmin(TrackedModelAdmin):
    form = EditedVersionForm
    list_display = ["name", "slug", "parent"]
    list_select_related = ["parent"]
    search_fields = ["name", "slug"]
    autocomplete_ranked_by = ["name"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["parent"]


@admin.register(Response)
class ResponseAdmin(TrackedModelAdmin):
    form = EditedVersionForm
    list_display = ["__str__", "organization", "kind", "date"]
    list_filter = ["kind"]
    list_select_related = ["organization"]
    search_fields = ["description", "organization__name", "organization__acronym"]
    autocomplete_fields = ["organization", "incidents", "source"]
    date_hierarchy = "date"
