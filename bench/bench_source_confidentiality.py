"""Server time of making a source confidential, and public again, through the API, by how many
incidents cite it: such a change starts a new version of every citing incident (so that a writer
who read its claims before cannot delete one they were never shown), and their export rows and
search words are made again.

For each --cited N: a new source is cited once on each of N published incidents (not timed), then a
Reviewer's PATCH makes it confidential and the next public again, --runs times each, all in one
transaction rolled back at the end: the database is left as it was. In-process through the WSGI
application, as the `bench` superuser with a token, against whatever DATABASE_URL points to:

    DATABASE_URL=postgres://… .venv/bin/python bench/bench_source_confidentiality.py --cited 100 1000 10000
"""

import argparse
import json
import os
import statistics
import time

from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
PARSER.add_argument("--cited", type=int, nargs="+", default=[100, 1000, 10000])
PARSER.add_argument("--runs", type=int, default=3)
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import transaction  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.services import token_create  # noqa: E402
from incidents.models import Claim, Incident, Source  # noqa: E402


def main(arguments: argparse.Namespace):
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_superuser": True, "is_staff": True}
    )
    # A staff token, as made after its second factor (staff tokens without one are refused).
    _, key = token_create(user=user, name="bench_source_confidentiality", second_factor=True)
    client = Client(HTTP_AUTHORIZATION=f"Token {key}", HTTP_HOST="localhost")
    for cited in arguments.cited:
        with transaction.atomic():
            source = Source.objects.create(title="Bench wire service", kind="news_article")
            incident_ids = Incident.objects.filter(review_state="published").order_by("id").values_list("id", flat=True)
            Claim.objects.bulk_create(
                Claim(incident_id=incident_id, source=source, source_connection="third_party")
                for incident_id in incident_ids[:cited]
            )
            url = f"/api/v1/sources/{source.pk}/"
            timings = {True: [], False: []}
            for _ in range(arguments.runs):
                for confidential in (True, False):
                    version = client.get(url).json()["version"]
                    started = time.perf_counter()
                    answer = client.patch(
                        url,
                        json.dumps({"confidential": confidential}),
                        content_type="application/json",
                        HTTP_IF_MATCH=f'"{version}"',
                    )
                    timings[confidential].append(time.perf_counter() - started)
                    if answer.status_code != 200:
                        raise SystemExit(f"{cited}: {answer.status_code} {answer.content[:300]!r}")
            transaction.set_rollback(True)
        print(
            f"cited by {cited} incidents: made confidential "
            + ", ".join(f"{seconds:.2f}" for seconds in timings[True])
            + " s (median "
            + f"{statistics.median(timings[True]):.2f}); made public "
            + ", ".join(f"{seconds:.2f}" for seconds in timings[False])
            + f" s (median {statistics.median(timings[False]):.2f}); load average {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main(ARGUMENTS)
