"""Server time of one incident's update through the API: what the triggers that keep totals, search
words and export rows add to a write.

Runs in-process through the WSGI application (as bench_api.py does), as the `bench` superuser with a
token, against whatever DATABASE_URL points to. Each run PATCHes the same published incident with
the version it just read: once its counts alone (`counts`), once its places and claims replaced by
the same ones (`places+claims`: every nested row rewritten). Prints p50/p95 over --runs each:

    DATABASE_URL=postgres://… .venv/bin/python bench/bench_incident_write.py --runs 30

The incident keeps its version bumps; nothing else changes.
"""

import argparse
import json
import os
import statistics
import time

from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
PARSER.add_argument("--runs", type=int, default=30)
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.services import token_create  # noqa: E402
from incidents.models import Incident  # noqa: E402


def main(arguments: argparse.Namespace):
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_superuser": True, "is_staff": True}
    )
    # A staff token, as made after its second factor (staff tokens without one are refused).
    _, key = token_create(user=user, name="bench_incident_write", second_factor=True)
    client = Client(HTTP_AUTHORIZATION=f"Token {key}", HTTP_HOST="localhost")
    # A published incident with places and claims, the newest such (the public's first page).
    incident = (
        Incident.objects.filter(review_state="published", claims__isnull=False, incident_places__isnull=False)
        .order_by("-date_start", "-id")
        .first()
    )
    url = f"/api/v1/incidents/{incident.public_id}/"
    current = client.get(url).json()
    nested = {
        "places": [place["id"] for place in current["places"]],
        "claims": [
            {"id": claim["id"], "source": claim["source"], "people_count": claim["people_count"]}
            for claim in current["claims"]
        ],
    }
    print(
        f"incident {incident.public_id}: {len(nested['places'])} places, {len(nested['claims'])} claims; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for name, body in (("counts", {}), ("places+claims", nested)):
        timings = []
        for run in range(arguments.runs):
            version = client.get(url).json()["version"]
            payload = {"people_count": 100 + run % 7, "count_qualifier": "about", **body}
            started = time.perf_counter()
            answer = client.patch(
                url, json.dumps(payload), content_type="application/json", HTTP_IF_MATCH=f'"{version}"'
            )
            timings.append((time.perf_counter() - started) * 1000)
            if answer.status_code != 200:
                raise SystemExit(f"{name}: {answer.status_code} {answer.content[:300]!r}")
        timings.sort()
        p95 = timings[min(len(timings) - 1, round(0.95 * len(timings)) - 1)]
        print(
            f"PATCH {name}: p50 {statistics.median(timings):.1f} ms, p95 {p95:.1f} ms; "
            f"load average {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main(ARGUMENTS)
