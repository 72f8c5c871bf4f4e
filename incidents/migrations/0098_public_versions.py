"""A source's and a response's version and change time for the public: `public_version` and
`public_updated_at`, which move only with a change the public can see.

Migration 0096 kept one version per audience without Confidential access, for staff without it and
the public alike. But the public reads less than those staff: not a source's staff-only `notes`
(`querysets.STAFF_ONLY_FIELDS`), nor a response's links to incidents not published. A keeper's edit
of a source's notes, or a response linked to a draft, showed the public a new `version`,
`updated_at` and ETag with nothing else changed: it learned that staff had written something about
it, and when, or that an incident it may not see was related to the response. The database keeps
the public's columns, whoever writes, as it keeps `disclosed_*`:

- the row trigger `record_public_keep` of both tables is `record_disclosed_keep` said of the public's
  columns (both are made from one text here): a new version counts as a change the public sees
  when a column other than the bookkeeping ones (every audience's kept columns now), the record's
  link to a source (its first argument) and the columns only staff read (its further arguments: a
  source's `notes`) changed, or that link as the public reads it (null for a confidential source:
  `disclosed_source_id`), or when its writer says so by setting `public_updated_at` to the new
  `updated_at`, once a version. `record_disclosed_keep` is made again with the public's columns
  among the bookkeeping ones, so that neither trigger counts the other's;
- the statement triggers `response_public_*` of a response's links to incidents say so for the
  responses whose links to an incident the public sees changed (published, not confidential, not
  merged: `IncidentQuerySet.visible_to` of a reader who is not staff).

The history's update event of both tables leaves out a write of every audience's kept columns
alone. The existing rows start with the public's columns equal to `disclosed_*` (nothing moves for
any reader). Incidents keep one version for both audiences: the public reads an incident staff
without Confidential access read whole, or not at all.
"""

import django.utils.timezone
import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations

import incidents.models

_TABLES = ("incidents_source", "incidents_response")

# The columns of every record kept so that are bookkeeping, not what a reader sees change; the
# trigger's further arguments name a table's own. Migration 0096's, and those it adds.
_BOOKKEEPING_BEFORE = ["version", "updated_at", "disclosed_version", "disclosed_updated_at"]
_BOOKKEEPING = [*_BOOKKEEPING_BEFORE, "public_version", "public_updated_at"]


def keep_function(audience: str, bookkeeping: list[str], *, hidden_kept: bool = False) -> str:
    """The row trigger function that keeps `{audience}_version` and `{audience}_updated_at`: migration
    0096's `record_disclosed_keep`, said of an audience's columns, `bookkeeping` left out of the
    comparison. Its arguments: the record's link to a source (a column name, or ''), then the columns
    the audience does not read (or, an incident's, that are bookkeeping too). With `hidden_kept`
    (migration 0110), a change of a record hidden from the audience before and after it is none
    they are told of."""
    columns = "ARRAY[" + ", ".join(f"'{column}'" for column in bookkeeping) + "]"
    hidden_from_audience = (
        "coalesce((to_jsonb({row}) ->> 'confidential')::boolean, false)"
        if audience == "disclosed"
        else "(coalesce((to_jsonb({row}) ->> 'confidential')::boolean, false)"
        " OR coalesce(to_jsonb({row}) ->> 'review_state', 'published') <> 'published')"
    )
    kept_while_hidden = (
        f"""
    -- Hidden from the audience before and after (confidential; for the public, a draft too): an
    -- edit then is none they may be told of, and one counted showed them, once the record was
    -- shown, how many edits were made while they could not see it.
    IF {hidden_from_audience.format(row="OLD")} AND {hidden_from_audience.format(row="NEW")} THEN
        RETURN NEW;
    END IF;"""
        if hidden_kept
        else ""
    )
    return f"""
CREATE OR REPLACE FUNCTION record_{audience}_keep() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    link text := TG_ARGV[0];
    said_seen boolean;
    before jsonb;
    after jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.{audience}_version := NEW.version;
        NEW.{audience}_updated_at := NEW.updated_at;
        RETURN NEW;
    END IF;
    said_seen := NEW.{audience}_updated_at = NEW.updated_at
        AND NEW.{audience}_updated_at IS DISTINCT FROM OLD.{audience}_updated_at;
    NEW.{audience}_version := OLD.{audience}_version;
    NEW.{audience}_updated_at := OLD.{audience}_updated_at;{kept_while_hidden}
    -- Once a version: a new one, or the one whose change time is not yet theirs.
    IF NEW.version IS NOT DISTINCT FROM OLD.version AND OLD.{audience}_updated_at IS NOT DISTINCT FROM NEW.updated_at THEN
        RETURN NEW;
    END IF;
    before := to_jsonb(OLD) - {columns} - TG_ARGV[1:];
    after := to_jsonb(NEW) - {columns} - TG_ARGV[1:];
    IF said_seen
        OR (before - link) IS DISTINCT FROM (after - link)
        OR link <> '' AND disclosed_source_id((before ->> link)::bigint) IS DISTINCT FROM disclosed_source_id((after ->> link)::bigint)
    THEN
        NEW.{audience}_version := OLD.{audience}_version + 1;
        NEW.{audience}_updated_at := NEW.updated_at;
    END IF;
    RETURN NEW;
END
$$;
"""


# A response's link to an incident the public sees: published, not confidential, not merged.
_LINK_SEEN = (
    "EXISTS (SELECT FROM incidents_incident AS incident WHERE incident.id = {link}.incident_id"
    " AND incident.review_state = 'published' AND NOT incident.confidential AND incident.merged_into_id IS NULL)"
)

# First, so that filling the public's columns counts as no change staff without Confidential access
# see (their trigger compares every column but the bookkeeping ones).
DISCLOSED_KEEP_SQL = keep_function("disclosed", _BOOKKEEPING)
DISCLOSED_KEEP_BEFORE_SQL = keep_function("disclosed", _BOOKKEEPING_BEFORE)

FUNCTIONS_SQL = (
    keep_function("public", _BOOKKEEPING)
    + f"""
CREATE TRIGGER record_public_keep BEFORE INSERT OR UPDATE ON incidents_source
    FOR EACH ROW EXECUTE FUNCTION record_public_keep('cites_id', 'notes');
CREATE TRIGGER record_public_keep BEFORE INSERT OR UPDATE ON incidents_response
    FOR EACH ROW EXECUTE FUNCTION record_public_keep('source_id');

-- The responses' new versions whose links to an incident the public sees changed: their change
-- time is said to be the public's (`record_public_keep` counts it), once a version.
CREATE FUNCTION response_public_changed(response_ids bigint[]) RETURNS void LANGUAGE sql AS $$
    UPDATE incidents_response SET public_updated_at = updated_at
    WHERE id = ANY (response_ids) AND public_updated_at IS DISTINCT FROM updated_at
$$;

CREATE FUNCTION response_public_links_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM response_public_changed(ARRAY(
            SELECT response_id FROM new_rows AS link WHERE {_LINK_SEEN.format(link="link")}
        ));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM response_public_changed(ARRAY(
            SELECT response_id FROM old_rows AS link WHERE {_LINK_SEEN.format(link="link")}
        ));
    ELSE
        -- A link moved: from the response and incident it was, to those it is.
        PERFORM response_public_changed(ARRAY(
            SELECT link.response_id
            FROM old_rows AS before JOIN new_rows AS after USING (id),
                 LATERAL (VALUES (before.response_id, before.incident_id), (after.response_id, after.incident_id))
                     AS link (response_id, incident_id)
            WHERE (before.response_id, before.incident_id) IS DISTINCT FROM (after.response_id, after.incident_id)
              AND {_LINK_SEEN.format(link="link")}
        ));
    END IF;
    RETURN NULL;
END
$$;
"""
)

_LINK_EVENTS = (
    ("INSERT", "NEW TABLE AS new_rows"),
    ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("DELETE", "OLD TABLE AS old_rows"),
)

TRIGGERS_SQL = FUNCTIONS_SQL + "".join(
    f"""
CREATE TRIGGER response_public_{event.lower()} AFTER {event} ON incidents_response_incidents
    REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION response_public_links_changed();
"""
    for event, transition in _LINK_EVENTS
)

DROP_TRIGGERS_SQL = (
    "".join(
        f"DROP TRIGGER response_public_{event.lower()} ON incidents_response_incidents;\n" for event, _ in _LINK_EVENTS
    )
    + "".join(f"DROP TRIGGER record_public_keep ON {table};\n" for table in _TABLES)
    + """
DROP FUNCTION response_public_links_changed();
DROP FUNCTION response_public_changed(bigint[]);
DROP FUNCTION record_public_keep();
"""
)

# The public's columns as they were: the disclosed ones. The history's update events leave out a
# write of these columns alone (the new condition, installed before).
COLUMNS_SQL = "".join(
    f"""
ALTER TABLE {table} ADD COLUMN public_version integer, ADD COLUMN public_updated_at timestamptz;
UPDATE {table} SET public_version = disclosed_version, public_updated_at = disclosed_updated_at;
"""
    for table in _TABLES
) + "".join(
    f"""
-- PostgreSQL alters no table with trigger events pending: the deferred ones run now.
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE {table} ALTER COLUMN public_version SET NOT NULL,
    ADD CONSTRAINT {table}_public_version_check CHECK (public_version >= 0),
    ALTER COLUMN public_updated_at SET NOT NULL;
"""
    for table in _TABLES
)

DROP_COLUMNS_SQL = "SET CONSTRAINTS ALL IMMEDIATE;\n" + "".join(
    f"ALTER TABLE {table} DROP COLUMN public_version, DROP COLUMN public_updated_at;\n" for table in _TABLES
)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0097_incident_disclosed_updated_by"),
    ]

    operations = [
        # The kept totals' deferred counts run now (those of writes earlier in one transaction):
        # PostgreSQL alters no table with trigger events pending.
        migrations.RunSQL("SET CONSTRAINTS ALL IMMEDIATE", migrations.RunSQL.noop),
        # First, so that filling the columns in records no history event.
        pgtrigger.migrations.RemoveTrigger(model_name="response", name="update_update"),
        pgtrigger.migrations.RemoveTrigger(model_name="source", name="update_update"),
        pgtrigger.migrations.AddTrigger(
            model_name="response",
            trigger=pgtrigger.compiler.Trigger(
                name="update_update",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN ((to_jsonb(OLD) - 'disclosed_version' - 'disclosed_updated_at' - 'public_version' - 'public_updated_at') IS DISTINCT FROM (to_jsonb(NEW) - 'disclosed_version' - 'disclosed_updated_at' - 'public_version' - 'public_updated_at'))",
                    func='INSERT INTO "incidents_responseevent" ("created_at", "date", "description", "id", "kind", "organization_id", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "source_id", "updated_at", "version") VALUES (NEW."created_at", NEW."date", NEW."description", NEW."id", NEW."kind", NEW."organization_id", _pgh_attach_context(), NOW(), \'update\', NEW."id", NEW."source_id", NEW."updated_at", NEW."version"); RETURN NULL;',
                    hash="73e95314919a250d68749634180eccc9f01f7e68",
                    operation="UPDATE",
                    pgid="pgtrigger_update_update_afc3f",
                    table="incidents_response",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="source",
            trigger=pgtrigger.compiler.Trigger(
                name="update_update",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN ((to_jsonb(OLD) - 'disclosed_version' - 'disclosed_updated_at' - 'public_version' - 'public_updated_at') IS DISTINCT FROM (to_jsonb(NEW) - 'disclosed_version' - 'disclosed_updated_at' - 'public_version' - 'public_updated_at'))",
                    func='INSERT INTO "incidents_sourceevent" ("archive_url", "author", "cites_id", "confidential", "created_at", "id", "kind", "language", "notes", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "published_on", "publisher_id", "title", "updated_at", "url", "version") VALUES (NEW."archive_url", NEW."author", NEW."cites_id", NEW."confidential", NEW."created_at", NEW."id", NEW."kind", NEW."language", NEW."notes", _pgh_attach_context(), NOW(), \'update\', NEW."id", NEW."published_on", NEW."publisher_id", NEW."title", NEW."updated_at", NEW."url", NEW."version"); RETURN NULL;',
                    hash="44e52a06692d23437a6238d412c1d46bee8efd54",
                    operation="UPDATE",
                    pgid="pgtrigger_update_update_cb591",
                    table="incidents_source",
                    when="AFTER",
                ),
            ),
        ),
        migrations.RunSQL(DISCLOSED_KEEP_SQL, reverse_sql=DISCLOSED_KEEP_BEFORE_SQL),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(COLUMNS_SQL, reverse_sql=DROP_COLUMNS_SQL)],
            state_operations=[
                migrations.AddField(
                    model_name=model_name,
                    name="public_updated_at",
                    field=incidents.models.KeptByDatabaseDateTimeField(
                        blank=True, default=django.utils.timezone.now, editable=False
                    ),
                )
                for model_name in ("response", "source")
            ]
            + [
                migrations.AddField(
                    model_name=model_name,
                    name="public_version",
                    field=incidents.models.KeptByDatabasePositiveIntegerField(default=1, editable=False),
                )
                for model_name in ("response", "source")
            ],
        ),
        migrations.RunSQL(TRIGGERS_SQL, reverse_sql=DROP_TRIGGERS_SQL),
        # The same on the way back, where this runs first.
        migrations.RunSQL(migrations.RunSQL.noop, "SET CONSTRAINTS ALL IMMEDIATE"),
    ]
