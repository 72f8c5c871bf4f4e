from datetime import MAXYEAR, MINYEAR, date, timedelta

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import NotRelationField, get_fields_from_path
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.contrib.admin.views.main import SEARCH_VAR, ChangeListSearchForm
from django.contrib.admin.widgets import AutocompleteSelect, AutocompleteSelectMultiple
from django.contrib.auth.views import PasswordChangeView
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.db import models
from django.db.models import Case, ForeignObjectRel, IntegerField, Q, Value, When
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.http import urlencode

from accounts.confirmation import confirmation_needed
from accounts.forms import CountedPasswordChangeForm
from accounts.lockout import attempted_username, attempts_in_turn, is_locked_out, lockout_response, sign_in_throttled
from accounts.services import second_factor_missing
from incidents.access import confidential_among, record_confidential_access
from incidents.models import AccessDoor
from incidents.numbers import is_whole_number
from incidents.search import SearchTerm, search_terms
from incidents.text_fields import CompatibilityForm, compatibility_form


class SearchAsTypedForm(ChangeListSearchForm):
    """A list's search box, passing a NUL on to the search (`search_terms`), which refuses it with
    no row: Django's form dropped the search with a message and listed every row, which read as
    its answer (and its CSV export sent every incident)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields[SEARCH_VAR].validators = []


class BoundedSearchMixin:
    """The bounds of every search (incidents.search.search_terms: 200 characters, 8 words or
    "phrases") on an admin's search box and on the autocomplete it serves. Django's own search ANDs
    one group of ILIKE '%word%' over every search field per word it is given, so it is given each
    distinct word once; past the bounds the list shows why and no row."""

    def get_changelist(self, request, **kwargs):
        # Django's changelist reads its search box through `search_form_class` alone.
        changelist = super().get_changelist(request, **kwargs)
        return type(changelist.__name__, (changelist,), {"search_form_class": SearchAsTypedForm})

    def bounded_search_terms(self, text: str) -> list[SearchTerm]:
        """`text`'s terms as this box searches them (`search_terms`): Django's, as text, where
        punctuation alone finds what holds it, in the compatibility form its fields are compared in
        (`get_search_fields`); the incident admin's, by the incidents' words."""
        if getattr(self, "searches_prefixes", False):
            return search_terms(text, as_text=False)
        return search_terms(compatibility_form(text), as_text=True)

    def get_search_fields(self, request):
        # Each text field compared in Unicode's compatibility form (incidents.text_fields.
        # CompatibilityForm), as its terms are: "UNHCR" typed in full-width letters finds "UNHCR",
        # and "UNHCR" the one stored in full-width letters.
        return [self._in_compatibility_form(field) for field in super().get_search_fields(request)]

    def _in_compatibility_form(self, search_field: str) -> str:
        if search_field[:1] in "^=@":
            return search_field
        try:
            field = get_fields_from_path(self.model, search_field)[-1]
        except (FieldDoesNotExist, NotRelationField):
            # A lookup named by the admin itself (`name__exact`): left as it is.
            return search_field
        if field.get_transform(CompatibilityForm.lookup_name) is None:
            return search_field
        return f"{search_field}__{CompatibilityForm.lookup_name}"

    def get_search_results(self, request, queryset, search_term):
        if not search_term:
            return super().get_search_results(request, queryset, search_term)
        try:
            terms = self.bounded_search_terms(search_term)
            # The incident admin's own search reads a word's `*` (`searches_prefixes`) and may
            # refuse more (incidents.search.IncidentSearch.parse); Django's reads text.
            typed = str if getattr(self, "searches_prefixes", False) else SearchTerm.as_text
            return super().get_search_results(request, queryset, " ".join(map(typed, terms)))
        except ValidationError as refusal:
            self.message_user(request, f"This search cannot be run: {' '.join(refusal.messages)}", messages.ERROR)
            return queryset.none(), False


# No list filter sends a regular expression, and a malformed one (`?username__regex=(`) reached
# PostgreSQL as an error: a 500, on the lists that took any lookup on their fields (Django's own,
# django-otp's and django-axes's), and still on a field a filter offers (`?path_info__regex=(`).
REGULAR_EXPRESSION_LOOKUPS = frozenset({"regex", "iregex"})


class OfferedLookupsOnlyMixin:
    """A list's address filters it only by what its filters offer: a field a list filter or the
    date hierarchy names, with whatever lookup its filter sends (`?expires_at__gte=…`,
    `?groups__id__exact=3`), or a filter's own parameter. Django also takes any lookup on the
    model's own fields, which made every list an oracle of what it does not show:
    `?key__lt=8…` on the authenticator apps' list answered whether an account's secret key sorts
    below a prefix, which read a superuser's key, and with it every code of their app, in about
    160 requests (Django's users' list refuses lookups of passwords itself, and only those). Refused
    alike whatever the value, as "This list offers no such filter" (tracker.bad_requests). The
    incidents app's lists refuse more, and name it on their own page (OfferedFiltersOnlyMixin)."""

    def lookup_allowed(self, lookup, value, request):
        return self.offers_lookup(lookup, request) and super().lookup_allowed(lookup, value, request)

    def offers_lookup(self, lookup: str, request) -> bool:
        fields, parameters = {self.date_hierarchy}, set()
        for list_filter in self.get_list_filter(request):
            if isinstance(list_filter, type):
                # A filter class names its parameter (SimpleListFilter), or several (the project's).
                parameters.add(getattr(list_filter, "parameter_name", None))
                parameters.update(getattr(list_filter, "parameter_names", ()))
            else:
                fields.add(list_filter[0] if isinstance(list_filter, (list, tuple)) else list_filter)
        fields.discard(None)
        return lookup in parameters or any(lookup == field or lookup.startswith(f"{field}__") for field in fields)


class PossibleFilterValuesMixin:
    """A list's filter values that no filter link sends are refused (a 400) before they reach the
    database or a date: a NUL, which PostgreSQL's text cannot hold (`?kind__exact=%00`: a
    DataError), and a date hierarchy's part of more than four digits, which Django cannot make a
    date of (`?published_on__year=99999999999999999999`: an OverflowError, where Django answers
    other impossible dates itself), or whose days end past the last date there is (the year 9999,
    its December, its 31 December: Django selects them up to the next year, month or day, an
    OverflowError too); and a `__year` lookup of a year no date has (`?undone_at__year=0`, `10000`,
    which Django turns into the bounds of that year only when it runs the query: a ValueError or an
    OverflowError its changelist does not catch). All were 500s. And a bound of a date and time
    without its time zone (`?expires_at__gte=2026-01-01`, typed by hand: a date filter's links send
    `2026-01-01 00:00:00+00:00`), which Django read in UTC with a warning, whatever the site's time."""

    def lookup_allowed(self, lookup, value, request):
        if "\x00" in value or lookup.rsplit("__", 1)[-1] in REGULAR_EXPRESSION_LOOKUPS:
            return False
        if _bounds_a_date_and_time(self.model, lookup) and not _is_aware_date_and_time(value):
            return False
        if lookup.endswith("__year") and not (is_whole_number(value) and MINYEAR <= int(value) <= MAXYEAR):
            return False
        date_parts = (
            {f"{self.date_hierarchy}__{part}" for part in ("year", "month", "day")} if self.date_hierarchy else ()
        )
        if lookup in date_parts and not (
            is_whole_number(value) and len(value) <= 4 and _drill_down_ends_on_a_date(request, self.date_hierarchy)
        ):
            return False
        return super().lookup_allowed(lookup, value, request)


_RANGE_LOOKUPS = frozenset({"gt", "gte", "lt", "lte"})


def _bounds_a_date_and_time(model, lookup: str) -> bool:
    """Whether `lookup` bounds one of `model`'s own date and time fields (`expires_at__gte`)."""
    field_name, _, last = lookup.rpartition("__")
    if last not in _RANGE_LOOKUPS:
        return False
    try:
        return isinstance(model._meta.get_field(field_name), models.DateTimeField)
    except FieldDoesNotExist:
        return False


def _is_aware_date_and_time(value: str) -> bool:
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return False
    return parsed is not None and parsed.tzinfo is not None


def _drill_down_ends_on_a_date(request, field_name: str) -> bool:
    """Whether the day after the days a date hierarchy's parameters select is a date, as Django's
    changelist computes it (the next year, month or day). A part that is not a number of at most
    four digits is refused by its own `lookup_allowed`; an impossible date (month 13) Django
    answers itself."""
    year, month, day = (request.GET.get(f"{field_name}__{part}") for part in ("year", "month", "day"))
    present = [part for part in (year, month, day) if part is not None]
    if year is None or not all(is_whole_number(part) and len(part) <= 4 for part in present):
        return True
    try:
        first = date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return True
    try:
        if day is not None:
            first + timedelta(days=1)
        elif month is not None:
            first + timedelta(days=32)
        else:
            first.replace(year=first.year + 1)
    except (OverflowError, ValueError):
        return False
    return True


class ConfirmedChangesMixin:
    """Adding, changing or deleting the records of accounts.confirmation.CONFIRMED_MODELS (accounts,
    roles, second factors, the lockout's records), one at a time or by a list's action, only in a
    session whose owner confirmed who they are in the last minutes; anyone else is asked to first.
    Their forms are asked for before they are shown, so nothing typed is lost; a list's action is
    chosen again after confirming. Reading them needs no confirmation."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if (refused := confirmation_needed(request, self.model)) is not None:
            return refused
        return super().changeform_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        if (refused := confirmation_needed(request, self.model)) is not None:
            return refused
        return super().delete_view(request, object_id, extra_context)

    def response_action(self, request, queryset, **kwargs):
        if (refused := confirmation_needed(request, self.model)) is not None:
            return refused
        return super().response_action(request, queryset, **kwargs)


def field_can_hold(field, value) -> bool:
    """Whether `value`, as a form sent it back, is one `field` can hold: a lookup with it cannot
    raise the field's ValueError or reach the database with what it refuses. A NUL, which
    PostgreSQL's text cannot hold, is refused whatever the field."""
    if isinstance(value, str) and "\x00" in value:
        return False
    try:
        field.run_validators(field.to_python(value))
    except ValidationError:
        return False
    return True


class PossibleSelectionMixin:
    """A list's action runs on the rows its checkboxes send (`_selected_action`), which Django
    filters as posted (`pk__in`): a value that cannot be an id of the list (`x`, a NUL, a number
    past the column's range) raised ValueError or reached the database, a 500 for any staff member.
    Such a selection is refused with a message naming it, and the list is shown again; nothing is
    changed."""

    def response_action(self, request, queryset, **kwargs):
        primary_key = self.model._meta.pk
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            if not field_can_hold(primary_key, value):
                shown = value.replace("\x00", "\\0")[:40]
                self.message_user(
                    request,
                    f"The selection “{shown}” is not a {self.model._meta.verbose_name} of this list: "
                    "nothing was changed. Select the rows again.",
                    messages.ERROR,
                )
                return None
        return super().response_action(request, queryset, **kwargs)


class RecordedAutocompleteJsonView(AutocompleteJsonView):
    """The admin's autocomplete (a claim's source, a response's incidents…): a search past the
    bounds offers no choice, and the confidential incidents and sources offered are recorded
    (incidents.access), as the admin's lists record theirs."""

    def process_request(self, request):
        """Django's, refusing as it refuses a field that is no relation (403) a reverse relation
        named as the field (`model_name=incident&field_name=responses`), which it read on as a
        field of the model's own: an AttributeError, a 500 to any member of staff."""
        try:
            model = apps.get_model(request.GET["app_label"], request.GET["model_name"])
            field = model._meta.get_field(request.GET["field_name"])
        except (KeyError, LookupError, ValueError, FieldDoesNotExist):
            field = None  # Django refuses these itself.
        if isinstance(field, ForeignObjectRel):
            raise PermissionDenied
        return super().process_request(request)

    def get_queryset(self):
        try:
            self.model_admin.bounded_search_terms(self.term)
        except ValidationError:
            # No choice, and no message left for the next page (the admin's search would leave
            # one): the widget says "No results found" while the words are typed.
            return self.model_admin.get_queryset(self.request).none()
        queryset = self._closest_first(super().get_queryset())
        labelled = getattr(self.model_admin, "autocomplete_labelled", None)
        return labelled(queryset) if labelled else queryset

    def _closest_first(self, queryset):
        """The records named exactly as typed first, then those whose name starts so, each group in
        the list's own order, for admins naming those fields (`autocomplete_ranked_by`: a place's
        name, an organization's name and acronym). In name order alone, "North Korea" offered
        "China > China-North Korea border area" first, which Enter picked."""
        name_fields = getattr(self.model_admin, "autocomplete_ranked_by", ())
        typed = compatibility_form(self.term.strip())
        if not name_fields or not typed:
            return queryset

        def named(lookup):
            # Compared as the search found them (BoundedSearchMixin.get_search_fields).
            nfkc = CompatibilityForm.lookup_name
            return Q.create([(f"{field}__{nfkc}__{lookup}", typed) for field in name_fields], connector=Q.OR)

        closeness = Case(
            When(named("iexact"), then=Value(0)),
            When(named("istartswith"), then=Value(1)),
            default=Value(2),
            output_field=IntegerField(),
        )
        ordering = queryset.query.order_by or queryset.model._meta.ordering
        return queryset.annotate(autocomplete_closeness=closeness).order_by("autocomplete_closeness", *ordering, "pk")

    def serialize_result(self, obj, to_field_name):
        # A list's own label for a choice, where its admin gives one (a place's path: two Bangkoks,
        # the province and its city, were two identical choices).
        result = super().serialize_result(obj, to_field_name)
        label = getattr(obj, "autocomplete_label", None)
        return result if label is None else {**result, "text": label}

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        # Evaluates the page's choices, which the response then reads from the same queryset's cache.
        record_confidential_access(
            user=self.request.user,
            door=AccessDoor.ADMIN,
            records=confidential_among(context["object_list"], self.request.user),
            path=self.request.get_full_path(),
        )
        return context


class HeldChoicesMixin:
    """For an admin autocomplete widget: the values sent back that it shows again are looked up only
    if its related field can hold them. Django's filtered the related records by each: a form sent
    back with `publisher=x` (or `1e400`, or a NUL) raised the field's ValueError while the page was
    drawn, a 500, where the form itself says "Select a valid choice" on the field."""

    def optgroups(self, name, value, attr=None):
        remote = self.field.remote_field
        options = remote.model._meta
        target = options.get_field(getattr(remote, "field_name", None) or options.pk.name)
        held = [choice for choice in value if field_can_hold(target, choice)]
        return super().optgroups(name, held, attr)


class HeldChoicesAutocompleteSelect(HeldChoicesMixin, AutocompleteSelect):
    pass


class HeldChoicesAutocompleteSelectMultiple(HeldChoicesMixin, AutocompleteSelectMultiple):
    pass


class HeldChoicesAdminMixin:
    """For a ModelAdmin: its autocomplete fields draw with HeldChoicesMixin's widgets."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            kwargs["widget"] = HeldChoicesAutocompleteSelect(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            kwargs["widget"] = HeldChoicesAutocompleteSelectMultiple(
                db_field, self.admin_site, using=kwargs.get("using")
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class PasswordChangeCountedView(PasswordChangeView):
    """Django's password change, giving its form the request, whose client the lockout counts."""

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}


class TrackerAdminSite(admin.AdminSite):
    """The admin, open to staff only once this session passed the second factor when one is
    required (accounts.services.second_factor_required). Every ModelAdmin registered here, the
    project's and those of Django's auth, django-otp and django-axes alike, searches within the
    bounds of BoundedSearchMixin, filters only by what its filters offer (OfferedLookupsOnlyMixin)
    and by values a filter can send (PossibleFilterValuesMixin),
    draws a form sent back with any value in its autocompletes (HeldChoicesAdminMixin), runs an action
    only on a selection of ids (PossibleSelectionMixin), and asks for a recent confirmation before
    changing accounts (ConfirmedChangesMixin)."""

    # The list of every model beside each page took a fifth of a 1280-pixel screen: the incidents'
    # list, between it and its filters, hid its Verification and Review state columns behind a
    # scroll bar. Home (every page's breadcrumbs) lists the models.
    enable_nav_sidebar = False

    # Home lists the analysts' daily work first. Django lists apps and their models by name, which
    # put accounts, Axes' lockouts and the tasks above the incidents for an administrator, and
    # "Duplicate pairs", "Incident merges" and "Incident revisions" above Incidents for everyone.
    APPS_FIRST = ("incidents",)
    MODELS_FIRST = {
        "incidents": (
            "incident",
            "source",
            "place",
            "organization",
            "response",
            "incidenttype",
            "duplicatepair",
            "incidentrevision",
            "incidentmerge",
            "release",
            "confidentialaccess",
        ),
    }

    def get_app_list(self, request, app_label=None):
        def rank(name, first):
            # Those named first in their order, then the others in Django's (the sorts are stable).
            return first.index(name) if name in first else len(first)

        app_list = super().get_app_list(request, app_label)
        app_list.sort(key=lambda app: rank(app["app_label"], self.APPS_FIRST))
        for app in app_list:
            models_first = self.MODELS_FIRST.get(app["app_label"], ())
            app["models"].sort(key=lambda model: rank(model["model"]._meta.model_name, models_first))
        return app_list

    def register(self, model_or_iterable, admin_class=None, **options):
        admin_class = admin_class or admin.ModelAdmin
        bounded = type(
            admin_class.__name__,
            (
                ConfirmedChangesMixin,
                PossibleSelectionMixin,
                BoundedSearchMixin,
                OfferedLookupsOnlyMixin,
                PossibleFilterValuesMixin,
                HeldChoicesAdminMixin,
                admin_class,
            ),
            {"__module__": admin_class.__module__},
        )
        super().register(model_or_iterable, bounded, **options)

    def has_permission(self, request):
        # On the login page, which sees a session that still owes its second factor as it is
        # (accounts.middleware): it must not count as signed in there, or the login would send it
        # back to the index. Every other admin page already sees it as anonymous.
        return super().has_permission(request) and not second_factor_missing(request.user)

    def login(self, request, extra_context=None):
        if request.method == "POST" and (refused := sign_in_throttled(request)) is not None:
            return refused
        # A GET has no username: nothing to take in turn.
        with attempts_in_turn(request, attempted_username(request)):
            response = super().login(request, extra_context)
        # The password was accepted (now, or earlier in this session): the second step follows.
        if request.user.is_active and second_factor_missing(request.user):
            next_url = request.POST.get("next") or request.GET.get("next") or reverse("admin:index")
            return redirect(f"{reverse('accounts:two-factor-verify')}?{urlencode({'next': next_url})}")
        return response

    def password_change(self, request, extra_context=None):
        """Django's, but the current password is checked as a sign-in's password is: in turn with
        the account's other attempts from this client, refused while it is locked out here, a wrong
        one counted towards the lockout (CountedPasswordChangeForm)."""
        request.current_app = self.name
        view = PasswordChangeCountedView.as_view(
            form_class=CountedPasswordChangeForm,
            template_name="accounts/password_change_form.html",
            success_url=reverse("admin:password_change_done", current_app=self.name),
            extra_context={**self.each_context(request), **(extra_context or {})},
        )
        if request.method != "POST":
            return view(request)
        username = request.user.get_username()
        with attempts_in_turn(request, username):
            if is_locked_out(request, username):
                return lockout_response(request)
            return view(request)

    def autocomplete_view(self, request):
        return RecordedAutocompleteJsonView.as_view(admin_site=self)(request)
