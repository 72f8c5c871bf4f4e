"""A loop of `cites` (a source relaying a source that, through others, relays it) gives every source
on it one origin: the loop's lowest id, whichever source the walk enters it from. Loops were refused
by `Source.clean`, but a refusal of a loop through a confidential source told a writer who may not
see it what it cites; such a loop is now accepted (services.record_save refuses only a loop its
writer sees whole), and two writers closing one loop at once were never refused. The walk ended
after 64 steps wherever it was on a loop, so the sources of one loop had different origins and the
incidents citing them counted one relayed report several times.

Before this migration only two writers closing one loop at once could make one; the kept counts
of the incidents citing its sources, or sources relaying them, are made again."""

import importlib

from django.db import migrations

_SOURCE_ORIGIN_OF_0018 = importlib.import_module(
    "incidents.migrations.0018_source_origin_releases"
).SOURCE_ORIGIN_FUNCTION
_edited = importlib.import_module("incidents.migrations.0030_export_rows_filters_and_record")._edited

# 0018's walk, which keeps the sources it has walked and, back at one of them, names the loop by its
# lowest id.
SOURCE_ORIGIN = _edited(
    _SOURCE_ORIGIN_OF_0018,
    (
        (
            "    current_id bigint := start_id;\n",
            "    current_id bigint := start_id;\n    walked bigint[] := ARRAY[start_id];\n",
        ),
        (
            "        current_id := cited.id;\n",
            "        IF cited.id = ANY(walked) THEN\n"
            "            RETURN (SELECT min(id) FROM unnest(walked[array_position(walked, cited.id):]) AS id);\n"
            "        END IF;\n"
            "        walked := walked || cited.id;\n"
            "        current_id := cited.id;\n",
        ),
    ),
)

# Sources on a loop or leading into one, as the concurrent writes that alone could close one before
# this migration left them: their incidents' kept counts are made again with the new origins.
REFRESH_LOOPS = """
SELECT incident_export_refresh(ARRAY(
    WITH RECURSIVE walk(start_id, id) AS (
        SELECT id, cites_id FROM incidents_source WHERE cites_id IS NOT NULL
        UNION
        SELECT walk.start_id, source.cites_id
        FROM walk JOIN incidents_source AS source ON source.id = walk.id
        WHERE source.cites_id IS NOT NULL
    ),
    on_loops AS (SELECT start_id AS id FROM walk WHERE id = start_id)
    SELECT DISTINCT claim.incident_id FROM incidents_claim AS claim
    WHERE claim.source_id IN (SELECT start_id FROM walk WHERE id IN (SELECT id FROM on_loops))
));
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0050_lock_organization_and_type"),
    ]

    operations = [
        migrations.RunSQL(SOURCE_ORIGIN, reverse_sql=_SOURCE_ORIGIN_OF_0018),
        migrations.RunSQL(REFRESH_LOOPS, reverse_sql=migrations.RunSQL.noop),
    ]
