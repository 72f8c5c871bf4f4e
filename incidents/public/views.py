"""The public pages: thin views over `incidents.public.selectors`, rendered from templates/public/.

Every page works without JavaScript; every filter state is the query string, so any page is a
permalink. A bad filter answers 400 with a page naming it as the page labels it, never a 500.
"""

import math
from datetime import UTC, datetime
from functools import wraps

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.csp import CSP, build_policy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import conditional_page, require_safe

from incidents.access import (
    confidential_among,
    confidential_records_of,
    confidential_records_of_incidents,
    record_confidential_access,
    record_list_access,
)
from incidents.api.throttling import PublicPageThrottle
from incidents.csv_views import BOM_PARAMETER, bom_requested, incidents_csv_response
from incidents.filters import IncidentFilterSet
from incidents.merges import MERGED_REDIRECT_HEADERS, redirect_target
from incidents.models import AccessDoor, Incident
from incidents.parameters import filter_parameters, parameter_errors
from incidents.public import selectors
from incidents.querysets import updated_at_seen_by, version_seen_by
from incidents.statistics import GROUPINGS, no_group_label

# Which query string parameter a facet's value sets, and how a statistic's group becomes its value;
# each facet is counted without the filters its values set (`selectors.FACET_FILTERS`). A year's
# group has four digits (`statistics._group_name`): "999-01-01" is a date no filter takes.
_FACET_PARAMETERS = {
    "type": lambda group: {"type": group},
    "country": lambda group: {"country": group},
    "place": lambda group: {"place": group},
    "perpetrator": lambda group: {"perpetrator": group},
    "verification": lambda group: {"verification": group},
    "year": lambda group: {"date_from": f"{group}-01-01", "date_to": f"{group}-12-31"},
}
# What the facets and the statistics' groupings are called on the page.
_GROUPING_LABELS = {
    "year": gettext_lazy("Year"),
    "month": gettext_lazy("Month"),
    "country": gettext_lazy("Country"),
    "place": gettext_lazy("Place"),
    "type": gettext_lazy("Type"),
    "perpetrator": gettext_lazy("Perpetrator"),
    "verification": gettext_lazy("Verification"),
}


def _facets(statistics: dict[str, dict], query) -> list[dict]:
    """Each facet's values with their counts and the links that select or clear them; the place
    facet also with the path to the chosen place, each step a link that chooses it."""
    facets = []
    for name, statistic in statistics.items():
        parameters = _FACET_PARAMETERS[name]
        values = []
        for row in statistic["results"]:
            if row["group"] is None:
                if name == "year":
                    # The incidents over more than one year, which no year of the facet chooses alone:
                    # said with their count, without a link.
                    values.append({"label": _(no_group_label(name)), "incidents": row["incidents"], "select": None})
                continue
            chosen = parameters(row["group"])
            values.append(
                {
                    "label": row["label"],
                    "depth": row.get("depth", 0),
                    "incidents": row["incidents"],
                    "select": {**chosen, "cursor": None},
                    "selected": all(query.get(key) == value for key, value in chosen.items()),
                }
            )
        clear = dict.fromkeys(parameters("0"), None) | {"cursor": None}
        facets.append(
            {
                "name": name,
                "title": _GROUPING_LABELS[name],
                "values": values,
                "clear": clear,
                "active": any(query.get(key) for key in clear if key != "cursor"),
                "complete": statistic["complete"],
                "path": [
                    {"label": place.name, "select": {**parameters(str(place.pk)), "cursor": None}}
                    for place in statistic.get("path", [])
                ],
            }
        )
    return facets


def _facets_context(statistics: dict[str, dict], query) -> dict:
    """What templates/public/_facets.html shows, and the choices among them the page's title names
    (`_chosen`)."""
    facets = _facets(statistics, query)
    return {
        "facets": facets,
        "facets_complete": all(facet["complete"] for facet in facets),
        "facet_sample": selectors.FACET_SAMPLE,
        "chosen": _chosen(facets, query),
    }


_DATES = gettext_lazy("Dates (incidents that overlap them)")
_PEOPLE = gettext_lazy("People (best estimate)")
# What a visitor sees each parameter called, under its fieldset's legend where it has one: the
# filter form's labels, the facets' titles, the words beside what the parameter filters on
# (corroboration, the organizations involved, the last update) and the link that sets it (the next
# page's cursor, the statistics' grouping). The same words the page shows, so translated with it; a
# parameter the pages never set (`source`, `review_state`) is named as the address writes it. The
# API and the admin name the parameter itself: their readers write it.
_PARAMETER_LABELS = {
    "q": (None, gettext_lazy("Search titles, descriptions, sources’ words and places")),
    "date_from": (_DATES, gettext_lazy("From")),
    "date_to": (_DATES, gettext_lazy("To")),
    "min_people": (_PEOPLE, gettext_lazy("At least")),
    "max_people": (_PEOPLE, gettext_lazy("At most")),
    **{name: (None, _GROUPING_LABELS[name]) for name in ("type", "country", "place", "perpetrator", "verification")},
    "min_origins": (None, gettext_lazy("Corroboration")),
    "organization": (None, gettext_lazy("Organizations involved")),
    "updated_since": (None, gettext_lazy("Last updated")),
    "cursor": (None, gettext_lazy("Next page")),
    "group_by": (None, gettext_lazy("Group by")),
    "bom": (None, gettext_lazy("CSV for Excel")),
}


def parameters_named(names) -> str:
    """The query parameters `names` as the public pages name them (`_PARAMETER_LABELS`), for a
    refusal of the request they make together (tracker.statement_timeout)."""
    named = []
    for name in names:
        legend, label = _PARAMETER_LABELS.get(name, (None, None))
        named.append(f"{legend} › {label}" if legend else str(label or name))
    return ", ".join(named)


# A range the wrong way round, refused on both its ends (either may be the one mistyped) in the
# parameters' names, which the API's readers write (`IncidentFilterForm`): said once here, in the
# words beside the fields. The people's were said twice, naming `min_people` on a Korean page.
_REVERSED = {
    "dates_reversed": (
        ("date_from", "date_to"),
        _DATES,
        gettext_lazy("%(start)s (%(date_from)s) is after %(end)s (%(date_to)s): no date range overlaps that."),
    ),
    "people_reversed": (
        ("min_people", "max_people"),
        _PEOPLE,
        gettext_lazy("%(start)s (%(min_people)s) is above %(end)s (%(max_people)s): no count is both."),
    ),
}


def _bad_filters(request, error: ValidationError):
    errors, reversed_ranges = [], {}
    for name, field_errors in error.error_dict.items():
        messages = []
        for field_error in field_errors:
            if field_error.code in _REVERSED:
                reversed_ranges[field_error.code] = field_error.params
            else:
                messages.extend(field_error)
        if messages:
            legend, label = _PARAMETER_LABELS.get(name, (None, None))
            errors.append({"parameter": name, "legend": legend, "label": label, "messages": messages})
    for code, values in reversed_ranges.items():
        (low, high), legend, message = _REVERSED[code]
        words = {"start": _PARAMETER_LABELS[low][1], "end": _PARAMETER_LABELS[high][1], **values}
        errors.append({"parameter": low, "legend": None, "label": legend, "messages": [message % words]})
    return render(request, "public/bad_filters.html", {"errors": errors}, status=400)


def rate_limited(view):
    """At most TRACKER_PUBLIC_ANON_RATE requests per anonymous client address (`PublicPageThrottle`,
    an IPv6 client by its /64), beyond which a page in the reader's language says when to come
    back, with `Retry-After`: each request may take TRACKER_ANON_STATEMENT_TIMEOUT of the database,
    and ten clients asking for the heaviest page in a loop made every other reader's wait ten times
    longer. Runs a query or two (the shared cache). Per address fits the embeds too: the visitors
    of a site that frames one each load it from their own."""

    @wraps(view)
    def limited(request, *args, **kwargs):
        throttle = PublicPageThrottle()
        if throttle.allow_request(request, view=None):
            return view(request, *args, **kwargs)
        # No wait when the client's history holds more than the rate (since lowered) allows: a period.
        seconds = math.ceil(throttle.wait() or throttle.duration)
        context = {"count": throttle.num_requests, "period": throttle.duration, "seconds": seconds}
        response = render(request, "public/too_many_requests.html", context, status=429)
        response["Retry-After"] = str(seconds)
        return response

    return limited


def reads(*own: str, filters: bool = True, others_refused: bool = True):
    """The query parameters a public view reads: the incident filters (unless `filters` is false)
    and `own`. A data download (CSV, GeoJSON) refuses any other with the 400 page naming it, as the
    API does: `?contry=CN` downloaded every incident. A page (`others_refused=False`) passes over
    them, as the links people share to it carry `utm_source`, `fbclid` and the like. At both, one
    it reads given twice is refused by name, but for a filter's multiple choice (`verification`):
    `country=CN&country=KP` read KP alone."""
    filter_names, repeatable = filter_parameters(IncidentFilterSet) if filters else (set(), set())
    names = {*filter_names, *own}

    def decorate(view):
        @wraps(view)
        def checked(request, *args, **kwargs):
            errors = parameter_errors(request.GET, reads=names, repeatable=repeatable, others_refused=others_refused)
            if errors:
                return _bad_filters(request, ValidationError(errors))
            return view(request, *args, **kwargs)

        return checked

    return decorate


def light(view):
    """Send the page (or the map's data) gzipped to an anonymous reader's browser that accepts it,
    with an ETag, so that a reader coming back to it unchanged is answered 304 and downloads
    nothing: read on slow mobile connections, the map's data of 5,000 incidents was a megabyte on
    every visit, and the proxy the README documents compresses none of it by default (nginx: `gzip
    off`, and `gzip_types` holds text/html alone). The ETag is the uncompressed body's (hence
    `conditional_page` inside). Not the CSV downloads: files of hundreds of megabytes, which the
    proxy buffers.

    A signed-in reader's page is not compressed: it may hold confidential records beside words its
    address reflects (`q`, in the title and the search box), and a compressed answer's length tells
    whoever watches the traffic, and can make the reader's browser ask, whether guessed words match
    them (BREACH; Django's random padding blurs that length, it does not remove it). An anonymous
    reader's page holds only what anyone may read."""
    as_it_is = conditional_page(view)
    compressed = gzip_page(as_it_is)

    @wraps(view)
    def respond(request, *args, **kwargs):
        return (as_it_is if request.user.is_authenticated else compressed)(request, *args, **kwargs)

    return respond


def embeddable(view):
    """Let any site show the view's page in a frame: only the embed routes are, every other page
    keeps X-Frame-Options DENY. The site's Content-Security-Policy (SECURE_CSP, or `default-src
    'self'` while none is set) with `frame-ancestors *` added; set here, the CSP middleware keeps it."""

    @wraps(view)
    @xframe_options_exempt
    def framed(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        policy = {"default-src": [CSP.SELF], **settings.SECURE_CSP, "frame-ancestors": ["*"]}
        # The header's name as a plain string: WSGI servers (wsgiref) refuse an enum member.
        response.headers[CSP.HEADER_ENFORCE.value] = build_policy(policy)
        return response

    return framed


def _embed_url(request, route: str) -> str:
    """The absolute address of `route` with this page's filters: the embed snippet's `src`."""
    return request.build_absolute_uri(reverse(route) + (f"?{request.GET.urlencode()}" if request.GET else ""))


# The filters the form (templates/public/_filters.html) has a field for; it carries every other one
# as it came, hidden: it listed those it did not show by name, and a search from `/?min_origins=2`
# (or a Viewer's `?review_state=draft`) listed every incident again, its counts and downloads too.
FORM_FIELDS = frozenset({"q", "date_from", "date_to", "min_people", "max_people"})


# The order the title names the chosen facets in: what, where, who, how sure, when ("China, 2023").
_TITLE_ORDER = ("type", "country", "place", "perpetrator", "verification", "year")


def _chosen(facets: list[dict], query) -> list[str]:
    """What the <title> of the list and of the map names of their filters: the facets' values the
    page shows chosen (a place as its path ends) and the search words in their field. Only what the
    page shows, from what it has already counted: a value no facet lists, or a filter only the form
    shows as a number or date, is left unnamed rather than looked up."""
    by_name = {facet["name"]: facet for facet in facets}
    chosen = []
    for name in _TITLE_ORDER:
        facet = by_name.get(name)
        if facet is None:
            continue
        if facet["path"]:
            chosen.append(facet["path"][-1]["label"])
        else:
            chosen.extend(value["label"] for value in facet["values"] if value.get("selected"))
    if words := query.get("q", "").strip():
        chosen.append(f"“{words}”")
    return chosen


def _filter_form(request) -> dict:
    """What the filter form shows of the current filters, and what it carries unseen."""
    return {
        "filters": {name: request.GET.get(name, "") for name in FORM_FIELDS},
        "carried": [
            (name, value)
            for name in selectors.FILTER_NAMES
            if name not in FORM_FIELDS
            for value in request.GET.getlist(name)
            if value
        ],
    }


def _record_access(request, records) -> None:
    """Signed-in staff with confidential access see confidential records here too: recorded as
    at every other door (`incidents.access`)."""
    record_confidential_access(user=request.user, door=AccessDoor.SITE, records=records, path=request.get_full_path())


@light
@require_safe
@rate_limited
@reads("cursor", others_refused=False)
def browse(request):
    try:
        page = selectors.browse_incidents(
            user=request.user,
            filters=request.GET,
            cursor=request.GET.get("cursor", ""),
            page_size=selectors.BROWSE_PAGE_SIZE,
        )
    except ValidationError as error:
        return _bad_filters(request, error)
    _record_access(request, confidential_records_of_incidents(page.incidents, request.user))
    context = {**_filter_form(request), **_facets_context(page.facets, request.GET), "page": page}
    context["filtered"] = any(request.GET.get(name) for name in selectors.FILTER_NAMES)
    return render(request, "public/browse.html", context)


@light
@require_safe
@rate_limited
@reads(others_refused=False)
def incident_map(request):
    """The incidents of the current filters on a map drawn in the browser (static/public/map.js)
    from the GeoJSON download and the country outlines shipped under static/vendor/."""
    try:
        counts = selectors.facets_for(user=request.user, filters=request.GET)
    except ValidationError as error:
        return _bad_filters(request, error)
    return render(
        request,
        "public/map.html",
        {
            **_filter_form(request),
            **_facets_context(counts.facets, request.GET),
            "matching": counts.matching,
            "complete": counts.complete,
            "feature_limit": selectors.FEATURE_LIMIT,
            "embed_url": _embed_url(request, "public:embed-map"),
        },
    )


@light
@require_safe
@embeddable
@rate_limited
@reads(others_refused=False)
def embed_map(request):
    try:
        selectors.filtered_incidents(user=request.user, filters=request.GET)
    except ValidationError as error:
        return _bad_filters(request, error)
    return render(request, "public/embed_map.html", {"full_page_url": _embed_url(request, "public:map")})


@light
@require_safe
@rate_limited
def incident(request, public_id: str):
    try:
        page = selectors.incident_page(user=request.user, public_id=public_id)
    except Incident.DoesNotExist:
        # A merged incident's page leads, for good, to its survivor's, for readers who may see both.
        survivor = redirect_target(user=request.user, public_id=public_id)
        if survivor is None:
            raise Http404(_("No such incident.")) from None
        return HttpResponsePermanentRedirect(
            reverse("public:incident", args=[survivor]), headers=MERGED_REDIRECT_HEADERS
        )
    _record_access(
        request, confidential_records_of(page.incident, request.user) | page.confidential_sources_beside_claims
    )
    return render(
        request,
        "public/incident.html",
        {
            "page": page,
            "incident": page.incident,
            # The version and change time the reader is told: not those of an edit of what is hidden
            # from them (the citation's version counted an informant's claim added).
            "version": version_seen_by(page.incident, request.user),
            "last_updated": updated_at_seen_by(page.incident, request.user),
            # The citation says where the page is: an id and a date alone do not lead a reader to it.
            "permalink": request.build_absolute_uri(reverse("public:incident", args=[page.incident.public_id])),
            "retrieved": datetime.now(UTC).date(),
        },
    )


@require_safe
@rate_limited
@reads(BOM_PARAMETER, filters=False)
def incident_csv(request, public_id: str):
    """The incident's CSV row, exactly as the API's export writes it."""
    try:
        bom = bom_requested(request.GET)
    except ValidationError as error:
        return _bad_filters(request, error)
    incidents = Incident.objects.visible_to(request.user).filter(public_id=public_id)
    if not incidents.exists():
        # As its page: a merged incident's row is its survivor's, for readers who may see both.
        survivor = redirect_target(user=request.user, public_id=public_id)
        if survivor is None:
            raise Http404(_("No such incident."))
        # With the query kept: the page's "CSV for Excel" link asks for `bom=1`, lost on the way.
        query = f"?{request.GET.urlencode()}" if request.GET else ""
        return HttpResponsePermanentRedirect(
            reverse("public:incident-csv", args=[survivor]) + query, headers=MERGED_REDIRECT_HEADERS
        )
    return incidents_csv_response(
        incidents,
        request,
        export_filters={"public_id": public_id},
        bom=bom,
        page_url_prefix=_page_url_prefix(request),
    )


def _page_url_prefix(request) -> str:
    """The absolute address of incident pages, in the reader's language, up to the public id."""
    return request.build_absolute_uri(reverse("public:incident", args=["INC-0"])).removesuffix("INC-0/")


@require_safe
@rate_limited
@reads(BOM_PARAMETER)
def incidents_csv(request):
    """What the browse page shows for these filters, every row, as the API's CSV with a `page_url`."""
    try:
        bom = bom_requested(request.GET)
        _, incidents = selectors.filtered_incidents(user=request.user, filters=request.GET)
    except ValidationError as error:
        return _bad_filters(request, error)
    return incidents_csv_response(
        incidents,
        request,
        export_filters=dict(request.GET.lists()),
        bom=bom,
        page_url_prefix=_page_url_prefix(request),
    )


@light
@require_safe
@rate_limited
@reads()
def incidents_geojson(request):
    try:
        collection, rows = selectors.incident_features(
            user=request.user, filters=request.GET, page_url_prefix=_page_url_prefix(request)
        )
    except ValidationError as error:
        return _bad_filters(request, error)
    record_list_access(user=request.user, door=AccessDoor.SITE, rows=rows, path=request.get_full_path())
    return JsonResponse(collection, content_type="application/geo+json")


@light
@require_safe
@rate_limited
@reads()
def map_data(request):
    """The map's incidents (static/public/map.js): where each is, its title and dates in the page's language."""
    try:
        collection, incidents = selectors.map_features(
            user=request.user, filters=request.GET, page_url_prefix=_page_url_prefix(request)
        )
    except ValidationError as error:
        return _bad_filters(request, error)
    _record_access(request, confidential_among(incidents, request.user))
    return JsonResponse(collection, content_type="application/geo+json")


def _statistics_context(request) -> dict:
    """The statistics table's context, or raises ValidationError naming a bad parameter."""
    group_by = request.GET.get("group_by", "year")
    if group_by not in GROUPINGS:
        raise ValidationError({"group_by": [_("Choose one of %s.") % ", ".join(GROUPINGS)]})
    table = selectors.statistics_for(user=request.user, filters=request.GET, group_by=group_by)
    return {
        "table": table,
        "chart": _chart(table),
        "group_by": group_by,
        "group_label": _GROUPING_LABELS[group_by],
        "no_group_label": _(no_group_label(group_by)),
        "groupings": [(grouping, _GROUPING_LABELS[grouping]) for grouping in GROUPINGS],
    }


# Up to how many years or months a timeline chart draws, the periods without incidents included:
# two incidents centuries apart would otherwise send thousands of empty months.
TIMELINE_PERIODS = 1_200


def _periods(first: str, last: str, group_by: str) -> list[str]:
    """Every year ("2021") or month ("2021-07") from `first` to `last`, as the statistics name them."""
    if group_by == "year":
        return [f"{year:04d}" for year in range(int(first), int(last) + 1)]
    (first_year, first_month), (last_year, last_month) = (map(int, period.split("-")) for period in (first, last))
    return [
        f"{index // 12:04d}-{index % 12 + 1:02d}"
        for index in range(first_year * 12 + first_month - 1, last_year * 12 + last_month)
    ]


def _timeline_rows(rows: list[dict], group_by: str) -> list[dict]:
    """The rows of a year or month grouping with the periods between them that no incident falls
    in, as none: the line of people through 2021 and 2023 drew 2022 halfway between them, as if
    hundreds had been reported that year, where none was."""
    dated = {row["group"]: row for row in rows if row["group"] is not None}
    if len(dated) < 2:
        return rows
    periods = _periods(min(dated), max(dated), group_by)
    if len(periods) > TIMELINE_PERIODS:
        return rows
    empty = {
        "incidents": 0,
        "incidents_without_figure": 0,
        "people_count": 0,
        "people_count_min": None,
        "people_count_max": None,
    }
    return [dated.get(period, {"group": period, "label": period, **empty}) for period in periods] + [
        row for row in rows if row["group"] is None
    ]


def _chart(table: dict) -> dict:
    """The table's numbers for static/public/charts.js (embedded with json_script), with the words
    it draws in the reader's language; a timeline also with the years or months between the
    table's, which no incident falls in."""
    timeline = table["group_by"] in ("year", "month")
    rows = _timeline_rows(table["results"], table["group_by"]) if timeline else table["results"]
    return {
        "timeline": timeline,
        # The rows that are years or months: those after them (incidents over more than one) stand
        # apart, which the line of people must not join to the last period.
        "periods": sum(row["group"] is not None for row in rows) if timeline else 0,
        "labels": [_(no_group_label(table["group_by"])) if row["group"] is None else row["label"] for row in rows],
        "incidents": [row["incidents"] for row in rows],
        # Said beside each group's incidents and people: the sums leave these incidents out.
        "without_figure": [row["incidents_without_figure"] for row in rows],
        "people": [row["people_count"] for row in rows],
        "low": [row["people_count_min"] for row in rows],
        "high": [row["people_count_max"] for row in rows],
        "text": {
            "incidents": _("Incidents"),
            "people": _("People (best estimate)"),
            "range": _("People (range)"),
            # Each followed by ": " and a number in the tooltips: no plural to agree with it.
            "without_figure": _("No figure"),
            "not_in_sums": _("Incidents with no figure, not in these sums"),
        },
    }


@light
@require_safe
@rate_limited
@reads("group_by", others_refused=False)
def statistics(request):
    try:
        context = _statistics_context(request)
    except ValidationError as error:
        return _bad_filters(request, error)
    context.update(browse_url=reverse("public:browse"), embed_url=_embed_url(request, "public:embed-statistics"))
    return render(request, "public/statistics.html", context)


@light
@require_safe
@embeddable
@rate_limited
@reads("group_by", others_refused=False)
def embed_statistics(request):
    try:
        context = _statistics_context(request)
    except ValidationError as error:
        return _bad_filters(request, error)
    context["full_page_url"] = _embed_url(request, "public:statistics")
    return render(request, "public/embed_statistics.html", context)
