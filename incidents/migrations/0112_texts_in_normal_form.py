"""Texts stored in Unicode's composed form (NFC), and one-line texts without invisible characters at
their ends, as every write now puts them (`incidents.text_fields.TextInNormalForm`): so that a
write sending a text back as it was read is no change, and the constraints and the search compare
stored names as they compare new ones.

Only the rows not so already are written (`IS NFC NORMALIZED`, PostgreSQL 13+): on data typed in
browsers, none; each one written is recorded in its history, as a write by SQL is.
A name whose normal form another record of its parent (a place) or of the database (an
organization) already bears is left as it is: which of the two is meant is an analyst's decision,
and the constraint would refuse the write; its next change in a door asks for another name.
"""

from django.db import migrations

INVISIBLE = r"\u00ad\u200b-\u200f\u2060-\u2064\ufeff"
EDGES = rf"^[\s{INVISIBLE}]*[{INVISIBLE}][\s{INVISIBLE}]*|[\s{INVISIBLE}]*[{INVISIBLE}][\s{INVISIBLE}]*$"


def _text(column: str) -> tuple[str, str]:
    return f"normalize({column}, NFC)", f"{column} IS NOT NFC NORMALIZED"


def _one_line(column: str) -> tuple[str, str]:
    return (
        f"regexp_replace(normalize({column}, NFC), '{EDGES}', '', 'g')",
        f"({column} IS NOT NFC NORMALIZED OR {column} ~ '{EDGES}')",
    )


def _names(column: str) -> tuple[str, str]:
    normal = f"regexp_replace(normalize(name, NFC), '{EDGES}', '', 'g')"
    return (
        f"ARRAY(SELECT {normal} FROM unnest({column}) WITH ORDINALITY AS item (name, position) ORDER BY position)",
        f"EXISTS (SELECT FROM unnest({column}) AS item (name) WHERE name IS NOT NFC NORMALIZED OR name ~ '{EDGES}')",
    )


# Not taken by another record: the unique names' constraints.
_UNIQUE = {
    ("incidents_organization", "name"): "NOT EXISTS (SELECT FROM incidents_organization other "
    "WHERE other.id <> record.id AND lower(other.name) = lower({normal}))",
    ("incidents_place", "name"): "NOT EXISTS (SELECT FROM incidents_place other WHERE other.id <> record.id "
    "AND other.parent_id IS NOT DISTINCT FROM record.parent_id AND lower(other.name) = lower({normal}))",
}

COLUMNS = {
    "incidents_organization": [
        ("name", _one_line),
        ("acronym", _one_line),
        ("website", _text),
        ("description", _text),
        ("aliases", _names),
    ],
    "incidents_place": [("name", _one_line), ("alternate_names", _names)],
    "incidents_incidenttype": [("name", _one_line), ("description", _text)],
    "incidents_source": [
        ("title", _one_line),
        ("author", _one_line),
        ("url", _text),
        ("archive_url", _text),
        ("notes", _text),
    ],
    "incidents_incident": [("title", _one_line), ("description", _text)],
    "incidents_victimgroup": [("description", _text)],
    "incidents_claim": [("excerpt", _text), ("locator", _text)],
    "incidents_response": [("description", _text)],
}


def statements() -> list[str]:
    written = []
    for table, columns in COLUMNS.items():
        for column, form in columns:
            normal, condition = form(column)
            unique = _UNIQUE.get((table, column))
            if unique:
                condition = f"{condition} AND {unique.format(normal=normal.replace(column, f'record.{column}'))}"
            written.append(f"UPDATE {table} AS record SET {column} = {normal} WHERE {condition}")
    return written


class Migration(migrations.Migration):
    dependencies = [("incidents", "0111_word_counts_of_every_script")]

    operations = [migrations.RunSQL(statement, migrations.RunSQL.noop) for statement in statements()]
