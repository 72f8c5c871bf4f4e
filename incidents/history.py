"""Reading the audit trail that database triggers (django-pghistory) write for every tracked model.

Rows are written by triggers, so every door, `queryset.update()`, `bulk_create` and raw SQL leave
them; `PGHISTORY_APPEND_ONLY` makes the database refuse to alter them. This module reads them,
through the same visibility rules as the records they describe, and lets bulk writers switch the
insert triggers off while they record those rows' history themselves.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, models
from pghistory.models import Events

from incidents.models import Claim, Incident
from incidents.querysets import can_see_confidential, limit_to_visible

# Bookkeeping columns that change on every save; showing them would bury the real changes.
_UNINTERESTING_COLUMNS = {"id", "updated_at", "created_at", "version", "updated_by_id", "created_by_id"}


@dataclass(frozen=True)
class HistoryEntry:
    when: datetime
    user: Any
    action: str
    model: str
    object_id: str
    changes: list[tuple[str, Any, Any]]


def set_insert_triggers(*, enabled: bool) -> None:
    """Until set back or the transaction (or savepoint) ends, the tracked models' insert triggers
    fire or not (`PGHISTORY_DEFAULT_TRACKERS`' condition). For code that writes rows in bulk and
    records their insert history itself, or, for synthetic data, not at all."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config(%s, %s, true)", [settings.INSERT_TRIGGERS_OFF_SETTING, "off" if enabled else "on"]
        )


# Oldest first; events of one transaction share their time, the rest orders them steadily.
HISTORY_ORDERING = ("pgh_created_at", "pgh_id", "pgh_model")


def history_visible_to(obj: models.Model, user) -> models.QuerySet:
    """The audit events of `obj` the user may see, oldest first.

    An incident's history also holds the events of its claims, places, victim groups and
    involvements, since analysts edit those on the incident's page. Events of claims the user may
    not see (confidential, or from a confidential source) are left out, and so are those of deleted
    claims, which can no longer be checked against `visible_to`, except for readers who may see
    every claim. The caller has already checked, through `visible_to`, that the user may see `obj`.
    Runs one query (two for an incident)."""
    if not isinstance(obj, Incident):
        return Events.objects.tracks(obj).order_by(*HISTORY_ORDERING)
    events = Events.objects.references(obj)
    if not can_see_confidential(user):
        visible_claim_ids = [
            str(pk) for pk in Claim.objects.visible_to(user).filter(incident=obj).values_list("pk", flat=True)
        ]
        events = events.exclude(models.Q(pgh_obj_model=Claim._meta.label) & ~models.Q(pgh_obj_id__in=visible_claim_ids))
    return events.order_by(*HISTORY_ORDERING)


def _changes(event) -> list[tuple[str, Any, Any]]:
    """(column, old, new) for an update; (column, None, value) for a creation; (column, value, None)
    for a deletion. pghistory's diff compares each event with the previous one of the same object."""
    if event.pgh_diff:
        pairs = [(column, old, new) for column, (old, new) in event.pgh_diff.items()]
    elif event.pgh_label == "delete":
        pairs = [(column, value, None) for column, value in event.pgh_data.items()]
    else:
        pairs = [(column, None, value) for column, value in event.pgh_data.items()]
    return sorted(
        (column, old, new)
        for column, old, new in pairs
        if column not in _UNINTERESTING_COLUMNS and not column.startswith("pgh_") and old != new
    )


def _foreign_keys(model_label: str) -> dict[str, models.ForeignKey]:
    model = apps.get_model(model_label)
    return {field.attname: field for field in model._meta.concrete_fields if field.many_to_one}


def _related_names(events, user) -> dict[tuple[type, str], str]:
    """Names of the records that events' foreign keys point to (a claim's source, a link's place),
    so the history reads "place: Dandong" rather than "place_id: 7". Only records the user may see
    are named; others keep their id. One query per related model."""
    wanted = defaultdict(set)
    for event in events:
        foreign_keys = _foreign_keys(event.pgh_obj_model)
        for column, old, new in _changes(event):
            if column in foreign_keys:
                wanted[foreign_keys[column].related_model].update(str(pk) for pk in (old, new) if pk is not None)
    names = {}
    for model, pks in wanted.items():
        records = limit_to_visible(model._default_manager.filter(pk__in=pks), user)
        names.update({(model, str(record.pk)): str(record) for record in records})
    return names


def history_entries(events, user) -> list[HistoryEntry]:
    """Events as rows a person reads: when, who (from the middleware's or the service's context),
    what happened to which object, and each changed field's old and new value, related records by
    name. A fixed number of queries, whatever the number of events."""
    events = list(events)
    user_ids = {event.pgh_context.get("user") for event in events if event.pgh_context}
    users = get_user_model().objects.in_bulk([user_id for user_id in user_ids if user_id is not None])
    names = _related_names(events, user)

    def readable(event, column, value):
        field = _foreign_keys(event.pgh_obj_model).get(column)
        if field is None or value is None:
            return value
        return names.get((field.related_model, str(value)), f"#{value}")

    def label(event, column):
        field = _foreign_keys(event.pgh_obj_model).get(column)
        return column if field is None else field.name

    return [
        HistoryEntry(
            when=event.pgh_created_at,
            user=users.get((event.pgh_context or {}).get("user")),
            action={"insert": "created", "update": "changed", "delete": "deleted"}.get(
                event.pgh_label, event.pgh_label
            ),
            model=event.pgh_obj_model.split(".")[-1],
            object_id=event.pgh_obj_id,
            changes=[
                (label(event, column), readable(event, column, old), readable(event, column, new))
                for column, old, new in _changes(event)
            ],
        )
        for event in events
    ]
