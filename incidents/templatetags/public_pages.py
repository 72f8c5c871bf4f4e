"""How the public pages word dates, counts and links, in the reader's language.

The stored `date_label` is English ("July 2021"); these labels are built from the dates and the
precision with the active language's formats ("2021년 7월"), so Korean readers see their own. In
English they say exactly what `date_label` says (migration 0072 and tracker/formats/en).
"""

from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import timedelta
from functools import lru_cache

from django import template
from django.http import QueryDict
from django.urls import translate_url
from django.utils import formats
from django.utils.encoding import escape_uri_path
from django.utils.http import escape_leading_slashes
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _

from incidents.filters import IncidentFilterSet
from incidents.languages import language_name
from incidents.models import CountQualifier, DatePrecision
from incidents.vocabulary import type_name

register = template.Library()


def _number(value) -> str:
    return formats.number_format(value, force_grouping=True)


@register.filter(name="type_name")
def type_name_filter(name: str) -> str:
    """An incident type's name in the page's language (incidents.vocabulary.type_name)."""
    return type_name(name)


@register.filter(name="language_name")
def language_name_filter(code: str) -> str:
    """A source's language by its name in the page's language ("Korean", "한국어")."""
    return language_name(code)


@register.filter
def dates(record) -> str:
    """The incident's (or claim's) date range at its precision, in the active language: the whole
    range, never only its start, as the stored `date_label` says it. A Month may be several whole
    months and a Year several years (July to September 2021 read "July 2021"), and an unknown date
    still lies in the years recorded, which the date filter reads. A claim's one end alone reads as
    its source said it: "Since March 2020", or "Before 9 October 2023" for an end on the 8th; a
    claim without dates reads ""."""
    return _dates_label(record.date_start, record.date_end, record.date_precision, get_language())


# Worded once per dates and language: the map's data words up to 10,000 incidents' dates a request,
# among a few hundred distinct ranges, and Django's date formatting took 1.2 s of its 1.7 s
# (200,000 demo incidents). `language` is part of the key only: the formats and words are the
# active language's.
@lru_cache(maxsize=8192)
def _dates_label(start, end, precision, language) -> str:
    if start is None and end is None:
        return ""
    if end is None:
        return _("Since %(date)s") % {"date": _one_end(start, precision)}
    if start is None:
        return _("Before %(date)s") % {"date": _one_end(end + timedelta(days=1), precision)}
    if precision == DatePrecision.MONTH:
        return _span(start, end, "YEAR_MONTH_FORMAT")
    if precision == DatePrecision.YEAR:
        return _span(start, end, "Y")
    if precision == DatePrecision.UNKNOWN:
        return _("Date unknown (%(years)s)") % {"years": _span(start, end, "Y")}
    label = _span(start, end, "DATE_FORMAT")
    return _("Week of %(dates)s") % {"dates": label} if precision == DatePrecision.WEEK else label


def _one_end(day, precision) -> str:
    """The day, month or year of a claim's one end, as its precision names it."""
    date_format = {DatePrecision.MONTH: "YEAR_MONTH_FORMAT", DatePrecision.YEAR: "Y"}.get(precision, "DATE_FORMAT")
    return formats.date_format(day, date_format)


def _span(start, end, date_format: str) -> str:
    """The two dates in `date_format`, or one where that format says them alike (a Month within one month)."""
    first, last = formats.date_format(start, date_format), formats.date_format(end, date_format)
    return first if first == last else _("%(start)s – %(end)s") % {"start": first, "end": last}


@register.filter
def people(record) -> str:
    """The count with its qualifier and own range: "about 500 (300-600)" (with an en dash); "" when unknown."""
    if record.people_count is None and record.people_count_min is None and record.people_count_max is None:
        return ""
    low, high = record.people_count_min, record.people_count_max
    if record.people_count is None:
        return figure_range(low, high)
    words = {
        CountQualifier.ABOUT: _("about %(count)s"),
        CountQualifier.AT_LEAST: _("at least %(count)s"),
        CountQualifier.AT_MOST: _("at most %(count)s"),
    }
    label = words.get(record.count_qualifier, "%(count)s") % {"count": _number(record.people_count)}
    if (low is not None or high is not None) and (low, high) != (record.people_count, record.people_count):
        label = _("%(count)s (%(range)s)") % {"count": label, "range": figure_range(low, high)}
    return label


@register.filter
@register.simple_tag
def figure_range(low, high) -> str:
    """ "300-500" (with an en dash), "from 300", "up to 500", or "" when neither bound is known (a tag, and a filter
    taking the high figure as its argument)."""
    if low is not None and high is not None:
        return _number(low) if low == high else f"{_number(low)}–{_number(high)}"
    if low is not None:
        return _("from %(low)s") % {"low": _number(low)}
    if high is not None:
        return _("up to %(high)s") % {"high": _number(high)}
    return ""


@dataclass(frozen=True)
class ClaimedCount:
    """One claim's figure as `IncidentQuerySet.with_claim_figures` reads it, for `people` to word."""

    people_count: int | None
    people_count_min: int | None
    people_count_max: int | None
    count_qualifier: str


def _what_sources_say(incident) -> list[tuple[str, int]]:
    """Each figure the claims on `incident.claim_figures` give, worded as `people` words a count
    ("about 500", "at least 40"), with how many sources give it: most sources first, then lowest
    figure first. A source with two claims saying the same counts once."""
    sources_by_figure = defaultdict(set)
    lowest = {}
    for figures in incident.claim_figures:
        count = ClaimedCount(**{field.name: figures[field.name] for field in fields(ClaimedCount)})
        label = people(count)
        sources_by_figure[label].add(figures["source_id"])
        low = min(
            value for value in (count.people_count_min, count.people_count, count.people_count_max) if value is not None
        )
        lowest[label] = min(lowest.get(label, low), low)
    return sorted(
        ((label, len(sources)) for label, sources in sources_by_figure.items()),
        key=lambda said: (-said[1], lowest[said[0]]),
    )


@register.filter
def sources_say(incident) -> str:
    """What the claims the reader may see say of the count, qualifiers and all (an incident read
    `with_claim_figures`): "about 500, according to all 2 sources that give a figure", or the span
    and who says what, "300-500: 2 sources say about 500, 1 says 300" (with an en dash); "" when none
    gives a figure."""
    said = _what_sources_say(incident)
    if not said:
        return ""
    if len(said) == 1:
        figure, count = said[0]
        return ngettext(
            "%(figure)s, according to the one source that gives a figure",
            "%(figure)s, according to all %(count)s sources that give a figure",
            count,
        ) % {"figure": figure, "count": _number(count)}
    (first_figure, first_count), *others = said
    sayings = [
        ngettext("%(count)s source says %(figure)s", "%(count)s sources say %(figure)s", first_count)
        % {"figure": first_figure, "count": _number(first_count)},
        *(
            ngettext("%(count)s says %(figure)s", "%(count)s say %(figure)s", count)
            % {"figure": figure, "count": _number(count)}
            for figure, count in others
        ),
    ]
    return _("%(range)s: %(sayings)s") % {
        "range": figure_range(incident.claim_people_min, incident.claim_people_max),
        "sayings": ", ".join(sayings),
    }


@register.filter
def sources_say_briefly(incident) -> str:
    """`sources_say` for a list's cell: the one figure every source gives, qualifier and all ("about
    500"), or else the span of their figures ("300-500", with an en dash); "" when none gives a figure."""
    said = _what_sources_say(incident)
    if len(said) == 1:
        return said[0][0]
    return figure_range(incident.claim_people_min, incident.claim_people_max)


@register.filter
def number(value) -> str:
    return "" if value is None else _number(value)


@register.simple_tag(takes_context=True)
def in_language(context, language: str) -> str:
    """This page, query string and all, in `language`: the language switch's link. A page about a
    refused request (`without_query`) links to its address alone: the query was what was refused.

    Its leading slashes escaped first: translate_url reads an address that starts with `//` as
    another site's, so the page not found at `//evil.example/map/` (a link anyone may send, also
    spelt `/%2Fevil.example/map/`) linked its "한국어" to `//evil.example/ko/map/`."""
    request = context["request"]
    # The path as sent, percent-encoded as get_full_path gives it: decoded, `/%5Cevil.example/` was
    # `/\evil.example/`, which a browser reads as `//evil.example/` (a tab or newline it drops).
    address = escape_uri_path(request.path) if context.get("without_query") else request.get_full_path()
    return translate_url(escape_leading_slashes(address), language)


@register.simple_tag(takes_context=True)
def filters_querystring(context, **extra) -> str:
    """The page's query string with its incident filters alone (and `extra`), for a link to a data
    download (CSV, GeoJSON), which refuses a parameter it does not read (`public.views.reads`): the
    page's own `cursor`, and the `utm_source` or `fbclid` a shared link brought along, stay behind."""
    query = QueryDict(mutable=True)
    for name, values in context["request"].GET.lists():
        if name in IncidentFilterSet.base_filters:
            query.setlist(name, values)
    for name, value in extra.items():
        query[name] = value
    return f"?{query.urlencode()}" if query else ""
