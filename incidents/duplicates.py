"""Possible duplicates: candidate pairs found by blocking, scored, reviewed by people.

Blocking keeps only pairs that could be one event: the same type, date ranges that overlap once
each is widened by `DUPLICATE_WINDOW_DAYS`, and places that meet (below). Each candidate is then
scored from 0 to 1 (`score_pairs`), the probability that both report one event, from a
Fellegi-Sunter model: texts (TF-IDF cosine, rapidfuzz on titles), dates, counts, places, shared
source origins and perpetrators each add evidence for or against.

Not splink or dedupe: splink fits the same kind of model but brings DuckDB (or Spark) and pandas to
estimate a table of a dozen weights, and scores in batches, not one changed incident inside a
request; dedupe learns from pairs a person labels before it scores anything, which this project
does not have yet. The comparisons here are the ones they would make; with labelled real pairs,
refit the weights below (a logistic regression on them is the supervised form of the same model).

Pairs are kept (`DuplicatePair`) with a reviewer's decision; a pair decided "different" is never
proposed again, and a pair's score is brought up to date whenever its incidents are rescored,
decided or not (not kept in its history: the machine works it out again). Every write of an
incident through the services rescores it in the background once it commits
(`rescore_after_commit`): a task of Django's django.tasks, queued in the database
(django-tasks-db) and run by `manage.py db_worker`, because at a million incidents rescoring one
takes 0.4-1.7 s that no request should wait for (bench/README.md). The admin's review queue says
how many incidents wait (`rescoring_backlog`), so a stopped worker is not silent.
"""

import calendar
import functools
import itertools
import math
import re
import unicodedata
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import NamedTuple

import numpy as np
import pghistory
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Exists, F, Func, OuterRef, Q, Subquery, Value
from django.db.models.fields.json import KeyTransform
from django.tasks import TaskResultStatus, task
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from rapidfuzz import fuzz, process

from incidents import services
from incidents.models import (
    Claim,
    DuplicateDecision,
    DuplicatePair,
    DuplicateWordFrequencies,
    Incident,
    IncidentPlace,
    InvolvementRole,
)
from incidents.querysets import SourceOrigin, can_see_confidential

# Below this score a pair is not proposed for review. At 100,000 generated incidents with 5%
# duplicates it keeps the queue about 95% right (bench/README.md): a reviewer's time goes to pairs
# that are mostly real, at the cost of the duplicates whose second report says too little.
# Chosen on the seed the weights were fitted on, checked on another.
PROPOSAL_THRESHOLD = 0.65

# --- Blocking ---------------------------------------------------------------------------------
#
# Two incidents are a candidate pair when they are of one type, their date ranges overlap once
# widened by DUPLICATE_WINDOW_DAYS, and their places meet: one place, or two sharing an ancestor
# below the country (a city and its province, two towns of one province); an incident placed only
# by its country meets every incident in that country. Sharing only a country is no key otherwise:
# most incidents name a country (often a second one, where people were sent), and pairing all of
# them made tens of millions of pairs at 100,000 incidents, nearly none of them duplicates.

# Each place stands, for blocking, for itself and its ancestors below the country.
_PLACE_KEYS = """
WITH RECURSIVE place_keys AS (
    SELECT id AS place_id, id AS key_id, parent_id FROM incidents_place WHERE kind <> 'country'
  UNION ALL
    SELECT place_keys.place_id, parent.id, parent.parent_id
    FROM place_keys JOIN incidents_place parent ON parent.id = place_keys.parent_id
    WHERE parent.kind <> 'country'
)"""

# Every place's blocking keys (none for a country) and its country: a few thousand rows, kept per
# process (`_places`), so that incidents are read with their places' ids alone.
_PLACES_SQL = (
    _PLACE_KEYS
    + """
SELECT place.id, place.country, array_remove(array_agg(place_keys.key_id), NULL)
FROM incidents_place place LEFT JOIN place_keys ON place_keys.place_id = place.id
GROUP BY place.id
"""
)

# Each incident's places, as an array in its row.
_PLACES_OF = "ARRAY(SELECT link.place_id FROM incidents_incidentplace link WHERE link.incident_id = {}.id)"

# The incidents of the same type as given ones whose date ranges overlap theirs, widened (merged
# incidents live on in their survivors and pair with nothing), with both sides' places: through
# the type and date span index (migration 0027), a few milliseconds, where a B-tree on the start
# date reads every earlier incident of the type. An incident dated only by a year meets thousands
# of its type in every country; their places come in the same rows, so blocking on places costs
# no second query and sends no list of thousands of ids back to the database. The given incidents
# are read first (MATERIALIZED), so that their own places are not read again for every row. Each
# one's neighbours are a LATERAL subquery kept apart by OFFSET 0 (which stops PostgreSQL making it
# a join again), read through that index: as a join, expecting 25 rows for each where 4,758 came,
# it hashed every incident of the database by type and tested each given incident's dates against
# all of its type (46 million rows tested for 200 incidents at 1,000,000).
_NEARBY_SQL = f"""
WITH mine AS MATERIALIZED (
    SELECT incident.id, incident.incident_type_id, incident.date_start, incident.date_end,
           {_PLACES_OF.format("incident")} AS places
    FROM incidents_incident incident
    WHERE incident.id = ANY(%(incidents)s) AND incident.merged_into_id IS NULL
)
SELECT mine.id, mine.places, other.id, {_PLACES_OF.format("other")}
FROM mine
CROSS JOIN LATERAL (
    SELECT other.id FROM incidents_incident other
    WHERE other.incident_type_id = mine.incident_type_id
      AND daterange(other.date_start, other.date_end, '[]')
          && daterange(mine.date_start - %(window)s, mine.date_end + %(window)s, '[]')
      AND other.id <> mine.id
      AND other.merged_into_id IS NULL
    OFFSET 0
) other
"""


@dataclass(frozen=True)
class _Located:
    places: frozenset[int] = frozenset()
    keys: frozenset[int] = frozenset()
    countries: frozenset[str] = frozenset()


class _Places:
    """Every place's blocking keys and country, to locate incidents by their places. One query."""

    def __init__(self):
        with connection.cursor() as cursor:
            cursor.execute(_PLACES_SQL)
            rows = cursor.fetchall()
        self.keys = {place_id: frozenset(keys) for place_id, _, keys in rows}
        self.country = {place_id: country for place_id, country, _ in rows}
        # Thousands of incidents share a few hundred sets of places: each is located once.
        self.located: dict[tuple[int, ...], _Located] = {}

    def locate(self, place_ids: Collection[int]) -> _Located:
        key = tuple(place_ids)
        if key not in self.located:
            self.located[key] = _Located(
                places=frozenset(key),
                keys=frozenset().union(*(self.keys[place_id] for place_id in key)),
                countries=frozenset(self.country[place_id] for place_id in key if self.country[place_id]),
            )
        return self.located[key]


# What every place's keys and country follow from: a digest of each one's parent, kind and
# country, a few milliseconds where reading the keys and locating thousands of incidents again is
# twenty under load.
_PLACES_DIGEST_SQL = """
SELECT md5(string_agg(concat_ws(':', id, parent_id, kind, country), ',' ORDER BY id)) FROM incidents_place
"""


def _places() -> _Places:
    """Every place's keys and country, read again only when a place was added, removed, moved or
    given another kind or country since the last read in this process. One query, or two."""
    with connection.cursor() as cursor:
        cursor.execute(_PLACES_DIGEST_SQL)
        return _places_as_of(cursor.fetchone()[0])


@functools.lru_cache(maxsize=1)
def _places_as_of(digest: str | None) -> _Places:
    """The places as `digest` sums them up: read once per digest, the key of the cache."""
    return _Places()


def _places_meet(a: _Located, b: _Located) -> bool:
    """The blocking rule on places (see above), for two incidents of one type whose dates meet."""
    if a.keys & b.keys:
        return True
    return (not a.keys or not b.keys) and bool(a.countries & b.countries)


def _overlapping_later(members: list[tuple[int, int, int]], window: int) -> Iterator[tuple[int, int]]:
    """Pairs of `members` ((start, end, id), sorted) whose ranges overlap once widened by `window`
    days. Each pair is found from the one that starts first, among those starting before its end
    plus the window: a bisection, not a comparison of every two."""
    starts = [start for start, _, _ in members]
    for index, (_, end, incident_id) in enumerate(members):
        for _, _, other in members[index + 1 : bisect_right(starts, end + window, lo=index + 1)]:
            yield (incident_id, other) if incident_id < other else (other, incident_id)


class _Blocking:
    """The whole database (merged incidents left out) grouped for blocking: by key and type, and by
    country and type, each member (start, end, id); and each incident located. Two queries, read
    as streams, so that their million rows are not all held beside the groups."""

    def __init__(self, places: _Places):
        spans, self.confidential = {}, set()
        rows = (
            Incident.objects.filter(merged_into__isnull=True)
            .values_list("id", "incident_type_id", "date_start", "date_end", "confidential")
            .iterator(chunk_size=10_000)
        )
        for incident_id, incident_type_id, start, end, confidential in rows:
            spans[incident_id] = (incident_type_id, start.toordinal(), end.toordinal())
            if confidential:
                self.confidential.add(incident_id)
        places_of = defaultdict(list)
        links = IncidentPlace.objects.values_list("incident_id", "place_id").iterator(chunk_size=10_000)
        for incident_id, place_id in links:
            if incident_id in spans:
                places_of[incident_id].append(place_id)
        self.incidents = len(spans)
        self.located = {incident_id: places.locate(place_ids) for incident_id, place_ids in places_of.items()}
        self.by_key, self.by_country = defaultdict(list), defaultdict(list)
        for incident_id, location in self.located.items():
            incident_type_id, start, end = spans[incident_id]
            for key in location.keys:
                self.by_key[(key, incident_type_id)].append((start, end, incident_id))
            for country in location.countries:
                self.by_country[(country, incident_type_id)].append((start, end, incident_id))

    def pairs(self) -> Iterator[tuple[int, int]]:
        """Incidents grouped by key (and type), each group paired by date; then those placed only
        by a country, by country. Each pair once, group by group, so that the pairs are scored as
        they come (`scored_pairs`) and never all held: at 1,000,000 incidents a set of them took 22 GB."""
        window = settings.DUPLICATE_WINDOW_DAYS
        located = self.located
        for (key, _), members in self.by_key.items():
            members.sort()
            for a, b in _overlapping_later(members, window):
                # A pair shares every key both incidents stand for (a city and its province), so it
                # is found in each of those groups: it is given only from the smallest, which needs no
                # memory of the pairs given. Both have `key`, so one with a single key shares no other.
                keys_a, keys_b = located[a].keys, located[b].keys
                if len(keys_a) == 1 or len(keys_b) == 1 or min(keys_a & keys_b) == key:
                    yield a, b
        # Few incidents are placed only by a country: each is compared with its country's incidents.
        # No key rule finds these pairs (one side has no key); two placed only by countries are found
        # from both, and two naming several countries in each: each is given once, from its lower id
        # among those placed only by a country, and from the smallest country both name.
        for (country, _), members in self.by_country.items():
            for start, end, incident_id in members:
                location = located[incident_id]
                if location.keys:
                    continue
                for other_start, other_end, other in members:
                    if other == incident_id or other_start - window > end or start - window > other_end:
                        continue
                    other_location = located[other]
                    if not other_location.keys and other < incident_id:
                        continue
                    if len(location.countries) > 1 and min(location.countries & other_location.countries) != country:
                        continue
                    yield (incident_id, other) if incident_id < other else (other, incident_id)

    def candidates_per_incident(self) -> float:
        """How many candidate pairs blocking makes per incident (counted, not held), which sets
        the score's prior (`Features.prior`): among the incidents that are not confidential, as
        the words are counted (`corpus_counts`), so that no score tells how many hidden incidents
        there are, or how they cluster."""
        hidden = self.confidential
        public_pairs = sum(1 for a, b in self.pairs() if a not in hidden and b not in hidden)
        return public_pairs / max(self.incidents - len(hidden), 1)


def _candidate_pairs_of(incident_ids: Collection[int], places: _Places) -> set[tuple[int, int]]:
    """The blocked pairs of each of `incident_ids`: the same rule as the whole database's, read
    from them. One query."""
    with connection.cursor() as cursor:
        cursor.execute(_NEARBY_SQL, {"window": settings.DUPLICATE_WINDOW_DAYS, "incidents": list(incident_ids)})
        nearby = cursor.fetchall()
    mine_located = {mine: places.locate(mine_places) for mine, mine_places, _, _ in nearby}
    return {
        (min(mine, other), max(mine, other))
        for mine, _, other, other_places in nearby
        if _places_meet(mine_located[mine], places.locate(other_places))
    }


def candidate_pairs(incident: Incident | None = None, *, incident_ids: Collection[int] = ()) -> set[tuple[int, int]]:
    """The blocked pairs (lower id first) of the whole database, or those of `incident` (or of
    each of `incident_ids`): the same rule, read from them. Two queries for given incidents."""
    if incident is None and not incident_ids:
        return set(_Blocking(_places()).pairs())
    return _candidate_pairs_of([incident.pk] if incident is not None else incident_ids, _places())


# --- What the score reads of the whole database -------------------------------------------------
#
# Two reports of one event share its particulars (a name, a prison, "karaoke bar"), and two reports
# of different events share the words every report uses ("repatriated", "police", "border"). So
# descriptions are compared as TF-IDF vectors (cosine), each word weighted by how few incidents
# use it. And the fewer candidates an incident has, the likelier one of them reports its event: the
# score's prior follows how many candidate pairs blocking makes per incident (`prior`). Both are
# counted over the whole database by the whole-database run and kept (DuplicateWordFrequencies), so
# one incident is scored without reading every text; until then, and again once the number of
# incidents has changed by a quarter (and by RECOUNT_AFTER incidents at least), they are counted on
# the next rescoring.
#
# Both are counted over the incidents that are not confidential only: what staff without
# Confidential access may read, who are shown the scores of the pairs they see. Counted over every
# incident, a word weighed less once a confidential description used it, and the score of a pair
# of two drafts an analyst wrote with that word told them whether any hidden description holds it
# ("is this informant's name in the confidential records?"); the number of incidents, and of
# candidates, told how many confidential ones there were. Scores are worked out once for every
# reader, so pairs with a confidential incident weigh their words by the same counts; a word that
# only hidden incidents use weighs as a word used nowhere, as much as a word can.

RECOUNT_AFTER = 100


class CorpusCounts(NamedTuple):
    documents: int
    frequencies: dict[str, int]
    candidates_per_incident: float


def _count_word_frequencies(texts: Iterable[str]) -> tuple[int, dict[str, int]]:
    frequencies, documents = Counter(), 0
    for text in texts:
        frequencies.update(set(text.split()))
        documents += 1
    return documents, dict(frequencies)


def _keep_counts(counts: CorpusCounts) -> None:
    """Keep `counts` as the one row of DuplicateWordFrequencies, in one statement: two workers
    counting at once each write theirs, the last one stays."""
    DuplicateWordFrequencies.objects.bulk_create(
        [
            DuplicateWordFrequencies(
                incidents_counted=counts.documents,
                frequencies=counts.frequencies,
                candidates_per_incident=counts.candidates_per_incident,
                counted_at=timezone.now(),
            )
        ],
        update_conflicts=True,
        unique_fields=["id"],
        update_fields=["incidents_counted", "frequencies", "candidates_per_incident", "counted_at"],
    )


def _count_of(incidents) -> Subquery:
    # COUNT as a plain function, so one row: an annotated Count would group by each incident.
    return Subquery(incidents.order_by().annotate(counted=Func(F("pk"), function="COUNT")).values("counted"))


def corpus_counts(places: _Places) -> CorpusCounts:
    """The counts as kept, or counted over every incident that is not confidential (their titles
    and descriptions, one query; blocking, two; see above) and kept when none are, when they were
    kept before the candidates were counted (migration 0081), or when the number of those
    incidents has changed much since. One query when kept."""
    counted = Incident.objects.filter(confidential=False)
    # Every incident less the few confidential ones (through their partial index), where counting
    # those that are not reads a wider index: 2.5 ms against 1.3 at 20,000 incidents, for each
    # rescoring.
    counted_now = _count_of(Incident.objects.all()) - _count_of(Incident.objects.filter(confidential=True))
    kept = (
        DuplicateWordFrequencies.objects.annotate(incidents_now=counted_now)
        .values_list("incidents_counted", "frequencies", "candidates_per_incident", "incidents_now")
        .first()
    )
    if kept is not None:
        documents, frequencies, candidates_per_incident, incidents_now = kept
        changed = abs(incidents_now - documents)
        if candidates_per_incident is not None and (changed < RECOUNT_AFTER or changed <= documents / 4):
            return CorpusCounts(documents, frequencies, candidates_per_incident)
    texts = counted.values_list("title", "description")
    counts = CorpusCounts(
        *_count_word_frequencies(comparable_text(f"{title} {description}") for title, description in texts),
        _Blocking(places).candidates_per_incident(),
    )
    _keep_counts(counts)
    return counts


def _weighted(text: str, documents: int, frequencies: dict[str, int]) -> dict[str, float]:
    """The text's words, each weighted by its inverse document frequency, as a unit vector. Counted
    as if one more incident used every word and another none: a word every incident uses still
    weighs a little, so that in a young database of a few incidents the words two reports share
    are not all worth nothing (at 100,000 incidents the weights barely move)."""
    weights = {word: math.log((documents + 2) / (frequencies.get(word, 0) + 1)) for word in set(text.split())}
    norm = math.sqrt(sum(weight * weight for weight in weights.values())) or 1.0
    return {word: weight / norm for word, weight in weights.items()}


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(weight * b.get(word, 0.0) for word, weight in a.items())


@dataclass
class Features:
    """What `score_pairs` compares, for a set of incidents: one entry per incident, at its position.
    Numbers as arrays and sets shared where incidents agree (`load_features`): at 1,000,000
    incidents, a Python float and a set of its own per incident and field cost about a gigabyte."""

    position: dict[int, int]
    # (title, description) as written; compared only for the pairs that could reach the
    # threshold (`compared_text`), so most candidates' texts are never worked on.
    texts: list[tuple[str, str]]
    documents: int
    frequencies: dict[str, int]
    # The score's prior, in log-odds (`prior`).
    prior: float
    # Days (ordinals).
    start: np.ndarray
    end: np.ndarray
    # Whether the range is a calendar unit (a day, a Monday-to-Sunday week, whole months or years).
    calendar_span: np.ndarray
    # NaN where no count is given.
    people_best: np.ndarray
    people_low: np.ndarray
    people_high: np.ndarray
    places: list[frozenset[int]]
    place_keys: list[frozenset[int]]
    countries: list[frozenset[str]]
    # The origins of every claim, and those a reader without Confidential access knows
    # (`_FEATURES_SQL`); which a pair compares depends on who may see it (`compare`).
    origins: list[frozenset[int]]
    confidential: list[bool]
    disclosed_origins: list[frozenset[int]]
    perpetrators: list[frozenset[int]]
    _compared: dict[int, tuple[str, dict[str, float]]] = field(default_factory=dict)

    def compared_text(self, at: int) -> tuple[str, dict[str, float]]:
        """The title as compared, and the words of title and description weighted, of the
        incident at `at`; worked out on first need."""
        if at not in self._compared:
            title, description = self.texts[at]
            title = comparable_text(title)
            text = f"{title} {comparable_text(description)}"
            self._compared[at] = (title, _weighted(text, self.documents, self.frequencies))
        return self._compared[at]


# Words: runs of letters and digits, of any script ("_" is no letter).
_WORD = re.compile(r"[^\W_]+")
# Scripts written without spaces between words (kana, CJK ideographs): each character is a word,
# so that two Chinese or Japanese reports share the words they share, not only whole sentences.
_UNSPACED = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])")


def comparable_text(text: str) -> str:
    """Lower case, accents and punctuation gone, numbers left out (counts and dates are compared
    on their own fields; "48" against "about 50" is no disagreement of words): "Sinŭiju's 48" and
    "Sinuiju s" compare alike, and so do full-width letters and their ASCII ones, and the same word in
    composed or decomposed form. Every script's letters stay: folded to ASCII, Korean and Chinese
    titles and descriptions compared as empty, two word-for-word reports no closer than two
    unrelated ones. Latin text reads exactly as it did then."""
    if text.isascii():  # most text, at a tenth of the cost
        folded = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text.casefold())
        # Accents are combining marks once decomposed; Hangul syllables decompose into letters
        # (jamo), which composing again makes syllables.
        folded = unicodedata.normalize("NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))
        folded = _UNSPACED.sub(r" \1 ", folded)
    return " ".join(word for word in _WORD.findall(folded) if not word.isdigit())


# What scoring compares, an incident to a row: its own fields, and its places, its claims' source
# origins and its perpetrators as arrays (an index lookup each), so that the candidates of one
# changed incident are read in one query, and the whole database in one pass (about 5 s at
# 100,000 incidents). The origins twice: of every claim, each chain followed through confidential
# sources, and as a reader without Confidential access knows them (`ClaimQuerySet.disclosed_to`,
# each chain ending before a source hidden from them), for the pairs such readers see (`compare`);
# a source citing nothing is its own origin without calling the function, as `claim_origin` does.
_FEATURES_SQL = f"""
SELECT incident.id, incident.title, incident.description, incident.date_start, incident.date_end,
       incident.people_count, incident.people_count_min, incident.people_count_max,
       {_PLACES_OF.format("incident")},
       ARRAY(SELECT source_origin(claim.source_id, true) FROM incidents_claim claim
             WHERE claim.incident_id = incident.id),
       incident.confidential,
       ARRAY(SELECT CASE WHEN source.cites_id IS NULL THEN claim.source_id
                         ELSE source_origin(claim.source_id, false) END
             FROM incidents_claim claim JOIN incidents_source source ON source.id = claim.source_id
             WHERE claim.incident_id = incident.id AND NOT (claim.confidential OR source.confidential)),
       ARRAY(SELECT involvement.organization_id FROM incidents_involvement involvement
             WHERE involvement.incident_id = incident.id AND involvement.role = %(perpetrator)s)
FROM incidents_incident incident
"""


def _is_calendar_span(start: date, end: date) -> bool:
    """A day, a Monday-to-Sunday week or whole months (a month, a year, years): a range that any
    event of that period is given by a report that knows no more."""
    if start == end or (start.weekday() == 0 and (end - start).days == 6):
        return True
    return start.day == 1 and end.day == calendar.monthrange(end.year, end.month)[1]


def load_features(
    ids: Collection[int] | None = None, *, places: _Places | None = None, blocking: _Blocking | None = None
) -> Features:
    """What `score_pairs` compares, for the incidents `ids` (all when None, which also recounts
    what the score reads of the whole database, with `blocking` if given), their places located
    with `places` (read when not given). One query, for the whole database read as a stream (its
    rows held at once doubled what the features take), and one more each for the places and the
    counts (`corpus_counts`)."""
    places = places or _places()
    position, texts, columns = {}, [], defaultdict(list)
    with connection.chunked_cursor() if ids is None else connection.cursor() as cursor:
        if ids is None:
            cursor.execute(_FEATURES_SQL, {"perpetrator": InvolvementRole.PERPETRATOR})
        else:
            cursor.execute(
                _FEATURES_SQL + " WHERE incident.id = ANY(%(incidents)s)",
                {"perpetrator": InvolvementRole.PERPETRATOR, "incidents": list(ids)},
            )
        while rows := cursor.fetchmany(10_000):
            for row in rows:
                _add_features(row, position, texts, columns, places)
    if ids is None:
        # As `corpus_counts` counts them: the incidents that are not confidential.
        public_texts = (
            text for text, confidential in zip(texts, columns["confidential"], strict=True) if not confidential
        )
        counts = CorpusCounts(
            *_count_word_frequencies(comparable_text(f"{title} {description}") for title, description in public_texts),
            (blocking or _Blocking(places)).candidates_per_incident(),
        )
        _keep_counts(counts)
    else:
        counts = corpus_counts(places)
    return Features(
        position=position,
        texts=texts,
        documents=counts.documents,
        frequencies=counts.frequencies,
        prior=prior(counts.candidates_per_incident),
        start=np.array(columns["start"], dtype=np.int64),
        end=np.array(columns["end"], dtype=np.int64),
        calendar_span=np.array(columns["calendar_span"], dtype=bool),
        people_best=np.array(columns["people_best"], dtype=float),
        people_low=np.array(columns["people_low"], dtype=float),
        people_high=np.array(columns["people_high"], dtype=float),
        places=columns["places"],
        place_keys=columns["place_keys"],
        countries=columns["countries"],
        origins=columns["origins"],
        confidential=columns["confidential"],
        disclosed_origins=columns["disclosed_origins"],
        perpetrators=columns["perpetrators"],
    )


_NONE: frozenset = frozenset()


def _add_features(row: tuple, position: dict, texts: list, columns: dict[str, list], places: _Places) -> None:
    """One row of `_FEATURES_SQL` added at the next position. Most incidents name no perpetrator,
    share their set of places with thousands, and know every origin they have: those share one
    set, not one each."""
    (
        incident_id,
        title,
        description,
        start,
        end,
        best,
        low,
        high,
        place_ids,
        origins,
        confidential,
        disclosed_origins,
        perpetrators,
    ) = row
    position[incident_id] = len(texts)
    texts.append((title, description))
    columns["start"].append(start.toordinal())
    columns["end"].append(end.toordinal())
    columns["calendar_span"].append(_is_calendar_span(start, end))
    columns["people_best"].append(math.nan if best is None else best)
    low = low if low is not None else best
    high = high if high is not None else best
    # An open end ("at least 40") reaches as far as counts go.
    columns["people_low"].append(math.nan if low is None and high is None else (low or 0))
    columns["people_high"].append(math.nan if low is None and high is None else (high or math.inf))
    located = places.locate(place_ids)
    columns["places"].append(located.places)
    columns["place_keys"].append(located.keys)
    columns["countries"].append(located.countries)
    origins = frozenset(origins) if origins else _NONE
    columns["origins"].append(origins)
    columns["confidential"].append(confidential)
    disclosed = frozenset(disclosed_origins)
    columns["disclosed_origins"].append(origins if disclosed == origins else disclosed)
    columns["perpetrators"].append(frozenset(perpetrators) if perpetrators else _NONE)


def _places_agreement(features: Features, a: int, b: int) -> str:
    """ "same" place; one "within" the other (a village and its city, a city and its province);
    "apart": two places of one city or province (two villages, two towns); or one "country"."""
    places_a, places_b = features.places[a], features.places[b]
    if places_a & places_b:
        return "same"
    if places_a & features.place_keys[b] or places_b & features.place_keys[a]:
        return "within"
    return "apart" if features.place_keys[a] & features.place_keys[b] else "country"


def _compare_texts(pairs: list[tuple[int, int]], features: Features) -> tuple[np.ndarray, np.ndarray]:
    """Titles (rapidfuzz's token set ratio, in C, on every core) and words (TF-IDF cosine), 0 to 1."""
    if not pairs:
        return np.zeros(0), np.zeros(0)
    compared = [
        (features.compared_text(features.position[a]), features.compared_text(features.position[b])) for a, b in pairs
    ]
    titles = process.cpdist(
        [title for (title, _), _ in compared],
        [title for _, (title, _) in compared],
        scorer=fuzz.token_set_ratio,
        workers=-1,
    )
    return titles / 100, np.array([_cosine(words_a, words_b) for (_, words_a), (_, words_b) in compared])


def compare(
    pairs: list[tuple[int, int]], features: Features, *, texts_of: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Each comparison of each pair, as arrays (NaN where one side lacks the field). Texts, the
    costliest, only for the pairs `texts_of` selects (all by default); 0 for the others."""
    positions = [(features.position[a], features.position[b]) for a, b in pairs]
    first = np.array([a for a, _ in positions], dtype=np.int64)
    second = np.array([b for _, b in positions], dtype=np.int64)
    start, end = features.start, features.end
    low, high, best = features.people_low, features.people_high, features.people_best
    with np.errstate(invalid="ignore", divide="ignore"):
        below = np.where(high[first] < low[second], high[first] / low[second], 1.0)
        above = np.where(high[second] < low[first], high[second] / low[first], 1.0)
    people = np.where(np.isnan(low[first]) | np.isnan(low[second]), np.nan, np.minimum(below, above))

    def shared(values_a: frozenset, values_b: frozenset) -> float:
        """1 where the two share a member, 0 where both have members and share none."""
        return float(bool(values_a & values_b)) if values_a and values_b else np.nan

    def both_named(values: list[frozenset]) -> np.ndarray:
        return np.array([shared(values[a], values[b]) for a, b in positions])

    def origins_in_common() -> np.ndarray:
        # A pair of two incidents that are not confidential is shown to staff without Confidential
        # access (`DuplicatePairQuerySet.visible_to`), score and all: its origins are those they know,
        # or a score raised by an informant both outlets relay (or by a confidential claim) would tell
        # them it exists. A pair with a confidential incident only readers who see everything see.
        return np.array(
            [
                shared(features.origins[a], features.origins[b])
                if features.confidential[a] or features.confidential[b]
                else shared(features.disclosed_origins[a], features.disclosed_origins[b])
                for a, b in positions
            ]
        )

    compared = {
        "gap": np.maximum.reduce([start[second] - end[first], start[first] - end[second], np.zeros(len(pairs))]),
        "length": np.maximum(end[first] - start[first], end[second] - start[second]) + 1,
        # One range longer than a day given by both, and of those, one that is no calendar unit
        # ("25 November to 29 December"): two reports of it rarely come from two events.
        "same_span": (start[first] == start[second]) & (end[first] == end[second]) & (end[first] > start[first]),
        "unusual_span": ~features.calendar_span[first],
        "people": people,
        # One figure given by both: the larger, the less likely by chance.
        "same_figure": np.where(best[first] == best[second], best[first], np.nan),
        "places": np.array([_places_agreement(features, a, b) for a, b in positions]),
        "origins": origins_in_common(),
        "perpetrators": both_named(features.perpetrators),
        "title": np.zeros(len(pairs)),
        "text": np.zeros(len(pairs)),
    }
    chosen = np.flatnonzero(texts_of) if texts_of is not None else np.arange(len(pairs))
    compared["title"][chosen], compared["text"][chosen] = _compare_texts([pairs[at] for at in chosen], features)
    return compared


# --- The score ----------------------------------------------------------------------------------
#
# A Fellegi-Sunter model, the one splink fits: each comparison adds evidence, in log-odds, for
# "two reports of one event" against "two events of one block", and the sum (with the prior
# `prior`) becomes a probability. A comparison that cannot be made (a count missing on one
# side) adds nothing. Fitted by a logistic regression (the supervised form of the same model,
# bench/fit_duplicate_weights.py) on the candidate pairs of 100,000 generated incidents (seed 101)
# with their truth, rounded to halves, and checked on another seed's (bench/README.md); where the
# generated data cannot tell (perpetrators, an origin in common or not against none known, an
# incident placed only by its country), set by hand.
BASE_EVIDENCE = -12.0
# That prior is the chance that a candidate pair of the data it was fitted on is a duplicate, where
# blocking made this many candidate pairs per incident (2,120,808 of 100,000 incidents). For as many
# duplicates, the fewer candidates an incident has, the likelier each is its duplicate: a young
# database or one of scattered events calls for a higher prior, a denser one for a lower. It moves by the log of
# the ratio, by PRIOR_SHIFT_LIMIT at most either way: beyond it the fitted weights were measured
# to let the queue's precision fall (bench/README.md, "The score's prior by the database's density").
FITTED_CANDIDATES_PER_INCIDENT = 21.2
PRIOR_SHIFT_LIMIT = 2.0
# Per unit of similarity (0 to 1): the words of title and description as TF-IDF vectors (cosine),
# where a shared rare word (a village, a name, a prison) weighs far more than a shared common one;
# and the titles by rapidfuzz's token set ratio (reordered and added words cost little).
TEXT_EVIDENCE = 12.5
TITLE_EVIDENCE = 2.5
# The dates: overlapping ranges say more the narrower they are (one day: two reports of that day;
# one year: any two events that year); ranges apart by more than a few days count against.
DATE_EVIDENCE = [
    # (widest of the two ranges in days or less, evidence when they overlap)
    (1, 8.0),
    (8, 6.0),
    (31, 4.0),
    (366, 1.0),
]
DATES_CLOSE_EVIDENCE = 2.0  # apart by 1 to 3 days: the day of arrest against that of the handover
DATES_APART_EVIDENCE = -2.0
# The same range given by both: "July 2021" twice says more than "July 2021" and "14 July 2021";
# a range that is no calendar unit, given by both, is rarely a coincidence.
SAME_SPAN_EVIDENCE = 2.5
UNUSUAL_SAME_SPAN_EVIDENCE = 7.5
# Counts: ranges that meet agree; figures far apart disagree strongly. Keyed by the ratio of the
# nearer ends (smaller over larger).
PEOPLE_EVIDENCE = [(1.0, 1.5), (0.4, -1.0), (0.0, -3.5)]
SAME_FIGURE_EVIDENCE = 1.5  # both give one figure of ten or more: rarely a coincidence
# Places: one place; a place within the other's (a village and its city, a city and its province)
# or one placed only by its country; two places of one city or province.
PLACE_EVIDENCE = {"same": 0.0, "within": -0.5, "apart": -3.0, "country": -0.5}
# Sources: sharing an origin (one report relayed) is strong evidence; not sharing one is weak
# evidence against: 59% of generated second reports come from an independent outlet, against
# all but a few in a thousand of the other candidates.
SHARED_ORIGIN_EVIDENCE = 7.5
UNSHARED_ORIGINS_EVIDENCE = -0.5
# Perpetrators named on both sides and none in common.
OTHER_PERPETRATORS_EVIDENCE = -2.0


def prior(candidates_per_incident: float) -> float:
    """The score's prior, in log-odds, for a database whose blocking makes `candidates_per_incident`."""
    shift = math.log(FITTED_CANDIDATES_PER_INCIDENT / max(candidates_per_incident, 1e-9))
    return BASE_EVIDENCE + min(max(shift, -PRIOR_SHIFT_LIMIT), PRIOR_SHIFT_LIMIT)


def _evidence_without_texts(compared: dict[str, np.ndarray], prior: float) -> np.ndarray:
    """The log-odds of each pair from `prior` and every comparison but the texts (NaN compares as
    False, so a comparison that cannot be made falls through to no evidence)."""
    gap, length, people, places, origins = (compared[name] for name in ("gap", "length", "people", "places", "origins"))
    overlapping = [(gap == 0) & (length <= widest) for widest, _ in DATE_EVIDENCE]
    dates = np.select(
        [*overlapping, gap == 0, gap <= 3],
        [*(weight for _, weight in DATE_EVIDENCE), 0.0, DATES_CLOSE_EVIDENCE],
        DATES_APART_EVIDENCE,
    )
    return (
        prior
        + dates
        + np.select([people >= ratio for ratio, _ in PEOPLE_EVIDENCE], [weight for _, weight in PEOPLE_EVIDENCE], 0.0)
        + np.where(compared["same_figure"] >= 10, SAME_FIGURE_EVIDENCE, 0.0)
        + np.select(
            [compared["same_span"] & compared["unusual_span"], compared["same_span"]],
            [SAME_SPAN_EVIDENCE + UNUSUAL_SAME_SPAN_EVIDENCE, SAME_SPAN_EVIDENCE],
            0.0,
        )
        + np.select([places == level for level in PLACE_EVIDENCE], list(PLACE_EVIDENCE.values()))
        + np.select([origins == 1, origins == 0], [SHARED_ORIGIN_EVIDENCE, UNSHARED_ORIGINS_EVIDENCE], 0.0)
        + np.where(compared["perpetrators"] == 0, OTHER_PERPETRATORS_EVIDENCE, 0.0)
    )


def score_pairs(pairs: list[tuple[int, int]], features: Features, *, at_least: float = 0.0) -> np.ndarray:
    """How likely each pair reports one event, from 0 to 1. Texts are compared only for the pairs
    that could reach `at_least` with identical texts: most candidates are two events of one town
    and season whose dates, counts or villages already rule them out, and comparing texts is most
    of the cost. The others' scores leave their texts out, so they stay below `at_least`."""
    if not pairs:
        return np.zeros(0)
    evidence = _evidence_without_texts(
        compare(pairs, features, texts_of=np.zeros(len(pairs), dtype=bool)), features.prior
    )
    needed = -math.inf if at_least <= 0 else math.log(at_least / (1 - at_least)) if at_least < 1 else math.inf
    reachable = evidence + TEXT_EVIDENCE + TITLE_EVIDENCE >= needed
    titles, words = _compare_texts([pair for pair, keep in zip(pairs, reachable, strict=True) if keep], features)
    evidence[reachable] += TEXT_EVIDENCE * words + TITLE_EVIDENCE * titles
    return np.round(1 / (1 + np.exp(-evidence)), 4)


# Candidate pairs are scored this many at a time: the whole database's come from blocking as a
# stream (`_Blocking.pairs`) and only those reaching the threshold are kept, so memory
# holds the features and one chunk's arrays (a few hundred megabytes at this size), however many
# pairs there are.
SCORING_CHUNK = 200_000


def scored_pairs(
    incident: Incident | None = None,
    *,
    incident_ids: Collection[int] = (),
    at_least: float = 0.0,
    also: Collection[tuple[int, int]] = (),
) -> list[tuple[int, int, float]]:
    """The candidate pairs of the database (or of `incident`, or of `incident_ids`) scoring at
    least `at_least`, with their scores, best first; and each pair of `also` (lower id first),
    whatever it scores and whether or not it is still a candidate (the refresh's decided pairs).
    For given incidents, four queries (the places, the candidates, their features, the word
    frequencies) however many candidates."""
    places = _places()
    also = set(also)
    if incident is None and not incident_ids:
        blocking = _Blocking(places)
        features = load_features(None, places=places, blocking=blocking)
        pairs = blocking.pairs()
    else:
        pairs = _candidate_pairs_of([incident.pk] if incident is not None else incident_ids, places)
        wanted = {incident_id for pair in itertools.chain(pairs, also) for incident_id in pair}
        features = load_features(wanted, places=places)
    kept = []
    for chunk in itertools.batched((pair for pair in pairs if pair not in also), SCORING_CHUNK):
        scores = score_pairs(list(chunk), features, at_least=at_least)
        kept.extend((a, b, float(score)) for (a, b), score in zip(chunk, scores, strict=True) if score >= at_least)
    # An incident deleted since its pair was read has no features: its pair goes with it (CASCADE).
    also = sorted(pair for pair in also if all(incident_id in features.position for incident_id in pair))
    kept.extend((a, b, float(score)) for (a, b), score in zip(also, score_pairs(also, features), strict=True))
    return sorted(kept, key=lambda pair: (-pair[2], pair[0], pair[1]))


# A bulk import's incidents are rescored this many at a time (one blocking query each); beyond
# `RESCORING_WHOLE_DATABASE_ABOVE`, the whole database is rescored instead, which pairs every
# incident in one pass where looking up each one's neighbours would cost more.
RESCORING_BATCH = 1000
RESCORING_WHOLE_DATABASE_ABOVE = 5000


def duplicate_pairs_refresh(
    *,
    incident: Incident | None = None,
    incident_ids: Collection[int] = (),
    threshold: float = PROPOSAL_THRESHOLD,
    confidential_pairs_only: bool = False,
) -> int:
    """Propose the pairs scoring at least `threshold` for review, bring pairs' scores up to date
    and withdraw waiting pairs that no longer qualify; decided pairs stay as decided, whatever they
    score now (a pair found "different" is never proposed again), and keep their decision, decider
    and note. For the whole database, or after `incident` (or `incident_ids`) was written; only the
    pairs with a confidential incident with `confidential_pairs_only`. A system task, not a user's
    write: it only proposes. Returns how many pairs wait."""
    ids = [incident.pk] if incident is not None else list(incident_ids)
    if not ids or len(ids) > RESCORING_WHOLE_DATABASE_ABOVE:
        _refresh(None, threshold, confidential_pairs_only)
    else:
        for at in range(0, len(ids), RESCORING_BATCH):
            _refresh(ids[at : at + RESCORING_BATCH], threshold, confidential_pairs_only)
    return DuplicatePair.objects.waiting().count()


def _refresh(incident_ids: list[int] | None, threshold: float, confidential_pairs_only: bool = False) -> None:
    """Rescore the pairs of `incident_ids` (of the whole database when None): propose and update
    those scoring at least `threshold`, withdraw the waiting ones below it, and bring every decided
    pair's score up to date, kept whatever it scores. A decided pair keeps the score its incidents
    earn now, as its readers may know them (`compare`): kept as it was decided, a pair of two
    confidential incidents made public since went on showing staff without Confidential access a
    score raised by an informant both relay. Not a pair with a merged incident: it no longer
    waits, its merged incident lives on in its survivor, and undoing the merge rescores it.
    With `confidential_pairs_only`, the pairs of two incidents that are not confidential are
    neither proposed, rescored nor withdrawn (`rescore_relays_after_commit`,
    `services._changed_in_confidence`)."""
    # Before anything is read: a rescoring starting later reads what changed since (`_LaterRescorings`).
    read_at = timezone.now()
    in_scope = DuplicatePair.objects.all()
    if incident_ids is not None:
        in_scope = in_scope.filter(Q(incident_a__in=incident_ids) | Q(incident_b__in=incident_ids))
    if confidential_pairs_only:
        in_scope = in_scope.filter(Q(incident_a__confidential=True) | Q(incident_b__confidential=True))
    merged = Incident.objects.filter(pk__in=[OuterRef("incident_a"), OuterRef("incident_b")], merged_into__isnull=False)
    kept = list(
        in_scope.annotate(merged=Exists(merged)).values_list(
            "pk", "incident_a_id", "incident_b_id", "decision", "merged"
        )
    )
    waiting = {(a, b): pk for pk, a, b, decision, _ in kept if decision == DuplicateDecision.PENDING}
    decided = {(a, b) for _, a, b, decision, _ in kept if decision != DuplicateDecision.PENDING}
    rescored = {(a, b) for _, a, b, decision, merged in kept if decision != DuplicateDecision.PENDING and not merged}
    different = different_through_merges()
    scores = {
        (a, b): score
        for a, b, score in scored_pairs(incident_ids=incident_ids or (), at_least=threshold, also=rescored)
        if (a, b) in rescored or ((a, b) not in decided and (a, b) not in different)
    }
    if confidential_pairs_only:
        scored = {incident_id for pair in scores for incident_id in pair}
        confidential = set(Incident.objects.filter(pk__in=scored, confidential=True).values_list("pk", flat=True))
        scores = {(a, b): score for (a, b), score in scores.items() if a in confidential or b in confidential}
    with transaction.atomic():
        # A pair of an incident changed since it was read was scored as it was: left to the
        # rescoring its change queued (or found waiting), which reads it as it is now. Written
        # over it, a whole database's pass (half an hour at a million incidents) put back the
        # score of two confidential incidents made public meanwhile, raised by an informant both
        # relay, which the rescoring of their publication had already brought down.
        later = _LaterRescorings.since(read_at)
        if later.every_pair_of is None:
            return  # One of the whole database starts after this one read it: it does all of this again.
        named = {incident_id for pair in itertools.chain(scores, waiting) for incident_id in pair}
        left = later.left_to_them(named)
        scores = {(a, b): score for (a, b), score in scores.items() if not left(a, b)}
        waiting = {(a, b): pk for (a, b), pk in waiting.items() if not left(a, b)}
        # The incidents were read before they were scored (up to half an hour for the whole
        # database): one deleted since has its pairs deleted with it, and writing them failed the
        # whole batch at COMMIT (the foreign key), every other incident's pairs with it.
        present = _locked_present({incident_id for pair in scores for incident_id in pair})
        scores = {(a, b): score for (a, b), score in scores.items() if a in present and b in present}
        # Only pairs still waiting, locked first: one decided meanwhile stays, as decided. Django's
        # delete reads the rows, then deletes them by id alone (`IncidentMerge.pair` is set to
        # NULL, so there is no single DELETE), and a decision committed between the two was
        # deleted with its note. A decision now waits for the withdrawal, then hears the pair is
        # gone (`duplicate_pair_decide`).
        withdrawn = [pk for pair, pk in waiting.items() if pair not in scores]
        still_waiting = DuplicatePair.objects.select_for_update().filter(
            pk__in=withdrawn, decision=DuplicateDecision.PENDING
        )
        DuplicatePair.objects.filter(pk__in=list(still_waiting.values_list("pk", flat=True))).delete()
        # One statement for proposals and decided pairs alike: a new pair is inserted as pending,
        # an existing one (waiting or decided) has only its score set; its decision, decider and
        # note stay. A score-only change records no history (`DuplicatePair`'s tracker).
        DuplicatePair.objects.bulk_create(
            [DuplicatePair(incident_a_id=a, incident_b_id=b, score=score) for (a, b), score in scores.items()],
            update_conflicts=True,
            unique_fields=["incident_a", "incident_b"],
            update_fields=["score"],
            batch_size=5000,
        )


@dataclass(frozen=True)
class _LaterRescorings:
    """The incidents whose pairs rescorings not yet started when another read them will rescore:
    every pair of `every_pair_of` (None: of every incident), and the pairs with a confidential
    incident of `confidential_pairs_of` (None: of every incident), which an in-confidence
    rescoring alone writes (`confidential_pairs_only`)."""

    every_pair_of: set[int] | None
    confidential_pairs_of: set[int] | None

    @classmethod
    def since(cls, moment: datetime) -> "_LaterRescorings":
        """Those of the rescorings waiting, or started after `moment` (a failed one wrote nothing).
        Waiting ones count, not only those queued since: a write made while a rescoring of its
        incidents waits queues none (`_waiting_already`). One query. What the database's queue
        keeps (django-tasks-db, whose results are pruned after a day): a backend that runs tasks
        as they are queued keeps none, and rescores as each write commits."""
        later = DBTaskResult.objects.filter(task_path=refresh_duplicate_pairs.module_path).filter(
            Q(started_at__isnull=True) | Q(started_at__gt=moment)
        )
        every_pair_of, confidential_pairs_of = set(), set()
        for args_kwargs in later.exclude(status=TaskResultStatus.FAILED).values_list("args_kwargs", flat=True):
            incident_ids = args_kwargs["kwargs"].get("incident_ids")
            if not args_kwargs["kwargs"].get("confidential_pairs_only"):
                if not incident_ids:
                    return cls(None, None)
                every_pair_of.update(incident_ids)
            elif not incident_ids:
                confidential_pairs_of = None
            elif confidential_pairs_of is not None:
                confidential_pairs_of.update(incident_ids)
        return cls(every_pair_of, confidential_pairs_of)

    def left_to_them(self, incident_ids: Collection[int]):
        """Whether they will rescore the pair (a, b), of `incident_ids`: one query for which of
        those are confidential, if any in-confidence rescoring is among them."""
        confidential = set()
        if self.confidential_pairs_of is None or self.confidential_pairs_of:
            confidential = set(
                Incident.objects.filter(pk__in=incident_ids, confidential=True).values_list("pk", flat=True)
            )
        in_confidence = self.confidential_pairs_of

        def left(a: int, b: int) -> bool:
            if a in self.every_pair_of or b in self.every_pair_of:
                return True
            if not (a in confidential or b in confidential):
                return False
            return in_confidence is None or a in in_confidence or b in in_confidence

        return left


def rescorings_waiting() -> int:
    """How many rescorings no worker has taken yet: a rescoring leaves to them the pairs of the
    incidents they name (`_LaterRescorings`), so with no worker running those pairs wait. One query."""
    return DBTaskResult.objects.filter(
        task_path=refresh_duplicate_pairs.module_path, status=TaskResultStatus.READY
    ).count()


def different_through_merges(incident_ids: Collection[int] | None = None) -> dict[tuple[int, int], int]:
    """The pairs of live incidents (ordered ids), each holding through a merge that stands an
    incident decided "different" from the other or from one it holds, with that decided pair's id;
    of `incident_ids` alone if given. A reviewer who decided A and X different decided it of the
    incident A now lives on in too: proposed again, the pair of it and X scored on A's own words
    and places, and a merge of it joined two events decided apart. (A merged incident's
    `merged_into` names a live one: `merges._followers_moved`.) One query over the decided pairs
    with a merged side, which a reviewer makes one at a time: few."""
    decided = DuplicatePair.objects.filter(decision=DuplicateDecision.DIFFERENT).filter(
        Q(incident_a__merged_into__isnull=False) | Q(incident_b__merged_into__isnull=False)
    )
    asked = None if incident_ids is None else set(incident_ids)
    through = {}
    for pair_id, incident_a, a_lives_in, incident_b, b_lives_in in decided.values_list(
        "pk", "incident_a", "incident_a__merged_into", "incident_b", "incident_b__merged_into"
    ):
        first, second = sorted((a_lives_in or incident_a, b_lives_in or incident_b))
        if first != second and (asked is None or {first, second} <= asked):
            through[(first, second)] = pair_id
    return through


def _locked_present(incident_ids: Collection[int]) -> set[int]:
    """Which of `incident_ids` still exist, each locked until the transaction ends, in id order
    (FOR KEY SHARE: a deletion waits for it, an edit does not; Django's `select_for_update` takes
    no such lock): the pairs written in it name no incident deleted before it commits. One query."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {Incident._meta.db_table} WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE",
            [sorted(incident_ids)],
        )
        return {incident_id for (incident_id,) in cursor.fetchall()}


@task
def refresh_duplicate_pairs(incident_ids: list[int] | None = None, confidential_pairs_only: bool = False) -> int:
    """The background task: `duplicate_pairs_refresh` of `incident_ids`, or of the whole database
    when none are given. Run by `manage.py db_worker`, outside any request, so it reads the primary
    (tracker/replicas.py): it sees the write that queued it. Returns how many pairs wait."""
    return duplicate_pairs_refresh(incident_ids=incident_ids or (), confidential_pairs_only=confidential_pairs_only)


# A rescoring's arguments that say it rescores only the pairs with a confidential incident, for a
# change that only readers with Confidential access see (`rescore_relays_after_commit`,
# `services._changed_in_confidence`).
_IN_CONFIDENCE = {"confidential_pairs_only": True}


def rescore_after_commit(incident_ids: Collection[int], *, confidential_pairs_only: bool = False) -> None:
    """Queue the refresh of the pairs of `incident_ids` once the transaction writing them commits
    (nothing if it rolls back). The services call it on every create and change, so every door
    (admin, API, import) rescores. A failure to queue is logged (`robust`) and a failed task is
    kept with its traceback in the task results: neither undoes the write that committed.

    A large import is queued as tasks of `RESCORING_BATCH` incidents, the batch the refresh works
    in, so that no task's arguments hold a hundred thousand ids and several workers can share it;
    beyond `RESCORING_WHOLE_DATABASE_ABOVE`, as one task for the whole database, the cheaper pass.
    With `confidential_pairs_only`, only their pairs with a confidential incident are rescored, in
    tasks that only readers with Confidential access are told of (`rescoring_backlog`). At commit,
    one INSERT per task."""
    ids = sorted(set(incident_ids))
    if not ids:
        return
    if len(ids) > RESCORING_WHOLE_DATABASE_ABOVE:
        tasks = [{}]
    else:
        tasks = [{"incident_ids": ids[at : at + RESCORING_BATCH]} for at in range(0, len(ids), RESCORING_BATCH)]
    if confidential_pairs_only:
        tasks = [{**arguments, **_IN_CONFIDENCE} for arguments in tasks]

    def enqueue():
        for arguments in tasks:
            if not _waiting_already(arguments):
                refresh_duplicate_pairs.enqueue(**arguments)

    transaction.on_commit(enqueue, robust=True)


def _waiting_already(arguments: dict) -> bool:
    """Whether a rescoring not yet taken by a worker covers `arguments`: one of the whole database,
    or of every incident named. It runs after the write that asks again committed, so it reads what
    that write left, and queueing the same work twice (a merge and its undo, or a write saved twice,
    before a worker took the first) would only make the worker do it twice and the review queue
    count it twice. One query (the database's queue; none is kept by a backend that runs tasks as
    they are queued). A rescoring of the pairs with a confidential incident alone covers only
    another such: one every member of staff is told of is queued even so, or the count of
    incidents waiting would tell those without Confidential access that a hidden one waits."""
    waiting = DBTaskResult.objects.filter(task_path=refresh_duplicate_pairs.module_path, status=TaskResultStatus.READY)
    in_confidence = arguments.get("confidential_pairs_only", False)
    covering = Q(args_kwargs__kwargs={})
    if in_confidence:
        covering |= Q(args_kwargs__kwargs=_IN_CONFIDENCE)
    if "incident_ids" in arguments:
        naming = Q(args_kwargs__kwargs__incident_ids__contains=arguments["incident_ids"])
        if not in_confidence:
            naming &= ~Q(args_kwargs__kwargs__has_key="confidential_pairs_only")
        covering |= naming
    return waiting.filter(covering).exists()


def rescore_relays_after_commit(source_id: int, *, confidential_pairs_only: bool = False) -> None:
    """Queue, as `rescore_after_commit`, the incidents with a claim of the source or of a source
    relaying it, however indirectly: their claims' origins change when the source is made
    confidential or public, or cites another. A pair keeps its score until it is rescored, and a
    score worked out while a source was public would go on telling staff without Confidential
    access, once it is hidden, that two outlets relay it (`compare`). With
    `confidential_pairs_only`, for a change that only readers with Confidential access see, only
    the pairs with a confidential incident, which those readers alone see, scored by every origin:
    a pair of two others is scored by the origins the change leaves as they were, and a rescoring
    of it, or its count among those waiting, would tell all staff that something hidden changed,
    and how many incidents cite the source or a relay of it. One query (UNION: a loop of `cites`
    ends)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE relays(id) AS (
                SELECT %s::bigint
                UNION
                SELECT source.id FROM incidents_source AS source JOIN relays ON source.cites_id = relays.id
            )
            SELECT DISTINCT claim.incident_id FROM incidents_claim AS claim
            WHERE claim.source_id IN (SELECT id FROM relays)
            """,
            [source_id],
        )
        rescore_after_commit(
            [incident_id for (incident_id,) in cursor.fetchall()], confidential_pairs_only=confidential_pairs_only
        )


# Waiting longer than this, the queue's rescoring is late: no worker is taking it.
RESCORING_LATE_SECONDS = 60


@dataclass(frozen=True)
class RescoringBacklog:
    """Tasks queued and not yet taken by a worker (one that a killed worker left running would
    otherwise be counted for ever), and those that failed."""

    incidents: int  # waiting to be rescored, in tasks that name them
    whole_database: bool  # a rescoring of every incident waits
    oldest: datetime | None  # when the oldest waiting task was queued
    failed_lately: int  # tasks failed in the last day (their tracebacks: the admin's task results)

    @property
    def late(self) -> bool:
        return self.oldest is not None and (timezone.now() - self.oldest).total_seconds() > RESCORING_LATE_SECONDS


def rescoring_backlog(user) -> RescoringBacklog:
    """What waits to be rescored in the background, and what failed lately, as `user` may know it:
    the waiting incidents they may see, and the tasks that name one (or the whole database). Every
    incident written queues its rescoring, a confidential one too: counted for all staff, the queue
    told those without Confidential access when an informant's account was recorded or changed,
    and how many incidents an import of confidential ones held. One query, which looks each waiting
    incident up by its key: as `IN (the incidents they may see)`, PostgreSQL compared each with the
    visible incidents one after another once they outgrew its memory for a hash (3 minutes for 200
    tasks naming 2,425 incidents at a million), the LIMIT keeps it from making that a join. A
    rescoring of the pairs with a confidential incident alone, for a change only readers with
    Confidential access see, is told to them alone, whatever incidents it names."""
    ours = DBTaskResult.objects.filter(task_path=refresh_duplicate_pairs.module_path)
    if not can_see_confidential(user):
        ours = ours.exclude(args_kwargs__kwargs__contains=_IN_CONFIDENCE)
    since = timezone.now() - timedelta(days=1)
    tasks = ours.filter(Q(status=TaskResultStatus.READY) | Q(status=TaskResultStatus.FAILED, finished_at__gte=since))
    tasks_sql, tasks_params = tasks.values(
        "id", "status", "enqueued_at", named=KeyTransform("incident_ids", KeyTransform("kwargs", "args_kwargs"))
    ).query.sql_with_params()
    seen_sql, seen_params = Incident.objects.visible_to(user).order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH task AS MATERIALIZED ({tasks_sql}),
            shown AS (
                SELECT task.id, task.status, seen.pk AS incident_id
                FROM task, jsonb_array_elements_text(task.named) AS named(incident_id),
                LATERAL (
                    SELECT visible.pk FROM ({seen_sql}) AS visible
                    WHERE visible.pk = named.incident_id::bigint LIMIT 1
                ) AS seen
            ),
            told AS (
                SELECT * FROM task WHERE named IS NULL OR id IN (SELECT id FROM shown)
            )
            SELECT
                (SELECT count(DISTINCT incident_id) FROM shown WHERE status = %s),
                EXISTS (SELECT FROM task WHERE status = %s AND named IS NULL),
                (SELECT min(enqueued_at) FROM told WHERE status = %s),
                (SELECT count(*) FROM told WHERE status = %s)
            """,
            [*tasks_params, *seen_params, *[TaskResultStatus.READY] * 3, TaskResultStatus.FAILED],
        )
        incidents, whole_database, oldest, failed_lately = cursor.fetchone()
    return RescoringBacklog(
        incidents=incidents, whole_database=whole_database, oldest=oldest, failed_lately=failed_lately
    )


def decided_in_confidence(*, user, incident_ids: Collection[int]) -> bool:
    """Whether what `user` decides now on `incident_ids` (a pair's decision, a merge, its undo) is
    to be withheld from readers without Confidential access (`NoteWrittenInConfidence`): its note,
    who decided and when. Decided by someone with that access while one of the incidents, or a
    claim of one (confidential itself, of a confidential source, or of one relaying a confidential
    source), is hidden from those readers. The note may name what only the writer could see
    ("same as informant K's account"); its words would reach every reader of the pair once the
    incidents or the source were made public, or while only the claim (or the source) was hidden.
    Who decided (a colleague with Confidential access) and when (before the incidents were public)
    tell those readers that a hidden record was there, and since when, note or none.
    Judged when it is decided (the history's periods say when the incidents were confidential,
    not which claims the writer read). One query, none for a writer without Confidential access,
    who could have read nothing hidden."""
    if not can_see_confidential(user):
        return False
    claims = Claim.objects.filter(incident=OuterRef("pk"))
    # A public outlet's claim relaying a confidential source: its origin as those readers know it
    # ends before that source (`SourceOrigin`), the writer's does not.
    relaying_hidden = (
        claims.filter(source__cites__isnull=False)
        .alias(known=SourceOrigin(F("source_id"), Value(False)), every=SourceOrigin(F("source_id"), Value(True)))
        .exclude(known=F("every"))
    )
    incidents = Incident.objects.filter(pk__in=incident_ids)
    return incidents.filter(Q(confidential=True) | Exists(claims.confidential()) | Exists(relaying_hidden)).exists()


def duplicate_pair_decide(
    *, user, pair: DuplicatePair, decision: str, note: str = "", decision_read: str | None = None
) -> DuplicatePair:
    """Record a reviewer's decision on `pair`. Staff who may change incidents decide "different"
    and "unsure"; "same incident" leads to a merge, so only a Reviewer (publish permission) may.
    A pair either of whose incidents `user` may not see answers as if it did not exist.
    `decision_read`: the pair's `decision_read` when its deciding page was opened; a decision made
    since is not replaced (ValidationError): a page opened before a colleague decided "different",
    with a note, replaced both without a word."""
    if not DuplicatePair.objects.visible_to(user).filter(pk=pair.pk).exists():
        raise services.RecordNotFound(f"No duplicate pair {pair.pk}.")
    if not user.has_perm("incidents.change_incident"):
        raise PermissionDenied("You may not decide on duplicates: your role lacks that permission.")
    if decision not in DuplicateDecision.values or decision == DuplicateDecision.PENDING:
        raise ValidationError({"decision": f"Choose one of: same, different, unsure (not {decision!r})."})
    if decision == DuplicateDecision.SAME and not services.may_publish(user):
        raise PermissionDenied("Only a Reviewer may decide that two incidents are the same.")
    with transaction.atomic(), pghistory.context(user=user.pk):
        # Its incidents first (as a merge locks them, in id order), then asked again: a merge of
        # either committed meanwhile has it answered as one that no longer exists. Unlocked, a
        # "different" was recorded while a colleague merged one side and then the other into a
        # third incident, each merge having read the pair as undecided: two events decided apart
        # in one (`different_through_merges`).
        incidents = Incident.objects.select_for_update(no_key=True, of=("self",))
        list(incidents.filter(pk__in=[pair.incident_a_id, pair.incident_b_id]).order_by("pk").values_list("pk"))
        if not DuplicatePair.objects.visible_to(user).filter(pk=pair.pk).exists():
            raise services.RecordNotFound(f"No duplicate pair {pair.pk}.")
        # Locked whether or not the page's decision is compared: a pair the rescoring withdrew
        # meanwhile (`_refresh`) is answered as one that no longer exists, not updated as nothing.
        stored = services.locked_or_not_found(DuplicatePair.objects.all(), pair.pk, name="duplicate pair")
        if decision_read is not None and stored.decision_read != decision_read:
            if (stored.decision, stored.note, stored.decided_by_id) == (decision, note, user.pk):
                # This very decision, sent again (pressed twice, or again after going back): it
                # stands as the first recorded it, where the second was told it was refused.
                return stored
            raise ValidationError(
                f"This pair was decided since you opened it: it is now “{stored.get_decision_display()}”. "
                "Nothing was changed: reload it, then decide again."
            )
        DuplicatePair.objects.filter(pk=pair.pk).update(
            decision=decision,
            decided_by=user,
            decided_at=timezone.now(),
            note=note,
            note_confidential=decided_in_confidence(user=user, incident_ids=[pair.incident_a_id, pair.incident_b_id]),
        )
    pair.refresh_from_db()
    return pair
