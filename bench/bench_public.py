"""Server time and size of the public pages, as an anonymous reader, through the WSGI application
(as bench_api.py measures the API): browse unfiltered, filtered by a country and searched; the
newest incident's page; statistics per year and per country; the map page (without its data).

    DATABASE_URL=postgres://… .venv/bin/python bench/bench_public.py --runs 30

Goals (issue 21, at 1,000,000 incidents): browse and incident pages p95 < 150 ms, statistics
< 300 ms; pages under 200 KB before the map data.
"""

import argparse

from bench_api import api_call, measure  # also sets Django up
from django.conf import settings
from django.test.utils import override_settings

from incidents.models import Incident, IncidentPlace


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="timed requests per page (default 30)")
    arguments = parser.parse_args()

    public = Incident.objects.visible_to(None)
    newest = public.order_by("-date_start", "-id").first()
    places = IncidentPlace.objects.filter(incident=newest).exclude(place__country="")
    country = places.values_list("place__country", flat=True).first() or "CN"
    word = newest.title.split()[0]
    pages = [
        ("browse: all", "/", {}),
        (f"browse: country={country}", "/", {"country": country}),
        (f"browse: q={word}", "/", {"q": word}),
        (f"incident: {newest.public_id}", f"/incidents/{newest.public_id}/", {}),
        ("statistics: group_by=year", "/statistics/", {"group_by": "year"}),
        ("statistics: group_by=country", "/statistics/", {"group_by": "country"}),
        ("map (page only)", "/map/", {}),
    ]
    print(
        f"{Incident.objects.count():,} incidents ({public.count():,} public) "
        f"on {settings.DATABASES['default']['NAME']}; {arguments.runs} runs each"
    )
    with override_settings(DEBUG=False):
        print(f"{'page':36} {'p50 ms':>8} {'p95 ms':>8} {'KB':>7}")
        for label, path, parameters in pages:
            call = api_call(path, parameters)
            size = len(call()) / 1024
            ((median, p95),) = measure([call], arguments.runs)
            print(f"{label:36} {median:8.1f} {p95:8.1f} {size:7.1f}")


if __name__ == "__main__":
    main()
