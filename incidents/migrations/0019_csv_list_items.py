from django.db import migrations

# How the CSV export writes one item of a multi-valued cell (places, perpetrators, sources,
# countries hold items separated by "; "): as it is, unless it holds a character the cell's
# grammar uses (`;` between items, `>` between a place's path segments, `[` before a source's id,
# `"` for quoting) or starts or ends with white space, which the import would strip; then in double
# quotes, inner double quotes doubled, as in a CSV field. `incidents.exports.csv_list_item` is the
# same rule in Python (a test holds them equal); the import reads it back. Not STRICT, so that
# PostgreSQL inlines it into the export's query rather than calling it per name.
LIST_ITEM_FUNCTION = r"""
CREATE OR REPLACE FUNCTION csv_list_item(item text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN item ~ '[;>["]|^\s|\s$' THEN '"' || replace(item, '"', '""') || '"' ELSE item END;
"""

# A place as the export writes it: the names from the outermost place down to it, each as a list
# item, joined with " > " (`Vietnam > Lao Cai > Lao Cai`). Unique, since a name is unique within its
# parent (place_name_unique_in_parent). PL/pgSQL, like place_public_coordinates, so its plan is kept
# for the connection's life; the depth limit guards against a cycle written around `clean()`.
PLACE_PATH_FUNCTION = """
CREATE OR REPLACE FUNCTION csv_place_path(place_id bigint)
RETURNS text LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE AS $$
DECLARE
    place record;
    path text;
BEGIN
    SELECT name, parent_id INTO place FROM incidents_place WHERE id = place_id;
    FOR depth IN 1..32 LOOP
        EXIT WHEN NOT FOUND;
        path := csv_list_item(place.name) || coalesce(' > ' || path, '');
        EXIT WHEN place.parent_id IS NULL;
        SELECT name, parent_id INTO place FROM incidents_place WHERE id = place.parent_id;
    END LOOP;
    RETURN path;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("incidents", "0018_source_origin_releases")]

    operations = [
        migrations.RunSQL(LIST_ITEM_FUNCTION, reverse_sql="DROP FUNCTION csv_list_item(text);"),
        migrations.RunSQL(PLACE_PATH_FUNCTION, reverse_sql="DROP FUNCTION csv_place_path(bigint);"),
    ]
