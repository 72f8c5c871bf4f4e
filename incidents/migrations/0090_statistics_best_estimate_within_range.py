"""The statistics' best estimate lies within their own range: an incident with a minimum and no best
estimate ("at least 40") now counts its minimum in the best estimate, and in the high end of the
range where it gives no maximum.

It added its minimum to the range's low sum and nothing to the other two: "at least 40" and "about
500" totalled 500 people with a range from 540 to 500, the best estimate under the range's low end
(the API's `people_count` 500 beside `people_count_min` 540, and /statistics/ drew it under the
range bar). Each incident now adds figures with low <= best <= high, so every sum of them does too:
a missing best estimate falls back to the minimum, a missing minimum to the best estimate, a
missing maximum to the best estimate, else the minimum (the least the incident says). An incident
with a maximum alone ("at most 100") still adds only to the high end.

The kept totals are counted from what each incident counts as (its entry), which both counts (the
one every edit runs, and the one into empty totals: tests/test_commands.py compares them) make as
migration 0078 left them, edited here; the incidents whose figures now count otherwise (a minimum
and no best estimate) are counted again by the count every edit runs, which takes away what their
entry counted and adds what they count as now."""

import importlib

from django.db import migrations

_BEFORE = importlib.import_module("incidents.migrations.0078_count_alike_changes_once")

_FIGURES_BEFORE = """               incident.people_count,
               coalesce(incident.people_count_min, incident.people_count) AS people_count_min,
               coalesce(incident.people_count_max, incident.people_count) AS people_count_max,
"""
_FIGURES = """               coalesce(incident.people_count, incident.people_count_min) AS people_count,
               coalesce(incident.people_count_min, incident.people_count) AS people_count_min,
               coalesce(incident.people_count_max, incident.people_count, incident.people_count_min)
                   AS people_count_max,
"""


def _edited(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise ValueError("Migration 0078's count changed: the figures an incident counts as are not found once.")
    return text.replace(old, new)


COUNT_AFTER = _edited(_BEFORE.COUNT_AFTER, _FIGURES_BEFORE, _FIGURES)
COUNT_INTO_EMPTY = _edited(_BEFORE.COUNT_INTO_EMPTY, _FIGURES_BEFORE, _FIGURES)
# The incidents that count otherwise now, counted again; merged incidents have no entry and are
# left out by the count itself.
COUNT_AGAIN = """SELECT incident_rollup_count(ARRAY(
    SELECT id FROM incidents_incident WHERE people_count IS NULL AND people_count_min IS NOT NULL ORDER BY id
));
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0089_one_line_names_unique_whatever_their_case"),
    ]

    operations = [
        migrations.RunSQL(
            COUNT_AFTER + COUNT_INTO_EMPTY + COUNT_AGAIN,
            reverse_sql=_BEFORE.COUNT_AFTER + _BEFORE.COUNT_INTO_EMPTY + COUNT_AGAIN,
        ),
    ]
