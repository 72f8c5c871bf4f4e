"""Each incident's CSV row, kept rendered (issue 19, goal 1), so that an export is a COPY of rows.

`incidents_incidentexportrow` holds, for every incident, its cells exactly as the export writes them
(models.IncidentExportRow, incidents/exports.py). Statement triggers keep the rows, in the statement
that changes what they show, as they keep the search words (migration 0016): an incident's insert,
update or delete; its place links, involvements and claims; a place's name, parent or country
(which every place under it shows in its path); an organization's name; a source's title or
confidentiality; an incident type's slug. Places, organizations, sources and types in use cannot
be deleted (PROTECT), and new ones are in no incident yet.

Writers of many rows at once (an import, the demo data) keep the rows of the incidents they insert
themselves, with one call of `incident_export_refresh` once every table is written: while they
turn the insert history off (`tracker.insert_triggers_off`, incidents.history.set_insert_triggers)
the insert triggers do not fire, where each of the four COPY statements of an import would have
computed every new incident's row again.

Concurrent changes to one incident: the refresh first locks the incident's row, so a transaction
refreshing a row another is refreshing waits for it to commit and then, in READ COMMITTED,
computes it again from what is committed (each statement of the function reads anew).
"""

import django.db.models.deletion
from django.db import migrations, models

# The columns the refresh writes, in the order its SELECT lists them.
COLUMNS = (
    "incident_id",
    "public_id",
    "title",
    "type",
    "date_start",
    "date_end",
    "date_precision",
    "date_label",
    "people_count",
    "people_count_min",
    "people_count_max",
    "count_qualifier",
    "countries",
    "places",
    "perpetrators",
    "verification",
    "review_state",
    "merged_into",
    "disclosed_source_count",
    "disclosed_sources",
    "disclosed_claim_min",
    "disclosed_claim_max",
    "complete_source_count",
    "complete_sources",
    "complete_claim_min",
    "complete_claim_max",
    "updated_at",
    "version",
)

# Off while a bulk writer keeps the rows itself (settings.INSERT_TRIGGERS_OFF_SETTING).
INSERT_CONDITION = "WHEN (current_setting('tracker.insert_triggers_off', true) IS DISTINCT FROM 'on')"

EXPORT_SQL = r"""
-- A cell of free text as the export writes it: with a leading apostrophe if a spreadsheet would
-- run it as a formula (incidents.exports.FORMULA_LIKE; a test holds the two equal).
CREATE FUNCTION csv_neutralised(cell text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN cell ~ '^''*[=+\-@\t\r]' THEN '''' || cell ELSE cell END;

-- The rows of the incidents `incident_ids`, computed set-based: one GROUP BY per multi-valued
-- cell's table over the incidents' links, each place's path once per place. The claims' cells
-- twice: `disclosed_*` leave out what ClaimQuerySet.confidential() selects (a confidential claim,
-- or a claim of a confidential source), `complete_*` hold every claim.
CREATE FUNCTION incident_export_refresh(incident_ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(incident_ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM FROM incidents_incidentexportrow WHERE incident_id = ANY (incident_ids)
        ORDER BY incident_id FOR UPDATE;
    INSERT INTO incidents_incidentexportrow ({columns})
    WITH selected AS MATERIALIZED (
        SELECT DISTINCT id FROM unnest(incident_ids) AS id
    ),
    links AS MATERIALIZED (
        SELECT link.incident_id, link.place_id FROM incidents_incidentplace AS link
        WHERE link.incident_id IN (SELECT id FROM selected)
    ),
    place_paths AS MATERIALIZED (
        SELECT place.id, place.country, csv_place_path(place.id) AS path FROM incidents_place AS place
        WHERE place.id IN (SELECT place_id FROM links)
    ),
    places AS (
        SELECT links.incident_id,
               string_agg(DISTINCT place_paths.country, '; ' ORDER BY place_paths.country)
                   FILTER (WHERE place_paths.country <> '') AS countries,
               string_agg(place_paths.path, '; ' ORDER BY place_paths.path) AS places
        FROM links JOIN place_paths ON place_paths.id = links.place_id
        GROUP BY links.incident_id
    ),
    perpetrators AS (
        SELECT involvement.incident_id,
               string_agg(csv_list_item(organization.name), '; ' ORDER BY csv_list_item(organization.name))
                   AS perpetrators
        FROM incidents_involvement AS involvement
        JOIN incidents_organization AS organization ON organization.id = involvement.organization_id
        WHERE involvement.incident_id IN (SELECT id FROM selected) AND involvement.role = 'perpetrator'
        GROUP BY involvement.incident_id
    ),
    claim_items AS (
        SELECT claim.incident_id,
               claim.confidential OR source.confidential AS hidden,
               csv_list_item(source.title) || ' [#' || claim.source_id || ']' AS item,
               coalesce(claim.people_count_min, claim.people_count) AS low,
               coalesce(claim.people_count_max, claim.people_count) AS high
        FROM incidents_claim AS claim
        JOIN incidents_source AS source ON source.id = claim.source_id
        WHERE claim.incident_id IN (SELECT id FROM selected)
    ),
    claims AS (
        SELECT incident_id,
               count(*) FILTER (WHERE NOT hidden) AS disclosed_source_count,
               string_agg(item, '; ' ORDER BY item) FILTER (WHERE NOT hidden) AS disclosed_sources,
               min(low) FILTER (WHERE NOT hidden) AS disclosed_claim_min,
               max(high) FILTER (WHERE NOT hidden) AS disclosed_claim_max,
               count(*) AS complete_source_count,
               string_agg(item, '; ' ORDER BY item) AS complete_sources,
               min(low) AS complete_claim_min,
               max(high) AS complete_claim_max
        FROM claim_items
        GROUP BY incident_id
    )
    SELECT incident.id,
           incident.public_id,
           csv_neutralised(incident.title),
           incident_type.slug,
           incident.date_start,
           incident.date_end,
           incident.date_precision,
           incident.date_label,
           incident.people_count,
           incident.people_count_min,
           incident.people_count_max,
           incident.count_qualifier,
           places.countries,
           csv_neutralised(places.places),
           csv_neutralised(perpetrators.perpetrators),
           incident.verification,
           incident.review_state,
           survivor.public_id,
           coalesce(claims.disclosed_source_count, 0),
           csv_neutralised(claims.disclosed_sources),
           claims.disclosed_claim_min,
           claims.disclosed_claim_max,
           coalesce(claims.complete_source_count, 0),
           csv_neutralised(claims.complete_sources),
           claims.complete_claim_min,
           claims.complete_claim_max,
           to_char(incident.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           incident.version
    FROM incidents_incident AS incident
    JOIN incidents_incidenttype AS incident_type ON incident_type.id = incident.incident_type_id
    LEFT JOIN incidents_incident AS survivor ON survivor.id = incident.merged_into_id
    LEFT JOIN places ON places.incident_id = incident.id
    LEFT JOIN perpetrators ON perpetrators.incident_id = incident.id
    LEFT JOIN claims ON claims.incident_id = incident.id
    WHERE incident.id IN (SELECT id FROM selected)
    -- Stored newest first, as the export reads them: the export's sort then finds them in order.
    ORDER BY incident.date_start DESC, incident.id DESC
    ON CONFLICT (incident_id) DO UPDATE SET {updates};
END
$$;

CREATE FUNCTION incident_export_incidents_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM incident_export_refresh(ARRAY(SELECT id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM incidents_incidentexportrow WHERE incident_id IN (SELECT id FROM old_rows);
    ELSE
        -- Every column the row shows (public_id and date_label are generated from these).
        PERFORM incident_export_refresh(ARRAY(
            SELECT new_rows.id FROM new_rows JOIN old_rows USING (id)
            WHERE (new_rows.title, new_rows.incident_type_id, new_rows.date_start, new_rows.date_end,
                   new_rows.date_precision, new_rows.people_count, new_rows.people_count_min,
                   new_rows.people_count_max, new_rows.count_qualifier, new_rows.verification,
                   new_rows.review_state, new_rows.merged_into_id, new_rows.updated_at, new_rows.version)
                  IS DISTINCT FROM
                  (old_rows.title, old_rows.incident_type_id, old_rows.date_start, old_rows.date_end,
                   old_rows.date_precision, old_rows.people_count, old_rows.people_count_min,
                   old_rows.people_count_max, old_rows.count_qualifier, old_rows.verification,
                   old_rows.review_state, old_rows.merged_into_id, old_rows.updated_at, old_rows.version)
        ));
    END IF;
    RETURN NULL;
END
$$;

-- Place links, involvements and claims: the incidents they belong to, before and after.
CREATE FUNCTION incident_export_links_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM incident_export_refresh(ARRAY(SELECT DISTINCT incident_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM incident_export_refresh(ARRAY(SELECT DISTINCT incident_id FROM old_rows));
    ELSE
        PERFORM incident_export_refresh(ARRAY(SELECT incident_id FROM new_rows UNION SELECT incident_id FROM old_rows));
    END IF;
    RETURN NULL;
END
$$;

-- A place's name and parent are in the path of every place under it; its country in its own.
CREATE FUNCTION incident_export_places_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM incident_export_refresh(ARRAY(
        WITH RECURSIVE changed AS (
            SELECT new_rows.id FROM new_rows JOIN old_rows USING (id)
            WHERE (new_rows.name, new_rows.parent_id, new_rows.country)
                  IS DISTINCT FROM (old_rows.name, old_rows.parent_id, old_rows.country)
            UNION
            SELECT place.id FROM incidents_place AS place JOIN changed ON place.parent_id = changed.id
        )
        SELECT DISTINCT link.incident_id FROM incidents_incidentplace AS link
        WHERE link.place_id IN (SELECT id FROM changed)
    ));
    RETURN NULL;
END
$$;

CREATE FUNCTION incident_export_organizations_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM incident_export_refresh(ARRAY(
        SELECT DISTINCT involvement.incident_id
        FROM new_rows JOIN old_rows USING (id)
        JOIN incidents_involvement AS involvement ON involvement.organization_id = new_rows.id
        WHERE new_rows.name IS DISTINCT FROM old_rows.name AND involvement.role = 'perpetrator'
    ));
    RETURN NULL;
END
$$;

CREATE FUNCTION incident_export_sources_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM incident_export_refresh(ARRAY(
        SELECT DISTINCT claim.incident_id
        FROM new_rows JOIN old_rows USING (id)
        JOIN incidents_claim AS claim ON claim.source_id = new_rows.id
        WHERE (new_rows.title, new_rows.confidential) IS DISTINCT FROM (old_rows.title, old_rows.confidential)
    ));
    RETURN NULL;
END
$$;

CREATE FUNCTION incident_export_incidenttypes_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM incident_export_refresh(ARRAY(
        SELECT incident.id
        FROM new_rows JOIN old_rows USING (id)
        JOIN incidents_incident AS incident ON incident.incident_type_id = new_rows.id
        WHERE new_rows.slug IS DISTINCT FROM old_rows.slug
    ));
    RETURN NULL;
END
$$;

CREATE TRIGGER incident_export_insert AFTER INSERT ON incidents_incident
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT {insert_condition}
    EXECUTE FUNCTION incident_export_incidents_changed();
CREATE TRIGGER incident_export_update AFTER UPDATE ON incidents_incident
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION incident_export_incidents_changed();
CREATE TRIGGER incident_export_delete AFTER DELETE ON incidents_incident
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION incident_export_incidents_changed();
""".format(
    columns=", ".join(COLUMNS),
    updates=", ".join(f"{column} = EXCLUDED.{column}" for column in COLUMNS[1:]),
    insert_condition=INSERT_CONDITION,
)

# Triggers on the tables that link an incident to more cells: the same three for each.
LINK_TABLES = ("incidents_incidentplace", "incidents_involvement", "incidents_claim")
LINK_TRIGGERS_SQL = "".join(
    f"""
CREATE TRIGGER incident_export_insert AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT {INSERT_CONDITION}
    EXECUTE FUNCTION incident_export_links_changed();
CREATE TRIGGER incident_export_update AFTER UPDATE ON {table}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION incident_export_links_changed();
CREATE TRIGGER incident_export_delete AFTER DELETE ON {table}
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION incident_export_links_changed();
"""
    for table in LINK_TABLES
)

# Places, organizations, sources and types: only a change of what the rows show of them matters.
RECORD_TABLES = ("place", "organization", "source", "incidenttype")
RECORD_TRIGGERS_SQL = "".join(
    f"""
CREATE TRIGGER incident_export_update AFTER UPDATE ON incidents_{name}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION incident_export_{name}s_changed();
"""
    for name in RECORD_TABLES
)

REVERSE_SQL = (
    "".join(
        f"DROP TRIGGER incident_export_{event} ON {table};"
        for table in ("incidents_incident", *LINK_TABLES)
        for event in ("insert", "update", "delete")
    )
    + "".join(f"DROP TRIGGER incident_export_update ON incidents_{name};" for name in RECORD_TABLES)
    + "".join(
        f"DROP FUNCTION incident_export_{name}_changed();"
        for name in ("incidents", "links", *(f"{name}s" for name in RECORD_TABLES))
    )
    + "DROP FUNCTION incident_export_refresh(bigint[]); DROP FUNCTION csv_neutralised(text);"
)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0027_duplicate_type_date_span"),
    ]

    operations = [
        migrations.CreateModel(
            name="IncidentExportRow",
            fields=[
                (
                    "incident",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="export_row",
                        serialize=False,
                        to="incidents.incident",
                    ),
                ),
                ("public_id", models.TextField()),
                ("title", models.TextField()),
                ("type", models.TextField()),
                ("date_start", models.DateField()),
                ("date_end", models.DateField()),
                ("date_precision", models.TextField()),
                ("date_label", models.TextField()),
                ("people_count", models.IntegerField(null=True)),
                ("people_count_min", models.IntegerField(null=True)),
                ("people_count_max", models.IntegerField(null=True)),
                ("count_qualifier", models.TextField()),
                ("countries", models.TextField(null=True)),
                ("places", models.TextField(null=True)),
                ("perpetrators", models.TextField(null=True)),
                ("verification", models.TextField()),
                ("review_state", models.TextField()),
                ("merged_into", models.TextField(null=True)),
                ("disclosed_source_count", models.IntegerField()),
                ("disclosed_sources", models.TextField(null=True)),
                ("disclosed_claim_min", models.IntegerField(null=True)),
                ("disclosed_claim_max", models.IntegerField(null=True)),
                ("complete_source_count", models.IntegerField()),
                ("complete_sources", models.TextField(null=True)),
                ("complete_claim_min", models.IntegerField(null=True)),
                ("complete_claim_max", models.IntegerField(null=True)),
                ("updated_at", models.TextField()),
                ("version", models.IntegerField()),
            ],
        ),
        migrations.RunSQL(EXPORT_SQL + LINK_TRIGGERS_SQL + RECORD_TRIGGERS_SQL, reverse_sql=REVERSE_SQL),
        # Every incident's row, in one statement (about a minute at 1,000,000 incidents).
        migrations.RunSQL(
            "SELECT incident_export_refresh(ARRAY(SELECT id FROM incidents_incident))",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
