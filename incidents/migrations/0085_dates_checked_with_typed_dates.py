"""The dates rule of incidents and claims (`dates_fit_their_precision`) reads each date cast to a
date. Django's own check of a claim with a date missing (`validate_constraints`, on every admin and
API save) put an untyped NULL in its place, PostgreSQL could not choose an `extract` for it, and
Django logged the error and let the whole constraint pass unchecked.

The constraints PostgreSQL holds do not change: a date column cast to a date is the column itself,
and `pg_get_constraintdef` reads the same before and after. So only the migration state changes,
and neither table is scanned to validate the constraints again.
"""

import datetime

import django.db.models.expressions
import django.db.models.functions.comparison
import django.db.models.functions.datetime
import django.db.models.lookups
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0084_word_counts_without_confidential_incidents"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(
                    model_name="claim",
                    name="claim_dates_fit_their_precision",
                ),
                migrations.RemoveConstraint(
                    model_name="incident",
                    name="incident_dates_fit_their_precision",
                ),
                migrations.AddConstraint(
                    model_name="claim",
                    constraint=models.CheckConstraint(
                        condition=models.Q(
                            models.Q(
                                models.Q(("date_precision", "month"), _negated=True),
                                models.Q(
                                    django.db.models.lookups.Exact(
                                        django.db.models.functions.datetime.ExtractDay(
                                            django.db.models.functions.comparison.Cast("date_start", models.DateField())
                                        ),
                                        1,
                                    ),
                                    django.db.models.lookups.Exact(
                                        django.db.models.functions.datetime.ExtractDay(
                                            models.ExpressionWrapper(
                                                django.db.models.expressions.CombinedExpression(
                                                    django.db.models.functions.comparison.Cast(
                                                        "date_end", models.DateField()
                                                    ),
                                                    "+",
                                                    models.Value(datetime.timedelta(days=1)),
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
                                    django.db.models.lookups.Exact(
                                        django.db.models.functions.datetime.ExtractDay(
                                            django.db.models.functions.comparison.Cast("date_end", models.DateField())
                                        ),
                                        31,
                                    ),
                                    django.db.models.lookups.Exact(
                                        django.db.models.functions.datetime.ExtractMonth(
                                            django.db.models.functions.comparison.Cast("date_end", models.DateField())
                                        ),
                                        12,
                                    ),
                                    django.db.models.lookups.Exact(
                                        django.db.models.functions.datetime.ExtractDay(
                                            django.db.models.functions.comparison.Cast("date_start", models.DateField())
                                        ),
                                        1,
                                    ),
                                    django.db.models.lookups.Exact(
                                        django.db.models.functions.datetime.ExtractMonth(
                                            django.db.models.functions.comparison.Cast("date_start", models.DateField())
                                        ),
                                        1,
                                    ),
                                ),
                                _connector="OR",
                            ),
                            models.Q(
                                models.Q(("date_precision", "week"), _negated=True),
                                django.db.models.lookups.LessThanOrEqual(
                                    django.db.models.functions.comparison.Cast("date_end", models.DateField()),
                                    django.db.models.expressions.CombinedExpression(
                                        django.db.models.functions.comparison.Cast("date_start", models.DateField()),
                                        "+",
                                        models.Value(datetime.timedelta(days=6)),
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
                                    ("date_end__isnull", True),
                                    ("date_precision", "unknown"),
                                    ("date_start__isnull", True),
                                ),
                                _connector="OR",
                            ),
                        ),
                        name="claim_dates_fit_their_precision",
                        violation_error_code="dates_not_their_precision",
                        violation_error_message="The dates are not what their precision says: a Month is whole months, a Year whole years, a Week at most seven days; one end alone is a Day, Month or Year; no date is Unknown.",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="incident",
                    constraint=models.CheckConstraint(
                        condition=models.Q(
                            models.Q(
                                models.Q(("date_precision", "month"), _negated=True),
                                models.Q(
                                    django.db.models.lookups.Exact(
                                        django.db.models.functions.datetime.ExtractDay(
                                            django.db.models.functions.comparison.Cast("date_start", models.DateField())
                                        ),
                                        1,
                                    ),
                                    django.db.models.lookups.Exact(
                                        django.db.models.functions.datetime.ExtractDay(
                                            models.ExpressionWrapper(
                                                django.db.models.expressions.CombinedExpression(
                                                    django.db.models.functions.comparison.Cast(
                                                        "date_end", models.DateField()
                                                    ),
                                                    "+",
                                                    models.Value(datetime.timedelta(days=1)),
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
                                    django.db.models.lookups.Exact(
                                        django.db.models.functions.datetime.ExtractDay(
                                            django.db.models.functions.comparison.Cast("date_end", models.DateField())
                                        ),
                                        31,
                                    ),
                                    django.db.models.lookups.Exact(
                                        django.db.models.functions.datetime.ExtractMonth(
                                            django.db.models.functions.comparison.Cast("date_end", models.DateField())
                                        ),
                                        12,
                                    ),
                                    django.db.models.lookups.Exact(
                                        django.db.models.functions.datetime.ExtractDay(
                                            django.db.models.functions.comparison.Cast("date_start", models.DateField())
                                        ),
                                        1,
                                    ),
                                    django.db.models.lookups.Exact(
                                        django.db.models.functions.datetime.ExtractMonth(
                                            django.db.models.functions.comparison.Cast("date_start", models.DateField())
                                        ),
                                        1,
                                    ),
                                ),
                                _connector="OR",
                            ),
                            models.Q(
                                models.Q(("date_precision", "week"), _negated=True),
                                django.db.models.lookups.LessThanOrEqual(
                                    django.db.models.functions.comparison.Cast("date_end", models.DateField()),
                                    django.db.models.expressions.CombinedExpression(
                                        django.db.models.functions.comparison.Cast("date_start", models.DateField()),
                                        "+",
                                        models.Value(datetime.timedelta(days=6)),
                                    ),
                                ),
                                _connector="OR",
                            ),
                        ),
                        name="incident_dates_fit_their_precision",
                        violation_error_code="dates_not_their_precision",
                        violation_error_message="The dates are not what their precision says: a Month is whole months, a Year whole years, a Week at most seven days. Choose Range for other dates.",
                    ),
                ),
            ],
        ),
    ]
