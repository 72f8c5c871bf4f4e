"""The sources an incident's claims cite, and every source up their `cites`, share-locked at once:
what `lock_source` locks for each claim, for a merge (and its undo), which moves claims to another
incident with an UPDATE of their incident alone.

The row triggers that lock what a link refers to (`lock_source`, `lock_publisher`, `lock_place`,
`lock_organization`) fire on an insert and on a change of what the link refers to, not on a change
of its incident: a merge that moved a claim, a place link or an involvement while a reviewer made
the source confidential, changed the place's country or renamed the organization left the
survivor's kept export row and search words as the record was (the reviewer's refresh saw the links
where they were, on the merged incident). `incidents.merges` locks what the links it moves refer to
before it moves them: `incident_links_lock` (migration 0050) and this function."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0051_source_origin_of_a_loop"),
    ]

    operations = [
        # As far up `cites` as `lock_source` walks (64 steps; a loop is walked round until then), by
        # id. A claim's own lock_source stays on in bulk, so writers in bulk need not call this.
        migrations.RunSQL(
            """
            CREATE FUNCTION incident_sources_lock(incident_ids bigint[]) RETURNS void
            LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                -- PERFORM reads every row (a SQL function's last SELECT would stop at the first).
                PERFORM FROM incidents_source AS source
                WHERE source.id IN (
                    WITH RECURSIVE chain(id, depth) AS (
                        SELECT claim.source_id, 0 FROM incidents_claim AS claim
                        WHERE claim.incident_id = ANY (incident_ids)
                        UNION
                        SELECT cited.cites_id, chain.depth + 1
                        FROM chain JOIN incidents_source AS cited ON cited.id = chain.id
                        WHERE cited.cites_id IS NOT NULL AND chain.depth < 64
                    )
                    SELECT id FROM chain
                )
                ORDER BY source.id
                FOR SHARE OF source;
            END
            $$;
            """,
            reverse_sql="DROP FUNCTION incident_sources_lock(bigint[]);",
        ),
    ]
