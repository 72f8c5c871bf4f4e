"""An incident's dates say what its precision says (`dates_fit_their_precision`): a Month is whole
months, a Year whole years, a Week at most seven days. "Month, 1 to 15 July 2021" read "July 2021"
on every page, the label being made from the precision.

Rows already saying otherwise are read the weaker way, the one that never overstates what is known:
their precision becomes Range (their label the days themselves, "1-15 July 2021"), their dates kept.
Each change is in the incident's history (by no user) and starts a new version, so that incremental
syncs read it again. The migration prints how many it changed; on every database made since the rule
there are none."""

import datetime
import sys

import django.db.models.expressions
import django.db.models.functions.datetime
import django.db.models.lookups
from django.db import migrations, models
from django.utils import timezone

DATES_FIT_THEIR_PRECISION = models.CheckConstraint(
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
            models.Q(("date_end__day", 31), ("date_end__month", 12), ("date_start__day", 1), ("date_start__month", 1)),
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
    ),
    name="incident_dates_fit_their_precision",
    violation_error_code="dates_not_their_precision",
    violation_error_message="The dates are not what their precision says: a Month is whole months, a Year whole years, a Week at most seven days. Choose Range for other dates.",
)


def mend_precisions(apps, schema_editor):
    incidents = apps.get_model("incidents", "Incident")._base_manager
    changed = incidents.exclude(DATES_FIT_THEIR_PRECISION.condition).update(
        date_precision="range", version=models.F("version") + 1, updated_at=timezone.now()
    )
    if changed:
        sys.stdout.write(
            f"\n  {changed} incidents gave dates their precision does not say (Month but part of a month, say): "
            "now Range, their dates kept, recorded in their history.\n"
        )
    # The kept totals' deferred count runs now: PostgreSQL alters no table with trigger events pending.
    schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0064_exact_count_is_one_figure"),
    ]

    operations = [
        migrations.RunPython(mend_precisions, migrations.RunPython.noop),
        migrations.AddConstraint(model_name="incident", constraint=DATES_FIT_THEIR_PRECISION),
        # The precision says what it means, in the API's schema and the releases' codebook.
        *(
            migrations.AlterField(
                model_name=model_name,
                name="date_precision",
                field=models.CharField(
                    choices=[
                        ("day", "Day"),
                        ("week", "Week"),
                        ("month", "Month"),
                        ("year", "Year"),
                        ("range", "Range"),
                        ("unknown", "Unknown"),
                    ],
                    default="day",
                    help_text=(
                        "How precisely the sources date it: day, week (at most seven days), month (whole months), "
                        "year (whole years), range (any days between the two dates) or unknown. The label is made "
                        "from it."
                    ),
                    max_length=8,
                ),
            )
            for model_name in ("incident", "incidentevent")
        ),
    ]
