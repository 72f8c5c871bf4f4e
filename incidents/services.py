"""Writes that carry rules. Every door (admin, API, import, commands) writes incidents through here.

Each write validates with the model's own rules (`full_clean()`, backed by database constraints),
checks the version the writer started from against the stored one (so a stale edit never overwrites
a newer one), records who did it, and runs in one transaction: it all lands or none of it does.
History rows are written by database triggers (pghistory); the context set here names the user.
"""

import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pghistory
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, models, transaction
from pghistory.core import event_models
from psycopg import sql

from incidents.history import set_insert_triggers
from incidents.models import (
    Claim,
    Incident,
    IncidentPlace,
    Involvement,
    Place,
    ReviewState,
    Verification,
    VictimGroup,
)


class VersionConflict(Exception):
    """Someone saved the incident after the writer loaded it."""

    def __init__(self, *, current: Incident, expected_version: int):
        self.current = current
        self.expected_version = expected_version
        who = current.updated_by.get_username() if current.updated_by else "someone else"
        super().__init__(
            f"{current.public_id} was changed by {who} at {current.updated_at:%Y-%m-%d %H:%M} UTC "
            f"(now version {current.version}; you edited version {expected_version}). "
            "Your changes were not saved: reload it, then apply them again."
        )


def _acting_user_id(user) -> int | None:
    return user.pk if user is not None and user.is_authenticated else None


def _validate_children(
    incident: Incident,
    model: type[models.Model],
    rows: Iterable[Mapping[str, Any]],
    label: str,
    editable: models.QuerySet | None = None,
) -> list[models.Model]:
    """Build child rows and validate them all, collecting every error under `label[index].field`.

    A row with an id changes that stored row (one query loads them all), so the fields the row does
    not mention (such as created_at) keep their values; only rows in `editable` (default: all of
    the incident's) may be changed, so an id the writer may not see is refused like a foreign one."""
    rows = list(rows)
    ids = [row["id"] for row in rows if row.get("id")]
    editable = model.objects.all() if editable is None else editable
    stored = editable.filter(incident=incident, pk__in=ids).in_bulk() if ids and incident.pk else {}
    instances, errors = [], {}
    for index, row in enumerate(rows):
        fields = {key: value for key, value in row.items() if key != "id"}
        if not row.get("id"):
            instance = model(incident=incident, **fields)
        elif row["id"] in stored:
            instance = stored[row["id"]]
            for field, value in fields.items():
                setattr(instance, field, value)
        else:
            errors[f"{label}[{index}].id"] = [f"{incident.public_id} has no {model._meta.verbose_name} {row['id']}."]
            continue
        try:
            instance.full_clean(exclude=["incident"], validate_unique=False)
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                errors[f"{label}[{index}].{field}"] = messages
        instances.append(instance)
    if errors:
        raise ValidationError(errors)
    return instances


def _check_unique(instances: list[models.Model], key: tuple[str, ...], label: str, message: str) -> None:
    seen = {}
    for index, instance in enumerate(instances):
        value = tuple(getattr(instance, f"{field}_id", None) or getattr(instance, field) for field in key)
        if value in seen:
            raise ValidationError({f"{label}[{index}]": message})
        seen[value] = index


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
    for instance in instances:
        instance.incident = incident
        instance.save()


def _write_children(
    incident: Incident,
    *,
    user,
    places: Iterable[Place] | None,
    claims: Iterable[Mapping[str, Any]] | None,
    victim_groups: Iterable[Mapping[str, Any]] | None,
    involvements: Iterable[Mapping[str, Any]] | None,
) -> None:
    # A writer changes and deletes only the claims they may see; confidential ones stay as they are.
    visible_claims = Claim.objects.visible_to(user)
    if claims is not None:
        claim_rows = _validate_children(incident, Claim, claims, "claims", editable=visible_claims)
        _check_unique(claim_rows, ("source",), "claims", "Each source may make only one claim per incident.")
    if victim_groups is not None:
        victim_group_rows = _validate_children(incident, VictimGroup, victim_groups, "victim_groups")
    if involvements is not None:
        involvement_rows = _validate_children(incident, Involvement, involvements, "involvements")
        _check_unique(
            involvement_rows, ("organization", "role"), "involvements", "This organization already has this role."
        )
    if places is not None:
        incident.places.set(places)
    if claims is not None:
        _replace_children(incident, "claims", claim_rows, replaceable=visible_claims)
    if victim_groups is not None:
        _replace_children(incident, "victim_groups", victim_group_rows)
    if involvements is not None:
        _replace_children(incident, "involvements", involvement_rows)


def incident_create(
    *,
    user,
    data: Mapping[str, Any],
    places: Iterable[Place] = (),
    claims: Iterable[Mapping[str, Any]] = (),
    victim_groups: Iterable[Mapping[str, Any]] = (),
    involvements: Iterable[Mapping[str, Any]] = (),
) -> Incident:
    """Create an incident with its places, claims, victim groups and involvements, all or nothing."""
    incident = Incident(**data)
    incident.created_by_id = incident.updated_by_id = _acting_user_id(user)
    incident.full_clean()
    with transaction.atomic(), pghistory.context(user=_acting_user_id(user)):
        incident.save()
        _write_children(
            incident, user=user, places=places, claims=claims, victim_groups=victim_groups, involvements=involvements
        )
    return incident


def incident_update(
    *,
    incident: Incident,
    user,
    expected_version: int,
    data: Mapping[str, Any] | None = None,
    places: Iterable[Place] | None = None,
    claims: Iterable[Mapping[str, Any]] | None = None,
    victim_groups: Iterable[Mapping[str, Any]] | None = None,
    involvements: Iterable[Mapping[str, Any]] | None = None,
) -> Incident:
    """Apply `data` (and, where given, replace the nested collections) if nobody saved the incident
    since the writer loaded `expected_version`; otherwise raise VersionConflict and change nothing.

    Runs a `SELECT … FOR UPDATE`, so two writers of the same incident are serialised."""
    with transaction.atomic(), pghistory.context(user=_acting_user_id(user)):
        # Lock only the incident row: FOR UPDATE cannot lock the nullable side of the outer join to updated_by.
        current = Incident.objects.select_for_update(of=("self",)).select_related("updated_by").get(pk=incident.pk)
        if current.version != expected_version:
            raise VersionConflict(current=current, expected_version=expected_version)
        for field, value in (data or {}).items():
            setattr(incident, field, value)
        incident.version = current.version
        incident.updated_by_id = _acting_user_id(user)
        incident.full_clean()
        incident.save()
        _write_children(
            incident, user=user, places=places, claims=claims, victim_groups=victim_groups, involvements=involvements
        )
    return incident


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


def incident_transition(*, incident: Incident, action: str, user, expected_version: int | None = None) -> Incident:
    """Move an incident through review (submit, publish, return to draft), if the user's role allows
    it and the incident is in a state the action starts from."""
    try:
        sources, target, permission = WORKFLOW[action]
    except KeyError:
        raise ValidationError({"action": f"Unknown action {action!r}; choose one of {', '.join(WORKFLOW)}."}) from None
    if not user.has_perm(permission):
        raise PermissionDenied(f"You may not {action.replace('_', ' ')} incidents: your role lacks that permission.")
    if incident.review_state not in sources:
        raise ValidationError(
            {
                "review_state": f"{incident.public_id} is {incident.get_review_state_display().lower()}; "
                f"{action.replace('_', ' ')} applies only to {', '.join(sorted(sources))} incidents."
            }
        )
    return incident_update(
        incident=incident,
        user=user,
        expected_version=incident.version if expected_version is None else expected_version,
        data={"review_state": target},
    )


def incident_set_verification(
    *, incident: Incident, verification: str, user, expected_version: int | None = None
) -> Incident:
    """Change how well an incident is established; only reviewers (verify permission) may."""
    if not user.has_perm("incidents.verify_incident"):
        raise PermissionDenied("You may not change verification: your role lacks that permission.")
    if verification not in Verification.values:
        raise ValidationError({"verification": f"Unknown verification {verification!r}."})
    return incident_update(
        incident=incident,
        user=user,
        expected_version=incident.version if expected_version is None else expected_version,
        data={"verification": verification},
    )


def incident_check_permissions(*, user, incident: Incident | None, data: Mapping[str, Any]) -> None:
    """Publishing and verification are reviewers' decisions whatever door a write comes through.

    Raise PermissionDenied when `data` moves the review state (on creation: from draft) along a
    WORKFLOW step the user's role lacks, or changes the verification without the verify permission;
    ValidationError when the move is not a workflow step at all. Called before incident_create or
    incident_update by doors that accept a whole record (the API), which cannot name an action."""
    current_state = incident.review_state if incident else ReviewState.DRAFT
    target_state = data.get("review_state", current_state)
    if target_state != current_state:
        step = next(
            (
                (action, permission)
                for action, (sources, target, permission) in WORKFLOW.items()
                if target == target_state and current_state in sources
            ),
            None,
        )
        if step is None:
            raise ValidationError(
                {"review_state": f"An incident cannot go from {current_state} to {target_state} directly."}
            )
        action, permission = step
        if not user.has_perm(permission):
            raise PermissionDenied(
                f"You may not {action.replace('_', ' ')} incidents: your role lacks that permission."
            )
    current_verification = incident.verification if incident else Verification.ALLEGED
    if data.get("verification", current_verification) != current_verification and not user.has_perm(
        "incidents.verify_incident"
    ):
        raise PermissionDenied("You may not change verification: your role lacks that permission.")


def incident_delete(*, incident: Incident, user) -> None:
    """Delete an incident with its claims, victim groups, involvements and places; history keeps them."""
    with transaction.atomic(), pghistory.context(user=_acting_user_id(user)):
        incident.delete()


@dataclass(frozen=True)
class ValidatedIncidents:
    """New incidents, with their places, claims and involvements, that passed incidents_bulk_validate:
    what incidents_bulk_create writes without checking them again."""

    incidents: list[Incident]
    children: dict[type[models.Model], "_ChildRows"]


def incidents_bulk_validate(*, incidents: Iterable[Mapping[str, Any]]) -> ValidatedIncidents:
    """Check new incidents, each a mapping like incident_create's arguments (`data`, and optionally
    `places`, `claims`, `involvements`), with the model's rules (fields and `clean()`) on every
    incident and child; runs no query. Raises ValidationError listing every problem, keyed
    `incidents[index].field`, or returns them ready for incidents_bulk_create.

    Related records may still be unsaved (an import creates the names it does not know only once it
    writes, after checking every row); they must be saved before the result is written."""
    validated = ValidatedIncidents(
        incidents=[], children={model: _ChildRows(model) for model in (IncidentPlace, Claim, Involvement)}
    )
    errors = {}
    for index, item in enumerate(incidents):
        incident = Incident(**item["data"])
        validated.incidents.append(incident)
        problems = [validation_errors(incident)]
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


def incidents_bulk_create(*, user, incidents: ValidatedIncidents | Iterable[Mapping[str, Any]]) -> list[Incident]:
    """Create many incidents, all or nothing, with one COPY per table: what incidents_bulk_validate
    returned, or mappings, which it checks first (raising its ValidationError). Returns the
    incidents with their new primary keys.

    For imports: incident_create costs dozens of queries per incident (constraint checks, savepoints),
    too slow for a hundred thousand rows. The model's rules were checked by incidents_bulk_validate,
    the database's constraints and foreign keys back up the rest, and history rows name `user`, as
    the triggers' would. An import validates its rows once, for its report, and writes that result."""
    if not isinstance(incidents, ValidatedIncidents):
        incidents = incidents_bulk_validate(incidents=incidents)
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
        _record_inserts({Incident: "id", **dict.fromkeys(incidents.children, "incident_id")}, incident_ids)
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
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _record_inserts(tables: Mapping[type[models.Model], str], incident_ids: list[int]) -> None:
    """Write the history rows that pghistory's insert triggers would have written for the rows of
    each model in `tables` whose column `tables[model]` is one of `incident_ids`, one statement per
    model.

    The triggers run a PL/pgSQL function with two subtransactions for every row: measured, they were
    about half of an import's time (100,000 rows into 1M incidents: 173 s with them, 97 s without).
    The rows written here are the same: a snapshot of the stored row (`INSERT … SELECT`, so defaults
    and generated columns are as stored), label "insert", the transaction's time and the current
    pghistory context, which names the user."""
    with connection.cursor() as cursor:
        # The same function the triggers call: it stores the current context and returns its id.
        cursor.execute("SELECT _pgh_attach_context()")
        context_id = cursor.fetchone()[0]
        for model, key in tables.items():
            [event_model] = event_models(tracks_model=model)
            # Generated columns (public_id, date_label) compute themselves in the event table too.
            columns = [
                field.column
                for field in event_model._meta.concrete_fields
                if not field.name.startswith("pgh_") and not field.generated
            ]
            statement = sql.SQL(
                "INSERT INTO {events} (pgh_created_at, pgh_label, pgh_obj_id, pgh_context_id, {columns}) "
                "SELECT NOW(), 'insert', id, %s, {columns} FROM {table} WHERE {key} = ANY(%s)"
            ).format(
                events=sql.Identifier(event_model._meta.db_table),
                columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                table=sql.Identifier(model._meta.db_table),
                key=sql.Identifier(key),
            )
            cursor.execute(statement.as_string(connection.connection), [context_id, incident_ids])
