"""The kept export rows hold each incident's independent origins per audience (issue 19, goal 1): an
export filtered by `min_origins` selects the rows by their own count (exports.kept_rows), where it
selected the ids of the incidents its queryset annotated with a correlated count each, every visible
incident's claims and their sources' chains read at export time (11-13 s at 1,000,000 incidents, 23-27x
a flat COPY of the same bytes; now 1.2-1.6x: bench/README.md, "min_origins said of the kept rows").

`disclosed_origins` counts the origins of the claims a reader without the confidential permission may
see (`ClaimQuerySet.disclosed_to`), each chain ending at the last source such a reader may see;
`complete_origins` every claim's, each chain followed to its end: `source_origin` (migration 0018),
as `querysets.claim_origin` calls it. `incident_export_refresh` computes both from the same claims as
the claims' cells, in the same statement. An incident's origins also change when a source in one of
its claims' chains cites another source, or becomes confidential or public: the trigger on sources,
which refreshed the incidents of a source whose title or confidentiality changed, now also refreshes
the incidents of every source relaying it, however indirectly, when its `cites` or confidentiality
changes. Sources in use, cited or not, cannot be deleted (PROTECT), and a new one is in no chain yet.

The existing rows are filled by rewriting the table in the order they are stored, as migration 0040
filled the type id, with the order index (`export_row_newest`) built anew after it to include both
counts, so that the record of a confidential reader's export (access.record_export_access) still
reads that index alone: 139 s at 1,000,000 incidents on a busy 2-core machine, during which the kept
rows are locked (ACCESS EXCLUSIVE): exports, and writes to incidents, wait for it.
"""

import importlib

from django.db import migrations, models

_BY_TYPE = importlib.import_module("incidents.migrations.0040_export_rows_by_type")
_IN_ID_ORDER = importlib.import_module("incidents.migrations.0042_export_rows_refreshed_in_id_order")
_EXPORT_ROWS = importlib.import_module("incidents.migrations.0028_incident_export_rows")
_edited = importlib.import_module("incidents.migrations.0030_export_rows_filters_and_record")._edited

_TABLE = "incidents_incidentexportrow"
_COLUMNS_OF_0040 = _BY_TYPE._COLUMNS
_NEW_COLUMNS = ("disclosed_origins", "complete_origins")
_COLUMNS = (*_COLUMNS_OF_0040[:-2], *_NEW_COLUMNS, *_COLUMNS_OF_0040[-2:])

# 0042's refresh, which also counts the distinct origins of each incident's claims, once of those a
# reader without the confidential permission may see (not `hidden`) as such a reader may know them,
# once of all. A source that cites nothing is its own origin; each relay among the claims' sources
# calls `source_origin` once per audience (`relays`), not once per claim: for 100,000 demo incidents
# 8,044 calls (283 ms) instead of 67,663 (3.9 s), for an extra read of the claims' source ids.
REFRESH_SQL = _edited(
    _IN_ID_ORDER.REFRESH_SQL,
    (
        (", ".join(_COLUMNS_OF_0040) + ")", ", ".join(_COLUMNS) + ")"),
        (
            ", ".join(f"{column} = EXCLUDED.{column}" for column in _COLUMNS_OF_0040[1:]),
            ", ".join(f"{column} = EXCLUDED.{column}" for column in _COLUMNS[1:]),
        ),
        (
            "    claim_items AS (\n",
            "    relays AS MATERIALIZED (\n"
            "        SELECT source.id, source_origin(source.id, false) AS disclosed_origin,\n"
            "               source_origin(source.id, true) AS complete_origin\n"
            "        FROM incidents_source AS source\n"
            "        WHERE source.cites_id IS NOT NULL AND source.id IN (\n"
            "            SELECT claim.source_id\n"
            "            FROM selected JOIN incidents_claim AS claim ON claim.incident_id = selected.id\n"
            "        )\n"
            "    ),\n"
            "    claim_items AS (\n",
        ),
        (
            "               claim.confidential OR source.confidential AS hidden,\n",
            "               claim.confidential OR source.confidential AS hidden,\n"
            "               coalesce(relays.disclosed_origin, claim.source_id) AS disclosed_origin,\n"
            "               coalesce(relays.complete_origin, claim.source_id) AS complete_origin,\n",
        ),
        (
            "        JOIN incidents_source AS source ON source.id = claim.source_id\n    ),\n",
            "        JOIN incidents_source AS source ON source.id = claim.source_id\n"
            "        LEFT JOIN relays ON relays.id = claim.source_id\n    ),\n",
        ),
        (
            "                   AS confidential_source_ids\n",
            "                   AS confidential_source_ids,\n"
            "               count(DISTINCT disclosed_origin) FILTER (WHERE NOT hidden) AS disclosed_origins,\n"
            "               count(DISTINCT complete_origin) AS complete_origins\n",
        ),
        (
            "           claims.confidential_source_ids,\n",
            "           claims.confidential_source_ids,\n"
            "           coalesce(claims.disclosed_origins, 0),\n"
            "           coalesce(claims.complete_origins, 0),\n",
        ),
    ),
)

_SOURCES_CHANGED_OF_0028 = _EXPORT_ROWS.EXPORT_SQL[
    _EXPORT_ROWS.EXPORT_SQL.index("CREATE FUNCTION incident_export_sources_changed") : _EXPORT_ROWS.EXPORT_SQL.index(
        "CREATE FUNCTION incident_export_incidenttypes_changed"
    )
].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)

# A source's title is in its own claims' cells, its confidentiality in them and in the origin of every
# source whose chain passes through it, and its `cites` in the origin of itself and of those: their
# incidents' rows are refreshed. The relays are found by the index on `cites`, one level at a time
# (UNION: a cycle, which Source.clean refuses, would still end).
SOURCES_CHANGED_SQL = """
CREATE OR REPLACE FUNCTION incident_export_sources_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM incident_export_refresh(ARRAY(
        WITH RECURSIVE changed AS (
            SELECT new_rows.id,
                   (new_rows.cites_id, new_rows.confidential)
                       IS DISTINCT FROM (old_rows.cites_id, old_rows.confidential) AS in_chains
            FROM new_rows JOIN old_rows USING (id)
            WHERE (new_rows.title, new_rows.confidential, new_rows.cites_id)
                  IS DISTINCT FROM (old_rows.title, old_rows.confidential, old_rows.cites_id)
        ),
        relays AS (
            SELECT id FROM changed WHERE in_chains
            UNION
            SELECT source.id FROM incidents_source AS source JOIN relays ON source.cites_id = relays.id
        )
        SELECT DISTINCT claim.incident_id FROM incidents_claim AS claim
        WHERE claim.source_id IN (SELECT id FROM changed UNION SELECT id FROM relays)
    ));
    RETURN NULL;
END
$$;
"""

# Filled by rewriting the table (a change of the columns' type to themselves, both in one rewrite, in
# the order the rows are stored, with every index built anew; an UPDATE of every row would leave the
# table and its indexes twice their size, migration 0040), from every incident's counts computed
# first in one statement as the refresh computes them, each relay's origins once: a USING clause may
# not hold a subquery, and a function counting each row's claims by itself took 38-48 s at 200,000
# incidents.
FILL_SQL = f"""
CREATE TEMPORARY TABLE independent_origins AS
WITH relays AS MATERIALIZED (
    SELECT source.id, source_origin(source.id, false) AS disclosed_origin,
           source_origin(source.id, true) AS complete_origin
    FROM incidents_source AS source WHERE source.cites_id IS NOT NULL
)
SELECT claim.incident_id,
       count(DISTINCT coalesce(relays.disclosed_origin, claim.source_id))
           FILTER (WHERE NOT (claim.confidential OR source.confidential)) AS disclosed_origins,
       count(DISTINCT coalesce(relays.complete_origin, claim.source_id)) AS complete_origins
FROM incidents_claim AS claim
JOIN incidents_source AS source ON source.id = claim.source_id
LEFT JOIN relays ON relays.id = claim.source_id
GROUP BY claim.incident_id;
ALTER TABLE independent_origins ADD PRIMARY KEY (incident_id);
CREATE FUNCTION pg_temp.disclosed_origins_of(incident bigint) RETURNS integer LANGUAGE sql STABLE
RETURN coalesce((SELECT disclosed_origins FROM independent_origins WHERE incident_id = incident), 0);
CREATE FUNCTION pg_temp.complete_origins_of(incident bigint) RETURNS integer LANGUAGE sql STABLE
RETURN coalesce((SELECT complete_origins FROM independent_origins WHERE incident_id = incident), 0);
ALTER TABLE {_TABLE}
    ALTER COLUMN disclosed_origins TYPE integer USING pg_temp.disclosed_origins_of(incident_id),
    ALTER COLUMN disclosed_origins SET NOT NULL,
    ALTER COLUMN complete_origins TYPE integer USING pg_temp.complete_origins_of(incident_id),
    ALTER COLUMN complete_origins SET NOT NULL;
DROP FUNCTION pg_temp.disclosed_origins_of(bigint);
DROP FUNCTION pg_temp.complete_origins_of(bigint);
DROP TABLE independent_origins;
"""


# The columns the order index includes since migration 0039.
_ORDER_INDEX_INCLUDED = (
    "date_end",
    "countries",
    "merged_into",
    "review_state",
    "confidential",
    "disclosed_source_count",
    "complete_source_count",
    "updated_at",
)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0042_export_rows_refreshed_in_id_order"),
    ]

    operations = [
        # Dropped before the rewrite, which would build it once more for nothing.
        migrations.RemoveIndex(model_name="incidentexportrow", name="export_row_newest"),
        # Added empty, then filled: NOT NULL once every row holds its counts.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(model_name="incidentexportrow", name=column, field=models.IntegerField())
                for column in _NEW_COLUMNS
            ],
            database_operations=[
                migrations.RunSQL(
                    f"ALTER TABLE {_TABLE} ADD COLUMN disclosed_origins integer, ADD COLUMN complete_origins integer",
                    reverse_sql=f"ALTER TABLE {_TABLE} DROP COLUMN disclosed_origins, DROP COLUMN complete_origins",
                ),
            ],
        ),
        migrations.RunSQL(
            REFRESH_SQL + SOURCES_CHANGED_SQL, reverse_sql=_IN_ID_ORDER.REFRESH_SQL + _SOURCES_CHANGED_OF_0028
        ),
        migrations.RunSQL(FILL_SQL, reverse_sql=migrations.RunSQL.noop),
        migrations.AddIndex(
            model_name="incidentexportrow",
            index=models.Index(
                fields=["-date_start", "-incident"],
                include=(*_ORDER_INDEX_INCLUDED, *_NEW_COLUMNS),
                name="export_row_newest",
            ),
        ),
        # A change of a column's type drops its statistics (migration 0040), which the planner needs
        # to tell how many rows a count's bound selects.
        migrations.RunSQL(f"ANALYZE {_TABLE} ({', '.join(_NEW_COLUMNS)})", reverse_sql=migrations.RunSQL.noop),
    ]
