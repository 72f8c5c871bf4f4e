"""CSV in: the export's columns, validated row by row in full, then written all at once or not at all.

Reading never writes. Every problem in the file (encoding, size, malformed CSV, missing columns,
bad values, unknown names, stale versions, missing permissions) becomes a `RowError` naming the
line and the column, and the report lists them all. New incidents are checked by the service that
writes them (`services.incidents_bulk_validate`), once: a real import writes what the check
returned. Only a file without a single error is written, in one transaction, through
`services.incidents_bulk_create` / `incident_update` (the same validation, version check and audit
as every other door); an interruption rolls it all back.

Rows with a `public_id` update that incident, if its `version` is still the one in the file; rows
without one create an incident. Types, places, organizations and sources are found by name (or
slug, alternate names, aliases) and are never created unless the caller asks (`create_missing`).
"""

import csv
import gc
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any

import pghistory
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import Prefetch
from django.db.models.functions import Lower
from django.utils.text import slugify

from incidents.exports import COLUMNS, FORMULA_LIKE
from incidents.models import (
    Claim,
    Incident,
    IncidentType,
    InvolvementRole,
    Organization,
    Place,
    ReviewState,
    Source,
)
from incidents.services import (
    ValidatedIncidents,
    VersionConflict,
    incident_update,
    incidents_bulk_create,
    incidents_bulk_validate,
    may_publish,
    validation_errors,
    workflow_errors,
)

REQUIRED_COLUMNS = ("title", "type", "date_start", "date_end")
_KNOWN_COLUMNS = frozenset(COLUMNS)
# Computed by the export from other data; an import reads past them.
DERIVED_COLUMNS = frozenset({"date_label", "countries", "source_count", "claim_min", "claim_max", "updated_at"})
# Columns that hold an incident field under the same name.
FIELD_COLUMNS = (
    "title",
    "date_start",
    "date_end",
    "date_precision",
    "people_count",
    "people_count_min",
    "people_count_max",
    "count_qualifier",
    "verification",
    "review_state",
)
DATE_COLUMNS = frozenset({"date_start", "date_end"})
COUNT_COLUMNS = frozenset({"people_count", "people_count_min", "people_count_max"})
NAME_COLUMNS = ("places", "perpetrators", "sources")

# The export's formula pattern with at least one apostrophe in front: the cells it neutralised.
# What `create_missing` makes of an unknown name in each column: the model and the field it names.
MISSING_RECORD_FIELDS = {
    "type": (IncidentType, "name"),
    "places": (Place, "name"),
    "perpetrators": (Organization, "name"),
    "sources": (Source, "title"),
}

_NEUTRALISED_CELL = re.compile(FORMULA_LIKE.replace("'*", "'+", 1))
# How incidents_bulk_validate names a problem: the incident's index in the list, and the field.
_BULK_ERROR_KEY = re.compile(r"incidents\[(\d+)\]\.(.+)")


@dataclass(frozen=True)
class RowError:
    line: int  # 0 for the file as a whole
    column: str
    message: str

    def __str__(self):
        where = [f"line {self.line}"] if self.line else []
        where += [f"column {self.column}"] if self.column else []
        return f"{', '.join(where)}: {self.message}" if where else self.message


@dataclass
class PlannedRow:
    """One valid row: what it will create, or which incident it will update and how."""

    line: int
    title: str
    incident: Incident | None
    expected_version: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    names: dict[str, tuple[models.Model, ...] | None] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    """What a valid file writes: its rows, the incidents it creates (checked by the service that
    writes them), and the records `create_missing` makes for unknown names, not yet saved."""

    rows: list[PlannedRow]
    new_incidents: ValidatedIncidents | None
    missing_records: list[models.Model]


@dataclass
class ImportReport:
    file_name: str = ""
    errors: list[RowError] = field(default_factory=list)
    created: list[PlannedRow] = field(default_factory=list)
    updated: list[PlannedRow] = field(default_factory=list)
    # Changes to published incidents by someone who may not publish: pending revisions.
    proposed: list[PlannedRow] = field(default_factory=list)
    unchanged: list[PlannedRow] = field(default_factory=list)
    # Kind ("places", …) -> names that `create_missing` creates (or, in a dry run, would create).
    missing_created: dict[str, list[str]] = field(default_factory=dict)
    dry_run: bool = False

    def summary(self) -> str:
        if self.errors:
            return f"{len(self.errors)} error(s) in {self.file_name or 'the file'}; nothing was imported."
        verb = "would be" if self.dry_run else "were"
        parts = [
            f"{len(self.created)} incident(s) {verb} created",
            f"{len(self.updated)} updated",
            f"{len(self.unchanged)} unchanged",
        ]
        if self.proposed:
            parts.insert(2, f"{len(self.proposed)} proposed for review (published: a Reviewer accepts them)")
        for kind, names in self.missing_created.items():
            parts.append(f"{len(names)} {kind} {verb} created ({', '.join(names)})")
        return "; ".join(parts) + "."


class _InvalidFile(Exception):
    """A problem that stops reading the file (rows after it cannot be trusted)."""

    def __init__(self, error: RowError):
        self.error = error


class _RowNotWritten(Exception):
    """A service refused a row that passed validation (someone changed the data in between)."""

    def __init__(self, line: int):
        self.line = line


class _NameIndex:
    """Finds records by any of their names, case-insensitively; a name may match several."""

    def __init__(self, kind: str, records: Iterable[tuple[models.Model, Iterable[str]]]):
        self.kind = kind
        self.by_name: dict[str, list[models.Model]] = defaultdict(list)
        for record, names in records:
            for name in {name.casefold() for name in names if name}:
                self.by_name[name].append(record)

    def find(self, name: str) -> list[models.Model]:
        return self.by_name.get(name.casefold(), [])


@contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """Python's cycle collector, paused (process-wide) until the block ends. Each of its full passes
    walks every live object, and an import holds hundreds of thousands (rows, records, incidents
    waiting to be written): about a fifth of checking a file went there. None of them is in a cycle,
    so reference counting frees them all the same."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@_cycle_collection_paused()
def import_incidents_csv(
    file: IO[bytes], *, user, create_missing: bool = False, dry_run: bool = False, file_name: str = ""
) -> ImportReport:
    """Validate every row of the CSV in `file`; unless `dry_run` or any error, write them all in one
    transaction as `user`. Checking costs the same few queries whatever the file's length; writing,
    one COPY per table for the new incidents and incident_update's queries per changed incident."""
    report = ImportReport(file_name=file_name, dry_run=dry_run)
    if not (user.has_perm("incidents.add_incident") and user.has_perm("incidents.change_incident")):
        report.errors.append(
            RowError(0, "", "You may not import incidents: it needs permission to add and change incidents.")
        )
        return report
    try:
        header, rows = _read_rows(file)
    except _InvalidFile as invalid:
        report.errors.append(invalid.error)
        return report
    plan = _validate_rows(header, rows, user, create_missing, report)
    if report.errors or dry_run:
        return report
    try:
        _write(plan, user, report)
    except _InvalidFile as invalid:
        report.errors.append(invalid.error)
        report.created, report.updated, report.proposed, report.unchanged = [], [], [], []
    return report


def _read_rows(file: IO[bytes]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    limit = settings.IMPORT_MAX_BYTES
    content = file.read(limit + 1)
    if len(content) > limit:
        raise _InvalidFile(
            RowError(0, "", f"The file is larger than {limit:,} bytes, the import limit (TRACKER_IMPORT_MAX_BYTES).")
        )
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _InvalidFile(RowError(1, "", "The file is UTF-16; save it as UTF-8 (in Excel: 'CSV UTF-8')."))
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise _InvalidFile(
            RowError(
                line,
                "",
                f"The file is not UTF-8 (byte 0x{content[error.start]:02x} cannot be read); "
                "save it as UTF-8 (in Excel: 'CSV UTF-8').",
            )
        ) from None
    del content  # the text holds it now; a file at the size limit is 50 MB each
    max_rows = settings.IMPORT_MAX_ROWS
    reader = csv.reader(_lines(text), strict=True)
    rows = []
    line = 0  # the last line read; a record may span several
    try:
        header = [name.strip() for name in next(reader, [])]
        _check_header(header)
        line = reader.line_num
        for cells in reader:
            if cells:
                # Checking a file holds every row at once (all or nothing): the row count bounds its memory.
                if len(rows) == max_rows:
                    raise _InvalidFile(
                        RowError(
                            line + 1,
                            "",
                            f"The file has more than {max_rows:,} rows, the import limit (TRACKER_IMPORT_MAX_ROWS); "
                            "split it into several files.",
                        )
                    )
                rows.append((line + 1, cells))
            line = reader.line_num
    except csv.Error as error:
        raise _InvalidFile(RowError(line + 1, "", f"Malformed CSV: {error}.")) from None
    return header, rows


# A line and its end (\r\n, \r or \n), as a file opened with newline="" reads them for the csv module.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _lines(text: str) -> Iterator[str]:
    """The text's lines, one at a time: `io.StringIO(text)` copied the whole text again, at four
    bytes a character."""
    return (match.group() for match in _LINE.finditer(text))


def _check_header(header: list[str]) -> None:
    """Linear in the header's length: a header repeating `title` 100,000 times (600 KB) once took
    280 s, each name being counted across the whole header."""
    if not any(header):
        raise _InvalidFile(RowError(1, "", f"The file is empty; its first line must name the columns: {_known()}."))
    unknown = [name for name in header if name not in _KNOWN_COLUMNS]
    if unknown:
        raise _InvalidFile(RowError(1, unknown[0], f"Unknown column; the columns are {_known()}."))
    repeated = next(((name, count) for name, count in Counter(header).items() if count > 1), None)
    if repeated:
        name, count = repeated
        raise _InvalidFile(RowError(1, name, f"This column appears {count:,} times; give each column once."))
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise _InvalidFile(RowError(1, missing[0], "This required column is missing."))


def _known() -> str:
    return ", ".join(COLUMNS)


def _plain(cell: str) -> str:
    """The cell as typed, without the apostrophe the export adds before a formula-like value."""
    return cell[1:] if _NEUTRALISED_CELL.match(cell) else cell


def _split_names(cell: str) -> list[str]:
    return list(dict.fromkeys(name.strip() for name in _plain(cell).split(";") if name.strip()))


def _validate_rows(header, rows, user, create_missing, report) -> _Plan:
    records = [dict(zip(header, cells, strict=False)) for _, cells in rows]
    resolver = _NameResolver(_name_indexes(user, records), create_missing)
    existing = _existing_incidents(user, records)
    seen_ids = {}
    row_errors: list[list[RowError]] = []  # each row's, in the file's order
    checked: list[tuple[PlannedRow, list[RowError]]] = []  # rows whose values and names are valid
    for (line, cells), record in zip(rows, records, strict=True):
        errors: list[RowError] = []
        row_errors.append(errors)
        if len(cells) != len(header):
            errors.append(RowError(line, "", f"This row has {len(cells)} cells; the header has {len(header)}."))
            continue
        row = PlannedRow(line=line, title=_plain(record["title"]), incident=None)
        public_id = record.get("public_id", "").strip()
        if public_id:
            if public_id in seen_ids:
                errors.append(RowError(line, "public_id", f"{public_id} is also on line {seen_ids[public_id]}."))
            seen_ids[public_id] = line
            row.incident = existing.get(public_id)
            if row.incident is None:
                errors.append(
                    RowError(
                        line,
                        "public_id",
                        f"No incident {public_id} that you may see; leave public_id empty to create a new incident.",
                    )
                )
            else:
                errors.extend(_check_version(line, record, row.incident, row))
        data, value_errors = _parse_values(line, record)
        errors.extend(value_errors)
        names, name_errors = resolver.resolve(line, record)
        errors.extend(name_errors)
        if errors:
            continue
        row.data = {**data, "incident_type": names["type"][0]}
        row.names = {column: names.get(column) for column in NAME_COLUMNS}
        if row.incident is not None:
            candidate = Incident(**{**_current_values(row.incident), **row.data})
            errors.extend(_row_errors(line, validation_errors(candidate)))
        checked.append((row, errors))
    new_rows = [row for row, _ in checked if row.incident is None]
    new_incidents, new_incident_errors = _validate_new_incidents(new_rows, user)
    planned = []
    for row, errors in checked:
        errors.extend(new_incident_errors.get(row.line, ()))
        if row.incident is not None:  # new incidents: checked by incidents_bulk_validate
            errors.extend(_check_workflow(row.line, row.incident, row.data, user))
        if errors:
            continue
        if row.incident is not None:
            row.changes = _changes(row.incident, row)
        planned.append(row)
    report.errors.extend(error for errors in row_errors for error in errors)
    # Created in this order when the file is written.
    missing_records = {
        column: sorted(new_records.values(), key=lambda record, column=column: _record_name(column, record))
        for column, new_records in resolver.missing.items()
        if new_records
    }
    report.missing_created = {
        column: [_record_name(column, record) for record in new_records]
        for column, new_records in missing_records.items()
    }
    for row in planned:
        if row.incident is None:
            report.created.append(row)
        elif row.changes and row.incident.review_state == ReviewState.PUBLISHED and not may_publish(user):
            # incident_update keeps such a change as a revision for a Reviewer to accept.
            report.proposed.append(row)
        elif row.changes:
            report.updated.append(row)
        else:
            report.unchanged.append(row)
    return _Plan(
        rows=planned,
        new_incidents=new_incidents,
        missing_records=[record for new_records in missing_records.values() for record in new_records],
    )


def _row_errors(line: int, problems: dict[str, list[str]]) -> list[RowError]:
    """A model's {field: messages} as the row's errors, each field being the column of that name."""
    return [RowError(line, field_name, message) for field_name, messages in problems.items() for message in messages]


def _validate_new_incidents(
    rows: list[PlannedRow], user
) -> tuple[ValidatedIncidents | None, dict[int, list[RowError]]]:
    """The model's rules on the incidents `rows` create, checked by the service that writes them
    (once: what it returns is what _write hands back to it), its errors by line."""
    try:
        return incidents_bulk_validate(user=user, incidents=[_creation(row) for row in rows]), {}
    except ValidationError as invalid:
        problems: dict[int, dict[str, list[str]]] = defaultdict(dict)
        for key, messages in invalid.message_dict.items():
            index, field_name = _BULK_ERROR_KEY.fullmatch(key).groups()
            problems[rows[int(index)].line][field_name] = messages
        return None, {line: _row_errors(line, row_problems) for line, row_problems in problems.items()}


def _check_version(line: int, record: dict[str, str], incident: Incident, row: PlannedRow) -> list[RowError]:
    raw = record.get("version", "").strip()
    if not raw:
        return [RowError(line, "version", f"Needed to update {incident.public_id}: export it to get its version.")]
    if not raw.isdigit():
        return [RowError(line, "version", f"{raw!r} is not a version number.")]
    row.expected_version = int(raw)
    if row.expected_version != incident.version:
        return [
            RowError(
                line,
                "version",
                f"{incident.public_id} has changed since this file was exported (the file has version "
                f"{row.expected_version}, the database version {incident.version}); export it again and "
                "reapply your changes.",
            )
        ]
    return []


def _parse_values(line: int, record: dict[str, str]) -> tuple[dict[str, Any], list[RowError]]:
    data, errors = {}, []
    for column in FIELD_COLUMNS:
        if column not in record:
            continue
        raw = record[column]
        if column in DATE_COLUMNS:
            try:
                data[column] = date.fromisoformat(raw.strip())
            except ValueError:
                errors.append(RowError(line, column, f"{raw!r} is not a date; write it as YYYY-MM-DD."))
        elif column in COUNT_COLUMNS:
            value = raw.strip()
            if value and not value.isdigit():
                errors.append(RowError(line, column, f"{raw!r} is not a whole number of people."))
            else:
                data[column] = int(value) if value else None
        else:
            data[column] = _plain(raw) if column == "title" else raw.strip()
    return data, errors


def _name_indexes(user, records: list[dict[str, str]]) -> dict[str, _NameIndex]:
    """Everything the file's names could refer to, in one query per kind. Sources are looked up
    among those the user may see (a hidden source is as unknown as a missing one), and only by
    the titles the file uses, since there are many."""
    titles = {name.lower() for record in records for name in _split_names(record.get("sources", ""))}
    sources = Source.objects.visible_to(user).annotate(folded=Lower("title")).filter(folded__in=titles)
    return {
        "type": _NameIndex("type", ((kind, [kind.slug, kind.name]) for kind in IncidentType.objects.all())),
        "places": _NameIndex("place", ((place, [place.name, *place.alternate_names]) for place in Place.objects.all())),
        "perpetrators": _NameIndex(
            "organization",
            ((organization, [organization.name, *organization.aliases]) for organization in Organization.objects.all()),
        ),
        "sources": _NameIndex("source", ((source, [source.title]) for source in sources)),
    }


def _existing_incidents(user, records: list[dict[str, str]]) -> dict[str, Incident]:
    public_ids = {record.get("public_id", "").strip() for record in records} - {""}
    incidents = (
        Incident.objects.visible_to(user)
        .filter(public_id__in=public_ids)
        .select_related("incident_type")
        .prefetch_related(
            "places",
            "involvements__organization",
            "claims__source",
            Prefetch(
                "claims", queryset=Claim.objects.visible_to(user).select_related("source"), to_attr="visible_claims"
            ),
        )
    )
    return {incident.public_id: incident for incident in incidents}


class _NameResolver:
    """The records a row's name columns name, for one file. The same cells recur on many rows (the
    same places, perpetrators and sources), so each distinct cell is resolved once. With
    `create_missing`, an unknown name gets a new record, saved only if the file is written, instead
    of being an error."""

    def __init__(self, indexes: dict[str, _NameIndex], create_missing: bool):
        self.indexes = indexes
        self.create_missing = create_missing
        self.missing: dict[str, dict[str, models.Model]] = defaultdict(dict)  # column -> casefolded name -> record
        self.cells: dict[tuple[str, str], tuple[tuple[models.Model, ...], list[str]]] = {}

    def resolve(self, line: int, record: dict[str, str]) -> tuple[dict[str, tuple[models.Model, ...]], list[RowError]]:
        """The records of each name column in the row (absent columns are left out), and its errors."""
        resolved, errors = {}, []
        for column in ("type", *NAME_COLUMNS):
            if column not in record:
                continue
            key = (column, record[column])
            if key not in self.cells:
                self.cells[key] = self._resolve_cell(column, record[column])
            resolved[column], problems = self.cells[key]
            errors.extend(RowError(line, column, problem) for problem in problems)
        return resolved, errors

    def _resolve_cell(self, column: str, cell: str) -> tuple[tuple[models.Model, ...], list[str]]:
        index = self.indexes[column]
        names = [cell.strip()] if column == "type" else _split_names(cell)
        found, problems = [], []
        for name in names:
            matches = index.find(name)
            if len(matches) == 1:
                found.append(matches[0])
            elif matches:
                ids = ", ".join(str(match.pk) for match in matches)
                problems.append(f"{name!r} matches {len(matches)} {index.kind}s (ids {ids}).")
            elif not name:
                problems.append("This field cannot be blank.")
            elif self.create_missing and len(name) > _max_name_length(column):
                problems.append(f"{name!r} is too long for a new {index.kind}.")
            elif self.create_missing:
                # The first spelling in the file names the new record; later ones refer to it.
                if name.casefold() not in self.missing[column]:
                    self.missing[column][name.casefold()] = _new_record(column, name)
                found.append(self.missing[column][name.casefold()])
            else:
                problems.append(
                    f"Unknown {index.kind} {name!r}; add it first, or import with --create-missing "
                    "(in the admin: 'Create missing') to create it."
                )
        # Two spellings of one name are one record, the same object (each record is loaded, or made,
        # once): told apart by identity, which new records have before they have a primary key.
        return tuple({id(record): record for record in found}.values()), problems


def _max_name_length(column: str) -> int:
    model, name_field = MISSING_RECORD_FIELDS[column]
    return model._meta.get_field(name_field).max_length


def _new_record(column: str, name: str) -> models.Model:
    """The record `create_missing` makes for an unknown name in `column`, not saved yet."""
    model, name_field = MISSING_RECORD_FIELDS[column]
    fields = {name_field: name}
    if model is IncidentType:
        fields["slug"] = slugify(name, allow_unicode=True)[: model._meta.get_field("slug").max_length]
    return model(**fields)


def _record_name(column: str, record: models.Model) -> str:
    return getattr(record, MISSING_RECORD_FIELDS[column][1])


def _current_values(incident: Incident) -> dict[str, Any]:
    return {name: getattr(incident, name) for name in ("incident_type", *FIELD_COLUMNS)}


def _check_workflow(line, incident: Incident | None, data: dict[str, Any], user) -> list[RowError]:
    """The review states and verification the user's role allows, as the services check them."""
    return _row_errors(line, workflow_errors(user=user, incident=incident, data=data))


def _changes(incident: Incident, row: PlannedRow) -> list[str]:
    changes = [
        "type" if name == "incident_type" else name
        for name, value in row.data.items()
        if getattr(incident, name) != value
    ]
    current = {
        "places": set(incident.places.all()),
        "perpetrators": {
            involvement.organization
            for involvement in incident.involvements.all()
            if involvement.role == InvolvementRole.PERPETRATOR
        },
        "sources": {claim.source for claim in incident.visible_claims},
    }
    for column, records in row.names.items():
        # Compared by primary key: a record create_missing makes has none yet, and is a change.
        if records is not None and {record.pk for record in records} != {record.pk for record in current[column]}:
            changes.append(column)
    return changes


def _write(plan: _Plan, user, report: ImportReport) -> None:
    """Write every planned row in one transaction, as `user`; any failure undoes it all. New
    incidents go in bulk; updates one by one, each with its version check."""
    try:
        with transaction.atomic(), pghistory.context(user=user.pk, import_file=report.file_name or None):
            # Before the incidents that name them, which take their primary keys when written.
            for record in plan.missing_records:
                record.save(force_insert=True)
            incidents_bulk_create(user=user, incidents=plan.new_incidents)
            for row in plan.rows:
                if row.incident is not None and row.changes:
                    _update(row, user)
    except _RowNotWritten as failure:
        error = failure.__cause__
        message = "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        raise _InvalidFile(RowError(failure.line, "", message)) from None
    except IntegrityError as error:
        # Something the rows refer to was deleted or changed while the file was being written.
        raise _InvalidFile(
            RowError(0, "", f"The data changed during the import, which was undone; try again. ({error})")
        ) from None


def _creation(row: PlannedRow) -> dict[str, Any]:
    """The row as incidents_bulk_validate takes a new incident."""
    return {
        "data": row.data,
        "places": row.names["places"] or (),
        "claims": [{"source": source} for source in row.names["sources"] or ()],
        "involvements": [
            {"organization": organization, "role": InvolvementRole.PERPETRATOR}
            for organization in row.names["perpetrators"] or ()
        ],
    }


def _update(row: PlannedRow, user) -> None:
    try:
        incident_update(
            incident=row.incident,
            user=user,
            expected_version=row.expected_version,
            data=row.data,
            places=row.names["places"] if "places" in row.changes else None,
            claims=_claims_after(row.incident, row.names["sources"]) if "sources" in row.changes else None,
            involvements=_involvements_after(row.incident, row.names["perpetrators"])
            if "perpetrators" in row.changes
            else None,
        )
    except (ValidationError, VersionConflict) as error:
        raise _RowNotWritten(row.line) from error


def _claims_after(incident: Incident, sources: tuple[Source, ...]) -> list[dict[str, Any]]:
    """The user's visible claims once the row's sources apply: a listed source keeps its claim (with
    its figures and excerpt), a new one gets a bare claim, a visible claim whose source is no longer
    listed goes. Claims the user may not see are left alone by incident_update itself; a source that
    already has such a claim gets no second one."""
    kept = [claim for claim in incident.visible_claims if claim.source in sources]
    fields = [field.attname for field in Claim._meta.concrete_fields if field.name != "incident"]
    claims = [{name: getattr(claim, name) for name in fields} for claim in kept]
    claimed = {claim.source for claim in incident.claims.all()}
    return claims + [{"source": source} for source in sources if source not in claimed]


def _involvements_after(incident: Incident, perpetrators: tuple[Organization, ...]) -> list[dict[str, Any]]:
    """The incident's involvements with the row's perpetrators: other roles stay as they are."""
    kept = [
        involvement
        for involvement in incident.involvements.all()
        if involvement.role != InvolvementRole.PERPETRATOR or involvement.organization in perpetrators
    ]
    involvements = [
        {"id": involvement.pk, "organization": involvement.organization, "role": involvement.role}
        for involvement in kept
    ]
    already = {involvement.organization for involvement in kept if involvement.role == InvolvementRole.PERPETRATOR}
    return involvements + [
        {"organization": organization, "role": InvolvementRole.PERPETRATOR}
        for organization in perpetrators
        if organization not in already
    ]
