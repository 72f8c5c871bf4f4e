"""CSV in: the export's columns, validated row by row in full, then written all at once or not at all.

Reading never writes. Every problem in the file (encoding, size, malformed CSV, missing columns,
bad values, unknown names, stale versions, missing permissions) becomes a `RowError` naming the
line and the column, and the report lists them all. New incidents are checked by the service that
writes them (`services.incidents_bulk_validate`), once: a real import writes what the check
returned. Only a file without a single error is written, in one transaction, through
`services.incidents_bulk_create` / `incident_update` (the same validation, version check and audit
as every other door); an interruption rolls it all back.

Rows with a `public_id` update that incident, if its `version` is still the one in the file; rows
without one create an incident. Multi-valued cells are read with the grammar the export writes
(`incidents.exports`): items separated by ";", a place as its path ("Vietnam > Lao Cai > Lao Cai", or
any shorter path ending at it, or one name if unambiguous), a source as its title and id
("Press release [#12]", or the title alone if unambiguous), any item in double quotes. Types,
places, organizations and sources are never created unless the caller asks (`create_missing`).

A blank cell means what an empty field of the admin's form means: no count, no places (or
perpetrators, or sources); for a field that cannot be empty (precision, qualifier, verification,
review state), its default on a new incident (for the qualifier, the one its figures say:
`models.count_qualifier_from_figures`) and its current value on an existing one.

New rows that may duplicate an incident (the admin's rule, `possible_duplicates_of`), or an earlier
new row of the file, are listed; a real import with any stops unless the caller skips or allows them.
"""

import csv
import enum
import functools
import gc
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from itertools import chain
from typing import IO, Any

import pghistory
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connection, models, transaction
from django.db.models import Prefetch, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower
from django.template.defaultfilters import pluralize
from django.utils import translation
from django.utils.text import slugify
from django_countries import countries
from ftfy.badness import is_bad
from psycopg.errors import UniqueViolation

from incidents.exports import (
    COLUMNS,
    CONFIDENTIAL_CLAIM_MARK,
    CONFIDENTIAL_SOURCE_MARK,
    FORMULA_LIKE,
    PAGE_URL_COLUMN,
    PLACE_PATH_SEPARATOR,
    csv_list_item,
    csv_source_item,
)
from incidents.models import (
    PLACE_TOO_DEEP_MESSAGE,
    TREE_LEVELS_MAX,
    Claim,
    Incident,
    IncidentType,
    InvolvementRole,
    Organization,
    Place,
    PlaceKind,
    ReviewState,
    Source,
    end_date_missing_message,
)
from incidents.numbers import GROUPED_DIGITS, is_whole_number
from incidents.querysets import (
    AUDIENCE_NAMES,
    AUDIENCES_BY_NAME,
    VERSIONS_TOLD_TO,
    DuplicateCandidate,
    VersionFields,
    audience_of,
    possible_duplicates_among,
    version_seen_by,
)
from incidents.services import (
    ValidatedIncidents,
    VersionConflict,
    comparable_titles,
    confidentiality_change_refusal,
    confidentiality_errors,
    incident_update,
    incidents_bulk_create,
    incidents_bulk_validate,
    may_publish,
    same_text,
    sources_titled_alike,
    validation_errors,
    wait_for_sources_alike,
    workflow_errors,
)
from incidents.text_fields import normal_text
from tracker.formats import not_a_day, written_as_a_date
from tracker.write_conflicts import is_write_conflict

REQUIRED_COLUMNS = ("title", "type", "date_start", "date_end")
# Computed by the export from other data; an import reads past them. The public pages' downloads
# add `page_url`, so that a file downloaded there imports back too.
DERIVED_COLUMNS = frozenset(
    {"date_label", "countries", "merged_into", "source_count", "claim_min", "claim_max", "updated_at", PAGE_URL_COLUMN}
)
_KNOWN_COLUMNS = frozenset(COLUMNS) | DERIVED_COLUMNS
# The cells a header is read to: one more than there are columns, and as many again for a
# spreadsheet's empty columns after the last (_read_rows): a longer header repeats or misnames one.
_MAX_HEADER_CELLS = 2 * len(_KNOWN_COLUMNS) + 1
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
    "confidential",
)
DATE_COLUMNS = frozenset({"date_start", "date_end"})
COUNT_COLUMNS = frozenset({"people_count", "people_count_min", "people_count_max"})
# Fields the admin's form cannot leave empty: a blank cell means the default, or the current value.
CHOICE_COLUMNS = frozenset({"date_precision", "count_qualifier", "verification", "review_state"})
# `true` or `false`, as the export writes them (in any case: a spreadsheet writes TRUE); blank, like a
# choice, means the default on a new incident and the current value on an existing one.
BOOLEAN_COLUMNS = {"confidential": {"true": True, "false": False}}
NAME_COLUMNS = ("places", "perpetrators", "sources")

# What `create_missing` makes of an unknown name in each column: the model and the field it names.
MISSING_RECORD_FIELDS = {
    "type": (IncidentType, "name"),
    "places": (Place, "name"),
    "perpetrators": (Organization, "name"),
    "sources": (Source, "title"),
}

# Names a file's place, perpetrator and source cells may hold, on average per row of the row limit:
# each costs memory while the file is checked (an error for an unknown one, about 300 bytes; an
# unsaved record with create_missing, about 1.9 KB), and a 50 MB file of ";"-separated names held
# six million (1.9 GB). An export's rows hold a few each.
NAMES_PER_ROW = 10

# The export's formula pattern with at least one apostrophe in front: the cells it neutralised.
_NEUTRALISED_CELL = re.compile(FORMULA_LIKE.replace("'*", "'+", 1))
IMPORT_MET_ANOTHER_WRITE_MESSAGE = (
    "The import met another change being saved at the same moment, and was undone: nothing of it was written. "
    "Import the file again."
)
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


class Duplicates(enum.StrEnum):
    """What a real import does with new rows that may duplicate an incident or an earlier row."""

    STOP = "stop"  # write nothing and list them, so the analyst decides
    SKIP = "skip"  # leave those rows out
    ALLOW = "allow"  # create them all the same


@dataclass
class PlannedRow:
    """One valid row: what it will create, or which incident it will update and how."""

    line: int
    title: str
    incident: Incident | None
    expected_version: int | None = None
    # Whose version `expected_version` is (the file's `version_audience`): None, the importer's own.
    versions_told: VersionFields | None = None
    data: dict[str, Any] = field(default_factory=dict)
    names: dict[str, tuple[models.Model, ...] | None] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    # A new row's possible duplicates: incidents it may repeat, and earlier new rows of the file.
    duplicate_incidents: list[Incident] = field(default_factory=list)
    duplicate_lines: list[int] = field(default_factory=list)
    # An update's claims whose sources the row does not list: the public ones it removes, with their
    # figures and excerpts, and the confidential ones, which stay (_claims_after).
    claims_removed: list[Claim] = field(default_factory=list)
    confidential_claims_kept: list[Claim] = field(default_factory=list)
    # The sources of the confidential claims the row adds (`[confidential claim]` where the incident
    # has no confidential claim of that source, or a new incident's), so that whoever imports reads,
    # before anything is written, which claims only readers with Confidential access will see.
    confidential_claims_added: list[Source] = field(default_factory=list)
    # The claims the `sources` cell lists: each source, and whether its claim is marked confidential
    # (`exports.CONFIDENTIAL_CLAIM_MARK`); a source listed both ways has a claim of each.
    claims: tuple[tuple[Source, bool], ...] = ()

    def claims_removed_text(self) -> str:
        removed = self.claims_removed
        return (
            f"{self.incident.public_id} removes its claim{pluralize(removed)} of {_sources_of(removed)}, which "
            f"the row no longer lists, with {pluralize(removed, 'its,their')} figures and excerpts (the "
            f"incident's history keeps {pluralize(removed, 'it,them')})."
        )

    def confidential_claims_kept_text(self) -> str:
        kept = self.confidential_claims_kept
        return (
            f"{self.incident.public_id} keeps its confidential claim{pluralize(kept)} of {_sources_of(kept)}, "
            "which the row does not list: an import removes no confidential claim (remove "
            f"{pluralize(kept, 'it,them')} in the admin or the API)."
        )

    def confidential_claims_added_text(self) -> str:
        added = self.confidential_claims_added
        # A source the import creates has no id yet: named as the list of records created names it.
        sources = "; ".join(
            csv_source_item(source.title, source.pk)
            if source.pk
            else str(_Item((source.title,), confidential=source.confidential))
            for source in added
        )
        incident = self.incident.public_id if self.incident else "The new incident"
        return (
            f"{incident} gets a confidential claim{pluralize(added)} of {sources}, which only readers with "
            "Confidential access will see."
        )

    def duplicates_text(self) -> str:
        incidents = [
            f"{incident.public_id} {incident.title} ({incident.date_label})" for incident in self.duplicate_incidents
        ]
        return "; ".join(incidents + [f"line {line}" for line in self.duplicate_lines])


@dataclass
class _Plan:
    """What a valid file writes: its rows, the incidents it creates (checked by the service that
    writes them), and the records `create_missing` makes for unknown names, not yet saved, as
    (column, record, how the report names it), in the order they are created."""

    rows: list[PlannedRow]
    new_incidents: ValidatedIncidents | None
    missing: list[tuple[str, models.Model, str]]

    def leave_out_records_no_row_names(self) -> None:
        """Only the new records the rows still name: those of rows left out (skipped duplicates)
        are not created."""
        named = {id(row.data.get("incident_type")) for row in self.rows}
        named.update(id(record) for row in self.rows for column in NAME_COLUMNS for record in row.names[column] or ())
        # And the new places those new places lie in, which no row need name.
        for _, record, _ in self.missing:
            if id(record) in named and isinstance(record, Place):
                while (record := record.parent) is not None and record.pk is None:
                    named.add(id(record))
        self.missing = [missing for missing in self.missing if id(missing[1]) in named]

    def first_line_naming(self, record: models.Model) -> int:
        """The line of the first row naming `record`, one of `missing`, or a new place inside it."""
        missing = {id(new_record) for _, new_record, _ in self.missing}
        for row in self.rows:
            named = [row.data.get("incident_type")]
            named += [named_record for column in NAME_COLUMNS for named_record in row.names[column] or ()]
            for named_record in named:
                # Up through the new places only, whose parents are held, not queried.
                while id(named_record) in missing:
                    if named_record is record:
                        return row.line
                    named_record = named_record.parent if isinstance(named_record, Place) else None
        return 0

    def missing_created(self) -> dict[str, list[str]]:
        """The report's list of the records created, by column."""
        created = defaultdict(list)
        for column, _, described in self.missing:
            created[column].append(described)
        return dict(created)


@dataclass
class ImportReport:
    file_name: str = ""
    errors: list[RowError] = field(default_factory=list)
    created: list[PlannedRow] = field(default_factory=list)
    updated: list[PlannedRow] = field(default_factory=list)
    # Changes to published incidents by someone who may not publish: pending revisions.
    proposed: list[PlannedRow] = field(default_factory=list)
    unchanged: list[PlannedRow] = field(default_factory=list)
    # New rows that may duplicate an incident or an earlier row: in `created` unless skipped.
    duplicates: list[PlannedRow] = field(default_factory=list)
    skipped: list[PlannedRow] = field(default_factory=list)
    # Kind ("places", …) -> names that `create_missing` creates (or, in a dry run, would create).
    missing_created: dict[str, list[str]] = field(default_factory=dict)
    dry_run: bool = False
    # A real import found possible duplicates and, told neither to skip nor allow them, wrote nothing.
    stopped_for_duplicates: bool = False
    # A real import met another write and was undone by PostgreSQL: the same file may be imported again.
    met_another_write: bool = False
    # The records the errors name as candidates ("matches 2 sources; write one of: …").
    named_in_errors: list[models.Model] = field(default_factory=list)

    def records_shown(self) -> list[models.Model]:
        """The records its preview, its error page and the command's lines name beyond what the
        file says: the incidents its rows change or may duplicate, the confidential claims kept and
        the sources of those added, and the candidates its errors list. For
        `access.confidential_among`: a reader with Confidential access is recorded as reading the
        confidential ones."""
        rows = [*self.created, *self.updated, *self.proposed, *self.unchanged, *self.duplicates]
        return [
            *(
                record
                for row in rows
                for record in (
                    row.incident,
                    *row.duplicate_incidents,
                    *row.confidential_claims_kept,
                    *row.confidential_claims_added,
                )
            ),
            *self.named_in_errors,
        ]

    @property
    def claims_removed(self) -> list[PlannedRow]:
        """Updates that remove public claims, whose sources the row no longer lists."""
        return [row for row in self.updated + self.proposed if row.claims_removed]

    @property
    def confidential_claims_kept(self) -> list[PlannedRow]:
        """Updates whose confidential claims stay although the row does not list their sources."""
        return [row for row in self.updated + self.proposed + self.unchanged if row.confidential_claims_kept]

    @property
    def confidential_claims_added(self) -> list[PlannedRow]:
        """Rows written that add confidential claims (`PlannedRow.confidential_claims_added`)."""
        return [row for row in self.created + self.updated + self.proposed if row.confidential_claims_added]

    @property
    def rows_to_write(self) -> int:
        return len(self.created) + len(self.updated) + len(self.proposed)

    def summary(self) -> str:
        if self.stopped_for_duplicates:
            # The file holds no error: counted as one, it sent readers looking for a mistake.
            duplicates = f"{len(self.duplicates)} possible duplicate{pluralize(self.duplicates)}"
            return f"{duplicates} in {self.file_name or 'the file'}; nothing was imported."
        if self.errors:
            errors = f"{len(self.errors)} error{pluralize(self.errors)}"
            return f"{errors} in {self.file_name or 'the file'}; nothing was imported."
        parts = [
            f"{len(self.created)} incident{pluralize(self.created)} {self._were(self.created)} created",
            f"{len(self.updated)} updated",
            f"{len(self.unchanged)} unchanged",
        ]
        if self.proposed:
            parts.insert(2, f"{len(self.proposed)} proposed for review (published: a Reviewer accepts them)")
        if self.skipped:
            skipped = "would be skipped" if self.dry_run else "skipped"
            parts.append(f"{len(self.skipped)} possible duplicate{pluralize(self.skipped)} {skipped}")
        elif self.duplicates:
            parts.append(
                f"{len(self.duplicates)} new row{pluralize(self.duplicates)} may duplicate an incident or an "
                "earlier row"
            )
        for column, names in self.missing_created.items():
            options = MISSING_RECORD_FIELDS[column][0]._meta
            kind = options.verbose_name if len(names) == 1 else options.verbose_name_plural
            parts.append(f"{len(names)} {kind} {self._were(names)} created ({', '.join(names)})")
        return "; ".join(parts) + "."

    def _were(self, records) -> str:
        return "would be" if self.dry_run else pluralize(records, "was,were")


class _InvalidFile(Exception):
    """A problem that stops reading the file (rows after it cannot be trusted)."""

    def __init__(self, error: RowError):
        self.error = error


class _RowNotWritten(Exception):
    """A service refused a row that passed validation (someone changed the data in between)."""

    def __init__(self, line: int):
        self.line = line


class _NameTakenMeanwhile(Exception):
    """A record `create_missing` makes met, on its unique name, one another writer added after the
    file was checked (which sees only what was committed then)."""

    def __init__(self, line: int, column: str, record: models.Model, described: str):
        self.line, self.column = line, column
        self.message = (
            f"The {record._meta.verbose_name} {described} was added by someone else while the file was being "
            "imported, and the import was undone: nothing of it was written. Import the file again: this row "
            "will name the one added."
        )


class _ChangedMeanwhile(Exception):
    """What a row writes was read while the file was checked, outside the import's transaction, and
    someone changed it before the write: an incident the row updates (its claims, read then, would be
    written back over the change), or incidents a new row may duplicate, added by another import."""

    def __init__(self, line: int, message: str):
        self.line, self.message = line, message


class _MalformedCell(ValueError):
    pass


@dataclass(frozen=True)
class _Item:
    """One item of a multi-valued cell: a name, or a place's path (several names, outermost first),
    and for a source the id written after its title."""

    names: tuple[str, ...]
    source_id: int | None = None
    # A source marked confidential (`exports.CONFIDENTIAL_SOURCE_MARK`): never cited as, or created
    # as, a public source.
    confidential: bool = False
    # A claim marked confidential itself (`exports.CONFIDENTIAL_CLAIM_MARK`): made a confidential claim.
    claim_confidential: bool = False

    def __str__(self):
        text = PLACE_PATH_SEPARATOR.join(map(csv_list_item, self.names))
        text = text if self.source_id is None else f"{text} [#{self.source_id}]"
        text = f"{text} {CONFIDENTIAL_SOURCE_MARK}" if self.confidential else text
        return f"{text} {CONFIDENTIAL_CLAIM_MARK}" if self.claim_confidential else text


# The white space trimmed around a name: the ASCII white space that PostgreSQL's `\s` matches in
# every locale, so that the export (csv_list_item, migration 0019) quotes every name the import would
# trim. Python's own white space is wider (no-break spaces, U+001C-U+001F, U+0085): trimmed, a name
# ending with a no-break space was exported bare and read back as another name, or none.
NAME_SPACE = " \t\n\r\f\v"
# What may follow a source's title: its id, then the confidential mark, then the claim's, each optional.
_SOURCE_SUFFIX = (
    rf"\s*(?:\[#(\d+)\]\s*)?({re.escape(CONFIDENTIAL_SOURCE_MARK)}\s*)?({re.escape(CONFIDENTIAL_CLAIM_MARK)}\s*)?"
)
_SOURCE_ID = re.compile(_SOURCE_SUFFIX, re.ASCII | re.IGNORECASE)
# Starting nowhere inside a run of white space: searched from each of its characters in turn, each
# try ran to the run's end, so a cell of a title with 20,000 spaces inside took a minute to read.
_SOURCE_ID_AT_END = re.compile(r"(?<!\s)" + _SOURCE_SUFFIX + "$", re.ASCII | re.IGNORECASE)


def _parse_items(cell: str, *, paths: bool = False, source_ids: bool = False) -> list[_Item]:
    """The items of a multi-valued cell as the export writes them (exports.csv_list_item): separated
    by ";", each name plain (stripped) or in double quotes with inner quotes doubled; with `paths`,
    names separated by ">"; with `source_ids`, an optional `[#ID]` after the name, and after that an
    optional `[confidential]` and an optional `[confidential claim]`. A quote opens quoting only at
    the start of a name, as in CSV, so hand-typed names with quotes inside still read.
    Empty items are left out, repeated ones kept once. Raises _MalformedCell."""
    separators = ";>" if paths else ";"
    items, names, marks = [], [], _NO_MARKS
    position, length = 0, len(cell)
    while True:
        while position < length and cell[position] in NAME_SPACE:
            position += 1
        if position < length and cell[position] == '"':
            name, position = _quoted_name(cell, position)
            if source_ids:
                suffix = _SOURCE_ID.match(cell, position)
                marks, position = _source_suffix(suffix), suffix.end()
            while position < length and cell[position] in NAME_SPACE:
                position += 1
            if position < length and cell[position] not in separators:
                quoted = '"' + name.replace('"', '""') + '"'
                raise _MalformedCell(f"Unexpected text after the closing quote of {quoted}.")
        else:
            end = position
            while end < length and cell[end] not in separators:
                end += 1
            name = cell[position:end]
            if source_ids:
                suffix = _SOURCE_ID_AT_END.search(name)
                marks, name = _source_suffix(suffix), name[: suffix.start()]
            name, position = name.strip(NAME_SPACE), end
        names.append(name)
        separator = cell[position] if position < length else ";"
        position += 1
        if separator == ">":
            continue
        # An item is anything written: a name, a path, or a source's id or marks alone (`[#12]`),
        # which was left out as empty, dropping the claim it named (an update removed it).
        if any(names) or len(names) > 1 or marks != _NO_MARKS:
            if not all(names) and (len(names) > 1 or marks[0] is None):
                empty = "A place's path has an empty name" if len(names) > 1 else "An item names no source"
                raise _MalformedCell(f"{empty}: {cell.strip()!r}.")
            items.append(_Item(tuple(names), *marks))
        names, marks = [], _NO_MARKS
        if position > length:
            return list(dict.fromkeys(items))


# An item's source id, whether its source is marked confidential, and whether its claim is.
_NO_MARKS = (None, False, False)


def _source_suffix(suffix: re.Match) -> tuple[int | None, bool, bool]:
    """The id a source's suffix (`_SOURCE_ID`) writes, if any, and its marks (`_NO_MARKS`)."""
    digits = suffix.group(1)
    if digits is not None and not is_whole_number(digits):
        raise _MalformedCell(f"[#{digits[:20]}…] is no source id: it has {len(digits):,} digits.")
    return None if digits is None else int(digits), bool(suffix.group(2)), bool(suffix.group(3))


def _quoted_name(cell: str, position: int) -> tuple[str, int]:
    """The name in double quotes starting at `position`, and the position after its closing quote."""
    name, position = [], position + 1
    while True:
        close = cell.find('"', position)
        if close == -1:
            raise _MalformedCell(f"A quoted name is not closed: {cell[position - 1 :]!r}.")
        name.append(cell[position:close])
        if cell.startswith('"', close + 1):
            name.append('"')
            position = close + 2
        else:
            return "".join(name), close + 1


def _numbers_as_numbers(text: str) -> list:
    """A sort key reading each run of digits 0-9 as a number: as text, "Press release [#100]" came
    before "Press release [#99]". Text and numbers alternate in the key, so keys compare. A number
    as its length and digits without leading zeros, not `int()`, which refused "²" (a digit to
    `isdigit()`) and runs of more than 4,300 digits: either failed the import of a name two places
    share."""
    # The split puts the runs of digits at the odd places.
    parts = re.split(r"([0-9]+)", text)
    return [(len(part.lstrip("0")), part.lstrip("0")) if index % 2 else part for index, part in enumerate(parts)]


class _NameFolding:
    """Names as the import compares them: lowercased as PostgreSQL's lower() lowercases them, the
    rule of the database's unique names (a type's, an organization's, a place's in its parent:
    `Lower("name")`). Python's casefold() made "Straße" and "STRASSE", two names to the database,
    one, and the import called either ambiguous; its lower() makes "İ" two characters where the
    database makes it one. Asked of the database, once for all the names given. In their normal
    form first (`normal_text`), as names are written: a file saved by a macOS tool names a place
    decomposed (Hangul as its letters), which named no known place, and with --create-missing made
    a second organization of one name; a name stored otherwise (by SQL) is still found. And in their
    compatibility form (NFKC), as the lists' searches compare them (text_fields.CompatibilityForm):
    "MSS" in full-width letters, from a Chinese spreadsheet, named no organization "MSS", and
    --create-missing made it a second time."""

    def __init__(self, names: Iterable[str]):
        self.lowered: dict[str, str] = {}
        self._ask(names)

    def __call__(self, name: str) -> str:
        if name not in self.lowered:  # not among the names given: asked on its own
            self._ask([name])
        return self.lowered[name]

    def _ask(self, names: Iterable[str]) -> None:
        """Runs a query."""
        with connection.cursor() as cursor:
            names = sorted(set(names))
            cursor.execute(
                "SELECT lower(NORMALIZE(name, NFKC)) FROM unnest(%s::text[]) WITH ORDINALITY AS item (name, position)"
                " ORDER BY position",
                [[normal_text(name, one_line=True) for name in names]],
            )
            self.lowered.update(zip(names, (lowered for (lowered,) in cursor.fetchall()), strict=True))


class _Names:
    """Records of one kind found by any of their names, whatever their case and width (`fold`)."""

    kind = "record"

    def __init__(self, records: Iterable[tuple[models.Model, Iterable[str]]], fold: _NameFolding):
        self.fold = fold
        self.by_name: dict[str, list[models.Model]] = defaultdict(list)
        for record, names in records:
            for name in {fold(name) for name in names if name}:
                self.by_name[name].append(record)

    def named(self, name: str) -> list[models.Model]:
        return self.by_name.get(self.fold(name), [])

    def find(self, item: _Item) -> tuple[list[models.Model], str]:
        """The records `item` may mean (one when it is clear), and a problem with it if any."""
        return self.named(item.names[-1]), ""

    def describe(self, record: models.Model) -> str:
        """The record as the file should name it."""
        return csv_list_item(str(record))

    def missing_key(self, name: str) -> str:
        """What two spellings of one new record's name share, so that create_missing makes it once."""
        return self.fold(name)


def _as_written(records: list[models.Model], name: str, field_name: str) -> list[models.Model]:
    """Of `records`, found by `name` case-insensitively, the one whose `field_name` is `name` as
    written, if any: slugs are unique as written, not case-insensitively ("arrest" and "Arrest"), and
    a name may be another's acronym or alias but for case; without this the export of either read
    back as ambiguous."""
    return [record for record in records if getattr(record, field_name) == name] or records


class _Types(_Names):
    """By slug (unique; what the export writes), else by name: a slug that is also another type's
    name is that slug's type, as an organization's name wins over another's acronym."""

    kind = "type"

    def __init__(self, types: Iterable[IncidentType], fold: _NameFolding):
        types = list(types)
        super().__init__(((kind, [kind.name]) for kind in types), fold)
        self.by_slug = _Names(((kind, [kind.slug]) for kind in types), fold)
        # As written: the slug's unique constraint tells cases apart.
        self.slugs = {kind.slug: kind for kind in types}

    def find(self, item: _Item) -> tuple[list[models.Model], str]:
        name = item.names[-1]
        return _as_written(self.by_slug.named(name), name, "slug") or _as_written(self.named(name), name, "name"), ""

    def describe(self, record: IncidentType) -> str:
        # The slug names a known type uniquely; a type create_missing makes is shown as it was written.
        return record.slug if record.pk else record.name


class _Organizations(_Names):
    """By name (unique), else by acronym or alias when only one organization has it."""

    kind = "organization"

    def __init__(self, organizations: Iterable[Organization], fold: _NameFolding):
        organizations = list(organizations)
        super().__init__(
            ((organization, [organization.acronym, *organization.aliases]) for organization in organizations),
            fold,
        )
        self.by_own_name = _Names(((organization, [organization.name]) for organization in organizations), fold)

    def find(self, item: _Item) -> tuple[list[models.Model], str]:
        # A name as written, else an acronym or alias as written, else either in another case: with
        # "KPA" one's name and "Kpa" another's acronym, "Kpa" named the first (the name won whatever
        # its case), an incident given to the wrong perpetrator without a word.
        name = item.names[-1]
        by_name, by_other_name = self.by_own_name.named(name), self.named(name)
        written = normal_text(name, one_line=True)  # as stored: decomposed, or a zero-width space after it
        return (
            # A name stored otherwise beside its twin in normal form (left so by migrations 0112 and
            # 0120: "Tumen" and "Tumen" with a no-break space), which the export writes as stored.
            [organization for organization in by_name if organization.name == name]
            or [organization for organization in by_name if organization.name == written]
            or [
                organization
                for organization in by_other_name
                if written == organization.acronym or written in organization.aliases
            ]
            or by_name
            or by_other_name
        ), ""

    def describe(self, record: Organization) -> str:
        return csv_list_item(record.name)


class _Places(_Names):
    """By path (`Vietnam > Lao Cai > Lao Cai`, as the export writes it), by a shorter path that ends
    at the place (`Lao Cai > Lao Cai`), or by one name; any name may be an alternate name."""

    kind = "place"

    def __init__(self, places: Iterable[Place], fold: _NameFolding):
        self.places = {place.pk: place for place in places}
        super().__init__(((place, [place.name, *place.alternate_names]) for place in self.places.values()), fold)
        self.paths: dict[int, list[Place]] = {}
        # Read once: django-countries' `by_name` reads every country's name on each call, 2.8 ms, and
        # a file may name 250,000 unknown places.
        with translation.override("en"):
            self.country_codes = {str(name).casefold(): code for code, name in countries}

    def country_code(self, name: str) -> str:
        """The code of the country whose English name, as django-countries has it ("North Korea"),
        is `name` in any case; "" for any other name."""
        return self.country_codes.get(name.casefold(), "")

    def path(self, place: Place) -> list[Place]:
        """The place and its parents, outermost first."""
        if place.pk not in self.paths:
            chain, current = [], place
            # The depth limit guards against a cycle written around Place.clean(), as in SQL.
            while current is not None and len(chain) < 32:
                chain.append(current)
                current = self.places.get(current.parent_id)
            self.paths[place.pk] = chain[::-1]
        return self.paths[place.pk]

    def level(self, place: Place) -> int:
        """How deep `place` lies, the top being level 1, counting the new places above it that
        create_missing makes."""
        new = 0
        while place is not None and place.pk is None:
            new, place = new + 1, place.parent
        return new + (len(self.path(place)) if place is not None else 0)

    def find(self, item: _Item) -> tuple[list[models.Model], str]:
        candidates = self.named(item.names[-1])
        wanted = [self.fold(name) for name in item.names]
        # The whole path by the places' own names (what the export writes) is unique...
        whole = [place for place in candidates if [self.fold(ancestor.name) for ancestor in self.path(place)] == wanted]
        if whole:
            exact = [place for place in whole if [ancestor.name for ancestor in self.path(place)] == list(item.names)]
            return exact or whole, ""
        # ...else the end of a path, by any names.
        return [place for place in candidates if self._ends_with(place, wanted)], ""

    def _ends_with(self, place: Place, wanted: list[str]) -> bool:
        path = self.path(place)
        if len(path) < len(wanted):
            return False
        return all(
            name in {self.fold(ancestor.name), *map(self.fold, ancestor.alternate_names)}
            for ancestor, name in zip(path[-len(wanted) :], wanted, strict=True)
        )

    def describe(self, record: Place) -> str:
        if record.pk is None:  # a new place create_missing makes, under a known parent
            parent = [self.describe(record.parent)] if record.parent is not None else []
            return PLACE_PATH_SEPARATOR.join([*parent, csv_list_item(record.name)])
        return PLACE_PATH_SEPARATOR.join(csv_list_item(place.name) for place in self.path(record))


class _Sources(_Names):
    """By `Title [#ID]` (the id decides; the title must agree), or by a title only one has. A title
    none has as written, but that looks like the title of one the user may see (`alike`:
    services.sources_titled_alike, a curly apostrophe for a straight one), is refused naming it,
    rather than taken for another source, which create_missing made a second copy of."""

    kind = "source"

    def __init__(
        self,
        sources: Iterable[Source],
        alike: Mapping[str, list[Source]],
        comparable: Mapping[str, str],
        fold: _NameFolding,
    ):
        sources = list(sources)
        super().__init__(((source, [source.title]) for source in sources), fold)
        self.by_id = {source.pk: source for source in sources}
        self.alike = alike
        self.comparable = comparable

    def missing_key(self, name: str) -> str:
        # As titles compare (services.comparable_titles): a file naming a new article once with a
        # curly apostrophe and once with a straight one made it twice.
        return self.comparable.get(name, self.fold(name))

    def find(self, item: _Item) -> tuple[list[models.Model], str]:
        sources, problem = self._find(item)
        if not item.confidential or not sources:
            return sources, problem
        # A source marked confidential is cited only as a confidential one: a public source of that
        # title (another database's, or one made public since the export) would publish the claim.
        if confidential := [source for source in sources if source.confidential]:
            return confidential, ""
        return [], (
            f"{item} is marked confidential, but {self.describe(sources[0])} is not: remove the mark to cite "
            "it, or make it confidential in the admin first."
        )

    def _find(self, item: _Item) -> tuple[list[models.Model], str]:
        title = item.names[-1]
        if item.source_id is None:
            named = self.named(title)
            if named or not self.alike.get(title):
                return named, ""
            return [], (
                f"No source is titled {str(item)!r}, but it looks like "
                f"{', '.join(self.describe(source) for source in self.alike[title])}: write that to cite it, "
                "or add the new source in the admin first (it asks you to confirm that it is another)."
            )
        source = self.by_id.get(item.source_id)
        if source is None:
            return [], f"No source #{item.source_id} that you may see ({item})."
        # An id alone (`[#12]`) names it; a title given with it must agree.
        if title and self.fold(source.title) != self.fold(title):
            return [], (
                f"{item}: source #{item.source_id} is titled {source.title!r}, not {title!r}; "
                f"write {self.describe(source)}, or the right id."
            )
        return [source], ""

    def describe(self, record: Source) -> str:
        if record.pk:
            return csv_source_item(record.title, record.pk, confidential=record.confidential)
        return str(_Item((record.title,), confidential=record.confidential))


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
    file: IO[bytes],
    *,
    user,
    create_missing: bool = False,
    dry_run: bool = False,
    duplicates: Duplicates = Duplicates.STOP,
    file_name: str = "",
) -> ImportReport:
    """Validate every row of the CSV in `file`; unless `dry_run` or any error, write them all in one
    transaction as `user`. New rows that may duplicate an incident or an earlier row are listed in
    `report.duplicates`, and `duplicates` says what a real import does with them (STOP: write
    nothing; SKIP leaves them out; ALLOW creates them without looking for them; SKIP and ALLOW
    alike in a dry run). Checking costs the same few queries whatever the file's length; writing,
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
    if not report.errors and duplicates != Duplicates.ALLOW:
        _find_duplicates(plan, user, report)
    if report.errors:
        return report
    # Before a dry run returns: its report says what the same import would write.
    if report.duplicates and duplicates == Duplicates.SKIP:
        _skip_duplicates(plan, report, user)
    if dry_run:
        return report
    if report.duplicates and duplicates == Duplicates.STOP:
        report.stopped_for_duplicates = True
        report.errors.append(
            RowError(
                0,
                "",
                f"{len(report.duplicates)} new row{pluralize(report.duplicates)} may duplicate an incident or an "
                "earlier row (listed); nothing was written. Import again skipping them (--skip-duplicates) or "
                "creating them all the same (--allow-duplicates).",
            )
        )
        return report
    try:
        _write(plan, user, report, duplicates=duplicates)
    except _InvalidFile as invalid:
        report.errors.append(invalid.error)
        report.created, report.updated, report.proposed, report.unchanged = [], [], [], []
    return report


def _duplicate_candidates(new_rows: list[PlannedRow]) -> list[DuplicateCandidate]:
    return [
        DuplicateCandidate(
            # A type create_missing makes has no id yet: its rows match only each other.
            incident_type_id=row.data["incident_type"].pk or -id(row.data["incident_type"]),
            date_start=row.data["date_start"],
            date_end=row.data["date_end"],
            places=tuple((place.pk, place.country.code) for place in row.names["places"] or ()),
        )
        for row in new_rows
    ]


def _find_duplicates(plan: _Plan, user, report: ImportReport) -> None:
    """List the new rows that may duplicate an incident `user` may see, or an earlier new row: the
    admin's rule (possible_duplicates_of, TRACKER_DUPLICATE_WINDOW_DAYS). Two queries."""
    new_rows = [row for row in plan.rows if row.incident is None]
    candidates = _duplicate_candidates(new_rows)
    window = settings.DUPLICATE_WINDOW_DAYS
    in_database = Incident.objects.visible_to(user).possible_duplicates_of_new(candidates, window)
    incidents = (
        Incident.objects.filter(pk__in={pk for pks in in_database.values() for pk in pks})
        .only("public_id", "title", "date_label", "date_start")
        .in_bulk()
    )
    in_file = possible_duplicates_among(candidates, window)
    for index, row in enumerate(new_rows):
        row.duplicate_incidents = sorted(
            (incidents[pk] for pk in in_database.get(index, ())),
            key=lambda incident: (incident.date_start, incident.pk),
        )
        row.duplicate_lines = [new_rows[earlier].line for earlier in in_file.get(index, ())]
        if row.duplicate_incidents or row.duplicate_lines:
            report.duplicates.append(row)


def _skip_duplicates(plan: _Plan, report: ImportReport, user) -> None:
    """Leave the possible duplicates out of what is written; the other new rows are checked again
    without them (what the service writes is what it checked)."""
    skipped = {id(row) for row in report.duplicates}
    plan.rows = [row for row in plan.rows if id(row) not in skipped]
    report.created = [row for row in report.created if id(row) not in skipped]
    report.skipped = report.duplicates
    plan.new_incidents, _ = _validate_new_incidents([row for row in plan.rows if row.incident is None], user)
    plan.leave_out_records_no_row_names()
    report.missing_created = plan.missing_created()


def _read_rows(file: IO[bytes]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    limit = settings.IMPORT_MAX_BYTES
    content = file.read(limit + 1)
    if len(content) > limit:
        raise _InvalidFile(
            RowError(0, "", f"The file is larger than {limit:,} bytes, the import limit (TRACKER_IMPORT_MAX_BYTES).")
        )
    text = csv_file_text(content)
    del content  # the text holds it now; a file at the size limit is 50 MB each
    max_rows = settings.IMPORT_MAX_ROWS
    records = _Records(text, delimiter=_delimiter(text))
    first = records.read(max_cells=_MAX_HEADER_CELLS)
    header = [_column_name(name) for name in first.cells] if first and first.line == 1 else []
    # A spreadsheet saves the empty columns after the last one it formatted: no column, if empty.
    width = len(header)
    while header and not header[-1]:
        header.pop()
    _check_header(header)
    if first.wider:
        raise _InvalidFile(
            RowError(
                1, "", f"The header has more than {_MAX_HEADER_CELLS} cells; delete the empty columns after the last."
            )
        )
    rows = []
    holds_nul = "\x00" in text
    may_be_misread = not text.isascii()
    read_well: set[str] = set()  # the cells outside ASCII found not misread (_refuse_misread)
    name_cells = [position for position, name in enumerate(header) if name in NAME_COLUMNS]
    max_names, names = max_rows * NAMES_PER_ROW, 0
    columns = len(header)
    for record in records.rest(max_cells=width):
        cells = record.cells
        if record.wider or (len(cells) > columns and any(map(str.strip, cells[columns:]))):
            raise _InvalidFile(
                RowError(
                    record.line,
                    "",
                    f"This row has more cells than the header's {len(header)}; the file was read no further.",
                )
            )
        del cells[columns:]
        # What a spreadsheet writes for an empty row it once formatted: nothing to import.
        if not any(map(str.strip, cells)):
            continue
        # Checking a file holds every row at once (all or nothing): the row count bounds its memory.
        if len(rows) == max_rows:
            raise _InvalidFile(
                RowError(
                    record.line,
                    "",
                    f"The file has more than {max_rows:,} rows, the import limit (TRACKER_IMPORT_MAX_ROWS); "
                    "split it into several files.",
                )
            )
        # At most the names a cell holds: a quoted name may hold a ";" of its own.
        for position in name_cells:
            if position < len(cells) and cells[position]:
                names += cells[position].count(";") + 1
        if names > max_names:
            raise _InvalidFile(
                RowError(
                    record.line,
                    "",
                    f"The file names more than {max_names:,} places, perpetrators and sources, the import limit "
                    f"({NAMES_PER_ROW} a row of TRACKER_IMPORT_MAX_ROWS); split it into several files.",
                )
            )
        if holds_nul:
            _refuse_nul(record, header)
        if may_be_misread:
            _refuse_misread(record, header, read_well)
        rows.append((record.line, cells))
    return header, rows


def csv_file_text(content: bytes) -> str:
    """The text of a CSV file as a spreadsheet saves it: UTF-8, with or without a byte order mark
    (Excel's "CSV UTF-8", LibreOffice's default), or UTF-16 with one (Excel's "Unicode Text"); the
    mark says which, so nothing is guessed. Any other encoding is refused rather than guessed: Excel's
    plain "CSV" is in the code page of the machine that saved it (1252 in Western Europe, 949 in
    Korea), which the file does not say, and read as the wrong one every name would be misspelt.

    The error names the line and column of the first byte that cannot be read. Text that reads but
    was misread once already ("â€™") is refused as the rows are read (`_refuse_misread`)."""
    utf_16 = content.startswith((b"\xff\xfe", b"\xfe\xff"))
    encoding = "utf-16" if utf_16 else "utf-8-sig"
    try:
        return content.decode(encoding)
    except UnicodeDecodeError as error:
        message = (
            "The file is not valid UTF-16"
            if utf_16
            else f"The file is not UTF-8 (byte 0x{content[error.start]:02x} cannot be read)"
        )
        raise _InvalidFile(
            _undecodable(content, error, encoding, f"{message}; save it as UTF-8 (in Excel: 'CSV UTF-8').")
        ) from None


def _undecodable(content: bytes, error: UnicodeDecodeError, encoding: str, message: str) -> RowError:
    """`message` at the line and column of the first byte `encoding` cannot read, found in the text
    as read with that byte replaced (U+FFFD): the replacements before it are in the file itself."""
    readable = content[: error.start].decode(encoding, errors="replace")
    replaced = content.decode(encoding, errors="replace")
    at_fault = readable.count("\ufffd") + 1
    for line, column, cell in _located_cells(replaced):
        at_fault -= cell.count("\ufffd")
        if at_fault <= 0:
            return RowError(line, column, message)
    return RowError(readable.count("\n") + 1, "", message)


def _located_cells(text: str) -> Iterator[tuple[int, str, str]]:
    """Every cell of the file (the header's too, with no column), as the line its record starts on,
    its column and its text: where a problem found in the text as a whole lies. Stops at a
    malformed record, reported once the file is read as rows."""
    records = _Records(text, delimiter=_delimiter(text))
    header: list[str] | None = None
    try:
        while record := records.read(max_cells=_MAX_HEADER_CELLS):
            columns = header or []
            for position, cell in enumerate(record.cells):
                yield record.line, columns[position] if position < len(columns) else "", cell
            if header is None:
                header = [_column_name(name) for name in record.cells]
    except _InvalidFile:
        return


# The separators spreadsheets save with: ","; ";" where "," is the decimal comma (Excel and
# LibreOffice in German, French, …); a tab in Excel's "Unicode Text". No column's name holds one,
# so the header's first line says which the file uses.
_DELIMITERS = (",", ";", "\t")


def _delimiter(text: str) -> str:
    first_line = _LINE_END.split(text.lstrip("\r\n"), maxsplit=1)[0]
    return next((delimiter for delimiter in _DELIMITERS if delimiter in first_line), ",")


def _column_name(written: str) -> str:
    """A header's name as the export writes it, from a spreadsheet's "Public ID " or "Title"; a name
    that is no column stays as written, for the error to quote."""
    name = "_".join(written.casefold().split())
    return name if name in _KNOWN_COLUMNS else written.strip()


def _refuse_nul(record: "_Record", header: list[str]) -> None:
    """PostgreSQL's text cannot hold a NUL: a cell with one would fail the import's first query
    naming it (a crash of the command, a 500 of the admin's upload) rather than be reported."""
    for name, cell in zip(header, record.cells, strict=False):
        if "\x00" in cell:
            raise _InvalidFile(
                RowError(record.line, name, "This cell holds a NUL character, which no field may hold; remove it.")
            )


# A C1 control character (U+0080-U+009F) not following what a UTF-8 lead or continuation byte
# reads as in Latin-1: alone, it is no misreading but a character a name may hold, as the export
# writes it ("\x85Tumen", tests/test_csv_round_trip.py), and `is_bad` would refuse the file an
# export of it makes. After such a character ("Ã\x89", "â\x80\x99") it is part of one.
_LONE_C1_CONTROL = re.compile("(?<![\xc2-\xf4\x80-\xbf])[\x80-\x9f]")


def _looks_misread(text: str) -> bool:
    return is_bad(_LONE_C1_CONTROL.sub("", text))


def _refuse_misread(record: "_Record", header: list[str], read_well: set[str]) -> None:
    """Text misread once already: a UTF-8 file opened as Windows-1252 and saved again as UTF-8 holds
    "â€™" for an apostrophe, "Ã©" for "é" and "ë¶í•œ" for "북한", and so does a Windows-1252 file
    whose bytes happen to be valid UTF-8. Every byte reads, and the names would be imported so.

    ftfy's `is_bad` is made for this: it matches the sequences misread UTF-8 leaves (a lead byte
    read as "Ã", "â", "ë", … beside what its continuation bytes became), which real text in Korean,
    French, German or Vietnamese does not hold. charset-normalizer guesses the encoding of bytes
    instead: such a file is valid UTF-8, and it answers "utf_8". Each of ftfy's patterns holds a
    character outside ASCII, so only cells with one are searched: one search over a whole 50 MB file
    took 30 s, the cells of 100,000 rows of names 3 s. And each such cell once: the same places,
    perpetrators and sources recur on many rows, and a cell found not misread is added to
    `read_well`, the file's set of them (a misread one refuses the file)."""
    for name, cell in zip(header, record.cells, strict=False):
        if cell.isascii() or cell in read_well:
            continue
        if not _looks_misread(cell):
            read_well.add(cell)
        else:
            word = next((word for word in cell.split() if _looks_misread(word)), cell)[:30]
            raise _InvalidFile(
                RowError(
                    record.line,
                    name,
                    f"The text looks mis-encoded: {word!r} is how UTF-8 text reads once opened as another "
                    "encoding (“â€™” for ’, “Ã©” for é). Correct it, or start again from the file as it was "
                    "before, and save it as UTF-8 (in Excel: 'CSV UTF-8').",
                )
            )


@dataclass(frozen=True)
class _Record:
    line: int  # where the record starts (a quoted cell may span several lines)
    cells: list[str]
    wider: bool  # it has more cells than were read


# One cell as the csv module reads it (the excel dialect): quoted, with "" for a quote inside and
# any line end, or plain up to the next delimiter or line end. Text after a closing quote, which
# the csv module refuses, is taken as part of the cell: csv.reader reports it.
_CELL = r'(?:"[^"]*(?:""[^"]*)*")?[^{delimiter}\r\n]*'
_LINE_END = re.compile(r"\r\n|\r|\n")
_BLANK_LINES = re.compile(r"[\r\n]*")


@functools.cache
def _first_cells(max_cells: int, delimiter: str) -> re.Pattern:
    """A record's first `max_cells` cells at most."""
    cell = _CELL.format(delimiter=re.escape(delimiter))
    return re.compile(rf"{cell}(?:{re.escape(delimiter)}{cell}){{0,{max_cells - 1}}}")


class _Records:
    """The file's records, blank lines left out, each read no further than the cells it may have:
    handing csv.reader a row before counting its cells held them all, twenty times the row's size
    (a 50 MB row of two-letter cells, over 1 GB). csv.reader reads each record's text, so its
    rules and messages are the file's."""

    def __init__(self, text: str, *, delimiter: str):
        # A cell is never longer than the file that holds it, which the import's size limit bounds
        # (a character takes a byte at least): csv's own limit, 131,072 characters, refused as
        # "Malformed CSV", naming no column, an export's own cell, the sources of an incident citing
        # a few hundred long titles. Each column's rule then refuses what it cannot hold, naming the
        # row, the column and the limit ("at most 300 characters" for a title). The limit is the csv
        # module's, for the whole process: only ever raised, so that no import lowers another's.
        csv.field_size_limit(max(csv.field_size_limit(), len(text)))
        self.text = text
        self.delimiter = delimiter
        self.position = 0
        self.lines = 0  # lines before `position`, a line end being \r\n, \r or \n as for csv.reader

    def read(self, *, max_cells: int) -> _Record | None:
        """The next record, or None at the end of the file. Raises _InvalidFile if it is malformed."""
        blank = _BLANK_LINES.match(self.text, self.position)
        self._move_to(blank.end())
        if self.position == len(self.text):
            return None
        line = self.lines + 1
        cells = _first_cells(max_cells, self.delimiter).match(self.text, self.position)
        wider = self.text.startswith(self.delimiter, cells.end())
        line_end = _LINE_END.match(self.text, cells.end())
        end = line_end.end() if line_end and not wider else cells.end()
        try:
            row = next(csv.reader([self.text[self.position : end]], strict=True, delimiter=self.delimiter))
        except csv.Error as error:
            raise _InvalidFile(RowError(line, "", f"Malformed CSV: {error}.")) from None
        self._move_to(end)
        return _Record(line=line, cells=row, wider=wider)

    def rest(self, *, max_cells: int) -> Iterator[_Record]:
        """The records left, as `read` returns them, read by one csv.reader rather than one a record
        (which made reading 100,000 rows five times as slow as before it). Each record's lines are
        handed to it only while they hold fewer delimiters than `max_cells`, so it never holds more
        cells than those; a record that holds more delimiters (in quoted cells too), or that it
        refuses, is read by `read`, which reads it no further than its cells, or says why it is
        refused, and the next record by a new csv.reader."""
        while self.position < len(self.text):
            first_line = self.lines
            held = _HeldLines(self.text, self.position, self.delimiter, max_delimiters=max_cells - 1)
            reader = csv.reader(held, strict=True, delimiter=self.delimiter)
            try:
                for cells in reader:
                    line = self.lines + 1
                    self.position, self.lines = held.end, first_line + reader.line_num
                    held.delimiters = 0
                    # A blank line: no record (`read` skips it).
                    if cells:
                        yield _Record(line=line, cells=cells, wider=False)
            except (csv.Error, _TooManyDelimiters):
                record = self.read(max_cells=max_cells)
                if record is not None:
                    yield record

    def _move_to(self, end: int) -> None:
        text, start = self.text, self.position
        self.lines += text.count("\n", start, end) + text.count("\r", start, end) - text.count("\r\n", start, end)
        self.position = end


# A line as csv.reader reads a file's lines: up to its line end (\r\n, \r or \n), which it holds.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


class _TooManyDelimiters(Exception):
    """A record's lines hold more delimiters than it may have cells (_HeldLines)."""


class _HeldLines:
    """The text's lines from `position` on, for a csv.reader: a record's lines (those handed out
    since `delimiters` was last set to 0) holding more than `max_delimiters` raise
    _TooManyDelimiters before the reader has the line that adds too many. `end` is where the lines
    handed out end."""

    def __init__(self, text: str, position: int, delimiter: str, *, max_delimiters: int):
        self.lines = _LINE.finditer(text, position)
        self.delimiter = delimiter
        self.max_delimiters = max_delimiters
        self.delimiters = 0
        self.end = position

    def __iter__(self):
        return self

    def __next__(self) -> str:
        found = next(self.lines)
        line = found.group()
        self.delimiters += line.count(self.delimiter)
        if self.delimiters > self.max_delimiters:
            raise _TooManyDelimiters
        self.end = found.end()
        return line


def _check_header(header: list[str]) -> None:
    """Linear in the header's length: a header repeating `title` 100,000 times (600 KB) once took
    280 s, each name being counted across the whole header. `header` holds one name more than there
    are columns at most (_read_rows), so a repeated column is not counted: its count would be the
    prefix's."""
    if not any(header):
        raise _InvalidFile(RowError(1, "", f"The file is empty; its first line must name the columns: {_known()}."))
    unknown = [name for name in header if name not in _KNOWN_COLUMNS]
    if unknown:
        raise _InvalidFile(RowError(1, unknown[0], f"Unknown column; the columns are {_known()}."))
    repeated = next((name for name, count in Counter(header).items() if count > 1), None)
    if repeated:
        raise _InvalidFile(RowError(1, repeated, "This column appears more than once; give each column once."))
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise _InvalidFile(RowError(1, missing[0], "This required column is missing."))


def _known() -> str:
    return ", ".join(COLUMNS)


def _plain(cell: str) -> str:
    """The cell as typed, without the apostrophe the export adds before a formula-like value."""
    return cell[1:] if _NEUTRALISED_CELL.match(cell) else cell


def _validate_rows(header, rows, user, create_missing, report) -> _Plan:
    records = [dict(zip(header, cells, strict=False)) for _, cells in rows]
    resolver = _NameResolver(_name_indexes(user, records), create_missing, user)
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
                errors.extend(_check_version(line, record, row.incident, row, user))
        data, value_errors = _parse_values(line, record, row.incident)
        names, name_errors = resolver.resolve(line, record)
        row.data = {**data, **({"incident_type": names["type"][0]} if names.get("type") else {})}
        row.names = {column: names.get(column) for column in NAME_COLUMNS}
        row.claims = resolver.claims.get(record.get("sources"), ())
        errors.extend(value_errors + name_errors)
        if errors or row.incident is not None:
            # The workflow's and the model's rules on what could be read, beside every other
            # problem of the row (a clean new row is checked below with its places and claims, by
            # the service that writes it). A column that could not be read is not reported twice.
            errors.extend(_check_workflow(line, row.incident, row.data, user))
            candidate = Incident(**{**(_current_values(row.incident) if row.incident else {}), **row.data})
            unread = {error.column for error in value_errors + name_errors}
            problems = {name: messages for name, messages in validation_errors(candidate).items() if name not in unread}
            errors.extend(_row_errors(line, problems))
        if not errors:
            checked.append((row, errors))
    new_rows = [row for row, _ in checked if row.incident is None]
    new_incidents, new_incident_errors = _validate_new_incidents(new_rows, user)
    planned = []
    for row, errors in checked:
        errors.extend(new_incident_errors.get(row.line, ()))
        if errors:
            continue
        if row.incident is not None:
            if row.names["sources"] is not None:
                row.claims_removed, row.confidential_claims_kept = _claims_unlisted(row.incident, row.names["sources"])
            row.changes = _changes(row.incident, row)
            if row.changes and row.incident.merged_into is not None:
                survivor = row.incident.merged_into.public_id
                errors.append(
                    RowError(
                        row.line,
                        "public_id",
                        f"{row.incident.public_id} was merged into {survivor} and cannot be changed; "
                        f"change {survivor} instead.",
                    )
                )
                continue
        row.confidential_claims_added = _confidential_claims_added(row)
        planned.append(row)
    report.errors.extend(error for errors in row_errors for error in errors)
    report.named_in_errors = resolver.named_in_errors
    # Created in this order when the file is written.
    plan = _Plan(
        rows=planned,
        new_incidents=new_incidents,
        missing=[
            (column, record, resolver.indexes[column].describe(record))
            for column, new_records in resolver.missing.items()
            for record in sorted(new_records.values(), key=resolver.indexes[column].describe)
        ],
    )
    report.missing_created = plan.missing_created()
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
    return plan


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


def _check_version(line: int, record: dict[str, str], incident: Incident, row: PlannedRow, user) -> list[RowError]:
    """The file's version of `incident` against the one its export gave the readers it was exported
    for (`_versions_told`), or `user`, for a file that names none (`version_seen_by`)."""
    row.versions_told, errors = _versions_told(line, record, user)
    if errors:
        return errors
    version = version_seen_by(incident, user, row.versions_told)
    raw = record.get("version", "").strip()
    if not raw:
        return [RowError(line, "version", f"Needed to update {incident.public_id}: export it to get its version.")]
    if not is_whole_number(raw):
        return [RowError(line, "version", f"{raw!r} is not a version number.")]
    row.expected_version = int(raw)
    if row.expected_version > version:
        return [
            RowError(
                line,
                "version",
                f"{incident.public_id} never had version {row.expected_version}: it is at version "
                f"{version}. Export it again to get its version.",
            )
        ]
    if row.expected_version != version:
        return [
            RowError(
                line,
                "version",
                f"{incident.public_id} has changed since this file was exported (the file has version "
                f"{row.expected_version}, the database version {version}); export it again and "
                "reapply your changes.",
            )
        ]
    return []


def _versions_told(line: int, record: dict[str, str], user) -> tuple[VersionFields | None, list[RowError]]:
    """Whose versions the row's `version` is: those of the audience its `version_audience` names,
    so that a file an Analyst (or the public) exported, imported by a Reviewer with Confidential
    access, is compared with the version it was read at, which a change to a confidential claim
    does not move, where the Reviewer's own does. Nothing the file's readers could not see is lost
    so: an import never removes a confidential claim, and making an incident confidential, or
    taking it back to a draft, moves the version of the readers it leaves (a stale row). None, the
    importer's own, for a file that names none (exported before the column). A file exported for
    readers told more than `user` is refused: compared with a version hidden from `user`, its row
    would tell them whether something they may not see changed."""
    name = record.get("version_audience", "").strip()
    if not name:
        return None, []
    audience = AUDIENCES_BY_NAME.get(name)
    if audience is None:
        names = ", ".join(AUDIENCE_NAMES.values())
        return None, [
            RowError(line, "version_audience", f"{name!r} is not whose version this is: {names}, as exported.")
        ]
    if audience > audience_of(user):
        return None, [
            RowError(
                line,
                "version_audience",
                f"This file was exported for readers who see more than you ({name}): export the incidents "
                "yourself and reapply your changes.",
            )
        ]
    return VERSIONS_TOLD_TO[audience], []


def _parse_values(
    line: int, record: dict[str, str], incident: Incident | None
) -> tuple[dict[str, Any], list[RowError]]:
    data, errors = {}, []
    for column in FIELD_COLUMNS:
        if column not in record:
            continue
        raw = record[column]
        if column in DATE_COLUMNS and not raw.strip():
            message = _blank_date_message(column, record, data.get("date_start"), incident)
            errors.append(RowError(line, column, message))
        elif column in DATE_COLUMNS:
            written = _MIDNIGHT.sub("", raw.strip())
            try:
                if not written_as_a_date(written):
                    raise ValueError(written)
                data[column] = date.fromisoformat(written)
            except ValueError:
                message = not_a_day(written) or f"{raw!r} is not a date; write it as YYYY-MM-DD."
                errors.append(RowError(line, column, message))
        elif column in COUNT_COLUMNS:
            value = raw.strip()
            if value and not is_whole_number(value):
                message = f"{raw!r} is not a whole number of people."
                if GROUPED_DIGITS.fullmatch(value):
                    message += f" Write it without separators: {re.sub(r'[^0-9]', '', value)}."
                errors.append(RowError(line, column, message))
            else:
                data[column] = int(value) if value else None
        elif column in CHOICE_COLUMNS:
            # Blank: the default for a new incident, the current value for an existing one.
            if raw.strip():
                choice = _choice(column, raw.strip())
                if choice is None:
                    field = Incident._meta.get_field(column)
                    allowed = ", ".join(value for value, _ in field.choices)
                    message = f"{raw.strip()!r} is not a {field.verbose_name}: write one of {allowed}."
                    errors.append(RowError(line, column, message))
                else:
                    data[column] = choice
        elif column == "title":
            data[column] = _title(raw, incident)
        elif column in BOOLEAN_COLUMNS:
            if raw.strip():
                value = BOOLEAN_COLUMNS[column].get(raw.strip().casefold())
                if value is None:
                    errors.append(RowError(line, column, f"{raw.strip()!r} is not true or false: write one of them."))
                else:
                    data[column] = value
        else:
            data[column] = _plain(raw)
    return data, errors


def _title(cell: str, incident: Incident | None) -> str:
    """The title trimmed, as the admin and the API trim it (one of spaces alone is then blank, which
    the model refuses at the row's title). An existing incident's title kept with spaces around it
    (stored before the doors trimmed) reads as unchanged when the file holds it so: an unchanged
    export imports back changing nothing."""
    title = _plain(cell).strip()
    if incident is not None and incident.title.strip() == title:
        return incident.title
    return title


# The time a spreadsheet adds to a date cell it holds as a date and time ("2023-08-29 00:00:00"):
# the same day. Any other time is refused: an incident's dates are days.
_MIDNIGHT = re.compile(r"(?<=^\d{4}-\d{2}-\d{2})[ T]00:00(:00(\.0+)?)?$", re.ASCII)


def _blank_date_message(column: str, record: dict[str, str], start: date | None, incident: Incident | None) -> str:
    """An end left empty beside a start is asked for in the admin's words ("2021-07-31, the month's
    last day, for a Month"), at the precision the row writes, else the incident's, else a new
    incident's default."""
    if column != "date_end" or start is None:
        return "This field cannot be blank; write the date as YYYY-MM-DD."
    precision = _choice("date_precision", record.get("date_precision", "").strip()) or (
        incident.date_precision if incident else Incident._meta.get_field("date_precision").default
    )
    return end_date_missing_message(start, precision)


def _choice(column: str, written: str) -> str | None:
    """The value of a choice column written as the export writes it (`at_least`) or as the admin
    labels it (`At least`), in any case; None for anything else."""
    folded = written.casefold()
    for value, label in Incident._meta.get_field(column).choices:
        if folded in (value.casefold(), str(label).casefold()):
            return value
    return None


def _name_indexes(user, records: list[dict[str, str]]) -> dict[str, _Names]:
    """Everything the file's names could refer to, in one query per kind, and one more that
    folds every name compared (`_NameFolding`). Sources are looked up among those the user may
    see (a hidden source is as unknown as a missing one), and only by the titles the file uses,
    since there are many."""
    named, titles, ids = set(), set(), set()
    for column in NAME_COLUMNS:
        for cell in {record.get(column, "") for record in records}:
            try:
                items = _parse_items(_plain(cell), paths=column == "places", source_ids=column == "sources")
            except _MalformedCell:
                continue  # reported with its row
            for item in items:
                named.update(item.names)
                if column == "sources":
                    titles.add(item.names[-1])
                    ids.update([item.source_id] if item.source_id is not None else [])
    named.update(record.get("type", "").strip() for record in records)
    # The file's titles lowercased by PostgreSQL, as the sources' are: a title missed here was
    # unknown even as written, or made a second time by create_missing.
    folded_titles = RawSQL("SELECT lower(title) FROM unnest(%s::text[]) AS title", [sorted(titles)])
    # The file's titles as sources' titles are compared, for a title none has as written (_Sources).
    comparable = comparable_titles(titles)
    sources = list(
        Source.objects.visible_to(user)
        .annotate(folded=Lower("title"))
        .filter(Q(folded__in=folded_titles) | Q(pk__in=ids))
        # `confidential`: incidents_bulk_validate checks the user may cite each source.
        .only("pk", "title", "confidential")
    )
    types = list(IncidentType.objects.all())
    places = list(Place.objects.only("pk", "name", "alternate_names", "parent_id", "country"))
    organizations = list(Organization.objects.only("pk", "name", "acronym", "aliases"))
    fold = _NameFolding(
        chain(
            named,
            (source.title for source in sources),
            *((kind.name, kind.slug) for kind in types),
            *((place.name, *place.alternate_names) for place in places),
            *((organization.name, organization.acronym, *organization.aliases) for organization in organizations),
        )
    )
    return {
        "type": _Types(types, fold),
        "places": _Places(places, fold),
        "perpetrators": _Organizations(organizations, fold),
        "sources": _Sources(sources, sources_titled_alike(user=user, comparable=comparable), comparable, fold),
    }


def _existing_incidents(user, records: list[dict[str, str]]) -> dict[str, Incident]:
    """The incidents the file's rows name that `user` may see, and the merged ones an incremental
    export (`synced_to`) gives them, so that its file imports back (a merged row may not change)."""
    public_ids = {record.get("public_id", "").strip() for record in records} - {""}
    incidents = (
        Incident.objects.synced_to(user)
        .filter(public_id__in=public_ids)
        .select_related("incident_type", "merged_into")
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
    of being an error; a source marked confidential, a confidential one, if `user` may make one."""

    def __init__(self, indexes: dict[str, _Names], create_missing: bool, user):
        self.indexes = indexes
        self.create_missing = create_missing
        self.confidential_refusal = confidentiality_change_refusal(user, confidential=False)
        # column -> (parent place's id or None, the name's `missing_key`) -> record
        self.missing: dict[str, dict[tuple[int | None, str], models.Model]] = defaultdict(dict)
        self.cells: dict[tuple[str, str], tuple[tuple[models.Model, ...], list[str]]] = {}
        # sources cell -> its claims (`PlannedRow.claims`)
        self.claims: dict[str, tuple[tuple[Source, bool], ...]] = {}
        # The records errors list as candidates (`ImportReport.named_in_errors`).
        self.named_in_errors: list[models.Model] = []

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
        if column == "type":
            if not cell.strip():
                return (), ["This field cannot be blank."]
            items = [_Item((cell.strip(),))]
        else:
            try:
                items = _parse_items(_plain(cell), paths=column == "places", source_ids=column == "sources")
            except _MalformedCell as malformed:
                return (), [str(malformed)]
        found, problems = [], []
        for item in items:
            if item.claim_confidential and self.confidential_refusal:
                # Refused here, naming the column, as a marked new source is (`_missing_record`).
                problems.append(f"{item} marks a confidential claim: {self.confidential_refusal}")
                continue
            matches, problem = index.find(item)
            if problem:
                problems.append(problem)
            elif len(matches) == 1:
                found.append((matches[0], item.claim_confidential))
            elif matches:
                self.named_in_errors.extend(matches)
                candidates = sorted((index.describe(match) for match in matches), key=_numbers_as_numbers)
                problems.append(
                    f"{str(item)!r} matches {len(matches)} {index.kind}s; write one of: {', '.join(candidates)}."
                )
            elif self.create_missing:
                record, problem = self._missing_record(column, item)
                problems.extend([problem] if problem else [])
                found.extend([(record, item.claim_confidential)] if record else [])
            else:
                problems.append(
                    f"Unknown {index.kind} {str(item)!r}; add it first, or import with --create-missing "
                    "(in the admin: 'Create missing') to create it."
                )
        # Two spellings of one name are one record, the same object (each record is loaded, or made,
        # once): told apart by identity, which new records have before they have a primary key.
        if column == "sources":
            self.claims[cell] = tuple({(id(record), marked): (record, marked) for record, marked in found}.values())
        return tuple({id(record): record for record, _ in found}.values()), problems

    def _missing_record(self, column: str, item: _Item) -> tuple[models.Model | None, str]:
        """The record `create_missing` makes for an unknown `item` (once per file: the first
        spelling names it, later ones refer to it), not saved yet; or why it cannot."""
        index, name = self.indexes[column], item.names[-1]
        if item.source_id is not None:
            return None, f"No source #{item.source_id} that you may see ({item}); ids come from the database."
        if len(name) > _max_name_length(column):
            return None, f"{name!r} is too long for a new {index.kind}."
        if problems := _name_problems(column, name):
            # Its validators, as the admin and the API run them: the new record is saved unchecked.
            return None, f"{name!r} cannot name a new {index.kind}: {' '.join(problems)}"
        if item.confidential and self.confidential_refusal:
            return None, f"{item} is marked confidential: {self.confidential_refusal}"
        if column == "places" and len(item.names) > TREE_LEVELS_MAX:
            # Refused before making a place a level, as `Place.clean()` refuses one made in the
            # admin or the API: a path a thousand levels deep made them by recursion, a 500.
            return None, f"Unknown place {str(item)!r}: " + PLACE_TOO_DEEP_MESSAGE.format(
                limit=TREE_LEVELS_MAX, what=repr(name), level=len(item.names)
            )
        parent = None
        if len(item.names) > 1:
            # A new place inside another: its path up to the parent names one place, or none, and
            # then that place is made too, outermost first (`China > Jilin > Tumen` makes Jilin in
            # China and Tumen in it), as an analyst entering a new town's province expects.
            parent_item = _Item(item.names[:-1])
            parents, _ = index.find(parent_item)
            if len(parents) > 1:
                self.named_in_errors.extend(parents)
                candidates = ", ".join(sorted((index.describe(match) for match in parents), key=_numbers_as_numbers))
                return (
                    None,
                    f"Unknown place {str(item)!r}, and {str(parent_item)!r} matches {len(parents)} places to "
                    f"create it in; write the path of one of: {candidates}.",
                )
            parent, problem = (parents[0], "") if parents else self._missing_record(column, parent_item)
            if problem:
                return None, problem
            if (level := index.level(parent) + 1) > TREE_LEVELS_MAX:
                return None, f"Unknown place {str(item)!r}: " + PLACE_TOO_DEEP_MESSAGE.format(
                    limit=TREE_LEVELS_MAX, what=repr(name), level=level
                )
        # A new parent has no key yet: the object itself, made once per path, stands for it.
        key = (None if parent is None else parent.pk or ("new", id(parent)), index.missing_key(name))
        if key not in self.missing[column]:
            if column == "type" and (problem := self._new_type_slug_problem(name)):
                return None, problem
            country_code = index.country_code(name) if column == "places" and parent is None else ""
            record = _new_record(column, name, parent, country_code)
            # A new top-level place says where it is, as every write of a place must
            # (`Place.where_errors`); a file cannot say that one lies in no country, so only a
            # country passes. (A place under a new parent takes that parent's country, and has no
            # parent id to check yet.)
            if isinstance(record, Place) and parent is None and record.where_errors():
                return None, (
                    f"Unknown place {name!r}, which is not a country's name: write its path under a known "
                    "place (China > Jilin > Tumen), or add it in the admin, so that its incidents are "
                    "counted in its country."
                )
            self.missing[column][key] = record
        record = self.missing[column][key]
        if item.confidential:
            # Any spelling marked confidential makes the one new source confidential: never public.
            record.confidential = True
        return record, ""

    def _new_type_slug_problem(self, name: str) -> str:
        """Why a new type named `name` cannot have the slug made of its name (`_type_slug`), or "".
        Types are named by slug in files and addresses, and the slug is unique: two names apart
        but for punctuation ("Forced repatriation!") made one slug, which the database refused
        once the import wrote, and the import said someone else had added the type meanwhile."""
        slug = _type_slug(name)
        if not slug:
            return f"{name!r} cannot name a new type: it has no letter or digit to make its slug of."
        if taken := self.indexes["type"].slugs.get(slug):
            return (
                f"{name!r} cannot name a new type: its slug would be {slug!r}, which the type {taken.name!r} "
                f"has. Write {slug} for that type, or name the new one apart."
            )
        made = next((kind for kind in self.missing["type"].values() if kind.slug == slug), None)
        if made:
            return (
                f"{name!r} cannot name a new type: its slug would be {slug!r}, as would that of {made.name!r}, "
                "a new type this file names too. Write one name for both, or name them apart."
            )
        return ""


def _type_slug(name: str) -> str:
    """The slug of a type `create_missing` makes, from its name."""
    return slugify(name, allow_unicode=True)[: IncidentType._meta.get_field("slug").max_length]


def _max_name_length(column: str) -> int:
    model, name_field = MISSING_RECORD_FIELDS[column]
    return model._meta.get_field(name_field).max_length


def _name_problems(column: str, name: str) -> list[str]:
    """Why `name` cannot be the name of a new record in `column` (a line break in it), or nothing:
    the field's rules, said of the name as the record is saved (`_new_record`, in normal form),
    which may be blank (only a zero-width space) or longer (composing lengthens some scripts)."""
    model, name_field = MISSING_RECORD_FIELDS[column]
    field = model._meta.get_field(name_field)
    try:
        field.run_validators(name)
        field.clean(normal_text(name, one_line=True), None)
    except ValidationError as invalid:
        return list(dict.fromkeys(invalid.messages))
    return []


def _new_record(column: str, name: str, parent: Place | None = None, country_code: str = "") -> models.Model:
    """The record `create_missing` makes for an unknown name in `column`, not saved yet: a place
    inside `parent`, in its country, or the country of `country_code`."""
    model, name_field = MISSING_RECORD_FIELDS[column]
    # Saved without the model's validation, which would write it so.
    fields = {name_field: normal_text(name, one_line=True)}
    if model is IncidentType:
        fields["slug"] = _type_slug(name)
    if parent is not None:
        fields.update(parent=parent, country=parent.country)
    elif country_code:
        fields.update(kind=PlaceKind.COUNTRY, country=country_code)
    return model(**fields)


def _current_values(incident: Incident) -> dict[str, Any]:
    return {name: getattr(incident, name) for name in ("incident_type", *FIELD_COLUMNS)}


def _check_workflow(line, incident: Incident | None, data: dict[str, Any], user) -> list[RowError]:
    """The review states, verification and confidentiality the user's role allows, as the services
    check them."""
    was_confidential = incident.confidential if incident else False
    confidentiality = confidentiality_errors(
        user,
        was_confidential=was_confidential,
        confidential=data.get("confidential", was_confidential),
        field="confidential",
    )
    return _row_errors(line, {**workflow_errors(user=user, incident=incident, data=data), **confidentiality})


def _changes(incident: Incident, row: PlannedRow) -> list[str]:
    # A text as stored but for its normal form (a zero-width space at a title's end) is no change,
    # as the write then finds (`services.same_text`): it was reported "1 updated".
    changes = [
        "type" if name == "incident_type" else name
        for name, value in row.data.items()
        if (stored := getattr(incident, name)) != value and not same_text(Incident._meta.get_field(name), value, stored)
    ]
    current = {
        "places": set(incident.places.all()),
        "perpetrators": {
            involvement.organization
            for involvement in incident.involvements.all()
            if involvement.role == InvolvementRole.PERPETRATOR
        },
    }
    for column, records in row.names.items():
        # Compared by primary key: a record create_missing makes has none yet, and is a change.
        if column == "sources" or records is None:
            continue
        if {record.pk for record in records} != {record.pk for record in current[column]}:
            changes.append(column)
    if row.names["sources"] is not None and _claims_change(row):
        changes.append("sources")
    return changes


def _claims_change(row: PlannedRow) -> bool:
    """Whether the row's sources change the user's visible claims as `_claims_after` writes them: a
    listed source without a visible claim gains one (`_claims_new`), and a visible claim goes unless its source is
    listed or it is confidential (`row.claims_removed`). Claim by claim, not source by source: a
    source cited both publicly and in confidence whose row leaves it out loses its public claim,
    although its confidential one keeps it cited."""
    return bool(row.claims_removed) or bool(_claims_new(row, row.incident.visible_claims))


def _confidential_claims_added(row: PlannedRow) -> list[Source]:
    """The sources the row claims in confidence anew (`_claims_after`): each claim of a new
    incident, and of an update only when it writes (a row that changes nothing adds nothing)."""
    if row.incident is None:
        added = row.claims
    elif not row.changes:
        return []
    else:
        added = _claims_new(row, [claim for claim in row.incident.visible_claims if claim not in row.claims_removed])
    return [source for source, marked in added if marked]


def _claims_new(row: PlannedRow, kept: list[Claim]) -> list[tuple[Source, bool]]:
    """The row's claims (`PlannedRow.claims`) that none of the `kept` claims makes: a source listed
    plainly is claimed by any claim of it (a file without the marks changes no claim), one marked
    `[confidential claim]` by a confidential claim of it."""
    return [
        (source, marked)
        for source, marked in row.claims
        if not any(claim.source == source and (claim.confidential or not marked) for claim in kept)
    ]


# Imports that create incidents and look for their duplicates take this transaction-level advisory
# lock, one after the other (the two-key form, apart from the services' one-key locks).
_NEW_INCIDENTS_LOCK = "hashtext('incidents.import_new_incidents'), 0"


def _write(plan: _Plan, user, report: ImportReport, *, duplicates: Duplicates) -> None:
    """Write every planned row in one transaction, as `user`; any failure undoes it all. New
    incidents go in bulk; updates one by one, each with its version check. The file was checked
    outside this transaction, against what was committed then: what another write changed since
    is checked again here, and undoes the import if it changes what the file does."""
    try:
        with transaction.atomic(), pghistory.context(user=user.pk, import_file=report.file_name or None):
            _refuse_sources_added_meanwhile(plan, user)
            # Before the incidents that name them, which take their primary keys when written.
            for column, record, described in plan.missing:
                try:
                    record.save(force_insert=True)
                except IntegrityError as error:
                    if not isinstance(error.__cause__, UniqueViolation):
                        raise
                    raise _NameTakenMeanwhile(plan.first_line_naming(record), column, record, described) from None
            if plan.new_incidents and duplicates != Duplicates.ALLOW:
                _refuse_duplicates_added_meanwhile(plan, user)
            incidents_bulk_create(user=user, incidents=plan.new_incidents)
            for row in plan.rows:
                if row.incident is not None and row.changes:
                    _update(row, user)
    except _ChangedMeanwhile as changed:
        # Nothing was written, and the file may still be good: imported again, it is checked
        # against what the other write left.
        report.met_another_write = True
        raise _InvalidFile(RowError(changed.line, "", changed.message)) from None
    except _RowNotWritten as failure:
        error = failure.__cause__
        message = "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        raise _InvalidFile(RowError(failure.line, "", message)) from None
    except _NameTakenMeanwhile as taken:
        # Nothing was written, and the file may still be good: imported again, its row names the
        # record added meanwhile, as the admin's preview shown again says.
        report.met_another_write = True
        raise _InvalidFile(RowError(taken.line, taken.column, taken.message)) from None
    except DatabaseError as error:
        # The import and another write waited for each other (a reviewer changing a place the file
        # links, say), and PostgreSQL stopped the import; the other write, once committed, no longer
        # stands in its way. Or a record the rows link was deleted meanwhile, which the foreign keys
        # find at commit.
        if is_write_conflict(error):
            report.met_another_write = True
            raise _InvalidFile(RowError(0, "", IMPORT_MET_ANOTHER_WRITE_MESSAGE)) from None
        if isinstance(error, IntegrityError):
            # PostgreSQL's words name its constraints and the rows' keys, which the file does not.
            raise _InvalidFile(
                RowError(0, "", "The data changed during the import, which was undone; try again.")
            ) from None
        raise


def _refuse_sources_added_meanwhile(plan: _Plan, user) -> None:
    """A source has no unique title to meet, as a new place or organization does: wait, as the
    admin's and the API's new source does, for any other new source of a title or address the
    import makes, then look for them. Three queries, and one a title or address."""
    new_sources = [missing for missing in plan.missing if isinstance(missing[1], Source)]
    if not new_sources:
        return
    wait_for_sources_alike(*(record for _, record, _ in new_sources))
    titles = comparable_titles(record.title for _, record, _ in new_sources)
    added = sources_titled_alike(user=user, comparable=titles)
    for column, record, described in new_sources:
        if record.title in added:
            raise _NameTakenMeanwhile(plan.first_line_naming(record), column, record, described)


def _refuse_duplicates_added_meanwhile(plan: _Plan, user) -> None:
    """The new rows were checked for duplicates against what was committed then: two imports of one
    file at the same moment each found none, and both wrote every incident. One import at a time
    looks again, under a lock held to its commit, and finds the other's. Every new row written had
    none then (else the import stopped, or skipped it)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_advisory_xact_lock({_NEW_INCIDENTS_LOCK})")
    new_rows = [row for row in plan.rows if row.incident is None]
    found = Incident.objects.visible_to(user).possible_duplicates_of_new(
        _duplicate_candidates(new_rows), settings.DUPLICATE_WINDOW_DAYS
    )
    if found:
        raise _ChangedMeanwhile(
            new_rows[min(found)].line,
            "Incidents this row may duplicate were added by someone else while the file was being imported, and "
            "the import was undone: nothing of it was written. Import the file again to see them.",
        )


def _creation(row: PlannedRow) -> dict[str, Any]:
    """The row as incidents_bulk_validate takes a new incident."""
    return {
        "data": row.data,
        "places": row.names["places"] or (),
        "claims": [{"source": source, "confidential": marked} for source, marked in row.claims],
        "involvements": [
            {"organization": organization, "role": InvolvementRole.PERPETRATOR}
            for organization in row.names["perpetrators"] or ()
        ],
    }


def _update(row: PlannedRow, user) -> None:
    # The row's claims and organizations were read while the file was checked. Its version check is
    # the file's audience's, which does not move with a change it does not see (an informant's claim
    # corrected or added): written now, those read before would undo that change, or delete the
    # claim. Any change since that the importer sees undoes the import; one hidden from them touches
    # nothing they write (incident_update keeps what they may not see), and refused for it, they
    # would learn of it.
    stored = Incident.objects.select_for_update().get(pk=row.incident.pk)
    if version_seen_by(stored, user) != version_seen_by(row.incident, user):
        raise _ChangedMeanwhile(
            row.line,
            f"{row.incident.public_id} was changed by someone else while the file was being imported, and the "
            "import was undone: nothing of it was written. Import the file again.",
        )
    try:
        incident_update(
            incident=row.incident,
            user=user,
            expected_version=row.expected_version,
            told=row.versions_told,
            # A narrower audience's file keeps what it did not show: a claim it does not name stays.
            unshown_kept=True,
            data=row.data,
            places=row.names["places"] if "places" in row.changes else None,
            claims=_claims_after(row) if "sources" in row.changes else None,
            involvements=_involvements_after(row.incident, row.names["perpetrators"])
            if "perpetrators" in row.changes
            else None,
        )
    except (ValidationError, VersionConflict) as error:
        raise _RowNotWritten(row.line) from error


def _sources_of(claims: list[Claim]) -> str:
    """The claims' sources as the file's `sources` cell names them."""
    return "; ".join(csv_source_item(claim.source.title, claim.source_id) for claim in claims)


def _claims_unlisted(incident: Incident, sources: tuple[Source, ...]) -> tuple[list[Claim], list[Claim]]:
    """The incident's visible claims whose sources the row does not list: the public ones, which the
    import removes, and those the user sees only with the confidential permission, which it leaves.
    A file exported by a reader without that permission (the public's download, a colleague's
    export) lists no confidential source, and whoever imports it with the permission would
    otherwise delete the informants' claims without a word; they are removed in the admin or the
    API, where the claim itself is shown."""
    unlisted = [claim for claim in incident.visible_claims if claim.source not in sources]
    return (
        [claim for claim in unlisted if not claim.needs_confidential_access],
        [claim for claim in unlisted if claim.needs_confidential_access],
    )


def _claims_after(row: PlannedRow) -> list[dict[str, Any]]:
    """The user's visible claims once the row's sources apply: a listed source keeps its claim (with
    its figures and excerpt), a new one gets a bare claim, a visible public claim whose source is no
    longer listed goes (`row.claims_removed`), a confidential one stays (_claims_unlisted). Claims the
    user may not see are left alone by incident_update itself, and count for nothing here: a listed
    source with only a hidden (confidential) claim gets the user's public one beside it, as at every
    other door, whether or not the hidden claim exists."""
    kept = [claim for claim in row.incident.visible_claims if claim not in row.claims_removed]
    # Not the generated label: what is written, which the label is computed from.
    fields = [
        field.attname for field in Claim._meta.concrete_fields if field.name != "incident" and not field.generated
    ]
    claims = [{name: getattr(claim, name) for name in fields} for claim in kept]
    return claims + [{"source": source, "confidential": marked} for source, marked in _claims_new(row, kept)]


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
