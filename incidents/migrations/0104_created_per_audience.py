"""A source's, an incident's and a response's creation time per audience: `disclosed_created_at`
for readers without Confidential access, `public_created_at` for the public, the moment each
audience first saw the record.

A record made public after being confidential (an informant's source, an incident), or a draft
published, kept its `created_at`, which every reader who now sees it read: the day it was recorded,
in confidence. The database keeps both columns, whoever writes, as it keeps the versions (migrations
0095 to 0102):

- the row triggers `record_shown_since` (sources, responses) and `incident_shown_since` (incidents),
  run after the version keepers (PostgreSQL runs a table's BEFORE triggers in the order of their
  names), set an audience's column, while it is null, to the change time that audience is told
  (`*_updated_at`, which the change that shows it the record has just moved) once the record is
  visible to it; on insert, to `created_at` if it is visible then, else null. Once set it never
  moves (every other write of it is undone), but for an audience that saw the record from its
  creation, which follows a correction of `created_at` (a fixture loaded over the record). Visible to readers without Confidential access: a
  source or an incident not confidential; a response about an incident not confidential and not
  merged, or about none yet (`ResponseQuerySet.visible_to`). To the public: a source not
  confidential; an incident published and not confidential; a response about such an incident,
  not merged;
- a response's visibility is its links': the statement triggers `response_shown_*` of its links to
  incidents have its row trigger look again at those responses not yet shown to an audience. A
  response's links are written after its row, so the constraint trigger `response_created_shown`
  decides, when the transaction that created it commits, which audiences saw it from its creation
  (`created_at`) and which have not seen it yet (null): a statement recorded about a confidential
  incident alone, in confidence, is not told by its unlinked first moment. Through the services an
  incident's change of confidentiality or publication writes the responses about it (a new
  version, `services._links_shown_changed`), which their row trigger reads;
- the version keepers `record_disclosed_keep` and `record_public_keep` take the new columns as
  bookkeeping (a write of them is no change a reader sees), and so does the history's update event
  of sources and responses (an incident's leaves them out of its record).

The existing rows are filled from their history, set-based, with the incidents' history and export
triggers off. A source or an incident is told `created_at` where its first recorded state that the
audience could see came before any it could not; the change time of that state (its event's
`updated_at`) where a hidden one came first; where no recorded state was visible to the audience,
its told change time (`*_updated_at`: the latest it can have been shown) if it is visible now and
its history recorded it hidden (states missing from the history), `created_at` if nothing recorded
says it was ever hidden, and null if it is hidden now. A response's history does not say when its
incidents could be seen: it is told the later of its `created_at` and the earliest creation time
told of an incident it is about that the audience sees now (`created_at` when it is about none and
the audience is staff), no later than its told change time, and null while hidden. A record made
hidden again since it was first shown keeps the time it was told; one hidden from an audience now
whose history does not say it was ever shown to it is told the moment it is next shown. The
migration rewrites every incident, source and response once (`VACUUM` them after it).
"""

import importlib

import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations

import incidents.models

_PUBLIC_VERSIONS = importlib.import_module("incidents.migrations.0098_public_versions")
_0086 = importlib.import_module("incidents.migrations.0086_searched_texts_bounded")

_CREATED = ["disclosed_created_at", "public_created_at"]
KEEP_SQL = _PUBLIC_VERSIONS.keep_function(
    "disclosed", _PUBLIC_VERSIONS._BOOKKEEPING + _CREATED
) + _PUBLIC_VERSIONS.keep_function("public", _PUBLIC_VERSIONS._BOOKKEEPING + _CREATED)
KEEP_BEFORE_SQL = _PUBLIC_VERSIONS.DISCLOSED_KEEP_SQL + _PUBLIC_VERSIONS.keep_function(
    "public", _PUBLIC_VERSIONS._BOOKKEEPING
)

# Who sees a row (`{row}`: NEW in a trigger, the table's alias in a query), by audience: readers
# without Confidential access, then the public (`visible_to` of each model, in SQL).
_RESPONSE_ABOUT = (
    "EXISTS (SELECT FROM incidents_response_incidents AS link"
    " JOIN incidents_incident AS incident ON incident.id = link.incident_id"
    " WHERE link.response_id = {row}.id AND NOT incident.confidential AND incident.merged_into_id IS NULL{also})"
)
SEEN = {
    "incidents_source": ("NOT {row}.confidential", "NOT {row}.confidential"),
    "incidents_incident": (
        "NOT {row}.confidential",
        "NOT {row}.confidential AND {row}.review_state = 'published'",
    ),
    "incidents_response": (
        _RESPONSE_ABOUT.replace("{also}", "")
        + " OR NOT EXISTS (SELECT FROM incidents_response_incidents AS link WHERE link.response_id = {row}.id)",
        _RESPONSE_ABOUT.replace("{also}", " AND incident.review_state = 'published'"),
    ),
}

# Set while `response_created_shown` writes the columns, which the row trigger then leaves as written.
_CREATION_DECIDED = "tracker.response_creation_decided"


def _shown_since_function(table: str) -> str:
    staff, public = (condition.format(row="NEW") for condition in SEEN[table])
    decided_at_commit = (
        f"""
    IF current_setting('{_CREATION_DECIDED}', true) = 'on' THEN
        RETURN NEW;
    END IF;"""
        if table == "incidents_response"
        else ""
    )
    return f"""
CREATE FUNCTION {table.removeprefix("incidents_")}_shown_since() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.disclosed_created_at := CASE WHEN {staff} THEN NEW.created_at END;
        NEW.public_created_at := CASE WHEN {public} THEN NEW.created_at END;
        RETURN NEW;
    END IF;{decided_at_commit}
    -- Told once: set when the audience first sees the record, at the change time it is told then;
    -- an audience that saw it from its creation follows a correction of `created_at`.
    NEW.disclosed_created_at := CASE WHEN OLD.disclosed_created_at = OLD.created_at THEN NEW.created_at
        ELSE coalesce(OLD.disclosed_created_at, CASE WHEN {staff} THEN NEW.disclosed_updated_at END) END;
    NEW.public_created_at := CASE WHEN OLD.public_created_at = OLD.created_at THEN NEW.created_at
        ELSE coalesce(OLD.public_created_at, CASE WHEN {public} THEN NEW.public_updated_at END) END;
    RETURN NEW;
END
$$;
"""


_RESPONSE_STAFF, _RESPONSE_PUBLIC = (condition.format(row="response") for condition in SEEN["incidents_response"])

_LINK_EVENTS = (
    ("INSERT", "NEW TABLE AS new_rows", "SELECT response_id FROM new_rows"),
    (
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "SELECT response_id FROM old_rows UNION SELECT response_id FROM new_rows",
    ),
    ("DELETE", "OLD TABLE AS old_rows", "SELECT response_id FROM old_rows"),
)

TRIGGERS_SQL = (
    "".join(_shown_since_function(table) for table in SEEN)
    + f"""
CREATE TRIGGER record_shown_since BEFORE INSERT OR UPDATE ON incidents_source
    FOR EACH ROW EXECUTE FUNCTION source_shown_since();
CREATE TRIGGER incident_shown_since BEFORE INSERT OR UPDATE ON incidents_incident
    FOR EACH ROW EXECUTE FUNCTION incident_shown_since();
CREATE TRIGGER record_shown_since BEFORE INSERT OR UPDATE ON incidents_response
    FOR EACH ROW EXECUTE FUNCTION response_shown_since();

-- Once the transaction that created the response commits: which audiences saw it from its creation.
CREATE FUNCTION response_created_shown() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('{_CREATION_DECIDED}', 'on', true);
    UPDATE incidents_response AS response
    SET disclosed_created_at = CASE WHEN {_RESPONSE_STAFF} THEN response.created_at END,
        public_created_at = CASE WHEN {_RESPONSE_PUBLIC} THEN response.created_at END
    WHERE response.id = NEW.id;
    PERFORM set_config('{_CREATION_DECIDED}', '', true);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER response_created_shown AFTER INSERT ON incidents_response
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION response_created_shown();

-- The responses whose links changed that an audience has not seen yet: their row trigger looks again.
CREATE FUNCTION response_shown(response_ids bigint[]) RETURNS void LANGUAGE sql AS $$
    UPDATE incidents_response SET disclosed_created_at = disclosed_created_at
    WHERE id = ANY (response_ids) AND (disclosed_created_at IS NULL OR public_created_at IS NULL)
$$;
"""
    + "".join(
        f"""
CREATE FUNCTION response_shown_{event.lower()}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM response_shown(ARRAY({responses}));
    RETURN NULL;
END
$$;

CREATE TRIGGER response_shown_{event.lower()} AFTER {event} ON incidents_response_incidents
    REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION response_shown_{event.lower()}();
"""
        for event, transition, responses in _LINK_EVENTS
    )
)

DROP_TRIGGERS_SQL = (
    "".join(
        f"DROP TRIGGER response_shown_{event.lower()} ON incidents_response_incidents;\n"
        f"DROP FUNCTION response_shown_{event.lower()}();\n"
        for event, _, _ in _LINK_EVENTS
    )
    + """
DROP FUNCTION response_shown(bigint[]);
DROP TRIGGER response_created_shown ON incidents_response;
DROP FUNCTION response_created_shown();
DROP TRIGGER record_shown_since ON incidents_response;
DROP TRIGGER incident_shown_since ON incidents_incident;
DROP TRIGGER record_shown_since ON incidents_source;
DROP FUNCTION response_shown_since();
DROP FUNCTION incident_shown_since();
DROP FUNCTION source_shown_since();
"""
)


def _first_seen(table: str, audience: str, seen: str) -> str:
    """The creation time told to `audience` of each row of `table` (a source's or an incident's),
    from its history (`history`: its first recorded states seen and hidden; the module's docstring
    says what it guesses)."""
    return f"""
CASE
    WHEN history.first_{audience}_seen IS NOT NULL
        AND (history.first_{audience}_hidden IS NULL OR history.first_{audience}_hidden > history.first_{audience}_seen)
        THEN record.created_at
    WHEN history.first_{audience}_seen IS NOT NULL
        THEN least(
            (SELECT event.updated_at FROM {table}event AS event WHERE event.pgh_id = history.first_{audience}_seen),
            record.{audience}_updated_at
        )
    WHEN NOT ({seen.format(row="record")}) THEN NULL
    WHEN history.first_{audience}_hidden IS NOT NULL THEN record.{audience}_updated_at
    ELSE record.created_at
END"""


def _fill_from_history(table: str) -> str:
    staff_seen, public_seen = SEEN[table]
    staff_recorded, public_recorded = staff_seen.format(row="event"), public_seen.format(row="event")
    return f"""
UPDATE {table} AS record
SET disclosed_created_at = {_first_seen(table, "disclosed", staff_seen)},
    public_created_at = {_first_seen(table, "public", public_seen)}
FROM {table} AS plain
LEFT JOIN (
    SELECT event.pgh_obj_id,
        min(event.pgh_id) FILTER (WHERE {staff_recorded}) AS first_disclosed_seen,
        min(event.pgh_id) FILTER (WHERE NOT ({staff_recorded})) AS first_disclosed_hidden,
        min(event.pgh_id) FILTER (WHERE {public_recorded}) AS first_public_seen,
        min(event.pgh_id) FILTER (WHERE NOT ({public_recorded})) AS first_public_hidden
    FROM {table}event AS event
    GROUP BY event.pgh_obj_id
) AS history ON history.pgh_obj_id = plain.id
WHERE plain.id = record.id;
"""


# A response told the later of its creation and the earliest creation time told of an incident it is
# about that the audience sees now.
_RESPONSE_TOLD = """
CASE
    WHEN NOT ({seen}) THEN NULL
    ELSE least(greatest(record.created_at, (
        SELECT min(incident.{audience}_created_at)
        FROM incidents_response_incidents AS link JOIN incidents_incident AS incident ON incident.id = link.incident_id
        WHERE link.response_id = record.id AND {incident_seen} AND incident.merged_into_id IS NULL
    )), record.{audience}_updated_at)
END"""

FILL_SQL = (
    _fill_from_history("incidents_source")
    + "SELECT set_config('tracker.incident_update_triggers_off', 'on', true);\n"
    + _fill_from_history("incidents_incident")
    + "SELECT set_config('tracker.incident_update_triggers_off', '', true);\n"
    + f"""
UPDATE incidents_response AS record
SET disclosed_created_at = {
        _RESPONSE_TOLD.format(
            seen=SEEN["incidents_response"][0].format(row="record"),
            audience="disclosed",
            incident_seen=SEEN["incidents_incident"][0].format(row="incident"),
        )
    },
    public_created_at = {
        _RESPONSE_TOLD.format(
            seen=SEEN["incidents_response"][1].format(row="record"),
            audience="public",
            incident_seen=SEEN["incidents_incident"][1].format(row="incident"),
        )
    };
-- The kept totals' deferred count runs now: PostgreSQL alters no table with trigger events pending.
SET CONSTRAINTS ALL IMMEDIATE;
"""
)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0103_place_country_follows_its_parent"),
    ]

    operations = [
        # The kept totals' deferred counts run now (those of writes earlier in one transaction):
        # PostgreSQL alters no table with trigger events pending.
        migrations.RunSQL("SET CONSTRAINTS ALL IMMEDIATE", migrations.RunSQL.noop),
        # Rows stored before migration 0086 may hold a text longer than its bounds, which PostgreSQL
        # holds on every row written (`bounds_set_aside`).
        _0086.bounds_set_aside(),
        # First, so that filling the columns in records no history event.
        pgtrigger.migrations.RemoveTrigger(model_name="response", name="update_update"),
        pgtrigger.migrations.RemoveTrigger(model_name="source", name="update_update"),
        pgtrigger.migrations.AddTrigger(
            model_name="response",
            trigger=pgtrigger.compiler.Trigger(
                name="update_update",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN ((to_jsonb(OLD) - 'disclosed_version' - 'disclosed_updated_at' - 'public_version' - 'public_updated_at' - 'disclosed_created_at' - 'public_created_at') IS DISTINCT FROM (to_jsonb(NEW) - 'disclosed_version' - 'disclosed_updated_at' - 'public_version' - 'public_updated_at' - 'disclosed_created_at' - 'public_created_at'))",
                    func='INSERT INTO "incidents_responseevent" ("created_at", "date", "description", "id", "kind", "organization_id", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "source_id", "updated_at", "version") VALUES (NEW."created_at", NEW."date", NEW."description", NEW."id", NEW."kind", NEW."organization_id", _pgh_attach_context(), NOW(), \'update\', NEW."id", NEW."source_id", NEW."updated_at", NEW."version"); RETURN NULL;',
                    hash="f3307e3b48146433f4fb8acd11748e5ba743c6b4",
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
                    condition="WHEN ((to_jsonb(OLD) - 'disclosed_version' - 'disclosed_updated_at' - 'public_version' - 'public_updated_at' - 'disclosed_created_at' - 'public_created_at') IS DISTINCT FROM (to_jsonb(NEW) - 'disclosed_version' - 'disclosed_updated_at' - 'public_version' - 'public_updated_at' - 'disclosed_created_at' - 'public_created_at'))",
                    func='INSERT INTO "incidents_sourceevent" ("archive_url", "author", "cites_id", "confidential", "created_at", "id", "kind", "language", "notes", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "published_on", "publisher_id", "title", "updated_at", "url", "version") VALUES (NEW."archive_url", NEW."author", NEW."cites_id", NEW."confidential", NEW."created_at", NEW."id", NEW."kind", NEW."language", NEW."notes", _pgh_attach_context(), NOW(), \'update\', NEW."id", NEW."published_on", NEW."publisher_id", NEW."title", NEW."updated_at", NEW."url", NEW."version"); RETURN NULL;',
                    hash="0e31af6de09fcac940d1a3c50cfaf052edbc65a0",
                    operation="UPDATE",
                    pgid="pgtrigger_update_update_cb591",
                    table="incidents_source",
                    when="AFTER",
                ),
            ),
        ),
        *(
            migrations.AddField(
                model_name=model_name,
                name=name,
                field=incidents.models.KeptByDatabaseDateTimeField(blank=True, editable=False, null=True),
            )
            for model_name in ("incident", "response", "source")
            for name in _CREATED
        ),
        # Before the columns are filled, so that filling them is no change any reader is told.
        migrations.RunSQL(KEEP_SQL, reverse_sql=KEEP_BEFORE_SQL),
        migrations.RunSQL(FILL_SQL + TRIGGERS_SQL, reverse_sql=DROP_TRIGGERS_SQL),
        _0086.bounds_added_back(),
        # The same on the way back, where this runs first.
        migrations.RunSQL(migrations.RunSQL.noop, "SET CONSTRAINTS ALL IMMEDIATE"),
    ]
