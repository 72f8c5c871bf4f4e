"""Reading the audit trail that database triggers (django-pghistory) write for every tracked model.

Rows are written by triggers, so every door, `queryset.update()`, `bulk_create` and raw SQL leave
them; `PGHISTORY_APPEND_ONLY` makes the database refuse to alter them. This module reads them,
through the same visibility rules as the records they describe, and lets bulk writers switch the
insert triggers (or the incidents' update triggers) off while they record those rows' history
themselves.
"""

import functools
import operator
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.postgres.fields import ArrayField
from django.db import connection, models
from django.db.models import Exists, Func, OuterRef, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.utils.text import capfirst
from pghistory.models import Events

from incidents.languages import LanguageCodeField, language_label
from incidents.models import (
    NOTE_WITHHELD,
    Claim,
    CreatedPerAudience,
    DuplicateDecision,
    DuplicatePair,
    Incident,
    IncidentMerge,
    IncidentRevision,
    NoteWrittenInConfidence,
    Response,
    Source,
    VersionsPerAudience,
)
from incidents.querysets import can_see_confidential, can_see_unpublished, claim_states_disclosed_to, limit_to_visible

# Bookkeeping columns that change on every save; showing them would bury the real changes. A
# revision's proposed `changes` are read on the revision's own page, as a diff.
_UNINTERESTING_COLUMNS = {"id", "updated_at", "created_at", "version", "updated_by_id", "created_by_id", "changes"}


@dataclass(frozen=True)
class HistoryEntry:
    # None where it is withheld from the reader with who made it (`_Reader.in_confidence`).
    when: datetime | None
    user: Any
    # What happened, as people say it: "Incident changed", "Place: Yanji added", "Claim (Daily NK) removed".
    summary: str
    # (field label, old, new), values as the admin shows them: choice labels, records by name.
    changes: list[tuple[str, Any, Any]]
    # The CSV file an import wrote this from (the importer's history context), if any.
    import_file: str | None
    # The pghistory event it reads, for doors that also show the raw record (the API).
    event: Any
    # The other records it names (a claim's source, a pair's incidents), all visible to the reader:
    # what a door records when some of them are confidential (incidents.access).
    named: tuple[models.Model, ...] = ()
    # The event's own diff ({column: [old, new]}) and record, for doors that show them raw (the
    # API), with the id of every record the reader is not told of (`HIDDEN_RECORD`) as None.
    raw_changes: dict[str, list] | None = None
    raw_data: dict[str, Any] | None = None
    # insert, update or delete; an update whose state before is hidden from the reader reads as an insert.
    action: str = ""


def set_insert_triggers(*, enabled: bool) -> None:
    """Until set back or the transaction (or savepoint) ends, the tracked models' insert triggers
    fire or not (`PGHISTORY_DEFAULT_TRACKERS`' condition), and so do the statement triggers that keep
    the search words, the CSV export's rows and the statistics' totals on insert (migrations 0034,
    0028 and 0044). For code that writes rows in bulk and records their insert history itself, or,
    for synthetic data, not at all, and refreshes the search words and export rows of the incidents
    it wrote (`incident_search_refresh`, `incident_export_refresh`) once every table is written, and
    notes them for the totals' count (`incident_rollup_mark`, or counts them itself)."""
    _set_triggers_off(settings.INSERT_TRIGGERS_OFF_SETTING, off=not enabled)


def set_incident_update_triggers(*, enabled: bool) -> None:
    """Until set back or the transaction (or savepoint) ends, the incidents' update history trigger
    (`Incident`'s tracker) fires or not, and so does the statement trigger that makes their export
    rows again on update (migration 0054); their search words and statistics' totals are kept as
    ever. For code that starts a new version of many incidents at once, records their update
    history itself, and has their export rows made again later in the same transaction."""
    _set_triggers_off(settings.INCIDENT_UPDATE_TRIGGERS_OFF_SETTING, off=not enabled)


def _set_triggers_off(setting: str, *, off: bool) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, true)", [setting, "on" if off else "off"])


# Oldest first; events of one transaction share their time, the rest orders them steadily.
HISTORY_ORDERING = ("pgh_created_at", "pgh_id", "pgh_model")


def history_visible_to(obj: models.Model, user) -> models.QuerySet:
    """The audit events of `obj` the user may see, oldest first.

    An incident's history also holds the events of its claims, places, victim groups and
    involvements, since analysts edit those on the incident's page. Events of claims the user may
    not see (confidential, or from a confidential source) are left out, a deleted claim's as its
    last recorded state says (`_claims_shown_in_history`); so are those of duplicate pairs with an
    incident the user may not see, and what a pair, a merge or a claim recorded while the other
    incident, or the claim's source, was confidential (`named_records_periods`). What is left out
    is left out of the query, so that neither a page's count nor its pagination tells of it; and so
    are those of merges with an incident the user may not see (`IncidentMergeQuerySet.visible_to`:
    its note, its record). The caller has already checked, through `visible_to`, that the user may
    see `obj`; what it held while it was hidden from them (`hidden_periods`) is left out. Runs one
    query (four for an incident seen without Confidential access; a response's, four; a pair's or a
    merge's, two)."""
    if not isinstance(obj, Incident):
        events = _outside_hidden_periods(Events.objects.tracks(obj), obj, user)
        return _with_something_to_read(_without_confidential_states(events, user)).order_by(*HISTORY_ORDERING)
    events = Events.objects.references(obj)
    # A merge names both incidents (and its note tells of the other): only merges this reader may
    # see, both incidents by their own state as the merges' list shows them. The merged incident's
    # own events reference the survivor too (`merged_into`): only those of incidents they may see.
    # Subqueries of the same statement, for readers with Confidential access too (drafts, and an
    # incident made confidential since).
    visible_merge_ids = (
        IncidentMerge.objects.visible_to(user)
        .filter(models.Q(survivor=obj) | models.Q(merged=obj))
        .values_list(Cast("pk", models.TextField()))
    )
    # Those merged into `obj` (the only incidents whose events reference it), not every incident
    # seen, which a history page would have PostgreSQL hash whole.
    merged_into_obj = IncidentMerge.objects.filter(survivor=obj).values("merged")
    seen_merged_ids = (
        Incident.objects.seen_by(user).filter(pk__in=merged_into_obj).values_list(Cast("pk", models.TextField()))
    )
    events = events.exclude(
        models.Q(pgh_obj_model=IncidentMerge._meta.label) & ~models.Q(pgh_obj_id__in=visible_merge_ids)
    ).exclude(
        models.Q(pgh_obj_model=Incident._meta.label)
        & ~models.Q(pgh_obj_id=str(obj.pk))
        & ~models.Q(pgh_obj_id__in=seen_merged_ids)
    )
    if not can_see_confidential(user):
        visible_claim_ids = [str(pk) for pk in _claims_shown_in_history(obj, user)]
        events = events.exclude(models.Q(pgh_obj_model=Claim._meta.label) & ~models.Q(pgh_obj_id__in=visible_claim_ids))
        # A revision proposed by someone with Confidential access may carry confidential claims.
        visible_revision_ids = [
            str(pk)
            for pk in IncidentRevision.objects.visible_to(user).filter(incident=obj).values_list("pk", flat=True)
        ]
        events = events.exclude(
            models.Q(pgh_obj_model=IncidentRevision._meta.label) & ~models.Q(pgh_obj_id__in=visible_revision_ids)
        )
        # A pair names its other incident (its id in the event's data): only pairs of two incidents
        # the user may see, each by its own state (the survivor of a merge keeps its pair), as the
        # duplicates' queue shows them; a subquery of the same statement. Read from the pairs'
        # events, which name the same two incidents as the pair ever did: a waiting pair that a
        # rescoring withdrew (deleted) keeps its history.
        seen = Incident.objects.seen_by(user).values("pk")
        visible_pair_ids = (
            DuplicatePair.pgh_event_model.objects.filter(incident_a__in=seen, incident_b__in=seen)
            .filter(models.Q(incident_a=obj) | models.Q(incident_b=obj))
            .values_list(Cast("pgh_obj_id", models.TextField()))
        )
        events = events.exclude(
            models.Q(pgh_obj_model=DuplicatePair._meta.label) & ~models.Q(pgh_obj_id__in=visible_pair_ids)
        )
        # The states of a claim they see now while it was of a source hidden from them (its source
        # changed since): among the sources its claims' events name, each looked up by its key.
        claim_events = Claim.pgh_event_model.objects.filter(incident=obj).values("pgh_obj_id")
        named = Claim.pgh_event_model.objects.filter(pgh_obj_id__in=claim_events).values("source_id")
        visible = Source.objects.visible_to(user).filter(pk=OuterRef("pk"))
        hidden_sources = Source.objects.filter(pk__in=named).exclude(Exists(visible)).values("pk")
        event_source = Cast(KeyTextTransform("source_id", "pgh_data"), models.BigIntegerField())
        events = events.alias(event_source=event_source).exclude(
            models.Q(pgh_obj_model=Claim._meta.label) & models.Q(event_source__in=hidden_sources)
        )
        events = _outside_hidden_periods(events, obj, user)
        events = _outside_named_records_periods(events, obj, user)
    return _with_something_to_read(_without_confidential_states(events, user)).order_by(*HISTORY_ORDERING)


def hidden_periods(subject: models.Model, user) -> list[tuple[datetime, datetime | None]]:
    """When `subject` was hidden from `user` as a whole, oldest first (None: it still is): what its
    history recorded then is not theirs to read, though they may see it now. An incident while it
    was confidential (made public since, the informant's family taken out of a victim group's
    description first, say); a response while every incident it concerned was (a statement naming
    the informant, redacted before it was linked to a public incident); a duplicate pair or a merge
    while either of its incidents was (a note naming the informant). Records whose own
    `confidential` hides them need none: `_without_confidential_states` reads their states."""
    if can_see_confidential(user):
        return []
    if isinstance(subject, Incident):
        return confidential_periods(subject)
    if isinstance(subject, Response):
        return _response_hidden_periods(subject)
    if isinstance(subject, _LINKS_BETWEEN_INCIDENTS):
        return _link_hidden_periods(subject)
    return []


def _kept_in_hidden_periods(subject: models.Model) -> tuple[str, ...]:
    """The records (`pgh_obj_model`) on `subject`'s history whose events its `hidden_periods` do not
    hide: an incident's own (and a merged one's), whose recorded states say themselves when it was
    confidential (`_without_confidential_states`). A response's own say nothing of its incidents."""
    return (Incident._meta.label,) if isinstance(subject, Incident) else ()


def _during(periods: list[tuple[datetime, datetime | None]]) -> models.Q:
    """Events recorded in any of `periods` (at least one)."""
    return _any(
        models.Q(pgh_created_at__gte=start) & (models.Q(pgh_created_at__lt=end) if end else models.Q())
        for start, end in periods
    )


def _any(conditions) -> models.Q:
    return functools.reduce(operator.or_, conditions)


def _outside_hidden_periods(events: models.QuerySet, subject: models.Model, user) -> models.QuerySet:
    """`events` without those recorded while `subject` was hidden from `user` (`hidden_periods`)."""
    periods = hidden_periods(subject, user)
    if not periods:
        return events
    kept = models.Q(pgh_obj_model__in=_kept_in_hidden_periods(subject))
    return events.exclude(_during(periods) & ~kept)


# The records on an incident's history that name another record with a `confidential` of its own,
# by the model named and the columns naming it: a duplicate pair (its decision and note) and a merge
# (its note, its undo) name both incidents, a claim its source. What one recorded while a record it
# named was confidential is hidden as that record's own states are (`_without_confidential_states`),
# by that record's recorded states (`_confidential_periods_of`): a pair decided "same as informant
# K's account" while the other incident was confidential, or a claim's excerpt naming the informant
# while its source was, were read on the incident's history once that record was made public.
_NAMING_CONFIDENTIAL_RECORDS = {
    DuplicatePair: (Incident, ("incident_a_id", "incident_b_id")),
    IncidentMerge: (Incident, ("survivor_id", "merged_id")),
    Claim: (Source, ("source_id",)),
}
# Those of them with a history page of their own, hidden there while either incident was confidential.
_LINKS_BETWEEN_INCIDENTS = (DuplicatePair, IncidentMerge)

Periods = list[tuple[datetime, datetime | None]]


def _named_before_periods(event, periods: dict[type[models.Model], dict[int, Periods]]) -> Periods:
    """When a record that the state before `event` named (`_NAMING_CONFIDENTIAL_RECORDS`: a claim's
    source then) was confidential, by `periods` (the records', by model and id)."""
    model = apps.get_model(event.pgh_obj_model)
    if model not in _NAMING_CONFIDENTIAL_RECORDS:
        return []
    named, columns = _NAMING_CONFIDENTIAL_RECORDS[model]
    data, diff = event.pgh_data or {}, event.pgh_diff or {}
    before = [diff[column][0] if column in diff else data.get(column) for column in columns]
    return [period for record in before if record is not None for period in periods.get(named, {}).get(record, ())]


def _outside_named_records_periods(events: models.QuerySet, incident: Incident, user) -> models.QuerySet:
    """`events` of `incident`'s history without those of a record that names another one with a
    `confidential` of its own (`_NAMING_CONFIDENTIAL_RECORDS`) recorded while that one was
    confidential, for readers without Confidential access (`incident`'s own periods are
    `_outside_hidden_periods`'). No query of its own: read with `incident`'s (`confidential_periods`)."""
    periods = named_records_periods(incident, user)
    hidden = [
        models.Q(pgh_obj_model=model._meta.label)
        & _any(models.Q(**{f"pgh_data__{column}": record}) for column in columns)
        & _during(record_periods)
        for model, (named, columns) in _NAMING_CONFIDENTIAL_RECORDS.items()
        for record, record_periods in periods.get(named, {}).items()
    ]
    return events.exclude(_any(hidden)) if hidden else events


def _confidential_periods_of(wanted: dict[type[models.Model], Any]) -> dict[type[models.Model], dict[int, Periods]]:
    """When each record wanted (by model: a list of ids or a subquery) was confidential, by its own
    recorded states, oldest first: from the time of the change that made it confidential (or created
    it so) until that of the change that made it public (None: it still is). Records never
    confidential, or with no recorded history, are left out. One query."""
    models_wanted = list(wanted)
    states = [
        model.pgh_event_model.objects.filter(pgh_obj_id__in=ids)
        .annotate(model_index=models.Value(index))
        .values_list("model_index", "pgh_obj_id", "pgh_id", "pgh_created_at", "confidential")
        for index, (model, ids) in enumerate(wanted.items())
    ]
    rows = states[0].union(*states[1:], all=True) if len(states) > 1 else states[0]
    found = {model: {} for model in models_wanted}
    rows = rows.order_by("model_index", "pgh_obj_id", "pgh_id")
    for (index, record), recorded in groupby(rows, key=itemgetter(0, 1)):
        periods = _periods((at, confidential) for *_, at, confidential in recorded)
        if periods:
            found[models_wanted[index]][record] = periods
    return found


def confidential_periods(incident: Incident) -> Periods:
    """When `incident` was confidential, by its own recorded states (`_confidential_periods_of`).
    One query, kept on the incident for the rest of the request, which also reads when each record
    its history names was (`named_records_periods`)."""
    if not hasattr(incident, "_confidential_periods"):
        # The incidents it shares a pair or a merge with, as their events name them (itself included).
        linked = [
            model.pgh_event_model.objects.filter(_any(models.Q(**{name: incident.pk}) for name in columns)).values(
                column
            )
            for model, (named, columns) in _NAMING_CONFIDENTIAL_RECORDS.items()
            if named is Incident
            for column in columns
        ]
        incidents = Incident.objects.filter(pk=incident.pk).values("pk").union(*linked, all=True)
        sources = Claim.pgh_event_model.objects.filter(incident_id=incident.pk).values("source_id")
        periods = _confidential_periods_of({Incident: incidents, Source: sources})
        incident._confidential_periods = periods[Incident].pop(incident.pk, [])
        incident._named_records_periods = periods
    return incident._confidential_periods


def named_records_periods(incident: models.Model, user) -> dict[type[models.Model], dict[int, Periods]]:
    """When each record that the events on `incident`'s history name, and that has a `confidential`
    of its own, was confidential (`_NAMING_CONFIDENTIAL_RECORDS`: the incidents it shares a duplicate
    pair or a merge with, its claims' sources), by model and id, for a reader without Confidential
    access (none for other readers or other records): what those events recorded then is hidden."""
    if can_see_confidential(user) or not isinstance(incident, Incident):
        return {}
    confidential_periods(incident)
    return incident._named_records_periods


def _link_hidden_periods(link: models.Model) -> Periods:
    """When either incident `link` (a pair, a merge) names was confidential, oldest first (periods
    of the two may overlap). One query, kept on the record for the rest of the request."""
    if not hasattr(link, "_hidden_periods"):
        ids = [getattr(link, column) for column in _NAMING_CONFIDENTIAL_RECORDS[type(link)][1]]
        by_incident = _confidential_periods_of({Incident: ids})[Incident]
        link._hidden_periods = sorted(
            (period for periods in by_incident.values() for period in periods), key=itemgetter(0)
        )
    return link._hidden_periods


def _response_hidden_periods(response: Response) -> list[tuple[datetime, datetime | None]]:
    """When `response` concerned incidents and none a reader without Confidential access sees (each
    confidential or merged: `ResponseQuerySet.visible_to`), by its recorded links and their
    incidents' recorded states, oldest first: from the time of the change after which it was so
    until that of the change after which it was not (None: it still is). A link or an incident with
    no recorded history (demo data records none) counts as it is now; an incident before its first
    recorded state, as that state. Three queries, kept on the response for the rest of the request."""
    if hasattr(response, "_hidden_periods"):
        return response._hidden_periods
    links = Response.incidents.through
    current = links.objects.filter(response=response).values_list(
        "incident_id", "incident__confidential", "incident__merged_into_id"
    )

    def shown(confidential: bool, merged_into: int | None) -> bool:
        return not confidential and merged_into is None

    seen = {incident: shown(confidential, merged) for incident, confidential, merged in current}
    recorded_links = list(
        links.pgh_event_model.objects.filter(response_id=response.pk)
        .order_by("pgh_id")
        .values_list("pgh_created_at", "pgh_label", "incident_id")
    )
    first_link_event = {incident: label for _, label, incident in reversed(recorded_links)}
    # Linked before anything was recorded: a link with no event, or whose first event removed it.
    linked = {incident for incident in seen if incident not in first_link_event}
    linked |= {incident for incident, label in first_link_event.items() if label == "delete"}
    states = list(
        Incident.pgh_event_model.objects.filter(pgh_obj_id__in=[*first_link_event, *seen])
        .order_by("pgh_id")
        .values_list("pgh_created_at", "pgh_obj_id", "confidential", "merged_into_id")
    )
    seen |= {incident: shown(confidential, merged) for _, incident, confidential, merged in reversed(states)}
    changes = sorted(
        [(at, "link", label, incident) for at, label, incident in recorded_links]
        + [(at, "state", incident, shown(confidential, merged)) for at, incident, confidential, merged in states],
        key=itemgetter(0),
    )

    def hidden_now() -> bool:
        return bool(linked) and not any(seen.get(incident, False) for incident in linked)

    hidden = [(datetime.min.replace(tzinfo=UTC), hidden_now())]
    # The changes of one transaction share its time: the response is as all of them left it.
    for at, together in groupby(changes, key=itemgetter(0)):
        for _, kind, first, second in together:
            if kind == "state":
                seen[first] = second
            elif first == "insert":
                linked.add(second)
            else:
                linked.discard(second)
        hidden.append((at, hidden_now()))
    response._hidden_periods = _periods(hidden)
    return response._hidden_periods


def _periods(states) -> list[tuple[datetime, datetime | None]]:
    """The periods in which `states`, (time, hidden) oldest first, said hidden: from the first time
    of each run until the first time it said not (None: it still does)."""
    periods, start = [], None
    for at, hidden in states:
        if hidden and start is None:
            start = at
        elif not hidden and start is not None:
            periods.append((start, at))
            start = None
    return [*periods, *([(start, None)] if start is not None else [])]


def _after_hidden_periods(events: list, user, subject: models.Model) -> set[tuple[str, int]]:
    """The events (by event model and id) on `subject`'s history whose state before was recorded
    while `subject` was hidden from the reader (`hidden_periods`; not the incident's own, which
    `_kept_in_hidden_periods`), or while a record that state named was confidential
    (`named_records_periods`: a pair's other incident, a claim's source): their diffs' values before
    are those of a state `history_visible_to` hides from them. One query per kind of record with
    such an event on the page, none for a record never hidden."""
    own, named = hidden_periods(subject, user), named_records_periods(subject, user)
    if not own and not any(named.values()):
        return set()
    kept = _kept_in_hidden_periods(subject)
    wanted, periods_of = defaultdict(list), {}
    for event in events:
        if not event.pgh_diff:
            continue
        # Also while a record its state before named was confidential (a pair's other incident, a
        # claim's source then).
        periods = [*([] if event.pgh_obj_model in kept else own), *_named_before_periods(event, named)]
        if periods:
            wanted[event.pgh_model].append(event.pgh_id)
            periods_of[event.pgh_model, event.pgh_id] = periods
    found = set()
    for label, ids in wanted.items():
        event_model = apps.get_model(label)
        previous = (
            event_model.objects.filter(pgh_obj_id=OuterRef("pgh_obj_id"), pgh_id__lt=OuterRef("pgh_id"))
            .order_by("-pgh_id")
            .values("pgh_created_at")[:1]
        )
        for pgh_id, before in (
            event_model.objects.filter(pgh_id__in=ids)
            .annotate(before=Subquery(previous))
            .values_list("pgh_id", "before")
        ):
            if before is not None and any(
                start <= before and (end is None or before < end) for start, end in periods_of[label, pgh_id]
            ):
                found.add((label, pgh_id))
    return found


def _revision_changes_shown(events: list, user) -> dict[tuple[str, int], dict[str, Any]]:
    """The proposed `changes` each revision's event records, by (event model, id), as `user` is
    shown them on the revision's own page (`services.revision_changes_disclosed`): the raw record
    held the claims of sources made confidential since, excerpts and all. Two queries when a
    revision on the page proposes claims, for readers without Confidential access; else none."""
    if can_see_confidential(user):
        return {}
    # Imported here: services imports this module.
    from incidents.services import revision_changes_disclosed

    recorded = {
        (event.pgh_model, event.pgh_id): event.pgh_data or {}
        for event in events
        if event.pgh_obj_model == IncidentRevision._meta.label
    }
    return revision_changes_disclosed(recorded, user) if recorded else {}


# The records whose own `confidential` marks them hidden from readers without Confidential access.
_CONFIDENTIAL_MODELS = (Incident, Claim, Source)


# The columns every save moves, which tell nothing of what changed (the history's summary leaves
# them out), and which a reader without Confidential access is told otherwise (`disclosed_*`).
BOOKKEEPING_COLUMNS = ("version", "updated_at", "updated_by_id")

# The records a reader may not have seen since their creation (a source, an incident, a response
# recorded in confidence or as a draft, a claim of one), whose recorded `created_at` tells them when
# that was: their own page tells them when they first saw the record (`querysets.created_at_seen_by`).
_CREATED_IN_CONFIDENCE = (CreatedPerAudience, Claim)


def _with_something_to_read(events: models.QuerySet) -> models.QuerySet:
    """`events` without the updates that moved only bookkeeping (`BOOKKEEPING_COLUMNS`), which no
    page shows: a new version of an incident whose confidential source was renamed, or whose
    confidential claim was edited, left in the query, added to a page's count ("page 1 of 2", the
    second empty) and its pagination (an empty page whose cursor named the hidden event), telling
    staff without Confidential access that something hidden changed, and when."""
    changed_besides = Coalesce(
        Func(
            models.F("pgh_diff"),
            models.Value(list(BOOKKEEPING_COLUMNS), output_field=ArrayField(models.TextField())),
            template="(%(expressions)s)",
            arg_joiner=" - ",
            output_field=models.JSONField(),
        ),
        models.Value({}, output_field=models.JSONField()),
    )
    return events.alias(changed_besides=changed_besides).exclude(pgh_label="update", changed_besides={})


def _without_confidential_states(events: models.QuerySet, user) -> models.QuerySet:
    """`events` without the states a record had while it was confidential, for readers without
    Confidential access: a claim, source or incident made public (its informant's name taken out of
    the excerpt first, say) showed every earlier state, the name included, to all staff. The change
    that made it public reads as its creation (`_Reader.entry`), without the values before it."""
    if can_see_confidential(user):
        return events
    return events.exclude(
        models.Q(pgh_obj_model__in=[model._meta.label for model in _CONFIDENTIAL_MODELS])
        & models.Q(pgh_data__confidential=True)
    )


def _claims_shown_in_history(incident: Incident, user) -> models.QuerySet:
    """The ids of the claims whose events on `incident`'s history `user` may read: existing claims
    `user` may see, and deleted ones whose last state (their deletion's event) `user` could see,
    its source as it is now; never by a join to a claim row, which a deleted claim no longer has.
    Found through their events, which name `incident` also when the claim has since moved to
    another incident (a merge or its undo). One query."""
    claim_events = Claim.pgh_event_model.objects
    in_history = claim_events.filter(incident=incident).values("pgh_obj_id")
    existing = Claim.objects.visible_to(user).filter(pk__in=in_history).order_by().values_list("pk", flat=True)
    last_states = claim_events.filter(pgh_label="delete", pgh_obj_id__in=in_history)
    deleted = claim_states_disclosed_to(last_states, user).values_list("pgh_obj_id", flat=True)
    return existing.union(deleted)


# What a reader is told of a link to a record they may not see: never its id, which would confirm
# that a hidden record exists (and which one).
HIDDEN_RECORD = "a record you may not see"


def _is_empty(value) -> bool:
    return value is None or value == "" or value == []


def _changes(event, *, before_hidden: bool = False) -> list[tuple[str, Any, Any]]:
    """(column, old, new) for an update; (column, None, value) for a creation, and for an update whose
    state before is hidden from the reader (`before_hidden`); (column, value, None) for a deletion.
    pghistory's diff compares each event with the previous one of the same object. Bookkeeping
    columns are left out, and so are blank values on either side of a creation or deletion (a blank
    field was not "changed")."""
    if event.pgh_diff and not before_hidden:
        pairs = [(column, old, new) for column, (old, new) in event.pgh_diff.items()]
    elif event.pgh_label == "delete":
        pairs = [(column, value, None) for column, value in event.pgh_data.items()]
    else:
        pairs = [(column, None, value) for column, value in event.pgh_data.items()]
    return sorted(
        (column, old, new)
        for column, old, new in pairs
        if column not in _UNINTERESTING_COLUMNS
        and not column.startswith("pgh_")
        and old != new
        and not (_is_empty(old) and _is_empty(new))
    )


def _foreign_keys(model: type[models.Model]) -> dict[str, models.ForeignKey]:
    """The columns of `model` that name another record and that history shows (not who saved it)."""
    return {
        field.attname: field
        for field in model._meta.concrete_fields
        if field.many_to_one and field.attname not in _UNINTERESTING_COLUMNS
    }


def _is_link(model: type[models.Model]) -> bool:
    """A row that only links two records (an incident's place, a response's incident): its
    history reads as the linked record added or removed, not as a row with columns."""
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    return len(fields) == 2 and all(field.many_to_one for field in fields)


def _related_records(events, user) -> dict[tuple[type, str], models.Model]:
    """The records that events' foreign keys point to (a claim's source, a link's place), so the
    history reads "Place: Dandong" rather than "place_id: 7". Only records the user may see are
    named. One query per related model."""
    wanted = defaultdict(set)
    for event in events:
        model = apps.get_model(event.pgh_obj_model)
        for column, field in _foreign_keys(model).items():
            values = (event.pgh_data or {}).get(column), *(event.pgh_diff or {}).get(column, ())
            wanted[field.related_model].update(str(pk) for pk in values if pk is not None)
    records = {}
    for model, pks in wanted.items():
        visible = _nameable(model._default_manager.filter(pk__in=pks), user)
        records.update({(model, str(record.pk)): record for record in visible})
    return records


def _nameable(queryset: models.QuerySet, user) -> models.QuerySet:
    """The records of `queryset` a history may name to `user`: those they may see, and of
    incidents also the merged ones they may follow to their survivor (`synced_to`: those whose
    address redirects them), and of duplicate pairs those of two such incidents. A Reviewer who had
    merged two incidents read, on the survivor's history, that the merge, its pair and the other
    incident were "a record you may not see"."""
    if queryset.model is Incident:
        return queryset.filter(pk__in=Incident.objects.synced_to(user).values("pk"))
    if queryset.model is DuplicatePair:
        if not can_see_unpublished(user):
            return queryset.none()
        followed = Incident.objects.synced_to(user).values("pk")
        return queryset.filter(incident_a__in=followed, incident_b__in=followed)
    return limit_to_visible(queryset, user)


class _Reader:
    """Turns the events shown on `subject`'s history page into what a person reads."""

    def __init__(self, events, user, subject: models.Model):
        self.subject = subject
        self.records = _related_records(events, user)
        self.sees_confidential = can_see_confidential(user)
        self.after_hidden_periods = _after_hidden_periods(events, user, subject)
        self.revision_changes = _revision_changes_shown(events, user)
        self.merges_withheld = _merges_withheld(events, user)
        # The records named by the entry being read, which it keeps (`HistoryEntry.named`).
        self.named = []

    def record_name(self, field: models.ForeignKey, value) -> str:
        record = self.records.get((field.related_model, str(value)))
        if record is not None:
            self.named.append(record)
            return str(record)
        # A record with visibility rules that is not named may be hidden or deleted: say neither,
        # so the page reads the same whichever it is. Other records are missing only once deleted.
        if _has_visibility_rules(field.related_model):
            return HIDDEN_RECORD
        return f"a deleted {field.related_model._meta.verbose_name}"

    def is_hidden_link(self, field: models.ForeignKey, value) -> bool:
        """Whether `value`, the id in `field` of a record with visibility rules, names one this
        reader is not told of (hidden from them, or deleted since)."""
        return (
            value is not None
            and _has_visibility_rules(field.related_model)
            and (field.related_model, str(value)) not in self.records
        )

    def raw_id(self, field: models.ForeignKey, value):
        """`value`, the id in the raw event of the record `field` names, or None where it names a
        record this reader is not told of: the raw record must not name what its summary hides."""
        return None if self.is_hidden_link(field, value) else value

    def in_confidence(self, model: type[models.Model], event) -> tuple[bool, bool]:
        """`_notes_in_confidence`, and the state recorded by any row written with a merge or its undo
        whose who and when are withheld from this reader (`decided_withheld_from`), in the same
        history context (`merge`): the incident's own row, its moved claims and links, the pair and
        the revision the merge wrote named the Reviewer and the time the merge's record withholds."""
        before, now = _notes_in_confidence(model, event)
        return before, now or (event.pgh_context or {}).get("merge") in self.merges_withheld

    def changes_shown(self, model: type[models.Model], event, *, before_hidden: bool) -> list[tuple[str, Any, Any]]:
        """`_changes` as this reader may read them: a link to a record they may not see reads as
        empty, as every other door shows it (a source citing a confidential one: `"cites": null`,
        and its chain ends "without a word"), so a change of that link alone is no change to them.
        Read as "a record you may not see", it told an Analyst which public article relays a
        confidential informant, which the corroboration counts and citation chains keep from them.
        A reader with Confidential access sees every record there is: one not named to them was
        deleted since, and still reads as such."""
        if self.sees_confidential:
            return _changes(event, before_hidden=before_hidden)
        links = _foreign_keys(model)
        note_before, note_now = self.in_confidence(model, event)
        written = _written_columns(model, event)

        def shown(column, value, in_confidence):
            value = _as_read(model, column, value, in_confidence=in_confidence, written=written)
            return self.raw_id(links[column], value) if column in links else value

        shown_pairs = (
            (column, shown(column, old, note_before), shown(column, new, note_now))
            for column, old, new in _changes(event, before_hidden=before_hidden)
        )
        return [
            (column, old, new)
            for column, old, new in shown_pairs
            if old != new and not (_is_empty(old) and _is_empty(new))
        ]

    def before_hidden(self, model: type[models.Model], event) -> bool:
        """Whether the state before `event` is one this reader is not shown (`history_visible_to`):
        it made a confidential record public, gave a claim a source they see in place of one they
        do not, or changed a record last recorded while the page's incident or response was hidden
        from them (`hidden_periods`). Its diff's values before would show what that state held."""
        if self.sees_confidential or not event.pgh_diff:
            return False
        if event.pgh_diff.get("confidential") == [True, False] or (event.pgh_model, event.pgh_id) in (
            self.after_hidden_periods
        ):
            return True
        if model is Claim and "source_id" in event.pgh_diff:
            before = event.pgh_diff["source_id"][0]
            return before is not None and (Source, str(before)) not in self.records
        return False

    def raw(self, model: type[models.Model], event) -> tuple[dict[str, list] | None, dict[str, Any]]:
        """The event's diff and record as `HistoryEntry.raw_changes` and `raw_data`."""
        links = _foreign_keys(model)
        note_before, note_now = self.in_confidence(model, event)
        written = _written_columns(model, event)

        def shown(column, value, in_confidence=note_now):
            if not self.sees_confidential:
                value = _as_read(model, column, value, in_confidence=in_confidence, written=written)
            return self.raw_id(links[column], value) if column in links else value

        data, diff = event.pgh_data or {}, event.pgh_diff
        withheld = set()
        if issubclass(model, VersionsPerAudience) and not self.sees_confidential:
            # Counted with every change (`version` 3 where they are told 2), and naming the writer and
            # time of the change before, a hidden one too: the reader is told its `disclosed_*`.
            withheld.update(BOOKKEEPING_COLUMNS)
        if issubclass(model, _CREATED_IN_CONFIDENCE) and not self.sees_confidential:
            withheld.add("created_at")
        if withheld:
            data = {column: value for column, value in data.items() if column not in withheld}
            diff = diff and ({column: pair for column, pair in diff.items() if column not in withheld} or None)
        if model is IncidentRevision and not self.sees_confidential:
            # What it proposes as its own page shows it to this reader (its claims of a source made
            # confidential since left out); the proposal never changes, so no diff need hold it.
            data = {**data, "changes": self.revision_changes.get((event.pgh_model, event.pgh_id))}
            diff = diff and ({column: pair for column, pair in diff.items() if column != "changes"} or None)
        changes = (
            None
            if self.before_hidden(model, event)
            else diff
            and {
                column: [shown(column, old, note_before), shown(column, new)]
                for column, (old, new) in diff.items()
                # A link changed only between records the reader is not told of (or none) did not
                # change, to them (`changes_shown`).
                if self.sees_confidential or shown(column, old, note_before) != shown(column, new)
            }
        )
        return changes, {column: shown(column, value) for column, value in data.items()}

    def value(self, field: models.Field, value):
        if value is None:
            return None
        if field.many_to_one:
            return self.record_name(field, value)
        if field.choices:
            return dict(field.flatchoices).get(value, value)
        if isinstance(field, LanguageCodeField):
            # By name; free text written before the codes as it was.
            return language_label(value)
        if isinstance(value, bool):
            return "Yes" if value else "No"
        if isinstance(field, models.DateTimeField) and isinstance(value, str):
            return _when(value)
        if field.model is IncidentMerge and field.name == "pair_before" and isinstance(value, dict):
            return _pair_decision(value)
        if isinstance(value, list):
            return ", ".join(str(item) for item in value)
        return value

    def confidential_state_shown(self, model: type[models.Model], event) -> list[models.Model]:
        """The event's own record, as it was in the states the event shows, where one was
        confidential: a deleted confidential claim's words, a source's title while it was an
        informant's, which its record now (deleted, or made public) does not tell
        `access.confidential_among` to record. The state after the event, and for a change also the
        one before it, whose values it shows as "from": a claim reworded and made public in one
        save showed the informant's words, and was recorded by an earlier event on the same page
        only. Built from the event (no query): a claim with its source as this reader's page names
        it (`records`), confidential now or not."""
        data = event.pgh_data or {}
        states = [data]
        if event.pgh_diff:
            states.append(data | {column: old for column, (old, _) in event.pgh_diff.items()})
        record_id = int(event.pgh_obj_id)
        shown = []
        for state in states:
            if model is Claim:
                source = self.records.get((Source, str(state.get("source_id")))) or Source(confidential=False)
                shown.append(Claim(pk=record_id, confidential=bool(state.get("confidential")), source=source))
            elif model in (Source, Incident) and state.get("confidential"):
                shown.append(model(pk=record_id, confidential=True))
        return shown

    def points_to_subject(self, field: models.Field, value) -> bool:
        return (
            field.many_to_one and isinstance(self.subject, field.related_model) and str(value) == str(self.subject.pk)
        )

    def entry(self, event, user) -> HistoryEntry | None:
        self.named = []
        model = apps.get_model(event.pgh_obj_model)
        fields = {field.attname: field for field in model._meta.concrete_fields}
        data = event.pgh_data or {}
        when = event.pgh_created_at
        if self.sees_confidential:
            self.named.extend(_notes_shown(model, event))
            self.named.extend(self.confidential_state_shown(model, event))
        elif self.in_confidence(model, event)[1]:
            # Decided in confidence (`NoteWrittenInConfidence`), or written with a merge so decided:
            # who did it is withheld, as its record says, and so is when. Its record says neither
            # (`decided_at`, `merged_at`: null), and the exact time named it as well as a name
            # would: the merge of two incidents a colleague with Confidential access was reading.
            # The row keeps its place among the others, so the order still says what came first.
            user = when = None
            # Every account the row names is one of those who did it: the summary names a row by
            # the records it links, and an undo's change of the merge's revision named its
            # proposer, who merged ("Incident revision (lee) changed").
            written = _decided_columns(model) | _written_columns(model, event) | _user_columns(model)
            data = {column: value for column, value in data.items() if column not in written}
        # The other records a row names besides the page's own (a claim's source, a link's place).
        others = [
            (field, data.get(column))
            for column, field in _foreign_keys(model).items()
            if data.get(column) is not None and not self.points_to_subject(field, data.get(column))
        ]
        if _is_link(model):
            if event.pgh_label not in ("insert", "delete") or not others:
                return None
            field, value = others[0]
            # A response links itself to incidents (the relation is the response's); a place is added
            # to the incident.
            owner = model._meta.auto_created  # the model whose many-to-many field made this table
            linked = bool(owner) and not isinstance(self.subject, owner)
            verb = {"insert": "linked" if linked else "added", "delete": "unlinked" if linked else "removed"}
            summary = f"{capfirst(field.verbose_name)}: {self.record_name(field, value)} {verb[event.pgh_label]}"
            return HistoryEntry(
                when,
                user,
                summary,
                [],
                _import_file(event),
                event,
                tuple(self.named),
                *self.raw(model, event),
                action=event.pgh_label,
            )
        before_hidden = self.before_hidden(model, event)
        # Made public (or given a source the reader sees): to them, it appears now.
        action = "insert" if before_hidden else event.pgh_label
        changes = [
            (capfirst(fields[column].verbose_name), self.value(fields[column], old), self.value(fields[column], new))
            for column, old, new in self.changes_shown(model, event, before_hidden=before_hidden)
            if column in fields and not self.points_to_subject(fields[column], old if new is None else new)
        ]
        if event.pgh_label == "update" and not changes:
            # Only bookkeeping moved (a save that changed nothing bumps updated_at): nothing to read.
            return None
        own = isinstance(self.subject, model) and str(event.pgh_obj_id) == str(self.subject.pk)
        verbs = {"insert": "created", "update": "changed", "delete": "deleted"}
        if not own:
            verbs = {"insert": "added", "update": "changed", "delete": "removed"}
        name = capfirst(model._meta.verbose_name)
        if not own and others:
            name += f" ({', '.join(self.record_name(field, value) for field, value in others)})"
        summary = f"{name} {verbs.get(action, action)}"
        return HistoryEntry(
            when,
            user,
            summary,
            changes,
            _import_file(event),
            event,
            tuple(self.named),
            *self.raw(model, event),
            action=action,
        )


def _notes_in_confidence(model: type[models.Model], event) -> tuple[bool, bool]:
    """Whether the state before `event` and the state it recorded were decided in confidence
    (`NoteWrittenInConfidence`), for a reader without Confidential access: their note's words, who
    decided and when are withheld from them on the history as on the record's page. Events recorded
    before notes were judged (migration 0083) say no; `hidden_periods` hides those recorded while
    an incident was confidential."""
    if not issubclass(model, NoteWrittenInConfidence):
        return False, False
    data, diff = event.pgh_data or {}, event.pgh_diff or {}
    now = bool(data.get("note_confidential"))
    return (bool(diff["note_confidential"][0]) if "note_confidential" in diff else now), now


def _notes_shown(model: type[models.Model], event) -> list[models.Model]:
    """The pair or merge whose note written in confidence `event` shows a reader with Confidential
    access, as records for the record of who read it (`access.confidential_among`): its own note,
    before or after, and the pair's that a merge kept (`pair_before`). No query."""
    if not issubclass(model, NoteWrittenInConfidence):
        return []
    data, diff = event.pgh_data or {}, event.pgh_diff or {}
    before, now = _notes_in_confidence(model, event)
    notes = [note for note, judged in ((data.get("note"), now), ((diff.get("note") or [""])[0], before)) if judged]
    shown = [model(pk=int(event.pgh_obj_id), note=note, note_confidential=True) for note in notes if note][:1]
    pair_before = data.get("pair_before")
    if isinstance(pair_before, dict) and pair_before.get("note_confidential") and data.get("pair_id"):
        shown.append(DuplicatePair(pk=data["pair_id"], note=pair_before.get("note") or "", note_confidential=True))
    return shown


def _decided_columns(model: type[models.Model]) -> set[str]:
    """The columns saying who decided and when (`NoteWrittenInConfidence.decided_fields`)."""
    return {model._meta.get_field(name).attname for name in getattr(model, "decided_fields", ())}


def _user_columns(model: type[models.Model]) -> set[str]:
    """The columns naming an account (`created_by`, `proposed_by`, `decided_by`, …)."""
    user_model = get_user_model()
    return {
        field.attname
        for field in model._meta.concrete_fields
        if field.many_to_one and field.related_model is user_model
    }


def _written_columns(model: type[models.Model], event) -> set[str]:
    """The columns of `event`'s row that say who wrote it and when, as that write set them: who saved
    it (`updated_by`) and its automatic time (`auto_now`); the users and times it changed (a revision
    rejected: `decided_by`, `decided_at`); and for a row it created, every user it names and its
    creation time (`created_by`, `proposed_by`, `auto_now_add`)."""
    created = event.pgh_label == "insert"
    changed = event.pgh_diff or {}
    user_model = get_user_model()
    return {
        field.attname
        for field in model._meta.concrete_fields
        if (field.many_to_one and field.related_model is user_model and (created or field.name == "updated_by"))
        or (isinstance(field, models.DateTimeField) and (field.auto_now or (created and field.auto_now_add)))
        or (
            field.attname in changed
            and (isinstance(field, models.DateTimeField) or (field.many_to_one and field.related_model is user_model))
        )
    }


def _merges_withheld(events, user) -> set:
    """The ids of the merges named by `events`' history contexts (`merge`: written with a merge or
    its undo) whose who and when are withheld from `user` (`decided_withheld_from`). One query (two
    when a merge was deleted since), none for a reader with Confidential access or events written
    by no merge."""
    merge_ids = {(event.pgh_context or {}).get("merge") for event in events} - {None}
    if not merge_ids or can_see_confidential(user):
        return set()
    merges = IncidentMerge.objects.only("note_confidential").in_bulk(merge_ids)
    withheld = {merge_id for merge_id, merge in merges.items() if merge.decided_withheld_from(user)}
    if gone := merge_ids - merges.keys():
        # Undone, then deleted with its merged incident (migration 0106): its own history's rows say
        # whether it was made in confidence. Read as not, the rows it wrote named its Reviewer.
        withheld |= set(
            IncidentMerge.pgh_event_model.objects.filter(pgh_obj_id__in=gone, note_confidential=True).values_list(
                "pgh_obj_id", flat=True
            )
        )
    return withheld


def _as_read(model: type[models.Model], column: str, value, *, in_confidence: bool, written: set[str] = frozenset()):
    """`value` of `column` as a reader without Confidential access reads it: decided in confidence
    (`in_confidence`), the note is `NOTE_WITHHELD` and who decided and when are empty, and so are
    who wrote the row and when (`written`: `_written_columns`); and so in the record a merge kept
    of its pair's decision (`pair_before`, which says itself whether it was)."""
    if column == "note" and in_confidence and value:
        return NOTE_WITHHELD
    if (column in _decided_columns(model) or column in written) and in_confidence:
        return None
    if column == "pair_before" and isinstance(value, dict) and value.get("note_confidential"):
        withheld = {"decided_by_id": None, "decided_at": None}
        return {**value, **withheld, **({"note": NOTE_WITHHELD} if value.get("note") else {})}
    return value


def _when(recorded: str) -> str:
    """A time as the event recorded it (ISO 8601), as the page's "When (UTC)" column writes one:
    "2026-12-04T15:22:13.382899+00:00" read as "2026-12-04 15:22:13 UTC"."""
    try:
        return datetime.fromisoformat(recorded).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return recorded


def _pair_decision(before: dict[str, Any]) -> str:
    """A merge's record of its pair's decision before it (`IncidentMerge.pair_before`), as people
    read a decision: "Unsure, decided 2026-12-04 15:21:56 UTC: “need to check HRW”", where the page
    showed the dictionary kept for the undo."""
    decision = before.get("decision")
    said = str(dict(DuplicateDecision.choices).get(decision, decision))
    if before.get("decided_at"):
        said += f", decided {_when(before['decided_at'])}"
    return f"{said}: “{before['note']}”" if before.get("note") else said


def _has_visibility_rules(model: type[models.Model]) -> bool:
    return hasattr(model._default_manager.none(), "visible_to")


def _import_file(event) -> str | None:
    return (event.pgh_context or {}).get("import_file")


def history_entries(events, user, subject: models.Model) -> list[HistoryEntry]:
    """Events of `subject`'s history as rows a person reads: when, who (from the middleware's or the
    service's context), what happened to which record, each changed field's label with its old and
    new value (choices by label, related records by name; a link to a record the reader may not
    see reads as empty, and a change of it alone is left out), and the import file that wrote it.
    Events where only bookkeeping moved are left out. A fixed number of queries, whatever the
    number of events."""
    events = list(events)
    user_ids = {event.pgh_context.get("user") for event in events if event.pgh_context} - {None}
    users = get_user_model().objects.in_bulk(user_ids)
    # An account deleted since (outside the admin, which refuses it: accounts.grants) is still who
    # made the change, not "(system)", the changes no one made.
    users |= {user_id: DeletedAccount(user_id) for user_id in user_ids - set(users)}
    reader = _Reader(events, user, subject)
    entries = (reader.entry(event, users.get((event.pgh_context or {}).get("user"))) for event in events)
    return [entry for entry in entries if entry is not None]


@dataclass(frozen=True)
class DeletedAccount:
    """The author of a change whose account no longer exists: the history keeps only its id."""

    pk: int

    def get_username(self) -> str:
        return f"(deleted account #{self.pk})"
