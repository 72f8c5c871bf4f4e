"""Releases: the time and peak memory of making one, and of downloading its largest file.

Usage (DATABASE_URL set): python bench/bench_release.py [--runs N]
Each measure runs as its own process, whose peak resident memory is read with `os.wait4`:
- **baseline**: Django set up, the bench user found, nothing else (what every process holds);
- **build**: `releases.release_create` of the published data now, as the bench user (a
  superuser), rolled back, so the database is left as it was;
- **download**: `incidents.csv` of the latest release, through the API (Django's test client, the
  response read to its end and hashed), when the database holds a release (`manage.py release`);
- **zip**: the latest release as one zip, the same way (every file, written into the zip as read).
Run with `DJANGO_DEBUG=0` (and a `DJANGO_SECRET_KEY`) for production figures: with DEBUG on, Django
keeps every statement it runs, which for a build is its files' contents again.
"""

import argparse
import hashlib
import sys
import time

from django_setup import setup_django

PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
PARSER.add_argument("--runs", type=int, default=2, help="runs of each measure")
PARSER.add_argument("--child", choices=["baseline", "build", "download", "zip"], help=argparse.SUPPRESS)
# Read before Django is set up, so that --help and a refused argument answer at once.
ARGUMENTS = PARSER.parse_args() if __name__ == "__main__" else None
setup_django()

from demo_rows import peak_rss_mb  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import transaction  # noqa: E402
from django.test import Client  # noqa: E402

from incidents.models import Release  # noqa: E402
from incidents.releases import release_create  # noqa: E402


def child(measure: str) -> None:
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_superuser": True, "is_staff": True}
    )
    started = time.perf_counter()
    if measure == "build":
        with transaction.atomic():
            release = release_create(user=user)
            megabytes = sum(release.files.values_list("size", flat=True)) / 1e6
            print(f"  {release.incidents:,} incidents, {megabytes:.1f} MB of files")
            transaction.set_rollback(True)
    elif measure == "download":
        latest = Release.objects.first()
        response = Client().get(f"/api/v1/releases/{latest.name}/files/incidents.csv/", secure=True)
        digest, size = hashlib.sha256(), 0
        # In one piece before downloads streamed (main before 2026-12-03): the bench compares both.
        for chunk in response.streaming_content if response.streaming else [response.content]:
            digest.update(chunk)
            size += len(chunk)
        response.close()
        assert response.status_code == 200 and digest.hexdigest() == response["ETag"].strip('"'), response
        print(f"  {latest.name}/incidents.csv, {size / 1e6:.1f} MB")
    elif measure == "zip":
        latest = Release.objects.first()
        response = Client().get(f"/api/v1/releases/{latest.name}/zip/", secure=True)
        digest, size = hashlib.sha256(), 0
        for chunk in response.streaming_content:
            digest.update(chunk)
            size += len(chunk)
        response.close()
        assert response.status_code == 200 and digest.hexdigest() == response["ETag"].strip('"'), response
        print(f"  {latest.name}.zip, {size / 1e6:.1f} MB")
    print(f"  {time.perf_counter() - started:.2f} s")


def main(arguments: argparse.Namespace):
    if arguments.child:
        child(arguments.child)
        return
    measures = ["baseline", "build"] + (["download", "zip"] if Release.objects.exists() else [])
    for measure in measures:
        for run in range(1, arguments.runs + 1):
            print(f"{measure}, run {run}:")
            print(f"  peak RSS {peak_rss_mb([sys.executable, __file__, '--child', measure]):.0f} MB")
    if "download" not in measures:
        print("download: no release in this database (make one with `manage.py release --user NAME`).")


if __name__ == "__main__":
    main(ARGUMENTS)
