import importlib

from django.db import migrations, models

# The statistics summed the people of the incidents that gave a figure, and counted every incident,
# but did not tell how many of those gave none: "1,234 people in 56 incidents" read as complete
# where 20 of the 56 reported no number. The kept totals now also count, per total, the incidents
# with no figure at all (no best estimate, minimum or maximum: their entry's three figures are
# null, the bounds falling back to the best estimate). The counts of known figures cannot tell it:
# an incident with a minimum alone and one with a maximum alone know as many bounds as one with
# both and one with none.
#
# Both counts (the one every edit runs, and the one into empty totals: tests/test_commands.py
# compares them) are read from the migration that last replaced them (0056) and edited; the
# totals already kept are filled from the entries of the incidents without a figure, grouped into
# the cells the count groups them into (its own `cells`, taken from its text), so the other
# figures stay as counted.
_BEFORE = importlib.import_module("incidents.migrations.0056_statistics_perpetrator_without_country")
_COUNT_BEFORE, _INTO_EMPTY_BEFORE = _BEFORE.COUNT_AFTER, _BEFORE.COUNT_INTO_EMPTY

# In the SQL of the counts: an incident (an entry, or the incident as counted now) with no figure.
_NO_FIGURE = "people_count IS NULL AND people_count_min IS NULL AND people_count_max IS NULL"

_KEY = (
    "start_month, end_month, incident_type_id, verification, review_state, confidential,\n"
    "    dimension, country, within_country, organization_id, place_id"
)

# Edits to both counts: the cells' deltas count the incidents without a figure, after `incidents`
# (the totals are inserted from the deltas in their column order), and the totals take them in.
_EDITS = [
    (
        "               sum(sign) AS incidents,\n",
        "               sum(sign) AS incidents,\n"
        f"               coalesce(sum(sign) FILTER (WHERE {_NO_FIGURE}), 0) AS incidents_without_figure,\n",
    ),
    (
        "        dimension, country, within_country, organization_id, place_id, incidents,\n",
        "        dimension, country, within_country, organization_id, place_id, incidents, incidents_without_figure,\n",
    ),
    (
        "    WHERE (incidents, people_count, people_count_known, people_count_min, people_count_min_known,\n"
        "           people_count_max, people_count_max_known) <> (0, 0, 0, 0, 0, 0, 0)",
        "    WHERE (incidents, incidents_without_figure, people_count, people_count_known, people_count_min,\n"
        "           people_count_min_known, people_count_max, people_count_max_known) <> (0, 0, 0, 0, 0, 0, 0, 0)",
    ),
]
# The count every edit runs also adds them to the totals already there (the bulk count inserts only).
_ADDED_TO_KEPT = (
    "        incidents = cell.incidents + excluded.incidents,\n",
    "        incidents = cell.incidents + excluded.incidents,\n"
    "        incidents_without_figure = cell.incidents_without_figure + excluded.incidents_without_figure,\n",
)


def _edited(text: str, edits: list[tuple[str, str]]) -> str:
    for old, new in edits:
        if text.count(old) != 1:
            raise ValueError(f"Migration 0056's count changed: {old[:60]!r}… is not found once.")
        text = text.replace(old, new)
    return text


COUNT_AFTER = _edited(_COUNT_BEFORE, [*_EDITS, _ADDED_TO_KEPT])
COUNT_INTO_EMPTY = _edited(_INTO_EMPTY_BEFORE, _EDITS)


def _cells_of_the_count() -> str:
    """The count's `cells`: each change (an incident, signed) in every total it counts in."""
    start, end = "    ), cells AS (\n", "    ), deltas AS (\n"
    if _COUNT_BEFORE.count(start) != 1 or _COUNT_BEFORE.count(end) != 1:
        raise ValueError("Migration 0056's count changed: its cells are not found once.")
    return _COUNT_BEFORE[_COUNT_BEFORE.index(start) + len(start) : _COUNT_BEFORE.index(end)]


# The incidents already counted, from what each counted as (its entry), as migration 0056 did;
# every total they count in is there (they were counted into it), so each is updated, none
# inserted. Changes made meanwhile wait for this migration to commit to be counted.
COUNT_EXISTING = f"""
LOCK TABLE incidents_incidentrollupentry IN SHARE MODE;
SET LOCAL work_mem = '256MB';
WITH changes AS (
    SELECT 1 AS sign, incident_id, start_month, end_month, incident_type_id, verification, review_state, confidential,
           people_count, people_count_min, people_count_max, countries, perpetrators, places
    FROM incidents_incidentrollupentry WHERE {_NO_FIGURE}
), cells AS (
{_cells_of_the_count()})
INSERT INTO incidents_incidentrollup AS cell (
    {_KEY}, incidents, incidents_without_figure,
    people_count, people_count_known, people_count_min, people_count_min_known,
    people_count_max, people_count_max_known
)
SELECT {_KEY}, 0, count(*), 0, 0, 0, 0, 0, 0
FROM cells
GROUP BY {_KEY}
ORDER BY {_KEY}
ON CONFLICT ({_KEY}) DO UPDATE SET incidents_without_figure = excluded.incidents_without_figure;
"""


def _rollup_index(name: str, condition: models.Q, group: list[str], first: str | None = None) -> models.Index:
    """The covering indexes of `IncidentRollup` (models._rollup_index) as they now are: holding the
    count of incidents without a figure too, which every statistic reads."""
    keys = [*([first] if first else []), "review_state", "confidential", *group]
    include = (
        "start_month",
        "end_month",
        "incident_type",
        "verification",
        "incidents",
        "incidents_without_figure",
        "people_count",
        "people_count_known",
        "people_count_min",
        "people_count_min_known",
        "people_count_max",
        "people_count_max_known",
    )
    return models.Index(fields=keys, include=include, condition=condition, name=name)


_INDEXES = [
    _rollup_index("incident_rollup_overall", models.Q(dimension="incident"), []),
    _rollup_index(
        "incident_rollup_per_country", models.Q(dimension="country", within_country=models.F("country")), ["country"]
    ),
    _rollup_index("incident_rollup_in_country", models.Q(dimension="country"), ["country"], first="within_country"),
    _rollup_index(
        "incident_rollup_by_perpetrator", models.Q(dimension="perpetrator"), ["organization"], first="within_country"
    ),
    _rollup_index("incident_rollup_by_place", models.Q(dimension="place"), ["place"]),
]


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0073_source_language_codes"),
    ]

    # The covering indexes are dropped before the totals are filled and built after: an update of
    # a column they hold writes a new entry in each, where a build sorts the totals once.
    operations = [
        *(migrations.RemoveIndex(model_name="incidentrollup", name=index.name) for index in _INDEXES),
        migrations.AddField(
            model_name="incidentrollup",
            name="incidents_without_figure",
            field=models.IntegerField(default=0),
            preserve_default=False,
        ),
        migrations.RunSQL(
            COUNT_AFTER + COUNT_INTO_EMPTY + COUNT_EXISTING,
            reverse_sql=_COUNT_BEFORE + _INTO_EMPTY_BEFORE,
        ),
        *(migrations.AddIndex(model_name="incidentrollup", index=index) for index in _INDEXES),
    ]
