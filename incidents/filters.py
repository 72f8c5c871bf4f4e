"""The one filter set for incidents: API lists, CSV exports, statistics and the admin export use it.

It filters a queryset the caller has already limited with `visible_to(user)`, and every choice it
accepts that could name a hidden object (a source, a place, an organization) is itself limited to
what the requesting user may see, so a filter never reveals that a confidential record exists: an
unknown id and a hidden id give the same "not a valid choice" error.
"""

import copy
from collections.abc import Collection
from datetime import UTC

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import BooleanField, Exists, Expression, OuterRef
from django.db.models.lookups import GreaterThanOrEqual, LessThanOrEqual
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django_countries import countries
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from incidents.models import (
    Claim,
    DuplicateDecision,
    Incident,
    IncidentPlace,
    IncidentType,
    Involvement,
    InvolvementRole,
    Organization,
    Place,
    ReviewState,
    Source,
    Verification,
)
from incidents.numbers import GROUPED_DIGITS, is_whole_number, whole_number_refused
from incidents.querysets import (
    KeptOriginsAtLeast,
    compiled_fragment,
    ids_in_tree_below,
    people_estimate,
    version_fields,
)
from incidents.search import IncidentSearch
from tracker.formats import TIME_AS_WRITTEN, TIME_WITHOUT_OFFSET, date_refused, other_digits


class HasPlaceInCountry(Expression):
    """`EXISTS (…)`: the incident has a place in `country`, written as the SQL it compiles to.

    The most used filter of the incident list; as Django's `Exists(IncidentPlace.objects.filter(
    incident=OuterRef("pk"), place__country=…))` it is the same SQL, but building and relabeling
    that subquery for every request cost more than a millisecond, a tenth of the list's own time
    outside PostgreSQL. It names the incident by the alias of its query's table, so it stays right
    inside a subquery (the statistics, the CSV export)."""

    conditional = True
    output_field = BooleanField()

    def __init__(self, country: str):
        super().__init__()
        self.country = country

    def as_sql(self, compiler, connection):
        incident = compiler.quote_name(compiler.query.base_table)
        link, place = (compiler.quote_name(model._meta.db_table) for model in (IncidentPlace, Place))
        return (
            f"EXISTS (SELECT 1 FROM {link} country_link JOIN {place} country_place "
            "ON country_place.id = country_link.place_id "
            f"WHERE country_link.incident_id = {incident}.id AND country_place.country = %s)",
            (self.country,),
        )


class LinkedToIncident(Exists):
    """`EXISTS (…)` over an incident's links (its place links, claims, involvements): `links`, a
    queryset whose one reference to the incident is `OuterRef("pk")`.

    Kept unresolved as well (`links`), so that the same queryset, with the same rules of what the
    reader may see (`Claim.objects.disclosed_to`, `Source.objects.visible_to`), can be said of any
    row whose primary key is the incident's id: the CSV export says it of the incident's kept row
    (`exports.kept_rows`), whose key is the incident's, rather than selecting the incidents first."""

    def __init__(self, links, **kwargs):
        super().__init__(links, **kwargs)
        self.links = links


@extend_schema_field(OpenApiTypes.INT)
class IdFilter(django_filters.ModelChoiceFilter):
    """A record named by its numeric id (documented as an integer in the API schema), typed as a
    number in the browsable API's filter form: a list of every source (100,000 at a million
    incidents) made that page 6 MB and 18 s for any anonymous visitor."""

    def __init__(self, **kwargs):
        super().__init__(widget=forms.NumberInput, **kwargs)


class VisibleSourceFilter(IdFilter):
    """A source by id among those the filter set's user may see: a hidden id is "not one of the
    available choices", like an id that does not exist."""

    def get_queryset(self, request):
        return Source.objects.visible_to(self.parent.user)


def _every(model):
    """The records a choice filter accepts, as a callable: django-filter deep-copies a filter set's
    querysets for every request (QuerySet objects and all), which cost more than the list's query."""
    return lambda request: model.objects.all()


def descendant_ids(model, root_id: int) -> set[int]:
    """The ids of `root_id` and everything under it in a parent tree; one recursive query."""
    return set(model.objects.filter(pk__in=ids_in_tree_below(model, root_id)).values_list("pk", flat=True))


def _citing_source_ids(root_id: int, sources) -> set[int]:
    """The source and every source among `sources` (those the user may see) that relays it, directly
    or through others. A chain is followed only through sources in `sources`, so a hidden link never
    connects an incident to the source asked for.

    One recursive query, each step reading the relays of the sources found by the index on `cites`
    (a subquery that OFFSET keeps PostgreSQL from merging into a hash join scanning every source),
    each kept if `sources` holds it: a query a step sent 3,001 statements for the original of a
    chain of 3,000 relays (2.3 s), each too short for an anonymous reader's bound to stop."""
    table = Source._meta.db_table
    held = compiled_fragment(Source, Exists(sources.filter(pk=OuterRef("pk"))), BooleanField())
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE relays(id) AS (
                SELECT %s::bigint
                UNION
                SELECT relay.id FROM relays CROSS JOIN LATERAL (
                    SELECT {table}.id FROM {table} WHERE {table}.cites_id = relays.id AND {held.sql} OFFSET 0
                ) AS relay
            )
            SELECT id FROM relays
            """,
            [root_id, *held.params],
        )
        return {source_id for (source_id,) in cursor.fetchall()}


def country_choices():
    return list(countries)


class CountryCodeField(django_filters.fields.ChoiceField):
    def to_python(self, value):
        # ISO codes are upper case; `cn` means `CN`.
        return super().to_python(value).upper()

    def valid_value(self, value):
        # One lookup, where Django's ChoiceField walks the 250 choices (1.6 ms of every request).
        return value in countries


@extend_schema_field({"type": "string", "enum": [code for code, _ in countries]})
class CountryFilter(django_filters.ChoiceFilter):
    """An ISO 3166-1 alpha-2 code; the choices are a callable, so the per-request copy of the
    filter set does not copy 250 of them (that cost more than the list's queries)."""

    field_class = CountryCodeField

    def __init__(self, **kwargs):
        super().__init__(choices=country_choices, **kwargs)


@extend_schema_field(OpenApiTypes.STR)
class SlugFilter(django_filters.ModelChoiceFilter):
    """A record named by its slug."""


class SearchField(forms.CharField):
    """Cleans a search into an IncidentSearch, refusing one past its bounds (a 400 naming `q`)."""

    def clean(self, value):
        value = super().clean(value)
        return IncidentSearch.parse(value) if value else value


class SearchFilter(django_filters.CharFilter):
    field_class = SearchField


class IncidentFilterForm(forms.Form):
    """The checks that span filters: a range that ends before it starts (dates, or counts of
    people) holds nothing, so it is refused (a 400) rather than answered with an empty list the
    reader would take for a fact."""

    def clean(self):
        cleaned_data = super().clean()
        self._refuse_reversed(
            "date_from",
            "date_to",
            _("date_from (%(date_from)s) is after date_to (%(date_to)s): no date range overlaps that."),
            code="dates_reversed",
        )
        self._refuse_reversed(
            "min_people",
            "max_people",
            _("min_people (%(min_people)s) is above max_people (%(max_people)s): no count is both."),
            code="people_reversed",
        )
        return cleaned_data

    def _refuse_reversed(self, low: str, high: str, message: str, *, code: str) -> None:
        values = {low: self.cleaned_data.get(low), high: self.cleaned_data.get(high)}
        if values[low] is not None and values[high] is not None and values[low] > values[high]:
            # Named on both: either may be the one mistyped.
            error = ValidationError(message, code=code, params=values)
            self.add_error(low, error)
            self.add_error(high, error)


class DateAsWrittenField(forms.DateField):
    """A date that, refused, says how to write it, or why a date so written is no day
    (`tracker.formats.date_refused`), in the admin's forms and the filters alike: "Enter a valid
    date." left a reader who typed `29/08/2023` (refused: tracker/formats) guessing."""

    def to_python(self, value):
        if isinstance(value, str) and other_digits(value):
            raise ValidationError(date_refused(value), code="invalid")
        try:
            return super().to_python(value)
        except ValidationError as error:
            raise ValidationError(date_refused(value), code=error.code) from None


class WholeNumberField(forms.IntegerField):
    """A count, in the digits 0-9 alone, in the admin's forms and the filters alike: Django's field
    read "1.000" (a thousand, where a dot groups digits) as 1, taking the dot for a decimal point,
    and full-width digits, which the import refuses."""

    def to_python(self, value):
        written = value.strip() if isinstance(value, str) else None
        if written and GROUPED_DIGITS.fullmatch(written):
            raise ValidationError(whole_number_refused(written), code="invalid")
        number = super().to_python(value)
        # What Django reads, it reads as meant only when written in the digits 0-9 alone.
        if written and not is_whole_number(written):
            raise ValidationError(whole_number_refused(written), code="invalid")
        return number


class DateFilter(django_filters.DateFilter):
    field_class = DateAsWrittenField


class UtcDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 time, cleaned into UTC: Python accepts offsets up to a day, PostgreSQL only up
    to 15:59, and refused the others with a 500 (`+17:44`, found by schemathesis). A time whose UTC
    falls outside the years 1 to 9999 (`0001-01-01T00:00:00+23:00`) is no valid time: a 400 naming
    the parameter, where converting it in the filter was a 500. Refused, it says how to write one.

    A time without its offset (`2024-05-01T00:00:00`, or a date alone) is refused too, as a page's
    cursor refuses one (`pagination._in_utc`): django-filter read it as UTC, and a sync whose script
    wrote its local time missed or repeated the hours between without a word."""

    default_error_messages = {"invalid": TIME_AS_WRITTEN, "no_offset": TIME_WITHOUT_OFFSET}

    def to_python(self, value):
        try:
            written = parse_datetime(value.strip()) if isinstance(value, str) else None
        except ValueError:
            written = None  # no time at all: refused below as such
        if written is not None and written.tzinfo is None:
            raise ValidationError(self.error_messages["no_offset"], code="no_offset")
        value = super().to_python(value)
        try:
            return value.astimezone(UTC) if value else value
        except OverflowError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


@extend_schema_field(OpenApiTypes.INT)
class WholeNumberFilter(django_filters.NumberFilter):
    """A count: `1.5` and `1.000` are refused by name, where NumberFilter's decimal field would take
    them."""

    field_class = WholeNumberField


def changed_since_filter() -> UtcDateTimeFilter:
    """`updated_since`, made where a filter set declares it: a filter set orders its filters (and
    checks them, and names their errors) by when each was made."""
    return UtcDateTimeFilter(method="filter_updated_since", label="Changed at or after (ISO 8601)")


class ChangedSinceFilterSet(django_filters.FilterSet):
    """An incremental sync's filter, of incidents, sources and responses alike: the records changed
    since a time, by the change time the reader is told (`version_fields`), so that a change hidden
    from them (a source's staff-only notes, for the public) does not move their sync."""

    updated_since = changed_since_filter()

    class Meta:
        fields = []

    @property
    def user(self):
        return getattr(self.request, "user", None)

    def filter_updated_since(self, queryset, name, value):
        return queryset.filter(**{f"{version_fields(self.user).of(queryset.model).updated_at}__gte": value})


class IncidentFilterSet(django_filters.FilterSet):
    date_from = DateFilter(method="filter_date_from", label="Overlaps dates from (YYYY-MM-DD)")
    date_to = DateFilter(method="filter_date_to", label="Overlaps dates up to (YYYY-MM-DD)")
    type = SlugFilter(
        queryset=_every(IncidentType),
        to_field_name="slug",
        method="filter_type",
        label="Incident type (slug), including its sub-types",
    )
    country = CountryFilter(method="filter_country", label="Country (ISO 3166-1 alpha-2) of any of its places")
    place = IdFilter(queryset=_every(Place), method="filter_place", label="Place id, including places inside it")
    # Counts of people, whole as `min_origins`: NumberFilter's decimal was truncated against the
    # integer column, so `min_people=1.5` selected an incident of 1. Compared as the statistics
    # count them (`people_estimate`).
    min_people = WholeNumberFilter(
        method="filter_min_people", min_value=0, label="Best estimate (else the minimum) at least"
    )
    max_people = WholeNumberFilter(
        method="filter_max_people", min_value=0, label="Best estimate (else the minimum) at most"
    )
    # Columns of the incident itself: no join, so no duplicate rows to remove. django-filter's
    # default (`distinct=True`) made PostgreSQL build the representation of every matching
    # incident before the page's LIMIT: 10 s for a page of drafts at 1,000,000 incidents.
    verification = django_filters.MultipleChoiceFilter(choices=Verification.choices, distinct=False)
    review_state = django_filters.MultipleChoiceFilter(choices=ReviewState.choices, distinct=False)
    source = VisibleSourceFilter(
        method="filter_source",
        label="Source id: incidents it or a source relaying it makes a claim about",
    )
    organization = IdFilter(
        queryset=_every(Organization),
        method="filter_organization",
        label="Organization id: involved, or publisher of a source with a claim",
    )
    perpetrator = IdFilter(
        queryset=_every(Organization),
        method="filter_perpetrator",
        label="Organization id: involved as perpetrator (what the statistics and facets group by)",
    )
    q = SearchFilter(
        method="filter_q",
        label=(
            'Search: every word or "phrase" must match (whole words, any case; word* for the words starting '
            "so, and Korean words of 2 syllables or more always), -word excludes; in ids, "
            "titles, descriptions, place names and alternate names, involved organizations' names, acronyms "
            "and aliases, and the titles, publishers and excerpts of the claims' sources you may see"
        ),
    )
    min_origins = WholeNumberFilter(
        method="filter_min_origins",
        min_value=0,
        label="At least this many independent origins among the claims you may see (sources relaying one count once)",
    )
    # The sync's filter, last: the filters are checked, and their errors named, in this order
    # (`export_incidents` lists `--date-from` before `--updated-since`), which a base class's would
    # lead.
    updated_since = changed_since_filter()
    filter_updated_since = ChangedSinceFilterSet.filter_updated_since

    class Meta:
        fields = []
        form = IncidentFilterForm

    def __init__(self, data=None, queryset=None, *, request=None, user=None, prefix=None, every_filter=False):
        """`user` is whose sight the filters follow (the `source` filter's choices, the search's
        claims); without it, the request's user (DRF's filter backend passes the request)."""
        self._user = user
        if data is not None and not every_filter:
            # Only the filters the data names are copied, given a form field and validated: the
            # others would filter nothing, and preparing all thirteen for every request took a
            # tenth of the incident list's time. `every_filter` keeps them all, for a form that
            # shows them (the browsable API's).
            self.base_filters = {name: filter_ for name, filter_ in self.base_filters.items() if name in data}
        super().__init__(data, queryset, request=request, prefix=prefix)

    @property
    def user(self):
        return self._user if self._user is not None else getattr(self.request, "user", None)

    def without(self, names: Collection[str]) -> "IncidentFilterSet":
        """This filter set (bound and valid) less the filters `names`: what its other filters
        select. Runs no query: the values it validated (a type, a place) are kept, not looked up
        again, as binding the data anew would."""
        other = copy.copy(self)
        other._form = copy.copy(self.form)
        other._form.cleaned_data = {name: value for name, value in self.form.cleaned_data.items() if name not in names}
        # What the filters selected is worked out again, from the filters left.
        other.__dict__.pop("_qs", None)
        return other

    def filter_date_from(self, queryset, name, value):
        return queryset.overlapping(date_from=value)

    def filter_date_to(self, queryset, name, value):
        return queryset.overlapping(date_to=value)

    # The OpenAPI types of the filters that take a record: drf-spectacular cannot infer them.
    @extend_schema_field(OpenApiTypes.STR)
    def filter_type(self, queryset, name, value):
        return queryset.filter(incident_type__in=descendant_ids(IncidentType, value.pk))

    def filter_country(self, queryset, name, value):
        return queryset.filter(HasPlaceInCountry(value))

    @extend_schema_field(OpenApiTypes.INT)
    def filter_place(self, queryset, name, value):
        places = descendant_ids(Place, value.pk)
        return queryset.filter(
            LinkedToIncident(IncidentPlace.objects.filter(incident=OuterRef("pk"), place__in=places))
        )

    def _visible_claims(self):
        # The incidents are already limited to those the user may see; of their claims, these.
        return Claim.objects.disclosed_to(self.user).filter(incident=OuterRef("pk"))

    @extend_schema_field(OpenApiTypes.INT)
    def filter_source(self, queryset, name, value):
        return queryset.filter(
            LinkedToIncident(
                self._visible_claims().filter(
                    source__in=_citing_source_ids(value.pk, Source.objects.visible_to(self.user))
                )
            )
        )

    @extend_schema_field(OpenApiTypes.INT)
    def filter_organization(self, queryset, name, value):
        involved = Involvement.objects.filter(incident=OuterRef("pk"), organization=value)
        published = self._visible_claims().filter(source__publisher=value)
        return queryset.filter(LinkedToIncident(involved) | LinkedToIncident(published))

    @extend_schema_field(OpenApiTypes.INT)
    def filter_perpetrator(self, queryset, name, value):
        perpetrated = Involvement.objects.filter(
            incident=OuterRef("pk"), organization=value, role=InvolvementRole.PERPETRATOR
        )
        return queryset.filter(LinkedToIncident(perpetrated))

    def filter_min_people(self, queryset, name, value):
        return queryset.filter(GreaterThanOrEqual(people_estimate(), value))

    def filter_max_people(self, queryset, name, value):
        return queryset.filter(LessThanOrEqual(people_estimate(), value))

    def filter_min_origins(self, queryset, name, value):
        return queryset.filter(KeptOriginsAtLeast(user=self.user, count=value))

    def filter_q(self, queryset, name, value):
        return value.filter(queryset, user=self.user)


def _said_of_either_incident(name: str, label: str) -> django_filters.Filter:
    """The incident list's filter `name`, for a filter set of pairs of incidents: the same values,
    checks and schema (its method applies it to incidents, `DuplicatePairFilterSet.filter_queryset`)."""
    incident_filter = copy.deepcopy(IncidentFilterSet.declared_filters[name])
    incident_filter.label = label
    return incident_filter


class DuplicatePairFilterSet(django_filters.FilterSet):
    """The duplicate pairs' filters, for the API's list and the admin's queue. A pair is in a
    country when one of its incidents is, and in a date range when one of its incidents is (either
    one, as the admin's separate list filters say it), as the incident list means it: its own
    filters select those incidents, so the two lists cannot come to differ."""

    WAITING = "waiting"
    # Each condition said of one incident of the pair; a date range's two ends of the same one.
    INCIDENT_CONDITIONS = (("country",), ("date_from", "date_to"))

    decision = django_filters.ChoiceFilter(
        choices=[(WAITING, "Waiting (not reviewed, or the same and not merged)"), *DuplicateDecision.choices],
        method="filter_decision",
        label="Only the pairs so decided; waiting: those not reviewed, or decided the same and not merged yet",
    )
    country = _said_of_either_incident("country", "Country (ISO 3166-1 alpha-2) of a place of either incident")
    date_from = _said_of_either_incident("date_from", "Either incident overlaps dates from (YYYY-MM-DD)")
    date_to = _said_of_either_incident("date_to", "Either incident overlaps dates up to (YYYY-MM-DD)")

    # The incident list's methods of those filters, run on incidents.
    filter_country = IncidentFilterSet.filter_country
    filter_date_from = IncidentFilterSet.filter_date_from
    filter_date_to = IncidentFilterSet.filter_date_to

    class Meta:
        fields = []
        form = IncidentFilterForm

    def filter_decision(self, pairs, name, value):
        return pairs.waiting() if value == self.WAITING else pairs.filter(decision=value)

    def filter_queryset(self, queryset):
        """The pairs of `queryset` that the filters select: the incident filters select incidents
        (any: `queryset` holds only pairs of two incidents the reader may see), the pairs one of them."""
        incident_filters = {name for condition in self.INCIDENT_CONDITIONS for name in condition}
        values = self.form.cleaned_data
        for name, value in values.items():
            if name not in incident_filters:
                queryset = self.filters[name].filter(queryset, value)
        for condition in self.INCIDENT_CONDITIONS:
            incidents = Incident.objects.all()
            for name in condition:
                incidents = self.filters[name].filter(incidents, values.get(name))
            if incidents.query.has_filters():
                queryset = queryset.with_an_incident_in(incidents)
        return queryset


class WithdrawalFilterSet(django_filters.FilterSet):
    """The `withdrawn/` lists' filter, of incidents, sources and responses alike."""

    since = UtcDateTimeFilter(
        field_name="withdrawn_at",
        lookup_expr="gte",
        required=True,
        label="Withdrawn at or after (ISO 8601): the `updated_since` of the same sync",
    )

    class Meta:
        fields = []


class IncidentFilterBackend(DjangoFilterBackend):
    """django-filter's DRF backend, whose filter form in the browsable API offers every filter
    rather than only those the request names (see `IncidentFilterSet.__init__`)."""

    every_filter = False

    def get_filterset_kwargs(self, request, queryset, view):
        return {**super().get_filterset_kwargs(request, queryset, view), "every_filter": self.every_filter}

    def to_html(self, request, queryset, view):
        # DRF makes a new backend for each use, so this instance serves this form only.
        self.every_filter = True
        return super().to_html(request, queryset, view)
