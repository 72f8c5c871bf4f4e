"""A place's version and change time for the public: `public_version` and `public_updated_at`, which
do not move with a change of a sensitive place's exact coordinates.

Only staff read a sensitive place's own coordinates, and those of a place inside one
(`within_sensitive`); the public reads the coarsened ones, those of the nearest place above it that
it may see (`place_public_coordinates`), the same before and after staff correct them. Its one
version, `updated_at` and ETag moved all the same: the public learned that staff had corrected
where the place lies, and when. The database keeps the public's columns, whoever writes, as
migration 0098 keeps a source's:

- the row trigger `place_public_keep` is 0098's `record_public_keep` said of a place: a new version
  counts as a change the public sees when a column other than the bookkeeping ones (the version
  columns, and `within_sensitive`, which the database derives from the places above, as `version`
  does not move with it) changed, `latitude` and `longitude` left out while the place is
  `within_sensitive` before and after (marked or un-marked, or moved in or out of a sensitive place,
  it shows the public other coordinates), or when its writer says so by setting `public_updated_at`
  to the new `updated_at`, once a version. Named so that it runs after `derive_within_sensitive`,
  whose `within_sensitive` it reads.

Staff without Confidential access read a place whole (`can_see_exact_locations`): a place keeps no
`disclosed_*`. The history's update event leaves out a write of the public's columns alone (the
new condition, installed before they are filled in). The existing rows start with the public's
columns equal to their own (nothing moves for any reader).
"""

import django.utils.timezone
import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations

import incidents.models

KEEP_SQL = """
CREATE FUNCTION place_public_keep() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    said_seen boolean;
    unseen text[] := ARRAY['version', 'updated_at', 'public_version', 'public_updated_at', 'within_sensitive'];
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.public_version := NEW.version;
        NEW.public_updated_at := NEW.updated_at;
        RETURN NEW;
    END IF;
    said_seen := NEW.public_updated_at = NEW.updated_at
        AND NEW.public_updated_at IS DISTINCT FROM OLD.public_updated_at;
    NEW.public_version := OLD.public_version;
    NEW.public_updated_at := OLD.public_updated_at;
    -- Once a version: a new one, or the one whose change time is not yet theirs.
    IF NEW.version IS NOT DISTINCT FROM OLD.version AND OLD.public_updated_at IS NOT DISTINCT FROM NEW.updated_at THEN
        RETURN NEW;
    END IF;
    -- Coarsened before and after: the public reads the coordinates of a place above it.
    IF OLD.within_sensitive AND NEW.within_sensitive THEN
        unseen := unseen || ARRAY['latitude', 'longitude'];
    END IF;
    IF said_seen OR (to_jsonb(OLD) - unseen) IS DISTINCT FROM (to_jsonb(NEW) - unseen) THEN
        NEW.public_version := OLD.public_version + 1;
        NEW.public_updated_at := NEW.updated_at;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER place_public_keep BEFORE INSERT OR UPDATE ON incidents_place
    FOR EACH ROW EXECUTE FUNCTION place_public_keep();
"""

DROP_KEEP_SQL = """
DROP TRIGGER place_public_keep ON incidents_place;
DROP FUNCTION place_public_keep();
"""

# The public's columns as they were: the place's own.
COLUMNS_SQL = """
ALTER TABLE incidents_place ADD COLUMN public_version integer, ADD COLUMN public_updated_at timestamptz;
UPDATE incidents_place SET public_version = version, public_updated_at = updated_at;
-- PostgreSQL alters no table with trigger events pending: the deferred ones run now.
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE incidents_place ALTER COLUMN public_version SET NOT NULL,
    ADD CONSTRAINT incidents_place_public_version_check CHECK (public_version >= 0),
    ALTER COLUMN public_updated_at SET NOT NULL;
"""

DROP_COLUMNS_SQL = """
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE incidents_place DROP COLUMN public_version, DROP COLUMN public_updated_at;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0100_claim_span_from_any_figure"),
    ]

    operations = [
        # The kept totals' deferred counts run now (those of writes earlier in one transaction):
        # PostgreSQL alters no table with trigger events pending.
        migrations.RunSQL("SET CONSTRAINTS ALL IMMEDIATE", migrations.RunSQL.noop),
        # First, so that filling the columns in records no history event.
        pgtrigger.migrations.RemoveTrigger(model_name="place", name="update_update"),
        pgtrigger.migrations.AddTrigger(
            model_name="place",
            trigger=pgtrigger.compiler.Trigger(
                name="update_update",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN ((to_jsonb(OLD) - 'within_sensitive' - 'public_version' - 'public_updated_at') IS DISTINCT FROM (to_jsonb(NEW) - 'within_sensitive' - 'public_version' - 'public_updated_at'))",
                    func='INSERT INTO "incidents_placeevent" ("alternate_names", "country", "created_at", "id", "kind", "latitude", "longitude", "name", "parent_id", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "sensitive", "updated_at", "version") VALUES (NEW."alternate_names", NEW."country", NEW."created_at", NEW."id", NEW."kind", NEW."latitude", NEW."longitude", NEW."name", NEW."parent_id", _pgh_attach_context(), NOW(), \'update\', NEW."id", NEW."sensitive", NEW."updated_at", NEW."version"); RETURN NULL;',
                    hash="81d64a6630d80805332c378ae49c9b3af6afcc86",
                    operation="UPDATE",
                    pgid="pgtrigger_update_update_ce455",
                    table="incidents_place",
                    when="AFTER",
                ),
            ),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(COLUMNS_SQL, reverse_sql=DROP_COLUMNS_SQL)],
            state_operations=[
                migrations.AddField(
                    model_name="place",
                    name="public_updated_at",
                    field=incidents.models.KeptByDatabaseDateTimeField(
                        blank=True, default=django.utils.timezone.now, editable=False
                    ),
                ),
                migrations.AddField(
                    model_name="place",
                    name="public_version",
                    field=incidents.models.KeptByDatabasePositiveIntegerField(default=1, editable=False),
                ),
            ],
        ),
        migrations.RunSQL(KEEP_SQL, reverse_sql=DROP_KEEP_SQL),
        # The same on the way back, where this runs first.
        migrations.RunSQL(migrations.RunSQL.noop, "SET CONSTRAINTS ALL IMMEDIATE"),
    ]
