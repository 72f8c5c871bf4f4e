"""An incident's search texts (migration 0016) are put together in a fixed order: its places, its
involvements and its claims each in the order they were added.

Each part was a `string_agg` without an order, so the words' positions followed the plan that read
them: a bulk refresh of many incidents (the demo data's, an import's) joined the rows in another
order than an edit's refresh of one incident, and gave the same words at other positions. The words
found were the same; a phrase ("Press release") could match across two parts in one order and not in
the other. Now every refresh gives the same words at the same positions.

Words already stored keep their positions until their incident's next refresh: recomputing them all
here would cost about 100 CPU-seconds per 1,000,000 incidents for no change in what a word finds.
"""

import importlib
import re

from django.db import migrations

_TEXTS_BEFORE = re.search(
    r"CREATE FUNCTION incident_search_texts\(.*?\n\$\$;\n",
    importlib.import_module("incidents.migrations.0016_one_search").SEARCH_SQL,
    re.DOTALL,
)[0].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")

# Each unordered aggregate of 0016, with the order that makes it repeatable.
_IN_ORDER = {
    "array_to_string(place.alternate_names, ' ')), ' ')": (
        "array_to_string(place.alternate_names, ' ')), ' ' ORDER BY link.id)"
    ),
    "array_to_string(organization.aliases, ' ')), ' ')": (
        "array_to_string(organization.aliases, ' ')), ' ' ORDER BY involvement.id)"
    ),
    "SELECT claim.confidential OR source.confidential AS hidden,": (
        "SELECT claim.id, claim.confidential OR source.confidential AS hidden,"
    ),
    "string_agg(claim_text, ' ') FILTER (WHERE NOT hidden)": "string_agg(claim_text, ' ' ORDER BY id) FILTER (WHERE NOT hidden)",
    "string_agg(claim_text, ' ') FILTER (WHERE hidden)": "string_agg(claim_text, ' ' ORDER BY id) FILTER (WHERE hidden)",
}

TEXTS_SQL = _TEXTS_BEFORE
for unordered, ordered in _IN_ORDER.items():
    assert TEXTS_SQL.count(unordered) == 1, "migration 0016's search texts no longer have the expected shape"
    TEXTS_SQL = TEXTS_SQL.replace(unordered, ordered)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0034_search_words_once_in_bulk"),
    ]

    operations = [
        migrations.RunSQL(TEXTS_SQL, reverse_sql=_TEXTS_BEFORE),
    ]
