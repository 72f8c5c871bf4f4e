"""The duplicates review queue: candidate pairs, best score first, side by side, with a decision.

Pairs are proposed by every write of an incident, in the background, and by `manage.py
find_duplicates` (incidents.duplicates); decisions go through `duplicates.duplicate_pair_decide`,
which holds who may decide what. The list says what waits to be rechecked, so that a stopped
background worker shows."""

import copy

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.contrib.admin.widgets import AdminRadioSelect
from django.db.models import Prefetch
from django.http import HttpResponseRedirect, QueryDict
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from incidents.admin.base import (
    CountedAheadPaginator,
    FilterCannotBeApplied,
    FilterValueRefused,
    TrackedModelAdmin,
    WaitingFirstFilter,
    page_asked,
)
from incidents.admin.incidents import CountryFilter, DateRangeFilter
from incidents.admin.merges import confirm_url, decided_field, figure
from incidents.duplicates import PROPOSAL_THRESHOLD, duplicate_pair_decide, rescoring_backlog
from incidents.filters import DuplicatePairFilterSet
from incidents.models import NOTE_WITHHELD, Claim, DuplicateDecision, DuplicatePair, Incident, Place
from incidents.querysets import can_see_unpublished
from incidents.services import may_publish

# What the side-by-side comparison shows of each incident.
COMPARED = [
    ("Title", lambda incident: incident.title),
    ("Type", lambda incident: incident.incident_type.name),
    ("Dates", lambda incident: incident.date_label),
    ("People", lambda incident: figure(incident)),
    # By path: two places of one name (Tumen in China, Tumen in North Korea) read as one, no ≠.
    ("Places", lambda incident: "; ".join(place.path for place in incident.places.all())),
    ("Verification", lambda incident: incident.get_verification_display()),
    ("Review state", lambda incident: incident.get_review_state_display()),
    ("Description", lambda incident: incident.description),
]
# A row's mark when the two differ; screen readers at their usual punctuation level leave "≠" unsaid.
DIFFERS = mark_safe('<span aria-hidden="true">≠</span><span class="visually-hidden">differs</span>')


class ScoreFilter(admin.SimpleListFilter):
    title = "score"
    parameter_name = "score"
    # "medium" starts at the queue's default threshold, so "low" holds only the pairs a lower
    # `find_duplicates --threshold` proposed.
    BANDS = {"high": (0.9, None), "medium": (PROPOSAL_THRESHOLD, 0.9), "low": (None, PROPOSAL_THRESHOLD)}

    def lookups(self, request, model_admin):
        return [
            ("high", "0.90 and above"),
            ("medium", f"{PROPOSAL_THRESHOLD:.2f} to 0.90"),
            ("low", f"below {PROPOSAL_THRESHOLD:.2f}"),
        ]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        if self.value() not in self.BANDS:
            # Listed every pair as if a band applied (`?score=hihg`, a bookmark's typo).
            raise FilterValueRefused({self.parameter_name: [f"Choose one of {', '.join(self.BANDS)}."]})
        low, high = self.BANDS[self.value()]
        if low is not None:
            queryset = queryset.filter(score__gte=low)
        return queryset.filter(score__lt=high) if high is not None else queryset


class DecisionFilter(WaitingFirstFilter):
    title = "decision"
    parameter_name = "decision__exact"
    # Not reviewed, and decided "same incident" but not merged (`DuplicatePairQuerySet.waiting`).
    WAITING = "waiting"
    waiting_label = "Waiting (not reviewed, or the same and not merged)"

    def waiting(self, queryset):
        return queryset.waiting()


class PairCountryFilter(CountryFilter):
    """The pairs with an incident in the country (`DuplicatePairFilterSet`)."""

    filterset_class = DuplicatePairFilterSet


class PairDateRangeFilter(DateRangeFilter):
    """The pairs with an incident overlapping the dates (`DuplicatePairFilterSet`); with a country,
    one incident in that country on those dates."""

    title = "dates of either incident (overlapping)"
    filterset_class = DuplicatePairFilterSet


class DecisionForm(forms.ModelForm):
    decision = forms.ChoiceField(
        choices=[choice for choice in DuplicateDecision.choices if choice[0] != DuplicateDecision.PENDING],
        # The admin's own radio list (as `radio_fields` makes it): on a phone, plain radios' labels
        # overlapped, and a thumb on "Different incidents" could choose "Same incident".
        widget=AdminRadioSelect(attrs={"class": "radiolist"}),
    )
    # The decision the page was opened at (`DuplicatePair.decision_read`): one made since is not replaced.
    decision_read = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["decision_read"].initial = self.instance.decision_read

    class Meta:
        model = DuplicatePair
        fields = ["decision", "note"]


@admin.register(DuplicatePair)
class DuplicatePairAdmin(TrackedModelAdmin):
    form = DecisionForm
    list_display = ["score", "first", "second", "dates", "decision_state"]
    list_filter = [DecisionFilter, ScoreFilter, PairCountryFilter, PairDateRangeFilter]
    list_select_related = ["incident_a", "incident_b"]
    ordering = ["-score", "id"]
    # The page's rows come in score order from an index, stopped after the page; its count stops
    # two pages further ("at least 300 duplicate pairs"), and the unfiltered list is not counted
    # again beside it: each count of every waiting pair cost 50-100 ms at 1,000,000 incidents,
    # and by country a second, where the rows now cost a few milliseconds (bench/README.md).
    paginator = CountedAheadPaginator
    show_full_result_count = False
    readonly_fields = ["score", "comparison", "decided_by_as_read", "decided_at_as_read", "withheld_note"]
    fields = ["score", "comparison", "decision", "note", "decided_by_as_read", "decided_at_as_read", "decision_read"]

    def has_view_permission(self, request, obj=None):
        return can_see_unpublished(request.user)

    def get_fields(self, request, obj=None):
        if obj is None or not obj.note_withheld:
            return self.fields
        # The note's words never reach this page (`get_object`): that one is withheld, and the
        # field, empty, takes a new one.
        at = self.fields.index("note")
        return [*self.fields[:at], "withheld_note", *self.fields[at:]]

    @admin.display(description="Note")
    def withheld_note(self, pair):
        return NOTE_WITHHELD

    decided_by_as_read = decided_field(DuplicatePair, "decided_by")
    decided_at_as_read = decided_field(DuplicatePair, "decided_at")

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        return self.paginator(queryset, per_page, orphans, allow_empty_first_page, page=page_asked(request))

    def get_queryset(self, request):
        return super().get_queryset(request).with_merge_state()

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("incidents.change_incident")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if request.method == "GET":
            self.tell_backlog(request)
        return super().changelist_view(request, extra_context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if request.method == "GET" and obj is not None and _waits_for_merge(obj) and may_publish(request.user):
            # Decided, so out of the pending pairs: without this, a merge refused or left was lost.
            self.message_user(
                request,
                format_html(
                    'Decided "Same incident" but not merged yet: <a href="{}">merge them</a>.', confirm_url(obj)
                ),
                messages.WARNING,
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def tell_backlog(self, request):
        """What waits to be rechecked in the background, and what failed: a late queue means that
        no worker (`manage.py db_worker`) is running, and this list is missing recent changes."""
        backlog = rescoring_backlog(request.user)
        if backlog.oldest is not None:
            changed = f"{backlog.incidents} changed incident{pluralize(backlog.incidents)}"
            waiting = [changed] if backlog.incidents else []
            if backlog.whole_database:
                waiting.append("every incident (after a large import)")
            late = " No background worker has taken them: is `manage.py db_worker` running?" if backlog.late else ""
            self.message_user(
                request,
                f"Waiting to be rechecked for duplicates: {' and '.join(waiting)}, the oldest queued "
                f"{timesince(backlog.oldest)} ago.{late}",
                messages.WARNING if backlog.late else messages.INFO,
            )
        if backlog.failed_lately:
            self.message_user(
                request,
                f"{backlog.failed_lately} recheck{pluralize(backlog.failed_lately)} for duplicates failed in the "
                "last day; their errors are in the admin's Task Results and in the worker's log.",
                messages.WARNING,
            )

    @admin.display(description="Incident A")
    def first(self, pair):
        return self._link(pair.incident_a)

    @admin.display(description="Incident B")
    def second(self, pair):
        return self._link(pair.incident_b)

    @admin.display(description="Decision", ordering="decision")
    def decision_state(self, pair):
        if _waits_for_merge(pair):
            return "Same incident, not merged yet"
        return pair.get_decision_display()

    @admin.display(description="Dates")
    def dates(self, pair):
        return f"{pair.incident_a.date_label} / {pair.incident_b.date_label}"

    def _link(self, incident):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:incidents_incident_change", args=[incident.pk]), incident
        )

    @admin.display(description="Side by side")
    def comparison(self, pair):
        incidents = {
            incident.pk: incident
            for incident in Incident.objects.filter(pk__in=[pair.incident_a_id, pair.incident_b_id])
            .select_related("incident_type")
            .prefetch_related(
                Prefetch("places", queryset=Place.objects.with_path().order_by("path")),
                Prefetch(
                    "claims",
                    queryset=Claim.objects.visible_to(pair.viewer).select_related("source__publisher"),
                ),
            )
        }
        a, b = incidents[pair.incident_a_id], incidents[pair.incident_b_id]
        rows = []
        for label, read in COMPARED:
            left, right = read(a), read(b)
            rows.append((label, "" if left == right else DIFFERS, left, right))
        claims = _claims(a), _claims(b)
        rows.append(("Claims", "" if claims[0] == claims[1] else DIFFERS, *claims))
        return format_html(
            '<table><thead><tr><th scope="col"><span class="visually-hidden">Field</span></th>'
            '<th scope="col"><span class="visually-hidden">Differs?</span></th>'
            '<th scope="col">{}</th><th scope="col">{}</th></tr></thead><tbody>{}</tbody></table>',
            self._link(a),
            self._link(b),
            format_html_join("", '<tr><th scope="row">{}</th><td>{}</td><td>{}</td><td>{}</td></tr>', rows),
        )

    def records_listed(self, request, rows) -> list:
        return [incident for pair in rows for incident in (pair.incident_a, pair.incident_b)]

    def records_shown(self, request, pair) -> list:
        # The note, and the comparison: both incidents, with the claims this reader may see and their sources.
        claims = Claim.objects.visible_to(request.user).filter(incident__in=[pair.incident_a_id, pair.incident_b_id])
        return [pair, pair.incident_a, pair.incident_b, *claims.select_related("source")]

    def get_object(self, request, object_id, from_field=None):
        pair = super().get_object(request, object_id, from_field)
        if pair is not None:
            # The comparison lists the claims this reader may see (the admin instance is shared
            # between requests, so the reader travels with the pair).
            pair.viewer = request.user
            # Blank for a reader it is withheld from (`NoteWrittenInConfidence`): the form and the
            # read-only page alike show what the pair holds, and `get_fields` says it is withheld.
            pair.note_withheld = pair.note_withheld_from(request.user)
            pair.note = pair.note_read_by(request.user) or ""
        return pair

    def save_model(self, request, obj, form, change):
        duplicate_pair_decide(
            user=request.user,
            pair=obj,
            decision=form.cleaned_data["decision"],
            note=form.cleaned_data["note"],
            decision_read=form.cleaned_data["decision_read"],
        )

    def response_change(self, request, obj):
        # "Same incident" leads on to the merge, on a page that shows what it will move first.
        if obj.decision == DuplicateDecision.SAME and may_publish(request.user):
            return HttpResponseRedirect(confirm_url(obj))
        if obj.decision != DuplicateDecision.SAME and "_continue" not in request.POST:
            return self.response_next_waiting(request, obj)
        return super().response_change(request, obj)

    def response_next_waiting(self, request, decided):
        """The next pair waiting (`DuplicatePairQuerySet.waiting`) in the list the reviewer came
        from, with its filters (a score band…) and in its order, both kept by the admin in the
        page's `_changelist_filters`; or that list when no other pair of it waits: a reviewer works
        through the queue they chose rather than back to the list after each pair. A pair of the
        list already decided is passed over, so a list of every decision does not lead back to it.
        One query."""
        opts = self.opts
        decided_text = f'Decided "{decided.get_decision_display()}" for {decided}.'
        try:
            listed = self.get_changelist_instance(_request_of_the_list(request)).queryset
        except FilterCannotBeApplied:
            # A filter the list refuses: the list, which names it, rather than a pair outside it.
            listed = self.model.objects.none()
        waiting = listed.waiting().exclude(pk=decided.pk).first()
        if waiting is None:
            self.message_user(request, f"{decided_text} No other pair of this list waits for review.")
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        else:
            self.message_user(request, f"{decided_text} Next, the first pair of this list that still waits.")
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[waiting.pk])
        preserved = {"preserved_filters": self.get_preserved_filters(request), "opts": opts}
        return HttpResponseRedirect(add_preserved_filters(preserved, url))

    def get_changelist(self, request, **kwargs):
        # The next pair reads the list's rows, not its page (`_request_of_the_list`).
        if getattr(request, "rows_only", False):
            return RowsOnlyChangeList
        return super().get_changelist(request, **kwargs)


class RowsOnlyChangeList(ChangeList):
    """The list's rows, filtered and ordered as its page would show them (`queryset`), without
    the page: Django's changelist counts its rows twice as it is made, each count a second at
    1,000,000 incidents (the pairs' visibility reads every incident), which the next pair does not
    need."""

    def get_results(self, request):
        """Nothing: no page is made of these rows."""


def _request_of_the_list(request):
    """The request of the list a change page was opened from, for its rows only: its query string
    is the one the admin keeps in the page's `_changelist_filters` (none: the list's default, the
    waiting pairs), without its page: the next pair is the list's next whatever page it is on, and
    a page above the first was refused (a 500, the decision rolled back) by a list that makes no
    page."""
    listing = copy.copy(request)
    listing.GET = QueryDict(request.GET.get("_changelist_filters", ""), mutable=True)
    listing.GET.pop(PAGE_VAR, None)
    listing.rows_only = True
    return listing


def _waits_for_merge(pair) -> bool:
    """Decided "same incident", and no merge carried it out (`with_merge_state`)."""
    return pair.decision == DuplicateDecision.SAME and not pair.merged


def _claims(incident) -> str:
    # Each source with its publisher and date (`Source.label`): HRW's and Amnesty's "Annual report
    # 2023" read alike, with no ≠.
    return "; ".join(f"{claim.source.label}: {figure(claim)}" for claim in incident.claims.all()) or "—"
