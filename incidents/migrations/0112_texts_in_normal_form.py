"""Texts stored in Unicode's composed form (NFC), and one-line texts without invisible characters at
their ends, as every write now puts them (`incidents.text_fields.TextInNormalForm`): so that the
constraints and the search compare stored names as they compare new ones. (A write sending a text
back as read is no change whatever form it is stored in: `services._stored_spaces_kept`.)

Only the rows not so already are written (`IS NFC NORMALIZED`, PostgreSQL 13+): on data typed in
browsers, none; each one written is recorded in its history, as a write by SQL is. Left as they are,
as a door would refuse them: a text that would no longer fit its column (composing lengthens some
scripts), a name or list item that would be blank (only invisible characters), and a name whose
normal form another record of its parent (a place) or of the database (an organization, an
incident type) bears, or would bear once normalized: which of the two is meant is an analyst's
decision. Such a record is saved back as read (`services.texts_as_read`); a change of its name
asks for another. Web addresses are kept as written (a server may tell a composed path from a
decomposed one).
"""

import importlib

from django.db import migrations

_0086 = importlib.import_module("incidents.migrations.0086_searched_texts_bounded")

# As `incidents.text_fields._INVISIBLE` held them then.
INVISIBLE = "\u00ad\u200b-\u200f\u2060-\u2064\ufeff"

# (model, field, one line): the texts analysts write.
TEXTS = [
    ("Organization", "name", True),
    ("Organization", "acronym", True),
    ("Organization", "description", False),
    ("Organization", "aliases", True),
    ("Place", "name", True),
    ("Place", "alternate_names", True),
    ("IncidentType", "name", True),
    ("IncidentType", "description", False),
    ("Source", "title", True),
    ("Source", "author", True),
    ("Source", "notes", False),
    ("Incident", "title", True),
    ("Incident", "description", False),
    ("VictimGroup", "description", False),
    ("Claim", "excerpt", False),
    ("Claim", "locator", False),
    ("Response", "description", False),
]

# Not borne by another record once normalized: the unique names' constraints.
UNIQUE_AMONG = {
    ("Organization", "name"): "",
    ("Place", "name"): "AND other.parent_id IS NOT DISTINCT FROM record.parent_id",
    ("IncidentType", "name"): "",
}


def _edges(trimmed: str) -> str:
    """The run of white space at either end of a text that holds one of `trimmed`."""
    return rf"^[\s{trimmed}]*[{trimmed}][\s{trimmed}]*|[\s{trimmed}]*[{trimmed}][\s{trimmed}]*$"


def _normal(
    expression: str, one_line: bool, invisible: str, spaces: str, directional: str, overrides: str, inside: str
) -> str:
    normal = f"normalize({expression}, NFC)"
    if not one_line:
        return normal
    trimmed = f"regexp_replace({normal}, '{_edges(invisible + spaces)}', '', 'g')"
    if directional:
        # Trimmed too where the text holds none inside (`text_fields._invisible_ends_trimmed`).
        all_trimmed = f"regexp_replace({normal}, '{_edges(invisible + spaces + directional)}', '', 'g')"
        trimmed = f"CASE WHEN {all_trimmed} ~ '[{directional}]' THEN {trimmed} ELSE {all_trimmed} END"
    if spaces:
        trimmed = f"translate({trimmed}, '{spaces}', '{' ' * len(spaces)}')"
    if overrides:
        # Each override (U+202D, U+202E) written as the embedding of its direction (U+202A, U+202B).
        trimmed = f"translate({trimmed}, '{overrides}', '{''.join(chr(ord(override) - 3) for override in overrides)}')"
    return f"regexp_replace({trimmed}, '{inside}', '', 'g')" if inside else trimmed


def _not_normal(
    expression: str, one_line: bool, invisible: str, spaces: str, directional: str, overrides: str, inside: str
) -> str:
    """A cheap test first: most rows are in normal form, and computing it for each is not."""
    test = f"{expression} IS NOT NFC NORMALIZED"
    return f"({test} OR {expression} ~ '[{invisible}{spaces}{directional}]')" if one_line else test


def _fits(expression: str, max_length: int | None, blank_allowed: bool) -> str:
    conditions = [] if max_length is None else [f"char_length({expression}) <= {max_length}"]
    if not blank_allowed:
        conditions.append(f"{expression} <> ''")
    return " AND ".join(conditions) or "true"


def statement(
    model,
    name: str,
    one_line: bool,
    *,
    invisible: str = INVISIBLE,
    spaces: str = "",
    directional: str = "",
    overrides: str = "",
    inside: str = "",
) -> str:
    """The UPDATE that writes `model`'s `name` in normal form: one-line texts without `invisible`
    characters at their ends, with the `spaces` (each a character) trimmed there too and written as
    plain ones elsewhere, without the `directional` controls at their ends when they hold none
    inside (as migration 0120 writes them; this one wrote neither), the `overrides` among those
    written as embeddings, and without the characters of `invisible` that the regular expression
    `inside` matches (as 0123 writes them)."""
    form = {
        "invisible": invisible,
        "spaces": spaces,
        "directional": directional,
        "overrides": overrides,
        "inside": inside,
    }
    field = model._meta.get_field(name)
    table, column = model._meta.db_table, field.column
    if hasattr(field, "base_field"):  # a list of names
        item = field.base_field
        normal = _normal("item.name", one_line, **form)
        return (
            f"UPDATE {table} AS record SET {column} = ARRAY(SELECT {normal} FROM unnest({column}) WITH ORDINALITY "
            f"AS item (name, position) ORDER BY position) "
            f"WHERE EXISTS (SELECT FROM unnest({column}) AS item (name) "
            f"WHERE {_not_normal('item.name', one_line, **form)} AND item.name <> {normal}) "
            f"AND NOT EXISTS (SELECT FROM unnest({column}) AS item (name) "
            f"WHERE NOT ({_fits(normal, item.max_length, blank_allowed=False)}))"
        )
    normal = _normal(f"record.{column}", one_line, **form)
    condition = (
        f"{_not_normal(f'record.{column}', one_line, **form)} AND record.{column} <> {normal} "
        f"AND {_fits(normal, field.max_length, blank_allowed=field.blank)}"
    )
    if (model.__name__, name) in UNIQUE_AMONG:
        other = _normal(f"other.{column}", one_line, **form)
        condition += (
            f" AND NOT EXISTS (SELECT FROM {table} AS other WHERE other.id <> record.id "
            f"{UNIQUE_AMONG[model.__name__, name]} AND lower({other}) = lower({normal}))"
        )
    return f"UPDATE {table} AS record SET {column} = {normal} WHERE {condition}"


def normalize(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for model_name, name, one_line in TEXTS:
            cursor.execute(statement(apps.get_model("incidents", model_name), name, one_line))


class Migration(migrations.Migration):
    dependencies = [("incidents", "0111_word_counts_of_every_script")]

    operations = [
        # Rows stored before migration 0086 may hold a text longer than its bounds, which PostgreSQL
        # holds on every row written (`bounds_set_aside`).
        _0086.bounds_set_aside(),
        migrations.RunPython(normalize, migrations.RunPython.noop),
        _0086.bounds_added_back(),
    ]
