"""Possible duplicates: candidate pairs found by blocking, scored by field similarity, reviewed by people.

Blocking (in PostgreSQL, one query) keeps only pairs that could be one event: the same type, date
ranges that overlap once each is widened by `DUPLICATE_WINDOW_DAYS`, and a shared place, parent
place or country. Each candidate is then scored from 0 to 1 (`pair_score`): titles and
descriptions compared with rapidfuzz (token-set similarity, which tolerates reordered and extra
words: "China repatriates 50 North Koreans" against "50 defectors sent back by China"), counts
against each other's ranges, how closely the dates agree, how closely the places agree, and shared
sources (by origin, so two relays of one report count) and perpetrators.

A hand-written weighted score rather than splink or dedupe: those learn weights from labelled
pairs or an EM fit over the whole table, which this project has neither the labels nor the need
for yet; the features here are the ones they would compare, and the weights are one table below.

Pairs are kept (`DuplicatePair`) with a reviewer's decision; a pair decided "different" is never
proposed again, and a pair's score is brought up to date while it waits.
"""

from dataclasses import dataclass, field
from datetime import date

import pghistory
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from rapidfuzz import fuzz

from incidents import services
from incidents.models import (
    Claim,
    DuplicateDecision,
    DuplicatePair,
    Incident,
    IncidentPlace,
    Involvement,
    InvolvementRole,
)
from incidents.querysets import SourceOrigin

# Below this score a pair is not kept for review: on the demo data's duplicates
# (bench/bench_duplicates.py) it keeps 95% of the true pairs. The demo's other candidates are alike
# beyond what real reports are (titles that differ only in a number, one description for all), so
# its precision there says little; labelled real pairs should set it.
PROPOSAL_THRESHOLD = 0.85

# How much each comparison counts; a comparison that cannot be made (a description or a count
# missing on one side) is left out and the others share its weight.
WEIGHTS = {
    "title": 0.30,
    "description": 0.05,
    "dates": 0.15,
    "places": 0.15,
    "people": 0.10,
    "sources": 0.15,
    "perpetrators": 0.10,
}

# Sources sharing no origin are weak evidence against a pair, not strong: one event is often
# reported by independent outlets (which is what corroboration counts). Sharing one is strong
# evidence for it.
UNSHARED_SOURCES = 0.5

# Each incident's blocking keys: its places, their parents and their countries; two incidents
# sharing a key, of one type, with dates within the window, are a candidate pair.
_BLOCKING_SQL = """
WITH keys AS (
    SELECT link.incident_id, 'place:' || link.place_id AS key
    FROM incidents_incidentplace link
    UNION
    SELECT link.incident_id, 'place:' || place.parent_id
    FROM incidents_incidentplace link JOIN incidents_place place ON place.id = link.place_id
    WHERE place.parent_id IS NOT NULL
    UNION
    SELECT link.incident_id, 'country:' || place.country
    FROM incidents_incidentplace link JOIN incidents_place place ON place.id = link.place_id
    WHERE place.country <> ''
)
SELECT DISTINCT a.id, b.id
FROM keys key_a
JOIN keys key_b ON key_b.key = key_a.key AND key_b.incident_id > key_a.incident_id
JOIN incidents_incident a ON a.id = key_a.incident_id
JOIN incidents_incident b ON b.id = key_b.incident_id
WHERE a.incident_type_id = b.incident_type_id
  AND a.date_start - %(window)s <= b.date_end
  AND b.date_start - %(window)s <= a.date_end
"""

# The same keys for one incident, read the other way round: the places sharing a key with its own
# (the same place, a parent, a child of either, the same country), then the incidents of its type
# within the window (the date range index) at one of those places. A few milliseconds, where
# filtering the whole-database pairs for one incident took seconds.
_INCIDENT_BLOCKING_SQL = """
WITH own AS (
    SELECT place.id, place.parent_id, place.country
    FROM incidents_incidentplace link JOIN incidents_place place ON place.id = link.place_id
    WHERE link.incident_id = %(incident)s
), near AS (
    SELECT place.id FROM incidents_place place
    WHERE place.id IN (SELECT id FROM own UNION SELECT parent_id FROM own)
       OR place.parent_id IN (SELECT id FROM own UNION SELECT parent_id FROM own)
       OR place.country IN (SELECT country FROM own WHERE country <> '')
)
SELECT LEAST(me.id, other.id), GREATEST(me.id, other.id)
FROM incidents_incident me
JOIN incidents_incident other
  ON other.incident_type_id = me.incident_type_id
 AND other.date_start - %(window)s <= me.date_end
 AND me.date_start - %(window)s <= other.date_end
 AND other.id <> me.id
WHERE me.id = %(incident)s
  AND EXISTS (
      SELECT 1 FROM incidents_incidentplace link
      WHERE link.incident_id = other.id AND link.place_id IN (SELECT id FROM near)
  )
"""


def candidate_pairs(incident: Incident | None = None) -> set[tuple[int, int]]:
    """The blocked pairs (lower id first) of the whole database, or those of `incident`. One query."""
    parameters = {"window": settings.DUPLICATE_WINDOW_DAYS}
    with connection.cursor() as cursor:
        if incident is None:
            cursor.execute(_BLOCKING_SQL, parameters)
        else:
            cursor.execute(_INCIDENT_BLOCKING_SQL, {**parameters, "incident": incident.pk})
        return set(cursor.fetchall())


@dataclass
class Features:
    title: str
    description: str
    date_start: date
    date_end: date
    people: tuple[int | None, int | None]
    places: set[int] = field(default_factory=set)
    parents: set[int] = field(default_factory=set)
    countries: set[str] = field(default_factory=set)
    origins: set[int] = field(default_factory=set)
    perpetrators: set[int] = field(default_factory=set)


def load_features(ids: set[int]) -> dict[int, Features]:
    """What `pair_score` compares, for the incidents `ids`. Four queries, whatever their number."""
    features = {
        row["id"]: Features(
            title=row["title"],
            description=row["description"],
            date_start=row["date_start"],
            date_end=row["date_end"],
            people=(
                row["people_count_min"] if row["people_count_min"] is not None else row["people_count"],
                row["people_count_max"] if row["people_count_max"] is not None else row["people_count"],
            ),
        )
        for row in Incident.objects.filter(pk__in=ids).values(
            "id",
            "title",
            "description",
            "date_start",
            "date_end",
            "people_count",
            "people_count_min",
            "people_count_max",
        )
    }
    for incident_id, place_id, parent_id, country in IncidentPlace.objects.filter(incident__in=ids).values_list(
        "incident_id", "place_id", "place__parent_id", "place__country"
    ):
        features[incident_id].places.add(place_id)
        if parent_id is not None:
            features[incident_id].parents.add(parent_id)
        if country:
            features[incident_id].countries.add(country)
    # Scoring is the analysts' work, across everything: origins followed through confidential sources.
    origins = Claim.objects.filter(incident__in=ids).annotate(origin=SourceOrigin(F("source_id"), True))
    for incident_id, origin in origins.values_list("incident_id", "origin"):
        features[incident_id].origins.add(origin)
    perpetrators = Involvement.objects.filter(incident__in=ids, role=InvolvementRole.PERPETRATOR)
    for incident_id, organization_id in perpetrators.values_list("incident_id", "organization_id"):
        features[incident_id].perpetrators.add(organization_id)
    return features


def _text_similarity(a: str, b: str) -> float | None:
    if not a.strip() or not b.strip():
        return None
    return fuzz.token_set_ratio(a.lower(), b.lower()) / 100


def _dates_similarity(a: Features, b: Features) -> float:
    """1 when the ranges overlap; falling to 0 as the gap between them reaches the window."""
    gap = max((b.date_start - a.date_end).days, (a.date_start - b.date_end).days, 0)
    return max(0.0, 1 - gap / (settings.DUPLICATE_WINDOW_DAYS + 1))


def _people_similarity(a: Features, b: Features) -> float | None:
    """1 when the counts' ranges overlap; else the smaller end over the larger."""
    (a_low, a_high), (b_low, b_high) = a.people, b.people
    if a_low is None or b_low is None:
        return None
    if a_low <= b_high and b_low <= a_high:
        return 1.0
    low, high = sorted((a_high, b_low) if a_high < b_low else (b_high, a_low))
    return low / high if high else 0.0


def _places_similarity(a: Features, b: Features) -> float:
    if a.places & b.places:
        return 1.0
    if (a.places | a.parents) & (b.places | b.parents):
        return 0.7
    return 0.4 if a.countries & b.countries else 0.0


def _overlap(a: set, b: set) -> float | None:
    if not a or not b:
        return None
    return len(a & b) / min(len(a), len(b))


def _shared_origins(a: Features, b: Features) -> float | None:
    if not a.origins or not b.origins:
        return None
    return 1.0 if a.origins & b.origins else UNSHARED_SOURCES


def pair_score(a: Features, b: Features) -> float:
    """How alike two incidents are, from 0 to 1: the weighted mean of the comparisons that apply."""
    comparisons = {
        "title": _text_similarity(a.title, b.title),
        "description": _text_similarity(a.description, b.description),
        "dates": _dates_similarity(a, b),
        "places": _places_similarity(a, b),
        "people": _people_similarity(a, b),
        "sources": _shared_origins(a, b),
        "perpetrators": _overlap(a.perpetrators, b.perpetrators),
    }
    applied = {name: value for name, value in comparisons.items() if value is not None}
    total = sum(WEIGHTS[name] for name in applied)
    return round(sum(WEIGHTS[name] * value for name, value in applied.items()) / total, 4)


def scored_pairs(incident: Incident | None = None) -> list[tuple[int, int, float]]:
    """The candidate pairs of the database (or of `incident`) with their scores, best first."""
    pairs = candidate_pairs(incident)
    features = load_features({incident_id for pair in pairs for incident_id in pair})
    scored = [(a, b, pair_score(features[a], features[b])) for a, b in pairs]
    return sorted(scored, key=lambda pair: (-pair[2], pair[0], pair[1]))


def duplicate_pairs_refresh(*, incident: Incident | None = None, threshold: float = PROPOSAL_THRESHOLD) -> int:
    """Propose the pairs scoring at least `threshold` for review, bring waiting pairs' scores up
    to date and withdraw waiting pairs that no longer qualify; decided pairs stay as decided. For
    the whole database, or after `incident` was written. A system task, not a user's write: it only
    proposes. Returns how many pairs wait."""
    in_scope = DuplicatePair.objects.all()
    if incident is not None:
        in_scope = in_scope.filter(Q(incident_a=incident) | Q(incident_b=incident))
    decided = set(in_scope.exclude(decision=DuplicateDecision.PENDING).values_list("incident_a_id", "incident_b_id"))
    proposals = {
        (a, b): score for a, b, score in scored_pairs(incident) if score >= threshold and (a, b) not in decided
    }
    waiting = in_scope.filter(decision=DuplicateDecision.PENDING).values_list("pk", "incident_a_id", "incident_b_id")
    with transaction.atomic():
        DuplicatePair.objects.filter(pk__in=[pk for pk, a, b in waiting if (a, b) not in proposals]).delete()
        DuplicatePair.objects.bulk_create(
            [DuplicatePair(incident_a_id=a, incident_b_id=b, score=score) for (a, b), score in proposals.items()],
            update_conflicts=True,
            unique_fields=["incident_a", "incident_b"],
            update_fields=["score"],
            batch_size=5000,
        )
    return DuplicatePair.objects.filter(decision=DuplicateDecision.PENDING).count()


def duplicate_pair_decide(*, user, pair: DuplicatePair, decision: str, note: str = "") -> DuplicatePair:
    """Record a reviewer's decision on `pair`. Staff who may change incidents decide "different"
    and "unsure"; "same incident" leads to a merge, so only a Reviewer (publish permission) may.
    A pair either of whose incidents `user` may not see answers as if it did not exist."""
    if not DuplicatePair.objects.visible_to(user).filter(pk=pair.pk).exists():
        raise services.RecordNotFound(f"No duplicate pair {pair.pk}.")
    if not user.has_perm("incidents.change_incident"):
        raise PermissionDenied("You may not decide on duplicates: your role lacks that permission.")
    if decision not in DuplicateDecision.values or decision == DuplicateDecision.PENDING:
        raise ValidationError({"decision": f"Choose one of: same, different, unsure (not {decision!r})."})
    if decision == DuplicateDecision.SAME and not services.may_publish(user):
        raise PermissionDenied("Only a Reviewer may decide that two incidents are the same.")
    with transaction.atomic(), pghistory.context(user=user.pk):
        DuplicatePair.objects.filter(pk=pair.pk).update(
            decision=decision, decided_by=user, decided_at=timezone.now(), note=note
        )
    pair.refresh_from_db()
    return pair
