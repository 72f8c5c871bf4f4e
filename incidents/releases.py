"""Citable dataset releases: the published data frozen as `incident-tracker-YYYY.N`.

A release holds what an anonymous reader may see, read through the same `visible_to` and
`coordinates_for` rules as every other door (no draft, nothing confidential, no exact coordinate of
a sensitive place): one CSV per table, a Frictionless Data package (`datapackage.json`: each
column's type, allowed values and description, the keys between tables, each file's sha256 and
size, and the licence: settings.DATA_LICENSE), a codebook generated from the models' own help
texts, `CHANGES.csv` against the previous release and a README with the terms of reuse and the
citation.

The files are a function of the data (and those settings) alone (rows in key order, no build time, no random order),
so building a release twice from the same data gives the same bytes, and anyone can check a copy
against the checksums. `release_create` is the one service that writes a release; the admin, the
API and `manage.py release` call it. The whole release also downloads as one zip of its files, to
cite and deposit (`release_zip_chunks`), made again at each download, always the same bytes.
"""

import codecs
import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import connection, connections, models, transaction
from django.db.models import F, Max
from django.utils import timezone, translation
from django_countries.fields import CountryField

from incidents import services
from incidents.exports import csv_list_item
from incidents.models import (
    Claim,
    Incident,
    IncidentPlace,
    IncidentType,
    IncidentWithdrawal,
    Involvement,
    Organization,
    Place,
    Release,
    ReleaseFile,
    ReleaseZip,
    Response,
    Source,
    VictimGroup,
)
from incidents.querysets import version_fields, visible_source_id

# Releases publish what anyone may read: the rules are those of an anonymous reader.
PUBLIC = AnonymousUser()
# The version and change time of an incident that the public is told, which move only with a change
# it can see (`version_fields`). The released sources and responses carry none.
PUBLIC_VERSIONS = version_fields(PUBLIC).of(Incident)

MULTI_VALUE_SEPARATOR = "; "
# A name may hold the separator ("Kirin; Chi-lin" is one alternate name): each is written as the CSV
# export writes names in a cell (`csv_list_item`), in double quotes when it holds `;` or `"`, so the
# cell reads back as the list it was, as a CSV line whose separator is ";".
LIST_CELL = (
    f"Separated by '{MULTI_VALUE_SEPARATOR}'; a name holding ';', '>', '[' or '\"', or starting or ending with a "
    "space, is in double quotes with inner quotes doubled: read the cell as a CSV line whose separator is ';'."
)


@dataclass(frozen=True)
class Column:
    """One column of a released table. Its type, allowed values and description come from the
    model field `field` (its help text, else its verbose name); `value` is what is read when it is
    not the field itself; `description` adds what the field's help text cannot say."""

    name: str
    field: str | None = None
    value: str | models.Expression | None = None
    description: str = ""
    type: str = ""
    # Allowed values and their meanings, for a column without a model field that has choices.
    choices: tuple[tuple[str, str], ...] = ()
    # False where the field's help text tells the admin's form how to type the value ("comma-separated"),
    # which is not how the file writes it: `description` says it alone.
    help_text: bool = True


@dataclass(frozen=True)
class Table:
    name: str
    model: type[models.Model]
    description: str
    rows: Callable[[], models.QuerySet]
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    # (column, table, column): each value is one of that table's keys.
    foreign_keys: tuple[tuple[str, str, str], ...] = field(default=())


def _released_incidents() -> models.QuerySet:
    return Incident.objects.visible_to(PUBLIC)


def _released_ids() -> models.QuerySet:
    return _released_incidents().values("pk")


# A place's coordinates as the public sees them (`coordinates_for`), which are another place's where
# its own are not recorded too (migration 0007): said, so that a village shown at its province's
# centre is not read as placed there.
SHOWN_COORDINATE = (
    "WGS 84. The place's own, but for a sensitive place, the places inside it and a place whose own are not "
    "recorded: those of the nearest place containing them that is neither sensitive nor inside a sensitive one, "
    "and has some (empty if none)."
)
INCIDENT_KEY = Column("incident", "incident", "incident__public_id", "The incident's public_id.", "string")

TABLES = (
    Table(
        "incident_types",
        IncidentType,
        "The vocabulary of incident types, a tree.",
        lambda: IncidentType.objects.order_by("slug"),
        (
            Column("slug", "slug", description="Stable identifier of the type."),
            Column("name", "name"),
            Column("parent", "parent", "parent__slug", "The broader type's slug.", "string"),
            Column("description", "description"),
        ),
        ("slug",),
        (("parent", "incident_types", "slug"),),
    ),
    Table(
        "incidents",
        Incident,
        "Published incidents, one row each.",
        lambda: _released_incidents().with_independent_origins(PUBLIC).order_by("id"),
        (
            Column("public_id", "public_id", description="Stable identifier (INC-000042), never reused."),
            Column("title", "title"),
            Column("incident_type", "incident_type", "incident_type__slug", "The type's slug.", "string"),
            Column("description", "description"),
            Column("date_start", "date_start"),
            Column("date_end", "date_end"),
            Column("date_precision", "date_precision"),
            Column("date_label", "date_label", description="The dates as people write them (e.g. July 2021)."),
            Column("people_count", "people_count"),
            Column("people_count_min", "people_count_min", description="The lowest plausible number of people."),
            Column("people_count_max", "people_count_max", description="The highest plausible number of people."),
            Column("count_qualifier", "count_qualifier"),
            Column("verification", "verification", description="How well established the incident is."),
            Column(
                "independent_origins",
                value="independent_origins",
                type="integer",
                description="Origins at the end of the claims' sources' `cites` chains, as far as they are "
                "public; sources relaying one origin count once.",
            ),
            Column("version", PUBLIC_VERSIONS.version, description="Rises with every change to the incident."),
            Column("updated_at", PUBLIC_VERSIONS.updated_at, description="When the incident last changed (UTC)."),
        ),
        ("public_id",),
        (("incident_type", "incident_types", "slug"),),
    ),
    Table(
        "incident_places",
        IncidentPlace,
        "Where each incident happened: one row per incident and place.",
        lambda: IncidentPlace.objects.filter(incident__in=_released_ids()).order_by("incident_id", "place_id"),
        (INCIDENT_KEY, Column("place", "place", "place_id", "The place's id.")),
        ("incident", "place"),
        (("incident", "incidents", "public_id"), ("place", "places", "id")),
    ),
    Table(
        "places",
        Place,
        "Places, each inside its parent (city, province, country).",
        lambda: Place.objects.with_coordinates_for(PUBLIC).order_by("id"),
        (
            Column("id", "id"),
            Column("name", "name"),
            Column(
                "alternate_names",
                "alternate_names",
                description=f"Names in Korean, Chinese and their romanisations. {LIST_CELL}",
                help_text=False,
            ),
            Column("kind", "kind"),
            Column("parent", "parent", "parent_id"),
            Column("country", "country"),
            Column(
                "latitude",
                "latitude",
                "shown_latitude",
                SHOWN_COORDINATE,
            ),
            Column(
                "longitude",
                "longitude",
                "shown_longitude",
                SHOWN_COORDINATE,
            ),
            Column("sensitive", "sensitive"),
        ),
        ("id",),
        (("parent", "places", "id"),),
    ),
    Table(
        "organizations",
        Organization,
        "Organizations: perpetrators, publishers of sources, responders.",
        lambda: Organization.objects.order_by("id"),
        (
            Column("id", "id"),
            Column("name", "name"),
            Column("acronym", "acronym"),
            Column("kind", "kind"),
            Column("country", "country"),
            Column("website", "website"),
            Column("description", "description"),
            Column(
                "aliases",
                "aliases",
                description=f"Other spellings and names in other languages. {LIST_CELL}",
                help_text=False,
            ),
        ),
        ("id",),
    ),
    Table(
        "sources",
        Source,
        "Public sources: reports, articles, testimonies.",
        lambda: (
            Source.objects.visible_to(PUBLIC)
            .annotate(public_cites=visible_source_id(PUBLIC, "cites_id"))
            .order_by("id")
        ),
        (
            Column("id", "id"),
            Column("title", "title"),
            Column("kind", "kind"),
            Column("url", "url"),
            Column("publisher", "publisher", "publisher_id"),
            Column("author", "author"),
            Column("published_on", "published_on"),
            Column("language", "language"),
            Column("archive_url", "archive_url"),
            Column("cites", "cites", "public_cites", "Empty when it cites nothing or a source that is not public."),
        ),
        ("id",),
        (("publisher", "organizations", "id"), ("cites", "sources", "id")),
    ),
    Table(
        "claims",
        Claim,
        "What each public source says about each incident, as it said it.",
        lambda: Claim.objects.visible_to(PUBLIC).order_by("id"),
        (
            Column("id", "id"),
            INCIDENT_KEY,
            Column("source", "source", "source_id"),
            # The source's own figures and dates, beside the analysts' estimate in incidents.csv: the
            # fields' verbose names alone ("People count min.") did not tell them apart.
            Column("people_count", "people_count", description="The number of people the source reports."),
            Column("people_count_min", "people_count_min", description="The lowest figure the source gives."),
            Column("people_count_max", "people_count_max", description="The highest figure the source gives."),
            Column("count_qualifier", "count_qualifier"),
            Column("date_start", "date_start"),
            Column("date_end", "date_end"),
            Column("date_precision", "date_precision"),
            Column(
                "date_label",
                "date_label",
                description="The dates as the source gives them (e.g. July 2021, Since March 2020, "
                "Before 9 October 2023); empty if none.",
            ),
            Column("excerpt", "excerpt"),
            Column("locator", "locator"),
            Column("source_connection", "source_connection"),
        ),
        ("id",),
        (("incident", "incidents", "public_id"), ("source", "sources", "id")),
    ),
    Table(
        "involvements",
        Involvement,
        "Organizations involved in each incident, and their role.",
        lambda: Involvement.objects.filter(incident__in=_released_ids()).order_by("id"),
        (
            Column("id", "id"),
            INCIDENT_KEY,
            Column("organization", "organization", "organization_id"),
            Column("role", "role"),
        ),
        ("id",),
        (("incident", "incidents", "public_id"), ("organization", "organizations", "id")),
    ),
    Table(
        "victim_groups",
        VictimGroup,
        "The people each incident affected, by group.",
        lambda: VictimGroup.objects.filter(incident__in=_released_ids()).order_by("id"),
        (
            Column("id", "id"),
            INCIDENT_KEY,
            Column("count", "count", description="How many people of the incident are in the group."),
            Column("sex", "sex"),
            Column("age_group", "age_group"),
            Column("nationality", "nationality"),
            Column("description", "description"),
        ),
        ("id",),
        (("incident", "incidents", "public_id"),),
    ),
    Table(
        "responses",
        Response,
        "Organizations' reactions to incidents.",
        lambda: (
            Response.objects.visible_to(PUBLIC)
            .annotate(public_source=visible_source_id(PUBLIC, "source_id"))
            .order_by("id")
        ),
        (
            Column("id", "id"),
            Column("organization", "organization", "organization_id"),
            Column("kind", "kind"),
            Column("date", "date"),
            Column("description", "description"),
            Column("source", "source", "public_source", "Empty when it has none or one that is not public."),
        ),
        ("id",),
        (("organization", "organizations", "id"), ("source", "sources", "id")),
    ),
    Table(
        "response_incidents",
        Response.incidents.through,
        "Which incidents each response is about.",
        lambda: Response.incidents.through.objects.filter(incident__in=_released_ids()).order_by(
            "response_id", "incident_id"
        ),
        (Column("response", "response", "response_id"), INCIDENT_KEY),
        ("response", "incident"),
        (("response", "responses", "id"), ("incident", "incidents", "public_id")),
    ),
)

CHANGE_KINDS = (
    ("added", "Released for the first time (new, or newly published)."),
    ("updated", "Changed since the previous release (its version rose)."),
    ("merged", "In the previous release, since merged into another incident of this one (`merged_into`)."),
    ("withdrawn", "In the previous release, not in this one (returned to draft, made confidential or deleted)."),
)
CHANGES = Table(
    "CHANGES",
    Incident,
    "Incidents added, updated, merged or withdrawn since the previous release.",
    Incident.objects.none,
    (
        Column("public_id", "public_id", description="The incident's public_id."),
        Column(
            "change", description="What happened to it since the previous release.", type="string", choices=CHANGE_KINDS
        ),
        Column(
            "merged_into",
            description="For a merged incident, the public_id of the incident of this release it was merged into.",
            type="string",
        ),
    ),
    ("public_id",),
)


def _model_field(table: Table, column: Column) -> models.Field | None:
    return table.model._meta.get_field(column.field) if column.field else None


def _frictionless_type(model_field: models.Field) -> str:
    if isinstance(model_field, models.GeneratedField):
        return _frictionless_type(model_field.output_field)
    if isinstance(model_field, models.ForeignKey):
        return _frictionless_type(model_field.target_field)
    if isinstance(model_field, models.BooleanField):
        return "boolean"
    if isinstance(model_field, (models.IntegerField, models.AutoField)):
        return "integer"
    if isinstance(model_field, models.DecimalField):
        return "number"
    # DateTimeField is a DateField: test it first.
    if isinstance(model_field, models.DateTimeField):
        return "datetime"
    if isinstance(model_field, models.DateField):
        return "date"
    return "string"


def _description(column: Column, model_field: models.Field | None) -> str:
    """The field's help text, then what the column adds; the field's verbose name if neither says anything."""
    parts = (
        [str(model_field.help_text)] if model_field is not None and model_field.help_text and column.help_text else []
    )
    if column.description:
        parts.append(column.description)
    if not parts and model_field is not None:
        parts.append(f"{str(model_field.verbose_name).capitalize()}.")
    return " ".join(parts)


def _choices(column: Column, model_field: models.Field | None) -> list[tuple[str, str]]:
    if column.choices:
        return list(column.choices)
    # A country's 250 codes are described by their pattern instead.
    if model_field is None or isinstance(model_field, CountryField) or not model_field.choices:
        return []
    return [(str(value), str(label)) for value, label in model_field.flatchoices]


def _schema_field(table: Table, column: Column) -> dict:
    model_field = _model_field(table, column)
    descriptor = {
        "name": column.name,
        "type": column.type or _frictionless_type(model_field),
        "description": _description(column, model_field),
    }
    constraints = {}
    if model_field is not None and not model_field.null and not model_field.blank:
        constraints["required"] = True
    if column.name in table.primary_key:
        constraints["required"] = True
    choices = _choices(column, model_field)
    if choices:
        constraints["enum"] = [value for value, _ in choices]
    if isinstance(model_field, CountryField):
        constraints["pattern"] = "[A-Z]{2}"
        descriptor["description"] += " ISO 3166-1 alpha-2 country code."
    if isinstance(model_field, models.PositiveIntegerField | models.PositiveBigIntegerField):
        constraints["minimum"] = 0
    if constraints:
        descriptor["constraints"] = constraints
    return descriptor


def _schema(table: Table) -> dict:
    schema = {
        "fields": [_schema_field(table, column) for column in table.columns],
        "primaryKey": list(table.primary_key),
    }
    if table.foreign_keys:
        schema["foreignKeys"] = [
            {"fields": [column], "reference": {"resource": "" if other == table.name else other, "fields": [key]}}
            for column, other, key in table.foreign_keys
        ]
    return schema


def _cell(value) -> str:
    """A value as the CSV writes it: the same value always gives the same text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, list):
        return MULTI_VALUE_SEPARATOR.join(map(csv_list_item, value))
    return str(value)


# A release's files are built, stored and downloaded this much at a time: a million incidents'
# files are some 550 MB, `incidents.csv` 400 MB of them, which held whole would sit in the memory
# of the process building them or serving them (for a download, for each client at once).
FILE_CHUNK_BYTES = 1 << 20


def _csv_chunks(header: list[str], rows: Iterable[Sequence]) -> Iterator[bytes]:
    """The CSV of `rows`, encoded as it is written, in chunks of about FILE_CHUNK_BYTES."""
    out = io.BytesIO()
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        cells = [_cell(value) for value in row]
        if any("\r" in cell for cell in cells):
            text.write(_row_quoting_carriage_returns(cells))
        else:
            writer.writerow(cells)
        if out.tell() >= FILE_CHUNK_BYTES:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def _row_quoting_carriage_returns(cells: list[str]) -> str:
    """The CSV line of `cells`, one of which holds a carriage return, quoted as one holding a
    newline is. csv quotes only the delimiter, the quote and the line end's own characters, and
    ours is \n: a lone \r went out bare, which every reader takes for a line's end, so the row
    split in two for the release's readers, and the next release failed reading it back. Written
    with \r\n, whose \r csv then quotes, and ended with \n as every other line."""
    line = io.StringIO()
    csv.writer(line, lineterminator="\r\n").writerow(cells)
    return line.getvalue().removesuffix("\r\n") + "\n"


def _csv_rows(chunks: Iterable[bytes], size: int) -> Iterator[list[str]]:
    """The rows of a CSV file of `size` bytes read in chunks (`release_file_chunks`), without
    holding it whole: its lines, each with its newline, for `csv.reader`, which joins those of a
    quoted field. A cell is never longer than its file: csv's own limit, 131,072 characters, failed
    every release after one holding a longer description (the descriptions take 200,000). The
    limit is the process's: only ever raised, as the import raises it."""
    csv.field_size_limit(max(csv.field_size_limit(), size))

    def lines() -> Iterator[str]:
        pending = ""
        for text in codecs.iterdecode(chunks, "utf-8"):
            *complete, pending = (pending + text).split("\n")
            for line in complete:
                yield line + "\n"
        if pending:
            yield pending

    return csv.reader(lines())


def _table_rows(table: Table) -> Iterator[tuple]:
    reads = {}
    for column in table.columns:
        read = column.value or column.field
        reads[f"release_{column.name}"] = F(read) if isinstance(read, str) else read
    return table.rows().annotate(**reads).values_list(*reads).iterator(chunk_size=5000)


def _changes(now: dict[str, str], previous: Release | None) -> bytes:
    """CHANGES.csv: the incidents added, updated, merged and withdrawn since `previous`, by public_id;
    `now` is this release's version of each incident, as its incidents.csv writes it."""
    before = {}
    if previous is not None:
        incidents_file = previous.files.defer("content").get(name="incidents.csv")
        rows = _csv_rows(release_file_chunks(incidents_file), incidents_file.size)
        header = next(rows)
        public_id, version = header.index("public_id"), header.index("version")
        before = {row[public_id]: row[version] for row in rows}
    changes = [(public_id, "added", "") for public_id in now.keys() - before.keys()]
    changes += [
        (public_id, "updated", "") for public_id in now.keys() & before.keys() if now[public_id] != before[public_id]
    ]
    gone = before.keys() - now.keys()
    survivors = _released_survivors(gone, now.keys())
    changes += [
        (public_id, "merged", survivors[public_id]) if public_id in survivors else (public_id, "withdrawn", "")
        for public_id in gone
    ]
    return b"".join(_csv_chunks([column.name for column in CHANGES.columns], sorted(changes)))


def _released_survivors(public_ids: set[str], released: set[str]) -> dict[str, str]:
    """The incident of this release that each of `public_ids` was merged into, following merges of
    merges; none for an incident whose survivor is not released (reported as withdrawn: naming an
    unpublished survivor would reveal it)."""
    merged_into = {}
    asked = set(public_ids)
    while asked:
        # Only merges the public may follow, as the merged incident's address does (`redirect_target`):
        # one returned to draft or made confidential before its merge is only withdrawn.
        found = dict(
            Incident.objects.seen_by(PUBLIC)
            .filter(public_id__in=asked, merged_into__isnull=False)
            .values_list("public_id", "merged_into__public_id")
        )
        merged_into.update(found)
        asked = {target for target in found.values() if target not in released and target not in merged_into}
    survivors = {}
    for public_id in public_ids:
        target, seen = merged_into.get(public_id), {public_id}
        while target is not None and target not in released and target not in seen:
            seen.add(target)
            target = merged_into.get(target)
        if target in released:
            survivors[public_id] = target
    return survivors


def _noting_versions(rows: Iterable[Sequence], table: Table, versions: dict[str, str]) -> Iterator[Sequence]:
    """`rows` of the incidents table, each incident's version noted in `versions` as the file
    writes it, by public_id, as they pass (for CHANGES.csv)."""
    names = [column.name for column in table.columns]
    public_id, version = names.index("public_id"), names.index("version")
    for row in rows:
        versions[_cell(row[public_id])] = _cell(row[version])
        yield row


class ReleaseFileChunks:
    """One file of a release as it is built, in chunks, counted and hashed as they are read: its
    `size` and `sha256` once read to its end."""

    def __init__(self, name: str, chunks: Iterable[bytes]):
        self.name = name
        self.size = 0
        self._chunks = chunks
        self._digest = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._digest.update(chunk)
            self.size += len(chunk)
            yield chunk

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def _datapackage(name: str, as_of: datetime | None, tables: list[Table], files: dict[str, ReleaseFileChunks]) -> bytes:
    descriptor = {
        "profile": "tabular-data-package",
        "name": name,
        "title": f"{settings.RELEASE_TITLE}, release {name.removeprefix('incident-tracker-')}",
        "version": name.removeprefix("incident-tracker-"),
        "description": "Published, non-confidential incidents with their claims, sources, places, organizations "
        "and responses. See README.md and codebook.md.",
        "created": _cell(as_of) if as_of else None,
        # Frictionless `licenses`: the SPDX id (`name`), the text's address (`path`) and its `title`.
        "licenses": [settings.DATA_LICENSE] if settings.DATA_LICENSE else None,
        "resources": [
            {
                "name": table.name.lower(),
                "path": f"{table.name}.csv",
                "profile": "tabular-data-resource",
                "description": table.description,
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "bytes": files[f"{table.name}.csv"].size,
                "hash": f"sha256:{files[f'{table.name}.csv'].sha256}",
                "schema": _schema(table),
            }
            for table in tables
        ],
    }
    for optional in ("created", "licenses"):
        if descriptor[optional] is None:
            del descriptor[optional]
    return (json.dumps(descriptor, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _codebook(name: str, tables: list[Table]) -> bytes:
    lines = [f"# Codebook of {name}", "", "Generated from the data model's own descriptions.", ""]
    for table in tables:
        lines += [f"## {table.name}.csv", "", table.description, "", f"Key: {', '.join(table.primary_key)}.", ""]
        for column, other, key in table.foreign_keys:
            lines.append(f"`{column}` is a `{key}` of {other}.csv.")
        if table.foreign_keys:
            lines.append("")
        lines += ["| column | type | description | values |", "|---|---|---|---|"]
        for column in table.columns:
            descriptor = _schema_field(table, column)
            choices = _choices(column, _model_field(table, column))
            values = "; ".join(f"`{value}`: {label}" for value, label in choices)
            required = " (required)" if descriptor.get("constraints", {}).get("required") else ""
            lines.append(
                f"| `{column.name}` | {descriptor['type']}{required} | {descriptor['description']} | {values} |"
            )
        lines.append("")
    return "\n".join(lines).encode("utf-8")


def citation(release_name: str, year: int) -> str:
    return f"{settings.RELEASE_AUTHOR} ({year}). {settings.RELEASE_TITLE}, release {release_name} [Data set]."


def missing_license_warning(release_name: str) -> str | None:
    """What the doors that make a release say when it names no terms of reuse (TRACKER_DATA_LICENSE)."""
    if settings.DATA_LICENSE:
        return None
    return (
        f"{release_name} names no licence, so researchers cannot tell whether they may reuse it: set "
        "TRACKER_DATA_LICENSE, TRACKER_DATA_LICENSE_TITLE and TRACKER_DATA_LICENSE_URL before the next release "
        "(README, Dataset releases)."
    )


def _terms_of_reuse() -> list[str]:
    """The README's section on reuse: the licence, or a warning as plain as the missing licence is grave."""
    license = settings.DATA_LICENSE
    if license:
        return [f"Released under {license['title']} ({license['name']}): {license['path']}"]
    return [
        "**No licence.** This release names no terms of reuse: without a licence, copyright law leaves",
        "others no right to reuse it. Ask its authors for permission before reusing it, or for a licence.",
    ]


def _readme(name: str, year: int, as_of: datetime | None, files: dict[str, ReleaseFileChunks], incidents: int) -> bytes:
    listing = [f"- `{file_name}`: {file.size:,} bytes, sha256 `{file.sha256}`" for file_name, file in files.items()]
    text = [
        f"# {settings.RELEASE_TITLE}, release {name}",
        "",
        f"{incidents:,} published incidents, as of {_cell(as_of) if as_of else 'no incident'}: what anyone may read,",
        "without drafts, confidential records or the exact coordinates of sensitive places.",
        "",
        "## Terms of reuse",
        "",
        *_terms_of_reuse(),
        "",
        "## How to cite",
        "",
        citation(name, year),
        "",
        "## Files",
        "",
        *listing,
        "- `datapackage.json`: the Frictionless Data package describing every file above",
        "- `codebook.md`: every column, its type, meaning and allowed values",
        "",
        "Cells hold the data exactly as recorded, including text that a spreadsheet may read as a formula:",
        "import the CSV files as text rather than opening them directly.",
        "",
        # pandas (and R's read.csv) read `NA`, `None` or `null` as missing by default: Namibia's
        # country code, or a place so named, was lost without a word.
        "Only an empty cell is a missing value: `NA` is Namibia's country code, and a name may read `None`.",
        'With pandas, read them with `keep_default_na=False, na_values=[""]`; with R, `na.strings = ""`.',
        "",
        "A release never changes. Check a copy with `sha256sum`, or with `frictionless validate datapackage.json`.",
        "",
    ]
    return "\n".join(text).encode("utf-8")


def release_facts(previous: Release | None = None) -> dict:
    """What a release says of itself: its latest change (`as_of`) and how many incidents it holds.
    The latest change the public was told of, the withdrawals of incidents it saw included, and
    never before `previous`'s: taken of the released incidents alone, a release made after the
    latest changed incident was returned to draft said it was as of a moment before the release
    before it, when that incident was still published. Withdrawals the public may read
    (`withdrawn/` tells it when), so the same data still gives the same bytes."""
    facts = _released_incidents().aggregate(as_of=Max(PUBLIC_VERSIONS.updated_at), incidents=models.Count("pk"))
    withdrawn = IncidentWithdrawal.objects.reported_to(PUBLIC).aggregate(at=Max("withdrawn_at"))["at"]
    moments = [moment for moment in (facts["as_of"], withdrawn, previous and previous.as_of) if moment]
    return {**facts, "as_of": max(moments, default=None)}


def build_release_files(*, name: str, year: int, previous: Release | None, facts: dict) -> Iterator[ReleaseFileChunks]:
    """The files of release `name` built from the data now (after `previous`, for CHANGES.csv), one
    at a time and each in chunks (FILE_CHUNK_BYTES): read each to its end before asking for the
    next, which the package and the README describe by their sizes and checksums. Reads only; the
    same data always gives the same bytes."""
    written: dict[str, ReleaseFileChunks] = {}
    versions: dict[str, str] = {}
    for table in TABLES:
        rows = _table_rows(table)
        if table.name == "incidents":
            rows = _noting_versions(rows, table, versions)
        file = ReleaseFileChunks(f"{table.name}.csv", _csv_chunks([column.name for column in table.columns], rows))
        yield file
        written[file.name] = file
    file = ReleaseFileChunks("CHANGES.csv", [_changes(versions, previous)])
    yield file
    written[file.name] = file
    tables = [*TABLES, CHANGES]
    # The package, codebook and README describe the data in English, whatever language is active
    # where the release is made (a Reviewer's freeze in the admin, whose browser asks for Korean; a
    # thread a Korean page left so): choices' labels and help texts are translated strings, and the
    # same data must give the same bytes.
    with translation.override("en"):
        described = [
            ReleaseFileChunks("datapackage.json", [_datapackage(name, facts["as_of"], tables, written)]),
            ReleaseFileChunks("codebook.md", [_codebook(name, tables)]),
        ]
    yield from described
    with translation.override("en"):
        readme = ReleaseFileChunks("README.md", [_readme(name, year, facts["as_of"], written, facts["incidents"])])
    yield readme


MEDIA_TYPES = {".csv": "text/csv", ".json": "application/json", ".md": "text/markdown"}


def _store_file(release: Release, file: ReleaseFileChunks) -> None:
    """Write one file of `release` as it is built, a chunk at a time, into a PostgreSQL large object
    (`lo_put`), then copy that into the file's row (`lo_get`) and drop it, all in the release's
    transaction: the process building the file never holds it whole. (A million incidents'
    `incidents.csv` sent as one parameter needed the whole file and a copy in the client; through
    Django's client-side binding, written into the statement as hexadecimal, it exceeded
    PostgreSQL's 1 GB message and could not be released at all.) A server-side-binding cursor on
    the same connection sends each chunk as a binary parameter. The database's constraints check
    the size and checksum as for any write."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute("SELECT lo_create(0)")
        (large_object,) = cursor.fetchone()
        offset = 0
        for chunk in file:
            cursor.execute("SELECT lo_put(%s, %s, %b)", [large_object, offset, chunk])
            offset += len(chunk)
        cursor.execute(
            f"INSERT INTO {ReleaseFile._meta.db_table} (release_id, name, media_type, content, sha256, size) "
            "VALUES (%s, %s, %s, lo_get(%s), %s, %s)",
            [
                release.pk,
                file.name,
                MEDIA_TYPES[file.name[file.name.rindex(".") :]],
                large_object,
                file.sha256,
                file.size,
            ],
        )
        cursor.execute("SELECT lo_unlink(%s)", [large_object])


def next_release_name() -> tuple[str, int, int]:
    """The name, year and number the next release takes: under `release_create`'s lock, its own;
    outside it, the one it will take unless another is made first."""
    year = timezone.now().year
    number = (Release.objects.filter(year=year).aggregate(last=Max("number"))["last"] or 0) + 1
    return f"incident-tracker-{year}.{number}", year, number


class ReleaseMadeMeanwhile(Exception):
    """A release was made since the Reviewer was shown the latest one: `release`."""

    def __init__(self, release: Release):
        super().__init__(f"{release.name} was released meanwhile: nothing was released.")
        self.release = release


def release_create(*, user, latest_seen: str | None = None) -> Release:
    """Freeze the published data as the next release of this year; Reviewers (publish permission) only.

    `latest_seen`: the latest release's name as the Reviewer was shown it ("" for none). A release
    made since (their own button pressed twice, or a colleague's) raises ReleaseMadeMeanwhile, and
    nothing is released: a release is never deleted, so a second one of the same data stayed for good.

    Reads every table in one snapshot (REPEATABLE READ), so the files agree with each other
    (every claim's incident is in incidents.csv) even while analysts keep working; a lock makes
    concurrent calls take numbers one after the other. The lock is a table's, taken before the
    snapshot: LOCK TABLE takes none, where the advisory lock's SELECT did, so a release that waited
    for another still read the releases as they were before it, took the same number and failed on
    the unique (year, number) with a 500."""
    if not services.may_publish(user):
        raise PermissionDenied("You may not make a release: only Reviewers may.")
    fresh_transaction = not connection.in_atomic_block
    with transaction.atomic():
        with connection.cursor() as cursor:
            if fresh_transaction:
                # Only possible as the transaction's first statement; inside a caller's
                # transaction the caller's snapshot rules hold.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            # Conflicts with itself and with writes of releases, not with their readers.
            cursor.execute(f"LOCK TABLE {Release._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
        previous = Release.objects.first()
        # None made since when there is none at all (a page that named one, edited or from a
        # database restored since): the release to tell of would be none.
        if latest_seen is not None and previous is not None and latest_seen != previous.name:
            raise ReleaseMadeMeanwhile(previous)
        name, year, number = next_release_name()
        facts = release_facts(previous)
        release = Release.objects.create(
            year=year,
            number=number,
            as_of=facts["as_of"],
            incidents=facts["incidents"],
            citation=citation(name, year),
            created_by=user,
        )
        for file in build_release_files(name=name, year=year, previous=previous, facts=facts):
            _store_file(release, file)
        # Read back from the rows just written, as every download of it will be.
        ReleaseZip.objects.create(release=release, **release_zip_figures(release))
    return Release.objects.get(pk=release.pk)


def release_file_chunks(release_file: ReleaseFile, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """The file's bytes from `start` up to `end` (excluded; by default the whole file), in slices of
    FILE_CHUNK_BYTES, each its own statement. A file never changes (a trigger refuses it), so the
    slices read in separate statements fit together. They are cheap because the content is stored
    uncompressed (migration 0046): PostgreSQL then reads only the slice's own pages, where a
    compressed value would be inflated from its start for every slice. Read where the file was
    found (a replica, for a web request), which holds the same bytes."""
    end = release_file.size if end is None else end
    with connections[release_file._state.db].cursor() as cursor:
        for offset in range(start, end, FILE_CHUNK_BYTES):
            cursor.execute(
                "SELECT substring(content FROM %s FOR %s) FROM incidents_releasefile WHERE id = %s",
                [offset + 1, min(FILE_CHUNK_BYTES, end - offset), release_file.pk],
            )
            yield bytes(cursor.fetchone()[0])


def _slice(chunks: Iterable[bytes], start: int, end: int | None) -> Iterator[bytes]:
    """The bytes of `chunks` from `start` up to `end` (excluded; None for their end)."""
    position = 0
    for chunk in chunks:
        first, position = position, position + len(chunk)
        if position > start and (end is None or first < end):
            yield chunk[max(start - first, 0) : None if end is None else end - first]
        if end is not None and position >= end:
            return


class _Unseekable:
    """Where `zipfile` writes a zip being streamed: it keeps what was written until `taken`. Having
    no `seek`, it makes `zipfile` follow each file with its CRC and sizes (a data descriptor)
    rather than go back to write them into the file's header."""

    def __init__(self):
        self._written: list[bytes] = []

    def write(self, data) -> int:
        self._written.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def taken(self) -> bytes:
        written, self._written = b"".join(self._written), []
        return written


# Everything a zip entry's bytes depend on, fixed rather than taken from where it is made:
# `zipfile` writes the system it runs on (Windows: 0, elsewhere 3), and a file's mode decides
# whether unzipping makes it executable.
ZIP_SYSTEM_UNIX = 3
ZIP_FILE_MODE = 0o100644
ZIP_FOLDER_MODE = 0o40755
ZIP_MS_DOS_DIRECTORY = 0x10
ZIP_MEDIA_TYPE = "application/zip"


def _zip_entry(name: str, moment: tuple[int, ...], mode: int) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, date_time=moment)
    entry.create_system = ZIP_SYSTEM_UNIX
    entry.external_attr = mode << 16 | (ZIP_MS_DOS_DIRECTORY if name.endswith("/") else 0)
    return entry


def zip_chunks(
    folder: str, moment: datetime, files: Iterable[tuple[str, int, Callable[[], Iterable[bytes]]]]
) -> Iterator[bytes]:
    """A zip of `files` (each: its name, its size and its bytes in chunks), in a folder `folder/`,
    as it is written, chunk by chunk: its writer holds one chunk at a time, whatever the files'
    sizes. The same files give the same bytes on any machine: the files in the order of their
    names (by code point, not a database's collation), each stamped `moment` (UTC), mode 644 in a
    755 folder, and stored rather than compressed, because deflate's bytes are the compressor's
    choice (zlib, zlib-ng and their versions write different ones for the same file), where a
    stored file is its own bytes: the checksums in datapackage.json still hold for each. Past
    4 GiB, `zipfile` writes Zip64 records, decided from each file's `size` before its bytes."""
    stamp = moment.astimezone(UTC).timetuple()[:6]
    stream = _Unseekable()
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED) as archive:
        top = _zip_entry(f"{folder}/", stamp, ZIP_FOLDER_MODE)
        top.CRC = top.compress_size = 0  # `mkdir` (Python 3.12) expects them of an empty entry, sets none
        archive.mkdir(top)
        for name, size, chunks in sorted(files, key=lambda file: file[0]):
            entry = _zip_entry(f"{folder}/{name}", stamp, ZIP_FILE_MODE)
            entry.file_size = size
            with archive.open(entry, "w") as written:
                for chunk in chunks():
                    written.write(chunk)
                    yield stream.taken()
    yield stream.taken()


def release_zip_name(name: str) -> str:
    """The zip of the release called `name`: also what `manage.py release --output` checks before it
    is made."""
    return f"{name}.zip"


def release_zip_chunks(release: Release, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """The whole release as one zip (`zip_chunks`) from `start` up to `end` (excluded; by default
    to its end): its files at the paths datapackage.json names, in a folder named for it, so that
    the folder it unzips into validates as it is. Stamped with the release's creation, which never
    changes. Read from where `release` was found, a slice of a file at a time
    (`release_file_chunks`); a range is cut from the zip as it is made, so resuming near the end
    reads the files before it again (not sent: the zip is the same bytes every time)."""
    files = release.files.only("name", "size")  # where `release` was found; a migration's models too
    entries = [
        (release_file.name, release_file.size, lambda release_file=release_file: release_file_chunks(release_file))
        for release_file in files
    ]
    return _slice(zip_chunks(release.name, release.created_at, entries), start, end)


def release_zip_figures(release: Release) -> dict:
    """The zip's `size` and `sha256`, read through it once: a release's files, some 550 MB at a
    million incidents, are read back a slice at a time."""
    digest, size = hashlib.sha256(), 0
    for chunk in release_zip_chunks(release):
        digest.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}
