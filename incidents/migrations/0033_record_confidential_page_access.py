"""The record of a page of confidential incidents, written by one function (issue 17).

A list page that shows a reader with the confidential permission any confidential incident, claim
or source records it (`incidents.access`): the confidential incidents among the page's rows, and
the confidential claims and sources that their kept export rows name (migration 0030, kept by the
same rule that hides them, `ClaimQuerySet.confidential`). Written as statements of a PL/pgSQL
function, their plans are made once per connection; inlined into each page's statement, the
lookup and the insert were planned on every request, which cost the incident list as much as
running them (0.9 ms of a 7 ms statement against 0.5 ms, both measured with pgbench at 1,000,000
incidents).
"""

from django.db import migrations

CREATE_SQL = """
CREATE FUNCTION record_confidential_page_access(
    reader_id bigint, through text, page_path text, shown_incident_ids bigint[], confidential_incident_ids bigint[],
    wait_for_disk boolean
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    found_claim_ids bigint[];
    found_source_ids bigint[];
BEGIN
    -- Only the incidents that have any: the partial index export_row_confidential holds just them.
    WITH kept AS (
        SELECT confidential_claim_ids, confidential_source_ids
        FROM incidents_incidentexportrow
        WHERE incident_id = ANY (shown_incident_ids) AND confidential_claim_ids IS NOT NULL
    )
    SELECT
        ARRAY(SELECT DISTINCT claim_id FROM kept, unnest(confidential_claim_ids) AS claim_id ORDER BY claim_id),
        ARRAY(SELECT DISTINCT source_id FROM kept, unnest(confidential_source_ids) AS source_id ORDER BY source_id)
    INTO found_claim_ids, found_source_ids;
    IF cardinality(confidential_incident_ids) = 0 AND cardinality(found_claim_ids) = 0 THEN
        RETURN;
    END IF;
    IF NOT wait_for_disk THEN
        -- For this transaction only: a read's record need not wait for the flush (see
        -- incidents.access._INSERT_WITHOUT_WAITING_FOR_THE_DISK).
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    INSERT INTO incidents_confidentialaccess (at, user_id, door, path, incident_ids, claim_ids, source_ids)
    VALUES (now(), reader_id, through, page_path, confidential_incident_ids, found_claim_ids, found_source_ids);
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("incidents", "0032_lock_claim_source")]

    operations = [
        migrations.RunSQL(
            CREATE_SQL,
            reverse_sql="DROP FUNCTION record_confidential_page_access(bigint, text, text, bigint[], bigint[], boolean);",
        )
    ]
