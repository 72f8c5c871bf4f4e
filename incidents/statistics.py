"""Counts and sums of people over a filtered set of incidents, grouped by year, month, country,
type or perpetrator, without ever counting an incident twice.

Ways to the same answer:

- **Kept totals** (`IncidentRollup`, maintained by PostgreSQL in the transaction of every change,
  migrations 0011 and 0023): the incidents summed per start and end month, type, verification,
  review state and confidentiality, overall, per country, per perpetrator (also within each
  country, migration 0031) and per place (a place counting the places inside it). They answer the
  filters on those (dates from the first of a month to the last of a month, `type`,
  `verification`, `review_state`, `country`, `place`) by reading totals instead of the incidents
  (at a million incidents, still hundreds of thousands of totals per dimension: see bench/README.md).
  Whom they are shown to is decided by the incidents' own rule (`visible_to`).
- **Totals kept for the facets** (`IncidentFacetTotal`, migration 0029, kept in the same count):
  incidents only, per start and end *year*, overall and per country, place and perpetrator, each
  also within one country and within one place, so each of the browse page's facets reads one
  range of them (about 20,000 at a million incidents; `facet_statistics`).
- **Kept totals less a few incidents**, for a search that only leaves words out (`q=-dandong`)
  with filters the kept totals answer, when fewer than SUBTRACT_BELOW incidents have those words
  (`IncidentSearch.found_if_few`): the statistic of the other filters, from kept totals, less that
  of the incidents the search leaves out, counted from them (`_kept_minus_left_out`). No index
  finds the incidents that lack a word, so counting them read every incident: 2-6 s at a million.
- **The incidents themselves**, for every other filter (`q`, `source`, a date mid-month…).
  The caller's queryset (already limited by `visible_to` and the filter set) is aggregated
  directly, never joined back to itself through an `id IN (…)` list: on a million incidents that
  self-join hashed every matching id and spilled to disk.

Either way:
- year, month, type, verification: each incident is in exactly one group, so the total is the groups' sum.
  An incident is in the year (month) its whole date range lies in, and one whose range runs over more
  than one in the group of none (`_within_one`).
- perpetrator: an organization is a perpetrator of an incident at most once (the involvement's
  unique constraint covers incident, organization and role), so a LEFT JOIN on the perpetrator
  involvements yields distinct (incident, group) rows without DISTINCT.
- country: an incident at two places of one country counts once there, so its distinct
  (incident, country) rows are taken first and summed after; the total counts each incident once.
An incident can have several perpetrators or countries, so there the total is summed on its own.
"""

import calendar
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import Case, Count, DateField, F, FilteredRelation, Q, Sum, Value, When
from django.db.models.functions import Coalesce, ExtractYear, NullIf, TruncMonth
from django.db.models.lookups import Exact
from django.utils.translation import gettext_noop
from django_countries import countries

from incidents.filters import IncidentFilterSet, descendant_ids
from incidents.models import (
    NO_COUNTRY,
    Incident,
    IncidentFacetTotal,
    IncidentPlace,
    IncidentRollup,
    IncidentRollupEntry,
    IncidentType,
    Involvement,
    InvolvementRole,
    Organization,
    Place,
    RollupDimension,
    Verification,
)
from incidents.querysets import people_estimate
from incidents.vocabulary import type_name

GROUPINGS = ("year", "month", "country", "type", "perpetrator", "verification")
# The public pages' place facet also groups by place: the places directly inside the place filter's
# place (or the outermost places without one), each counting the incidents at it or anywhere
# inside it, which is what choosing it selects. An incident at two of them is in both.
PLACE = "place"

# An incident's best estimate, low and high figures as the sums count them, so that
# low <= best <= high for each incident and so for every sum: a missing best estimate falls back to
# the minimum, a missing minimum to the best estimate, a missing maximum to the best estimate, else
# the minimum. "At least 40" added 40 to the low sum alone: with "about 500", 500 people in a range
# from 540 (to 500). A maximum alone ("at most 100") adds to the high sum only. The kept totals
# count the same (migration 0090).
_BEST = people_estimate()
_LOW = Coalesce("people_count_min", "people_count")
_HIGH = Coalesce("people_count_max", "people_count", "people_count_min")
# An incident with no figure at all: it counts as an incident but adds no people to any sum.
_NO_FIGURE = Q(people_count__isnull=True, people_count_min__isnull=True, people_count_max__isnull=True)
# Aliases differ from the field names: Django refuses an aggregate named like the field it sums.
_SUMS = {
    "incidents": Count("pk"),
    "without_figure": Count("pk", filter=_NO_FIGURE),
    "people": Sum(_BEST),
    "low": Sum(_LOW),
    "high": Sum(_HIGH),
}
# How many incidents have each figure: what is left of a group once some of its incidents are taken
# away (`_kept_minus_left_out`) has a figure only if one of those left has it.
_KNOWN = {"people_known": Count(_BEST), "low_known": Count(_LOW), "high_known": Count(_HIGH)}
# Over kept totals: a figure that no incident of the group has is unknown (null), as above.
_ROLLUP_SUMS = {
    "incidents": Coalesce(Sum("incidents"), 0),
    "without_figure": Coalesce(Sum("incidents_without_figure"), 0),
    "people": Sum("people_count", filter=Q(people_count_known__gt=0)),
    "low": Sum("people_count_min", filter=Q(people_count_min_known__gt=0)),
    "high": Sum("people_count_max", filter=Q(people_count_max_known__gt=0)),
}
_ROLLUP_KNOWN = {
    "people_known": Coalesce(Sum("people_count_known"), 0),
    "low_known": Coalesce(Sum("people_count_min_known"), 0),
    "high_known": Coalesce(Sum("people_count_max_known"), 0),
}


def _within_one(part, start: str, end: str):
    """`part` (the year or month) of the date `start` where `end` has the same, else null: the year
    or month a whole date range lies in. Counted in the year or month it starts, every incident
    dated "2023" (a Year) stood in January 2023 and one of "2022-2023" in 2022: by month, the demo
    data's January 2023 held 29 incidents, 19 of them dated only to the year, to months or not at
    all: more precision than was recorded. `part` applies to the chosen date rather than being
    chosen, so that its own conversion (a month as a date) holds."""
    return part(Case(When(Exact(part(start), part(end)), then=F(start)), output_field=DateField()))


# The groupings by the kept totals' own columns (each incident in one group of each), and how.
_COLUMNS = {
    "year": {"group": _within_one(ExtractYear, "start_month", "end_month")},
    "month": {"group": _within_one(TruncMonth, "start_month", "end_month")},
    "type": {"group": F("incident_type__slug"), "label": F("incident_type__name")},
    "verification": {"group": F("verification")},
}
# The same, counted from the incidents themselves.
_INCIDENT_COLUMNS = {
    "year": {"group": _within_one(ExtractYear, "date_start", "date_end")},
    "month": {"group": _within_one(TruncMonth, "date_start", "date_end")},
    "type": _COLUMNS["type"],
    "verification": _COLUMNS["verification"],
}
_ONE_GROUP_EACH = tuple(_COLUMNS)
# The filters the kept totals answer exactly; any other filter given needs the incidents.
_ROLLUP_FILTERS = {"date_from", "date_to", "type", "verification", "review_state", "country", "place"}
# The statistics' totals also answer a perpetrator, from its own totals (see `_rollup_cells`).
_ROLLUP_CELL_FILTERS = _ROLLUP_FILTERS | {"perpetrator"}
# Up to how many incidents with the words a search leaves out are counted to be taken from the kept
# totals (`_kept_minus_left_out`), by PostgreSQL's estimate. Counting every incident without them
# took 1.5-4.6 s at 1,000,000 incidents (by year, perpetrator, country; anonymous, load 2.5); taking
# away 12,600 (`q=-dandong`) took 0.2-0.5 s, 18,800 0.6 s and 56,000 1.4 s by perpetrator: this
# keeps each under about 0.6 s. Above it (or when the kept totals cannot answer the other
# filters), every incident is counted.
SUBTRACT_BELOW = 20_000


def incident_statistics(filterset: IncidentFilterSet, group_by: str) -> dict:
    """One row per group of the incidents `filterset` (bound and valid) selects, and the overall
    total. One or two queries.

    `people_count` sums each incident's best estimate (its minimum where it gives none), and
    `people_count_min`/`_max` each incident's range (its best estimate, else its minimum, where a
    bound is unknown: see `_BEST`), so that the best estimate lies within the range; an incident
    with a maximum alone adds to the maximum only.
    `incidents_without_figure` counts those of the incidents that have no figure at all (no best
    estimate, minimum or maximum), so that a reader knows how many of them the sums leave out."""
    cells = _rollup_cells(filterset, group_by)
    if cells is not None:
        return _statistic(group_by, *_kept_sums(filterset, cells, group_by))
    kept_minus_left_out = _kept_minus_left_out(filterset, group_by)
    if kept_minus_left_out is not None:
        return _statistic(group_by, *kept_minus_left_out)
    return _statistic(group_by, *_incident_sums(filterset.qs.order_by(), group_by, _place_filter(filterset)))


def _kept_sums(
    filterset: IncidentFilterSet, cells, group_by: str, with_total: bool = True, counting_known: bool = False
) -> tuple[list[dict], dict]:
    _count_own_changes()
    return _rollup_sums(
        cells,
        group_by,
        filterset.form.cleaned_data,
        user=filterset.user,
        with_total=with_total,
        counting_known=counting_known,
    )


def _kept_minus_left_out(filterset: IncidentFilterSet, group_by: str) -> tuple[list[dict], dict] | None:
    """For a search (`q`) that only leaves words out, with filters the kept totals answer: the
    groups and the total of the other filters from kept totals, less those of the incidents the
    search leaves out, when they are few (`_left_out_if_few`); None otherwise. Three to six queries,
    none of which reads every incident."""
    search = filterset.form.cleaned_data.get("q")
    if not search or search.included or not search.excluded:
        return None
    cells = _rollup_cells(filterset, group_by, without_search=True)
    if cells is None:
        return None
    left_out = _left_out_if_few(filterset, search)
    if left_out is None:
        return None
    kept_groups, kept_total = _kept_sums(filterset, cells, group_by, counting_known=True)
    left_out_groups, left_out_total = _incident_sums(left_out, group_by, _place_filter(filterset), counting_known=True)
    groups = _minus(kept_groups, left_out_groups)
    if group_by in _ONE_GROUP_EACH:
        return groups, _sum_of(groups)
    return groups, _less(kept_total, left_out_total)


def _left_out_if_few(filterset: IncidentFilterSet, search):
    """The incidents the filter set's other filters select that `search` (which only leaves words
    out) leaves out: those with any of its words, as the filter set's reader may search them
    (a confidential claim's words only for a reader who may see it), collected from the search's
    index when fewer than SUBTRACT_BELOW (`IncidentSearch.found_if_few`); else None. One query."""
    # The filter set's incidents but for its search: each of its other filters in turn, as it applies them.
    others = filterset.queryset.order_by()
    for name, value in filterset.form.cleaned_data.items():
        if name != "q":
            others = filterset.filters[name].filter(others, value)
    return search.left_out().found_if_few(others, user=filterset.user, fewer_than=SUBTRACT_BELOW)


def _minus(groups: list[dict], taken: list[dict]) -> list[dict]:
    """`groups` less the same groups of `taken` (some of their incidents, with their figures
    known: `_KNOWN`), leaving out those left with no incident, as counting them would."""
    taken_by_group = {row["group"]: row for row in taken}
    left = (_less(row, taken_by_group.get(row["group"])) for row in groups)
    return [row for row in left if row["incidents"]]


def _less(row: dict, taken: dict | None) -> dict:
    """A group or total `row` less `taken`, some of its incidents: a figure none of the incidents
    left has is unknown (null)."""
    if taken is None:
        return row
    left = {
        **row,
        "incidents": row["incidents"] - taken["incidents"],
        "without_figure": row["without_figure"] - taken["without_figure"],
    }
    for name in ("people", "low", "high"):
        known = row[f"{name}_known"] - taken[f"{name}_known"]
        left[f"{name}_known"] = known
        left[name] = (row[name] or 0) - (taken[name] or 0) if known else None
    return left


def _place_filter(filterset: IncidentFilterSet) -> Place | None:
    return filterset.form.cleaned_data.get("place")


def _statistic(group_by: str, groups: list[dict], total: dict, figures=None) -> dict:
    """`groups` and `total` as a statistic, each with its `figures` (by default all of them)."""
    figures = figures or _figures
    results = [
        {"group": _group_name(group_by, row["group"]), "label": _label(group_by, row), **figures(row)} for row in groups
    ]
    if group_by == PLACE:
        results.sort(key=lambda row: row["label"])
    return {"group_by": group_by, "results": results, "total": figures(total) if total else None}


def _incidents_of(row: dict) -> dict:
    """A facet's figure: it shows no people."""
    return {"incidents": row["incidents"]}


def facet_statistics(filterset: IncidentFilterSet, groupings, *, sample_size: int) -> dict[str, dict]:
    """How many incidents each group of `groupings` (those of `incident_statistics`, and PLACE)
    holds among what `filterset` selects, for facets: from the facets' own totals where they
    answer (dates of whole years, a country or a place: see `_facet_totals`), else from the
    statistics' totals (dates of whole months), else over at most the newest `sample_size`
    matches. Each statistic says whether it counted every match (`complete`). A facet shows no
    total, so only those that cost nothing are given (`total` None for the others, whose total
    would take a query of its own; nor the years, in which an incident counts once for each year it
    overlaps). From kept totals, month, type and verification are read together (one query) and
    each other grouping takes one (the place facet one more, for the places it groups by); over a
    sample, two queries count every grouping."""
    statistics = _facet_totals(filterset, groupings)
    if statistics is None:
        statistics = _facets_otherwise(filterset, groupings, sample_size=sample_size)
    return statistics


# The facets read together from the facets' totals, by their columns.
# The year facet's incidents span from their start year to their end year (`until`): see `_years_listed`.
_FACET_COLUMNS = {
    "year": {"group": F("start_year"), "until": F("end_year")},
    "type": _COLUMNS["type"],
    "verification": _COLUMNS["verification"],
}
# The same years from the statistics' totals, for dates the facets' totals cannot answer.
_FACET_ROLLUP_COLUMNS = {
    **_COLUMNS,
    "year": {"group": ExtractYear("start_month"), "until": ExtractYear("end_month")},
}


def _facet_totals(filterset: IncidentFilterSet, groupings) -> dict[str, dict] | None:
    """`facet_statistics` from `IncidentFacetTotal`, or None for filters it cannot answer exactly:
    any but those of the statistics' totals, dates other than 1 January to 31 December (what the
    year facet chooses), or a country and a place at once (it keeps the totals within either).

    Dates: an incident overlaps [1 January of year A, 31 December of year B] exactly when it
    starts in year B or before and ends in year A or after, which its start and end years tell."""
    filters = _given_filters(filterset)
    date_from, date_to = filters.get("date_from"), filters.get("date_to")
    country, place = filters.get("country"), filters.get("place")
    if (
        not filters.keys() <= _ROLLUP_FILTERS
        or (date_from and (date_from.month, date_from.day) != (1, 1))
        or (date_to and (date_to.month, date_to.day) != (12, 31))
        or (country and place)
    ):
        return None
    totals = _kept_filtered(IncidentFacetTotal.objects.visible_to(filterset.user), filters)
    if date_from:
        totals = totals.filter(end_year__gte=date_from.year)
    if date_to:
        totals = totals.filter(start_year__lte=date_to.year)
    # Within the chosen country or place (or all incidents: blank).
    within = {"within_country": country or "", "within_place": None if country else place}
    _count_own_changes()

    statistics = {}
    together = [group_by for group_by in groupings if group_by in _FACET_COLUMNS]
    if together:
        # Each incident once: overall, or the chosen country's pair with itself, or the chosen place's own.
        if country:
            each_once = _facet_cells(totals, RollupDimension.COUNTRY, country=country, **within)
        elif place:
            each_once = _facet_cells(totals, RollupDimension.PLACE, place=place)
        else:
            each_once = _facet_cells(totals, RollupDimension.INCIDENT)
        groups = _groups_together_by_span(each_once, together, _FACET_COLUMNS, {"incidents": Sum("incidents")})
        for group_by in together:
            statistics[group_by] = {
                **_statistic(group_by, groups[group_by], _facet_total(group_by, groups[group_by]), _incidents_of),
                "complete": True,
            }
    for group_by in groupings:
        if group_by in together:
            continue
        if group_by == "country":
            grouped = _facet_cells(totals, RollupDimension.COUNTRY, "country", **within).values(
                group=NullIf("country", Value(""))
            )
        elif group_by == PLACE:
            # Any place inside the chosen place is inside its own group too: the totals within all
            # incidents (or the chosen country), one place after the other.
            grouped = _facet_cells(
                totals,
                RollupDimension.PLACE,
                "place",
                within_country=country or "",
                place__in=list(_places_inside(place).values_list("pk", flat=True)),
            ).values(group=F("place_id"), label=F("place__name"))
        else:
            grouped = _facet_cells(totals, RollupDimension.PERPETRATOR, "organization", **within).values(
                group=F("organization_id"), label=F("organization__name")
            )
        groups = list(grouped.annotate(incidents=Sum("incidents")).order_by(F("group").asc(nulls_last=True)))
        statistics[group_by] = {**_statistic(group_by, groups, None, _incidents_of), "complete": True}
    return statistics


# The scope and group columns of IncidentFacetTotal, blank.
_NO_SCOPE_OR_GROUP = {"within_place": None, "within_country": "", "country": "", "place": None, "organization": None}


def _facet_cells(totals, dimension: str, group: str = "", **key):
    """The totals of `dimension` with `key` (their scope and group), every other scope and group
    column blank but `group`'s. Each column is named so that PostgreSQL reads one range of the
    unique index, which leads with them: a column left out let it read every place's totals."""
    blank = {name: value for name, value in _NO_SCOPE_OR_GROUP.items() if name != group}
    return totals.filter(dimension=dimension, **{**blank, **key})


def _facet_total(group_by: str, groups: list[dict]) -> dict | None:
    """A facet's total (of incidents alone) where its groups share no incident; none for the years
    (see `_FACET_COLUMNS`)."""
    return None if group_by == "year" else {"incidents": sum(row["incidents"] for row in groups)}


# Up to how many years the year facet lists, the latest: what the facet's size is bounded by,
# whatever the dates recorded.
FACET_YEARS = 100


def _years_listed(spans) -> list[dict]:
    """The year facet's groups from `spans`, each the number of incidents (`incidents`) from one
    start year (`start`) to one end year (`end`): the years that hold an incident dated within that
    year, as the statistics by year group them (`_within_one`), the latest FACET_YEARS of them, and
    the group of none (null, "Over more than one year") counting the incidents over more than one.

    Each year counts every incident that overlaps it, those over several years too: choosing a year
    selects the incidents that overlap it (the date filter's rule), so each year's count is what
    choosing it shows, and the years share incidents (no total). Listing every year an incident
    overlaps, one "Date unknown" from 0001 to 9999 put 9,999 links on every visitor's browse page
    (1.2 MB, 2.5 s)."""
    spans = list(spans)
    years = sorted({span["start"] for span in spans if span["start"] == span["end"]})[-FACET_YEARS:]
    counts = dict.fromkeys(years, 0)
    over_more_than_one = 0
    for span in spans:
        if span["start"] != span["end"]:
            over_more_than_one += span["incidents"]
        for year in years[bisect_left(years, span["start"]) : bisect_right(years, span["end"])]:
            counts[year] += span["incidents"]
    groups = [{"group": year, "label": None, "incidents": count} for year, count in counts.items()]
    if over_more_than_one:
        groups.append({"group": None, "label": None, "incidents": over_more_than_one})
    return groups


def _facets_otherwise(filterset: IncidentFilterSet, groupings, *, sample_size: int) -> dict[str, dict]:
    """`facet_statistics` for filters the facets' totals cannot answer: from the statistics' totals
    where they answer, over a sample of the matches (`_sampled_facets`) for the other groupings."""
    statistics, sampled = {}, []
    together = [group_by for group_by in groupings if group_by in _FACET_ROLLUP_COLUMNS]
    cells = _rollup_cells(filterset, together[0]) if together else None  # the same for each of them
    if cells is not None:
        _count_own_changes()
        rows = _each_once(cells, filterset.form.cleaned_data)
        groups = _groups_together_by_span(rows, together, _FACET_ROLLUP_COLUMNS, _ROLLUP_SUMS)
        for group_by in together:
            statistic = _statistic(group_by, groups[group_by], _facet_total(group_by, groups[group_by]), _incidents_of)
            statistics[group_by] = {**statistic, "complete": True}
    for group_by in groupings:
        if group_by in statistics:
            continue
        cells = _rollup_cells(filterset, group_by)
        if cells is None:
            sampled.append(group_by)
            continue
        kept = _kept_sums(filterset, cells, group_by, with_total=False)
        statistics[group_by] = {**_statistic(group_by, *kept, _incidents_of), "complete": True}
    if sampled:
        # The kept totals counted every match and found none: the sample's walk of the newest
        # incidents would read every candidate to find nothing (a perpetrator in a country where
        # it has no incident: 0.4-0.6 s at a million incidents).
        none_match = any(statistic["total"] == {"incidents": 0} for statistic in statistics.values())
        statistics.update(_sampled_facets(filterset, sampled, sample_size=sample_size, none_match=none_match))
    return statistics


# How each facet counts the incidents of a sample, from what the statistics' totals keep of each
# (`IncidentRollupEntry`: its type, verification, start month, countries, perpetrators, and its
# places with those containing them), as the statistics count them from the incidents.
_SAMPLE_GROUPS = {
    "type": "SELECT 'type', kind.slug, kind.name, count(*) FROM sample "
    "JOIN incidents_incidenttype AS kind ON kind.id = sample.incident_type_id GROUP BY kind.slug, kind.name",
    "verification": "SELECT 'verification', verification, NULL, count(*) FROM sample GROUP BY verification",
    # Its start year, and its end year in place of a label, for `_years_listed`.
    "year": "SELECT 'year', extract(year FROM start_month)::int::text, extract(year FROM end_month)::int::text, "
    "count(*) FROM sample GROUP BY 2, 3",
    "country": "SELECT 'country', nullif(country, ''), NULL, count(*) FROM sample, "
    """unnest(CASE WHEN countries = '{}' THEN '{""}' ELSE countries END) AS country GROUP BY 2""",
    # The places inside the place filter's place (%(place)s), or the outermost.
    PLACE: "SELECT 'place', place.id::text, place.name, count(*) FROM sample, unnest(places) AS inside(id) "
    "JOIN incidents_place AS place ON place.id = inside.id "
    "WHERE place.parent_id IS NOT DISTINCT FROM %(place)s GROUP BY place.id, place.name",
    "perpetrator": "SELECT 'perpetrator', perpetrator.id::text, organization.name, count(*) FROM sample, "
    "unnest(CASE WHEN perpetrators = '{}' THEN '{NULL}' ELSE perpetrators END) AS perpetrator(id) "
    "LEFT JOIN incidents_organization AS organization ON organization.id = perpetrator.id GROUP BY 2, 3",
}
# The groups that are numbers (the query gives every group as text).
_NUMBERED_GROUPS = {"year", PLACE, "perpetrator"}


def _sampled_facets(
    filterset: IncidentFilterSet, groupings, *, sample_size: int, none_match: bool = False
) -> dict[str, dict]:
    """`facet_statistics` of `groupings` (any of _SAMPLE_GROUPS) over the newest `sample_size`
    matches, `complete` if they are all of them. Two queries: the sample's ids (the page's own
    walk newest first, longer), then every grouping at once over what the statistics' totals keep
    of each sampled incident, one row each: counting them from the incidents took a query per
    grouping, each joining the sample to its places, their places or its involvements. None when
    the caller knows that nothing matches (`none_match`)."""
    sample, rows = [], []
    if not none_match:
        newest = filterset.qs.order_by("-date_start", "-id").values_list("pk", flat=True)
        sample = list(newest[: sample_size + 1])
        place = _place_filter(filterset)
        _count_own_changes()
        with connection.cursor() as cursor:
            cursor.execute(
                "WITH sample AS (SELECT * FROM incidents_incidentrollupentry "
                "WHERE incident_id = ANY(%(sample)s::bigint[])) "
                + " UNION ALL ".join(_SAMPLE_GROUPS[group_by] for group_by in groupings),
                {"sample": sample[:sample_size], "place": place.pk if place else None},
            )
            rows = cursor.fetchall()
    statistics = {}
    for group_by in groupings:
        if group_by == "year":
            spans = (
                {"start": int(start), "end": int(end), "incidents": count}
                for grouping, start, end, count in rows
                if grouping == group_by
            )
            statistics[group_by] = {
                **_statistic(group_by, _years_listed(spans), None, _incidents_of),
                "complete": len(sample) <= sample_size,
            }
            continue
        groups = sorted(
            (
                {
                    "group": int(group) if group and group_by in _NUMBERED_GROUPS else group,
                    "label": label,
                    "incidents": count,
                }
                for grouping, group, label, count in rows
                if grouping == group_by
            ),
            key=lambda row: (row["group"] is None, row["group"] or 0),
        )
        total = _facet_total(group_by, groups) if group_by in _ONE_GROUP_EACH else None
        statistics[group_by] = {
            **_statistic(group_by, groups, total, _incidents_of),
            "complete": len(sample) <= sample_size,
        }
    return statistics


def _groups_together(rows, groupings, columns: dict, sums: dict) -> dict[str, list[dict]]:
    """The groups of several groupings in each of which every incident is in one group (see
    _COLUMNS), from one query: `rows` (kept totals or incidents) grouped by all their `columns` at
    once (a few thousand rows) and summed per grouping here, as `sums` sums them per group."""
    selected = {
        f"{group_by}_{name}": expression for group_by in groupings for name, expression in columns[group_by].items()
    }
    rows = list(rows.values(**selected).annotate(**sums))
    together = {}
    for group_by in groupings:
        merged = {}
        for row in rows:
            group = row[f"{group_by}_group"]
            into = merged.setdefault(
                group, {"group": group, "label": row.get(f"{group_by}_label"), **dict.fromkeys(sums)}
            )
            for figure in sums:
                if row[figure] is not None:
                    into[figure] = (into[figure] or 0) + row[figure]
        # The database's order: by group, the unknown last.
        together[group_by] = sorted(merged.values(), key=lambda row: (row["group"] is None, row["group"] or 0))
    return together


def _groups_together_by_span(rows, groupings, columns: dict, sums: dict) -> dict[str, list[dict]]:
    """`_groups_together`, with the groupings that span groups (an `until` column: the years) in a
    query of their own, their incidents per span (`_years_listed`): grouped with the others, each
    span multiplied their rows (the years with the type and verification facets: 29 ms instead of
    11 ms at a million incidents)."""
    spanning = [group_by for group_by in groupings if "until" in columns[group_by]]
    single = [group_by for group_by in groupings if group_by not in spanning]
    groups = _groups_together(rows, single, columns, sums) if single else {}
    for group_by in spanning:
        span = {"start": columns[group_by]["group"], "end": columns[group_by]["until"]}
        groups[group_by] = _years_listed(rows.values(**span).annotate(incidents=sums["incidents"]))
    return groups


def _rollup_cells(filterset: IncidentFilterSet, group_by: str, *, without_search: bool = False):
    """The kept totals that answer the filter set exactly (`without_search`: its filters but the
    search), or None if only the incidents can.

    Dates: an incident overlaps [1st of month A, last of month B] exactly when it starts in month B
    or before and ends in month A or after, which its start and end months tell."""
    filters = _given_filters(filterset, without_search=without_search)
    date_from, date_to = filters.get("date_from"), filters.get("date_to")
    if (
        not filters.keys() <= _ROLLUP_CELL_FILTERS
        or (date_from and date_from.day != 1)
        # The last day of its month, by the calendar: the day after 31 December 9999 is no date.
        or (date_to and date_to.day != calendar.monthrange(date_to.year, date_to.month)[1])
        # Kept per perpetrator and per country within a country, not per place within one.
        or ("country" in filters and group_by == PLACE)
        or ("place" in filters and ("country" in filters or group_by in ("country", "perpetrator")))
        # A perpetrator's incidents once each (within a country or all of them), grouped by their
        # countries or their perpetrators (`_sharing`); not grouped by their places, nor at a place.
        or ("perpetrator" in filters and ("place" in filters or group_by == PLACE))
    ):
        return None
    return _kept_selected(IncidentRollup, filterset.user, filters)


def _kept_selected(model, user, filters: dict):
    """The rows of `model`, the kept totals or the entries they were counted from, over the
    incidents `user` may see, that the type, verification, review state and dates of `filters` select."""
    rows = _kept_filtered(model.objects.visible_to(user), filters)
    date_from, date_to = filters.get("date_from"), filters.get("date_to")
    if date_from:
        rows = rows.filter(end_month__gte=date_from)
    if date_to:
        rows = rows.filter(start_month__lte=date_to)
    return rows


def _given_filters(filterset: IncidentFilterSet, *, without_search: bool = False) -> dict:
    """The filters `filterset` was given, by name, leaving out a search that selects every incident
    (or any search: `without_search`)."""
    filters = {name: value for name, value in filterset.form.cleaned_data.items() if value not in (None, "", [])}
    # A search that only leaves out words found in nothing the reader may see (`q=-zzzz`) selects
    # every incident they may see.
    if "q" in filters and (without_search or filters["q"].selects_everything(user=filterset.user)):
        del filters["q"]
    return filters


def _kept_filtered(totals, filters: dict):
    """Kept totals (either kind) limited by the type, verification and review state `filters` give."""
    if "type" in filters:
        totals = totals.filter(incident_type__in=descendant_ids(IncidentType, filters["type"].pk))
    if "verification" in filters:
        totals = totals.filter(verification__in=filters["verification"])
    if "review_state" in filters:
        totals = totals.filter(review_state__in=filters["review_state"])
    return totals


def recount_statistics() -> int:
    """Count every incident into the kept totals anew, e.g. after data was loaded with triggers
    disabled. Returns how many incidents were counted.

    Writes to the incidents and what the totals depend on wait until it commits (SHARE locks), so
    no change is counted against totals being rebuilt; reads go on, from the totals as they were
    until it commits (emptied by DELETE, not TRUNCATE: `_count_every_incident_anew`)."""
    tables = [model._meta.db_table for model in (Incident, IncidentPlace, Involvement, Place)]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {', '.join(tables)} IN SHARE MODE")
        # The cells grouped in memory rather than on disk (this transaction only).
        cursor.execute("SET LOCAL work_mem = '256MB'")
        _count_every_incident_anew(cursor, readers_wait=False)
        return IncidentRollupEntry.objects.count()


def _count_every_incident_anew(cursor, *, readers_wait: bool) -> None:
    """Empty the kept totals and count every incident into them in one statement, by
    `incident_rollup_count_into_empty` (migration 0036): the count every edit runs
    (`incident_rollup_count`), less what empty totals make idle: the same totals for less than
    half its work (at 200,000 incidents 19-24 CPU-seconds instead of 50-56 in the demo generator,
    which drops the totals' unique keys meanwhile and builds them after).

    `readers_wait`: emptied by TRUNCATE, whose ACCESS EXCLUSIVE lock makes every reader of the
    totals wait until the transaction ends (a bulk load, `statistics_counted_once`); otherwise by
    DELETE, slower and leaving the old rows for VACUUM, which readers read through, seeing the
    totals as they were until the commit. A recount run while the site serves made every
    statistic and the public pages' facets wait for it: signed-in readers for its whole length
    (tens of seconds at a million incidents), anonymous ones until the bound on their statements
    (tracker/statement_timeout.py) answered 503 telling them to narrow what they asked."""
    totals = [model._meta.db_table for model in (IncidentRollup, IncidentFacetTotal, IncidentRollupEntry)]
    if readers_wait:
        cursor.execute(f"TRUNCATE {', '.join(totals)}")
    else:
        cursor.execute("; ".join(f"DELETE FROM {table}" for table in totals))
    cursor.execute(f"SELECT incident_rollup_count_into_empty(ARRAY(SELECT id FROM {Incident._meta.db_table}))")


# The statement triggers that note inserted incidents for counting at commit (migration 0011).
_INSERT_ROLLUP_TRIGGERS = {
    Incident._meta.db_table: "incidents_incident_rollup_insert",
    IncidentPlace._meta.db_table: "incidents_incidentplace_rollup_insert",
    Involvement._meta.db_table: "incidents_involvement_rollup_insert",
}


@contextmanager
def statistics_counted_once(*, every_incident_anew: bool = False):
    """For a bulk load inside one transaction: the incidents it inserts are counted into the kept
    totals once, when the block ends, instead of at each commit.

    Each commit of a bulk load otherwise counts its batch again through the deferred trigger, which
    at a million incidents was most of a 13-minute load. Here the insert triggers are switched off
    (ALTER TABLE … DISABLE TRIGGER takes a SHARE ROW EXCLUSIVE lock: other writers to these tables
    wait until the transaction ends; readers go on and see the old incidents with their old
    totals), and the new incidents are counted in one statement before the transaction commits, so
    no reader ever sees incidents and totals that disagree. Updates and deletes stay counted by
    their triggers meanwhile.

    With `every_incident_anew` (a load at least as large as what is there), every incident, old and
    new, is counted anew into emptied totals (`_count_every_incident_anew`, as `recount_statistics`
    does) rather than the new ones added to the totals one by one: the same totals, since the kept
    totals always equal a recount, for less than half the work. Emptying them takes an ACCESS
    EXCLUSIVE lock on the totals: readers of the statistics wait for the load to commit."""
    if not connection.in_atomic_block:
        raise RuntimeError("statistics_counted_once() needs the whole load in one transaction.")
    with connection.cursor() as cursor:
        # PostgreSQL alters no table with trigger events still queued, and Django's foreign keys
        # queue theirs until commit: they are checked as each statement ends instead, which also
        # keeps a long load linear (as in services.incidents_bulk_create); Django's default comes
        # back at the end.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE; SET CONSTRAINTS incident_rollup_count DEFERRED")
        for table, trigger in _INSERT_ROLLUP_TRIGGERS.items():
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        # No one else inserts incidents until this transaction ends (the lock above), so the ones
        # after the last id now are this load's.
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {Incident._meta.db_table}")
        last_id_before = cursor.fetchone()[0]
        yield
        for table, trigger in _INSERT_ROLLUP_TRIGGERS.items():
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")
        if every_incident_anew:
            _count_every_incident_anew(cursor, readers_wait=True)
        else:
            cursor.execute(
                f"SELECT incident_rollup_count(ARRAY(SELECT id FROM {Incident._meta.db_table} WHERE id > %s))",
                [last_id_before],
            )
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _count_own_changes() -> None:
    """Inside a transaction, first bring the totals up to date with its own changes, which they
    otherwise take in when it commits: a transaction reads its own writes (so does every test)."""
    if connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(
                "SET CONSTRAINTS incident_rollup_count IMMEDIATE; SET CONSTRAINTS incident_rollup_count DEFERRED"
            )


def _places_inside(place: Place | None):
    """The places a place statistic groups by: those directly inside `place`, or the outermost."""
    return Place.objects.filter(parent=place) if place else Place.objects.filter(parent__isnull=True)


def _rollup_sums(
    cells,
    group_by: str,
    filters: Mapping[str, Any],
    *,
    user,
    with_total: bool = True,
    counting_known: bool = False,
) -> tuple[list[dict], dict | None]:
    """The groups and the total from kept totals, for the filter set's `filters` (its cleaned
    data) and its reader `user`, each incident once (`_each_once`). Without `with_total`, a total
    that needs a query of its own is None; `counting_known` also counts the incidents that have each
    figure (`_KNOWN`)."""
    sums = {**_ROLLUP_SUMS, **_ROLLUP_KNOWN} if counting_known else _ROLLUP_SUMS
    country, place, perpetrator = filters.get("country"), filters.get("place"), filters.get("perpetrator")
    each_once = _each_once(cells, filters)
    if group_by == PLACE:
        # Any place inside the filter's place is inside its own group too: no filter to add.
        grouped = cells.filter(dimension=RollupDimension.PLACE, place__in=_places_inside(place).values("pk")).values(
            group=F("place_id"), label=F("place__name")
        )
    elif perpetrator and (group_by == "perpetrator" or (group_by == "country" and country)):
        # Every incident is in the group of the perpetrator (or the country) the filter names: its
        # totals; the other groups are those of the incidents it shares with them (`_sharing`).
        named = {
            "perpetrator": {"group": F("organization_id"), "label": F("organization__name")},
            "country": {"group": Value(country)},
        }
        # A group named by a constant (the country) is no GROUP BY to Django: its sum is one row
        # even over no totals, which listed the filter's country, with 0 incidents, for a
        # perpetrator with none there.
        own = [row for row in each_once.values(**named[group_by]).annotate(**sums) if row["incidents"]]
        groups = sorted([*own, *_sharing(user, filters, group_by, counting_known)], key=_group_order)
        return groups, each_once.aggregate(**sums) if with_total else None
    elif group_by == "country" and perpetrator:
        # Its totals within each country of its incidents, and within none (migration 0056), each
        # named: PostgreSQL then reads the perpetrator's totals within each from its index (23 ms
        # at a million incidents), where "within any" read every perpetrator's (169 ms).
        grouped = cells.filter(
            dimension=RollupDimension.PERPETRATOR, organization=perpetrator, within_country__in=_WITHIN_ANY_COUNTRY
        ).values(group=NullIf("within_country", Value(NO_COUNTRY)))
    elif group_by == "country":
        # With a country filter: the pairs of that country with each other country of its incidents.
        within = country or F("country")
        grouped = cells.filter(dimension=RollupDimension.COUNTRY, within_country=within).values(
            group=NullIf("country", Value(""))
        )
    elif group_by == "perpetrator":
        # Within the filter's country, or within none: over all incidents (migration 0031).
        grouped = cells.filter(dimension=RollupDimension.PERPETRATOR, within_country=country or "").values(
            group=F("organization_id"), label=F("organization__name")
        )
    else:
        grouped = each_once.values(**_COLUMNS[group_by])
    groups = list(grouped.annotate(**sums).order_by(F("group").asc(nulls_last=True)))
    if group_by in _ONE_GROUP_EACH:
        return groups, _sum_of(groups)
    return groups, each_once.aggregate(**sums) if with_total else None


# How `_sharing` groups the entries: the array it unnests, what it names a group by, and its label.
_SHARED = {
    "perpetrator": (
        "perpetrators",
        "other.value",
        "organization.name",
        f"LEFT JOIN {Organization._meta.db_table} AS organization ON organization.id = other.value",
    ),
    # Like `_country_sums`: a place without a country is the group of none.
    "country": ("countries", "NULLIF(other.value, '')", "NULL", ""),
}


def _sharing(user, filters: Mapping[str, Any], group_by: str, counting_known: bool) -> list[dict]:
    """The groups but the filter's own of a perpetrator's incidents by perpetrator (its fellow
    perpetrators) or, within the filter's country, by country (the other countries of its
    incidents there): counted from the entries the kept totals were counted from, of the incidents
    `filters` select with more than one perpetrator (or country), which an index holds apart
    (`rollup_entry_fellows`, `rollup_entry_abroad`): only those can be in another group. Counting
    every incident of the largest perpetrator of a million took longer than an anonymous request
    may. One query."""
    array, group, label, join = _SHARED[group_by]
    shared = filters["perpetrator"].pk if group_by == "perpetrator" else filters["country"]
    entries = _kept_selected(IncidentRollupEntry, user, filters).filter(
        perpetrators__contains=[filters["perpetrator"].pk], **{f"{array}__len__gt": 1}
    )
    if filters.get("country"):
        entries = entries.filter(countries__contains=[filters["country"]])
    # The entries' figures are the incidents' as the sums count them (`_BEST`, `_LOW`, `_HIGH`).
    entries_sql, params = entries.values(
        array, best=F("people_count"), low=F("people_count_min"), high=F("people_count_max")
    ).query.sql_with_params()
    sums, names = _sql_sums("best", counting_known)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {group}, {label}, {sums} FROM ({entries_sql}) AS entry, unnest(entry.{array}) AS other(value) "
            f"{join} WHERE other.value <> %s GROUP BY 1, 2",
            [*params, shared],
        )
        return [dict(zip(["group", "label", *names], row, strict=True)) for row in cursor.fetchall()]


def _group_order(row: dict):
    """Groups in their order, the group of none (null) last, as the queries order them."""
    return (row["group"] is None, row["group"] or 0)


# Every country a place may be in (its ISO code), and none: the values of `within_country` other
# than blank (over all incidents) in the perpetrator dimension.
_WITHIN_ANY_COUNTRY = [*sorted(countries.countries), NO_COUNTRY]


def _each_once(cells, filters: Mapping[str, Any]):
    """The totals that count each incident once, for the filter set's `filters`: overall, or those
    in the filter's country (on the diagonal of its country pairs), or those at or inside the
    filter's place, or those of the filter's perpetrator (an organization is an incident's
    perpetrator at most once), within the filter's country or over all incidents."""
    country, place, perpetrator = filters.get("country"), filters.get("place"), filters.get("perpetrator")
    if perpetrator:
        return cells.filter(
            dimension=RollupDimension.PERPETRATOR, within_country=country or "", organization=perpetrator
        )
    if country:
        return cells.filter(dimension=RollupDimension.COUNTRY, within_country=country, country=country)
    if place:
        return cells.filter(dimension=RollupDimension.PLACE, place=place)
    return cells.filter(dimension=RollupDimension.INCIDENT)


def _incident_sums(
    incidents, group_by: str, place: Place | None, with_total: bool = True, counting_known: bool = False
) -> tuple[list[dict], dict | None]:
    """The groups and the total from the incidents themselves (`place`: the place filter's, which
    the place grouping needs). Without `with_total`, a total that needs a query of its own is None;
    `counting_known` also counts the incidents that have each figure (`_KNOWN`)."""
    sums = {**_SUMS, **_KNOWN} if counting_known else _SUMS
    try:
        if group_by == "country":
            return _country_sums(incidents, counting_known)
        if group_by == PLACE:
            return _place_sums(incidents, place, counting_known)
    except EmptyResultSet:
        # A filter no incident can meet (min_people beyond any count a column holds): Django
        # writes no SQL for it, and there is nothing to count.
        return [], incidents.aggregate(**sums)
    groups = list(_grouped(incidents, group_by).annotate(**sums).order_by(F("group").asc(nulls_last=True)))
    if group_by in _ONE_GROUP_EACH:
        return groups, _sum_of(groups)
    # An incident with two perpetrators is in two groups: that total is counted on its own.
    return groups, incidents.aggregate(**sums) if with_total else None


def _grouped(incidents, group_by: str):
    """`incidents` as `.values()` of its group (and the group's label, where it has one)."""
    if group_by in _INCIDENT_COLUMNS:
        return incidents.values(**_INCIDENT_COLUMNS[group_by])
    # LEFT JOIN: incidents without a perpetrator form a group of their own (null).
    perpetrations = incidents.annotate(
        perpetration=FilteredRelation("involvements", condition=Q(involvements__role=InvolvementRole.PERPETRATOR))
    )
    return perpetrations.values(group=F("perpetration__organization_id"), label=F("perpetration__organization__name"))


def _country_sums(incidents, counting_known: bool) -> tuple[list[dict], dict]:
    """The groups and the total in one pass: the distinct (incident, country) pairs are taken
    once (a CTE used twice is computed once), summed per country, then per distinct incident."""
    # LEFT JOIN through the places: incidents without a place (or a place without a country)
    # form a group of their own (null).
    pairs = incidents.values("pk", group=NullIf("places__country", Value("")), best=_BEST, low=_LOW, high=_HIGH)
    pairs_sql, params = pairs.distinct().query.sql_with_params()
    sums, names = _sql_sums("best", counting_known)
    with connection.cursor() as cursor:
        cursor.execute(
            f'WITH pairs AS ({pairs_sql}) SELECT false AS is_total, "group", {sums} FROM pairs GROUP BY "group" '
            f"UNION ALL SELECT true, NULL, {sums} FROM (SELECT DISTINCT pk, best, low, high FROM pairs) each "
            "ORDER BY is_total, 2 NULLS LAST",
            params,
        )
        rows = [dict(zip(["is_total", "group", *names], row, strict=True)) for row in cursor.fetchall()]
    return rows[:-1], rows[-1]


def _place_sums(incidents, place: Place | None, counting_known: bool) -> tuple[list[dict], dict]:
    """The groups (see PLACE) and the total in one query: each place inside `place` with every
    place under it (a recursive query, which the ORM cannot write), the distinct (incident, group)
    pairs of the incidents at those places, summed per group; the total counts every incident."""
    groups_sql, group_params = _places_inside(place).values(group_id=F("pk"), label=F("name")).query.sql_with_params()
    rows_sql, row_params = incidents.values(
        incident_id=F("pk"), best=_BEST, low=_LOW, high=_HIGH
    ).query.sql_with_params()
    link, place_table = (connection.ops.quote_name(model._meta.db_table) for model in (IncidentPlace, Place))
    sums, names = _sql_sums("best", counting_known)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE under(group_id, label, place_id) AS (SELECT group_id, label, group_id "
            f"FROM ({groups_sql}) AS outermost UNION SELECT under.group_id, under.label, inside.id "
            f"FROM {place_table} AS inside JOIN under ON inside.parent_id = under.place_id), "
            f"matching AS ({rows_sql}), "
            "pairs AS (SELECT DISTINCT under.group_id, under.label, matching.* FROM matching "
            f"JOIN {link} AS link ON link.incident_id = matching.incident_id "
            "JOIN under ON under.place_id = link.place_id) "
            f"SELECT false, group_id, label, {sums} FROM pairs GROUP BY group_id, label "
            f"UNION ALL SELECT true, NULL, NULL, {sums} FROM matching ORDER BY 1",
            [*group_params, *row_params],
        )
        rows = [dict(zip(["is_total", "group", "label", *names], row, strict=True)) for row in cursor.fetchall()]
    return rows[:-1], rows[-1]


def _sql_sums(best: str, counting_known: bool) -> tuple[str, list[str]]:
    """`_SUMS` (and with `counting_known`, `_KNOWN`) in SQL over rows with the columns `best`, `low`
    and `high`, and their names. The bounds fall back to the best estimate: a row has no figure
    when all three are null."""
    no_figure = f"{best} IS NULL AND low IS NULL AND high IS NULL"
    sums = f"COUNT(*), COUNT(*) FILTER (WHERE {no_figure}), SUM({best}), SUM(low), SUM(high)"
    if not counting_known:
        return sums, [*_SUMS]
    return f"{sums}, COUNT({best}), COUNT(low), COUNT(high)", [*_SUMS, *_KNOWN]


def _sum_of(groups: list[dict]) -> dict:
    """The total of groups that share no incident; a figure no group has stays null."""
    total = {name: sum(row[name] for row in groups) for name in ("incidents", "without_figure")}
    for name in ("people", "low", "high"):
        values = [row[name] for row in groups if row.get(name) is not None]
        total[name] = sum(values) if values else None
    return total


def _figures(row: dict) -> dict:
    return {
        "incidents": row["incidents"],
        "incidents_without_figure": row["without_figure"],
        "people_count": row["people"],
        "people_count_min": row["low"],
        "people_count_max": row["high"],
    }


def _group_name(group_by: str, group) -> str | None:
    """A group as the statistics name it; a year (of a month too) with four digits, as ISO dates
    write it: "999" sorted after "2021" as text (an empty timeline chart) and made the year facet's
    link `date_from=999-01-01`, which every date filter refuses. The forms accept a year before 1000."""
    if group is None:
        return None
    if group_by == "month":
        return f"{group.year:04d}-{group.month:02d}"
    if group_by == "year":
        return f"{int(group):04d}"
    return str(group)


# What the group of none holds: a date range over more than one year or month (`_within_one`); for
# the other groupings, a country or perpetrator not recorded. Marked for the catalog: the API says
# them in English, the public pages in the reader's language.
NO_GROUP_LABELS = {"year": gettext_noop("Over more than one year"), "month": gettext_noop("Over more than one month")}


def no_group_label(group_by: str) -> str:
    return NO_GROUP_LABELS.get(group_by, gettext_noop("Not recorded"))


def _label(group_by: str, row: dict) -> str:
    group = row["group"]
    if group is None:
        return no_group_label(group_by)
    if group_by == "country":
        return countries.name(group) or group
    if group_by == "verification":
        return str(Verification(group).label)
    if group_by == "type":
        return type_name(row.get("label") or _group_name(group_by, group))
    return row.get("label") or _group_name(group_by, group)
