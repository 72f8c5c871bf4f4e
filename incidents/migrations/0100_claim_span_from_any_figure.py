"""The claims' span (`claim_min`, `claim_max` in the CSV; `claim_people_min`, `claim_people_max` in
the API) from every figure a claim gives: a claim "at least 3000" (a minimum alone) counted for the
low end only, and one "at most 5" (a maximum alone) for the high end only, so "10", "at least 3000"
and "at most 5" read 10 to 10, under one source's figure and over another's. A claim's low end is now
its minimum, else its best estimate, else its maximum; its high end the other way round, as
`querysets.claim_people_span` says it for the API. The kept rows of the incidents holding such a
claim are made again.
"""

import importlib

from django.db import migrations

# The refresh as migration 0095 left it (0096-0099 did not change it).
_PREVIOUS = importlib.import_module("incidents.migrations.0095_versions_per_audience")
_edited = importlib.import_module("incidents.migrations.0030_export_rows_filters_and_record")._edited

SPAN = (
    "               coalesce(claim.people_count_min, claim.people_count) AS low,\n"
    "               coalesce(claim.people_count_max, claim.people_count) AS high\n",
    "               coalesce(claim.people_count_min, claim.people_count, claim.people_count_max) AS low,\n"
    "               coalesce(claim.people_count_max, claim.people_count, claim.people_count_min) AS high\n",
)

REFRESH_SQL = _edited(_PREVIOUS.REFRESH_SQL, (SPAN,))

# The incidents with a claim giving one bound alone, whose span changes.
REFRESH_ROWS_WITH_A_BOUND_ALONE = """
SELECT incident_export_refresh(ARRAY(
    SELECT DISTINCT incident_id FROM incidents_claim
    WHERE people_count IS NULL AND (people_count_min IS NULL) <> (people_count_max IS NULL)
));
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0099_merge_revision_back"),
    ]

    operations = [
        migrations.RunSQL(
            REFRESH_SQL + REFRESH_ROWS_WITH_A_BOUND_ALONE,
            reverse_sql=_PREVIOUS.REFRESH_SQL + REFRESH_ROWS_WITH_A_BOUND_ALONE,
        ),
    ]
