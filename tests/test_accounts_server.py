"""Throttling and lockout through the real server: gunicorn with two worker processes, on a free
port of 127.0.0.1, against this test database. Counters kept in one worker's memory would let
about twice the limit through; these tests fail unless every worker shares them.

Each test sends a bounded number of requests and stops the server itself."""

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection

from accounts.models import ApiToken
from incidents import roles
from tests.database_support import this_test_database_url
from tests.factories import make_user
from tests.test_accounts import app_code, enrol

PASSWORD = "correct horse battery staple"
BASE_DIR = Path(__file__).resolve().parent.parent


class Server:
    def __init__(self, url: str, access_log: Path):
        self.url = url
        self.access_log = access_log

    def worker_pids(self, path: str) -> list[str]:
        """The worker process that answered each request for `path` (from gunicorn's access log)."""
        lines = self.access_log.read_text().splitlines()
        return [line.split()[0] for line in lines if line.split()[2] == path]

    def assert_each_request_had_its_own_worker(self, path: str) -> None:
        """What the counters' limits held to, they held across processes: no two requests for
        `path` were answered by the same one."""
        pids = self.worker_pids(path)
        assert len(pids) > 2 and len(set(pids)) == len(pids), pids


def make_server_user(role=None, **fields):
    """A user whose password the server can check. Its hashers are the production ones (not the
    tests' fast MD5), and a PBKDF2 hash carries its own iteration count: a small one keeps each
    wrong guess cheap."""
    user = make_user(role, **fields)
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt(), iterations=1000)
    user.save(update_fields=["password"])
    return user


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server_environment():
    """Variables for the server beyond the database; a test adds its own before starting it."""
    return {
        "TRACKER_API_ANON_RATE": "20/minute",
        "TRACKER_API_USER_RATE": "20/minute",
    }


@pytest.fixture
def gunicorn(transactional_db, server_environment, tmp_path):
    """gunicorn with two workers on this test database, each process answering one request. DEBUG
    stays on so static files need no collectstatic; throttling and lockout do not depend on it."""
    port, access_log = free_port(), tmp_path / "access.log"
    # The server's throttle counters live in the shared cache table, which no test flush empties.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tracker_cache")
    environment = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": this_test_database_url(),
        "DJANGO_DEBUG": "1",
        **server_environment,
    }
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "tracker.wsgi:application",
            "--workers", "2", "--bind", f"127.0.0.1:{port}",
            # Each worker answers one request and is replaced by a fresh process (forked from the
            # loaded application): which of two workers accepts a connection is the kernel's
            # choice, and one of them took all of a test's requests in a CI run, so that nothing
            # showed the counters to be shared. Now every request is another process's.
            "--max-requests", "1", "--preload",
            # Its quick shutdown kills a worker still running after this, where the default (30 s)
            # outlasted the wait below: a worker forked a moment before the shutdown may not yet
            # answer the signal (a CI run's teardown timed out so, and left the server running).
            "--graceful-timeout", "5",
            "--access-logfile", str(access_log), "--access-logformat", "%(p)s %(s)s %(U)s",
        ],
        cwd=BASE_DIR, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read().decode()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start within 30 s"
                time.sleep(0.2)
        yield Server(url, access_log)
    finally:
        process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown: nothing is left to finish
        process.wait(timeout=30)
        process.stderr.close()


def request(url: str, *, data: dict | None = None, headers: dict | None = None, opener=None) -> tuple[int, str]:
    """Status and body of one request; a fresh connection each time, as separate clients make."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with (opener or urllib.request.build_opener()).open(req, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_anonymous_limit_holds_across_workers_and_forged_forwarded_for(gunicorn):
    statuses = [
        request(f"{gunicorn.url}/api/v1/incident-types/", headers={"X-Forwarded-For": f"192.0.2.{n}"})[0]
        for n in range(40)
    ]
    assert statuses.count(200) == 20 and statuses.count(429) == 20
    gunicorn.assert_each_request_had_its_own_worker("/api/v1/incident-types/")


def browser() -> urllib.request.OpenerDirector:
    """A client that keeps its cookies (the session, CSRF) and follows redirects, as a browser."""
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))


def post_form(server: Server, path: str, form: dict, client_address: str, opener) -> tuple[int, str]:
    """Open the form at `path`, then post `form` with its CSRF field, as a browser does, from
    `client_address` as the declared proxy reports it."""
    headers = {"X-Forwarded-For": client_address}
    _, page = request(f"{server.url}{path}", headers=headers, opener=opener)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = {**form, "csrfmiddlewaretoken": csrf}
    return request(f"{server.url}{path}", data=form, headers={**headers, "Referer": server.url}, opener=opener)


def admin_sign_in(server: Server, username: str, password: str, client_address: str, opener=None) -> tuple[int, str]:
    """Sign in on the admin's login page as a browser does."""
    form = {"username": username, "password": password, "next": "/admin/"}
    return post_form(server, "/admin/login/", form, client_address, opener or browser())


@pytest.mark.parametrize("server_environment", [{"TRACKER_PROXY_COUNT": "1"}])
def test_five_wrong_admin_passwords_lock_the_account_for_that_client_on_every_worker(gunicorn):
    make_server_user(roles.ANALYST, username="analyst")
    attacker, analyst = "203.0.113.66", "198.51.100.7"
    statuses = [admin_sign_in(gunicorn, "analyst", "guess", attacker)[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    status, page = admin_sign_in(gunicorn, "analyst", PASSWORD, attacker)
    assert status == 429 and "Too many failed sign-in attempts" in page
    # The analyst, from their own address, is not locked out.
    status, page = admin_sign_in(gunicorn, "analyst", PASSWORD, analyst)
    assert status == 200 and "Records" in page
    gunicorn.assert_each_request_had_its_own_worker("/admin/login/")


@pytest.mark.parametrize("server_environment", [{"TRACKER_PROXY_COUNT": "1"}])
def test_the_token_endpoint_locks_out_and_is_throttled_across_workers(gunicorn):
    for username in ["partner", *(f"user{n}" for n in range(6))]:
        make_server_user(username=username)
    url, attacker = f"{gunicorn.url}/api/v1/auth/token/", {"X-Forwarded-For": "203.0.113.66"}
    statuses = [request(url, data={"username": "partner", "password": "guess"}, headers=attacker)[0] for _ in range(5)]
    assert statuses == [400, 400, 400, 400, 429]
    status, body = request(url, data={"username": "partner", "password": PASSWORD}, headers=attacker)
    assert status == 429 and "Too many failed sign-in attempts" in json.loads(body)["detail"]
    # Other accounts from that address: refused by the throttle (10 a minute) once it is spent.
    statuses = [request(url, data={"username": f"user{n}", "password": "x"}, headers=attacker)[0] for n in range(6)]
    assert statuses == [400, 400, 400, 400, 429, 429]
    status, body = request(
        url, data={"username": "partner", "password": PASSWORD}, headers={"X-Forwarded-For": "198.51.100.7"}
    )
    assert status == 200 and json.loads(body)["token"].startswith("trk_")
    gunicorn.assert_each_request_had_its_own_worker("/api/v1/auth/token/")


def wait_for_an_attempt_in_turn() -> None:
    """Until a worker holds a sign-in attempt's turn (its advisory lock): the fifth guess is then
    past django-axes' check and into its slow hash. A fixed pause before sending the sixth was not
    enough on a loaded machine, where the fifth's worker could still be starting when the sixth
    arrived, so that the sixth was rightly the fifth attempt and signed in."""
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                # This test's database only: a test of another process may hold such a lock in its own.
                "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid::int = hashtext('accounts.sign_in') AND objsubid = 2)"
            )
            if cursor.fetchone()[0]:
                return
            assert time.monotonic() < deadline, "no sign-in attempt took its turn within 30 s"
            time.sleep(0.05)


# An anonymous request's statements are bounded (tracker/statement_timeout.py), a wait for the
# attempt before it not: the bound, far shorter than the slow hash here, must not cut it short. It
# is the whole request's, a sign-in's other statements included: room for them on a busy machine.
@pytest.mark.parametrize("server_environment", [{"TRACKER_PROXY_COUNT": "1", "TRACKER_ANON_STATEMENT_TIMEOUT": "500"}])
@pytest.mark.parametrize(
    ("door", "sixth_written"),
    [
        ("token", "target"),
        ("admin", "target"),
        # The admin's login reads the username as Django's form does (spaces around it dropped,
        # NFKC: "target" in full-width letters is "target"), and django-axes counts it so; the attempts
        # waited for each other by the username as typed, so a sixth guess written otherwise did not
        # wait for the fifth, met the count before it, and signed in.
        ("admin", " target "),
        ("admin", "\uff54\uff41\uff52\uff47\uff45\uff54"),
    ],
)
def test_a_guess_sent_with_another_meets_the_lockout_the_other_reached(gunicorn, door, sixth_written):
    # django-axes checks the count before the password and adds to it a password hash's time later:
    # guesses sent at once were each checked against a count the others had not yet added to, so
    # all of them got their try, however many were sent. Here the fifth guess is wrong and a sixth,
    # the right password, follows it while its hash runs on the other worker: one after another,
    # the fifth locks and the sixth is refused; at once, the sixth signed in.
    user = make_server_user(roles.ANALYST if door == "admin" else None, username="target")
    attacker = "203.0.113.66"

    def attempt(password: str, username: str = "target") -> tuple[int, str]:
        if door == "admin":
            return admin_sign_in(gunicorn, username, password, attacker)
        form = {"username": username, "password": password}
        return request(f"{gunicorn.url}/api/v1/auth/token/", data=form, headers={"X-Forwarded-For": attacker})

    assert [attempt("x")[0] for _ in range(4)] == [200 if door == "admin" else 400] * 4
    # A slow hash (a production one takes about as long) holds the fifth guess on its worker.
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt(), iterations=3_000_000)
    user.save(update_fields=["password"])

    with ThreadPoolExecutor(2) as pool:
        fifth = pool.submit(attempt, "y")
        wait_for_an_attempt_in_turn()
        sixth = pool.submit(attempt, PASSWORD, sixth_written)
        assert fifth.result()[0] == 429
        status, body = sixth.result()

    assert status == 429 and "Too many failed sign-in attempts" in body
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("server_environment", [{"TRACKER_PROXY_COUNT": "1", "TRACKER_LOCKOUT_ACCOUNT_FAILURES": "5"}])
def test_a_guess_from_another_address_sent_with_another_meets_the_account_bound_the_other_reached(gunicorn):
    # A botnet sends each guess from another address: attempts taken in turn only by account and
    # address each met the account's wide bound as it was before the others, however many at once.
    user = make_server_user(None, username="target")

    def attempt(password: str, address: str) -> tuple[int, str]:
        form = {"username": "target", "password": password}
        return request(f"{gunicorn.url}/api/v1/auth/token/", data=form, headers={"X-Forwarded-For": address})

    assert [attempt("x", f"203.0.113.{host}")[0] for host in range(1, 5)] == [400] * 4
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt(), iterations=3_000_000)
    user.save(update_fields=["password"])

    with ThreadPoolExecutor(2) as pool:
        fifth = pool.submit(attempt, "y", "203.0.113.5")
        wait_for_an_attempt_in_turn()
        sixth = pool.submit(attempt, PASSWORD, "192.0.2.6")
        assert fifth.result()[0] == 429
        status, body = sixth.result()

    assert status == 429 and "Too many failed sign-in attempts recently for this account" in body
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("server_environment", [{"TRACKER_PROXY_COUNT": "1", "TRACKER_REQUIRE_2FA": "1"}])
def test_five_wrong_second_factor_codes_lock_the_account_for_that_client_on_every_worker(gunicorn):
    analyst = make_server_user(roles.ANALYST, username="analyst")
    device, _ = enrol(analyst)
    attacker, analysts_own = "203.0.113.66", "198.51.100.7"
    # The stolen password is accepted: the next step asks for the app's code.
    thief = browser()
    status, page = admin_sign_in(gunicorn, "analyst", PASSWORD, attacker, thief)
    assert status == 200 and 'name="code"' in page
    wrong = f"{(int(app_code(device)) + 500_000) % 1_000_000:06d}"
    second_step = "/accounts/two-factor/?next=/admin/"
    statuses = [post_form(gunicorn, second_step, {"code": wrong}, attacker, thief)[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    # Locked for that client, the right code included, whichever worker answers.
    status, page = post_form(gunicorn, second_step, {"code": app_code(device)}, attacker, thief)
    assert status == 429 and "Too many failed sign-in attempts" in page
    # django-otp also makes the app's next code wait a few seconds after failures, whoever types
    # it: the analyst comes back after that.
    device.refresh_from_db()
    device.throttle_reset()
    # The analyst, from their own address, signs in with both factors (the app's next code: the
    # one shown now was spent on setting it up, and a code is good once).
    own = browser()
    admin_sign_in(gunicorn, "analyst", PASSWORD, analysts_own, own)
    status, page = post_form(gunicorn, second_step, {"code": app_code(device, steps_ahead=1)}, analysts_own, own)
    assert status == 200 and "Records" in page
    gunicorn.assert_each_request_had_its_own_worker("/accounts/two-factor/")
