"""Who last changed an incident, as readers without Confidential access are told it:
`disclosed_updated_by`, kept with `disclosed_version` and `disclosed_updated_at` (migration 0095).

Their version and change time stayed put when an analyst with Confidential access edited what is
hidden from them (a confidential claim's excerpt), but `updated_by` named that analyst: a reader
saw the name of someone who had changed nothing they could see, and so that something hidden had
changed. The trigger `incident_disclosed_keep` now sets `disclosed_updated_by` to the writer
(`updated_by`) exactly when their change time moves: with a change they can see of the row, and
through it with `incident_disclosed_changed`'s (a claim, a place's link…), whose UPDATE passes through
it. Every other write of it is undone, as of the two others, except clearing it: a user's deletion
sets it to NULL (SET_NULL), as it does `updated_by`.

The existing rows start with the writer of their history's version at that change time (the event
whose `updated_at` is it), else no one: `updated_by` may be the writer of a hidden change since.
The trigger stays off while they are written (else the new column would count as a change they see).
"""

import importlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations

import incidents.models

_V0095 = importlib.import_module("incidents.migrations.0095_versions_per_audience")
_edited = importlib.import_module("incidents.migrations.0030_export_rows_filters_and_record")._edited

_KEEP_OF_0095 = _V0095.FUNCTIONS_SQL[: _V0095.FUNCTIONS_SQL.index("$$;\n") + len("$$;\n")].replace(
    "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"
)
_BOOKKEEPING = _V0095._BOOKKEEPING.replace(
    "'disclosed_updated_at',", "'disclosed_updated_at', 'disclosed_updated_by_id',"
)

KEEP_SQL = _edited(
    _KEEP_OF_0095,
    (
        (
            "        NEW.disclosed_updated_at := NEW.updated_at;\n        RETURN NEW;",
            "        NEW.disclosed_updated_at := NEW.updated_at;\n"
            "        NEW.disclosed_updated_by_id := NEW.updated_by_id;\n        RETURN NEW;",
        ),
        (
            "    NEW.disclosed_updated_at := OLD.disclosed_updated_at;\n",
            "    NEW.disclosed_updated_at := OLD.disclosed_updated_at;\n"
            "    IF NEW.disclosed_updated_by_id IS NOT NULL THEN\n"
            "        NEW.disclosed_updated_by_id := OLD.disclosed_updated_by_id;\n"
            "    END IF;\n",
        ),
        (
            f"(to_jsonb(NEW) - {_V0095._BOOKKEEPING}) IS DISTINCT FROM (to_jsonb(OLD) - {_V0095._BOOKKEEPING})",
            f"(to_jsonb(NEW) - {_BOOKKEEPING}) IS DISTINCT FROM (to_jsonb(OLD) - {_BOOKKEEPING})",
        ),
        (
            "        NEW.disclosed_updated_at := NEW.updated_at;\n    END IF;",
            "        NEW.disclosed_updated_at := NEW.updated_at;\n"
            "        NEW.disclosed_updated_by_id := NEW.updated_by_id;\n    END IF;",
        ),
    ),
)

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
        ("incidents", "0095_versions_per_audience"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
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
        migrations.RunSQL(FILL_SQL + KEEP_SQL, reverse_sql=_KEEP_OF_0095),
    ]
