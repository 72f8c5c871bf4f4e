"""The reads behind the public pages: browse, one incident, statistics, downloads.

Each takes the reading `user` and plain filter values (the query string as a mapping of lists),
never a request, and starts from `visible_to(user)`: the pages add no visibility rule of their own.
Filters go through the one `IncidentFilterSet`, counts through `incidents.statistics`.
"""

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from django.contrib.postgres.expressions import ArraySubquery
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.functions import JSONObject
from django.utils.datastructures import MultiValueDict
from django.utils.translation import gettext

from incidents.access import ConfidentialRecords
from incidents.api.projections import representations, with_representations
from incidents.api.renderers import feature_geometry, incident_feature
from incidents.filters import IncidentFilterSet
from incidents.models import (
    Claim,
    Incident,
    IncidentPlace,
    IncidentType,
    Involvement,
    Place,
    Response,
    Source,
    VictimGroup,
    in_tree_order,
)
from incidents.querysets import coordinates_for
from incidents.selectors import incident_filterset
from incidents.statistics import PLACE, facet_statistics, incident_statistics
from incidents.templatetags.public_pages import dates
from incidents.vocabulary import type_name

BROWSE_PAGE_SIZE = 25
# The facets beside the browse list, each a grouping of `incident_statistics`, read from the
# totals kept for them whenever the filters allow (a few thousand rows, not a million incidents),
# and otherwise counted over a sample of the matches (`facet_statistics`).
FACETS = ("type", "country", PLACE, "perpetrator", "verification", "year")
# The filters each facet's links set (`incidents.public.views`), replacing the value chosen: each
# facet is counted without them, as multi-select facets are (Elasticsearch's post_filter, Algolia's
# disjunctive faceting), so that the count beside a value is what choosing it lists. Counted
# within the chosen country, "CN" promised 294 incidents in both countries where its link listed
# 926. The chosen type's sub-types count the same either way, and the type above it counts its own
# incidents (what its link lists), not the chosen type's. The place facet also sets `place` but
# counts the places inside the chosen one, whose incidents all lie in it: leaving the filter out
# would change no count and lose the places it groups by.
FACET_FILTERS = {
    "type": ("type",),
    "country": ("country",),
    PLACE: (),
    "perpetrator": ("perpetrator",),
    "verification": ("verification",),
    "year": ("date_from", "date_to"),
}
# The facet whose total, over every filter, is the number of matches: each incident has one
# verification (a year facet's incident counts in every year it overlaps, a country's in each of
# its countries).
MATCHES_COUNTED_BY = "verification"
# Up to how many matching incidents the facets count when the kept totals cannot answer the
# filters (a search, a source, a date mid-month…): counting every match of a word found in most of a
# million incidents took seconds per facet. Beyond it the facets count the newest FACET_SAMPLE
# matches and say so ("at least"); the list itself still holds every match. Finding them walks the
# incidents newest first, as the page does, for longer: at a million incidents, for a word in one
# incident of ten, 100-150 ms for 500 of them, 365 ms for 2,000 (bench/README.md).
FACET_SAMPLE = 200
# The query string parameters that are filters, in the order the filter form shows them.
FILTER_NAMES = tuple(IncidentFilterSet.base_filters)
# A cursor is the last row's position in the newest-first order: its start date and id.
_CURSOR = re.compile(r"^(\d{4}-\d{2}-\d{2})_(\d{1,18})$")  # an id fits a bigint


@dataclass
class FacetCounts:
    # Each facet's statistic (see FACETS), by name, in the order the page shows them.
    facets: dict[str, dict]
    # How many incidents every filter selects: at least that many unless `complete` (a sample).
    matching: int
    complete: bool


@dataclass
class BrowsePage:
    incidents: list[Incident]
    next_cursor: str | None
    total: int
    # False when `total` and the facets' counts are over a sample of the matches: at least these.
    complete: bool = True
    facets: dict[str, dict] = field(default_factory=dict)


def filtered_incidents(*, user, filters: MultiValueDict) -> tuple[IncidentFilterSet, QuerySet]:
    """The incidents `user` may see that `filters` (query string values) select, and the bound
    filter set. Raises ValidationError naming each bad parameter.

    Runs a query only for filters that name a record (type, place, source, organization)."""
    filter_values = MultiValueDict({name: filters.getlist(name) for name in FILTER_NAMES if filters.get(name)})
    # Never a merged incident, whatever `updated_since` says: the pages show each event once.
    filterset = incident_filterset(user=user, filters=filter_values, following_merges=False)
    return filterset, filterset.qs


def _after_cursor(incidents: QuerySet, cursor: str) -> QuerySet:
    match = _CURSOR.match(cursor)
    try:
        start, pk = date.fromisoformat(match[1]), int(match[2])
    except (TypeError, ValueError):
        raise ValidationError({"cursor": [gettext("Use the “Next page” link as it is.")]}) from None
    return _after(incidents, start, pk)


def _after(incidents: QuerySet, start: date, pk: int) -> QuerySet:
    """The incidents after (`start`, `pk`) newest first; the first condition alone bounds the walk
    of the index, which the second's OR would not."""
    return incidents.filter(Q(date_start__lte=start), Q(date_start__lt=start) | Q(date_start=start, pk__lt=pk))


def browse_incidents(*, user, filters: MultiValueDict, cursor: str = "", page_size: int = BROWSE_PAGE_SIZE):
    """One page of the incidents `user` may see that `filters` select, newest first, after
    `cursor`, with the facets' counts over all of them. Raises ValidationError naming a bad
    parameter.

    A fixed number of queries whatever the page size: the facets' (see `_facet_counts`), then one
    for the page (type joined, claim range and figures subqueried, corroboration from the kept rows) and one
    prefetch of places, unless the facets counted every match and found none."""
    filterset, incidents = filtered_incidents(user=user, filters=filters)
    page_rows = incidents.order_by("-date_start", "-id")
    if cursor:
        page_rows = _after_cursor(page_rows, cursor)
    page_rows = (
        page_rows.with_claim_figures(user)
        .with_kept_corroboration(user)
        .select_related("incident_type")
        .prefetch_related(Prefetch("places", queryset=Place.objects.order_by("name", "id")))
    )
    counts = _facet_counts(filterset)
    # Counted to the last and none match: the page's walk of the newest incidents would read every
    # candidate to find nothing (a perpetrator in a country where it has no incident: 0.4-0.6 s at
    # a million incidents, near an anonymous request's bound).
    rows = [] if counts.complete and not counts.matching else list(page_rows[: page_size + 1])
    next_cursor = None
    if len(rows) > page_size:
        rows = rows[:page_size]
        next_cursor = f"{rows[-1].date_start.isoformat()}_{rows[-1].pk}"
    return BrowsePage(
        incidents=rows,
        next_cursor=next_cursor,
        total=counts.matching,
        complete=counts.complete,
        facets=counts.facets,
    )


def _facet_counts(filterset: IncidentFilterSet) -> FacetCounts:
    """Each facet's statistic, counted without the filters its links set (FACET_FILTERS), and the
    number of matches; types as a tree, since the type filter takes in sub-types (one query);
    places with the path to the chosen one (one query when a place is chosen).

    The facets that leave out the same chosen filters are counted together (`facet_statistics`:
    one or two queries each, and one for a sample), those that leave out none with the matches:
    one batch, and one more for each facet with a value of its own chosen."""
    chosen = filterset.form.cleaned_data.keys()
    left_out = {facet: frozenset(FACET_FILTERS[facet]).intersection(chosen) for facet in FACETS}
    batches = defaultdict(list, {frozenset(): [MATCHES_COUNTED_BY]})
    for facet in FACETS:
        if facet not in batches[left_out[facet]]:
            batches[left_out[facet]].append(facet)
    counted = {
        filters: facet_statistics(filterset.without(filters), facets, sample_size=FACET_SAMPLE)
        for filters, facets in batches.items()
    }
    facets = {facet: counted[left_out[facet]][facet] for facet in FACETS}
    facets["type"] = {**facets["type"], "results": _types_with_subtypes(facets["type"]["results"])}
    facets[PLACE] = {**facets[PLACE], "path": _place_path(filterset.form.cleaned_data.get("place"))}
    matches = counted[frozenset()][MATCHES_COUNTED_BY]
    return FacetCounts(facets=facets, matching=matches["total"]["incidents"], complete=matches["complete"])


def _place_path(place: Place | None) -> list[Place]:
    """`place` and the places that contain it, outermost first; one recursive query (which the ORM
    cannot write), none without a place. UNION stops at a cycle."""
    if place is None:
        return []
    table = connection.ops.quote_name(Place._meta.db_table)
    around = RawSQL(
        f"WITH RECURSIVE around(id, parent_id) AS (SELECT id, parent_id FROM {table} WHERE id = %s"
        f" UNION SELECT outer_place.id, outer_place.parent_id FROM {table} outer_place"
        " JOIN around ON outer_place.id = around.parent_id) SELECT id FROM around",
        [place.pk],
    )
    places = {found.pk: found for found in Place.objects.filter(pk__in=around).only("name", "parent")}
    path, current = [], places.get(place.pk)
    while current is not None and current not in path:
        path.append(current)
        current = places.get(current.parent_id)
    return path[::-1]


def _types_with_subtypes(rows: list[dict]) -> list[dict]:
    """The type facet's rows in tree order, each with its `depth` and a count that includes its
    sub-types' (what choosing it selects). An incident has one type, so no sum counts one twice.
    Types without incidents are left out. One query (the types, a short vocabulary)."""
    own = {row["group"]: row["incidents"] for row in rows}
    types = in_tree_order(
        IncidentType.objects.order_by("name").values("slug", "name", "parent__slug"),
        key=lambda incident_type: incident_type["slug"],
        parent_key=lambda incident_type: incident_type["parent__slug"],
    )
    # Read from the bottom up, each type's sub-types are counted before it.
    counted = defaultdict(int)
    for incident_type, _ in reversed(types):
        counted[incident_type["slug"]] += own.get(incident_type["slug"], 0)
        counted[incident_type["parent__slug"]] += counted[incident_type["slug"]]
    return [
        {
            "group": incident_type["slug"],
            "label": type_name(incident_type["name"]),
            "depth": depth,
            "incidents": counted[incident_type["slug"]],
        }
        for incident_type, depth in types
        if counted[incident_type["slug"]]
    ]


def facets_for(*, user, filters: MultiValueDict) -> FacetCounts:
    """The facets' counts (see FACETS) and the number of matches of what `filters` select among
    what `user` may see, for a page that shows them without the list (the map). Raises
    ValidationError naming a bad parameter."""
    filterset, _ = filtered_incidents(user=user, filters=filters)
    return _facet_counts(filterset)


def statistics_for(*, user, filters: MultiValueDict, group_by: str) -> dict:
    """`incident_statistics` of what `filters` select among what `user` may see (one or two
    queries). Raises ValidationError naming a bad parameter."""
    filterset, _ = filtered_incidents(user=user, filters=filters)
    return incident_statistics(filterset, group_by)


@dataclass
class IncidentPage:
    incident: Incident
    # Each claim the reader may see, with the chain of sources its source cites (as far as they may see).
    claims: list[tuple[Claim, list[Source]]]
    responses: list[Response]

    @property
    def confidential_sources_beside_claims(self) -> ConfidentialRecords:
        """The confidential sources the page names beside its claims' own (`confidential_records_of`
        records those): a claim's source's citations ("…, citing Testimony of K") and a response's
        source. Only those the reader may see are shown, so only a reader with Confidential access
        is shown any."""
        cited = {source.pk for _, chain in self.claims for source in chain if source.confidential}
        given = {response.source_id for response in self.responses if response.shown_source_confidential}
        return ConfidentialRecords(source_ids=frozenset(cited | given))

    @property
    def has_coordinates(self) -> bool:
        """Whether any of its places has coordinates the reader may see (then the page has a map)."""
        return any(place.shown_latitude is not None for place in self.incident.places.all())


def _sources_cited_from(source_ids: set[int]) -> QuerySet:
    """Every source that the given sources cite, directly or through others.

    A recursive query, which the ORM cannot write; UNION (not UNION ALL) stops at a cycle. Each
    step reads the sources cited by their key, in a subquery that LIMIT keeps PostgreSQL from
    merging into a join: as a join, for an incident of several claims, it was planned as a hash
    join scanning every source at every step, 1 ms a step at 5,000 sources (a chain of 3,000
    relays outlasted an anonymous statement's bound) and about 20 at a million incidents' 100,000."""
    table = connection.ops.quote_name(Source._meta.db_table)
    chain = RawSQL(
        f"WITH RECURSIVE chain(id, cites_id) AS (SELECT id, cites_id FROM {table} WHERE id = ANY(%s)"
        " UNION SELECT cited.id, cited.cites_id FROM chain CROSS JOIN LATERAL"
        f" (SELECT id, cites_id FROM {table} WHERE id = chain.cites_id LIMIT 1) AS cited)"
        " SELECT id FROM chain",
        [sorted(source_ids)],
    )
    return Source.objects.filter(pk__in=chain)


def incident_page(*, user, public_id: str) -> IncidentPage:
    """The incident `public_id` as `user` may see it, or Incident.DoesNotExist whether it is missing
    or hidden. Seven queries: the incident (type joined, claim range and figures subqueried, corroboration from
    its kept row), one prefetch each for places (at the coordinates `user` may see), visible claims
    (with their sources), involvements, victim groups and responses, and the sources the claims'
    sources cite."""
    # A response's source only if the reader may see it: a response never reveals a hidden one.
    shown_source = Source.objects.visible_to(user).filter(pk=OuterRef("source_id"))
    incident = (
        Incident.objects.visible_to(user)
        .with_claim_figures(user)
        .with_kept_corroboration(user)
        .select_related("incident_type")
        .prefetch_related(
            Prefetch("places", queryset=Place.objects.with_coordinates_for(user).order_by("name", "id")),
            Prefetch(
                "claims",
                queryset=Claim.objects.visible_to(user)
                .select_related("source__publisher")
                .order_by("source__published_on", "id"),
            ),
            Prefetch(
                "involvements", queryset=Involvement.objects.select_related("organization").order_by("role", "id")
            ),
            Prefetch("victim_groups", queryset=VictimGroup.objects.order_by("id")),
            Prefetch(
                "responses",
                queryset=Response.objects.select_related("organization")
                .annotate(
                    shown_source_title=Subquery(shown_source.values("title")[:1]),
                    shown_source_confidential=Subquery(shown_source.values("confidential")[:1]),
                )
                .order_by("date", "id"),
            ),
        )
        .get(public_id=public_id)
    )
    claims = list(incident.claims.all())
    cited = {
        source.pk: source
        for source in _sources_cited_from({claim.source_id for claim in claims})
        .visible_to(user)
        .select_related("publisher")
    }
    return IncidentPage(
        incident=incident,
        claims=[(claim, _chain(claim.source, cited)) for claim in claims],
        responses=list(incident.responses.all()),
    )


def _chain(source: Source, visible: dict[int, Source]) -> list[Source]:
    """What `source` cites, and what that cites, as far as the reader may see. The chain ends, without
    a word, before a source they may not see, as the API's `cites` is null and the count of
    independent origins takes the last visible source for an origin: "citing a source that is not
    public" told every reader that an informant stood behind the report."""
    links, seen, cites_id = [], {source.pk}, source.cites_id
    while cites_id is not None and cites_id not in seen and cites_id in visible:
        seen.add(cites_id)
        cited = visible[cites_id]
        links.append(cited)
        cites_id = cited.cites_id
    return links


# The most incidents a GeoJSON download or the map carries: each is a whole feature in one JSON
# document the browser parses at once. The CSV download streams every matching row instead.
FEATURE_LIMIT = 5000
# How many whole incidents the GeoJSON download reads a statement: 5,001 in one took 1.2-1.5 s of
# PostgreSQL at a million incidents; 1,000 take about a fifth of it. Chosen when the anonymous bound
# was per statement; its statements now share one budget (TRACKER_ANON_STATEMENT_TIMEOUT, 3 s, set
# so that they fit: bench/README.md, "A budget per request").
FEATURES_A_STATEMENT = 1000


def incident_features(*, user, filters: MultiValueDict, page_url_prefix: str) -> tuple[dict, list[dict]]:
    """The newest FEATURE_LIMIT incidents `user` may see that `filters` select, as a GeoJSON
    FeatureCollection built by the API's own code (its representation and `incident_feature`),
    sensitive places at the coordinates `user` may see, each with its page's `url`, beside the
    rows it was built from (for `incidents.access.record_list_access`). One query per
    FEATURES_A_STATEMENT incidents (beside the filters' own). `truncated` tells whether more
    incidents matched."""
    _, incidents = filtered_incidents(user=user, filters=filters)
    rows, following = [], incidents
    while len(rows) <= FEATURE_LIMIT:
        wanted = min(FEATURES_A_STATEMENT, FEATURE_LIMIT + 1 - len(rows))
        read = list(with_representations(following.order_by("-date_start", "-id"), user, "date_start", "id")[:wanted])
        rows += read
        if len(read) < wanted:
            break
        following = _after(incidents, read[-1]["date_start"], read[-1]["id"])
    features = [incident_feature(incident) for incident in representations(rows[:FEATURE_LIMIT], decoded=True)]
    return _feature_collection(features, len(rows), page_url_prefix), rows[:FEATURE_LIMIT]


def map_features(*, user, filters: MultiValueDict, page_url_prefix: str) -> tuple[dict, list[Incident]]:
    """What the map draws of the same incidents as `incident_features`: each a GeoJSON Feature of
    its places (at the coordinates `user` may see), title, `dates` and page `url`, and nothing
    else (the whole incident, which the download carries, was 2.4 MB and 2-4 s at a million
    incidents), beside the incidents (their public id, title, dates and confidentiality).
    `dates` is the date as the incident's page says it, in the active language: the download's
    `date_label` is the API's, in English, which a Korean reader's popup showed.
    One query (beside the filters' own)."""
    _, incidents = filtered_incidents(user=user, filters=filters)
    latitude, longitude = coordinates_for(user, "place")
    positions = IncidentPlace.objects.filter(incident=OuterRef("pk")).order_by("place__name", "place_id")
    rows = list(
        incidents.order_by("-date_start", "-id")
        .only("public_id", "title", "date_start", "date_end", "date_precision", "confidential")
        .annotate(
            places_shown=ArraySubquery(positions.values(json=JSONObject(latitude=latitude, longitude=longitude)))
        )[: FEATURE_LIMIT + 1]
    )
    features = [
        {
            "type": "Feature",
            "id": incident.public_id,
            "geometry": feature_geometry(incident.places_shown),
            "properties": {"title": incident.title, "dates": dates(incident)},
        }
        for incident in rows[:FEATURE_LIMIT]
    ]
    return _feature_collection(features, len(rows), page_url_prefix), rows[:FEATURE_LIMIT]


def _feature_collection(features: list[dict], matched: int, page_url_prefix: str) -> dict:
    """`features` (of at most FEATURE_LIMIT of the `matched` incidents) as a FeatureCollection,
    each with its page's `url`."""
    for feature in features:
        feature["properties"]["url"] = f"{page_url_prefix}{feature['id']}/"
    return {"type": "FeatureCollection", "features": features, "truncated": matched > FEATURE_LIMIT}
