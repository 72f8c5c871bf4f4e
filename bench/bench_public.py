"""Server time, queries and size of the public pages, as an anonymous reader, through the WSGI
application (as bench_api.py measures the API): browse unfiltered, filtered (a country; a type and
a year; a province, with the places inside it; the largest perpetrator, alone and with a country
and a year) and searched for a word in most titles; the newest incident's page; statistics per
year, per country and the perpetrator's per year, per country (also within a country) and per
perpetrator; the map page, its data and the GeoJSON download.

    DATABASE_URL=postgres://… .venv/bin/python bench/bench_public.py --runs 30
    DATABASE_URL=postgres://… .venv/bin/python bench/bench_public.py --runs 15 --page '/statistics/?group_by=year'

Goals (issue 21, at 1,000,000 incidents): browse and incident pages p95 < 150 ms, statistics
< 300 ms, a fixed number of queries; pages under 200 KB before the map data.
"""

import argparse
import os
from contextlib import ExitStack
from typing import NamedTuple
from urllib.parse import parse_qsl

from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
PARSER.add_argument("--runs", type=int, default=30, help="timed requests per page (default 30)")
PARSER.add_argument(
    "--page", action="append", default=[], metavar="PATH", help="time this page (with its query) instead"
)
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from bench_api import api_call, measure  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connections  # noqa: E402
from django.db.models import Count, Q  # noqa: E402
from django.test.utils import CaptureQueriesContext, override_settings  # noqa: E402

from incidents.models import Incident, IncidentPlace, InvolvementRole, Organization, Place  # noqa: E402


class Page(NamedTuple):
    label: str
    path: str
    parameters: dict
    # What the database lacks for this page (sample data has no province, a fresh one no incident):
    # the page is named, not timed.
    lacking: str = ""


def lacking(label: str, what: str) -> Page:
    return Page(label, "", {}, lacking=what)


def default_pages(public) -> list[Page]:
    """The pages to time, chosen from the data (the newest public incident, its country, type and year,
    a province, the largest perpetrator); those the data gives nothing for say what it lacks. Runs
    queries."""
    newest = public.order_by("-date_start", "-id").first()
    places = IncidentPlace.objects.filter(incident=newest).exclude(place__country="")
    country = places.values_list("place__country", flat=True).first() or "CN"
    # A place with places inside it that are themselves inside another: a province.
    province = Place.objects.filter(parent__parent__isnull=True, parent__isnull=False, children__isnull=False).first()
    # The perpetrator of the most incidents: its facet link (and statistics) count all of them.
    perpetrator = (
        Organization.objects.annotate(
            perpetrated=Count("involvements", filter=Q(involvements__role=InvolvementRole.PERPETRATOR))
        )
        .filter(perpetrated__gt=0)
        .order_by("-perpetrated")
        .first()
    )
    pages = [Page("browse: all", "/", {}), Page(f"browse: country={country}", "/", {"country": country})]
    years, in_a_year = {}, ""
    if newest is None:
        pages.append(lacking("browse: type and year, a word; the incident's page", "no public incident"))
    else:
        year = newest.date_start.year - 1
        years, in_a_year = {"date_from": f"{year}-01-01", "date_to": f"{year}-12-31"}, f", {year}"
        word = newest.title.split()[0]
        pages += [
            Page(
                f"browse: type={newest.incident_type.slug}{in_a_year}",
                "/",
                {"type": newest.incident_type.slug, **years},
            ),
            Page(f"browse: q={word}", "/", {"q": word}),
        ]
    if province is None:
        pages.append(
            lacking(
                "browse: place=(a province)", "no province (a place inside a top-level place, with places inside it)"
            )
        )
    else:
        pages.append(Page(f"browse: place={province.pk} ({province.name})", "/", {"place": province.pk}))
    statistics = [
        Page("statistics: group_by=year", "/statistics/", {"group_by": "year"}),
        Page("statistics: group_by=country", "/statistics/", {"group_by": "country"}),
    ]
    if perpetrator is None:
        pages.append(lacking("browse and statistics: perpetrator=(the largest)", "no incident has a perpetrator"))
    else:
        chosen = {"perpetrator": perpetrator.pk}
        # A facet's value chosen: that facet is counted without it (its links replace it).
        pages += [
            Page(f"browse: perpetrator={perpetrator.pk} ({perpetrator.name})", "/", chosen),
            Page(
                f"browse: perpetrator={perpetrator.pk}, country={country}{in_a_year}",
                "/",
                {**chosen, "country": country, **years},
            ),
        ]
        statistics += [
            Page(
                f"statistics: group_by=year, perpetrator={perpetrator.pk}",
                "/statistics/",
                {"group_by": "year", **chosen},
            ),
            Page(
                f"statistics: group_by=country, perpetrator={perpetrator.pk}",
                "/statistics/",
                {"group_by": "country", **chosen},
            ),
            Page(
                f"statistics: group_by=country, country={country}, perpetrator={perpetrator.pk}",
                "/statistics/",
                {"group_by": "country", "country": country, **chosen},
            ),
            Page(
                f"statistics: group_by=perpetrator, perpetrator={perpetrator.pk}",
                "/statistics/",
                {"group_by": "perpetrator", **chosen},
            ),
        ]
    if newest is not None:
        pages.append(Page(f"incident: {newest.public_id}", f"/incidents/{newest.public_id}/", {}))
    return [
        *pages,
        *statistics,
        Page("map (page only)", "/map/", {}),
        Page("map data (its places, titles, dates: newest 5,000)", "/map/incidents.geojson", {}),
        Page("GeoJSON download (newest 5,000)", "/incidents.geojson", {}),
    ]


def main(arguments: argparse.Namespace):
    public = Incident.objects.visible_to(None)
    if arguments.page:
        pages = [Page(page, page.partition("?")[0], dict(parse_qsl(page.partition("?")[2]))) for page in arguments.page]
    else:
        pages = default_pages(public)
    print(
        f"{Incident.objects.count():,} incidents ({public.count():,} public) "
        f"on {settings.DATABASES['default']['NAME']}; {arguments.runs} runs each; "
        f"load average {' '.join(f'{load:.2f}' for load in os.getloadavg())} before"
    )
    # The server's time, not the public rate's (TRACKER_PUBLIC_ANON_RATE, 120 a minute from one
    # address) nor the database time an address may take in a minute: either answered 429 from the
    # second or third page of runs on, as bench_api.py turns the API's rates off.
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "public": None}
    unthrottled = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    with override_settings(DEBUG=False, REST_FRAMEWORK=unthrottled, ANON_CLIENT_DATABASE_SECONDS=0):
        print(f"{'page':52} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8} {'KB':>7}")
        for label, path, parameters, lacks in pages:
            if lacks:
                print(f"{label:52} skipped: {lacks}")
                continue
            call = api_call(path, parameters)
            # Every database the request may read (anonymous reads may go to a replica).
            with ExitStack() as stack:
                captures = [stack.enter_context(CaptureQueriesContext(connections[alias])) for alias in connections]
                try:
                    size = len(call()) / 1024
                except AssertionError as refusal:  # not a 200: a 503 over the anonymous bound, say
                    print(f"{label:52} {str(refusal).partition(':')[0]}")
                    continue
            queries = sum(len(capture) for capture in captures)
            try:
                ((median, p95),) = measure([call], arguments.runs)
            except AssertionError as refusal:  # a run over the anonymous bound that the first one kept within
                print(f"{label:52} {str(refusal).partition(':')[0]} in a timed run")
                continue
            print(f"{label:52} {median:8.1f} {p95:8.1f} {queries:8} {size:7.1f}")
    print(f"load average {' '.join(f'{load:.2f}' for load in os.getloadavg())} after")


if __name__ == "__main__":
    main(ARGUMENTS)
