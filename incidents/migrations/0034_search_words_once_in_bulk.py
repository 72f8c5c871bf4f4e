"""The search words' insert triggers (migration 0016) honour the bulk writers' switch, as the export
rows' do (migration 0028).

An import writes its new incidents with one COPY per table: the incidents, then their place links,
claims and involvements. Each COPY's statement trigger recomputed the words of every incident it
touched, so each new incident's words were computed four times, three of them from a part of its
rows (10,000 imported rows: 3.2 s of an 11.7 s write, bench/README.md). While a bulk writer turns
the insert history off (`tracker.insert_triggers_off`, incidents.history.set_insert_triggers) these
triggers no longer fire, and the writer computes the words once, with `incident_search_refresh`,
once every table is written. The setting is transaction-local: every other writer, and the rest of
the bulk writer's own transaction, keep the words by the triggers as before.
"""

import importlib

from django.db import migrations

_ONE_SEARCH = importlib.import_module("incidents.migrations.0016_one_search")
_INSERT_CONDITION = importlib.import_module("incidents.migrations.0028_incident_export_rows").INSERT_CONDITION

# Each table whose inserts change an incident's words, with the function its trigger calls.
_CHANGED_FUNCTIONS = {
    "incidents_incident": "incident_search_incidents_changed",
    **dict.fromkeys(_ONE_SEARCH.LINK_TABLES, "incident_search_links_changed"),
}


def _insert_triggers(condition: str) -> str:
    return "".join(
        f"""
CREATE OR REPLACE TRIGGER incident_search_insert AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT {condition}
    EXECUTE FUNCTION {function}();
"""
        for table, function in _CHANGED_FUNCTIONS.items()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0033_record_confidential_page_access"),
    ]

    operations = [
        migrations.RunSQL(_insert_triggers(_INSERT_CONDITION), reverse_sql=_insert_triggers("")),
    ]
