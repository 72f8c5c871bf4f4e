"""Writes that carry rules. Every door (admin, API, import, commands) writes incidents through here.

Each write validates with the model's own rules (`full_clean()`, backed by database constraints),
checks the version the writer started from against the stored one (so a stale edit never overwrites
a newer one), records who did it, and runs in one transaction: it all lands or none of it does.
History rows are written by database triggers (pghistory); the context set here names the user.

The rules of who may do what live here, not in the doors: each service is given the acting `user`
and checks the model permission, the review workflow, the visibility of every record it reads,
changes or deletes, and the confidentiality rules itself (docs/rules.md lists them). A door that
calls a service cannot forget a rule, and a write answers alike whether or not a record hidden from
its author exists.
"""

import copy
import functools
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pghistory
from django.contrib.auth.models import AnonymousUser
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Exists, OuterRef, ProtectedError, Q
from django.db.models.constants import LOOKUP_SEP
from django.db.models.expressions import DatabaseDefault, RawSQL
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import capfirst
from pghistory.core import event_models
from psycopg import sql
from psycopg.errors import UniqueViolation

from incidents import duplicates
from incidents.exports import KEPT_TIME_SQL
from incidents.history import set_incident_update_triggers, set_insert_triggers
from incidents.models import (
    SOURCE_CITES_ITSELF_MESSAGE,
    Claim,
    Incident,
    IncidentExportRow,
    IncidentMerge,
    IncidentPlace,
    IncidentRevision,
    IncidentSubmission,
    IncidentType,
    Involvement,
    InvolvementRole,
    Organization,
    Place,
    Response,
    ReviewState,
    RevisionState,
    Source,
    Verification,
    VersionedModel,
    VictimGroup,
    comparable_title,
    reaches_itself,
)
from incidents.querysets import (
    AUDIENCES,
    EVERY_CHANGE,
    STAFF_ONLY_FIELDS,
    STAFF_WITHOUT_CONFIDENTIAL_ACCESS,
    THE_PUBLIC,
    VersionFields,
    access_changed_since_read,
    can_see_confidential,
    can_see_exact_locations,
    can_see_unpublished,
    ids_in_tree_below,
    limit_to_visible,
    place_path,
    updated_at_seen_by,
    updated_by_seen_by,
    version_seen_by,
    versions_told,
)
from incidents.text_fields import TextInNormalForm, normal_text, normal_value


def _changed_by(incident: Incident, reader, told: VersionFields | None = None) -> str:
    """Who last changed `incident`, as `reader` is told it (`updated_by_seen_by`, or `told`): a
    username only to staff, as an incident's `updated_by` shows it (an account that is not staff, a
    partner tool's, reads null)."""
    changed_by = updated_by_seen_by(incident, reader, told)
    if changed_by is None or not can_see_unpublished(reader):
        return "someone else"
    return changed_by.get_username()


class VersionConflict(Exception):
    """Someone saved the record (an incident, a source, a place…) after the writer loaded it; the
    message is for `reader`, the writer, with the version and time they are told (`version_fields`).

    `by_the_writer_alone`: the one change `reader` is told of since is their own (`changed_by_the_writer_alone`),
    as when the same request reaches the tracker twice (a Save pressed twice on a slow connection, a
    tool's PATCH retried after a timeout), the second stale by the first. Such a write that changes
    nothing of what is stored is answered as the success it was, not "changed … not saved" (the
    services', `record_save`'s and `incident_update`'s rule; a door's check ahead of them leaves it
    to them)."""

    by_the_writer_alone = False

    def __init__(self, *, current: models.Model, expected_version: int, reader=None, told: VersionFields | None = None):
        self.current = current
        self.expected_version = expected_version
        self.by_the_writer_alone = changed_by_the_writer_alone(current, expected_version, reader=reader, told=told)
        super().__init__(
            f"{last_change(current, reader, told)} "
            f"(now version {version_seen_by(current, reader, told)}; you edited version {expected_version}). "
            "Your changes were not saved: reload it, then apply them again."
        )


def changed_by_the_writer_alone(
    current: models.Model, expected_version: int, *, reader, told: VersionFields | None = None
) -> bool:
    """Whether `current` moved one version, as `reader` is told it (or `told`), since
    `expected_version`, by `reader`'s own change (`VersionConflict.by_the_writer_alone`): an
    incident's writer of it as its row keeps it (`updated_by_seen_by`), another record's as the
    history event of that change, the one dated with the change time `reader` is told, names it. A
    change hidden from `reader` counts as nothing, either way: it moved no version they are told,
    and which way they are answered tells nothing of it. Runs a query (an incident's writer, where
    not loaded with it)."""
    if _acting_user_id(reader) is None or version_seen_by(current, reader, told) != expected_version + 1:
        return False
    if isinstance(current, Incident):
        return updated_by_seen_by(current, reader, told) == reader
    changed_at = updated_at_seen_by(current, reader, told)
    writers = type(current).pgh_event_model.objects.filter(pgh_obj_id=current.pk, updated_at=changed_at)
    return set(writers.values_list("pgh_context__metadata__user", flat=True)) == {reader.pk}


def last_change(current: models.Model, reader, told: VersionFields | None = None) -> str:
    """ "INC-000042 was changed by alice at 2024-05-01 09:30 UTC", as `reader` is told it: what a
    stale write is answered with, whichever way it named its version (a body's, an If-Match)."""
    changed = f"{_record_name(current)} was changed"
    if isinstance(current, Incident):
        changed += f" by {_changed_by(current, reader, told)}"
    return f"{changed} at {updated_at_seen_by(current, reader, told):%Y-%m-%d %H:%M} UTC"


class AccessChangedSinceRead(VersionConflict):
    """A writer edited a version they read with other access than theirs now (`check_version`,
    `querysets.access_changed_since_read`: `change` is "taken" or "given")."""

    def __init__(self, current: models.Model, change: str):
        self.current = current
        self.expected_version = None
        name = _record_name(current)
        Exception.__init__(
            self,
            (
                f"You read {name} with access you no longer have, so what you edited may hold what you may no "
                "longer see."
                if change == "taken"
                else f"You read {name} before you were given the access you have now, so what you edited leaves "
                "out what you may see now, which saving it would remove or overwrite."
            )
            + " Your changes were not saved: reload it, then apply them again.",
        )


def check_version(
    current: models.Model,
    expected_version: int,
    *,
    reader,
    field: str = "version",
    told: VersionFields | None = None,
    unshown_kept: bool = False,
) -> None:
    """Refuse a write made from another version than `current`'s stored one as `reader` is told it
    (`version_seen_by`): a writer without Confidential access edits by the version of what they can
    see, so that a change hidden from them since they read neither refuses their write (which
    would tell them of it) nor is overwritten by it (they change only what they see). An older
    version means someone saved since: VersionConflict (a 409, "reload and apply again"). A version
    the record never reached is not a race but a wrong or forged value (10^30, say): a
    ValidationError naming `field` (a 400), which no reload would cure. `told`: the versions of
    another audience than `reader`'s (a revision's proposer's; the one a writer read the record
    as, `EditedVersion`). A writer who read it as another audience than theirs now, one told other
    changes, is refused as stale, with no word of what the count they read counts: their access
    taken away since, that count is not theirs to compare with, and theirs may equal the number
    they read; given since, their save would remove or overwrite what they were not shown, unless
    the write keeps it (`unshown_kept`: an import's file names no claim it would remove)."""
    change = None if told is None or reader is None else access_changed_since_read(told, reader, current)
    if change == "taken" or (change == "given" and not unshown_kept):
        raise AccessChangedSinceRead(current, change)
    stored_version = version_seen_by(current, reader, told)
    if expected_version > stored_version:
        raise ValidationError(
            {
                field: [
                    f"{_record_name(current)} never had version {expected_version}: it is at version "
                    f"{stored_version}. Send the version you read."
                ]
            }
        )
    if expected_version != stored_version:
        raise VersionConflict(current=current, expected_version=expected_version, reader=reader, told=told)


def _record_name(record: models.Model) -> str:
    if isinstance(record, Incident):
        return record.public_id
    return f"{capfirst(record._meta.verbose_name)} “{record}”"


class StaleRevision(VersionConflict):
    """A proposed revision's incident changed after the proposal: it cannot be accepted. Its reviewer
    rejects it and its author proposes again, so the message says that, not "reload, then apply"."""

    def __init__(self, *, current: Incident, revision: IncidentRevision, reader):
        self.current = current
        self.expected_version = revision.base_version
        Exception.__init__(
            self,
            f"{current.public_id} was changed by {_changed_by(current, reader)} at "
            f"{updated_at_seen_by(current, reader):%Y-%m-%d %H:%M} UTC (now version "
            f"{version_seen_by(current, reader)}) after revision "
            f"{revision.pk} was proposed from version {revision.base_version}, so it cannot be accepted: "
            "reject it, and its author can propose the change again on the current version.",
        )


class RecordNotFound(ObjectDoesNotExist):
    """The record does not exist or the user may not see it; nothing tells which (doors: 404)."""


def _acting_user_id(user) -> int | None:
    return user.pk if user is not None and user.is_authenticated else None


def _permission(model: type[models.Model], action: str) -> str:
    return f"{model._meta.app_label}.{action}_{model._meta.model_name}"


def _require_permission(user, permission: str, doing: str) -> None:
    if not (user is not None and user.is_active and user.has_perm(permission)):
        raise PermissionDenied(f"You may not {doing}: your role lacks that permission.")


def _require_visible(user, record: models.Model) -> None:
    """Refuse a write to a record `user` may not see exactly as if it did not exist."""
    records = type(record)._default_manager.filter(pk=record.pk)
    if not limit_to_visible(records, user).exists():
        raise RecordNotFound(f"No {record._meta.verbose_name} {record.pk}.")


def locked_or_not_found(records: models.QuerySet, pk, *, name: str | None = None) -> models.Model:
    """The record `pk` of `records`, locked for this transaction; else RecordNotFound (a 404), naming
    it `name` (by default its model's). Found a moment before (a visibility check), a record may be
    deleted by the very write whose lock this one waits for: that write committed, PostgreSQL
    returns no row, where `.get()` raised DoesNotExist, a 500, instead of the 404 a moment later."""
    locked = records.select_for_update().filter(pk=pk).first()
    if locked is None:
        raise RecordNotFound(f"No {name or records.model._meta.verbose_name} {pk}.")
    return locked


def may_delete(user) -> bool:
    """Deleting needs, beside the model's delete permission, sight of every record: staff with
    Confidential access. A deletion takes or is blocked by the records that depend on it (a
    confidential claim, a response about a confidential incident); refusing only when such a record
    exists would tell its author that it does, and going ahead would destroy it."""
    return can_see_unpublished(user) and can_see_confidential(user)


def confidentiality_change_refusal(user, *, confidential: bool) -> str | None:
    """Why `user` may not change the confidentiality of a record that is `confidential` now, or
    None. Marking a record confidential needs Confidential access (its author would lose sight of
    it); making a confidential record public needs a Reviewer who has it. The admin asks it to offer
    the box only to those who may tick or untick it; `confidentiality_errors` refuses the change."""
    if not confidential and not can_see_confidential(user):
        return (
            "Only users with Confidential access may mark a record confidential (you could no longer see it); "
            "ask a colleague who has that access."
        )
    if confidential and not (can_see_confidential(user) and user.has_perm("incidents.publish_incident")):
        return "Only a Reviewer with Confidential access may make a confidential record public."
    return None


def confidentiality_errors(user, *, was_confidential: bool, confidential: bool, field: str) -> dict[str, list[str]]:
    """The change of a record's confidentiality from `was_confidential` to `confidential`, refused
    as `confidentiality_change_refusal` says. As {field: [message]}."""
    if bool(confidential) == bool(was_confidential):
        return {}
    refusal = confidentiality_change_refusal(user, confidential=bool(was_confidential))
    return {field: [refusal]} if refusal else {}


def sensitivity_errors(user, *, stored: Place | None, place: Place) -> dict[str, list[str]]:
    """Un-marking a sensitive place, or moving a place out of one (`within_sensitive`), shows its
    exact coordinates to every reader: only a writer who may see them (staff,
    `can_see_exact_locations`) may, else a writer shown the coarsened ones would publish, and be
    answered, the location they were kept from. As {field: [message]}."""
    if stored is None or can_see_exact_locations(user):
        return {}
    if stored.sensitive and not place.sensitive:
        return {
            "sensitive": [
                "Only staff, who see a sensitive place's exact coordinates, may make them public; "
                "ask a colleague who is."
            ]
        }
    moved_out = place.parent_id != stored.parent_id and not (
        place.sensitive or Place.objects.filter(pk=place.parent_id, within_sensitive=True).exists()
    )
    if stored.within_sensitive and moved_out:
        return {
            "parent": [
                "Only staff, who see the exact coordinates of the places inside a sensitive one, may move "
                "one out of it; ask a colleague who is."
            ]
        }
    return {}


def raise_text_errors(**texts: str) -> None:
    """ValidationError naming each of `texts` (field name -> text) that holds a NUL character,
    which PostgreSQL's text cannot store: for the free texts a service writes as given (a note),
    which no model validation checks, so that a door answers 400 or a form error, not a 500."""
    _raise_collected(
        {
            name: ["It holds a NUL character, which cannot be stored; remove it."]
            for name, text in texts.items()
            if "\x00" in text
        }
    )


def _raise_collected(errors: Mapping[str, list[str]]) -> None:
    if errors:
        raise ValidationError(dict(errors))


def _validate_children(
    incident: Incident,
    model: type[models.Model],
    rows: Iterable[Mapping[str, Any]],
    label: str,
    editable: models.QuerySet | None = None,
) -> tuple[list[models.Model], dict[str, list[str]]]:
    """Build child rows and validate them all, collecting every error under `label[index].field`.

    A row with an id changes that stored row (one query loads them all), so the fields the row does
    not mention (such as created_at) keep their values; only rows in `editable` (default: all of
    the incident's) may be changed, so an id the writer may not see is refused like a foreign one.
    Returns the rows and the errors.

    A row repeating an earlier row's id is refused on its id: both would change the one stored row,
    the later's values over the earlier's, and a row (7 of 16 victims) was dropped without a word.
    One rule for every kind of row: a claim's or an involvement's repeat was refused only through
    `_unique_errors` (one instance twice repeats its own source or role), under a message about
    sources or roles, and a claim a merge marked as a conflict, which that rule passes, not at all."""
    rows = list(rows)
    ids = [row["id"] for row in rows if row.get("id")]
    editable = model.objects.all() if editable is None else editable
    stored = editable.filter(incident=incident, pk__in=ids).in_bulk() if ids and incident.pk else {}
    instances, errors = [], {}
    first_row_of: dict[Any, int] = {}
    for index, row in enumerate(rows):
        fields = {key: value for key, value in row.items() if key != "id"}
        if not row.get("id"):
            instance = model(incident=incident, **fields)
        elif row["id"] in first_row_of:
            errors[f"{label}[{index}].id"] = [
                f"It repeats row {first_row_of[row['id']]}'s id; send each {model._meta.verbose_name} once."
            ]
            continue
        elif row["id"] in stored:
            first_row_of[row["id"]] = index
            instance = stored[row["id"]]
            instance._stored_values = _values(instance)
            instance._stored_confidential = getattr(instance, "confidential", False)
            for field, value in fields.items():
                setattr(instance, field, value)
            _stored_spaces_kept(instance, instance._stored_values)
        else:
            # A new incident has no public id yet (nor any row to change).
            owner = incident.public_id if incident.pk else "A new incident"
            errors[f"{label}[{index}].id"] = [f"{owner} has no {model._meta.verbose_name} {row['id']}."]
            continue
        try:
            instance.full_clean(exclude=["incident"], validate_unique=False)
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                errors[f"{label}[{index}].{field}"] = messages
        instances.append(instance)
    return instances, errors


def _values(instance: models.Model) -> dict[str, Any]:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


def _stored_spaces_kept(instance: models.Model, stored: Mapping[str, Any]) -> None:
    """Keep on `instance` each text of `stored` (its stored values, by column) that its new value is
    but for spaces around it and its Unicode form (`normal_text`), and each list of names likewise.
    Every door trims what it is sent (DRF's and Django's form fields) and the model's validation
    writes texts in normal form (`TextInNormalForm`, told of those kept here), so a text stored
    otherwise (before, or by SQL) came back from a reader's unchanged write as a change: a new
    version, a history event, and its spaces dropped unasked, also by a write that changed something
    else. Changing the text itself writes it as sent, in normal form."""
    kept = set()
    for field in instance._meta.concrete_fields:
        stored_value = stored.get(field.attname)
        if same_text(field, getattr(instance, field.attname), stored_value):
            setattr(instance, field.attname, stored_value)
            kept.add(field.attname)
    instance._texts_as_stored = kept


def texts_as_read(record: models.Model, sent: Mapping[str, Any]) -> dict[str, Any]:
    """`sent`, values by field name for `record` as stored (before they are set on it), with each
    text that `record` holds but for spaces around it and its Unicode form replaced by the stored
    one, which its validation is told to leave as it is (`_stored_spaces_kept`'s rule, for the
    doors that validate a record before the service does: the API's serializers, the admin's
    forms). A name stored otherwise (by SQL, or left so by migration 0112 beside its twin in normal
    form) was refused as its twin's on a save that changed nothing."""
    kept = {}
    for name, value in sent.items():
        try:
            field = record._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        if field.concrete and same_text(field, value, getattr(record, field.attname, None)):
            kept[name] = getattr(record, field.attname)
    record._texts_as_stored = {record._meta.get_field(name).attname for name in kept}
    return {**sent, **kept}


def same_text(field: models.Field, value: Any, stored_value: Any) -> bool:
    """Whether `value` of `field` is `stored_value` but for spaces around it and its normal form
    (`normal_text`): a text sent back as read, which no door writes as a change."""
    if isinstance(field, ArrayField):
        return (
            isinstance(value, list)
            and isinstance(stored_value, list)
            and [_comparable(item) for item in value] == [_comparable(item) for item in stored_value]
        )
    return (
        isinstance(field, (models.CharField, models.TextField))
        and isinstance(value, str)
        and isinstance(stored_value, str)
        and _comparable(value) == _comparable(stored_value)
    )


def _comparable(text: Any) -> Any:
    return normal_text(text.strip(), one_line=True) if isinstance(text, str) else text


@functools.cache
def _written_fields(model: type[models.Model]) -> tuple[str, ...]:
    """The columns of `model` a writer sets (not its versions, change times or generated columns)."""
    return tuple(field.attname for field in model._meta.concrete_fields if field.editable and not field.generated)


def _links_differ(linked: Iterable[models.Model], stored: models.QuerySet) -> bool:
    """Whether `linked` are other records than the `stored` links. One query."""
    return {record.pk for record in linked} != set(stored.values_list("pk", flat=True))


def _changes_anything(incident: Incident, current: Incident, children: "_Children", *, user) -> bool:
    """Whether writing `incident` (its fields set) and `children` would change what is stored; the
    claims compared are those `user` may see, the only ones the write touches."""
    if _changed(incident, current, _written_fields(Incident)):
        return True
    if children.places is not None and _links_differ(children.places, current.places.all()):
        return True
    stored = {
        "claims": Claim.objects.visible_to(user).filter(incident=current),
        "victim_groups": current.victim_groups.all(),
        "involvements": current.involvements.all(),
    }
    for name, rows in (
        ("claims", children.claims),
        ("victim_groups", children.victim_groups),
        ("involvements", children.involvements),
    ):
        if rows is None:
            continue
        if not all(_as_stored(row) for row in rows):
            return True
        if set(stored[name].values_list("pk", flat=True)) != {row.pk for row in rows}:
            return True
    return False


def _unique_errors(instances: list[models.Model], key: tuple[str, ...], label: str, message: str) -> dict:
    """The rows that repeat another's `key`, each refused on the key's first field, the one a
    writer picks (`claims[1].source`), so that a door shows it there (the admin, on the row)."""
    errors, seen = {}, {}
    for index, instance in enumerate(instances):
        if getattr(instance, "merge_conflict", False):
            # A claim a merge kept beside another of its source stands outside the rule, as in the
            # database's indexes, until someone resolves it (incidents.merges).
            continue
        value = tuple(getattr(instance, instance._meta.get_field(field).attname) for field in key)
        if None in value:
            continue  # a row missing part of its key is refused for that (full_clean), not as a repeat
        if value in seen:
            errors[f"{label}[{index}].{key[0]}"] = [message]
        seen[value] = index
    return errors


def _claim_rule_errors(user, claims: list[Claim], *, reviewer=None) -> dict[str, list[str]]:
    """Claims name only sources the writer may see, and change confidentiality only as
    `confidentiality_errors` allows. With `reviewer` (accepting `user`'s revision), a source they
    may see and `user` no longer may (made confidential since the proposal) is said as such, where
    "No source N." read to them as a source that does not exist (one query more, only then)."""
    errors = {}
    source_ids = {claim.source_id for claim in claims if claim.source_id}
    visible_sources = set(Source.objects.visible_to(user).filter(pk__in=source_ids).values_list("pk", flat=True))
    hidden = source_ids - visible_sources
    seen_by_reviewer = Source.objects.visible_to(reviewer).in_bulk(hidden) if reviewer is not None and hidden else {}
    for index, claim in enumerate(claims):
        if claim.source_id in seen_by_reviewer:
            errors[f"claims[{index}].source"] = [
                f"Its author may no longer cite “{seen_by_reviewer[claim.source_id]}” (source {claim.source_id}), "
                "made confidential since they proposed this: reject it, and they can propose again."
            ]
        elif claim.source_id in hidden:
            errors[f"claims[{index}].source"] = [f"No source {claim.source_id}."]
        was_confidential = getattr(claim, "_stored_confidential", False) if claim.pk else False
        if claim.merge_conflict and not getattr(claim, "_stored_values", {}).get("merge_conflict"):
            errors[f"claims[{index}].merge_conflict"] = [
                "Only a merge marks a claim as a conflict; a writer may only clear the mark once resolved."
            ]
        errors.update(
            confidentiality_errors(
                user,
                was_confidential=was_confidential,
                confidential=claim.confidential,
                field=f"claims[{index}].confidential",
            )
        )
    return errors


@dataclass
class _Children:
    """An incident's nested collections, validated and ready to write (None: left as they are)."""

    places: list[Place] | None
    claims: list[Claim] | None
    victim_groups: list[VictimGroup] | None
    involvements: list[Involvement] | None


def _validate_all_children(
    incident: Incident,
    *,
    user,
    places: Iterable[Place] | None,
    claims: Iterable[Mapping[str, Any]] | None,
    victim_groups: Iterable[Mapping[str, Any]] | None,
    involvements: Iterable[Mapping[str, Any]] | None,
    reviewer=None,
) -> tuple[_Children, dict[str, list[str]]]:
    # A writer changes and deletes only the claims they may see; confidential ones stay as they are.
    # `reviewer`: who accepts `user`'s revision, to whom its refusals are explained.
    errors: dict[str, list[str]] = {}
    children = _Children(
        places=None if places is None else list(places), claims=None, victim_groups=None, involvements=None
    )
    if claims is not None:
        children.claims, claim_errors = _validate_children(
            incident, Claim, claims, "claims", editable=Claim.objects.visible_to(user)
        )
        errors.update(claim_errors)
        errors.update(_claim_rule_errors(user, children.claims, reviewer=reviewer))
        errors.update(
            _unique_errors(
                children.claims,
                ("source", "confidential"),
                "claims",
                "Each source may make only one claim per incident.",
            )
        )
    if victim_groups is not None:
        children.victim_groups, group_errors = _validate_children(incident, VictimGroup, victim_groups, "victim_groups")
        errors.update(group_errors)
    if involvements is not None:
        children.involvements, involvement_errors = _validate_children(
            incident, Involvement, involvements, "involvements"
        )
        errors.update(involvement_errors)
        errors.update(
            _unique_errors(
                children.involvements,
                ("organization", "role"),
                "involvements",
                "This organization already has this role.",
            )
        )
    return children, errors


def _replace_children(
    incident: Incident, related_name: str, instances: list[models.Model], replaceable: models.QuerySet | None = None
) -> None:
    """Make the incident's children exactly `instances`: update those with an id, create the rest,
    delete the ones no longer listed. Updates keep their id, so history shows a change, not a swap.

    Only children in `replaceable` (default: all) are deleted: a writer who cannot see a confidential
    claim never sent it, and must not delete it by leaving it out."""
    manager = getattr(incident, related_name)
    keep_ids = [instance.pk for instance in instances if instance.pk]
    deletable = manager.all() if replaceable is None else manager.filter(pk__in=replaceable.values("pk"))
    deletable.exclude(pk__in=keep_ids).delete()
    ordered, moved_through_deletion = _in_saving_order(instances, _unique_key_fields(manager.model))
    if moved_through_deletion:
        manager.filter(pk__in=[instance.pk for instance in moved_through_deletion]).delete()
    for instance in ordered:
        if _as_stored(instance):
            # Its UPDATE would change nothing but its `updated_at`, and run the row's triggers,
            # which sum the incident's claims again: a change to one claim of 2,001 ran 2,001 of
            # them over 2,001 claims each, for more than ten minutes. (A row moved through a
            # deletion above gave up its stored key, so is never as stored.)
            continue
        instance.incident = incident
        # A row deleted above is inserted again with its id (Django's save: no row to update).
        instance.save()


def _as_stored(instance: models.Model) -> bool:
    """Whether a stored row `_validate_children` read is sent back with every value as stored."""
    return instance.pk is not None and _values(instance) == getattr(instance, "_stored_values", None)


@functools.cache
def _unique_key_fields(model: type[models.Model]) -> tuple[str, ...]:
    """The columns an incident's children of `model` are unique by: the fields of its unique
    constraints over the incident, and those their conditions read, the incident left out (a
    claim's source, confidentiality and merge mark; an involvement's organization and role)."""
    names = set()
    for constraint in model._meta.constraints:
        if isinstance(constraint, models.UniqueConstraint) and "incident" in constraint.fields:
            names.update(constraint.fields)
            if constraint.condition is not None:
                read = [child for child in constraint.condition.flatten() if isinstance(child, tuple)]
                names.update(lookup.split(LOOKUP_SEP)[0] for lookup, _ in read)
    names.discard("incident")
    return tuple(sorted(model._meta.get_field(name).attname for name in names))


def _in_saving_order(
    instances: list[models.Model], key_fields: tuple[str, ...]
) -> tuple[list[models.Model], list[models.Model]]:
    """`instances` in an order in which none takes a unique key that another still holds, and the
    stored rows to delete before any is saved. PostgreSQL checks a unique index at each row: an
    analyst correcting a chain of rows ("police, army" as perpetrators made "army, navy") had a row
    take the key of the next before that one moved, a 500 on a valid edit; each row now waits for
    the row holding its key. A cycle (two claims' sources swapped) has no such order: one of its rows
    is deleted first and inserted again with its id, every value kept (its history reads a deletion
    and an insertion). Rows are written in the order sent where nothing waits."""
    if not key_fields:
        return instances, []

    def key_of(values: Mapping[str, Any]) -> tuple:
        return tuple(values[name] for name in key_fields)

    # The stored keys of the rows that give them up, and which row holds each.
    held = {
        key_of(instance._stored_values): instance
        for instance in instances
        if hasattr(instance, "_stored_values") and key_of(instance._stored_values) != key_of(_values(instance))
    }
    if not held:
        return instances, []
    ordered, waiting, deleted_first = [], list(instances), []
    while waiting:
        ready = [instance for instance in waiting if held.get(key_of(_values(instance)), instance) is instance]
        if not ready:
            # A cycle: its first row's stored key is freed by deleting it, and the row waits, as
            # the others do, for the key it takes. (Each pass places a row or frees a key: it ends.)
            first = waiting[0]
            stored_key = key_of(first._stored_values) if hasattr(first, "_stored_values") else None
            if held.get(stored_key) is first:
                deleted_first.append(first)
                del held[stored_key]
                continue
            ready = [first]
        for instance in ready:
            if hasattr(instance, "_stored_values"):
                held.pop(key_of(instance._stored_values), None)
            ordered.append(instance)
            waiting.remove(instance)
    return ordered, deleted_first


def _write_children(incident: Incident, children: _Children, *, visibility_of) -> None:
    """Write validated children; `visibility_of` is the user whose sight decides which stored claims
    the write may replace (the proposer's, when a Reviewer accepts a revision)."""
    if children.places is not None:
        incident.places.set(children.places)
    if children.claims is not None:
        _replace_children(incident, "claims", children.claims, replaceable=Claim.objects.visible_to(visibility_of))
    if children.victim_groups is not None:
        _replace_children(incident, "victim_groups", children.victim_groups)
    if children.involvements is not None:
        _replace_children(incident, "involvements", children.involvements)


@functools.cache
def _generated_from(field: models.Field) -> frozenset[str]:
    """The fields a generated column is computed from."""
    return frozenset(node.name for node in field.expression.flatten() if isinstance(node, models.F))


def _kept_as_stored(incident: Incident, stored: Incident | None) -> set[str]:
    """The relations `incident` keeps as `stored` has them, and the generated columns computed from
    fields it keeps (public_id, from the id). The stored row's foreign keys and constraints hold in
    the database, so validating these again (a query for each related record, and for each
    constraint over them, such as public_id's uniqueness) could only find what they guarantee."""
    if stored is None:
        return set()
    unchanged = {
        field.name
        for field in Incident._meta.concrete_fields
        if not field.generated and getattr(incident, field.attname) == getattr(stored, field.attname)
    }
    return {
        field.name
        for field in Incident._meta.concrete_fields
        if (field.is_relation and field.name in unchanged) or (field.generated and _generated_from(field) <= unchanged)
    }


def _incident_errors(
    incident: Incident, *, user, was_confidential: bool, stored: Incident | None = None
) -> dict[str, list[str]]:
    """What is wrong with `incident` about to be written (`stored`: as it is stored now, for a change)."""
    errors = {}
    try:
        incident.full_clean(exclude=_kept_as_stored(incident, stored))
    except ValidationError as error:
        errors.update(error.message_dict)
    errors.update(
        confidentiality_errors(
            user, was_confidential=was_confidential, confidential=incident.confidential, field="confidential"
        )
    )
    return errors


# How long a request's key is remembered: a retry comes within minutes (a client's timeout, a Save
# pressed twice, a page sent again after Back), and a key reused after a day is a new request.
SUBMISSION_KEY_HOURS = 24


@dataclass(frozen=True)
class Submission:
    """A new incident's request as its sender names it (`IncidentSubmission`): the key, and a digest
    of what was sent under it, which tells the same request sent again from another one."""

    key: str
    fingerprint: str


class SubmittedBefore(Exception):
    """The submission's key was used before, for `incident`; `same`: by the very same request.
    `incident` may since have been merged into one its writer may see (`merged_into`)."""

    def __init__(self, incident: Incident, *, same: bool):
        super().__init__(f"{incident.public_id} was already added under this key.")
        self.incident = incident
        self.same = same


def submission_fingerprint(sent: Any) -> str:
    """A digest of what a request sent (parsed JSON, or a form's fields as lists), whatever the
    order of its keys."""
    return hashlib.sha256(json.dumps(sent, sort_keys=True, default=str).encode()).hexdigest()


def refuse_submitted_before(user, submission: Submission, *, changed_since: bool = True) -> None:
    """Raises SubmittedBefore if `user` sent `submission`'s key in the last SUBMISSION_KEY_HOURS, for
    an incident a retry may still be answered with (`_answerable_to`); `changed_since`: also when
    what was sent under it differs (else only the very same request). Runs a query, and one more
    when the key was used.

    An incident hidden from them since is as one deleted (whose key went with it): the request is a
    new one. Answered with the incident, a retry would have shown its writer an incident a Reviewer
    had since made confidential, or told them that it was hidden."""
    earlier = (
        IncidentSubmission.objects.filter(user=user, key=submission.key, created_at__gte=_submission_keys_kept_since())
        .select_related("incident__merged_into")
        .first()
    )
    if earlier is None or not _answerable_to(user).filter(pk=earlier.incident_id).exists():
        return
    same = earlier.fingerprint == submission.fingerprint
    if same or changed_since:
        raise SubmittedBefore(earlier.incident, same=same)


def _answerable_to(user) -> models.QuerySet:
    """The incidents a retry may be answered with: those `user` may see, and a writer who may not
    see drafts (a partner tool's account) their own new draft too, with which the first request was
    answered (`api.views.IncidentViewSet._read`): by `visible_to`, each of their retries added
    another. Not one made confidential since. One merged since, into an incident `user` may see,
    which the door names (as a merged incident's address leads there: `merges.redirect_target`):
    as one deleted, each retry added the incident again, for a Reviewer to merge again; merged
    into one hidden from them, it is as one deleted, and nothing tells them of it."""
    incidents = Incident.objects.filter(
        Q(merged_into__isnull=True) | Q(merged_into__in=Incident.objects.visible_to(user).values("pk"))
    )
    return incidents if can_see_confidential(user) else incidents.filter(confidential=False)


def _submission_keys_kept_since() -> datetime:
    return timezone.now() - timedelta(hours=SUBMISSION_KEY_HOURS)


def _submission_keys_forgotten(user, submission: Submission) -> None:
    """In the writer's transaction, before `submission`'s key is kept: the writer's keys older than
    SUBMISSION_KEY_HOURS go (the table holds about a day of each writer's saves), and so does this
    key's use for an incident hidden from them since (`_answerable_to`), never one they may see:
    that is a first request's, committed since this one was checked, which the unique key then
    finds."""
    hidden = ~Exists(_answerable_to(user).filter(pk=OuterRef("incident_id")))
    IncidentSubmission.objects.filter(user=user).filter(
        Q(created_at__lt=_submission_keys_kept_since()) | (Q(key=submission.key) & hidden)
    ).delete()


def incident_create(
    *,
    user,
    data: Mapping[str, Any],
    places: Iterable[Place] = (),
    claims: Iterable[Mapping[str, Any]] = (),
    victim_groups: Iterable[Mapping[str, Any]] = (),
    involvements: Iterable[Mapping[str, Any]] = (),
    submission: Submission | None = None,
) -> Incident:
    """Create an incident with its places, claims, victim groups and involvements, all or nothing,
    if `user` may add incidents, reach its review state and verification, and mark what it marks
    confidential. Raises PermissionDenied, or ValidationError listing every problem.

    `submission`: the request's key; once used, the request adds nothing and raises SubmittedBefore
    naming the incident it added, also when sent again while the first was being saved."""
    _require_permission(user, "incidents.add_incident", "add incidents")
    if submission is not None:
        refuse_submitted_before(user, submission)
    incident_check_permissions(user=user, incident=None, data=data)
    incident = Incident(**data)
    incident.created_by_id = incident.updated_by_id = _acting_user_id(user)
    errors = _incident_errors(incident, user=user, was_confidential=False)
    children, child_errors = _validate_all_children(
        incident, user=user, places=places, claims=claims, victim_groups=victim_groups, involvements=involvements
    )
    _raise_collected({**errors, **child_errors})
    try:
        with transaction.atomic(), pghistory.context(user=_acting_user_id(user)):
            incident.save()
            _write_children(incident, children, visibility_of=user)
            if submission is not None:
                _submission_keys_forgotten(user, submission)
                IncidentSubmission.objects.create(
                    user=user, key=submission.key, fingerprint=submission.fingerprint, incident=incident
                )
            duplicates.rescore_after_commit([incident.pk])
    except IntegrityError as error:
        # Sent again while the first was being saved: both passed the check above, and this one's
        # key waited on the unique index for the first's transaction; it is undone whole, incident
        # and all, and answered with the first's.
        if submission is None or not isinstance(error.__cause__, UniqueViolation):
            raise
        refuse_submitted_before(user, submission)
        raise
    return incident


def may_publish(user) -> bool:
    return bool(user is not None and user.is_active and user.has_perm("incidents.publish_incident"))


def incident_update(
    *,
    incident: Incident,
    user,
    expected_version: int,
    told: VersionFields | None = None,
    unshown_kept: bool = False,
    data: Mapping[str, Any] | None = None,
    places: Iterable[Place] | None = None,
    claims: Iterable[Mapping[str, Any]] | None = None,
    victim_groups: Iterable[Mapping[str, Any]] | None = None,
    involvements: Iterable[Mapping[str, Any]] | None = None,
    submission: Submission | None = None,
) -> Incident | IncidentRevision:
    """Apply `data` (and, where given, replace the nested collections) if nobody saved the incident
    since the writer loaded `expected_version`; otherwise raise VersionConflict and change nothing.
    `submission`: the request's key, kept with a change it writes; the very same request sent again
    (a Save pressed twice) raises SubmittedBefore, not VersionConflict, also while the first is saved.
    `told`: the audience whose version that is, if not the writer's own (the one they read it as:
    `EditedVersion`; a CSV file exported by a narrower one: `importers._versions_told`).
    `unshown_kept`: the change keeps whatever `told` was not shown (an import keeps every claim its
    file does not name), so a version read as a narrower audience than the writer's is compared as
    read (`check_version`), not refused.

    The writer must be allowed to change incidents and see this one (else RecordNotFound, as if it
    did not exist). A published incident changes only through a Reviewer: from anyone who may not
    publish, a valid change is kept as a pending IncidentRevision, which is returned, and the
    incident stays as it is until a Reviewer accepts it. A change that changes nothing writes (or
    proposes) nothing, and returns the stored incident as it is, not `incident`; so does one made
    from the version the writer's own change replaced, stale by that alone
    (`VersionConflict.by_the_writer_alone`: sent twice).

    Runs a `SELECT … FOR UPDATE`, so two writers of the same incident are serialised."""
    _require_permission(user, "incidents.change_incident", "change incidents")
    changes = {
        name: None if rows is None else list(rows)
        for name, rows in (
            ("places", places),
            ("claims", claims),
            ("victim_groups", victim_groups),
            ("involvements", involvements),
        )
    }
    with transaction.atomic(), pghistory.context(user=_acting_user_id(user)):
        try:
            current = _locked(incident, expected_version, visible_to=user, told=told, unshown_kept=unshown_kept)
        except VersionConflict as conflict:
            # Stale because this very request was written first (it waited on the incident's lock).
            if submission is not None:
                refuse_submitted_before(user, submission, changed_since=False)
            if not conflict.by_the_writer_alone:
                raise
            return _sent_again(incident, stale=conflict, user=user, data=data or {}, changes=changes)
        if current.review_state == ReviewState.PUBLISHED and not may_publish(user):
            return _propose_revision(incident, current=current, user=user, data=data or {}, changes=changes)
        written = _apply_update(incident, current=current, user=user, data=data or {}, changes=changes)
        if submission is not None and written is incident:
            _submission_keys_forgotten(user, submission)
            IncidentSubmission.objects.update_or_create(
                user=user, key=submission.key, defaults={"fingerprint": submission.fingerprint, "incident": incident}
            )
        return written


def _sent_again(
    incident: Incident, *, stale: VersionConflict, user, data: Mapping[str, Any], changes: Mapping[str, Any]
) -> Incident:
    """The stored incident, if a write made from the version `user`'s own change replaced
    (`VersionConflict.by_the_writer_alone`) changes nothing of it: their request sent again, saved
    by its first send. Any other write raises `stale`, as before: one that would write, propose or
    be refused is not the first sent again."""
    current = stale.current
    if current.review_state == ReviewState.PUBLISHED and not may_publish(user):
        raise stale
    try:
        children = _validated_update(
            incident, current=current, user=user, data=data, changes=changes, visibility_of=user
        )
    except (ValidationError, PermissionDenied):
        raise stale from None
    if _changes_anything(incident, current, children, user=user):
        raise stale
    return current


def _locked(
    incident: Incident,
    expected_version: int,
    *,
    visible_to=None,
    told: VersionFields | None = None,
    unshown_kept: bool = False,
) -> Incident:
    """The stored incident, locked for this transaction, if it is still at `expected_version` as
    `visible_to` is told it, or `told` (else VersionConflict); with `visible_to`, only if that user
    may see it (else RecordNotFound, as `_require_visible` answers), checked by the same statement."""
    incidents = Incident.objects.all() if visible_to is None else Incident.objects.visible_to(visible_to)
    # Lock only the incident row: FOR UPDATE cannot lock the nullable side of the outer joins to its writers.
    current = (
        incidents.select_for_update(of=("self",))
        .select_related("updated_by", "disclosed_updated_by")
        .filter(pk=incident.pk)
        .first()
    )
    if current is None:
        raise RecordNotFound(f"No {Incident._meta.verbose_name} {incident.pk}.")
    check_version(current, expected_version, reader=visible_to, told=told, unshown_kept=unshown_kept)
    return current


def _validated_update(
    incident: Incident, *, current: Incident, user, data: Mapping[str, Any], changes: Mapping[str, Any], visibility_of
) -> _Children:
    """Set `data` on `incident` and check it and the nested `changes` as `user` writing them, with
    `visibility_of`'s sight of the stored claims; every problem at once."""
    incident_check_permissions(user=user, incident=current, data=data)
    for field, value in data.items():
        setattr(incident, field, value)
    _stored_spaces_kept(incident, _values(current))
    incident.version = current.version
    errors = _incident_errors(incident, user=user, was_confidential=current.confidential, stored=current)
    reviewer = None if visibility_of is user else user
    children, child_errors = _validate_all_children(incident, user=visibility_of, reviewer=reviewer, **changes)
    if reviewer is not None:
        child_errors.update(_claim_rule_errors(user, children.claims or []))
    _raise_collected({**errors, **child_errors})
    return children


def _apply_update(
    incident: Incident,
    *,
    current: Incident,
    user,
    data: Mapping[str, Any],
    changes: Mapping[str, Any],
    visibility_of=None,
) -> Incident:
    visibility_of = user if visibility_of is None else visibility_of
    children = _validated_update(
        incident, current=current, user=user, data=data, changes=changes, visibility_of=visibility_of
    )
    if not _changes_anything(incident, current, children, user=visibility_of):
        # Sending back what one read (a form saved unchanged, an API PUT of the body read) writes
        # nothing, as an import's identical row and an unchanged proposal do: a save moved the
        # version for every audience (a reader with Confidential access was told of a change, and
        # their pending edit met a conflict) and wrote an update event for each claim it saw.
        return current
    incident.updated_by_id = _acting_user_id(user)
    incident.save()
    shown_to_the_public_changed = shown_to_the_public(incident) != shown_to_the_public(current)
    if shown_to_the_public_changed or incident.confidential != current.confidential:
        # Staff without Confidential access are told as before (they see drafts, and so told of a
        # draft published a change they could see already); the public only when what it reads of
        # the incident's responses changed.
        _links_shown_changed(
            incident, told=THE_PUBLIC if shown_to_the_public_changed else STAFF_WITHOUT_CONFIDENTIAL_ACCESS
        )
    if (shown_to_the_public(incident) and not shown_to_the_public(current)) or (
        current.confidential and not incident.confidential
    ):
        _merged_into_it_followed_again(incident, user)
    _write_children(incident, children, visibility_of=visibility_of)
    duplicates.rescore_after_commit(
        [incident.pk], confidential_pairs_only=_changed_in_confidence(incident, current=current, children=children)
    )
    return incident


def _merged_into_it_followed_again(incident: Incident, user) -> None:
    """A new version of the incidents merged into `incident`, which readers who could not follow them
    to it (a draft's, for the public; a confidential one's, for staff without Confidential access)
    may now follow (their address answers 301 again). `withdrawn/` told those readers they left,
    and no longer names them; without a version, no incremental sync reported them either, and a
    partner's copy never learnt where they went (`merged_into`). Most have none merged into them:
    one query asks first, where the new version (the triggers off and on, an UPDATE, its history)
    took five statements for no incident."""
    if not Incident.objects.filter(merged_into_id=incident.pk).exists():
        return
    merged_ids = _incidents_new_version(
        user, f"SELECT id FROM {Incident._meta.db_table} WHERE merged_into_id = %s", [incident.pk]
    )
    if merged_ids:
        with connection.cursor() as cursor:
            cursor.execute("SELECT incident_export_refresh(%s::bigint[])", [merged_ids])


def _changed_in_confidence(incident: Incident, *, current: Incident, children: _Children) -> bool:
    """Whether the write changed nothing that readers without Confidential access see of an
    incident they may see (a confidential claim added or edited, say): its version as they are told
    it did not move. Nothing their pairs are scored by changed then, and a rescoring they are told
    of would tell them, in the duplicates queue's count, when an informant's account was recorded.
    The incident's own save read its kept columns back; a query more only when its rows were
    written too, whose triggers move that version after it."""
    if incident.confidential or incident.disclosed_version != current.disclosed_version:
        return False
    if all(rows is None for rows in (children.places, children.claims, children.victim_groups, children.involvements)):
        return True
    return Incident.objects.filter(pk=incident.pk, disclosed_version=current.disclosed_version).exists()


def _propose_revision(
    incident: Incident, *, current: Incident, user, data: Mapping[str, Any], changes: Mapping[str, Any]
) -> IncidentRevision | Incident:
    """Check the change as if it were applied now (so the proposer hears of every problem at once),
    then keep it as a pending revision and leave the incident as it is. A change that changes
    nothing is no proposal: the incident is returned as it is."""
    candidate = Incident.objects.get(pk=incident.pk)
    children = _validated_update(candidate, current=current, user=user, data=data, changes=changes, visibility_of=user)
    if not _changes_anything(candidate, current, children, user=user):
        # Sending back what one read (a form saved unchanged) proposes nothing.
        return current
    proposal = {"data": _to_json(_texts_as_kept(_blanks_as_read(data, candidate, new=False), candidate))}
    for name, rows in changes.items():
        if rows is None:
            continue
        rows = list(rows)
        if name == "claims":
            rows = [
                _blanks_as_read(row, claim, new=not row.get("id"))
                for row, claim in zip(rows, children.claims, strict=True)
            ]
        if name != "places":
            rows = [_texts_as_kept(row, record) for row, record in zip(rows, getattr(children, name), strict=True)]
        proposal[name] = [row.pk for row in rows] if name == "places" else [_to_json(row) for row in rows]
    proposed = {
        "incident": incident,
        # Counted as the revision reads it (`versions_told`), which tells a proposer who is not
        # staff (a partner tool's account, which edits by the public's version) by `disclosed_*`.
        "base_version": version_seen_by(current, None, versions_told(every_change=can_see_confidential(user))),
        "proposed_by_id": _acting_user_id(user),
        "needs_confidential_access": can_see_confidential(user),
    }
    # The same proposal sent again (a Save pressed twice, a client's retry) is the one pending, not a
    # second for a Reviewer to decide, which accepting the first made stale. The incident's lock
    # (`_locked`) makes a second sent at the same moment wait for the first, and find it.
    as_stored = json.loads(json.dumps(proposal, cls=DjangoJSONEncoder))
    pending = IncidentRevision.objects.filter(state=RevisionState.PENDING, **proposed)
    revision = next((revision for revision in pending if revision.changes == as_stored), None)
    if revision is None:
        revision = IncidentRevision.objects.create(changes=proposal, **proposed)
    incident.refresh_from_db()
    return revision


# The fields a record left blank reads from its other values when validated (`QualifierFromFigures`,
# a claim's `PrecisionFromDates`).
_READ_WHEN_BLANK = ("count_qualifier", "date_precision")


def _blanks_as_read(row: Mapping[str, Any], record: Incident | Claim, *, new: bool) -> Mapping[str, Any]:
    """`row` with the count qualifier (and a claim's date precision) it leaves blank (or, a new
    record's row, out) as `record`, validated, read them from the figures and the dates
    (`QualifierFromFigures`, `PrecisionFromDates`): what accepting writes, so the Reviewer's diff
    shows "Exact" and "Month" rather than blanks. A change's row leaving one out keeps the stored
    one, and says nothing of it."""
    read = {
        field: getattr(record, field)
        for field in _READ_WHEN_BLANK
        if not row.get(field) and (field in row or new) and record._meta.get_field(field).blank
    }
    return {**row, **read} if read else row


def _texts_as_kept(row: Mapping[str, Any], record: models.Model) -> Mapping[str, Any]:
    """`row` with each text it sends trimmed that `record`, validated, keeps as stored, spaces around
    it and all (`_stored_spaces_kept`): what accepting writes, so the Reviewer's diff does not show
    it changed."""
    kept = {
        name: getattr(record, name)
        for name, value in row.items()
        if isinstance(value, str)
        and isinstance(record._meta.get_field(name), (models.CharField, models.TextField))
        and getattr(record, name) != value
    }
    return {**row, **kept} if kept else row


def _to_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of field values with records by primary key, for IncidentRevision.changes."""
    return {name: value.pk if isinstance(value, models.Model) else value for name, value in row.items()}


class _NamedRecords:
    """The records that revisions' changes name by key (a claim's source, an involvement's
    organization, the incident's type, its places), each kind loaded once for every revision of a
    page: one query per kind, whatever the page's size."""

    def __init__(self, changes: Iterable[tuple[Mapping[str, Any], Incident | None]]):
        wanted: dict[type[models.Model], set] = {}
        for one, incident in changes:
            for model, rows in _changed_rows(one):
                for row in rows:
                    for field, value in _related_values(model, row):
                        wanted.setdefault(field.related_model, set()).add(value)
            wanted.setdefault(Place, set()).update(one.get("places", ()))
            # What the incident links to now, for the differences' "now" column.
            for name in one.get("data", {}) if incident is not None else ():
                field = Incident._meta.get_field(name)
                if field.is_relation:
                    wanted.setdefault(field.related_model, set()).add(getattr(incident, field.attname))
        self._records = {
            # Places by their paths, sources with their publishers, as the differences name them
            # (two Tumens are two places, and two "Annual report 2023" two sources).
            model: _named_queryset(model).in_bulk([model._meta.pk.to_python(value) for value in keys - {None}])
            for model, keys in wanted.items()
            if keys - {None}
        }

    def get(self, model: type[models.Model], key) -> models.Model | None:
        return self._records.get(model, {}).get(model._meta.pk.to_python(key))


def _named_queryset(model: type[models.Model]) -> models.QuerySet:
    if model is Place:
        return Place.objects.with_path()
    if model is Source:
        return Source.objects.select_related("publisher")
    return model._default_manager.all()


def _changed_rows(changes: Mapping[str, Any]) -> Iterator[tuple[type[models.Model], list[Mapping[str, Any]]]]:
    yield Incident, [changes.get("data", {})]
    for name, model in (("claims", Claim), ("victim_groups", VictimGroup), ("involvements", Involvement)):
        yield model, changes.get(name, [])


def _related_values(model: type[models.Model], row: Mapping[str, Any]) -> Iterator[tuple[models.Field, Any]]:
    for name, value in row.items():
        if name != "id" and value is not None:
            field = model._meta.get_field(name)
            if field.is_relation:
                yield field, value


def _from_json(model: type[models.Model], row: Mapping[str, Any], named: _NamedRecords) -> dict[str, Any]:
    """A row of IncidentRevision.changes back as field values; a record deleted since is an error."""
    values = {}
    for name, value in row.items():
        field = model._meta.get_field(name) if name != "id" else None
        if field is None:
            values[name] = value
        elif field.is_relation and value is not None:
            # By the field's name, the record in hand: the import names a kept claim's source by its
            # column, `source_id`, where a record set under that name was read as a key (a 500 on
            # the revision's page, its place in the queue and its acceptance).
            name = field.name
            values[name] = named.get(field.related_model, value)
            if values[name] is None:
                raise ValidationError(
                    {name: f"The {field.related_model._meta.verbose_name} {value} it names was deleted since."}
                )
        else:
            values[name] = field.to_python(value)
    return values


def revision_changes(
    revision: IncidentRevision, changes: Mapping[str, Any] | None = None, named: _NamedRecords | None = None
) -> dict[str, Any]:
    """The revision as incident_update's arguments (`data`, `places`, `claims`, …); of `changes`,
    given, in place of all it holds (as shown to a reader), with the records of `named`, given
    (loaded for a page of revisions)."""
    changes = revision.changes if changes is None else changes
    named = _NamedRecords([(changes, None)]) if named is None else named
    arguments: dict[str, Any] = {"data": _from_json(Incident, changes.get("data", {}), named)}
    if "places" in changes:
        places = {key: named.get(Place, key) for key in changes["places"]}
        arguments["places"] = [place for place in places.values() if place is not None]
        deleted = sorted(key for key, place in places.items() if place is None)
        if deleted:
            # Accepting without them would drop what the proposer added, as if she had not.
            raise ValidationError(
                {"places": [f"The place {place_id} it names was deleted since." for place_id in deleted]}
            )
    for name, model in (("claims", Claim), ("victim_groups", VictimGroup), ("involvements", Involvement)):
        if name in changes:
            arguments[name] = [_from_json(model, row, named) for row in changes[name]]
    return arguments


def _claimed_source_id(row: Mapping[str, Any]) -> int | None:
    # The API and the admin name a claim's source `source`; the import, by column, `source_id`.
    return row.get("source", row.get("source_id"))


@dataclass(frozen=True)
class RevisionReading:
    """A revision as a reader is shown it: its `changes` without the claims they may not see, what
    accepting it would change (`differences`, while it waits) and the records both show them
    (`records`, for `access.confidential_among`)."""

    changes: dict[str, Any]
    differences: list[tuple[str, str, str]]
    records: list[models.Model]


def revisions_read(revisions: Iterable[IncidentRevision], user) -> dict[int, RevisionReading]:
    """Each revision (loaded with its incident) as `user` reads it, by its id. A revision is
    offered by its proposer's sight when they proposed it (`needs_confidential_access`), but a
    source it names may have been made confidential since (an informant recognised), and its
    rows would show the source's title and words to every reviewer: they are left out for those
    who may not see it. A fixed number of queries whatever the number of revisions (the Reviewers'
    queue lists up to 200 at once), none for revisions that propose no claims and no longer wait."""
    revisions = list(revisions)
    shown = _changes_shown(revisions, user)
    waiting = [revision for revision in revisions if revision.state == RevisionState.PENDING]
    named = _NamedRecords((shown[revision.pk], revision.incident) for revision in waiting)
    current = _current_children(waiting, user)
    # Rows that repeat a confidential claim: named to those who may see it, whose acceptance
    # refuses them (`_repeated_claim_errors`); left out for the others (`_changes_shown`).
    repeated = _confidential_claims_repeated(waiting, copies=True) if can_see_confidential(user) else {}
    decided_sources = _sources_claimed(
        [shown[revision.pk] for revision in revisions if revision.state != RevisionState.PENDING], user
    )
    readings = {}
    for revision in revisions:
        changes = shown[revision.pk]
        if revision.state != RevisionState.PENDING:
            # Its `changes` still show the claims it proposed, with their sources.
            sources = (decided_sources.get(_claimed_source_id(row)) for row in changes.get("claims") or ())
            readings[revision.pk] = RevisionReading(changes, [], [revision.incident, *filter(None, sources)])
            continue
        records = [revision.incident]
        if changes.get("claims"):
            sources = (named.get(Source, _claimed_source_id(row)) for row in changes["claims"])
            records += [*current["claims"].get(revision.incident_id, []), *filter(None, sources)]
        refusals = [
            ("Cannot be accepted", "—", _repeated_claim_message(claim))
            for claim in repeated.get(revision.pk, {}).values()
        ]
        if _author_deleted(revision):
            refusals.append(("Cannot be accepted", "—", AUTHOR_DELETED_MESSAGE))
        differences = [*refusals, *_differences(revision, changes, named, current)]
        readings[revision.pk] = RevisionReading(changes, differences, records)
    return readings


def _sources_claimed(changes: list[dict[str, Any]], user) -> dict[int, Source]:
    """The confidential sources the claims of `changes` name, by id, for a reader who may see them
    (`access.confidential_among` records them): one query where any claim names one, else none."""
    if not can_see_confidential(user):
        return {}
    source_ids = {_claimed_source_id(row) for one in changes for row in one.get("claims") or ()} - {None}
    return Source.objects.filter(confidential=True).in_bulk(source_ids) if source_ids else {}


def revision_read(revision: IncidentRevision, user) -> RevisionReading:
    """One revision as `user` reads it (`revisions_read`)."""
    return revisions_read([revision], user)[revision.pk]


def _changes_shown(revisions: list[IncidentRevision], user) -> dict[int, dict[str, Any]]:
    """Each revision's `changes` as `user` is shown them and may accept them
    (`incident_revision_accept`): without the proposed claims of a source, or changing a claim,
    hidden from `user`, nor those that are such a claim sent back without its id
    (`_confidential_claims_repeated`); a claim they see that a row gives a source hidden from them
    stays as it is (its id and its source now), never shown or accepted as removed. Two queries
    when one proposes claims (three when a row gives a claim they see a hidden source; for a
    reader without Confidential access one more when a row has no id, and another when a
    confidential claim of its source is found), else none."""
    rows = [row for revision in revisions for row in revision.changes.get("claims") or ()]
    repeated = {} if can_see_confidential(user) else _confidential_claims_repeated(revisions, copies=False)
    hidden_sources = hidden_claims = set()
    if rows:
        sources = Source.objects.filter(pk__in={_claimed_source_id(row) for row in rows} - {None})
        hidden_sources = {source.pk for source in _hidden(sources, user)}
        claims = Claim.objects.filter(pk__in={row["id"] for row in rows if row.get("id")})
        hidden_claims = {claim.pk for claim in _hidden(claims, user)}
    kept = {
        row["id"]
        for row in rows
        if row.get("id") and row["id"] not in hidden_claims and _claimed_source_id(row) in hidden_sources
    }
    sources_now = dict(Claim.objects.filter(pk__in=kept).values_list("pk", "source_id")) if kept else {}

    def shown_row(row: Mapping[str, Any]) -> Mapping[str, Any] | None:
        if row.get("id") in hidden_claims:
            return None
        if _claimed_source_id(row) in hidden_sources:
            # Given a source made confidential since it was proposed: left as it stands (a claim
            # deleted since has no source now, and is named as missing like any other).
            if not row.get("id"):
                return None
            return {"id": row["id"], "source_id" if "source_id" in row else "source": sources_now.get(row["id"])}
        return row

    shown = {}
    for revision in revisions:
        changes = revision.changes
        if changes.get("claims"):
            left_out = repeated.get(revision.pk, {})
            claims = [shown_row(row) if index not in left_out else None for index, row in enumerate(changes["claims"])]
            changes = {**changes, "claims": [row for row in claims if row is not None]}
        shown[revision.pk] = changes
    return shown


def _confidential_claims_repeated(revisions: list[IncidentRevision], *, copies: bool) -> dict[Any, dict[int, Claim]]:
    """Of each revision whose proposer could not see confidential claims, by its key, the claim rows
    without an id that are a confidential claim's, by the row's index: a claim of the row's source
    on the revision's incident, confidential (its source public: the rows of a confidential source
    are left out whole), that was public at any time since the revision was proposed. The API
    replaces the claims it is sent, so a client may send a claim back without its id: the row is
    that claim, as it was or changed (a source makes one public claim per incident, so the row
    takes its place), and once the claim was made confidential the revision showed its words and
    figures to every Reviewer as a claim it adds.

    With `copies`, for readers who may see the claims, also the rows that say what a confidential
    claim says, made confidential before the proposal: accepting would publish it as a public claim
    beside it. Never for other readers: leaving out a row because a claim its proposer never saw
    says the same would tell the proposer, in the answer to the write, what that claim says (try
    counts until the row is gone), and a source may make one public claim beside a confidential one.

    One query when a row has no id, two when a confidential claim of its source is found."""
    wanted = [
        (revision, index, row)
        for revision in revisions
        if not revision.needs_confidential_access
        for index, row in enumerate(revision.changes.get("claims") or ())
        if not row.get("id") and _claimed_source_id(row) is not None
    ]
    if not wanted:
        return {}
    # By their recorded states, not as they are now: a claim a merge moved to the survivor (the
    # merged incident's revisions wait to be rejected), or given another source since, is still
    # the one the row repeats.
    states_then = (
        Claim.pgh_event_model.objects.filter(
            incident__in={revision.incident_id for revision, _, _ in wanted},
            source__in={_claimed_source_id(row) for _, _, row in wanted},
            pgh_obj__confidential=True,
            pgh_obj__source__confidential=False,
        )
        .select_related("pgh_obj__source")
        .order_by("pgh_id")
    )
    by_key: dict[tuple[int, int], dict[int, Claim]] = {}
    for state in states_then:
        by_key.setdefault((state.incident_id, state.source_id), {})[state.pgh_obj_id] = state.pgh_obj
    if not by_key:
        return {}
    candidates = [
        (revision, index, row, claim)
        for revision, index, row in wanted
        for claim in by_key.get((revision.incident_id, _claimed_source_id(row)), {}).values()
    ]
    states: dict[int, list[tuple[Any, bool]]] = {}
    # Each state by the claim's own `updated_at`, set by the application's clock as the revision's
    # `created_at` is: an event's `pgh_created_at` is its transaction's start.
    for claim_id, when, confidential in (
        Claim.pgh_event_model.objects.filter(pgh_obj_id__in={claim.pk for *_, claim in candidates})
        .order_by("pgh_id")
        .values_list("pgh_obj_id", "updated_at", "confidential")
    ):
        states.setdefault(claim_id, []).append((when, confidential))
    repeated: dict[Any, dict[int, Claim]] = {}
    for revision, index, row, claim in candidates:
        if _public_since(states.get(claim.pk, []), revision.created_at) or (copies and _says_what(row, claim)):
            repeated.setdefault(revision.pk, {})[index] = claim
    return repeated


def _says_what(row: Mapping[str, Any], claim: Claim) -> bool:
    """Whether the proposed claim `row` (without an id: what is not in it, as a new claim has it)
    says what `claim` says: its figures, dates, words, locator and connection to the source."""
    proposed = Claim()
    for name, value in row.items():
        field = Claim._meta.get_field(name)
        if not field.is_relation:
            setattr(proposed, field.attname, field.to_python(value))
    return all(
        getattr(proposed, field.attname) == getattr(claim, field.attname)
        for field in Claim._meta.concrete_fields
        if field.editable and not field.is_relation and field.name not in {"id", "confidential", "merge_conflict"}
    )


def _public_since(states: list[tuple[Any, bool]], since) -> bool:
    """Whether a claim with recorded `states` ((when, confidential), oldest first) was public at
    any time from `since` on: in the state it had then, or in any later one."""
    before = [confidential for when, confidential in states if when <= since][-1:]
    return any(not confidential for confidential in before) or any(
        not confidential for when, confidential in states if when > since
    )


def revision_changes_disclosed(recorded: Mapping[Any, Mapping[str, Any]], user) -> dict[Any, dict[str, Any]]:
    """Revisions' `changes` as `user` is shown them on the revision itself (`_changes_shown`), of
    their recorded states (by any key: a revision's events, in its history), each its record's
    columns (its `changes`, incident, creation and whether it needs Confidential access)."""
    return _changes_shown(
        [
            SimpleNamespace(
                pk=key,
                changes=state.get("changes") or {},
                incident_id=state.get("incident_id"),
                created_at=parse_datetime(state["created_at"]) if state.get("created_at") else timezone.now(),
                needs_confidential_access=bool(state.get("needs_confidential_access")),
            )
            for key, state in recorded.items()
        ],
        user,
    )


def _current_children(revisions: list[IncidentRevision], user) -> dict[str, dict[int, list[models.Model]]]:
    """The children of the revisions' incidents as `user` sees them now, by kind and incident id,
    as the differences list them: one query per kind, for the kinds the revisions change."""
    changed = {name for revision in revisions for name in revision.changes if name != "data"}
    incident_ids = {revision.incident_id for revision in revisions}
    kinds = {
        "places": IncidentPlace.objects.select_related("place")
        .annotate(place_path=place_path("place_id"))
        .order_by("place__name"),
        "claims": Claim.objects.visible_to(user).select_related("source__publisher"),
        "victim_groups": VictimGroup.objects.order_by("id"),
        "involvements": Involvement.objects.select_related("organization").order_by("id"),
    }
    current: dict[str, dict[int, list[models.Model]]] = {name: {} for name in kinds}
    for name in changed & kinds.keys():
        for child in kinds[name].filter(incident__in=incident_ids):
            if name == "places":
                child.place.path = child.place_path
            current[name].setdefault(child.incident_id, []).append(child.place if name == "places" else child)
    return current


def _differences(
    revision: IncidentRevision, changes: Mapping[str, Any], named: _NamedRecords, current: Mapping[str, Mapping]
) -> list[tuple[str, str, str]]:
    """What accepting the revision would change, as (what, now, proposed) in words people read,
    against the incident as it is now."""
    incident = revision.incident
    try:
        arguments = revision_changes(revision, changes, named)
    except ValidationError as error:
        # A record it names was deleted since: it cannot be accepted, and the Reviewer must still
        # see it to reject it.
        return [("Cannot be accepted", "—", " ".join(error.messages))]
    rows = []
    for name, value in arguments.pop("data").items():
        field = Incident._meta.get_field(name)
        now = getattr(incident, field.attname)
        if same_text(field, value, now):
            # Accepting writes nothing for it (`_stored_spaces_kept`): a line break proposed as CR
            # LF before migration 0115, beside its LF, read as a change whose two values read alike.
            continue
        if field.is_relation and now is not None:
            now = named.get(field.related_model, now)
        now, proposed = _readable(incident, field, now), _readable(incident, field, value)
        if now != proposed:
            rows.append((str(field.verbose_name).capitalize(), now, proposed))
    claims = current["claims"].get(incident.pk, [])
    # Accepting keeps the claims its proposer could not see (incident_revision_accept, which
    # refuses when their sight changed since they proposed it): they are not among what changes.
    kept = (
        set()
        if revision.needs_confidential_access
        else {claim.pk for claim in claims if claim.needs_confidential_access}
    )
    for name, proposed_rows in arguments.items():
        model = Incident._meta.get_field(name).related_model
        now_records = current[name].get(incident.pk, [])
        if name == "places":
            # By id, named by path: by name, moving an incident from Tumen (China) to Tumen (North
            # Korea) read "Nothing: the incident already holds these values".
            if {place.pk for place in now_records} != {place.pk for place in proposed_rows}:
                now_text = "; ".join(sorted(place.path for place in now_records))
                proposed_text = "; ".join(sorted(place.path for place in proposed_rows))
                rows.append(("Places", now_text or "—", proposed_text or "—"))
            continue
        label = name.replace("_", " ").capitalize()
        if name == "claims":
            # Claims' ids: a victim group or involvement of the same number is no claim.
            now_records = [record for record in now_records if record.pk not in kept]
        rows += [(label, now, proposed) for now, proposed in _children_differences(model, now_records, proposed_rows)]
    return rows


def _children_differences(
    model: type[models.Model], now_records: list[models.Model], proposed_rows: list[Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """What accepting would change of an incident's claims, victim groups or involvements, as
    (now, proposed) per record: one it changes with the fields it changes alone, beside its name
    ("RFA (locator — | locator p. 4)"), one it adds or removes whole. Listing every record on both
    sides hid a changed field in a paragraph the Reviewer had to compare word by word, and a victim
    group, named by its description alone, hid a change of its count."""
    now_by_id = {record.pk: record for record in now_records}
    matched, added = {}, []
    for row in proposed_rows:
        fields = {key: value for key, value in row.items() if key != "id"}
        if row.get("id") in now_by_id and row["id"] not in matched:
            # As accepting writes it (`_validate_children`): the stored record with the fields the row
            # gives. A row of the API's PATCH gives only those it changes; read as a new record, the
            # others showed as cleared, and a claim's source as missing (a 500).
            record = copy.copy(now_by_id[row["id"]])
            for name, value in fields.items():
                setattr(record, name, value)
            matched[row["id"]] = record
        else:
            added.append(model(**fields))
    removed = [record for record in now_records if record.pk not in matched]
    # A row sent again without its id (the API replaces the rows it is sent) that holds exactly
    # what a record holds changes nothing.
    for record in list(added):
        same = next((old for old in removed if _fields_set(old) == _fields_set(record)), None)
        if same is not None:
            added.remove(record)
            removed.remove(same)
    differences = []
    for record in now_records:
        if record.pk in matched:
            now, proposed = _fields_set(record, blanks=True), _fields_set(matched[record.pk], blanks=True)
            changed = [label for label in {**now, **proposed} if now.get(label, "—") != proposed.get(label, "—")]
            if changed:
                name = _child_name(record)
                differences.append(
                    (
                        f"{name} ({', '.join(f'{label} {now.get(label, chr(8212))}' for label in changed)})",
                        f"{name} ({', '.join(f'{label} {proposed.get(label, chr(8212))}' for label in changed)})",
                    )
                )
        elif record in removed:
            differences.append((_described(record), "—"))
    differences += [("—", _described(record)) for record in added]
    return differences


def _pending_revision(revision: IncidentRevision, user) -> IncidentRevision:
    _require_permission(user, "incidents.publish_incident", "decide proposed revisions")
    if not IncidentRevision.objects.visible_to(user).filter(pk=revision.pk).exists():
        raise RecordNotFound(f"No revision {revision.pk}.")
    locked = locked_or_not_found(IncidentRevision.objects.all(), revision.pk, name="revision")
    if locked.state != RevisionState.PENDING:
        raise ValidationError({"state": f"This revision was already {locked.get_state_display().lower()}."})
    return locked


def incident_revision_accept(*, revision: IncidentRevision, user, note: str = "") -> Incident:
    """Apply a pending revision as one update of its incident, by a Reviewer. The claims it may
    replace are those its proposer could see, so accepting never deletes a claim hidden from the
    proposer. If the incident changed since the proposal, raise StaleRevision: the reviewer
    rejects it and the proposer edits the current version."""
    raise_text_errors(note=note)
    with transaction.atomic(), pghistory.context(user=_acting_user_id(user), revision=revision.pk):
        revision = _pending_revision(revision, user)
        if _author_deleted(revision):
            raise ValidationError({"claims": [AUTHOR_DELETED_MESSAGE]})
        if "claims" in revision.changes and revision.needs_confidential_access != can_see_confidential(
            revision.proposed_by
        ):
            # The claims it replaces are those its proposer sees now, and the differences a Reviewer
            # read showed those she saw when she proposed it (`revisions_read`). Given Confidential
            # access since, accepting would delete the confidential claims she never sent; with it
            # taken away, it would change confidential claims on the word of someone who may no
            # longer read them.
            change = (
                "taken away from its author since they proposed it"
                if revision.needs_confidential_access
                else "given to its author since they proposed it"
            )
            raise ValidationError(
                {
                    "claims": [
                        f"Confidential access has been {change}, so its claims no longer say which claims "
                        "they saw: reject it, and its author can propose again."
                    ]
                }
            )
        incident = Incident.objects.get(pk=revision.incident_id)
        if incident.merged_into_id is not None:
            raise ValidationError(
                {
                    "incident": [
                        f"{incident.public_id} has been merged into another incident and cannot change: reject "
                        "this revision, and propose it again on the incident it lives on in."
                    ]
                }
            )
        try:
            # The version its proposer was told (`_propose_revision`): a change hidden from them since
            # neither makes it stale nor is overwritten by it (it changes only what they saw).
            current = _locked(incident, revision.base_version, told=revision.versions_told)
        except VersionConflict as conflict:
            raise StaleRevision(current=conflict.current, revision=revision, reader=user) from None
        _raise_collected(_repeated_claim_errors(revision, user))
        # What this Reviewer was shown (`revisions_read`), not rows of claims or sources hidden from
        # them: refusing over those (a claim of a source made confidential since it was proposed,
        # which its proposer may no longer cite either) named the hidden source and claim to a
        # Reviewer who saw neither, and only when one existed.
        arguments = revision_changes(revision, _changes_shown([revision], user)[revision.pk])
        data = arguments.pop("data")
        changes = {name: arguments.get(name) for name in ("places", "claims", "victim_groups", "involvements")}
        _apply_update(
            incident, current=current, user=user, data=data, changes=changes, visibility_of=revision.proposed_by
        )
        _decide(revision, RevisionState.ACCEPTED, user, note)
    return incident


AUTHOR_DELETED_MESSAGE = (
    "Its author's account has been deleted, so its claims no longer say which claims they saw: reject it, "
    "and propose the change again."
)


def _author_deleted(revision: IncidentRevision) -> bool:
    """Whether `revision` changes claims and its proposer's account is gone. Accepting replaces the
    claims its proposer saw; with no proposer, those of the accepting Reviewer were replaced, and
    a confidential claim the proposer never saw (nor the Reviewer's differences named) was deleted."""
    return "claims" in revision.changes and revision.proposed_by_id is None


def _repeated_claim_errors(revision: IncidentRevision, user) -> dict[str, list[str]]:
    """A Reviewer with Confidential access is refused the rows of `revision` that repeat a
    confidential claim, sent back or copied (`_confidential_claims_repeated`): accepting would
    publish it as a public claim beside it. One who may not see the claim is not shown those sent
    back since it was made confidential, and accepting applies the revision without them
    (`_changes_shown`): the claim stays as it is, and none is deleted."""
    if not can_see_confidential(user):
        return {}
    return {
        f"claims[{index}].source": [_repeated_claim_message(claim)]
        for index, claim in _confidential_claims_repeated([revision], copies=True).get(revision.pk, {}).items()
    }


def _repeated_claim_message(claim: Claim) -> str:
    return (
        f"It repeats claim {claim.pk} of “{claim.source}”, which is confidential and its author may not see: "
        "accepting would publish it as a public claim. Reject it, and its author can propose again."
    )


def incident_revision_reject(*, revision: IncidentRevision, user, note: str = "") -> IncidentRevision:
    """Close a pending revision without applying it, by a Reviewer; history keeps it."""
    raise_text_errors(note=note)
    with transaction.atomic(), pghistory.context(user=_acting_user_id(user), revision=revision.pk):
        revision = _pending_revision(revision, user)
        _decide(revision, RevisionState.REJECTED, user, note)
    return revision


def _decide(revision: IncidentRevision, state: str, user, note: str) -> None:
    revision.state = state
    revision.decided_by_id = _acting_user_id(user)
    revision.decided_at = timezone.now()
    revision.decision_note = note
    revision.save(update_fields=["state", "decided_by", "decided_at", "decision_note", "updated_at"])


# Workflow: action -> (states it may start from, state it leads to, permission it needs).
WORKFLOW = {
    "submit": ({ReviewState.DRAFT}, ReviewState.IN_REVIEW, "incidents.submit_incident"),
    "publish": ({ReviewState.DRAFT, ReviewState.IN_REVIEW}, ReviewState.PUBLISHED, "incidents.publish_incident"),
    "return_to_draft": (
        {ReviewState.IN_REVIEW, ReviewState.PUBLISHED},
        ReviewState.DRAFT,
        "incidents.publish_incident",
    ),
}


def incident_transition(
    *, incident: Incident, action: str, user, expected_version: int | None = None, told: VersionFields | None = None
) -> Incident | IncidentRevision:
    """Move an incident through review (submit, publish, return to draft), if the user's role allows
    it and the incident is in a state the action starts from."""
    try:
        sources, target, permission = WORKFLOW[action]
    except KeyError:
        raise ValidationError({"action": f"Unknown action {action!r}; choose one of {', '.join(WORKFLOW)}."}) from None
    if not user.has_perm(permission):
        raise PermissionDenied(f"You may not {action.replace('_', ' ')} incidents: your role lacks that permission.")
    if incident.review_state not in sources and not (incident.review_state == target and expected_version is not None):
        # Already where the action leads, from the version a page showed: perhaps its button pressed
        # twice, which `incident_update` answers as done if the change since was the writer's own,
        # and refuses as stale if it was anyone else's.
        raise ValidationError(
            {
                "review_state": f"{incident.public_id} is {incident.get_review_state_display().lower()}; "
                f"{action.replace('_', ' ')} applies only to {', '.join(sorted(sources))} incidents."
            }
        )
    return incident_update(
        incident=incident,
        user=user,
        expected_version=version_seen_by(incident, user) if expected_version is None else expected_version,
        told=told,
        data={"review_state": target},
    )


def incident_set_verification(
    *,
    incident: Incident,
    verification: str,
    user,
    expected_version: int | None = None,
    told: VersionFields | None = None,
) -> Incident | IncidentRevision:
    """Change how well an incident is established; only reviewers (verify permission) may."""
    if not user.has_perm("incidents.verify_incident"):
        raise PermissionDenied("You may not change verification: your role lacks that permission.")
    if verification not in Verification.values:
        raise ValidationError({"verification": f"Unknown verification {verification!r}."})
    return incident_update(
        incident=incident,
        user=user,
        expected_version=version_seen_by(incident, user) if expected_version is None else expected_version,
        told=told,
        data={"verification": verification},
    )


def workflow_errors(*, user, incident: Incident | None, data: Mapping[str, Any]) -> dict[str, list[str]]:
    """What is wrong with the review state and verification `data` gives `incident` (None: a new
    one, which starts draft and alleged), as {field: [message]}: a move that is no WORKFLOW step,
    a step the user's role lacks, a verification change without the verify permission."""
    errors = {}
    current_state, target_state = _review_states(incident, data)
    if target_state != current_state:
        step = _workflow_step(current_state, target_state)
        if step is None:
            errors["review_state"] = [f"An incident cannot go from {current_state} to {target_state} directly."]
        elif not user.has_perm(step[1]):
            errors["review_state"] = [
                f"You may not {step[0].replace('_', ' ')} incidents: your role lacks that permission."
            ]
    current_verification = incident.verification if incident else Verification.ALLEGED
    if data.get("verification", current_verification) != current_verification and not user.has_perm(
        "incidents.verify_incident"
    ):
        errors["verification"] = ["You may not change verification: your role lacks that permission."]
    return errors


def _review_states(incident: Incident | None, data: Mapping[str, Any]) -> tuple[str, str]:
    """The review state `incident` is in (a new one: draft) and the one `data` asks for."""
    current_state = incident.review_state if incident else ReviewState.DRAFT
    return current_state, data.get("review_state", current_state)


def _workflow_step(current_state: str, target_state: str) -> tuple[str, str] | None:
    """The WORKFLOW action (and its permission) that moves an incident between the two states."""
    return next(
        (
            (action, permission)
            for action, (sources, target, permission) in WORKFLOW.items()
            if target == target_state and current_state in sources
        ),
        None,
    )


def incident_check_permissions(*, user, incident: Incident | None, data: Mapping[str, Any]) -> None:
    """Publishing and verification are reviewers' decisions whatever door a write comes through:
    `workflow_errors` as ValidationError when the move is no workflow step at all (a bad value),
    otherwise as PermissionDenied (a step or a verification change the role lacks)."""
    errors = workflow_errors(user=user, incident=incident, data=data)
    current_state, target_state = _review_states(incident, data)
    if target_state != current_state and _workflow_step(current_state, target_state) is None:
        _raise_collected(errors)
    if errors:
        raise PermissionDenied(" ".join(message for messages in errors.values() for message in messages))


DELETION_REFUSED = (
    "You may not delete this: deleting needs the delete permission and Confidential access, since a deletion "
    "can take with it records that only that access shows."
)


def record_delete(*, user, record: models.Model) -> None:
    """Delete any record (an incident with its claims, victim groups, involvements and places; a
    source, place, …) if `user` may: the model's delete permission and `may_delete`. One message
    for every refusal. History keeps what was deleted."""
    if not (may_delete(user) and user.has_perm(_permission(type(record), "delete"))):
        raise PermissionDenied(DELETION_REFUSED)
    _require_visible(user, record)
    with transaction.atomic(), pghistory.context(user=_acting_user_id(user)):
        if isinstance(record, Incident) and record.confidential:
            # Its responses locked before they are counted: two Reviewers deleting a response's two
            # confidential incidents at once each found the other's still linked, and both deleted
            # theirs, leaving it about none. The second now waits for the first, and counts again.
            links = Response.incidents.through.objects.filter(incident=record).values("response")
            list(Response.objects.select_for_update().filter(pk__in=links).values_list("pk"))
        if isinstance(record, Incident) and (left := responses_left_about_none([record])):
            raise ProtectedError(RESPONSES_LEFT_ABOUT_NONE, left)
        if isinstance(record, Incident):
            # Locked before its merges are read, as a merge locks both its incidents: a merge
            # committed between that read and the delete made the delete fail on the rows it had
            # moved to it (a 500), where it is refused (StillMerged).
            list(Incident.objects.select_for_update(of=("self",)).filter(pk=record.pk).values_list("pk"))
            if refusals := merges_refusing_deletion([record]):
                raise refusals[0]
        if isinstance(record, Incident) and record.merged_into_id is None:
            # Its responses list it no more: a new version of each, told to the readers who saw it
            # there, so that an incremental sync reads them again. Django removes the links
            # without a save of the responses, and a partner's copy kept the deleted incident.
            _links_shown_changed(record, told=_seen_down_to(record))
        record.delete()


class StillMerged(ProtectedError):
    """An incident in a merge not undone is not deleted: merged away, its address leads to the
    survivor for every reader and sync; the survivor holds the other's rows. An undone merge goes
    with it (`IncidentMerge`'s on_delete; its history keeps it). The message names no other
    incident, which the deleter may not see."""

    def __init__(self, incident: Incident, merges: list):
        if any(merge.merged_id == incident.pk for merge in merges):
            why = f"{incident.public_id} was merged into another incident, and its address leads there"
        else:
            why = f"{incident.public_id} holds an incident merged into it"
        super().__init__(f"{why}: undo that merge first (from its page), then delete it.", merges)


def merges_refusing_deletion(incidents: Iterable[Incident]) -> list[StillMerged]:
    """Why each of `incidents` in a merge not undone is not deleted (`record_delete`); one query."""
    incidents = list(incidents)
    ids = {incident.pk for incident in incidents}
    merges_of = defaultdict(list)
    for merge in IncidentMerge.objects.filter(Q(survivor__in=ids) | Q(merged__in=ids), undone_at__isnull=True):
        for incident_id in {merge.survivor_id, merge.merged_id} & ids:
            merges_of[incident_id].append(merge)
    return [StillMerged(incident, merges_of[incident.pk]) for incident in incidents if incident.pk in merges_of]


def _seen_down_to(incident: Incident) -> VersionFields:
    """The narrowest audience that sees `incident` (merges aside; `querysets.AUDIENCES`)."""
    if incident.confidential:
        return EVERY_CHANGE
    return THE_PUBLIC if shown_to_the_public(incident) else STAFF_WITHOUT_CONFIDENTIAL_ACCESS


# Why a confidential incident that is the only incident of a response is not deleted.
RESPONSES_LEFT_ABOUT_NONE = (
    "This confidential incident is the only incident of a response: deleted, it would leave the response about "
    "no incident, which every member of staff reads. Link the response to another incident, or delete it, first."
)


def responses_left_about_none(incidents: Iterable[Incident]) -> list[Response]:
    """The responses that deleting `incidents` would leave about no incident, where one of them is
    confidential: a response about a confidential incident alone is hidden as the incident is, and
    a response about none is shown to all staff ("linked to no incident yet"), with what it says of
    the incident. One query; none unless one of them is confidential."""
    confidential = [incident.pk for incident in incidents if incident.confidential]
    if not confidential:
        return []
    deleted = [incident.pk for incident in incidents]
    links = Response.incidents.through.objects
    return list(
        Response.objects.filter(incidents__in=confidential)
        .exclude(pk__in=links.exclude(incident__in=deleted).values("response"))
        .distinct()
        .order_by("pk")
    )


def _taken_meanwhile_refused(save):
    """`save` (`record_save`) answering a key another write took meanwhile as the ValidationError
    naming its field that a write a moment later gets. The record's checks (`full_clean`) see only
    what was committed when they ran: two analysts adding "Tumen Border Police" at once both passed
    them, and the second INSERT, waiting for the first on the unique index, failed once it
    committed, an IntegrityError and a 500. Its transaction rolled back, the checks run again, now
    seeing the other record. No cost to a write that succeeds."""

    @functools.wraps(save)
    def saving(*, record: models.Model, **options):
        try:
            return save(record=record, **options)
        except IntegrityError as error:
            if not isinstance(error.__cause__, UniqueViolation):
                raise
            try:
                record.validate_unique()
                record.validate_constraints()
            except ValidationError as taken:
                raise taken from error
            raise

    return saving


@_taken_meanwhile_refused
def record_save(
    *,
    user,
    record: models.Model,
    data: Mapping[str, Any] | None = None,
    many_to_many: Mapping[str, Iterable[models.Model]] | None = None,
    expected_version: int | None = None,
    told: VersionFields | None = None,
    another_source_confirmed: bool = False,
) -> models.Model:
    """Create (`record` not yet saved) or change a record other than an incident — a source, place,
    organization, incident type or response — with `data` and the links in `many_to_many`, if
    `user` has the model's add or change permission and may see the record. A change names the
    version it was made from (`expected_version`, as `told` counts it: `check_version`;
    VersionConflict if the record was saved since), as an incident's does. Links to records the
    user may not see stay as they are: a writer who was shown no link (null, or a shorter list) and
    sends that back does not erase it.
    Confidentiality changes as `confidentiality_errors` allows. A new source that looks like one
    `user` may see (`source_lookalikes`) is refused with SourceLooksLikeAnother unless
    `another_source_confirmed`. A change that changes nothing writes nothing, and returns the
    stored record as it is, not `record`; so does one made from the version its writer's own change
    replaced, stale by that alone (`VersionConflict.by_the_writer_alone`: sent twice). Raises
    PermissionDenied, RecordNotFound, ValidationError or VersionConflict."""
    model = type(record)
    creating = record._state.adding
    action = "add" if creating else "change"
    _require_permission(user, _permission(model, action), f"{action} {model._meta.verbose_name_plural}")
    # Read once: the rules look at the links sent before they are written.
    many_to_many = {name: list(linked) for name, linked in (many_to_many or {}).items()}
    versioned = issubclass(model, VersionedModel)
    with transaction.atomic(), pghistory.context(user=_acting_user_id(user)):
        stored = stale = None
        if not creating:
            _require_visible(user, record)
            if versioned and expected_version is None:
                raise ValidationError({"version": ["Send the version you edited."]})
            # Locked, so that two writers of one version cannot both pass the comparison.
            stored = locked_or_not_found(model._default_manager.all(), record.pk)
            if versioned:
                try:
                    check_version(stored, expected_version, reader=user, told=told)
                except VersionConflict as conflict:
                    if not conflict.by_the_writer_alone:
                        raise
                    # Perhaps its writer's first send, answered below if it changes nothing.
                    stale = conflict
        for name, value in (data or {}).items():
            setattr(record, name, value)
        if stored is not None:
            _keep_hidden_links(user, record, stored)
            _stored_spaces_kept(record, _values(stored))
        _keep_staff_only_values(user, record, stored, data or {})
        errors = {}
        try:
            record.full_clean()
        except ValidationError as error:
            errors.update(error.message_dict)
        if isinstance(record, Source):
            errors.update(_cites_loop_errors(user, record))
        if isinstance(record, Place):
            errors.update(sensitivity_errors(user, stored=stored, place=record))
        if isinstance(record, Response) and stored is not None and "incidents" in many_to_many:
            errors.update(_last_incident_seen_errors(user, stored, many_to_many["incidents"]))
        if hasattr(record, "confidential"):
            errors.update(
                confidentiality_errors(
                    user,
                    was_confidential=bool(stored and stored.confidential),
                    confidential=record.confidential,
                    field="confidential",
                )
            )
        if stale is not None and errors:
            raise stale
        _raise_collected(errors)
        if creating and isinstance(record, Source) and not another_source_confirmed:
            wait_for_sources_alike(record)
            lookalikes = source_lookalikes(user=user, source=record)
            if lookalikes:
                raise SourceLooksLikeAnother(lookalikes)
        # Every record each many-to-many field will hold: those sent, and those hidden from `user`,
        # kept. The stored record's links, read afresh: a door's record may hold a prefetched,
        # visible-only set of them.
        links = {
            name: [*linked, *([] if stored is None else _hidden(getattr(stored, name).all(), user))]
            for name, linked in many_to_many.items()
        }
        if stored is not None and not _record_changes_anything(record, stored, links):
            # As an incident's unchanged write (`_apply_update`): a new version of a place or an
            # organization (one version, every reader's, anonymous ones' too) or of a source or a
            # response, and an update event, for a save that changed nothing. The writer's own change
            # sent again (`VersionConflict.by_the_writer_alone`), saved by its first send, is answered
            # so too.
            return stored
        if stale is not None:
            raise stale
        if stored is not None and versioned:
            record.version = stored.version
        if isinstance(record, Place) and stored is not None:
            _country_followed(record, stored)
        if isinstance(record, Source) and stored is not None:
            # Before the source's UPDATE, whose trigger makes the export rows of every incident
            # citing it again, with these new versions: once, where a bump after it made them twice.
            _incidents_show_source_changed(record, stored, user)
            if stored.confidential != record.confidential:
                _links_shown_changed(record)
        if isinstance(record, Organization) and stored is not None and stored.name != record.name:
            _incidents_show_organization_renamed(record, user)
        if isinstance(record, IncidentType) and stored is not None and stored.slug != record.slug:
            # Before the type's UPDATE, whose trigger makes their export rows again (`type`).
            _incidents_new_version(
                user, f"SELECT id FROM {Incident._meta.db_table} WHERE incident_type_id = %s", [record.pk]
            )
            # Its sub-types name it as their `parent` by its slug too.
            sub_types = IncidentType.objects.filter(parent=record)
            sub_types.update(version=models.F("version") + 1, updated_at=timezone.now())
        if isinstance(record, Place) and stored is not None and _changed(record, stored, _SHOWN_FIELDS):
            # Before the place's UPDATE (the incidents at it and inside it are the same before and
            # after it): its trigger makes their export rows again, with these new versions, when
            # their place paths change; once, where a refresh after it made a moved place's twice.
            _incidents_show_place_changed(
                record,
                user,
                export_rows_remade=_changed(record, stored, _PATH_FIELDS),
                told=_place_change_told(record, stored),
            )
        coarsened_inside = (
            _places_inside_coarsened(record)
            if isinstance(record, Place) and stored is not None and _changed(record, stored, _SHOWN_AT_ALL_FIELDS)
            else {}
        )
        record.save()
        if coarsened_inside:
            _places_coarsened_since(coarsened_inside)
        if isinstance(record, Source) and stored is not None:
            if _origins_changed(record, stored):
                duplicates.rescore_relays_after_commit(record.pk)
            elif record.cites_id != stored.cites_id:
                # A change of what it cites that readers without Confidential access do not see
                # (`_origins_changed`) still changes every origin, by which a pair with a
                # confidential incident is scored: only theirs are rescored.
                duplicates.rescore_relays_after_commit(record.pk, confidential_pairs_only=True)
        for name, linked in links.items():
            getattr(record, name).set(linked)
    return record


def _record_changes_anything(
    record: models.Model, stored: models.Model, links: Mapping[str, list[models.Model]]
) -> bool:
    """Whether writing `record` (its fields set) and its many-to-many `links` would change `stored`."""
    return _changed(record, stored, _written_fields(type(record))) or any(
        _links_differ(linked, getattr(stored, name).all()) for name, linked in links.items()
    )


# A Wayback Machine copy's address ends with the archived page's own: web.archive.org/web/<time>/<address>.
_WAYBACK_COPY = re.compile(r"^(?:https?://)?web\.archive\.org/web/[^/]*/", re.IGNORECASE)


def comparable_address(url: str) -> str:
    """`url` as two entries of one article compare: the archived page's address for a Wayback
    Machine copy; without its scheme (http and https serve one article), `www.`, fragment,
    trailing slash and `utm_` parameters (a link shared from a newsletter); its host lowercased.
    The path and the other parameters stay as written: they may tell two pages apart. "" for "".
    """
    address = _WAYBACK_COPY.sub("", url.strip())
    if not address:
        return ""
    parts = urlsplit(address if "://" in address else f"http://{address}")
    host = (parts.hostname or "").removeprefix("www.")
    try:
        port = parts.port
    except ValueError:
        # Out of range, stored before addresses were checked for it (`validate_port`): as written.
        port = parts.netloc.rpartition(":")[2]
    if port is not None and port not in (80, 443):
        host = f"{host}:{port}"
    query = urlencode(
        [
            (name, value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
            if not name.lower().startswith("utm_")
        ]
    )
    return host + parts.path.rstrip("/") + (f"?{query}" if query else "")


@dataclass(frozen=True)
class SourceLookalike:
    """A source already recorded that a new one looks like, and why: `field` is the new source's
    field that matched (`url`, or `title`)."""

    source: Source
    field: str
    reason: str

    @property
    def message(self) -> str:
        return (
            f"This looks like source #{self.source.pk} “{self.source.title}” ({self.reason}): "
            "use it, or confirm that this is another source."
        )


class SourceLooksLikeAnother(ValidationError):
    """A new source refused because it looks like one its writer may see: each message under the
    field that matched. A ValidationError, so a door that does not offer the confirmation still
    answers with the reason (a form error, a 400); the API answers 409 naming the sources."""

    def __init__(self, lookalikes: list[SourceLookalike]):
        self.lookalikes = lookalikes
        errors = defaultdict(list)
        for lookalike in lookalikes:
            errors[lookalike.field].append(lookalike.message)
        super().__init__(dict(errors))


def comparable_titles(titles: Iterable[str]) -> dict[str, str]:
    """Each of `titles` as `models.comparable_title` compares it, computed by PostgreSQL with the
    expression the stored titles' index holds, so that both sides are one implementation; in the
    normal form a title is written in (`normal_text`) first: an import's file may name a source
    decomposed, or with a zero-width space at its end, which the source it makes is saved without.
    One query."""
    titles = sorted(set(titles))
    if not titles:
        return {}
    query = Source.objects.all().query
    compiler = query.get_compiler(connection=connection)
    expression = comparable_title(RawSQL("given.title", [], output_field=models.TextField()))
    expression_sql, params = expression.resolve_expression(query).as_sql(compiler, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {expression_sql} FROM unnest(%s::text[]) WITH ORDINALITY AS given (title, position) "
            "ORDER BY position",
            [*params, [normal_text(title, one_line=True) for title in titles]],
        )
        return dict(zip(titles, (comparable for (comparable,) in cursor.fetchall()), strict=True))


def sources_titled_alike(*, user, comparable: Mapping[str, str]) -> dict[str, list[Source]]:
    """Of the sources `user` may see, those whose title compares equal (`comparable_title`: case,
    quotes and apostrophes, whitespace) to each title of `comparable` (`comparable_titles`' answer),
    by id; titles with none are left out. A source hidden from `user` is never named: its existence
    is what it hides. One query; none for no titles."""
    if not comparable:
        return {}
    by_comparable = defaultdict(list)
    for source in (
        Source.objects.visible_to(user)
        .annotate(comparable=comparable_title("title"))
        .filter(comparable__in=set(comparable.values()))
        .order_by("pk")
    ):
        by_comparable[source.comparable].append(source)
    return {title: by_comparable[key] for title, key in comparable.items() if key in by_comparable}


# New sources that may look alike (`wait_for_sources_alike`): transaction-level advisory locks
# keyed (this namespace, a hash of an address or title as they compare), the two-key form, apart
# from the one-key locks of releases and of the place tree.
_SOURCES_ALIKE_NAMESPACE = "hashtext('incidents.sources_alike')"


def wait_for_sources_alike(*sources: Source) -> None:
    """Wait for any other write of a new source at the same address or with the same title as a
    new one of `sources` (the keys `source_lookalikes` compares) to end. Each lookalike check sees
    only what was committed: two analysts entering one article at the same moment were each checked
    before the other's source was, and both recorded it. The second now waits, then is told of the
    first's. In the order of their keys, all the sources' at once (an import makes many), so that
    two such writes never wait for each other; a query per key, and one for the titles'."""
    titles = comparable_titles(source.title for source in sources)
    keys = {f"title {titles[source.title]}" for source in sources}
    for source in sources:
        addresses = {comparable_address(address) for address in (source.url, source.archive_url)} - {""}
        keys |= {f"address {address}" for address in addresses}
    with connection.cursor() as cursor:
        for key in sorted(keys):
            cursor.execute(f"SELECT pg_advisory_xact_lock({_SOURCES_ALIKE_NAMESPACE}, hashtext(%s))", [key])


def source_lookalikes(*, user, source: Source) -> list[SourceLookalike]:
    """The sources `user` may see that the new `source` may repeat: the same address
    (`comparable_address`, its `url` or `archive_url` against theirs), or the same title
    (`comparable_title`) where neither names a publisher other than the other's. Never a source
    hidden from `user`: warning of it would tell them it exists. Three queries at most."""
    found: dict[int, SourceLookalike] = {}
    addresses = {comparable_address(address) for address in (source.url, source.archive_url)} - {""}
    if addresses:
        # Narrowed in SQL by what every equal address contains (host and path, in any case), then
        # compared as a whole here.
        contains = Q()
        for address in addresses:
            core = address.split("?", 1)[0]
            contains |= Q(url__icontains=core) | Q(archive_url__icontains=core)
        for candidate in Source.objects.visible_to(user).filter(contains).exclude(pk=source.pk).order_by("pk"):
            if addresses & {comparable_address(candidate.url), comparable_address(candidate.archive_url)}:
                found[candidate.pk] = SourceLookalike(candidate, "url", "the same address")
    titled_alike = sources_titled_alike(user=user, comparable=comparable_titles([source.title]))
    for candidate in titled_alike.get(source.title, []):
        publishers = {candidate.publisher_id, source.publisher_id}
        if candidate.pk in found or candidate.pk == source.pk or len(publishers - {None}) > 1:
            continue
        same_publisher = candidate.publisher_id is not None and len(publishers) == 1
        found[candidate.pk] = SourceLookalike(
            candidate, "title", "the same title and publisher" if same_publisher else "the same title"
        )
    return list(found.values())


# What the incidents at a place and at the places inside it show of it: its name, kind and country
# (the API's `places`, the CSV's paths and countries), its mark and where it lies in the tree
# (`within_sensitive`, the paths), and its coordinates, which the places inside a sensitive one show
# in its stead (`coordinates_for`). Its other names, only searched, are not shown.
_SHOWN_FIELDS = ("name", "kind", "country", "sensitive", "parent_id", "latitude", "longitude")


# What the place's UPDATE makes the export rows of the incidents at it and inside it again for
# (`incident_export_places_changed`, migration 0028: their place paths and countries).
_PATH_FIELDS = ("name", "parent_id", "country")


def _country_followed(place: Place, stored: Place) -> None:
    """A country `place` took from the place containing it (`Place.country_inherited`) follows that
    place: moved, it takes its new parent's (a province entered under China and moved under North
    Korea counts its incidents, and those of the places inside it, in North Korea). Its writer sent
    the stored country back as read, so a country they change, or give, is theirs from then on; one
    left blank is taken again. Either way the place's save takes the new parent's (`Place.save`,
    which reads it locked). Moved out of every place, it keeps the country it had, as its own."""
    if place.country != stored.country:
        place.country_inherited = False
    elif stored.country_inherited and place.parent_id != stored.parent_id:
        if place.parent_id is None:
            place.country_inherited = False
        else:
            place.country = ""


# A place's fields that decide whether the places inside it are shown coarsened.
_SHOWN_AT_ALL_FIELDS = ("sensitive", "parent_id")


def _places_inside_coarsened(place: Place) -> dict[int, tuple]:
    """The places inside `place` (not itself, whose own write moves its version), each with the
    coordinates the public is shown of it."""
    return _shown_to_the_public(Place.objects.filter(pk__in=ids_in_tree_below(Place, place.pk)).exclude(pk=place.pk))


def _places_coarsened_since(shown_before: dict[int, tuple]) -> None:
    """A new version, told to the public too, of each place of `shown_before` whose coordinates the
    public is shown changed (the place above it marked or un-marked, or moved into or out of a
    sensitive one; or, for one coarsened already, the place whose coordinates it shows): its own
    record did not change, so its version did not move. A partner's PUT of the coarsened
    coordinates it read before passed as a move of the place, over its exact ones; and its sync
    kept what it had read, the exact coordinates of a place, or of a town, made sensitive since,
    as an If-None-Match of the ETag it held answered 304."""
    now = timezone.now()
    shown_now = _shown_to_the_public(Place.objects.filter(pk__in=list(shown_before)))
    changed = [pk for pk, shown in shown_now.items() if shown != shown_before[pk]]
    Place.objects.filter(pk__in=changed).update(version=models.F("version") + 1, updated_at=now, public_updated_at=now)


def _shown_to_the_public(places: models.QuerySet) -> dict[int, tuple]:
    """Each of `places` with the latitude and longitude the public is shown of it."""
    shown = places.with_coordinates_for(AnonymousUser()).values_list("pk", "shown_latitude", "shown_longitude")
    return {pk: (latitude, longitude) for pk, latitude, longitude in shown}


def _changed(record: models.Model, stored: models.Model, fields: tuple[str, ...]) -> bool:
    return any(getattr(record, field) != getattr(stored, field) for field in fields)


# A place's own coordinates, which the public reads only of a place not `within_sensitive`.
_COORDINATE_FIELDS = ("latitude", "longitude")


def _place_change_told(place: Place, stored: Place) -> VersionFields:
    """Down to which audience (`querysets.AUDIENCES`) the incidents at `place` and inside it are told
    its change: every one, but for its exact coordinates alone corrected while it is coarsened
    (`within_sensitive`, as are the places inside it: its mark and parent unchanged, so is that),
    which only staff read; the public reads those of a place above it, before and after."""
    other_fields = tuple(field for field in _SHOWN_FIELDS if field not in _COORDINATE_FIELDS)
    if stored.within_sensitive and not _changed(place, stored, other_fields):
        return STAFF_WITHOUT_CONFIDENTIAL_ACCESS
    return THE_PUBLIC


def _change_times_told(told: VersionFields) -> list[str]:
    """The change-time columns of the audiences narrower than every change's, down to `told`
    (`querysets.AUDIENCES`): given a write's time, they tell each audience's row trigger to count
    it as a change it sees (migrations 0095, 0096, 0098, 0101, 0102)."""
    return [audience.updated_at for audience in AUDIENCES[1 : AUDIENCES.index(told) + 1]]


def _incidents_new_version(
    user,
    incident_ids: str,
    params: list,
    *,
    seen: str | None = None,
    seen_params=(),
    told: VersionFields = THE_PUBLIC,
    at: datetime | None = None,
) -> list[int]:
    """A new version of the incidents whose ids the SQL `incident_ids` selects, a change of what they
    show of a record they link to; readers with Confidential access and every narrower audience
    down to `told` (`querysets.AUDIENCES`: everyone by default) are told it for those `seen` selects
    (all when None), only readers with Confidential access for the others (their change time given
    to an audience's `*_updated_at` too is what tells the incident's triggers to count it,
    migrations 0095, 0102). Their history is written here, with their update triggers off meanwhile
    (migration 0054), and their export rows, which hold the versions, are the caller's to make again
    (most often by the linked record's own UPDATE that follows, in the same transaction): two
    statements, however many incidents (a province's), where the history trigger took 0.4 ms an
    incident (bench/README.md). The record's own history tells what changed; an incident's event
    says only that its version moved. Their change time is `at` (now by default). Their ids."""
    now = at or timezone.now()
    told_columns = _change_times_told(told)
    told_now = "".join(
        f", {column} = %s" if seen is None else f", {column} = CASE WHEN id IN ({seen}) THEN %s ELSE {column} END"
        for column in told_columns
    )
    set_incident_update_triggers(enabled=False)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Incident._meta.db_table} SET version = version + 1, updated_at = %s, updated_by_id = %s"
            f"{told_now} WHERE id IN ({incident_ids}) RETURNING id",
            [now, _acting_user_id(user), *[value for _ in told_columns for value in (*seen_params, now)], *params],
        )
        changed = [incident_id for (incident_id,) in cursor.fetchall()]
    record_events({Incident: "id"}, changed, label="update")
    set_incident_update_triggers(enabled=True)
    return changed


def _incidents_show_place_changed(place: Place, user, *, export_rows_remade: bool, told: VersionFields) -> None:
    """A new version of every incident at `place` or at a place inside it, whose places as readers
    see them may have changed, which audiences down to `told` are told (`_place_change_told`): an
    incremental sync (`updated_since`, the CSV's too) reads them again, so that a partner's copy
    holding a place's exact coordinates, now coarsened (the place, or a town above it, marked
    sensitive), or its old name, is corrected. Without it the incidents kept their version, and a
    copy kept the exact coordinates, or the misspelt name, for good. Their export rows are made
    again here or, if `export_rows_remade`, by the place's UPDATE that follows: once, where a
    refresh after it made a moved place's twice."""
    places_below = ids_in_tree_below(Place, place.pk)
    incident_ids = _incidents_new_version(
        user,
        f"SELECT incident_id FROM {IncidentPlace._meta.db_table} WHERE place_id IN ({places_below.sql})",
        list(places_below.params),
        told=told,
    )
    if not export_rows_remade:
        with connection.cursor() as cursor:
            cursor.execute("SELECT incident_export_refresh(%s::bigint[])", [incident_ids])


def _origins_changed(source: Source, stored: Source) -> bool:
    """Whether the origins that readers without Confidential access know, of the claims of
    `source` and of sources relaying it, may change with the write: it is made confidential or
    public, or, public, cites another source as they read it (a confidential one reads as none).
    What a confidential source cites, or a public one given a confidential source to cite in place
    of none or of another confidential one, changes no origin they know, and rescoring for it would
    show them, in the duplicates queue's count of incidents waiting, how many incidents cite it or a
    relay of it."""
    if source.confidential != stored.confidential:
        return True
    return not source.confidential and _disclosed_cites_changed(source, stored)


def _cites_loop_errors(user, source: Source) -> dict[str, list[str]]:
    """A loop of `cites` through `source` (it relays a source that relays it…), refused only where
    `user` may see every source on it. Refusing a loop through a source hidden from them would tell
    them what that source cites, or that it relays the one they edit; such a loop is kept, and
    `source_origin` counts its sources as one origin (migration 0051). One query per step."""
    if reaches_itself(source, "cites", among=Source.objects.visible_to(user)):
        return {"cites": [SOURCE_CITES_ITSELF_MESSAGE]}
    return {}


# The sources whose claims read as a source's (a claim's origin): the source, and those relaying
# it, up their `cites` chains; from the source (`%s`) and, with `{through}`, only through those
# readers without Confidential access may see (their chains end before a confidential source).
_SOURCE_AND_RELAYS = f"""
    WITH RECURSIVE relays (id) AS (
        SELECT %s::bigint
        UNION
        SELECT relay.id FROM {Source._meta.db_table} AS relay JOIN relays ON relay.cites_id = relays.id {{through}}
    ) SELECT id FROM relays"""


def _incidents_show_source_changed(source: Source, stored: Source, user) -> None:
    """A new version of every incident whose claims show what changed of `source`: its title (the
    claims' `source_title`, the CSV's `sources`), its confidentiality (writers without Confidential
    access now see its claims, or no longer do) or, with either, what it cites (the incidents'
    independent origins, those of claims of sources relaying it too). An incremental sync reads them
    again, so that a partner's copy does not keep an old title or count for good, and a write based
    on what a writer read before meets a version conflict, rather than delete a claim it never
    showed them (an edit replaces the claims its writer sees).

    Readers without Confidential access are told it where they see a claim so shown: not
    confidential, of the source while it is public before or after, or of a relay reaching it
    through public sources. Only before the source's UPDATE, in the same transaction, which makes
    the incidents' export rows again (`incident_export_sources_changed`, the same incidents). The
    claims stay as they are until the commit: `source` is locked, which a new claim of it waits for."""
    cites_changed = source.cites_id != stored.cites_id
    in_chains = cites_changed or source.confidential != stored.confidential
    if not in_chains and source.title == stored.title:
        return
    claims = Claim._meta.db_table
    itself = "SELECT %s"
    public_relays = _SOURCE_AND_RELAYS.format(through="WHERE NOT relay.confidential")
    # A new chain for every reader (what it cites); for readers without Confidential access alone, the
    # relays whose chains they read up to it (its confidentiality: for the others, no origin moves).
    sources = _SOURCE_AND_RELAYS.format(through="") if cites_changed else public_relays if in_chains else itself
    # What readers without Confidential access see change: nothing of a source confidential before
    # and after; their chains through it, when it is made public or confidential or, public, cites
    # another source as they read `cites` (a public source given a confidential source to cite, or
    # one for another, ends their chain where it ended, and its own version does not move for them,
    # `record_disclosed_keep`); else its claims' title, if renamed.
    if source.confidential and stored.confidential:
        seen_sources = None
    elif source.confidential != stored.confidential or _disclosed_cites_changed(source, stored):
        seen_sources = public_relays
    elif source.title != stored.title:
        seen_sources = itself
    else:
        seen_sources = None
    seen_where = "false" if seen_sources is None else f"source_id IN ({seen_sources})"
    _incidents_new_version(
        user,
        f"SELECT incident_id FROM {claims} WHERE source_id IN ({sources})",
        [source.pk],
        seen=f"SELECT incident_id FROM {claims} WHERE NOT confidential AND {seen_where}",
        seen_params=[] if seen_sources is None else [source.pk],
    )


def _disclosed_cites_changed(source: Source, stored: Source) -> bool:
    """Whether what `source` cites as readers without Confidential access read it (none for a
    confidential source: SQL `disclosed_source_id`, migration 0096) differs from what `stored` cites
    so. One query when what it cites changed, none otherwise."""
    if source.cites_id == stored.cites_id:
        return False
    # Two different ids read alike only as none: each is none or a confidential source.
    cited = {source.cites_id, stored.cites_id} - {None}
    hidden = Source.objects.filter(pk__in=cited, confidential=True).values_list("pk", flat=True)
    return bool(cited - set(hidden))


def _incidents_show_organization_renamed(organization: Organization, user) -> None:
    """A new version of every incident `organization` is involved in, which shows its name (the
    API's `organization_name`, the CSV's `perpetrators`), so that an incremental sync reads them
    again and a partner's copy does not keep the old name for good. Before the organization's
    UPDATE, which makes the export rows of those it perpetrated again
    (`incident_export_organizations_changed`); the others' are made here."""
    involvements = Involvement._meta.db_table
    now = timezone.now()
    incident_ids = _incidents_new_version(
        user, f"SELECT incident_id FROM {involvements} WHERE organization_id = %s", [organization.pk], at=now
    )
    # The others' rows hold no cell of its name: their version cells alone, where making the rows
    # again took 8 of 45 s for 130,000 incidents at 200,000 (bench/README.md). Each as the incident
    # holds it: an audience it is hidden from keeps its version and change time (migration 0110),
    # which the rename's time written into every change-time cell contradicted.
    version_cells = ", ".join(
        f"{prefix}version = incident.{prefix}version, "
        f"{prefix}updated_at = {KEPT_TIME_SQL.format(f'incident.{prefix}updated_at')}"
        for prefix in ("", "disclosed_", "public_")
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {IncidentExportRow._meta.db_table} AS export_row SET {version_cells}"
            f" FROM {Incident._meta.db_table} AS incident"
            " WHERE incident.id = export_row.incident_id AND incident.id = ANY (%s) AND NOT EXISTS ("
            f" SELECT FROM {involvements} AS involvement WHERE involvement.incident_id = incident.id"
            " AND involvement.organization_id = %s AND involvement.role = %s)",
            [incident_ids, organization.pk, InvolvementRole.PERPETRATOR],
        )


def shown_to_the_public(incident: Incident) -> bool:
    """Whether the public (a reader who may not see unpublished records) may see `incident`, merges
    aside."""
    return incident.review_state == ReviewState.PUBLISHED and not incident.confidential


def new_version_of(records: models.QuerySet, *, told: VersionFields = THE_PUBLIC) -> None:
    """A new version of each of `records` (sources or responses: `models.PublicVersions`), in one
    UPDATE, for a change of what they show of a record they link to, which readers with
    Confidential access and every narrower audience down to `told` are told (`querysets.AUDIENCES`:
    everyone by default; `EVERY_CHANGE`, those readers alone). The change time given to an
    audience's `*_updated_at` is what tells the row's trigger to count it (migrations 0096, 0098).
    Each record's history tells of it."""
    now = timezone.now()
    records.update(version=models.F("version") + 1, updated_at=now, **dict.fromkeys(_change_times_told(told), now))


def _links_shown_changed(linked: Source | Incident, *, told: VersionFields = THE_PUBLIC) -> None:
    """A new version, which readers down to `told` (`new_version_of`) are told, of each source
    citing `linked` and each response giving it as its source or about it, whose confidentiality is
    changing (or, an incident, whether it is published): readers without Confidential access now
    see the link, or no longer do (it reads as none), and so does the public (a response's links to
    published incidents alone). A partner's copy is then read again, and a stale edit of theirs
    meets a version conflict: without it, a writer who was shown no link, and sends that back once
    the linked record is public, removed a link they never saw."""
    if isinstance(linked, Source):
        new_version_of(Source.objects.filter(cites=linked), told=told)
        new_version_of(Response.objects.filter(source=linked), told=told)
    else:
        new_version_of(Response.objects.filter(incidents=linked), told=told)


LAST_INCIDENT_SEEN_MESSAGE = (
    "A response stays about at least one incident you may see: link the incident it is about before "
    "removing the last one."
)


def _last_incident_seen_errors(user, response: Response, linked: list[Incident]) -> dict[str, list[str]]:
    """A change may not leave a response that is about an incident `user` may see about none they
    may see. Left about none, it stayed in their sight ("linked to no incident yet"); left about an
    incident hidden from them, it left it (404, and out of their list): reading it again told them
    whether it is about a confidential incident too. Refused alike, whatever is hidden. One query,
    none when a link is left."""
    if linked:
        return {}
    seen = Incident.objects.visible_to(user).filter(responses=response)
    return {"incidents": [LAST_INCIDENT_SEEN_MESSAGE]} if seen.exists() else {}


def _hidden(records: models.QuerySet, user) -> list[models.Model]:
    if not hasattr(records, "visible_to"):
        return []
    return list(records.exclude(pk__in=records.visible_to(user).values("pk")))


def _keep_hidden_links(user, record: models.Model, stored: models.Model) -> None:
    """Put back a link to a record hidden from `user` that the write would clear: the user was
    shown no link, and sending that back must not erase it."""
    for field in record._meta.concrete_fields:
        if not field.many_to_one or getattr(record, field.attname) is not None:
            continue
        stored_id = getattr(stored, field.attname)
        if stored_id is not None and _hidden(field.related_model._default_manager.filter(pk=stored_id), user):
            setattr(record, field.attname, stored_id)


def _keep_staff_only_values(user, record: models.Model, stored: models.Model | None, sent: Mapping[str, Any]) -> None:
    """A staff-only field (`STAFF_ONLY_FIELDS`: a source's internal notes) left null keeps its value
    as stored (a new record: the default). A writer who is not staff is shown null, and sending back
    what they read must neither erase the notes they never saw nor fail: the column holds no null.
    Such a writer changes them in no other way either: a blank (null as many clients send it back)
    keeps them too, and any text they send (`sent`: what the write gives, not what the record holds)
    is refused whatever is stored, since a write refused or accepted by what the notes say would let
    them be guessed. A partner's "" erased them before, and its text replaced them, answered with
    null as if nothing had happened."""
    shown = can_see_unpublished(user)
    for name in STAFF_ONLY_FIELDS.get(record._meta.model_name, ()):
        if not shown and sent.get(name) not in (None, ""):
            raise ValidationError({name: [f"Only staff write a {record._meta.verbose_name}'s {name}: send null."]})
        if not shown or getattr(record, name) is None:
            kept = record._meta.get_field(name).get_default() if stored is None else getattr(stored, name)
            setattr(record, name, kept)


@dataclass(frozen=True)
class ValidatedIncidents:
    """New incidents, with their places, claims and involvements, that passed incidents_bulk_validate:
    what incidents_bulk_create writes without checking them again."""

    incidents: list[Incident]
    children: dict[type[models.Model], "_ChildRows"]


def incidents_bulk_validate(*, user, incidents: Iterable[Mapping[str, Any]]) -> ValidatedIncidents:
    """Check new incidents, each a mapping like incident_create's arguments (`data`, and optionally
    `places`, `claims`, `involvements`), with the model's rules (fields and `clean()`) on every
    incident and child, and `user`'s rights as incident_create checks them (the review state and
    verification it may set, what it may mark confidential, the sources it may cite); runs no query.
    Raises ValidationError listing every problem, keyed `incidents[index].field`, or returns them
    ready for incidents_bulk_create.

    Related records may still be unsaved (an import creates the names it does not know only once it
    writes, after checking every row); they must be saved before the result is written."""
    validated = ValidatedIncidents(
        incidents=[], children={model: _ChildRows(model) for model in (IncidentPlace, Claim, Involvement)}
    )
    fields = _FieldValues(Incident)
    errors = {}
    for index, item in enumerate(incidents):
        incident = Incident(**item["data"])
        validated.incidents.append(incident)
        problems = [fields.validation_errors(incident), _creation_rule_errors(user, item)]
        for model, rows in (
            (IncidentPlace, ({"place": place} for place in item.get("places", ()))),
            (Claim, item.get("claims", ())),
            (Involvement, item.get("involvements", ())),
        ):
            problems.extend(validated.children[model].add(index, row) for row in rows)
        for problem in problems:
            for field, messages in problem.items():
                errors.setdefault(f"incidents[{index}].{field}", []).extend(messages)
    if errors:
        raise ValidationError(errors)
    return validated


def _creation_rule_errors(user, item: Mapping[str, Any]) -> dict[str, list[str]]:
    """incident_create's checks of `user`'s rights, for a new incident given as a mapping, without
    a query (the sources are the records themselves)."""
    data = item["data"]
    errors = workflow_errors(user=user, incident=None, data=data)
    errors.update(
        confidentiality_errors(
            user, was_confidential=False, confidential=data.get("confidential", False), field="confidential"
        )
    )
    for index, claim in enumerate(item.get("claims", ())):
        source = claim.get("source")
        if isinstance(source, Source) and source.confidential and not can_see_confidential(user):
            errors[f"claims[{index}].source"] = [f"No source {source.pk}."]
        errors.update(
            confidentiality_errors(
                user,
                was_confidential=False,
                confidential=claim.get("confidential", False),
                field=f"claims[{index}].confidential",
            )
        )
    return errors


# Memory for each sort or hash of an import's statements (a transaction-local setting; the demo
# generator sets its own). The server's default is 4 MB; at 64 MB the count of 100,000 new incidents
# into the totals took 18-29% less CPU within the import, and 256 MB did no better (bench/README.md,
# "The import's own costs, less").
IMPORT_WORK_MEM = "64MB"


def incidents_bulk_create(*, user, incidents: ValidatedIncidents | Iterable[Mapping[str, Any]]) -> list[Incident]:
    """Create many incidents, all or nothing, with one COPY per table: what incidents_bulk_validate
    returned, or mappings, which it checks first (raising its ValidationError). Returns the
    incidents with their new primary keys.

    For imports: incident_create costs dozens of queries per incident (constraint checks, savepoints),
    too slow for a hundred thousand rows. The model's rules were checked by incidents_bulk_validate,
    the database's constraints and foreign keys back up the rest, and history rows name `user`, as
    the triggers' would. An import validates its rows once, for its report, and writes that result."""
    _require_permission(user, "incidents.add_incident", "add incidents")
    if not isinstance(incidents, ValidatedIncidents):
        incidents = incidents_bulk_validate(user=user, incidents=incidents)
    if not incidents.incidents:
        return []
    user_id = _acting_user_id(user)

    def incident_rows(incident_ids: list[int]) -> Iterator[tuple]:
        fields = _insert_fields(Incident)
        for incident, incident_id in zip(incidents.incidents, incident_ids, strict=True):
            _take_saved_relations(incident)
            incident.id = incident_id
            incident.created_by_id = incident.updated_by_id = user_id
            yield (incident_id, *_db_values(incident, fields))

    with transaction.atomic(), pghistory.context(user=user_id), connection.cursor() as cursor:
        # Django's foreign keys are checked at commit; hundreds of thousands of queued checks make
        # the rest of the transaction slower and slower. Checking them as each table is written
        # keeps the cost linear; Django's default comes back afterwards. The statistics' totals
        # still count the new incidents at commit, once every table is written (migration 0011).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE; SET CONSTRAINTS incident_rollup_count DEFERRED")
        # For the rest of this transaction, up to its commit, where the totals count the new
        # incidents: their cells are grouped by sorting hundreds of thousands of rows, on disk at
        # the default 4 MB (100,000 rows: 105 MB of temporary files).
        cursor.execute(f"SET LOCAL work_mem = '{IMPORT_WORK_MEM}'")
        # The history of these rows is written below, in one statement per table. On an error, the
        # rollback of this atomic block turns the triggers back on with everything else.
        set_insert_triggers(enabled=False)
        # The incidents' primary keys up front, so their children's rows can name them. nextval()
        # is safe beside concurrent writers (the ids need not be consecutive).
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [Incident._meta.db_table, len(incidents.incidents)],
        )
        incident_ids = [incident_id for (incident_id,) in cursor.fetchall()]
        # PostgreSQL stores each incident while the next one's values are prepared.
        _copy(cursor, Incident, [Incident._meta.pk, *_insert_fields(Incident)], incident_rows(incident_ids))
        for model, rows in incidents.children.items():
            _copy(cursor, model, [model._meta.get_field("incident"), *rows.fields], rows.db_rows(incident_ids))
        # What they link to held still until the commit: the work of the lock_source, lock_type,
        # lock_place, lock_organization and lock_publisher triggers, which are off with the insert
        # triggers, done once for every link (migrations 0050, 0077). The sources (and those up
        # their `cites`) first, so that the publishers locked next are those the sources keep.
        ids = id_array(incident_ids)
        cursor.execute("SELECT incident_sources_lock(%s::bigint[])", [ids])
        cursor.execute("SELECT incident_links_lock(%s::bigint[])", [ids])
        child_tables = dict.fromkeys(incidents.children, "incident_id")
        record_events({Incident: "id", **child_tables}, ids, label="insert")
        # Their search words and CSV export rows once, now that every table is written: the insert
        # triggers that keep them are off with the history's (migrations 0028, 0034), where each
        # COPY above would have computed them again from the tables written so far.
        cursor.execute("SELECT incident_search_refresh(%s::bigint[])", [ids])
        cursor.execute("SELECT incident_export_refresh(%s::bigint[])", [ids])
        # Noted once for the statistics' count at commit: the insert triggers that note them are
        # off too (migration 0044), where the links' and involvements' COPYs noted them again.
        cursor.execute("SELECT incident_rollup_mark(%s::bigint[])", [ids])
        duplicates.rescore_after_commit(incident_ids)
        set_insert_triggers(enabled=True)
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    for incident in incidents.incidents:
        incident._state.adding = False
        incident._state.db = connection.alias
    return incidents.incidents


@functools.cache
def _relation_names(model: type[models.Model]) -> list[str]:
    return [field.name for field in model._meta.fields if field.is_relation]


def validation_errors(instance: models.Model) -> dict[str, list[str]]:
    """The model's own rules (its fields and `clean()`) on a record about to be written, as
    {field: messages}, every problem at once. Relations are not looked up one by one, nor unique
    values and other constraints: the database's foreign keys and constraints hold those."""
    try:
        instance.full_clean(exclude=_relation_names(type(instance)), validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        return error.message_dict
    return {}


class _FieldValues:
    """`validation_errors` of many new records of one model, each field's value checked once: the
    incidents of an import share most of their values (a type, dates, a precision, a review state),
    and checking every field of every incident was a third of checking a file of 100,000 rows.

    What Model.full_clean() does for `validation_errors`: each field but the relations cleaned as
    clean_fields() cleans it (a text put in normal form first, as TextInNormalForm does; the cleaned
    value set, or its errors kept), then the model's clean().
    A field's cleaning of a value of an immutable type is kept and reused for the same value, if the
    field is of a type whose cleaning reads only the value (`_CLEANED_BY_VALUE`); any other field,
    or value, is cleaned every time. The model's clean() (rules across fields) runs on every record."""

    def __init__(self, model: type[models.Model]):
        relations = set(_relation_names(model))
        self.fields = [field for field in model._meta.fields if field.name not in relations and not field.generated]
        # (field, the value's type, the value) -> (the cleaned value, or the field's errors)
        self.cleaned: dict[tuple, tuple[Any, list[ValidationError] | None]] = {}

    def validation_errors(self, instance: models.Model) -> dict[str, list[str]]:
        errors = {}
        for field in self.fields:
            raw_value = getattr(instance, field.attname)
            # As clean_fields(): an empty value of a field that may be blank, or the database's
            # default, is not checked.
            if (field.blank and raw_value in field.empty_values) or isinstance(raw_value, DatabaseDefault):
                continue
            if type(field) in _CLEANED_BY_VALUE and isinstance(raw_value, _IMMUTABLE_VALUES):
                key = (field, type(raw_value), raw_value)
                if key not in self.cleaned:
                    self.cleaned[key] = self._clean(field, raw_value, instance)
                value, field_errors = self.cleaned[key]
            else:
                value, field_errors = self._clean(field, raw_value, instance)
            if field_errors is None:
                setattr(instance, field.attname, value)
            else:
                errors[field.name] = list(field_errors)  # a list of this record's own: clean() may add to it
        try:
            instance.clean()
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        return ValidationError(errors).message_dict if errors else {}

    @staticmethod
    def _clean(field: models.Field, raw_value, instance: models.Model) -> tuple[Any, list[ValidationError] | None]:
        if isinstance(instance, TextInNormalForm) and field.editable:
            # A title pasted with a zero-width space at its end was imported with it, and one of such
            # characters alone as a blank title. Here, so that a value repeated (a type, a state) is
            # put in normal form once, with its cleaning.
            raw_value = normal_value(field, raw_value)
        try:
            return field.clean(raw_value, instance), None
        except ValidationError as error:
            return None, error.error_list


# Field types whose clean() reads the value alone (to_python(), their validators, choices, blank and
# null), never the record it belongs to. Exact types: a subclass may read more.
_CLEANED_BY_VALUE = frozenset(
    {
        models.BigAutoField,
        models.BooleanField,
        models.CharField,
        models.DateField,
        models.DateTimeField,
        models.IntegerField,
        models.PositiveIntegerField,
        models.TextField,
    }
)
# Values of these types (and theirs: a choice's enum member is a str) cannot change once cleaned;
# the key holds the value's own type, so that 1 and True, or a date and a datetime, are not one.
_IMMUTABLE_VALUES = (str, int, date)


def _take_saved_relations(instance: models.Model) -> None:
    """Give `instance` the ids of related records that were unsaved when it was built and have been
    saved since (incidents_bulk_validate allows it), as Model.save() and bulk_create() do; a
    related record still unsaved raises ValueError."""
    instance._prepare_related_fields_for_save(operation_name="incidents_bulk_create")


@functools.cache
def _insert_fields(model: type[models.Model], without: str | None = None) -> list[models.Field]:
    """The columns a new row of `model` is written with: all but its primary key, the generated
    columns (which compute themselves) and `without`."""
    return [
        field
        for field in model._meta.concrete_fields
        if not field.primary_key and not field.generated and field.name != without
    ]


# Field types whose validated value (full_clean() leaves a str, int, bool, date, or a foreign key's
# id) is written as it is. get_db_prep_save() would only convert it again: measured, 2-3 µs a
# value, 40 µs an incident. Exact types, since subclasses (CountryField is a CharField) may convert.
_WRITTEN_AS_VALIDATED = frozenset(
    {
        models.BooleanField,
        models.CharField,
        models.DateField,
        models.ForeignKey,
        models.IntegerField,
        models.PositiveIntegerField,
        models.TextField,
    }
)


@functools.cache
def _needs_db_prep(field: models.Field) -> bool:
    auto = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    return auto or type(field) not in _WRITTEN_AS_VALIDATED


def _db_values(instance: models.Model, fields: list[models.Field]) -> Iterator[Any]:
    """The values `fields` of the new, validated `instance` are stored as, the way Model.save()
    prepares them (pre_save() fills auto_now timestamps)."""
    return (
        field.get_db_prep_save(field.pre_save(instance, True), connection)
        if _needs_db_prep(field)
        else getattr(instance, field.attname)
        for field in fields
    )


class _ChildRows:
    """One model's rows for incidents_bulk_create: a claim, place or involvement per incident.

    A child's rules read only its own values (Claim.clean() compares its own counts and dates), so
    the children of different incidents with the same values (the same source named on a thousand
    rows) are validated, and their columns prepared, once. The instance is built without its
    incident: a rule that read the incident would fail loudly here, not be skipped."""

    def __init__(self, model: type[models.Model]):
        self.model = model
        self.fields = _insert_fields(model, without="incident")
        self.distinct: list[models.Model] = []
        self.by_values: dict[tuple, tuple[int, dict[str, list[str]]]] = {}  # -> (index in distinct, errors)
        self.rows: list[tuple[int, int]] = []  # (incident index, index in distinct)

    def add(self, incident_index: int, values: Mapping[str, Any]) -> dict[str, list[str]]:
        """Validate and keep one child of the incident at `incident_index`; returns its errors."""
        # Records are told apart by identity: cheaper than hashing their primary keys, and possible
        # for unsaved ones. The instance built below holds them, so an id is never reused meanwhile.
        key = tuple(
            (name, id(value) if isinstance(value, models.Model) else value) for name, value in sorted(values.items())
        )
        if key not in self.by_values:
            instance = self.model(**values)
            self.by_values[key] = (len(self.distinct), validation_errors(instance))
            self.distinct.append(instance)
        child, errors = self.by_values[key]
        self.rows.append((incident_index, child))
        return errors

    def db_rows(self, incident_ids: list[int]) -> Iterator[tuple]:
        """The rows to write, their incident first. Their columns are prepared now, when the records
        they name have all been saved."""
        columns = []
        for instance in self.distinct:
            _take_saved_relations(instance)
            columns.append(tuple(_db_values(instance, self.fields)))
        return ((incident_ids[incident], *columns[child]) for incident, child in self.rows)


def _copy(cursor, model: type[models.Model], fields: list[models.Field], rows: Iterable[tuple]) -> None:
    """Write `rows` (values for `fields`, in that order) into `model`'s table with COPY.

    Django has no COPY: bulk_create builds an INSERT from every value through the ORM's compiler,
    which made Python, not PostgreSQL, most of an import's time. COPY runs every constraint, foreign
    key and trigger like an INSERT does, and the server stores rows while the next ones are prepared."""
    statement = sql.SQL("COPY {table} ({columns}) FROM STDIN").format(
        table=sql.Identifier(model._meta.db_table),
        columns=sql.SQL(", ").join(sql.Identifier(field.column) for field in fields),
    )
    # Django wraps the errors of execute() and fetch*() only: a COPY's (a deadlock, a foreign key
    # whose record was deleted meanwhile) came out as psycopg's own, which no door answers (the
    # import's write conflict and changed-data errors, the 409 of tracker.write_conflicts) expects.
    with connection.wrap_database_errors, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def id_array(ids: Iterable[int]) -> str:
    """`ids` as PostgreSQL writes an array of them, for a parameter cast to `bigint[]`: a bulk write
    names its 100,000 incidents in nine statements, and psycopg wrote a list of them out anew for
    each (0.1-0.3 s each, in Python)."""
    return "{" + ",".join(map(str, map(int, ids))) + "}"


def record_events(
    tables: Mapping[type[models.Model], str],
    incident_ids: list[int] | str,
    *,
    label: str,
    dated_by: str | None = None,
) -> None:
    """Write the history rows that pghistory's `label` ("insert" or "update") triggers would have
    written for the rows of each model in `tables` whose column `tables[model]` is one of
    `incident_ids` (or their `id_array`), one statement per model; dated by the transaction's time,
    or by the rows' own column `dated_by` (synthetic rows, which say when they were written:
    `demo_data`).

    The triggers run a PL/pgSQL function with two subtransactions for every row: measured, they were
    about half of an import's time (100,000 rows into 1M incidents: 173 s with them, 97 s without).
    The rows written here are the same: a snapshot of the stored row (`INSERT … SELECT`, so defaults
    and generated columns are as stored), the label, the transaction's time and the current
    pghistory context, which names the user."""
    ids = incident_ids if isinstance(incident_ids, str) else id_array(incident_ids)
    with connection.cursor() as cursor:
        # The same function the triggers call: it stores the current context and returns its id.
        cursor.execute("SELECT _pgh_attach_context()")
        context_id = cursor.fetchone()[0]
        for model, key in tables.items():
            [event_model] = event_models(tracks_model=model)
            # The history's plain copies of the incident's generated columns (public_id, date_label)
            # are read from the stored row like every other column (migration 0055).
            columns = [field.column for field in event_model._meta.concrete_fields if not field.name.startswith("pgh_")]
            statement = sql.SQL(
                "INSERT INTO {events} (pgh_created_at, pgh_label, pgh_obj_id, pgh_context_id, {columns}) "
                "SELECT {dated}, %s, id, %s, {columns} FROM {table} WHERE {key} = ANY(%s::bigint[])"
            ).format(
                dated=sql.SQL("NOW()") if dated_by is None else sql.Identifier(dated_by),
                events=sql.Identifier(event_model._meta.db_table),
                columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                table=sql.Identifier(model._meta.db_table),
                key=sql.Identifier(key),
            )
            cursor.execute(statement.as_string(connection.connection), [label, context_id, ids])


def _fields_set(record: models.Model, *, blanks: bool = False) -> dict[str, str]:
    """A child record's fields as its readers name them (its incident aside), those it leaves
    blank too when `blanks`."""
    fields = {}
    for field in type(record)._meta.concrete_fields:
        if not field.editable or field.name in {"id", "incident"}:
            continue
        # A link a row leaves unset (a claim's source, of a row naming a claim deleted since) is blank.
        value = getattr(record, field.attname)
        if field.is_relation and value is not None:
            value = getattr(record, field.name)
        if value in (None, "", False) and not blanks:
            continue
        fields[str(field.verbose_name)] = _readable(record, field, value)
    return fields


def _child_name(record: models.Model) -> str:
    """How the differences name a child record: a claim by its source, an involvement by its
    organization, a victim group by its description or, without one, as a victim group."""
    if isinstance(record, Claim):
        return record.source.label if record.source_id is not None else "A claim"
    if isinstance(record, Involvement):
        return str(record.organization) if record.organization_id is not None else "An involvement"
    return record.description or "Victim group"


def _described(record: models.Model) -> str:
    """A child record in words, with every field it sets, so no change hides in the diff."""
    naming = {Claim: "source", Involvement: "organization", VictimGroup: "description"}.get(type(record))
    naming = str(type(record)._meta.get_field(naming).verbose_name) if naming else None
    details = [f"{label} {value}" for label, value in _fields_set(record).items() if label != naming]
    return f"{_child_name(record)} ({', '.join(details)})" if details else _child_name(record)


def _readable(record: models.Model, field: models.Field, value) -> str:
    if value is None or value == "":
        return "—"
    if field.choices:
        return str(dict(field.flatchoices).get(value, value))
    # By its publisher and date too: a claim moved to Amnesty's "Annual report 2023" from HRW's read
    # "Nothing: the incident already holds these values".
    return value.label if isinstance(value, Source) else str(value)
