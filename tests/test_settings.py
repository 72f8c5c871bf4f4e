"""The README's promise for every variable of its Configuration table: a bad value stops the start-up
with an error naming the variable, rather than failing the requests that read it later."""

import os
import re
import selectors
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from tests.database_support import database_url, this_test_database_address
from tests.test_accounts_server import free_port


def start_up(*command: str, **variables) -> subprocess.CompletedProcess:
    """`manage.py check` (or `command`) in a child process: the settings read anew from this environment."""
    environment = {**os.environ, "DJANGO_DEBUG": "1", **variables}
    return subprocess.run(
        [sys.executable, "manage.py", *(command or ["check"])],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        # Each of these started, then answered every request that read it with a traceback or a refusal:
        # a negative statement timeout every anonymous page (PostgreSQL refuses it), a page size of 0 every
        # API list, a largest page size of 0 every `page_size`, a row limit of 0 every import.
        ("TRACKER_ANON_STATEMENT_TIMEOUT", "-5", "TRACKER_ANON_STATEMENT_TIMEOUT must be 0 or more; got -5."),
        ("TRACKER_API_PAGE_SIZE", "0", "TRACKER_API_PAGE_SIZE must be 1 or more; got 0."),
        ("TRACKER_API_MAX_PAGE_SIZE", "0", "TRACKER_API_MAX_PAGE_SIZE must be 1 or more; got 0."),
        ("TRACKER_IMPORT_MAX_ROWS", "0", "TRACKER_IMPORT_MAX_ROWS must be 1 or more; got 0."),
        ("DATABASE_POOL_SIZE", "x", "DATABASE_POOL_SIZE must be an integer; got 'x'."),
        # The default page (50) larger than any page a client may ask for.
        (
            "TRACKER_API_MAX_PAGE_SIZE",
            "20",
            "TRACKER_API_MAX_PAGE_SIZE (20) must be at least TRACKER_API_PAGE_SIZE (50), the page every list "
            "gives unasked.",
        ),
        # The public site's rate, read as the API's are.
        (
            "TRACKER_PUBLIC_ANON_RATE",
            "120/min",
            "TRACKER_PUBLIC_ANON_RATE must look like 60/minute (second, minute, hour, day) or off; got '120/min'.",
        ),
        # A digit to isdigit(), not to DRF's int(): every throttled request was a 500.
        (
            "TRACKER_PUBLIC_ANON_RATE",
            "²/minute",
            "TRACKER_PUBLIC_ANON_RATE must look like 60/minute (second, minute, hour, day) or off; got '²/minute'.",
        ),
    ],
)
def test_a_value_out_of_range_stops_the_start_up_naming_the_variable(variable, value, message):
    result = start_up(**{variable: value})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        # Each of these started, then failed what reads it with a traceback: PostgreSQL refuses a
        # statement timeout beyond 2^31-1 ms (every anonymous page); a token or a setup link expiring
        # past the year 9999 (every token, every link); a staff session alike (every staff sign-in).
        (
            "TRACKER_ANON_STATEMENT_TIMEOUT",
            "3000000000",
            "TRACKER_ANON_STATEMENT_TIMEOUT must be 2147483647 or less; got 3000000000.",
        ),
        ("TRACKER_API_TOKEN_DAYS", "100000000", "TRACKER_API_TOKEN_DAYS must be 36500 or less; got 100000000."),
        ("TRACKER_SETUP_LINK_DAYS", "100000000", "TRACKER_SETUP_LINK_DAYS must be 36500 or less; got 100000000."),
        (
            "TRACKER_STAFF_SESSION_SECONDS",
            "1000000000000",
            "TRACKER_STAFF_SESSION_SECONDS must be 3153600000 or less; got 1000000000000.",
        ),
        # This one stopped the start-up, with a traceback naming no variable.
        (
            "TRACKER_LOCKOUT_MINUTES",
            "10000000000000",
            "TRACKER_LOCKOUT_MINUTES must be 52560000 or less; got 10000000000000.",
        ),
        # An OverflowError naming no variable.
        ("DATABASE_POOL_TIMEOUT", "99999999999999999999", "DATABASE_POOL_TIMEOUT must be 86400 or less; got "),
        # Past a bigint, a LIMIT or an OFFSET: every list, every wrong password, a 500.
        ("TRACKER_API_MAX_PAGE_SIZE", "99999999999999999999", "TRACKER_API_MAX_PAGE_SIZE must be 10000 or less; got "),
        (
            "TRACKER_LOCKOUT_ACCOUNT_FAILURES",
            "99999999999999999999",
            "TRACKER_LOCKOUT_ACCOUNT_FAILURES must be 10000 or less; got ",
        ),
        # A cookie date past the year 9999 (every write, with a replica), a read buffer past memory.
        (
            "DATABASE_REPLICA_PIN_SECONDS",
            "1000000000000",
            "DATABASE_REPLICA_PIN_SECONDS must be 86400 or less; got 1000000000000.",
        ),
        ("TRACKER_IMPORT_MAX_BYTES", str(100 * 1024**3), "TRACKER_IMPORT_MAX_BYTES must be 1073741824 or less; got "),
        # Not a level logging knows: its own ValueError, "Unable to configure logger 'django'".
        ("DJANGO_LOG_LEVEL", "verbose", "DJANGO_LOG_LEVEL must be one of CRITICAL, FATAL, ERROR, WARN, WARNING"),
        # Not a Redis address: the site started, and every throttled request was a 500.
        ("REDIS_URL", "cache.internal:6379", "REDIS_URL must start with redis://, rediss:// or unix://"),
    ],
)
def test_a_value_beyond_what_it_can_mean_stops_the_start_up_naming_the_variable(variable, value, message):
    result = start_up(**{variable: value})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr


def test_a_log_level_is_read_in_any_case():
    result = start_up(DJANGO_LOG_LEVEL="warning")
    assert result.returncode == 0, result.stderr


CC_BY = {
    "TRACKER_DATA_LICENSE": "CC-BY-4.0",
    "TRACKER_DATA_LICENSE_TITLE": "Creative Commons Attribution 4.0 International",
    "TRACKER_DATA_LICENSE_URL": "https://creativecommons.org/licenses/by/4.0/",
}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        # A release naming a licence without its text (or a text without its licence) tells a
        # researcher little more than one naming none.
        (
            {"TRACKER_DATA_LICENSE": "CC-BY-4.0"},
            "TRACKER_DATA_LICENSE_TITLE, TRACKER_DATA_LICENSE_URL must be set with the other",
        ),
        (
            {**CC_BY, "TRACKER_DATA_LICENSE": "CC BY 4.0"},
            "TRACKER_DATA_LICENSE must be an SPDX id, e.g. CC-BY-4.0; got 'CC BY 4.0'.",
        ),
        (
            {**CC_BY, "TRACKER_DATA_LICENSE_URL": "creativecommons.org/licenses/by/4.0"},
            "TRACKER_DATA_LICENSE_URL must be an http(s) address; got 'creativecommons.org/licenses/by/4.0'.",
        ),
    ],
)
def test_a_licence_given_in_part_stops_the_start_up_naming_what_is_missing(variables, message):
    result = start_up(**variables)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr
    assert start_up(**CC_BY).returncode == 0


def test_the_limits_leave_the_documented_edge_values_alone():
    # 0 is documented for the pool (off) and the statement timeout (no bound).
    result = start_up(DATABASE_POOL_SIZE="0", TRACKER_ANON_STATEMENT_TIMEOUT="0", TRACKER_DUPLICATE_WINDOW_DAYS="0")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("level", "printed"), [("WARNING", 1), ("ERROR", 0)])
def test_django_log_level_decides_what_djangos_own_messages_print_and_each_prints_once(level, printed):
    # A page not found is a warning of Django's request logger: with DJANGO_LOG_LEVEL=ERROR it was
    # still printed, and in debug every such line twice (Django's own console handler and the root's).
    result = start_up("smoke_request", "/no-such-page/", DJANGO_LOG_LEVEL=level)
    assert result.returncode != 0
    assert result.stderr.count("Not Found: /no-such-page/") == printed, result.stderr


@pytest.mark.parametrize(("variable", "value"), [("GUNICORN_WORKERS", "x"), ("GUNICORN_THREADS", "0")])
def test_gunicorns_counts_out_of_range_stop_it_naming_the_variable(variable, value):
    # int() raised a ValueError naming neither; 0 threads started a server that served nothing.
    gunicorn = [str(Path(sys.executable).with_name("gunicorn")), "-c", "tracker/gunicorn.conf.py", "--check-config"]
    environment = {**os.environ, "DJANGO_DEBUG": "1"}
    assert subprocess.run([*gunicorn, "tracker.wsgi"], cwd=settings.BASE_DIR, env=environment).returncode == 0
    refused = subprocess.run(
        [*gunicorn, "tracker.wsgi"],
        cwd=settings.BASE_DIR,
        env={**environment, variable: value},
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0
    assert f"{variable} must be a whole number of 1 or more; got {value!r}." in refused.stderr


# Planted in the URLs below, never to be printed: with the test server's own password, if it has one.
TEST_SERVER = this_test_database_address()
PASSWORD = TEST_SERVER["password"] or "planted-password-31c9"


def no_server_url() -> str:
    """A URL to a port nothing listens on; chosen when the test runs, so that every test process
    (pytest-xdist's) collects the same parameters."""
    return database_url(host="127.0.0.1", port=str(free_port()), user="tracker", password=PASSWORD, dbname="tracker")


def no_database_url() -> str:
    return database_url(**{**TEST_SERVER, "password": PASSWORD, "dbname": "tracker_no_such"})


@pytest.mark.parametrize(
    ("url", "pool_size", "target", "reason"),
    [
        (no_server_url, "4", "database 'tracker' as 'tracker' on 127.0.0.1:", "Connection refused"),
        # Without the pool (behind PgBouncer) it failed at once, but in a traceback.
        (no_server_url, "0", "database 'tracker' as 'tracker' on 127.0.0.1:", "Connection refused"),
        (
            no_database_url,
            "4",
            f"database 'tracker_no_such' as '{TEST_SERVER['user']}' on {TEST_SERVER['host']}:",
            'database "tracker_no_such" does not exist',
        ),
    ],
    ids=["no server, pool", "no server, no pool", "no database"],
)
def test_a_database_that_cannot_be_reached_stops_a_command_at_once_in_one_line(url, pool_size, target, reason):
    # The pool's background thread logged each refusal and tried again, while the command waited
    # the pool's whole timeout, then ended in a traceback saying "couldn't get a connection".
    # No timed assertion (the guide keeps timing to benchmarks): a command that waited out the pool
    # ends in "couldn't get a connection after 60.00 sec", which the one line below is not.
    result = start_up("migrate", DATABASE_URL=url(), DATABASE_POOL_SIZE=pool_size, DATABASE_POOL_TIMEOUT="60")
    assert result.returncode == 1
    [said] = result.stderr.splitlines()
    assert said.startswith(f"DATABASE_URL: cannot connect to {target}") and reason in said, said
    assert PASSWORD not in said


@pytest.fixture
def unmigrated_database_url():
    """A database created beside the test database and never migrated, dropped afterwards. Named
    afresh for each test: test processes running side by side (pytest-xdist) share TEST_SERVER."""
    name = f"{TEST_SERVER['dbname']}_unmigrated_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**{**TEST_SERVER, "dbname": "postgres"}, autocommit=True) as server:
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield database_url(**{**TEST_SERVER, "dbname": name})
        server.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize(
    "command", [["import_incidents", "-", "--user", "admin"], ["export_incidents", "-o", os.devnull]]
)
def test_a_command_on_a_database_not_migrated_says_to_migrate_in_one_line(unmigrated_database_url, command):
    # The round trip's "into another database" on one created but not migrated: psycopg's
    # `relation "auth_user" does not exist` in a traceback.
    result = start_up(*command, DATABASE_URL=unmigrated_database_url)
    assert result.returncode == 1
    [said] = result.stderr.splitlines()
    name = unmigrated_database_url.rsplit("/", 1)[1]
    assert re.match(
        rf"DATABASE_URL: database '{name}' lacks \d+ of this code's migrations "
        r"\(\w+\.0001_initial first\)\. ",
        said,
    ), said
    assert said.endswith("Run `python manage.py migrate` with the same settings, then this command again."), said


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # An unencoded # or / in the password: dj-database-url's traceback named no variable.
        (
            "postgres://tracker:ab#cd@db.internal:5432/tracker",
            "DATABASE_URL is not a postgres://user:password@host:port/name URL: This string is not a valid url",
        ),
        # An unencoded / after digits: the user was read as the host and the password's start as the port.
        (
            "postgres://tracker:12/cd@db.internal:5432/tracker",
            "DATABASE_URL: its database name holds an @; a / @ : # or ? in the password must be percent-encoded.",
        ),
    ],
)
def test_a_database_url_that_does_not_parse_stops_the_start_up_naming_the_variable_not_the_password(url, message):
    result = start_up(DATABASE_URL=url)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr
    assert "cd@" not in result.stderr and "12" not in result.stderr.splitlines()[-1]


def test_a_web_worker_that_cannot_reach_its_database_says_why_as_it_starts():
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    environment = {**os.environ, "DJANGO_DEBUG": "1", "DATABASE_URL": no_server_url(), "GUNICORN_WORKERS": "1"}
    server = subprocess.Popen(
        [gunicorn, "-c", "tracker/gunicorn.conf.py", "--bind", f"127.0.0.1:{free_port()}", "tracker.wsgi"],
        cwd=settings.BASE_DIR,
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )
    log, deadline = [], time.monotonic() + 60
    try:
        with selectors.DefaultSelector() as waiting:
            waiting.register(server.stderr, selectors.EVENT_READ)
            while not any("DATABASE_URL" in line for line in log) and waiting.select(deadline - time.monotonic()):
                log.append(server.stderr.readline())
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        server.stderr.close()
    [said] = [line for line in log if "DATABASE_URL" in line]
    assert "[ERROR] DATABASE_URL: cannot connect to database 'tracker'" in said and "refused" in said, log
    assert PASSWORD not in "".join(log) and "Traceback" not in "".join(log)


def test_two_servers_under_one_account_without_a_writable_home_start_without_a_control_socket(tmp_path):
    # gunicorn's control socket lay at ~/.gunicorn/gunicorn.ctl, one path per account: a service
    # account whose home cannot be written logged "Control server error" at each start, and a
    # second server under the same account took the first one's socket over.
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    environment = {**os.environ, "DJANGO_DEBUG": "1", "GUNICORN_WORKERS": "1", "HOME": str(home)}
    environment.pop("XDG_RUNTIME_DIR", None)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    servers = []
    try:
        for log in logs:
            with log.open("w") as stderr:
                command = [
                    gunicorn,
                    "-c",
                    "tracker/gunicorn.conf.py",
                    "--bind",
                    f"127.0.0.1:{free_port()}",
                    "tracker.wsgi",
                ]
                servers.append(subprocess.Popen(command, cwd=settings.BASE_DIR, env=environment, stderr=stderr))
        # The control server starts in the arbiter before it boots its first worker.
        deadline = time.monotonic() + 60
        while not all("Booting worker" in log.read_text() for log in logs) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for server in servers:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
    for log in logs:
        said = log.read_text()
        assert "Booting worker" in said and "Control server" not in said and "[ERROR]" not in said, said
    assert list(home.iterdir()) == []


@pytest.mark.parametrize(("level", "printed"), [("WARNING", 1), ("ERROR", 0)])
def test_a_request_for_a_host_the_site_does_not_serve_is_one_warning_line_without_traceback(level, printed):
    # Internet scanners name hosts the site does not serve all day; each was an ERROR with a
    # traceback. The line stays at WARNING: it is how an operator learns their own host is missing.
    request = "from django.test import Client; print(Client().get('/', HTTP_HOST='scanner.example').status_code)"
    result = start_up("shell", "--no-imports", "-c", request, DJANGO_LOG_LEVEL=level)
    assert result.stdout.strip() == "400", result.stderr
    refused = "Invalid HTTP_HOST header: 'scanner.example'. You may need to add 'scanner.example' to ALLOWED_HOSTS."
    assert result.stderr.splitlines() == [refused] * printed


def test_manage_py_outside_the_virtualenv_says_where_to_run_it():
    # `-S`: a Python without the virtualenv's packages, as the system's `python` is. The database
    # driver's ModuleNotFoundError traceback came first and hid what to do.
    result = subprocess.run(
        [sys.executable, "-S", "manage.py", "check"], cwd=settings.BASE_DIR, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Django is not installed for" in result.stderr
    assert "`. .venv/bin/activate`" in result.stderr
