from django.db import migrations

# The coordinates the public may see for a place: its own, unless it is sensitive or has none, in
# which case its parent's by the same rule, up the chain. In SQL so that a list of incidents built by
# PostgreSQL (the API's incident list) and the ORM's annotations (`Place.objects.with_coordinates_for`)
# apply one and the same rule. The depth limit guards against a cycle written around `clean()`.
PUBLIC_COORDINATES_FUNCTION = """
CREATE OR REPLACE FUNCTION place_public_coordinates(place_id bigint)
RETURNS numeric[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
WITH RECURSIVE chain AS (
    SELECT id, parent_id, latitude, longitude, sensitive, 0 AS depth
    FROM incidents_place WHERE id = place_id
    UNION ALL
    SELECT parent.id, parent.parent_id, parent.latitude, parent.longitude, parent.sensitive, chain.depth + 1
    FROM incidents_place parent JOIN chain ON parent.id = chain.parent_id
    WHERE (chain.sensitive OR chain.latitude IS NULL) AND chain.depth < 32
)
SELECT ARRAY[latitude, longitude] FROM chain
WHERE NOT sensitive AND latitude IS NOT NULL
ORDER BY depth LIMIT 1
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("incidents", "0006_track_response_incidents")]

    operations = [
        migrations.RunSQL(PUBLIC_COORDINATES_FUNCTION, reverse_sql="DROP FUNCTION place_public_coordinates(bigint);"),
    ]
