"""One search for the admin and the API (incidents/search.py), served by one set of indexes.

Each incident's searchable words are kept in `incidents_incidentsearchdocument` by statement
triggers, in the statement that changes them: a change to an incident's title or description, to its
place links, involvements or claims, or to a place, organization or source whose words it holds,
recomputes the words of the incidents concerned (a bulk COPY: once per statement). Two GIN indexes,
one per audience, answer every search. The indexes of the two former searches (trigram indexes for
the admin's, full-text expression indexes for the API's) go.

Concurrent changes to one incident: the refresh first locks the incident's row of words, so a
transaction refreshing words another is refreshing waits for it to commit and then, in READ
COMMITTED, computes them again from what is committed (each statement of the function reads anew).
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
import django.db.models.deletion
from django.db import migrations, models

SEARCH_SQL = """
-- The texts of the incidents: what every reader who may see the incident may search, and what only
-- readers with the confidential permission may (claims that are confidential or whose source is).
CREATE FUNCTION incident_search_texts(incident_ids bigint[])
RETURNS TABLE (incident_id bigint, disclosed text, confidential text) LANGUAGE sql STABLE AS $$
    SELECT incident.id,
           concat_ws(' ', incident.public_id, incident.title, incident.description,
               (SELECT string_agg(concat_ws(' ', place.name, array_to_string(place.alternate_names, ' ')), ' ')
                FROM incidents_incidentplace AS link JOIN incidents_place AS place ON place.id = link.place_id
                WHERE link.incident_id = incident.id),
               (SELECT string_agg(concat_ws(' ', organization.name, organization.acronym,
                                            array_to_string(organization.aliases, ' ')), ' ')
                FROM incidents_involvement AS involvement
                JOIN incidents_organization AS organization ON organization.id = involvement.organization_id
                WHERE involvement.incident_id = incident.id),
               claims.disclosed),
           claims.confidential
    FROM incidents_incident AS incident
    CROSS JOIN LATERAL (
        SELECT string_agg(claim_text, ' ') FILTER (WHERE NOT hidden) AS disclosed,
               string_agg(claim_text, ' ') FILTER (WHERE hidden) AS confidential
        FROM (
            SELECT claim.confidential OR source.confidential AS hidden,
                   concat_ws(' ', claim.excerpt, source.title, publisher.name, publisher.acronym,
                             array_to_string(publisher.aliases, ' ')) AS claim_text
            FROM incidents_claim AS claim
            JOIN incidents_source AS source ON source.id = claim.source_id
            LEFT JOIN incidents_organization AS publisher ON publisher.id = source.publisher_id
            WHERE claim.incident_id = incident.id
        ) AS claim_texts
    ) AS claims
    WHERE incident.id = ANY (incident_ids)
$$;

CREATE FUNCTION incident_search_refresh(incident_ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(incident_ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM FROM incidents_incidentsearchdocument WHERE incident_id = ANY (incident_ids)
        ORDER BY incident_id FOR UPDATE;
    INSERT INTO incidents_incidentsearchdocument (incident_id, disclosed, complete)
    SELECT texts.incident_id, words.disclosed, words.disclosed || to_tsvector('simple', coalesce(texts.confidential, ''))
    FROM incident_search_texts(incident_ids) AS texts
    CROSS JOIN LATERAL (SELECT to_tsvector('simple', texts.disclosed) AS disclosed) AS words
    ON CONFLICT (incident_id) DO UPDATE SET disclosed = EXCLUDED.disclosed, complete = EXCLUDED.complete;
END
$$;

CREATE FUNCTION incident_search_incidents_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM incident_search_refresh(ARRAY(SELECT id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM incidents_incidentsearchdocument WHERE incident_id IN (SELECT id FROM old_rows);
    ELSE
        PERFORM incident_search_refresh(ARRAY(
            SELECT new_rows.id FROM new_rows JOIN old_rows USING (id)
            WHERE (new_rows.title, new_rows.description) IS DISTINCT FROM (old_rows.title, old_rows.description)
        ));
    END IF;
    RETURN NULL;
END
$$;

-- Place links, involvements and claims: the incidents they belong to, before and after.
CREATE FUNCTION incident_search_links_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM incident_search_refresh(ARRAY(SELECT DISTINCT incident_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM incident_search_refresh(ARRAY(SELECT DISTINCT incident_id FROM old_rows));
    ELSE
        PERFORM incident_search_refresh(ARRAY(SELECT incident_id FROM new_rows UNION SELECT incident_id FROM old_rows));
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION incident_search_places_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM incident_search_refresh(ARRAY(
        SELECT DISTINCT link.incident_id
        FROM new_rows JOIN old_rows USING (id)
        JOIN incidents_incidentplace AS link ON link.place_id = new_rows.id
        WHERE (new_rows.name, new_rows.alternate_names) IS DISTINCT FROM (old_rows.name, old_rows.alternate_names)
    ));
    RETURN NULL;
END
$$;

-- An organization's words are in the incidents it is involved in and those its sources are cited for.
CREATE FUNCTION incident_search_organizations_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM incident_search_refresh(ARRAY(
        WITH changed AS (
            SELECT new_rows.id FROM new_rows JOIN old_rows USING (id)
            WHERE (new_rows.name, new_rows.acronym, new_rows.aliases)
                  IS DISTINCT FROM (old_rows.name, old_rows.acronym, old_rows.aliases)
        )
        SELECT involvement.incident_id FROM incidents_involvement AS involvement
        WHERE involvement.organization_id IN (SELECT id FROM changed)
        UNION
        SELECT claim.incident_id FROM incidents_claim AS claim
        JOIN incidents_source AS source ON source.id = claim.source_id
        WHERE source.publisher_id IN (SELECT id FROM changed)
    ));
    RETURN NULL;
END
$$;

CREATE FUNCTION incident_search_sources_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM incident_search_refresh(ARRAY(
        SELECT DISTINCT claim.incident_id
        FROM new_rows JOIN old_rows USING (id)
        JOIN incidents_claim AS claim ON claim.source_id = new_rows.id
        WHERE (new_rows.title, new_rows.publisher_id, new_rows.confidential)
              IS DISTINCT FROM (old_rows.title, old_rows.publisher_id, old_rows.confidential)
    ));
    RETURN NULL;
END
$$;

CREATE TRIGGER incident_search_insert AFTER INSERT ON incidents_incident
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION incident_search_incidents_changed();
CREATE TRIGGER incident_search_update AFTER UPDATE ON incidents_incident
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION incident_search_incidents_changed();
CREATE TRIGGER incident_search_delete AFTER DELETE ON incidents_incident
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION incident_search_incidents_changed();
"""

# Triggers on the tables that link an incident to more words: the same three for each.
LINK_TABLES = ("incidents_incidentplace", "incidents_involvement", "incidents_claim")
LINK_TRIGGERS_SQL = "".join(
    f"""
CREATE TRIGGER incident_search_insert AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION incident_search_links_changed();
CREATE TRIGGER incident_search_update AFTER UPDATE ON {table}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION incident_search_links_changed();
CREATE TRIGGER incident_search_delete AFTER DELETE ON {table}
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION incident_search_links_changed();
"""
    for table in LINK_TABLES
)

# Places, organizations and sources in use cannot be deleted (PROTECT), and new ones are in no
# incident yet: only a change of their words matters.
RECORD_TRIGGERS_SQL = "".join(
    f"""
CREATE TRIGGER incident_search_update AFTER UPDATE ON incidents_{name}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION incident_search_{name}s_changed();
"""
    for name in ("place", "organization", "source")
)

REVERSE_SQL = (
    "".join(
        f"DROP TRIGGER incident_search_{event} ON {table};"
        for table in ("incidents_incident", *LINK_TABLES)
        for event in ("insert", "update", "delete")
    )
    + "".join(
        f"DROP TRIGGER incident_search_update ON incidents_{name};" for name in ("place", "organization", "source")
    )
    + "".join(
        f"DROP FUNCTION incident_search_{name}();"
        for name in ("incidents_changed", "links_changed", "places_changed", "organizations_changed", "sources_changed")
    )
    + "DROP FUNCTION incident_search_refresh(bigint[]); DROP FUNCTION incident_search_texts(bigint[]);"
)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0015_constraint_messages_and_place_countries"),
    ]

    operations = [
        migrations.CreateModel(
            name="IncidentSearchDocument",
            fields=[
                (
                    "incident",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="search_document",
                        serialize=False,
                        to="incidents.incident",
                    ),
                ),
                ("disclosed", django.contrib.postgres.search.SearchVectorField()),
                ("complete", django.contrib.postgres.search.SearchVectorField()),
            ],
        ),
        # Every incident's words, before the indexes are built over them (faster than row by row).
        migrations.RunSQL(
            SEARCH_SQL + LINK_TRIGGERS_SQL + RECORD_TRIGGERS_SQL,
            reverse_sql=REVERSE_SQL,
        ),
        migrations.RunSQL(
            "SELECT incident_search_refresh(ARRAY(SELECT id FROM incidents_incident))",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.RemoveIndex(
            model_name="claim",
            name="claim_excerpt_search",
        ),
        migrations.RemoveIndex(
            model_name="incident",
            name="incident_text_search",
        ),
        migrations.RemoveIndex(
            model_name="incident",
            name="incident_title_search",
        ),
        migrations.RemoveIndex(
            model_name="incident",
            name="incident_description_search",
        ),
        migrations.RemoveIndex(
            model_name="incident",
            name="incident_public_id_search",
        ),
        migrations.RemoveIndex(
            model_name="place",
            name="place_name_fulltext",
        ),
        migrations.AddIndex(
            model_name="incidentsearchdocument",
            index=django.contrib.postgres.indexes.GinIndex(fields=["disclosed"], name="incident_search_disclosed"),
        ),
        migrations.AddIndex(
            model_name="incidentsearchdocument",
            index=django.contrib.postgres.indexes.GinIndex(fields=["complete"], name="incident_search_complete"),
        ),
    ]
