"""Reads from a real PostgreSQL streaming replica (tracker/replicas.py).

`.ci/run` starts one (`scripts/replica start`), names it in DATABASE_REPLICA_URLS and sets
TRACKER_TEST_REPLICA=required. Without a replica these tests are skipped, or fail when it is required.
The test database is created on the primary and reaches the replica by streaming; the replica's
alias is a test mirror, so it reads that same database there.
"""

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections

from incidents import roles
from incidents.models import ConfidentialAccess
from tests.api_support import API, client_for, incident_url, results
from tests.factories import make_incident, make_user
from tests.test_duplicates_background import ORIGINAL, TASKS, TWIN, make_tumen, run_worker, waiting_pairs
from tracker.replicas import replica_health

REPLICAS = list(settings.DATABASE_REPLICAS)
REQUIRED = os.environ.get("TRACKER_TEST_REPLICA") == "required"
REPLICA_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "replica"

pytestmark = [
    pytest.mark.replica,
    pytest.mark.skipif(
        not REPLICAS and not REQUIRED, reason="no DATABASE_REPLICA_URLS (start one with scripts/replica start)"
    ),
    # Committed writes, which a replica can receive; the replica's own alias is a mirror, never flushed.
    pytest.mark.django_db(transaction=True, databases=["default", *REPLICAS]),
    # One pytest-xdist worker runs them all, one after the other: a pause of the replica's replay is
    # the whole replica's, so another worker's test resuming it would end this one's pause.
    pytest.mark.xdist_group("replica"),
]


def query(alias: str, sql: str, params=()):
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def wait_until(condition, what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"Timed out waiting for {what}."
        time.sleep(0.05)


def received(alias: str, *, replayed: bool) -> None:
    """Wait until the replica has received (and, if `replayed`, applied) everything the primary wrote.
    Up to the WAL's insert position, not its write position: the test database commits without
    waiting for the disk (tests/conftest.py), so a commit just made may not be written yet, and the
    replica, which is sent only what is, answered without it (a 404 for the incident just made)."""
    lsn = query("default", "SELECT pg_current_wal_insert_lsn()::text")
    function = "pg_last_wal_replay_lsn" if replayed else "pg_last_wal_receive_lsn"
    wait_until(lambda: query(alias, f"SELECT {function}() >= %s::pg_lsn", [lsn]), f"the replica's {function}")


@pytest.fixture
def replica():
    if not REPLICAS:
        pytest.fail("TRACKER_TEST_REPLICA=required, but DATABASE_REPLICA_URLS names no replica.")
    replica_health.forget()
    yield REPLICAS[0]
    replica_health.forget()


@contextmanager
def replay_paused(alias: str):
    """The replica keeps receiving the primary's changes but applies none: what it answers is older."""
    received(alias, replayed=True)
    query(alias, "SELECT pg_wal_replay_pause()::text")
    try:
        yield
    finally:
        query(alias, "SELECT pg_wal_replay_resume()::text")


def title_read_by(client, incident) -> str:
    response = client.get(incident_url(incident))
    assert response.status_code == 200, response.content
    return response.json()["title"]


def test_every_alias_uses_the_connection_pool(replica):
    assert connections["default"].pool is not None
    assert connections[replica].pool is not None


def test_reads_are_served_by_the_replica(replica):
    incident = make_incident(title="As first reported")
    with replay_paused(replica):
        incident.__class__.objects.filter(pk=incident.pk).update(title="Corrected on the primary")
        assert title_read_by(client_for(), incident) == "As first reported"
    received(replica, replayed=True)
    assert title_read_by(client_for(), incident) == "Corrected on the primary"


def test_a_writer_reads_its_own_write_at_once_and_others_read_the_replica(replica):
    reviewer = make_user(roles.REVIEWER)
    incident = make_incident(title="As first reported")
    writer = client_for(reviewer)
    with replay_paused(replica):
        response = writer.patch(
            incident_url(incident), {"title": "Corrected by the reviewer"}, HTTP_IF_MATCH=f'"{incident.version}"'
        )
        assert response.status_code == 200, response.content
        # The version check and the write ran on the primary although the replica is behind.
        assert response.json()["version"] == incident.version + 1
        assert title_read_by(writer, incident) == "Corrected by the reviewer"
        assert title_read_by(client_for(), incident) == "As first reported"


def test_the_background_worker_rescores_a_write_from_the_primary_while_the_replica_is_behind(replica, settings):
    settings.TASKS = TASKS  # the database queue, as deployed
    tumen = make_tumen()
    original = make_incident(**ORIGINAL, places=[tumen])
    # Reported a month later at first: no candidate of the original.
    twin = make_incident(**TWIN, places=[tumen], date_start="2023-09-29", date_end="2023-09-29")
    with replay_paused(replica):
        response = client_for(make_user(roles.REVIEWER)).patch(
            incident_url(twin),
            {"date_start": "2023-08-29", "date_end": "2023-08-29"},
            format="json",
            HTTP_IF_MATCH='"1"',
        )
        assert response.status_code == 200, response.content
        # On the replica the twin is still a month away; the worker reads the primary.
        run_worker()
        assert waiting_pairs() == {(original.pk, twin.pk)}


def test_a_confidential_page_read_from_the_replica_is_recorded_on_the_primary(replica):
    # On the primary, a page and the record of what it shows are one statement; a replica can
    # write nothing, so there the page is read and its record written on the primary after it.
    reviewer = make_user(roles.REVIEWER, confidential=True)
    reader = client_for(reviewer)  # its token, on the replica too before the pause
    secret = make_incident(title="As first reported", confidential=True)
    with replay_paused(replica):
        secret.__class__.objects.filter(pk=secret.pk).update(title="Corrected on the primary")
        assert [row["title"] for row in results(reader.get(f"{API}/incidents/"))] == ["As first reported"]
    (access,) = ConfidentialAccess.objects.using("default").all()
    assert (access.user, access.incident_ids) == (reviewer, [secret.pk])


def test_reads_fall_back_to_the_primary_when_the_replica_lags(replica, settings):
    settings.DATABASE_REPLICA_MAX_LAG_SECONDS = 0
    incident = make_incident(title="As first reported")
    with replay_paused(replica):
        incident.__class__.objects.filter(pk=incident.pk).update(title="Corrected on the primary")
        received(replica, replayed=False)
        assert title_read_by(client_for(), incident) == "Corrected on the primary"


def test_anonymous_clients_are_counted_on_the_primary_while_the_replica_is_behind(replica, settings):
    # The shared cache as deployed without Redis: a table, which a replica also holds.
    settings.CACHES = {"default": {"BACKEND": "tracker.cache.PostgreSQLCache", "LOCATION": "tracker_cache"}}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": "2/minute"}}
    client = client_for()
    with replay_paused(replica):
        # Each request's count is written on the primary; read on the replica, which applies none of
        # them, every request found no earlier one and the client was never held.
        assert [client.get(f"{API}/incidents/").status_code for _ in range(4)] == [200, 200, 429, 429]


@contextmanager
def sender_stalled(alias: str):
    """The primary's WAL sender to the replica stops (SIGSTOP), as a stalled network would: the
    replica still streams, has replayed all it was sent, and is sent nothing more."""
    received(alias, replayed=True)
    slot = query(alias, "SELECT slot_name FROM pg_stat_wal_receiver")
    sender = query("default", "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [slot])
    os.kill(sender, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(sender, signal.SIGCONT)


def test_reads_fall_back_to_the_primary_when_the_replica_receives_nothing_more(replica, settings):
    settings.DATABASE_REPLICA_MAX_LAG_SECONDS = 1
    settings.DATABASE_REPLICA_CHECK_SECONDS = 0
    incident = make_incident(title="As first reported")
    with sender_stalled(replica):
        incident.__class__.objects.filter(pk=incident.pk).update(title="Corrected on the primary")
        time.sleep(1.5)  # beyond the bound since the replica's last transaction
        assert query(replica, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
        assert title_read_by(client_for(), incident) == "Corrected on the primary"
    received(replica, replayed=True)
    assert title_read_by(client_for(), incident) == "Corrected on the primary"


def replica_server(action: str, alias: str) -> None:
    port = connections[alias].settings_dict["PORT"]
    subprocess.run([REPLICA_SCRIPT, action], check=True, env={**os.environ, "REPLICA_PORT": str(port)})


def test_reads_fall_back_to_the_primary_when_the_replica_is_down(replica, settings, caplog):
    # Known healthy for the whole test: the failure is met mid-request, not by a health check.
    settings.DATABASE_REPLICA_CHECK_SECONDS = 3600
    incident = make_incident(title="As first reported")
    received(replica, replayed=True)
    # A real server answers the reader, not the test: the test client re-raises the first
    # attempt's error, which a server logs and the reader never sees.
    reader = client_for()
    reader.raise_request_exception = False
    assert title_read_by(reader, incident) == "As first reported"  # the replica is now known healthy
    replica_server("stop", replica)
    try:
        incident.__class__.objects.filter(pk=incident.pk).update(title="Corrected on the primary")
        # Its pooled connection fails mid-request: answered again from the primary.
        assert title_read_by(reader, incident) == "Corrected on the primary"
        assert [record.status_code for record in caplog.records if record.name == "django.request"] == [500]
        # Then known down until its next check: straight to the primary.
        assert title_read_by(reader, incident) == "Corrected on the primary"
    finally:
        replica_server("start", replica)
        connections[replica].close()
    received(replica, replayed=True)
