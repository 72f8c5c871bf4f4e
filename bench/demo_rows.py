"""Rows for the CSV benchmarks: Django set up from the environment, synthetic incidents, and the
peak memory of a command run as its own process.

`make demo-data` (manage.py generate_demo_data) makes richer data; these helpers only top up the
incident count so that a benchmark can run on any database (DATABASE_URL) without it.
"""

import os
import subprocess
from datetime import date, timedelta

from django_setup import ROOT, setup_django

setup_django()

from django.db import transaction  # noqa: E402

from incidents.models import Claim, Incident, IncidentType, Involvement, Organization, Place, Source  # noqa: E402

BATCH = 5000


def peak_rss_mb(command: list[str]) -> float:
    """Peak resident memory of `command`, run from the project's root as its own process, in MB."""
    process = subprocess.Popen(command, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed ({status}).")
    return usage.ru_maxrss / 1024  # kilobytes on Linux


def reference_records() -> tuple[list[Place], list[Organization], list[Source]]:
    """Places, organizations and sources that bench incidents refer to, created once."""
    places = [Place.objects.get_or_create(name=f"Bench place {n}", parent=None)[0] for n in range(20)]
    organizations = [Organization.objects.get_or_create(name=f"Bench organization {n}")[0] for n in range(10)]
    sources = [Source.objects.get_or_create(title=f"Bench source {n}")[0] for n in range(50)]
    return places, organizations, sources


def ensure_incidents(count: int) -> int:
    """Top the database up to `count` incidents, each with two places, a perpetrator and two claims."""
    missing = count - Incident.objects.count()
    if missing <= 0:
        return 0
    places, organizations, sources = reference_records()
    kind = IncidentType.objects.get(slug="forced-repatriation")
    for start in range(0, missing, BATCH):
        with transaction.atomic():
            incidents = Incident.objects.bulk_create(
                Incident(
                    title=f"Bench incident {start + n}: forced return of a group near the border",
                    incident_type=kind,
                    date_start=date(2020, 1, 1) + timedelta(days=(start + n) % 1500),
                    date_end=date(2020, 1, 1) + timedelta(days=(start + n) % 1500 + 3),
                    date_precision="range",
                    people_count=(start + n) % 200,
                    count_qualifier="about",
                    review_state="published",
                )
                for n in range(min(BATCH, missing - start))
            )
            Incident.places.through.objects.bulk_create(
                Incident.places.through(incident=incident, place=places[(incident.pk + shift) % len(places)])
                for incident in incidents
                for shift in (0, 7)
            )
            Involvement.objects.bulk_create(
                Involvement(incident=incident, organization=organizations[incident.pk % 10], role="perpetrator")
                for incident in incidents
            )
            Claim.objects.bulk_create(
                Claim(incident=incident, source=sources[(incident.pk + shift) % len(sources)], people_count=shift * 10)
                for incident in incidents
                for shift in (1, 3)
            )
    return missing
