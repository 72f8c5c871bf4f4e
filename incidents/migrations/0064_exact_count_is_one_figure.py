"""An exact count is one figure (`count_range_constraints`): an incident or a claim whose count
qualifier is "exact" has a best estimate and no minimum or maximum other than it. "Exactly 500,
300-600" says two things at once, and every reader (the public page, the statistics' ranges, a
release) had to pick one.

Rows already saying so are read the weaker way, the one that never overstates what is known:
"about" where they give a figure or a range, "unknown" where they give none. Their counts are
kept as they are, and so is the word they had: each change is in the record's history (by no user),
and each incident changed, or whose claim changed, starts a new version, so that incremental syncs
read it again. The migration prints how many rows it changed; on every database made since the rule
there are none."""

import sys

from django.db import migrations, models
from django.utils import timezone


def exact_count_is_one_figure(model_name: str) -> models.CheckConstraint:
    """The constraint as `count_range_constraints` declares it today, frozen here."""
    return models.CheckConstraint(
        condition=~models.Q(count_qualifier="exact")
        | (
            models.Q(people_count__isnull=False)
            & (models.Q(people_count_min__isnull=True) | models.Q(people_count_min=models.F("people_count")))
            & (models.Q(people_count_max__isnull=True) | models.Q(people_count_max=models.F("people_count")))
        ),
        name=f"{model_name}_exact_count_is_one_figure",
        violation_error_code="exact_count_not_one_figure",
        violation_error_message=(
            "An exact count is one figure: give it as the best estimate, with no other minimum or maximum, "
            "or choose another qualifier (“About” for a range)."
        ),
    )


EXACT_COUNT_CONSTRAINTS = {model_name: exact_count_is_one_figure(model_name) for model_name in ("claim", "incident")}


def mend_exact_counts(apps, schema_editor):
    incidents = apps.get_model("incidents", "Incident")
    changed_incidents = set()
    for model_name, constraint in EXACT_COUNT_CONSTRAINTS.items():
        model = apps.get_model("incidents", model_name)
        breaking = model._base_manager.exclude(constraint.condition)
        if model_name == "claim":
            changed_incidents.update(breaking.values_list("incident_id", flat=True))
        else:
            changed_incidents.update(breaking.values_list("id", flat=True))
        no_figure = models.Q(people_count__isnull=True, people_count_min__isnull=True, people_count_max__isnull=True)
        changed = breaking.filter(no_figure).update(count_qualifier="unknown")
        changed += breaking.update(count_qualifier="about")
        if changed:
            sys.stdout.write(
                f"\n  {changed} {model._meta.verbose_name_plural} said their count was exact and gave it a range "
                "(or no figure): now read as about (unknown without a figure), recorded in their history."
            )
    incidents._base_manager.filter(pk__in=changed_incidents).update(
        version=models.F("version") + 1, updated_at=timezone.now()
    )
    # The kept totals' deferred count runs now: PostgreSQL alters no table with trigger events pending.
    schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0063_merged_incidents_withdrawn_with_their_survivor"),
    ]

    operations = [
        migrations.RunPython(mend_exact_counts, migrations.RunPython.noop),
        *(
            migrations.AddConstraint(model_name=model_name, constraint=constraint)
            for model_name, constraint in EXACT_COUNT_CONSTRAINTS.items()
        ),
        # The qualifier says what it means, in the admin's forms and the releases' codebook.
        *(
            migrations.AlterField(
                model_name=model_name,
                name="count_qualifier",
                field=models.CharField(
                    choices=[
                        ("exact", "Exact"),
                        ("about", "About"),
                        ("at_least", "At least"),
                        ("at_most", "At most"),
                        ("unknown", "Unknown"),
                    ],
                    default="unknown",
                    help_text=(
                        "How the count is meant: exact (one figure: the best estimate, with no other minimum or "
                        "maximum), about, at least or at most the best estimate, or unknown."
                    ),
                    max_length=8,
                ),
            )
            for model_name in ("claim", "claimevent", "incident", "incidentevent")
        ),
    ]
