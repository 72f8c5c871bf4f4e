"""Each source's claim keeps its own date with its precision, as an incident's does: "in July 2021"
(Month, 2021-07-01 to 2021-07-31) and "14 July 2021" (Day) were two dates typed alike, and a
source's "since March 2020" or "before 9 October 2023" gives one end alone, which a claim may now
hold at the precision of that end (`claim_dates_fit_their_precision`), its label saying it as the
source did ("Since March 2020", "Before 9 October 2023": an end on the 8th). The label is generated
as the incident's: both ends by the incident's function (migration 0072), one end by
`claim_one_end_date_label`, in the same words.

The claims entered before are given the precision their dates say (`date_precision_from_dates`):
none, unknown; one day, or one end alone, day (a start alone read as "since" that day, an end alone
as up to it: the weaker reading, which never says a claim knows a day it did not give); whole
years, year; whole months, month; any other span, range. Each change is in the claim's history (by
no user) and each incident with a claim starts a new version, so that incremental syncs read it
again, as migrations 0064 and 0065 recorded theirs; written in one statement per table, as
`services.record_events` writes history in bulk, rather than by a trigger per row, since every
claim changes. The migration prints how many claims it read each way.
"""

import datetime
import importlib
import sys

import django.db.models.expressions
import django.db.models.functions.datetime
import django.db.models.lookups
import pgtrigger.compiler
import pgtrigger.migrations
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

import incidents.models

# The incident's label's formats by precision (migration 0072): one end is worded as the incident's
# labels word their ends. IMMUTABLE for the reason migration 0001 gives; one expression that calls
# no function of this schema, for the reasons migration 0072 gives. An end alone is the last day
# before the one the source's "before" names: the day, month or year after it.
_FORMAT = importlib.import_module("incidents.migrations.0072_date_label_says_the_whole_range")._FORMAT
ONE_END_DATE_LABEL_FUNCTION = f"""
CREATE OR REPLACE FUNCTION claim_one_end_date_label(date_start date, date_end date, date_precision text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE
    WHEN date_start IS NOT NULL THEN 'Since ' || to_char(date_start, {_FORMAT})
    WHEN date_end IS NOT NULL THEN 'Before ' || to_char(date_end + 1, {_FORMAT})
    ELSE ''
END
$$;
"""

# `date_precision_from_dates` as it reads today, frozen here.
PRECISION_FROM_DATES = """
CASE
    WHEN date_start IS NULL AND date_end IS NULL THEN 'unknown'
    WHEN date_start IS NULL OR date_end IS NULL OR date_start = date_end THEN 'day'
    WHEN (EXTRACT(MONTH FROM date_start), EXTRACT(DAY FROM date_start), EXTRACT(MONTH FROM date_end),
          EXTRACT(DAY FROM date_end)) = (1, 1, 12, 31) THEN 'year'
    WHEN EXTRACT(DAY FROM date_start) = 1 AND EXTRACT(DAY FROM date_end + 1) = 1 THEN 'month'
    ELSE 'range'
END
"""


def _record_updates(cursor, apps, model_name: str, where: str, parameters: list) -> None:
    """The history's update events, by no user, of the rows of `model_name` that `where` selects:
    what its row trigger would have written for each, the row's columns as stored."""
    model = apps.get_model("incidents", model_name)
    events = apps.get_model("incidents", f"{model_name}Event")
    columns = ", ".join(
        f'"{field.column}"' for field in events._meta.concrete_fields if not field.name.startswith("pgh_")
    )
    cursor.execute(
        f"INSERT INTO {events._meta.db_table} (pgh_created_at, pgh_label, pgh_obj_id, pgh_context_id, {columns}) "
        f"SELECT NOW(), 'update', id, NULL, {columns} FROM {model._meta.db_table} WHERE {where}",
        parameters,
    )


def read_precisions_from_dates(apps, schema_editor):
    incident_update_triggers = settings.INCIDENT_UPDATE_TRIGGERS_OFF_SETTING
    with schema_editor.connection.cursor() as cursor:
        # Each statement's deferred checks run as it ends: the label's column rewrote every claim in
        # this transaction, so that updating them queues their foreign keys' checks, and PostgreSQL
        # alters no table with trigger events pending (nor does the migration's end, after the kept
        # totals' deferred count).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # The claims' row triggers are off while their history is written in one statement below;
        # so are their statement triggers, which would make the incidents' search words and export
        # rows again, though no precision is part of them.
        cursor.execute("ALTER TABLE incidents_claim DISABLE TRIGGER USER")
        cursor.execute(
            f"WITH read AS (UPDATE incidents_claim SET date_precision = {PRECISION_FROM_DATES} "
            "RETURNING date_precision, (date_start IS NULL) <> (date_end IS NULL) AS one_end) "
            "SELECT date_precision, COUNT(*), COUNT(*) FILTER (WHERE one_end) FROM read "
            "GROUP BY date_precision ORDER BY date_precision"
        )
        read = cursor.fetchall()
        cursor.execute("ALTER TABLE incidents_claim ENABLE TRIGGER USER")
        _record_updates(cursor, apps, "Claim", "TRUE", [])
        # Their incidents' new versions, as `services._incidents_show_claims_of_changed` writes them:
        # the incidents' update triggers (history, export rows) off, their history written in one
        # statement and their export rows made again, which hold the version and the time.
        cursor.execute("SELECT set_config(%s, 'on', true)", [incident_update_triggers])
        cursor.execute(
            "UPDATE incidents_incident SET version = version + 1, updated_at = %s "
            "WHERE id IN (SELECT incident_id FROM incidents_claim) RETURNING id",
            [timezone.now()],
        )
        incident_ids = [incident_id for (incident_id,) in cursor.fetchall()]
        _record_updates(cursor, apps, "Incident", "id = ANY(%s)", [incident_ids])
        cursor.execute("SELECT incident_export_refresh(%s::bigint[])", [incident_ids])
        cursor.execute("SELECT set_config(%s, 'off', true)", [incident_update_triggers])
    if read:
        said = ", ".join(f"{count} {precision}" for precision, count, _ in read)
        sys.stdout.write(
            f"\n  {sum(count for _, count, _ in read)} claims given the precision their dates say ({said}), "
            f"recorded in their history; {sum(one_end for _, _, one_end in read)} of them give one date alone, now "
            f"read as since that start or before the day after that end. {len(incident_ids)} incidents start a "
            "new version.\n"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0074_statistics_count_incidents_without_figure"),
    ]

    operations = [
        migrations.RunSQL(
            ONE_END_DATE_LABEL_FUNCTION,
            reverse_sql="DROP FUNCTION claim_one_end_date_label(date, date, text)",
        ),
        pgtrigger.migrations.RemoveTrigger(
            model_name="claim",
            name="insert_insert",
        ),
        pgtrigger.migrations.RemoveTrigger(
            model_name="claim",
            name="update_update",
        ),
        pgtrigger.migrations.RemoveTrigger(
            model_name="claim",
            name="delete_delete",
        ),
        migrations.AddField(
            model_name="claim",
            name="date_precision",
            field=models.CharField(
                blank=True,
                choices=[
                    ("day", "Day"),
                    ("week", "Week"),
                    ("month", "Month"),
                    ("year", "Year"),
                    ("range", "Range"),
                    ("unknown", "Unknown"),
                ],
                default="",
                help_text="How precisely the source dates it: as an incident's (day, week, month, year, range or unknown) for two dates; day, month or year for one end alone, a source's “since March 2020” (month, a start alone) or “before 9 October 2023” (day, an end alone: 8 October, the last day it allows); unknown without dates. Left out (or blank), it is read from the dates: none, unknown; one day or one end alone, day; whole years, year; whole months, month; any other span, range.",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="claimevent",
            name="date_precision",
            field=models.CharField(
                blank=True,
                choices=[
                    ("day", "Day"),
                    ("week", "Week"),
                    ("month", "Month"),
                    ("year", "Year"),
                    ("range", "Range"),
                    ("unknown", "Unknown"),
                ],
                default="",
                help_text="How precisely the source dates it: as an incident's (day, week, month, year, range or unknown) for two dates; day, month or year for one end alone, a source's “since March 2020” (month, a start alone) or “before 9 October 2023” (day, an end alone: 8 October, the last day it allows); unknown without dates. Left out (or blank), it is read from the dates: none, unknown; one day or one end alone, day; whole years, year; whole months, month; any other span, range.",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="claimevent",
            name="date_label",
            field=models.TextField(default=""),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="claim",
            name="date_end",
            field=models.DateField(
                blank=True,
                help_text="Last day of those dates (inclusive); empty for none, or for a start alone (“since”).",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="claim",
            name="date_start",
            field=models.DateField(
                blank=True,
                help_text="First day of the dates the source gives; empty for none, or for an end alone.",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="claimevent",
            name="date_end",
            field=models.DateField(
                blank=True,
                help_text="Last day of those dates (inclusive); empty for none, or for a start alone (“since”).",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="claimevent",
            name="date_start",
            field=models.DateField(
                blank=True,
                help_text="First day of the dates the source gives; empty for none, or for an end alone.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="claim",
            name="date_label",
            field=models.GeneratedField(
                db_persist=True,
                expression=models.Case(
                    models.When(
                        models.Q(("date_end__isnull", False), ("date_start__isnull", False)),
                        then=incidents.models.DateLabel("date_start", "date_end", "date_precision"),
                    ),
                    default=incidents.models.OneEndDateLabel("date_start", "date_end", "date_precision"),
                ),
                output_field=models.TextField(),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="claim",
            trigger=pgtrigger.compiler.Trigger(
                name="insert_insert",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN (current_setting('tracker.insert_triggers_off', true) IS DISTINCT FROM 'on')",
                    func='INSERT INTO "incidents_claimevent" ("confidential", "count_qualifier", "created_at", "date_end", "date_label", "date_precision", "date_start", "excerpt", "id", "incident_id", "locator", "merge_conflict", "people_count", "people_count_max", "people_count_min", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "source_connection", "source_id", "updated_at") VALUES (NEW."confidential", NEW."count_qualifier", NEW."created_at", NEW."date_end", NEW."date_label", NEW."date_precision", NEW."date_start", NEW."excerpt", NEW."id", NEW."incident_id", NEW."locator", NEW."merge_conflict", NEW."people_count", NEW."people_count_max", NEW."people_count_min", _pgh_attach_context(), NOW(), \'insert\', NEW."id", NEW."source_connection", NEW."source_id", NEW."updated_at"); RETURN NULL;',
                    hash="9d5d147fd5f29d538f01440f8c2e7c7b146fc00b",
                    operation="INSERT",
                    pgid="pgtrigger_insert_insert_f1e86",
                    table="incidents_claim",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="claim",
            trigger=pgtrigger.compiler.Trigger(
                name="update_update",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    condition="WHEN (OLD.* IS DISTINCT FROM NEW.*)",
                    func='INSERT INTO "incidents_claimevent" ("confidential", "count_qualifier", "created_at", "date_end", "date_label", "date_precision", "date_start", "excerpt", "id", "incident_id", "locator", "merge_conflict", "people_count", "people_count_max", "people_count_min", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "source_connection", "source_id", "updated_at") VALUES (NEW."confidential", NEW."count_qualifier", NEW."created_at", NEW."date_end", NEW."date_label", NEW."date_precision", NEW."date_start", NEW."excerpt", NEW."id", NEW."incident_id", NEW."locator", NEW."merge_conflict", NEW."people_count", NEW."people_count_max", NEW."people_count_min", _pgh_attach_context(), NOW(), \'update\', NEW."id", NEW."source_connection", NEW."source_id", NEW."updated_at"); RETURN NULL;',
                    hash="c0e27def6ed7345b1303efa79bbb8ddf9db0b023",
                    operation="UPDATE",
                    pgid="pgtrigger_update_update_93cc4",
                    table="incidents_claim",
                    when="AFTER",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="claim",
            trigger=pgtrigger.compiler.Trigger(
                name="delete_delete",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func='INSERT INTO "incidents_claimevent" ("confidential", "count_qualifier", "created_at", "date_end", "date_label", "date_precision", "date_start", "excerpt", "id", "incident_id", "locator", "merge_conflict", "people_count", "people_count_max", "people_count_min", "pgh_context_id", "pgh_created_at", "pgh_label", "pgh_obj_id", "source_connection", "source_id", "updated_at") VALUES (OLD."confidential", OLD."count_qualifier", OLD."created_at", OLD."date_end", OLD."date_label", OLD."date_precision", OLD."date_start", OLD."excerpt", OLD."id", OLD."incident_id", OLD."locator", OLD."merge_conflict", OLD."people_count", OLD."people_count_max", OLD."people_count_min", _pgh_attach_context(), NOW(), \'delete\', OLD."id", OLD."source_connection", OLD."source_id", OLD."updated_at"); RETURN NULL;',
                    hash="cf1b799b15edaefe3b133a73f29be3431c89df4b",
                    operation="DELETE",
                    pgid="pgtrigger_delete_delete_45510",
                    table="incidents_claim",
                    when="AFTER",
                ),
            ),
        ),
        migrations.RunPython(read_precisions_from_dates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="claim",
            constraint=models.CheckConstraint(
                condition=models.Q(("date_precision__in", ["day", "week", "month", "year", "range", "unknown"])),
                name="claim_date_precision_known",
                violation_error_code="date_precision_unknown_value",
                violation_error_message="The date's precision is not one of day, week, month, year, range or unknown.",
            ),
        ),
        migrations.AddConstraint(
            model_name="claim",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        models.Q(("date_precision", "month"), _negated=True),
                        models.Q(
                            ("date_start__day", 1),
                            django.db.models.lookups.Exact(
                                django.db.models.functions.datetime.ExtractDay(
                                    models.ExpressionWrapper(
                                        django.db.models.expressions.CombinedExpression(
                                            models.F("date_end"), "+", models.Value(datetime.timedelta(days=1))
                                        ),
                                        output_field=models.DateField(),
                                    )
                                ),
                                1,
                            ),
                        ),
                        _connector="OR",
                    ),
                    models.Q(
                        models.Q(("date_precision", "year"), _negated=True),
                        models.Q(
                            ("date_end__day", 31),
                            ("date_end__month", 12),
                            ("date_start__day", 1),
                            ("date_start__month", 1),
                        ),
                        _connector="OR",
                    ),
                    models.Q(
                        models.Q(("date_precision", "week"), _negated=True),
                        (
                            "date_end__lte",
                            django.db.models.expressions.CombinedExpression(
                                models.F("date_start"), "+", models.Value(datetime.timedelta(days=6))
                            ),
                        ),
                        _connector="OR",
                    ),
                    models.Q(
                        models.Q(("date_end__isnull", False), ("date_start__isnull", False)),
                        models.Q(
                            models.Q(
                                models.Q(("date_end__isnull", True), ("date_start__isnull", False)),
                                models.Q(
                                    ("date_end__isnull", False),
                                    ("date_end__lt", datetime.date(9999, 12, 31)),
                                    ("date_start__isnull", True),
                                ),
                                _connector="OR",
                            ),
                            ("date_precision__in", ("day", "month", "year")),
                        ),
                        models.Q(
                            ("date_end__isnull", True), ("date_precision", "unknown"), ("date_start__isnull", True)
                        ),
                        _connector="OR",
                    ),
                ),
                name="claim_dates_fit_their_precision",
                violation_error_code="dates_not_their_precision",
                violation_error_message="The dates are not what their precision says: a Month is whole months, a Year whole years, a Week at most seven days; one end alone is a Day, Month or Year; no date is Unknown.",
            ),
        ),
    ]
