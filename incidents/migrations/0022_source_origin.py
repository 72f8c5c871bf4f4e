from django.db import migrations

# The origin of a source as a reader may know it: follow `cites` up the chain to the source that
# cites nothing. A reader without Confidential access stops at the first confidential source on the
# way: they may count it (as "a source that is not public") but learn nothing beyond it. In SQL so
# that the incident list built by PostgreSQL (the API's projections) and the ORM's annotations and
# filters (`IncidentQuerySet.corroboration`) apply one and the same rule. PL/pgSQL, like
# `place_public_coordinates` (0007), keeps its plan for the connection's life; the depth limit
# guards against a cycle written around `Source.clean()`.
SOURCE_ORIGIN_FUNCTION = """
CREATE OR REPLACE FUNCTION source_origin(start_id bigint, through_confidential boolean)
RETURNS bigint LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    current_id bigint := start_id;
    link record;
BEGIN
    FOR depth IN 1..64 LOOP
        SELECT cites_id, confidential INTO link FROM incidents_source WHERE id = current_id;
        EXIT WHEN NOT FOUND OR link.cites_id IS NULL OR (link.confidential AND NOT through_confidential);
        current_id := link.cites_id;
    END LOOP;
    RETURN current_id;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("incidents", "0014_rulebook")]

    operations = [
        migrations.RunSQL(SOURCE_ORIGIN_FUNCTION, reverse_sql="DROP FUNCTION source_origin(bigint, boolean);"),
    ]
