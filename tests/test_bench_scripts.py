"""The benchmarks' command lines: `make bench` runs every `bench/bench_*.py` with its defaults, and
each says on `--help` what it takes, without running anything. bench_csv_http.py needed two
arguments and failed at once without them (an IndexError), which stopped `make bench` there; four
scripts answered `--help` with a traceback (`int("--help")`), and two took it for input and started
measuring. Each read its arguments only once Django was set up, 1-4 s of imports for every `--help`;
now it reads them first. And they run on any database the project makes (the sample data, one
without incidents or duplicate pairs), saying what they skip for want of data, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from incidents.models import DuplicatePair
from tests.database_support import this_test_database_url
from tests.factories import make_incident

CHECKOUT = Path(__file__).resolve().parent.parent
# The benchmarks and the duplicate score's studies (fit_duplicate_weights.py and its kin), which
# set Django up before reading their arguments until 2026-12-06.
SCRIPTS = sorted(
    path.name
    for pattern in ("bench_*.py", "duplicate_*.py", "fit_duplicate_weights*.py")
    for path in (CHECKOUT / "bench").glob(pattern)
)


def run_script(script: str, *arguments: str, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECKOUT / "bench" / script), *arguments],
        cwd=CHECKOUT,
        # No database answers there: a script that took its arguments for input measures nothing.
        env={
            **os.environ,
            "DJANGO_DEBUG": "1",
            "DATABASE_URL": "postgres://nobody@127.0.0.1:9/no_database",
            **environment,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bench_script_answers_help_with_its_usage(script):
    answer = run_script(script, "--help")

    assert answer.returncode == 0, answer.stderr[-600:]
    assert answer.stdout.startswith(f"usage: {script} "), answer.stdout[:300]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bench_script_answers_help_without_setting_django_up(script):
    # Settings that cannot be imported: setting Django up (or importing the project) would fail loudly.
    answer = run_script(script, "--help", DJANGO_SETTINGS_MODULE="no_such_settings_module")

    assert answer.returncode == 0, answer.stderr[-600:]
    assert answer.stdout.startswith(f"usage: {script} "), answer.stdout[:300]


@pytest.mark.parametrize(
    ("script", "arguments", "said"),
    [
        ("bench_csv_http.py", ["first", "one"], "argument run: invalid int value: 'one'"),
        ("bench_csv_import.py", ["many"], "argument rows: invalid int value: 'many'"),
        ("bench_stats_left_out.py", ["--help-me"], "unrecognized arguments: --help-me"),
    ],
)
def test_a_bench_script_refuses_an_argument_it_cannot_read_saying_so(script, arguments, said):
    answer = run_script(script, *arguments)

    assert answer.returncode == 2, answer.stderr[-600:]
    assert answer.stderr.startswith(f"usage: {script} ") and said in answer.stderr, answer.stderr[-600:]


# The scripts below read this test's database from their own process: what the test writes is committed.


@pytest.mark.django_db(transaction=True)
def test_the_public_pages_bench_runs_on_the_sample_data_and_names_the_province_it_lacks():
    call_command("load_sample", verbosity=0)

    # Its 51 requests from one address, over a public rate of 5 a minute: it measures the server's
    # time, not the rate, which answered 429 from the third page on at the default 120 and 30 runs.
    answer = run_script(
        "bench_public.py", "--runs", "1", DATABASE_URL=this_test_database_url(), TRACKER_PUBLIC_ANON_RATE="5/minute"
    )

    assert answer.returncode == 0, answer.stderr[-1200:]
    assert "browse: place=(a province)" in answer.stdout and "skipped: no province" in answer.stdout, answer.stdout
    assert "browse: perpetrator=" in answer.stdout and "GeoJSON download" in answer.stdout, answer.stdout
    assert "429" not in answer.stdout, answer.stdout


@pytest.mark.django_db(transaction=True)
def test_the_public_pages_bench_runs_on_a_database_without_incidents_saying_what_it_skips():
    answer = run_script("bench_public.py", "--runs", "1", DATABASE_URL=this_test_database_url())

    assert answer.returncode == 0, answer.stderr[-1200:]
    skipped = [line for line in answer.stdout.splitlines() if "skipped:" in line]
    assert len(skipped) == 3 and "no public incident" in skipped[0], answer.stdout
    assert "browse: all" in answer.stdout and "statistics: group_by=year" in answer.stdout, answer.stdout


@pytest.mark.django_db(transaction=True)
def test_the_duplicate_queue_bench_runs_without_pairs_saying_which_pages_it_skips():
    answer = run_script(
        "bench_duplicate_queue.py", "--runs", "1", "--reader", "analyst", DATABASE_URL=this_test_database_url()
    )

    assert answer.returncode == 0, answer.stderr[-1200:]
    skipped = [line.split()[1:3] for line in answer.stdout.splitlines() if "skipped: no waiting pair" in line]
    assert skipped == [["pair", "page"], ["decide", "->"], ["decide", "->"]], answer.stdout
    assert "queue (waiting)" in answer.stdout and "home" in answer.stdout, answer.stdout


@pytest.mark.django_db(transaction=True)
def test_the_duplicate_queue_bench_decides_a_waiting_pair_as_its_page_does_and_leaves_it_waiting():
    # The decision's form refuses one sent without the decision its page was opened at (200, not the
    # 302 to the next pair), and the script ended in an AssertionError on any database with a pair.
    first, second = make_incident(), make_incident()
    pair = DuplicatePair.objects.create(incident_a=first, incident_b=second, score=0.9)

    answer = run_script(
        "bench_duplicate_queue.py",
        *("--runs", "1", "--reader", "superuser", "--only", "decide -> next pair"),
        DATABASE_URL=this_test_database_url(),
    )

    assert answer.returncode == 0, answer.stderr[-1200:]
    assert answer.stdout.startswith("superuser              decide -> next pair            p50 "), answer.stdout
    pair.refresh_from_db()
    assert pair.decision == "pending"


def test_the_model_ceiling_says_in_one_line_how_to_install_scipy_when_it_is_missing():
    # scipy made missing, whether or not this machine has the benchmarks' requirements.
    without_scipy = (
        "import runpy, sys; sys.modules['scipy'] = None; sys.path.insert(0, 'bench'); "
        "sys.argv = ['bench/duplicate_model_ceiling.py', 'compare', 'fit.npz', 'held.npz']; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    answer = subprocess.run(
        [sys.executable, "-c", without_scipy], cwd=CHECKOUT, capture_output=True, text=True, timeout=120
    )

    assert answer.returncode == 1
    assert answer.stderr.splitlines() == [
        "duplicate_model_ceiling.py needs scipy and scikit-learn, which the application does not install "
        "(no module scipy): .venv/bin/python -m pip install -r bench/requirements.txt"
    ], answer.stderr[-1200:]
