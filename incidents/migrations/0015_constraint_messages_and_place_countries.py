"""Constraints say what they protect when violated (field-named messages come from the models'
clean()); places entered without a country take the nearest ancestor's, as Place.save() now does."""

from django.conf import settings
from django.db import migrations, models


def inherit_countries(apps, schema_editor):
    """Fill each blank country from the nearest ancestor that has one. Places are a few thousand at
    most (the incidents are the large table), so they are read once and walked in memory."""
    Place = apps.get_model("incidents", "Place")
    places = {
        pk: (parent_id, country) for pk, parent_id, country in Place.objects.values_list("pk", "parent_id", "country")
    }

    def inherited(pk):
        seen = set()
        parent_id = places[pk][0]
        while parent_id is not None and parent_id not in seen:
            seen.add(parent_id)
            parent_parent, country = places[parent_id]
            if country:
                return country
            parent_id = parent_parent
        return ""

    for pk, (parent_id, country) in places.items():
        if not country and parent_id is not None and (found := inherited(pk)):
            Place.objects.filter(pk=pk).update(country=found)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0014_rulebook"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(inherit_countries, migrations.RunPython.noop),
        migrations.AlterConstraint(
            model_name="claim",
            name="claim_dates_ordered",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("date_start__isnull", True),
                    ("date_end__isnull", True),
                    ("date_end__gte", models.F("date_start")),
                    _connector="OR",
                ),
                name="claim_dates_ordered",
                violation_error_code="dates_reversed",
                violation_error_message="The end date is before the start date.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="claim",
            name="claim_counts_not_negative",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("people_count__isnull", True), ("people_count__gte", 0), _connector="OR"),
                    models.Q(("people_count_min__isnull", True), ("people_count_min__gte", 0), _connector="OR"),
                    models.Q(("people_count_max__isnull", True), ("people_count_max__gte", 0), _connector="OR"),
                ),
                name="claim_counts_not_negative",
                violation_error_code="negative_count",
                violation_error_message="Counts of people cannot be negative.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="claim",
            name="claim_count_min_not_above_best",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("people_count_min__isnull", True),
                    ("people_count__isnull", True),
                    ("people_count_min__lte", models.F("people_count")),
                    _connector="OR",
                ),
                name="claim_count_min_not_above_best",
                violation_error_code="count_min_above_best",
                violation_error_message="The minimum number of people is above the best estimate.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="claim",
            name="claim_count_best_not_above_max",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("people_count_max__isnull", True),
                    ("people_count__isnull", True),
                    ("people_count__lte", models.F("people_count_max")),
                    _connector="OR",
                ),
                name="claim_count_best_not_above_max",
                violation_error_code="count_best_above_max",
                violation_error_message="The best estimate of people is above the maximum.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="claim",
            name="claim_count_min_not_above_max",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("people_count_min__isnull", True),
                    ("people_count_max__isnull", True),
                    ("people_count_min__lte", models.F("people_count_max")),
                    _connector="OR",
                ),
                name="claim_count_min_not_above_max",
                violation_error_code="count_min_above_max",
                violation_error_message="The minimum number of people is above the maximum.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="incident",
            name="incident_dates_ordered",
            constraint=models.CheckConstraint(
                condition=models.Q(("date_end__gte", models.F("date_start"))),
                name="incident_dates_ordered",
                violation_error_code="dates_reversed",
                violation_error_message="The end date is before the start date.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="incident",
            name="incident_counts_not_negative",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("people_count__isnull", True), ("people_count__gte", 0), _connector="OR"),
                    models.Q(("people_count_min__isnull", True), ("people_count_min__gte", 0), _connector="OR"),
                    models.Q(("people_count_max__isnull", True), ("people_count_max__gte", 0), _connector="OR"),
                ),
                name="incident_counts_not_negative",
                violation_error_code="negative_count",
                violation_error_message="Counts of people cannot be negative.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="incident",
            name="incident_count_min_not_above_best",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("people_count_min__isnull", True),
                    ("people_count__isnull", True),
                    ("people_count_min__lte", models.F("people_count")),
                    _connector="OR",
                ),
                name="incident_count_min_not_above_best",
                violation_error_code="count_min_above_best",
                violation_error_message="The minimum number of people is above the best estimate.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="incident",
            name="incident_count_best_not_above_max",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("people_count_max__isnull", True),
                    ("people_count__isnull", True),
                    ("people_count__lte", models.F("people_count_max")),
                    _connector="OR",
                ),
                name="incident_count_best_not_above_max",
                violation_error_code="count_best_above_max",
                violation_error_message="The best estimate of people is above the maximum.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="incident",
            name="incident_count_min_not_above_max",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("people_count_min__isnull", True),
                    ("people_count_max__isnull", True),
                    ("people_count_min__lte", models.F("people_count_max")),
                    _connector="OR",
                ),
                name="incident_count_min_not_above_max",
                violation_error_code="count_min_above_max",
                violation_error_message="The minimum number of people is above the maximum.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="incidenttype",
            name="incident_type_not_own_parent",
            constraint=models.CheckConstraint(
                condition=models.Q(("parent", models.F("id")), _negated=True),
                name="incident_type_not_own_parent",
                violation_error_code="own_parent",
                violation_error_message="A type cannot be its own parent, directly or through others.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="place",
            name="place_latitude_in_range",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("latitude__isnull", True), models.Q(("latitude__gte", -90), ("latitude__lte", 90)), _connector="OR"
                ),
                name="place_latitude_in_range",
                violation_error_code="latitude_out_of_range",
                violation_error_message="Latitude must be between -90 and 90.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="place",
            name="place_longitude_in_range",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("longitude__isnull", True),
                    models.Q(("longitude__gte", -180), ("longitude__lte", 180)),
                    _connector="OR",
                ),
                name="place_longitude_in_range",
                violation_error_code="longitude_out_of_range",
                violation_error_message="Longitude must be between -180 and 180.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="place",
            name="place_coordinates_both_or_neither",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("latitude__isnull", True), ("longitude__isnull", True)),
                    models.Q(("latitude__isnull", False), ("longitude__isnull", False)),
                    _connector="OR",
                ),
                name="place_coordinates_both_or_neither",
                violation_error_code="half_coordinates",
                violation_error_message="Give both latitude and longitude, or neither.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="place",
            name="place_not_own_parent",
            constraint=models.CheckConstraint(
                condition=models.Q(("parent", models.F("id")), _negated=True),
                name="place_not_own_parent",
                violation_error_code="own_parent",
                violation_error_message="A place cannot be inside itself.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="source",
            name="source_does_not_cite_itself",
            constraint=models.CheckConstraint(
                condition=models.Q(("cites", models.F("id")), _negated=True),
                name="source_does_not_cite_itself",
                violation_error_code="cites_itself",
                violation_error_message="A source cannot cite itself, directly or through others.",
            ),
        ),
        migrations.AlterConstraint(
            model_name="victimgroup",
            name="victim_group_count_not_negative",
            constraint=models.CheckConstraint(
                condition=models.Q(("count__isnull", True), ("count__gte", 0), _connector="OR"),
                name="victim_group_count_not_negative",
                violation_error_code="negative_count",
                violation_error_message="Counts of people cannot be negative.",
            ),
        ),
    ]
