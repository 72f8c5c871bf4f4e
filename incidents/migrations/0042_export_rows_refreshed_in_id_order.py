"""`incident_export_refresh` reads the incidents' records in the order of their ids, once each (issue
19, goal 2): the same rows, to the byte, with less work for many incidents (13-17% less CPU for an
import's 100,000 new ones, a quarter less for the demo data's every incident) and no more for one.

The refresh gathered its ids into a distinct set (`selected`) and then, in each of its four reads
(the incidents, their place links, perpetrators and claims), asked `IN (SELECT id FROM selected)`:
PostgreSQL made the set distinct again for each read, by hashing every id (four hashes of 100,000
ids, spilled to disk at the default `work_mem`), and probed each table's index in the hash's
scattered order. The set is now distinct and sorted once, and each read joins it: every id once,
and the indexes of the incidents, links, involvements and claims walked in order, which touches
each page once rather than at random. `EXPLAIN ANALYZE` of both over 100,000 ids, and the figures,
are in bench/README.md ("The export rows' refresh in id order").
"""

import importlib

from django.db import migrations

_BY_TYPE = importlib.import_module("incidents.migrations.0040_export_rows_by_type")
_edited = importlib.import_module("incidents.migrations.0030_export_rows_filters_and_record")._edited

# 0040's refresh, whose reads join the distinct ids, sorted, rather than test membership in them.
REFRESH_SQL = _edited(
    _BY_TYPE.REFRESH_SQL,
    (
        (
            "        SELECT DISTINCT id FROM unnest(incident_ids) AS id\n",
            "        SELECT DISTINCT id FROM unnest(incident_ids) AS id ORDER BY id\n",
        ),
        (
            "        SELECT link.incident_id, link.place_id FROM incidents_incidentplace AS link\n"
            "        WHERE link.incident_id IN (SELECT id FROM selected)\n",
            "        SELECT link.incident_id, link.place_id\n"
            "        FROM selected JOIN incidents_incidentplace AS link ON link.incident_id = selected.id\n",
        ),
        (
            "        FROM incidents_involvement AS involvement\n",
            "        FROM selected JOIN incidents_involvement AS involvement ON involvement.incident_id = selected.id\n",
        ),
        (
            "WHERE involvement.incident_id IN (SELECT id FROM selected) AND involvement.role",
            "WHERE involvement.role",
        ),
        (
            "        FROM incidents_claim AS claim\n",
            "        FROM selected JOIN incidents_claim AS claim ON claim.incident_id = selected.id\n",
        ),
        ("        WHERE claim.incident_id IN (SELECT id FROM selected)\n", ""),
        (
            "    FROM incidents_incident AS incident\n",
            "    FROM selected JOIN incidents_incident AS incident ON incident.id = selected.id\n",
        ),
        ("    WHERE incident.id IN (SELECT id FROM selected)\n", ""),
    ),
)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0041_search_complete_words_only_where_confidential"),
    ]

    operations = [
        migrations.RunSQL(REFRESH_SQL, reverse_sql=_BY_TYPE.REFRESH_SQL),
    ]
