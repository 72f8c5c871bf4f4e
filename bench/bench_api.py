"""Server time of the API's incident list and statistics, beside hand-written SQL for the same rows.

Runs in-process, calling the WSGI application as a server (gunicorn, uWSGI) does: request signals
(the connection's health check), URL routing, middleware, view, queries, JSON rendering; no network,
and no test client in between (its instrumentation is no server's work). As an anonymous reader
against whatever DATABASE_URL points to, e.g. after `manage.py generate_demo_data`. Prints p50/p95
over --runs requests per scenario:

    DATABASE_URL=postgres://… .venv/bin/python bench/bench_api.py --runs 50

Goals (issue 4, at 1,000,000 incidents): list p95 < 50 ms and within 1.5x of the hand-written SQL
returning the same rows as JSON; stats p95 < 300 ms.
"""

import argparse
import statistics
import sys
import time
from datetime import timedelta
from unittest import mock
from urllib.parse import urlencode
from wsgiref.util import setup_testing_defaults

from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
PARSER.add_argument("--runs", type=int, default=30, help="timed requests per scenario (default 30)")
PARSER.add_argument("--q", help="search words for the full-text scenario (default: from the newest title)")
PARSER.add_argument(
    "--user",
    metavar="USERNAME",
    help="time only the incident list, as this user (e.g. a reviewer with confidential access, whose "
    "reads of confidential records are recorded), without the hand-written SQL (the public's)",
)
PARSER.add_argument(
    "--only",
    metavar="LABEL",
    action="append",
    help="time only the scenario of this label, as printed (repeatable), e.g. to give a few slow ones "
    "fewer runs than the rest",
)
# Read before Django is set up, so that --help and a refused argument answer at once; not when
# imported (bench_public.py, bench_growth.py use its functions).
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from incidents.api import projections, views  # noqa: E402
from incidents.models import Incident, IncidentPlace  # noqa: E402

# The server's own entry point and start-up, so that requests meet the process state they would.
from tracker.wsgi import application  # noqa: E402

# The anonymous reader's incident list as one hand-written query returning the page as JSON: the
# same rows, fields and nested collections (in the same order) that the API answers, a sensitive
# place showing the coordinates the public may see (`place_public_coordinates`, migration 0007).
LIST_SQL = """
SELECT coalesce(json_agg(page.incident ORDER BY page.date_start DESC, page.id DESC), '[]')::text
FROM (
  SELECT i.id, i.date_start, json_build_object(
    'public_id', i.public_id, 'title', i.title, 'incident_type', t.slug, 'description', i.description,
    'date_start', i.date_start, 'date_end', i.date_end, 'date_precision', i.date_precision,
    'date_label', i.date_label, 'people_count', i.people_count, 'people_count_min', i.people_count_min,
    'people_count_max', i.people_count_max, 'count_qualifier', i.count_qualifier,
    'claim_people_min', (SELECT min(coalesce(c.people_count_min, c.people_count)) FROM incidents_claim c
        JOIN incidents_source s ON s.id = c.source_id
        WHERE c.incident_id = i.id AND NOT c.confidential AND NOT s.confidential),
    'claim_people_max', (SELECT max(coalesce(c.people_count_max, c.people_count)) FROM incidents_claim c
        JOIN incidents_source s ON s.id = c.source_id
        WHERE c.incident_id = i.id AND NOT c.confidential AND NOT s.confidential),
    'places', (SELECT coalesce(json_agg(json_build_object('id', p.id, 'name', p.name, 'kind', p.kind,
        'country', p.country,
        'latitude', CASE WHEN NOT p.sensitive AND p.latitude IS NOT NULL THEN p.latitude
            ELSE (place_public_coordinates(p.parent_id))[1] END,
        'longitude', CASE WHEN NOT p.sensitive AND p.latitude IS NOT NULL THEN p.longitude
            ELSE (place_public_coordinates(p.parent_id))[2] END) ORDER BY p.name, p.id), '[]')
        FROM incidents_incidentplace ip JOIN incidents_place p ON p.id = ip.place_id WHERE ip.incident_id = i.id),
    'involvements', (SELECT coalesce(json_agg(json_build_object('id', v.id, 'organization', v.organization_id,
        'organization_name', o.name, 'role', v.role) ORDER BY v.id), '[]')
        FROM incidents_involvement v JOIN incidents_organization o ON o.id = v.organization_id
        WHERE v.incident_id = i.id),
    'victim_groups', (SELECT coalesce(json_agg(json_build_object('id', g.id, 'count', g.count, 'sex', g.sex,
        'age_group', g.age_group, 'nationality', g.nationality, 'description', g.description) ORDER BY g.id), '[]')
        FROM incidents_victimgroup g WHERE g.incident_id = i.id),
    'claims', (SELECT coalesce(json_agg(json_build_object('id', c.id, 'source', c.source_id,
        'source_title', s.title, 'people_count', c.people_count, 'people_count_min', c.people_count_min,
        'people_count_max', c.people_count_max, 'count_qualifier', c.count_qualifier,
        'date_start', c.date_start, 'date_end', c.date_end, 'excerpt', c.excerpt, 'locator', c.locator,
        'source_connection', c.source_connection, 'confidential', c.confidential) ORDER BY c.id), '[]')
        FROM incidents_claim c JOIN incidents_source s ON s.id = c.source_id
        WHERE c.incident_id = i.id AND NOT c.confidential AND NOT s.confidential),
    'verification', i.verification, 'review_state', i.review_state, 'confidential', i.confidential,
    'version', i.version, 'created_at', i.created_at, 'updated_at', i.updated_at
  ) AS incident
  FROM incidents_incident i JOIN incidents_incidenttype t ON t.id = i.incident_type_id
  WHERE i.review_state = 'published' AND NOT i.confidential AND {condition}
  ORDER BY i.date_start DESC, i.id DESC
  LIMIT 50
) page
"""
DATE_AND_COUNTRY = (
    "i.date_end >= %(date_from)s AND i.date_start <= %(date_to)s AND EXISTS (SELECT 1 FROM incidents_incidentplace ip "
    "JOIN incidents_place p ON p.id = ip.place_id WHERE ip.incident_id = i.id AND p.country = %(country)s)"
)
# The one search (incidents/search.py): every word among the incident's words that the public may see.
SEARCH = """EXISTS (SELECT 1 FROM incidents_incidentsearchdocument d
    WHERE d.incident_id = i.id AND d.disclosed @@ plainto_tsquery('simple', %(q)s))"""


def measure(calls, runs: int) -> list[tuple[float, float]]:
    """Median and 95th percentile in milliseconds of each call, after two warm-up rounds. The calls
    take turns, so that a change in the machine's speed meanwhile weighs on each alike."""
    for _ in range(2):
        for call in calls:
            call()
    timings = [[] for _ in calls]
    for _ in range(runs):
        for call, measured in zip(calls, timings, strict=True):
            started = time.perf_counter()
            call()
            measured.append((time.perf_counter() - started) * 1000)
    return [median_and_p95(measured) for measured in timings]


def median_and_p95(timings: list[float]) -> tuple[float, float]:
    """The median and the 95th percentile (the nearest rank) of `timings`."""
    ordered = sorted(timings)
    return statistics.median(ordered), ordered[max(0, round(0.95 * len(ordered)) - 1)]


def session_cookie(username: str) -> str:
    """A logged-in session of `username`, as the Cookie header a browser would send."""
    client = Client()
    client.force_login(get_user_model().objects.get_by_natural_key(username))
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def api_call(url: str, parameters: dict, cookie: str = ""):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": url, "QUERY_STRING": urlencode(parameters)}
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    setup_testing_defaults(environ)  # a server's other keys: host 127.0.0.1, HTTP/1.0, empty body

    def call():
        statuses = []
        body = application(dict(environ), lambda status, headers, exc_info=None: statuses.append(status))
        content = b"".join(body)
        body.close()  # the end of the request, as a server signals it
        assert statuses[0].startswith("200"), f"{statuses[0]}: {content[:300]}"
        return content

    return call


def access_record_switched(call, *, on: bool):
    """`call` with the record of confidential reads (issue 17) on, or off as the list was before it:
    no columns naming the page's incidents in its query, no record written in its statement. Both
    arms patch alike, so the patching's own cost weighs on each the same."""
    columns = projections.shown_incident_columns if on else (lambda user: {})
    recording = views.recording_list_access if on else (lambda rows, **arguments: rows)

    def switched():
        with (
            mock.patch.object(projections, "shown_incident_columns", columns),
            mock.patch.object(views, "recording_list_access", recording),
        ):
            return call()

    return switched


def sql_call(sql: str, parameters: dict):
    def call():
        with connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchone()[0]

    return call


def default_parameters() -> dict:
    """Filters that select a realistic slice of whatever data is there: the most common country of
    published incidents' places, the year of the newest incident, and a word of its title."""
    public = Incident.objects.visible_to(None)
    newest = public.order_by("-date_start", "-id").first()
    if newest is None:
        sys.exit("No published incidents: load data first (manage.py loaddata sample, or generate_demo_data).")
    country = (
        IncidentPlace.objects.filter(incident__in=public.values("pk"))
        .exclude(place__country="")
        .values("place__country")
        .annotate(incidents=Count("incident"))
        .order_by("-incidents")
        .first()
    )
    words = [word for word in newest.title.split() if word.isalpha() and len(word) > 3]
    # The public's last change (`public_updated_at`, which they sync by), a day before it.
    last_change = public.order_by("-public_updated_at").values_list("public_updated_at", flat=True).first()
    return {
        "date_from": f"{newest.date_start.year - 1}-01-01",
        "date_to": f"{newest.date_start.year}-12-31",
        "country": country["place__country"] if country else "CN",
        "q": words[-1] if words else newest.title.split()[0],
        "updated_since": (last_change - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def main(arguments: argparse.Namespace):
    parameters = default_parameters()
    if arguments.q:
        parameters["q"] = arguments.q
    filters = {key: parameters[key] for key in ("date_from", "date_to", "country")}
    incidents, stats = "/api/v1/incidents/", "/api/v1/incidents/stats/"
    unthrottled = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None}}
    if arguments.user:
        cookie = session_cookie(arguments.user)
        shown = Incident.objects.visible_to(get_user_model().objects.get_by_natural_key(arguments.user))
        print(f"{shown.count():,} incidents visible to {arguments.user}")
        lists = [
            ("list: page of 50, date+country", {**filters, "page_size": 50}),
            ("list: page of 50, q", {"q": parameters["q"], "page_size": 50}),
            ("list: page of 50, unfiltered", {"page_size": 50}),
            # By the change time this reader is told (with Confidential access, every change's).
            ("sync: ordering=-updated_at", {"ordering": "-updated_at", "page_size": 50}),
            ("sync: updated_since, last day", {"updated_since": parameters["updated_since"], "page_size": 50}),
        ]
        with override_settings(DEBUG=False, REST_FRAMEWORK=unthrottled):
            print(f"{'scenario (access record on / off)':36} {'p50 ms':>8} {'p95 ms':>8}")
            for label, query in lists:
                call = api_call(incidents, query, cookie)
                switched = [access_record_switched(call, on=on) for on in (True, False)]
                (median, p95), (off_median, off_p95) = measure(switched, arguments.runs)
                print(f"{label:36} {median:8.1f} {p95:8.1f}")
                print(f"{'  without the access record':36} {off_median:8.1f} {off_p95:8.1f}")
                print(f"{'  with / without':36} {median / off_median:7.2f}x {p95 / off_p95:7.2f}x")
        return
    # Each list scenario is measured beside the hand-written SQL for the same rows, turn about.
    scenarios = [
        (
            "list: page of 50, date+country",
            api_call(incidents, {**filters, "page_size": 50}),
            sql_call(LIST_SQL.format(condition=DATE_AND_COUNTRY), parameters),
        ),
        (
            "list: page of 50, q",
            api_call(incidents, {"q": parameters["q"], "page_size": 50}),
            sql_call(LIST_SQL.format(condition=SEARCH), parameters),
        ),
        ("list: page of 50, q=north korea", api_call(incidents, {"q": "north korea", "page_size": 50}), None),
        # Rare and absent words, and a search that only leaves a word out (issue 17: 3.3 s before).
        ("list: page of 50, q=Dandong", api_call(incidents, {"q": "Dandong", "page_size": 50}), None),
        ("list: page of 50, q=zzzz", api_call(incidents, {"q": "zzzz", "page_size": 50}), None),
        ("list: page of 50, q=-zzzz", api_call(incidents, {"q": "-zzzz", "page_size": 50}), None),
        # A partner's sync, by the change time the public is told (`public_updated_at`, migration 0102).
        ("sync: ordering=-updated_at", api_call(incidents, {"ordering": "-updated_at", "page_size": 50}), None),
        (
            "sync: updated_since, last day",
            api_call(incidents, {"updated_since": parameters["updated_since"], "page_size": 50}),
            None,
        ),
        (
            "sync: updated_since=2000, first page",
            api_call(incidents, {"updated_since": "2000-01-01T00:00:00Z", "page_size": 50}),
            None,
        ),
        ("stats: group_by=year, all", api_call(stats, {"group_by": "year"}), None),
        ("stats: group_by=country, all", api_call(stats, {"group_by": "country"}), None),
        ("stats: group_by=country, dates", api_call(stats, {"group_by": "country", **filters}), None),
        ("stats: group_by=perpetrator, all", api_call(stats, {"group_by": "perpetrator"}), None),
        # Issue 17: 5.7 s before at 200,000 incidents.
        ("stats: group_by=perpetrator, q=-zzzz", api_call(stats, {"group_by": "perpetrator", "q": "-zzzz"}), None),
        ("stats: group_by=type, q", api_call(stats, {"group_by": "type", "q": parameters["q"]}), None),
    ]
    if arguments.only:
        scenarios = [scenario for scenario in scenarios if scenario[0] in arguments.only]
    print(
        f"{Incident.objects.count():,} incidents ({Incident.objects.visible_to(None).count():,} public) "
        f"on {settings.DATABASES['default']['NAME']}; filters {parameters}; {arguments.runs} runs each"
    )
    with override_settings(DEBUG=False, REST_FRAMEWORK=unthrottled):
        print(f"{'scenario':36} {'p50 ms':>8} {'p95 ms':>8}")
        for label, api, sql in scenarios:
            if sql is None:
                ((median, p95),) = measure([api], arguments.runs)
                print(f"{label:36} {median:8.1f} {p95:8.1f}")
                continue
            (median, p95), (sql_median, sql_p95) = measure([api, sql], arguments.runs)
            print(f"{label:36} {median:8.1f} {p95:8.1f}")
            print(f"{'  same rows, hand-written SQL':36} {sql_median:8.1f} {sql_p95:8.1f}")
            print(f"{'  API / SQL':36} {median / sql_median:7.2f}x {p95 / sql_p95:7.2f}x")


if __name__ == "__main__":
    main(ARGUMENTS)
