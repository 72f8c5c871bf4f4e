import importlib

import django.db.models.deletion
from django.db import migrations, models

# The browse page's facets kept per year (`IncidentFacetTotal`), in the same count as the statistics'
# totals (migrations 0011 and 0023): the count reads what each incident counted as before and what
# it counts as now (its `changes`), and adds the difference to both. Only that function changes,
# so it is read from 0026 (which last replaced it) and edited, as 0020 did. Numbered 0025 but
# applied after 0027: it was written beside 0026 and 0027, and must follow 0026's count.
#
# Which totals an incident counts in, and what reads them (incidents.statistics._facet_totals):
# - once overall: the type, verification and year facets, without a country or a place;
# - per country, overall and within each of its countries: the country facet, and a country's
#   type, verification and year facets (its incidents each once: the country chosen as the group);
# - per country within each of its places (and those containing them): the country facet of a place;
# - per place, overall and within each of its countries: the place facet, and a place's type,
#   verification and year facets (the place chosen is the group);
# - per perpetrator (or none), overall, within each of its countries and each of its places.
# An incident without a place with a country is in no country (blank), as in the statistics; as
# no filter chooses "no country", nothing is kept within it.
_COUNT_SQL = importlib.import_module("incidents.migrations.0026_counts_and_search_words_in_bulk").COUNT_SQL

# What the totals key on besides the dimension, its scope and its group.
_KEY = "sign, start_year, end_year, incident_type_id, verification, review_state, confidential"
# The totals' columns, in the order of their unique index (and of the updates' locks).
_COLUMNS = (
    "dimension, within_place_id, within_country, review_state, confidential, country, place_id, organization_id, "
    "start_year, end_year, incident_type_id, verification"
)


def facet_changes(counted: str) -> str:
    """The CTEs that turn `counted` (rows with a `sign`, 1 or -1, and the columns of
    incidents_incidentrollupentry) into `facet_deltas`: the change of each total they touch."""
    return f"""facet_counted AS (
        SELECT sign, extract(year FROM start_month)::smallint AS start_year,
               extract(year FROM end_month)::smallint AS end_year,
               incident_type_id, verification, review_state, confidential,
               CASE WHEN countries = '{{}}' THEN '{{""}}' ELSE countries END AS countries,
               -- All incidents (blank) and each country a filter can choose.
               array_prepend(''::varchar, array_remove(countries, '')) AS scopes,
               CASE WHEN perpetrators = '{{}}' THEN '{{NULL}}' ELSE perpetrators END AS perpetrators,
               places
        FROM {counted}
    ), facet_cells AS (
        SELECT {_KEY}, 'incident' AS dimension, NULL::bigint AS within_place_id, ''::varchar AS within_country,
               ''::varchar AS country, NULL::bigint AS place_id, NULL::bigint AS organization_id
        FROM facet_counted
        UNION ALL
        SELECT {_KEY}, 'country', NULL, within.country, grouped.country, NULL, NULL
        FROM facet_counted, unnest(scopes) AS within(country), unnest(countries) AS grouped(country)
        UNION ALL
        SELECT {_KEY}, 'country', around.id, '', grouped.country, NULL, NULL
        FROM facet_counted, unnest(places) AS around(id), unnest(countries) AS grouped(country)
        UNION ALL
        SELECT {_KEY}, 'place', NULL, within.country, '', place.id, NULL
        FROM facet_counted, unnest(scopes) AS within(country), unnest(places) AS place(id)
        UNION ALL
        SELECT {_KEY}, 'perpetrator', NULL, within.country, '', NULL, perpetrator.id
        FROM facet_counted, unnest(scopes) AS within(country), unnest(perpetrators) AS perpetrator(id)
        UNION ALL
        SELECT {_KEY}, 'perpetrator', around.id, '', '', NULL, perpetrator.id
        FROM facet_counted, unnest(places) AS around(id), unnest(perpetrators) AS perpetrator(id)
    ), facet_deltas AS (
        SELECT {_COLUMNS}, sum(sign) AS incidents
        FROM facet_cells
        GROUP BY {_COLUMNS}
        HAVING sum(sign) <> 0
    )"""


INSERT_FACET_DELTAS = (
    f"INSERT INTO incidents_incidentfacettotal AS total ({_COLUMNS}, incidents) SELECT * FROM facet_deltas"
)
# In the key's order, so that transactions updating the same totals lock them in one order.
ADD_FACET_DELTAS = f"""{INSERT_FACET_DELTAS} ORDER BY {_COLUMNS}
        ON CONFLICT ({_COLUMNS}) DO UPDATE SET incidents = total.incidents + excluded.incidents"""


def _function(name: str) -> str:
    start = _COUNT_SQL.index(f"CREATE OR REPLACE FUNCTION {name}(")
    return _COUNT_SQL[start : _COUNT_SQL.index("$$;", start) + len("$$;")]


def _edited(text: str, edits: list[tuple[str, str]]) -> str:
    for old, new in edits:
        if text.count(old) != 1:
            raise ValueError(f"Migration 0026 changed: {old!r} is not found once.")
        text = text.replace(old, new)
    return text


COUNT_BEFORE = _function("incident_rollup_count")
COUNT_AFTER = _edited(
    COUNT_BEFORE,
    [
        (
            "    ), entries_gone AS (",
            f"    ), {facet_changes('changes')}, facets_counted AS (\n        {ADD_FACET_DELTAS}\n"
            "    ), entries_gone AS (",
        ),
        (
            "DELETE FROM incidents_incidentrollup WHERE incidents = 0;",
            "DELETE FROM incidents_incidentrollup WHERE incidents = 0;\n"
            "    DELETE FROM incidents_incidentfacettotal WHERE incidents = 0;",
        ),
    ],
)
# The incidents already there, as the statistics' totals counted them: no need to count those again
# (which takes minutes at a million incidents). Changes made meanwhile wait for this migration to
# commit to be counted. A plain INSERT: the totals' unique index is built at the end of the
# migration (Django defers it), after the totals are in, which is also faster.
COUNT_EXISTING = f"""
LOCK TABLE incidents_incidentrollupentry IN SHARE MODE;
-- Grouping 22 million cells at a million incidents: in memory rather than on disk (this transaction only).
SET LOCAL work_mem = '256MB';
WITH entries AS (SELECT 1 AS sign, * FROM incidents_incidentrollupentry), {facet_changes("entries")}
{INSERT_FACET_DELTAS};
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0028_incident_export_rows"),
    ]

    operations = [
        migrations.CreateModel(
            name="IncidentFacetTotal",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("start_year", models.SmallIntegerField()),
                ("end_year", models.SmallIntegerField()),
                (
                    "verification",
                    models.CharField(
                        choices=[
                            ("alleged", "Alleged"),
                            ("corroborated", "Corroborated"),
                            ("verified", "Verified"),
                            ("disputed", "Disputed"),
                            ("retracted", "Retracted"),
                        ],
                        max_length=12,
                    ),
                ),
                (
                    "review_state",
                    models.CharField(
                        choices=[("draft", "Draft"), ("in_review", "In review"), ("published", "Published")],
                        max_length=10,
                    ),
                ),
                ("confidential", models.BooleanField()),
                (
                    "dimension",
                    models.CharField(
                        choices=[
                            ("incident", "Incident"),
                            ("country", "Country"),
                            ("perpetrator", "Perpetrator"),
                            ("place", "Place"),
                        ],
                        max_length=12,
                    ),
                ),
                ("within_country", models.CharField(blank=True, max_length=2)),
                ("country", models.CharField(blank=True, max_length=2)),
                ("incidents", models.IntegerField()),
                (
                    "incident_type",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="incidents.incidenttype",
                    ),
                ),
                (
                    "organization",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="incidents.organization",
                    ),
                ),
                (
                    "place",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="incidents.place",
                    ),
                ),
                (
                    "within_place",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="incidents.place",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(condition=models.Q(("incidents", 0)), fields=["id"], name="incident_facet_total_empty")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=(
                            "dimension",
                            "within_place",
                            "within_country",
                            "review_state",
                            "confidential",
                            "country",
                            "place",
                            "organization",
                            "start_year",
                            "end_year",
                            "incident_type",
                            "verification",
                        ),
                        include=("incidents",),
                        name="incident_facet_total",
                        nulls_distinct=False,
                    )
                ],
            },
        ),
        migrations.RunSQL(COUNT_AFTER + COUNT_EXISTING, reverse_sql=COUNT_BEFORE),
        migrations.RemoveIndex(
            model_name="incident",
            name="incident_public_newest_first",
        ),
        migrations.AddIndex(
            model_name="incident",
            index=models.Index(
                condition=models.Q(
                    ("confidential", False), ("merged_into__isnull", True), ("review_state", "published")
                ),
                fields=["-date_start", "-id"],
                name="incident_public_newest",
            ),
        ),
    ]
