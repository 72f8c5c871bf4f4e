"""The README's promise for every variable of its Configuration table: a bad value stops the start-up
with an error naming the variable, rather than failing the requests that read it later."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings


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
    ],
)
def test_a_value_beyond_what_it_can_mean_stops_the_start_up_naming_the_variable(variable, value, message):
    result = start_up(**{variable: value})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr


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
