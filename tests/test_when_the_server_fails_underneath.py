"""The deployment when something underneath fails: a command stopped by a signal, a disk with no room,
a temporary directory that cannot be written."""

import io
import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from rest_framework.test import APIClient

from incidents import roles
from incidents.models import Release
from tests.database_support import this_test_database_address, this_test_database_url
from tests.factories import make_user
from tests.test_csv import files_open_in, files_written_at_most, make_incidents_for_chunks
from tests.test_settings import start_up
from tracker import backup

# The commands run in their own processes, reading what this test committed.
pytestmark = pytest.mark.django_db(transaction=True)


def wait_until(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def test_a_backup_stopped_by_sigterm_leaves_no_file(tmp_path):
    # cron's timeout, systemd stopping a unit and `kill` send SIGTERM, which Python's default ends the
    # process at once on: the `.backup-….partial` stayed, as large as the dump had come, for every
    # backup stopped so (the README: "A backup whose write fails midway leaves no file"; "stopped
    # midway (Ctrl-C, cron's timeout, …)").
    call_command("loaddata", "sample", verbosity=0)
    environment = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": this_test_database_url(),
        "TRACKER_BACKUP_KEY": backup.new_key(),
    }
    with psycopg.connect(**this_test_database_address()) as holder:
        # pg_dump waits for this lock: the backup is stopped while it runs, its file begun.
        holder.execute("LOCK TABLE incidents_incident IN ACCESS EXCLUSIVE MODE")
        with subprocess.Popen(
            [sys.executable, "manage.py", "backup", "-o", str(tmp_path / "tracker.backup")],
            cwd=settings.BASE_DIR,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as command:
            try:
                with psycopg.connect(**this_test_database_address(), autocommit=True) as watcher:
                    wait_until(
                        lambda: watcher.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' "
                            "AND wait_event_type = 'Lock'"
                        ).fetchone()[0]
                    )
                assert [path.name.endswith(".partial") for path in tmp_path.iterdir()] == [True]
                command.send_signal(signal.SIGTERM)
                command.wait(timeout=30)
            finally:
                command.kill()
    assert command.returncode != 0
    assert list(tmp_path.iterdir()) == []


def test_a_release_whose_files_cannot_all_be_written_leaves_no_cut_off_file(tmp_path):
    # `release --output` wrote each file under its own name as it went: a full disk left a cut-off
    # incidents.csv (whole rows, a valid CSV, only shorter) and a cut-off zip under the release's
    # names, for a deposit script to take for the release.
    make_incidents_for_chunks(300)  # an incidents.csv of some 120 KB
    reviewer = make_user(roles.REVIEWER)
    with files_written_at_most(16 * 1024), pytest.raises(CommandError, match="is released, but its files could not"):
        call_command("release", user=reviewer.username, output=str(tmp_path), stdout=io.StringIO())
    name = Release.objects.get().name
    written = {path.relative_to(tmp_path).as_posix(): path.stat().st_size for path in tmp_path.rglob("*")}
    files = {f"{name}/{file.name}": file.size for file in Release.objects.get().files.all()}
    # What stays is whole: the files written before the disk filled, none cut off (nor the zip,
    # written after them all).
    assert tmp_path / name in tmp_path.iterdir()
    assert {path: size for path, size in written.items() if path != name and files.get(path) != size} == {}


ADMIN_IMPORT_URL = "/admin/incidents/incident/import/"


def test_an_import_upload_that_finds_no_room_is_told_so_and_leaves_nothing(tmp_path, settings):
    # A file over FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) is written to the temporary directory as it
    # arrives. With no room there, the analyst got the bare "Server error" page, which says it is
    # nobody's fault and names nothing, and the operator a traceback.
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    client = Client(raise_request_exception=False)
    client.force_login(make_user(roles.REVIEWER))
    content = b"title,incident_type\n" + b"A title,forced-repatriation\n" * 100_000  # 2.8 MB
    with files_written_at_most(64 * 1024):
        response = client.post(ADMIN_IMPORT_URL, {"file": io.BytesIO(content)})
    assert (response.status_code, response.get("Retry-After")) == (503, "60")
    assert "no room to receive the file" in response.content.decode()
    assert list(tmp_path.iterdir()) == [] and files_open_in(tmp_path) == []


# Off (None), the rate counts nothing, and has nothing to take back.
@pytest.mark.parametrize("rate", ["2/hour", None])
def test_an_export_that_finds_no_room_does_not_spend_the_clients_export_rate(tmp_path, settings, rate):
    # The README: the rate is "counted only once a slot is taken, so a client that a busy server sent
    # away, and that comes back after Retry-After, has not spent its rate on downloads never run".
    # Sent away for want of room, it had: a partner tool coming back each Retry-After (60 s) while
    # the disk was full spent its 20 an hour, and was refused for the rest of the hour once it
    # was freed.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"export": rate}}
    settings.EXPORT_SPOOL_DIR = str(tmp_path)
    make_incidents_for_chunks(300)  # some 120 KB of CSV
    client = APIClient()
    with files_written_at_most(16 * 1024):
        assert [client.get("/api/v1/incidents.csv").status_code for _ in range(2)] == [503, 503]
    served = client.get("/api/v1/incidents.csv")
    assert served.status_code == 200
    served.close()


def test_an_export_spool_dir_the_server_may_not_write_in_stops_the_start_up():
    # Only its being a directory was checked: one the server's account may not write in (another
    # account's, a read-only filesystem) started, then answered every export and release download
    # 500. sysfs lets no one create a file, root included.
    refused = start_up(TRACKER_EXPORT_SPOOL_DIR="/sys")
    assert refused.returncode != 0
    assert "TRACKER_EXPORT_SPOOL_DIR: cannot write a file in '/sys': Permission denied." in refused.stderr
