"""The statistics' count adds up the changes of alike incidents before it makes their cells.

`incident_rollup_count` (and `incident_rollup_count_into_empty`, its bulk twin) made every cell of
every changed incident, then grouped the cells by sorting them: for an import of 100,000 incidents,
1.5 million cells sorted on disk at commit (the planner expects ten elements per unnested array, so
it judges a hash too large), 5.9 of PostgreSQL's CPU-seconds. Incidents alike in everything their
cells are made of (their months, type, verification, review state, confidentiality, countries,
perpetrators and places) now have their changes added up first, incidents and figures, and their
cells are made once for all of them: the same totals, in 1.9-2.1 CPU-seconds (bench/README.md). The
sums are the same sums grouped otherwise: each cell's total is the sum of its incidents' signs and
figures, and alike incidents make the same cells.

Only the steps between the changes and the totals change: both counts are read from the migration
that last replaced them (0074, which counts the incidents without a figure) and edited."""

import importlib

from django.db import migrations

_BEFORE = importlib.import_module("incidents.migrations.0074_statistics_count_incidents_without_figure")
# An incident without a figure, as 0074 says it.
_NO_FIGURE = _BEFORE._NO_FIGURE

_CELLS_START = "    ), cells AS (\n"
_SUMMED = f"""    ), summed AS (
        -- The changes of incidents alike in every column their cells are made of, added up.
        SELECT start_month, end_month, incident_type_id, verification, review_state, confidential,
               countries, perpetrators, places,
               sum(sign) AS incidents,
               coalesce(sum(sign) FILTER (WHERE {_NO_FIGURE}), 0) AS incidents_without_figure,
               coalesce(sum(sign * people_count), 0) AS people_count,
               coalesce(sum(sign) FILTER (WHERE people_count IS NOT NULL), 0) AS people_count_known,
               coalesce(sum(sign * people_count_min), 0) AS people_count_min,
               coalesce(sum(sign) FILTER (WHERE people_count_min IS NOT NULL), 0) AS people_count_min_known,
               coalesce(sum(sign * people_count_max), 0) AS people_count_max,
               coalesce(sum(sign) FILTER (WHERE people_count_max IS NOT NULL), 0) AS people_count_max_known
        FROM changes
        GROUP BY start_month, end_month, incident_type_id, verification, review_state, confidential,
                 countries, perpetrators, places
"""
_DELTAS_START = "    ), deltas AS (\n"
_SUMS_OF_CHANGES = f"""               sum(sign) AS incidents,
               coalesce(sum(sign) FILTER (WHERE {_NO_FIGURE}), 0) AS incidents_without_figure,
               coalesce(sum(sign * people_count), 0) AS people_count,
               coalesce(sum(sign) FILTER (WHERE people_count IS NOT NULL), 0) AS people_count_known,
               coalesce(sum(sign * people_count_min), 0) AS people_count_min,
               coalesce(sum(sign) FILTER (WHERE people_count_min IS NOT NULL), 0) AS people_count_min_known,
               coalesce(sum(sign * people_count_max), 0) AS people_count_max,
               coalesce(sum(sign) FILTER (WHERE people_count_max IS NOT NULL), 0) AS people_count_max_known
        FROM cells
"""
_SUMS_OF_SUMS = """               sum(incidents) AS incidents,
               sum(incidents_without_figure) AS incidents_without_figure,
               sum(people_count) AS people_count,
               sum(people_count_known) AS people_count_known,
               sum(people_count_min) AS people_count_min,
               sum(people_count_min_known) AS people_count_min_known,
               sum(people_count_max) AS people_count_max,
               sum(people_count_max_known) AS people_count_max_known
        FROM cells
"""
_FACETS_SIGN = "        SELECT sign, extract(year FROM start_month)::smallint AS start_year,\n"
_FACETS_SUMMED_SIGN = "        SELECT incidents AS sign, extract(year FROM start_month)::smallint AS start_year,\n"
_FACETS_FROM_CHANGES = "               places\n        FROM changes\n    ), facet_cells AS (\n"
_FACETS_FROM_SUMMED = "               places\n        FROM summed\n    ), facet_cells AS (\n"


def _replaced_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise ValueError(f"The count changed: {old.strip()[:60]!r}… is not found once.")
    return text.replace(old, new)


def _edited(text: str) -> str:
    text = _replaced_once(text, _CELLS_START, _SUMMED + _CELLS_START)
    # The cells, each of them made from the sums rather than from each change (every `FROM changes`
    # between the cells' start and the deltas'), which the deltas then add up.
    start = text.index(_CELLS_START)
    end = text.index(_DELTAS_START, start)
    cells = text[start:end]
    if cells.count("FROM changes") != 5:
        raise ValueError("The count changed: its cells are not made from the changes in five parts.")
    text = text[:start] + cells.replace("FROM changes", "FROM summed AS changes") + text[end:]
    text = _replaced_once(text, _SUMS_OF_CHANGES, _SUMS_OF_SUMS)
    text = _replaced_once(text, _FACETS_SIGN, _FACETS_SUMMED_SIGN)
    return _replaced_once(text, _FACETS_FROM_CHANGES, _FACETS_FROM_SUMMED)


COUNT_AFTER = _edited(_BEFORE.COUNT_AFTER)
COUNT_INTO_EMPTY = _edited(_BEFORE.COUNT_INTO_EMPTY)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0077_sources_locked_once_in_bulk"),
    ]

    operations = [
        migrations.RunSQL(
            COUNT_AFTER + COUNT_INTO_EMPTY,
            reverse_sql=_BEFORE.COUNT_AFTER + _BEFORE.COUNT_INTO_EMPTY,
        ),
    ]
