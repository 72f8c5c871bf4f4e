"""What every analysts' screen shares: visibility, the record of the confidential records it shows,
the audit history view, estimated counts."""

import copy
import re
import sys
from urllib.parse import quote

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR, IncorrectLookupParameters
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import NestedObjects, flatten_fieldsets, get_fields_from_path, unquote
from django.contrib.admin.views.main import ERROR_FLAG, IGNORED_PARAMS, ORDER_VAR, PAGE_VAR
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.core.paginator import InvalidPage, Paginator
from django.db import connection, models, router, transaction
from django.db.models import Prefetch, prefetch_related_objects
from django.db.models.lookups import IsNull
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import capfirst

from incidents import services
from incidents.access import (
    NO_RECORDS,
    ConfidentialRecords,
    confidential_among,
    confidential_records_of,
    record_confidential_access,
)
from incidents.filters import DateAsWrittenField, WholeNumberField
from incidents.history import history_entries, history_visible_to
from incidents.models import WHO_AND_WHEN_WITHHELD, AccessDoor, Claim
from incidents.numbers import COUNT_MODEL_FIELDS, is_whole_number
from incidents.parameters import parameter_errors
from incidents.querysets import (
    EditedVersion,
    can_see_confidential,
    can_see_unpublished,
    estimated_row_count,
    limit_to_visible,
    version_seen_by,
    version_tag,
)

# What a service raises when it refuses a write; the admin shows it on the form.
SERVICE_REFUSALS = (ValidationError, PermissionDenied, services.VersionConflict)


def refusal_text(refusal: Exception) -> str:
    """The refusal as the page's message, each field's errors after its name ("Note: …")."""
    if hasattr(refusal, "error_dict"):
        return " ".join(
            f"{capfirst(field.replace('_', ' '))}: {' '.join(messages)}"
            for field, messages in refusal.message_dict.items()
        )
    return " ".join(getattr(refusal, "messages", [str(refusal)]))


HISTORY_PAGE_SIZE = 100


def load_visible_links(obj, field_names, user) -> list:
    """The records that `obj`'s link fields among `field_names` (foreign keys, many-to-many) name
    and `user` may see, loaded into `obj` so that a page reading them shows those only: a link to
    a hidden record reads as empty. One query per link field to a model with visibility rules."""
    links = []
    for name in field_names:
        try:
            field = obj._meta.get_field(name)
        except FieldDoesNotExist:
            continue  # a value the admin computes (`readonly_fields`), not a link
        if (field.many_to_one or field.many_to_many) and hasattr(
            field.related_model._default_manager.none(), "visible_to"
        ):
            links.append(field)
    for field in links:
        # Loaded afresh: a link read before this was read through no visibility rule.
        obj._state.fields_cache.pop(field.name, None)
        getattr(obj, "_prefetched_objects_cache", {}).pop(field.name, None)
    prefetch_related_objects(
        [obj],
        *(Prefetch(field.name, queryset=field.related_model._default_manager.visible_to(user)) for field in links),
    )
    named = []
    for field in links:
        named.extend(getattr(obj, field.name).all() if field.many_to_many else [getattr(obj, field.name)])
    return [record for record in named if record is not None]


class VisibilityMixin:
    """Rows, inline rows and every choice offered in a form (select, autocomplete, filter) go through
    `visible_to(user)`, so a user without the confidential permission meets no confidential record;
    nor does a read-only page, which shows each link by the name of the record it links to."""

    def get_queryset(self, request):
        return limit_to_visible(super().get_queryset(request), request.user)

    def get_field_queryset(self, db, db_field, request):
        queryset = super().get_field_queryset(db, db_field, request)
        if queryset is None:
            queryset = db_field.remote_field.model._default_manager.using(db).all()
        return limit_to_visible(queryset, request.user)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            # Kept on the request for `RecordedReadsMixin`, which records the confidential ones.
            request.links_shown = load_visible_links(
                obj, flatten_fieldsets(context["adminform"].fieldsets), request.user
            )
        return super().render_change_form(request, context, add, change, form_url, obj)


class RecordedReadsMixin:
    """Every change, delete confirmation and list page records the confidential incidents, claims
    and sources it shows its reader (incidents.access), one record per page, door admin: a record's
    page its record (an incident with its claims), what its fields link to, and what
    `records_shown` adds; a delete confirmation, the record's or "Delete selected"'s, every record it
    names (`get_deleted_objects`); a list page what `records_listed` says its rows show. (The history page,
    `TrackedModelAdmin.history_view`, records its record and what its entries name.) Nothing, and
    no query, for a reader without the confidential permission, who is shown none."""

    def records_shown(self, request, obj) -> list:
        """What `obj`'s change page shows besides its own fields and links, for an admin whose page
        shows more (a side-by-side comparison, a proposed change). Runs only for readers with the
        confidential permission."""
        return []

    def records_listed(self, request, rows) -> list:
        """What a page of the list shows: its rows, and for an admin whose columns name other
        records, those. Read from the page's rows, loaded with what they name: no query."""
        return list(rows)

    @staticmethod
    def record_shown(request, records: ConfidentialRecords) -> None:
        record_confidential_access(
            user=request.user, door=AccessDoor.ADMIN, records=records, path=request.get_full_path()
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        response = super().render_change_form(request, context, add, change, form_url, obj)
        if obj is not None and can_see_confidential(request.user):
            shown = [*getattr(request, "links_shown", []), *self.records_shown(request, obj)]
            self.record_shown(
                request, confidential_records_of(obj, request.user) | confidential_among(shown, request.user)
            )
        return response

    def get_deleted_objects(self, objs, request):
        """The lists of a delete confirmation, the record's page's and "Delete selected"'s alike:
        what would go with `objs` (an incident's claims), counted by kind, and what protects them
        (a source's claims), as Django's `get_deleted_objects` gives them, collected once, with
        the claims' sources in one query: Django's read each claim's source on its own (2,002
        queries and 21 s for an incident of 2,000 claims) and named every record, 20,000 of them
        for a source cited 20,000 times (10 s, a page of 1 MB). Each list names at most
        DELETION_LISTED_MAX records and says how many more there are; the counts are whole. For a
        reader with Confidential access, the confidential records named are kept for the page
        that shows them (`_record_deletion_listed`)."""
        collector = NestedObjects(using=router.db_for_write(self.model), origin=objs)
        collector.collect(objs)
        deleted, named = _bounded(collector.nested(), DELETION_LISTED_MAX)
        protected = sorted(collector.protected, key=lambda record: (record._meta.label, record.pk))
        named += protected[:DELETION_LISTED_MAX]
        # A claim is named by its source (`Claim.__str__`).
        prefetch_related_objects([record for record in named if isinstance(record, Claim)], "source")
        permissions_needed = {
            str(model._meta.verbose_name)
            for model in collector.model_objs
            if self.admin_site.is_registered(model)
            and not self.admin_site.get_model_admin(model).has_delete_permission(request)
        }
        if can_see_confidential(request.user):
            request.deletion_listed = confidential_among(named, request.user)
        return (
            _named_for_deletion(deleted, self.admin_site),
            {model._meta.verbose_name_plural: len(records) for model, records in collector.model_objs.items()},
            permissions_needed,
            _named_for_deletion(
                _with_more(protected[:DELETION_LISTED_MAX], len(protected) - DELETION_LISTED_MAX), self.admin_site
            ),
        )

    def _record_deletion_listed(self, request, response) -> None:
        # Recorded when a confirmation is shown (the record's page names its list `deleted_objects`,
        # "Delete selected"'s `deletable_objects`), not when a confirmed deletion collects them again.
        if _context(response).keys() & {"deleted_objects", "deletable_objects"}:
            self.record_shown(request, getattr(request, "deletion_listed", NO_RECORDS))

    def delete_view(self, request, object_id, extra_context=None):
        response = super().delete_view(request, object_id, extra_context)
        self._record_deletion_listed(request, response)
        return response

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        # The answer to "Delete selected" is its confirmation page.
        self._record_deletion_listed(request, response)
        changelist = _context(response).get("cl")
        if changelist is not None and can_see_confidential(request.user):
            # Evaluates the page's rows, which the template then reads from the same queryset's cache.
            self.record_shown(
                request, confidential_among(self.records_listed(request, changelist.result_list), request.user)
            )
        return response


def _context(response) -> dict:
    """A rendered page's context; empty for a redirect or a download."""
    return getattr(response, "context_data", None) or {}


# The most records a delete confirmation names in each of its lists (what goes with the deletion,
# what protects it); its summary counts them all.
DELETION_LISTED_MAX = 100


class _More(str):
    """A list's last line, saying how many records it leaves unnamed."""


def _with_more(records: list, more: int) -> list:
    """`records`, and a last line saying how many more there are, if any."""
    return [*records, _More(f"… and {more:,} more")] if more > 0 else records


def _flattened(nested: list) -> list:
    """`NestedObjects.nested()`'s records, each under the one it goes with, as one list."""
    return [record for item in nested for record in (_flattened(item) if isinstance(item, list) else [item])]


def _bounded(nested: list, budget: int) -> tuple[list, list]:
    """`NestedObjects.nested()`'s tree cut after its first `budget` records, a `_More` line saying
    how many are left out, and the records it keeps, as one list."""
    kept, named = [], []
    for position, item in enumerate(nested):
        if isinstance(item, list):
            sub_tree, sub_named = _bounded(item, budget - len(named))
            kept.append(sub_tree)
            named += sub_named
        elif len(named) < budget:
            kept.append(item)
            named.append(item)
        else:
            kept = _with_more(kept, len(_flattened(nested[position:])))
            break
    return kept, named


def _named_for_deletion(nested: list, admin_site) -> list:
    """Each record of a delete confirmation's list as Django's `get_deleted_objects` names it: its
    kind, and a link to its page where it has one."""
    named = []
    for item in nested:
        if isinstance(item, list):
            named.append(_named_for_deletion(item, admin_site))
        elif isinstance(item, _More):
            named.append(item)
        else:
            named.append(_named_record(item, admin_site))
    return named


def _named_record(record: models.Model, admin_site) -> str:
    label = capfirst(record._meta.verbose_name)
    if not admin_site.is_registered(type(record)):
        return f"{label}: {record}"
    url = reverse(f"{admin_site.name}:{record._meta.app_label}_{record._meta.model_name}_change", args=[record.pk])
    return format_html('{}: <a href="{}">{}</a>', label, url, str(record))


class WrittenByMixin:
    """A form that depends on who fills it in: `writer`, set by the admin (`for_writer`)."""

    # None: offered nothing, and told the versions of readers without Confidential access.
    writer = None

    @classmethod
    def for_writer(cls, writer):
        return type(cls.__name__, (cls,), {"writer": writer})


class EditedVersionForm(WrittenByMixin, forms.ModelForm):
    """A change form that carries the version it was opened at, which the service compares with
    the stored one (`services.VersionConflict`): a save over someone else's newer one is refused."""

    # The version the user started from; a save is refused if someone saved in between.
    expected_version = forms.CharField(widget=forms.HiddenInput, required=False)
    # A version stale by its writer's own change alone (a Save pressed twice on a slow connection) is
    # left to the service, which answers the page as saved if it holds what is stored
    # (`services.VersionConflict.by_the_writer_alone`), else refuses it as stale.
    stale_by_the_writer_left_to_the_service = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # As its writer is told it, naming the audience they read it as (`version_fields`: an
            # incident's, a source's, a response's differ by audience), which the service compares.
            self.fields["expected_version"].initial = version_tag(self.instance, self.writer)

    def clean(self):
        cleaned_data = super().clean()
        if self.instance.pk:
            # The record still holds what is stored: the form's values are set on it after this.
            cleaned_data.update(services.texts_as_read(self.instance, cleaned_data))
        sent = cleaned_data.get("expected_version")
        # A form error, not a field error: the field is hidden, and so would its error be.
        if self.instance.pk and not sent:
            raise ValidationError("The form lost track of the version you edited; reload the page and try again.")
        try:
            edited = cleaned_data["expected_version"] = EditedVersion.parse(sent) if sent else None
        except ValueError:
            raise ValidationError(
                "The form holds no version this page showed; reload the page and try again."
            ) from None
        # The service refuses a stale version too (`check_version`); said here first, it explains
        # the rows the page showed that are gone since or that the writer may no longer see, which
        # their lookup now refuses (`RowsFormSet.add_fields`: "Select a valid choice") on a hidden
        # field no page draws: after a colleague removed a claim, or their access changed, the
        # writer read "Please correct the error below" with no error anywhere, at every save.
        if edited is not None:
            try:
                services.check_version(self.instance, edited.number, reader=self.writer, told=edited.told)
            except services.VersionConflict as conflict:
                if not (conflict.by_the_writer_alone and self.stale_by_the_writer_left_to_the_service):
                    raise ValidationError(str(conflict)) from None
            except ValidationError as never_had:  # a version it never reached: named on the form
                raise ValidationError(never_had.messages) from None
        return cleaned_data

    def edited_version(self) -> dict:
        """The version the form was opened at, as the services take it (`expected_version`, `told`)."""
        edited = self.cleaned_data.get("expected_version")
        return {} if edited is None else {"expected_version": edited.number, "told": edited.told}

    def saved_unchanged(self, written) -> bool:
        """Whether the service's answer to this form's change, `written`, is the record as it was at
        the version the form was opened at: a Save that changed nothing. The stored record at a later
        version is the writer's own Save sent again, which its first send saved
        (`services.VersionConflict.by_the_writer_alone`), and told as saved."""
        edited = self.cleaned_data.get("expected_version")
        return (
            written is not self.instance
            and edited is not None
            and version_seen_by(written, self.writer, edited.told) == edited.number
        )


class ConfidentialityOfferedMixin(WrittenByMixin):
    """For the form of a record that may be confidential (an incident, a source, a claim): its
    `confidential` box is offered only to a `writer` who may change it from what the record is now
    (`services.confidentiality_change_refusal`). Anyone else is shown it, ticked or not, disabled,
    with the reason under it: the box offered to an analyst without Confidential access was refused
    on every save. A value sent for a disabled box is ignored and the record keeps its own (Django's
    disabled field), as the review state the page shows is; the services still refuse the change
    at every door (the API answers 400 naming the field)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields.get("confidential")
        if field is None:
            return
        refusal = services.confidentiality_change_refusal(self.writer, confidential=self.instance.confidential)
        if refusal is not None:
            field.disabled = True
            field.help_text = refusal


def nested_refusal_key(key: str) -> tuple[str, int, str | None] | None:
    """A service's error key for a row of an incident's (`claims[1].source`, `involvements[0]`) as
    (rows, index, field or None); None for any other key."""
    match = re.fullmatch(r"(\w+)\[(\d+)\](?:\.(\w+))?", key)
    return (match[1], int(match[2]), match[3]) if match else None


class ServiceRefusalForm:
    """Shows a refusal that the service raised on save (the rules live there, not in the form) as
    the form's errors: the admin renders the form again with what the user entered and why."""

    # Set by TrackedModelAdmin.get_form when the service refused the previous attempt at saving.
    service_refusal = None
    # Rows (`claims`) whose refusals (`claims[1].source`) their inline formsets show on the row.
    refusals_shown_on_rows: frozenset[str] = frozenset()

    def clean(self):
        cleaned_data = super().clean()
        refusal = self.service_refusal
        if isinstance(refusal, ValidationError) and hasattr(refusal, "error_dict"):
            for field, field_messages in refusal.message_dict.items():
                row = nested_refusal_key(field)
                if row is not None and row[0] in self.refusals_shown_on_rows:
                    continue
                if field in self.fields:
                    self.add_error(field, field_messages)
                else:
                    self.add_error(None, [f"{field}: {message}" for message in field_messages])
        elif refusal is not None:
            raise ValidationError(" ".join(getattr(refusal, "messages", [str(refusal)])))
        return cleaned_data


class StaffRecordMixin:
    """A record of staff work written by the services and acted on by its own buttons (a proposed
    revision, a merge): staff who may see unpublished records read it; nobody adds, edits or
    deletes one through the admin's forms."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return can_see_unpublished(request.user)

    def has_module_permission(self, request):
        return can_see_unpublished(request.user)


class ParametersListFilter(admin.ListFilter):
    """A list filter of several query-string parameters of its own (`parameter_names`), each read
    as given (the last value, when repeated) into `values`."""

    parameter_names: tuple[str, ...] = ()

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        self.values = {}
        for name in self.parameter_names:
            if name in params:
                value = params.pop(name)
                self.values[name] = value[-1] if isinstance(value, list) else value

    def expected_parameters(self):
        return list(self.parameter_names)


class HeldChoicesFieldListFilter(admin.ChoicesFieldListFilter):
    """A choices field's filter offering only the values the records its reader may see hold: the
    places' and organizations' lists offered all 249 countries, 6,000 pixels of links beside a
    dozen rows. Same parameter (`country__exact`) as Django's own."""

    def __init__(self, field, request, params, model, model_admin, field_path):
        # order_by(): a model's default ordering would join the DISTINCT and repeat the values.
        held = set(model_admin.get_queryset(request).order_by().values_list(field_path, flat=True).distinct())
        offered = copy.copy(field)
        offered.choices = self.held_choices(field, held)
        super().__init__(offered, request, params, model, model_admin, field_path)

    def held_choices(self, field, held: set) -> list[tuple]:
        """The choices offered for the values `held`, in the field's own order."""
        return [(value, label) for value, label in field.flatchoices if value in held]


class FilterValueRefused(IncorrectLookupParameters):
    """A list filter of the project's refused the values of some of its parameters: `errors` holds
    what is wrong, by parameter, so the 400 page links to the list without exactly those."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{parameter}: {' '.join(messages)}" for parameter, messages in errors.items()))
        self.errors = errors


class WaitingFirstFilter(admin.SimpleListFilter):
    """A review queue's filter by its state field, which opens on what waits: no parameter means
    `WAITING`, and "All" is a value of its own (`?state__exact=all`). The queues opened on every
    row, decided ones mixed in. The parameter stays the field filter's (`<field>__exact`), so Home's
    links and bookmarks keep working; a subclass names it, and the title.

    What waits is one value of the field (a revision's "pending"), or, for a queue where it is more
    than one, a choice of its own that the subclass labels (`waiting_label`) and selects (`waiting`)."""

    ALL = "all"
    WAITING = "pending"
    waiting_label: str | None = None

    @property
    def field_name(self) -> str:
        return self.parameter_name.removesuffix("__exact")

    def lookups(self, request, model_admin):
        choices = model_admin.model._meta.get_field(self.field_name).choices
        return choices if self.waiting_label is None else [(self.WAITING, self.waiting_label), *choices]

    def value(self):
        return super().value() or self.WAITING

    def waiting(self, queryset):
        return queryset.filter(**{self.field_name: self.WAITING})

    def queryset(self, request, queryset):
        value = self.value()
        if value == self.ALL:
            return queryset
        if value not in {str(choice) for choice, _label in self.lookup_choices}:
            choices = ", ".join([self.ALL, *(str(choice) for choice, _label in self.lookup_choices)])
            raise FilterValueRefused({self.parameter_name: [f"Choose one of {choices}."]})
        if value == self.WAITING:
            return self.waiting(queryset)
        return queryset.filter(**{self.field_name: value})

    def choices(self, changelist):
        for value, label in [(self.ALL, "All"), *self.lookup_choices]:
            yield {
                "selected": self.value() == str(value),
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }


class FilterCannotBeApplied(Exception):
    """A list filter refused its value while the list was being made (IncorrectLookupParameters,
    which Django's changelist answers with a redirect to a page blaming the database): `errors`
    by parameter, and the `parameters` to drop from the list's link."""

    def __init__(self, refusal: IncorrectLookupParameters | dict[str, list[str]], request):
        super().__init__(str(refusal))
        if isinstance(refusal, dict):
            # The values `filter_errors` refuses before any filter runs.
            self.errors, self.parameters = refusal, list(refusal)
        elif isinstance(refusal, FilterValueRefused):
            self.errors, self.parameters = refusal.errors, list(refusal.errors)
        elif isinstance(refusal.__context__, InvalidPage):
            # A bookmarked page the list no longer reaches (Django raises it bare).
            self.errors, self.parameters = {PAGE_VAR: [NO_SUCH_PAGE]}, [PAGE_VAR]
        else:
            # Django's own refusals do not say which parameter: the link drops every filter.
            self.errors = {"filter": [str(refusal)]}
            self.parameters = [name for name in request.GET if name not in IGNORED_PARAMS]


# The parameters of a list's URL that are not filters: Django's changelist takes them out before
# it asks `lookup_allowed` of the rest.
NOT_FILTERS = {*IGNORED_PARAMS, PAGE_VAR, ERROR_FLAG}
NOT_OFFERED_MESSAGE = "This list offers no such filter."


class OfferedFiltersOnlyMixin:
    """For a ModelAdmin: its list's URL takes only the filters the list offers, and a value one of
    them cannot take gets a 400 naming the parameter and what is wrong, with a link to the list
    without it. Django answered such a value (`?confidential__exact=maybe`) with a redirect to a
    page that blames the database."""

    # The lookups a list filter of a field sends (a choice, a boolean, a related record, empty or
    # not, a date hierarchy's parts); see `lookup_allowed`.
    FIELD_FILTER_LOOKUPS = ("exact", "isnull", "isempty", "id__exact", "year", "month", "day")

    def lookup_allowed(self, lookup, value, request):
        """Only the filters the list offers. Django also accepts any lookup on the model's own
        fields, such as `?cites__id__exact=6`, whose answer (some rows, or none) would confirm
        that the hidden record 6 exists; anything else is refused alike, whatever the value."""
        read_once, read_all = self.offered_parameters(request)
        return lookup in read_once or lookup in read_all

    def offered_parameters(self, request) -> tuple[set[str], set[str]]:
        """The filter parameters the list offers: those it reads one value of (the project's own
        filters, a date hierarchy's parts), and those Django reads every value of, selecting the
        rows of any (a field's filter: `?state__exact=a&state__exact=b`)."""
        read_once, read_all = set(), set()
        for list_filter in self.get_list_filter(request):
            if isinstance(list_filter, type):
                # The project's own filters name their parameters (SimpleListFilter: one).
                read_once.update(getattr(list_filter, "parameter_names", ()))
                read_once.add(getattr(list_filter, "parameter_name", None))
                continue
            field_path = list_filter[0] if isinstance(list_filter, (list, tuple)) else list_filter
            # `id__exact` only of a related record's: of a choice or a flag, Django's path lookup
            # raised NotRelationField, a 500.
            related = get_fields_from_path(self.model, field_path)[-1].is_relation
            read_all.update(
                f"{field_path}__{suffix}"
                for suffix in self.FIELD_FILTER_LOOKUPS
                if related or not suffix.startswith("id__")
            )
        if self.date_hierarchy:
            read_once.update(f"{self.date_hierarchy}__{part}" for part in ("year", "month", "day"))
        read_once.discard(None)
        return read_once, read_all

    def filter_errors(self, request) -> dict[str, list[str]]:
        """What is wrong with the request's filters, by parameter: one the list does not offer
        (Django answered it with a bare "Bad Request (400)" that named nothing), one it reads a
        single value of given twice (`?country=CN&country=KP` listed KP's alone), or an `__exact`
        value its field cannot hold (a boolean's `maybe`, an id's `abc`, a choice's `publishd`), or an
        `__isempty` one not 0 or 1, an `__isnull` one not True or False. No query."""
        errors = {}
        # The project's own filters (and a date hierarchy's parts) are read once and check their
        # values themselves; a field's filter reads every value.
        read_once, read_all = self.offered_parameters(request)
        for parameter, values in request.GET.lists():
            if parameter in NOT_FILTERS:
                continue
            if not all(self.lookup_allowed(parameter, value, request) for value in values):
                errors[parameter] = [NOT_OFFERED_MESSAGE]
                continue
            field_path, _, lookup = parameter.rpartition("__")
            if lookup == "isempty" and not set(values) <= {"0", "1"}:
                # EmptyFieldListFilter refuses anything else with no word of which parameter.
                errors[parameter] = ["Choose 1 (empty) or 0 (not empty)."]
            if lookup == "isnull" and not {value.lower() for value in values} <= {"true", "false", "1", "0"}:
                # Django reads any other value as True (`?review_state__isnull=maybe`): an empty list.
                errors[parameter] = ["Choose True (no value) or False (a value)."]
            if lookup != "exact":
                continue
            try:
                field = get_fields_from_path(self.model, field_path)[-1]
            except FieldDoesNotExist:
                continue  # Not a field's filter: its own filter checks it (FilterCannotBeApplied).
            for value in values:
                try:
                    field.to_python(value)
                except ValidationError as error:
                    errors.setdefault(parameter, []).extend(error.messages)
                    continue
                if field.choices and parameter not in read_once and value not in _choice_values(field):
                    # Django's filter listed nothing for it, which read as "none is published"; a
                    # filter of the project's may offer more (a queue's `all`) and checks its own.
                    errors.setdefault(parameter, []).append(_not_a_choice(field, value))
        # Its own parameters (`o`, `q`, `p`) and filters read one value, the last; a field's filter
        # reads every value. Said of a parameter the list offers, whatever its values are.
        given_twice = parameter_errors(
            request.GET, reads={*read_once, *NOT_FILTERS}, repeatable=read_all, others_refused=False
        )
        return {**errors, **given_twice}

    def changelist_view(self, request, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except FilterCannotBeApplied as refusal:
            return self.filters_refused_response(request, refusal)

    def filters_refused_response(self, request, refusal: FilterCannotBeApplied):
        """The 400 page naming each refused parameter, with a link to the list without them: for
        the list and for every page made from its query string (its CSV export)."""
        context = {
            **self.admin_site.each_context(request),
            "title": "This filter cannot be applied",
            "opts": self.opts,
            "errors": refusal.errors,
            "list_without_them": f"?{_query_without(request, refusal.parameters)}",
        }
        return TemplateResponse(request, "admin/incidents/bad_filter.html", context, status=400)

    def get_changelist_instance(self, request):
        """The list the request's filters select, or FilterCannotBeApplied naming the values they
        refuse, whatever page asks (the list, its actions, its CSV export)."""
        errors = self.filter_errors(request)
        if errors:
            raise FilterCannotBeApplied(errors, request)
        try:
            changelist = super().get_changelist_instance(request)
        except IncorrectLookupParameters as refusal:
            raise FilterCannotBeApplied(refusal, request) from refusal
        if errors := _page_and_ordering_errors(request, changelist):
            raise FilterCannotBeApplied(errors, request)
        return changelist


NO_SUCH_PAGE = "The list has no such page."


def _page_and_ordering_errors(request, changelist) -> dict[str, list[str]]:
    """A page or an ordering the list cannot show, which Django's changelist passes over: `?p=abc`
    and, on a list of one page, `?p=9` showed page 1; `?o=99` (no such column), `?o=1.x`, a column
    that does not sort, the list in its default order, each a 200 read as the page or order asked
    for. Django itself refuses a page past a list of several (`FilterCannotBeApplied`). No query:
    the changelist has counted its rows already. An empty `?o=` is read, as the default order: it
    is what Django's own "remove from sorting" link of the only sorted column sends (a list sorted
    by default shows it at once)."""
    errors = {}
    page = request.GET.get(PAGE_VAR)
    if page is not None and (
        not is_whole_number(page) or int(page) < 1 or (int(page) > 1 and not changelist.multi_page)
    ):
        errors[PAGE_VAR] = [NO_SUCH_PAGE]
    ordering = request.GET.get(ORDER_VAR)
    if ordering:
        for part in ordering.split("."):
            index = part.removeprefix("-")
            if not (
                is_whole_number(index)
                and int(index) < len(changelist.list_display)
                and changelist.get_ordering_field(changelist.list_display[int(index)]) is not None
            ):
                sortable = len([name for name in changelist.list_display if changelist.get_ordering_field(name)])
                errors[ORDER_VAR] = [
                    f"No column sorts by “{part}”: this list sorts by {sortable} of its columns, "
                    "each chosen by clicking its heading."
                ]
                break
    return errors


def _choice_values(field) -> list[str]:
    """The values a choices field holds, as a filter's link sends them."""
    return [str(value) for value, _label in field.flatchoices]


# Choices named in a refusal at most: a country's 249 would fill the page.
CHOICES_NAMED = 12


def _not_a_choice(field, value: str) -> str:
    choices = _choice_values(field)
    if len(choices) > CHOICES_NAMED:
        return f"“{value}” is not one of the {len(choices)} choices."
    return f"“{value}” is not one of the choices: {', '.join(choices)}."


def _query_without(request, names) -> str:
    """The request's query string without the parameters `names` (those refused)."""
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode()


class AsWrittenMixin:
    """Dates and counts read as the other doors read them, with the filters' fields: a date a form
    refuses says how to write it, or why a date so written is no day ("Enter a valid date." left an
    analyst who typed "09/10/2023", refused since it reads as either day first, guessing:
    `incidents.filters.DateAsWrittenField`); a count is written in the digits 0-9 alone ("1.000"
    was saved as 1: `incidents.filters.WholeNumberField`)."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, models.DateField) and not isinstance(db_field, models.DateTimeField):
            kwargs.setdefault("form_class", DateAsWrittenField)
        elif isinstance(db_field, COUNT_MODEL_FIELDS):
            kwargs.setdefault("form_class", WholeNumberField)
        return super().formfield_for_dbfield(db_field, request, **kwargs)


class TrackedModelAdmin(AsWrittenMixin, OfferedFiltersOnlyMixin, RecordedReadsMixin, VisibilityMixin, admin.ModelAdmin):
    """A ModelAdmin whose "History" page shows the audit trail the database triggers record, and
    whose pages record the confidential records they show."""

    # Facet counts would run a COUNT per filter choice; on large tables that is the slow part.
    show_facets = admin.ShowFacets.NEVER

    def fields_left_out(self, request, obj) -> set[str]:
        """Fields not to show on this object's page: on a read-only one, the version it was opened
        at (`EditedVersionForm`), since it submits nothing."""
        if obj is not None and not self.has_change_permission(request, obj):
            return {"expected_version"}
        return set()

    def get_fieldsets(self, request, obj=None):
        left_out = self.fields_left_out(request, obj)
        fieldsets = super().get_fieldsets(request, obj)
        if not left_out:
            return fieldsets
        return [(name, {**options, "fields": _without(options["fields"], left_out)}) for name, options in fieldsets]

    # Writing: every save and deletion goes through the services, which hold the rules (who may,
    # confidentiality, links to records the user may not see); a refusal is shown on the form.

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except SERVICE_REFUSALS as refusal:
            # The service refused the save and its transaction rolled back. Show the form again with
            # what the user entered and the reason.
            request.service_refusal = refusal
            return super().changeform_view(request, object_id, form_url, extra_context)
        except services.RecordNotFound:
            # The record was deleted (a duplicate pair withdrawn by a rescoring) while its save waited
            # for it: told as Django tells a page of a record gone before it opened, not a 500.
            if object_id is None:
                raise
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        refusal = getattr(request, "service_refusal", None)
        bases = (form,) if issubclass(form, ServiceRefusalForm) else (ServiceRefusalForm, form)
        form = type(form.__name__, bases, {"service_refusal": refusal})
        return form.for_writer(request.user) if issubclass(form, WrittenByMixin) else form

    def save_model(self, request, obj, form, change):
        many_to_many = {
            field.name: form.cleaned_data[field.name]
            for field in obj._meta.many_to_many
            if field.name in form.cleaned_data
        }
        written = services.record_save(
            user=request.user,
            record=obj,
            many_to_many=many_to_many,
            **form.edited_version(),
            **self.save_options(form),
        )
        request.saved_unchanged = change and form.saved_unchanged(written)

    def log_change(self, request, obj, message):
        """No entry in the admin's log (its "Recent actions") for a Save that changed nothing
        (`request.saved_unchanged`): Django logged one, "No fields changed.", a change that did not
        happen."""
        if getattr(request, "saved_unchanged", False):
            return None
        return super().log_change(request, obj, message)

    def response_change(self, request, obj):
        """After a Save that changed nothing (`request.saved_unchanged`: the services wrote nothing,
        no version, no history event), Django's "was changed successfully" told the user their Save
        did something; they are told it changed nothing, on the page Django's buttons lead to."""
        if not getattr(request, "saved_unchanged", False) or IS_POPUP_VAR in request.POST:
            return super().response_change(request, obj)
        # Django's words for a change, told of one that did not happen (the admin stays English).
        message = "The {name} “{obj}” was not changed: nothing in the form differed from what is saved."
        link = format_html('<a href="{}">{}</a>', quote(request.path), obj)
        self.message_user(request, format_html(message, name=self.opts.verbose_name, obj=link), messages.INFO)
        if "_continue" in request.POST:
            next_page = request.path
        elif "_addanother" in request.POST:
            next_page = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_add")
        else:
            return self.response_post_save_change(request, obj)
        filters = {"preserved_filters": self.get_preserved_filters(request), "opts": self.opts}
        return HttpResponseRedirect(add_preserved_filters(filters, next_page))

    def save_options(self, form) -> dict:
        """What the form adds to `services.record_save`'s arguments (a source's confirmation that
        it is another source); nothing here."""
        return {}

    def save_related(self, request, form, formsets, change):
        # save_model wrote the many-to-many links through the service (keeping hidden ones).
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def has_delete_permission(self, request, obj=None):
        return services.may_delete(request.user) and super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        services.record_delete(user=request.user, record=obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for record in queryset:
                services.record_delete(user=request.user, record=record)

    def history_subject(self, request, object_id):
        """The record whose history page `object_id` asks for, if the reader may read it."""
        return self.get_object(request, object_id)

    def history_view(self, request, object_id, extra_context=None):
        # History is evidence: the page only reads, and nothing in the admin can change it.
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        obj = self.history_subject(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        page = Paginator(history_visible_to(obj, request.user), HISTORY_PAGE_SIZE).get_page(request.GET.get("p"))
        entries = history_entries(page.object_list, request.user, obj)
        named = [record for entry in entries for record in entry.named]
        self.record_shown(request, confidential_records_of(obj, request.user) | confidential_among(named, request.user))
        context = {
            **self.admin_site.each_context(request),
            "title": f"History: {obj}",
            "subtitle": None,
            "object": obj,
            "opts": self.opts,
            "entries": entries,
            # Said of the rows whose who and when are withheld from the reader (`HistoryEntry.when`: None).
            "who_and_when_withheld": WHO_AND_WHEN_WITHHELD,
            "page": page,
            "preserved_filters": self.get_preserved_filters(request),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/incidents/audit_history.html", context)


def _without(fields, hidden: set[str]) -> list:
    """A fieldset's field list without the hidden names, keeping rows of fields on one line."""
    kept = []
    for field in fields:
        if isinstance(field, (list, tuple)):
            row = [name for name in field if name not in hidden]
            if row:
                kept.append(tuple(row))
        elif field not in hidden:
            kept.append(field)
    return kept


def _unfiltered(where) -> bool:
    """No condition, or only the one every read of incidents carries (`visible_to` leaves merged
    incidents out: a few rows, which the table's estimate may include)."""
    if not where:
        return True
    [condition, *others] = where.children
    return (
        not others
        and isinstance(condition, IsNull)
        and condition.rhs is True
        and getattr(condition.lhs, "target", None) is not None
        and condition.lhs.target.name == "merged_into"
    )


class EstimatedCountPaginator(Paginator):
    """Pages without an exact COUNT(*) over the whole table.

    On the unfiltered list PostgreSQL's own row estimate (pg_class.reltuples) stands in for the
    count; on a filtered list the planner's estimate does when it expects more than
    `exact_count_below` rows, where an exact count would read most of the table and an analyst
    only needs the order of magnitude. Smaller results are counted exactly, up to
    `exact_count_below` rows: the planner can misjudge a search, and the count must not then read
    the whole table."""

    exact_count_below = 10_000

    # How `count` was obtained, for the page to say "about" or "at least": exact, estimate, at_least.
    count_kind = "exact"

    @cached_property
    def count(self):
        queryset = self.object_list
        if queryset.query.is_empty():
            # `none()`, e.g. a search whose words no incident has: no SQL to estimate or run.
            return 0
        unfiltered = _unfiltered(queryset.query.where)
        estimate = estimated_row_count(queryset.model) if unfiltered else self._planner_estimate(queryset)
        if estimate >= self.exact_count_below:
            self.count_kind = "estimate"
            return estimate
        counted = queryset.order_by()[: self.exact_count_below].count()
        if counted == self.exact_count_below:
            self.count_kind = "at_least"
        return counted

    @staticmethod
    def _planner_estimate(queryset) -> int:
        sql, params = queryset.order_by().values("pk").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        return int(plan[0]["Plan"]["Plan Rows"])


def page_asked(request) -> int:
    """The page number of a list's request, read as Django's changelist reads it (1 when absent
    or not a number)."""
    try:
        return int(request.GET.get(PAGE_VAR, 1))
    except ValueError:
        return 1


class CountedAheadPaginator(Paginator):
    """Pages of a list whose rows are counted only as far as `pages_ahead` pages past the page
    asked for (`page_asked`): exactly when there are fewer, else "at least" that many
    (`count_kind`, which the pagination template says). The count reads at most that many rows,
    however many the list holds, and its pages go on as far as the reader goes. Never an estimate
    from PostgreSQL's statistics, which count rows the reader may not see."""

    pages_ahead = 2

    # As EstimatedCountPaginator's: "exact", or "at_least" when the count stopped.
    count_kind = "exact"

    def __init__(self, object_list, per_page, orphans=0, allow_empty_first_page=True, *, page: int = 1):
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        # Bounded for PostgreSQL's LIMIT (a bigint), whatever page number a URL asks for.
        self.counted_up_to = min((max(page, 1) + self.pages_ahead) * per_page, sys.maxsize - 1)

    @cached_property
    def count(self):
        # One row more than the pages reach, to tell "exactly that many" from "more".
        counted = self.object_list.order_by().values("pk")[: self.counted_up_to + 1].count()
        if counted > self.counted_up_to:
            self.count_kind = "at_least"
            return self.counted_up_to
        return counted
