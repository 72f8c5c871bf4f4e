"""Who last changed an incident, as readers without Confidential access are told it:
`disclosed_updated_by`, kept with `disclosed_version` and `disclosed_updated_at` (migrations 0095,
0096).

Their version and change time stayed put when an analyst with Confidential access edited what is
hidden from them (a confidential claim's excerpt), but `updated_by` named that analyst: a reader
saw the name of someone who had changed nothing they could see, and so that something hidden had
changed. The trigger `incident_disclosed_keep_writer`, run after `incident_disclosed_keep` (0096's
`record_disclosed_keep`, which takes the column as bookkeeping), sets `disclosed_updated_by` to the
writer (`updated_by`) exactly when their change time moves: with a change they can see of the row,
and through it with `incident_disclosed_changed`'s (a claim, a place's link…), whose UPDATE passes
through both. Every other write of it is undone, as of the two others, except clearing it: a
user's deletion sets it to NULL (SET_NULL), as it does `updated_by`.

The existing rows start with the writer of their history's version at that change time (the event
whose `updated_at` is it), else no one: `updated_by` may be the writer of a hidden change since.
The trigger stays off while they are written (else the new column would count as a change they see).
"""

import importlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations

import incidents.models

_0086 = importlib.import_module("incidents.migrations.0086_searched_texts_bounded")


def _keep_trigger(*bookkeeping: str) -> str:
    """The incidents' row trigger of migration 0096, with these columns of theirs as bookkeeping."""
    arguments = ", ".join(f"'{column}'" for column in ("", *bookkeeping))
    return f"""
DROP TRIGGER incident_disclosed_keep ON incidents_incident;
CREATE TRIGGER incident_disclosed_keep BEFORE INSERT OR UPDATE ON incidents_incident
    FOR EACH ROW EXECUTE FUNCTION record_disclosed_keep({arguments});
"""


# PostgreSQL runs a table's BEFORE triggers in the order of their names: this one after
# `incident_disclosed_keep`, which has moved `disclosed_updated_at` or not by then.
WRITER_SQL = (
    _keep_trigger("updated_by_id", "disclosed_updated_by_id", "public_id", "date_label")
    + """
CREATE FUNCTION incident_disclosed_writer_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.disclosed_updated_at IS DISTINCT FROM OLD.disclosed_updated_at THEN
        NEW.disclosed_updated_by_id := NEW.updated_by_id;
    ELSIF NEW.disclosed_updated_by_id IS NOT NULL THEN
        NEW.disclosed_updated_by_id := OLD.disclosed_updated_by_id;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER incident_disclosed_keep_writer BEFORE INSERT OR UPDATE ON incidents_incident
    FOR EACH ROW EXECUTE FUNCTION incident_disclosed_writer_keep();
"""
)

DROP_WRITER_SQL = """
DROP TRIGGER incident_disclosed_keep_writer ON incidents_incident;
DROP FUNCTION incident_disclosed_writer_keep();
""" + _keep_trigger("updated_by_id", "public_id", "date_label")

FILL_SQL = """
ALTER TABLE incidents_incident DISABLE TRIGGER incident_disclosed_keep;
SELECT set_config('tracker.incident_update_triggers_off', 'on', true);
UPDATE incidents_incident AS incident SET disclosed_updated_by_id = CASE
    WHEN incident.disclosed_updated_at = incident.updated_at THEN incident.updated_by_id
    ELSE (
        SELECT event.updated_by_id FROM incidents_incidentevent AS event
        WHERE event.pgh_obj_id = incident.id AND event.updated_at = incident.disclosed_updated_at
        ORDER BY event.pgh_id DESC LIMIT 1
    )
END;
SELECT set_config('tracker.incident_update_triggers_off', '', true);
-- PostgreSQL alters no table with trigger events pending (the kept totals' deferred count).
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE incidents_incident ENABLE TRIGGER incident_disclosed_keep;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0096_source_and_response_versions_per_audience"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The kept totals' deferred counts run now (those of writes earlier in one transaction):
        # PostgreSQL alters no table with trigger events pending.
        migrations.RunSQL("SET CONSTRAINTS ALL IMMEDIATE", migrations.RunSQL.noop),
        # Rows stored before migration 0086 may hold a text longer than its bounds, which PostgreSQL
        # holds on every row written (`bounds_set_aside`).
        _0086.bounds_set_aside(),
        migrations.AddField(
            model_name="incident",
            name="disclosed_updated_by",
            field=incidents.models.KeptByDatabaseForeignKey(
                blank=True,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunSQL(FILL_SQL + WRITER_SQL, reverse_sql=DROP_WRITER_SQL),
        _0086.bounds_added_back(),
        # The same on the way back, where this runs first.
        migrations.RunSQL(migrations.RunSQL.noop, "SET CONSTRAINTS ALL IMMEDIATE"),
    ]
