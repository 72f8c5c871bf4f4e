"""The public's list by people sorts an incident with only a minimum ("at least 500") by it, as the
statistics count it and `min_people` compares it (`querysets.people_estimate`): its index follows.
Rebuilt at once (the published incidents' figures: seconds at a million)."""

import django.db.models.functions.comparison
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0121_incident_submissions"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="incident",
            name="incident_public_by_people",
        ),
        migrations.AddIndex(
            model_name="incident",
            index=models.Index(
                django.db.models.functions.comparison.Coalesce(
                    "people_count", "people_count_min", models.Value(-1), output_field=models.BigIntegerField()
                ),
                models.F("id"),
                condition=models.Q(
                    ("confidential", False), ("merged_into__isnull", True), ("review_state", "published")
                ),
                name="incident_public_by_people",
            ),
        ),
    ]
