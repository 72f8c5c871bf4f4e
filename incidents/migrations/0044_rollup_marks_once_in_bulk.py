"""The statistics' insert triggers (migration 0011) honour the bulk writers' switch, as the search
words' (0034) and the export rows' (0028) do.

An import writes its new incidents with one COPY per table. The statement trigger of the incidents'
COPY noted every new incident for the count at commit (`incidents_rollup_pending`), and those of
the place links' and involvements' COPYs noted the same incidents again, from transition tables of
twice as many rows, each through `INSERT … ON CONFLICT DO NOTHING` into the noted ids' unique
index: three passes where one does (1.1-1.4 s each for 100,000 new incidents under auto_explain on
a busy machine; bench/README.md, "The import's own costs, less"). While a bulk writer turns the
insert history off (`tracker.insert_triggers_off`, incidents.history.set_insert_triggers) these
triggers no longer fire, and the writer notes its incidents once, with `incident_rollup_mark`,
which counts them at commit as before. The setting is transaction-local: every other writer, and
the rest of the bulk writer's own transaction, are noted by the triggers as before. The demo
generator switches these triggers off altogether while it loads (statistics_counted_once).
"""

import importlib

from django.db import migrations

_ROLLUP = importlib.import_module("incidents.migrations.0011_statistics_rollup_triggers")
_INSERT_CONDITION = importlib.import_module("incidents.migrations.0028_incident_export_rows").INSERT_CONDITION


def _insert_triggers(condition: str) -> str:
    return "".join(
        f"""
CREATE OR REPLACE TRIGGER {_ROLLUP.trigger_name(table, "INSERT")} AFTER INSERT ON {table}
    REFERENCING {_ROLLUP.TRANSITION_TABLES["INSERT"]} FOR EACH STATEMENT {condition}
    EXECUTE FUNCTION {function}();
"""
        for table, function, events in _ROLLUP.TRIGGERS
        if "INSERT" in events
    )


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0043_export_rows_independent_origins"),
    ]

    operations = [
        migrations.RunSQL(_insert_triggers(_INSERT_CONDITION), reverse_sql=_insert_triggers("")),
    ]
