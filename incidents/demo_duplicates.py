"""Realistic duplicates for the demo data, with the truth kept aside, to measure duplicate finding.

A duplicate is the same event reported again by another outlet: its title reworded (words
reordered, dropped or added), its count differently rounded or given as a range, its dates less
precise (the week or month that holds the day), sometimes the parent place (the province) rather
than the city, and a claim from a different source: half of the time one relaying the same origin
as one of the original's, otherwise an independent report. The pairs (original, duplicate) are
written to a CSV file that the duplicate finder never reads: `bench/bench_duplicates.py` compares
its proposals with it.

Kept apart from `demo_data.py`, which writes with COPY at a million rows; duplicates are a
fraction of that and go through the ORM's bulk inserts.
"""

import calendar
import csv
import random
from datetime import timedelta
from pathlib import Path

from django.db import transaction

from incidents.models import Claim, Incident, IncidentPlace, Involvement, Place, Source

REWORDINGS = ["Report:", "Reportedly", "Sources say", "according to witnesses", "again", "at the border"]


def _reworded(title: str, rng: random.Random) -> str:
    words = title.split()
    if len(words) > 3 and rng.random() < 0.5:
        cut = rng.randrange(1, len(words) - 1)
        words = words[cut:] + words[:cut]
    if len(words) > 4 and rng.random() < 0.4:
        del words[rng.randrange(len(words))]
    # Another outlet never words it exactly alike.
    words.insert(rng.randrange(len(words) + 1), rng.choice(REWORDINGS))
    return " ".join(words)


def _recounted(incident: Incident, rng: random.Random) -> dict:
    best = incident.people_count
    if best is None:
        return {"people_count": None, "people_count_min": None, "people_count_max": None, "count_qualifier": "unknown"}
    if rng.random() < 0.5:
        jittered = max(0, round(best * rng.uniform(0.85, 1.15)))
        return {
            "people_count": jittered,
            "people_count_min": None,
            "people_count_max": None,
            "count_qualifier": "about",
        }
    low, high = max(0, round(best * 0.8)), round(best * 1.2)
    return {"people_count": None, "people_count_min": low, "people_count_max": high, "count_qualifier": "unknown"}


def _redated(incident: Incident, rng: random.Random) -> dict:
    start = incident.date_start
    if incident.date_precision != "day" or rng.random() < 0.3:
        shift = timedelta(days=rng.randint(-3, 3)) if incident.date_precision == "day" else timedelta()
        return {
            "date_start": start + shift,
            "date_end": incident.date_end + shift,
            "date_precision": incident.date_precision,
        }
    if rng.random() < 0.5:
        monday = start - timedelta(days=start.weekday())
        return {"date_start": monday, "date_end": monday + timedelta(days=6), "date_precision": "week"}
    last = calendar.monthrange(start.year, start.month)[1]
    return {"date_start": start.replace(day=1), "date_end": start.replace(day=last), "date_precision": "month"}


def add_demo_duplicates(*, fraction: float, seed: int, truth: Path) -> int:
    """Add a duplicate of `fraction` of the incidents, chosen with `seed`, and write the pairs
    (`original,duplicate` public ids) to `truth`. Returns how many were added."""
    rng = random.Random(seed)
    ids = list(Incident.objects.order_by("id").values_list("pk", flat=True))
    chosen = sorted(rng.sample(ids, round(len(ids) * fraction)))
    originals = (
        Incident.objects.filter(pk__in=chosen).prefetch_related("places", "claims", "involvements").order_by("id")
    )
    publishers = list(Source.objects.exclude(publisher=None).values_list("publisher_id", flat=True).distinct()[:20])
    pairs = []
    with transaction.atomic():
        for original in originals.iterator(chunk_size=2000):
            duplicate = Incident.objects.create(
                title=_reworded(original.title, rng),
                incident_type_id=original.incident_type_id,
                description=original.description if rng.random() < 0.5 else "",
                verification="alleged",
                review_state=original.review_state,
                confidential=original.confidential,
                **_recounted(original, rng),
                **_redated(original, rng),
            )
            places = list(original.places.all())
            if places and rng.random() < 0.3 and places[0].parent_id:
                places = [Place(pk=places[0].parent_id)]
            IncidentPlace.objects.bulk_create(IncidentPlace(incident=duplicate, place=place) for place in places)
            Involvement.objects.bulk_create(
                Involvement(incident=duplicate, organization_id=involvement.organization_id, role=involvement.role)
                for involvement in original.involvements.all()
            )
            claims = list(original.claims.all())
            if claims:
                relayed = rng.choice(claims)
                independent = rng.random() < 0.5
                relay = Source.objects.create(
                    title=f"Independent report {relayed.pk}" if independent else f"Relay of source {relayed.source_id}",
                    kind="news_article",
                    publisher_id=rng.choice(publishers) if publishers else None,
                    cites_id=None if independent else relayed.source_id,
                )
                Claim.objects.create(incident=duplicate, source=relay, people_count=duplicate.people_count)
            pairs.append(
                (original.public_id, Incident.objects.values_list("public_id", flat=True).get(pk=duplicate.pk))
            )
    with truth.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["original", "duplicate"])
        writer.writerows(pairs)
    return len(pairs)
