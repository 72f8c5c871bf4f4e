"""The README followed word by word, by a newcomer, an analyst, a partner tool's developer and an
operator: where what it promised did not happen (code defects only; the README's own errors are
listed in the attack's report)."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings

from incidents import roles
from incidents.models import Source
from tests.factories import make_user
from tests.test_import import run_import, write_csv

ADMIN_IMPORT_URL = "/admin/incidents/incident/import/"
CHECKOUT = Path(__file__).resolve().parent.parent


def informant_row() -> str:
    """A row for another database (README "Into another database"): its source's id emptied, the
    source and its claim marked confidential, as an export by a reader with Confidential access
    writes the sample's informant."""
    return write_csv(
        [
            {
                "title": "Women returned via Tumen",
                "type": "forced-repatriation",
                "date_start": "2023-10-02",
                "date_end": "2023-10-09",
                "sources": "Testimony of an underground missionary in China [confidential] [confidential claim]",
            }
        ]
    )


class TestASourceTheImportCreates:
    """README, Import: "the dry run, the import and the admin's preview name each one added:
    'INC-000042 gets a confidential claim of Open report [#12], …'". A source --create-missing
    makes has no id yet: the report named it "Testimony of an underground missionary in China
    [#None]", an id no source has, which a reader copying it into a file gets refused."""

    def test_the_dry_run_names_it_without_an_id_of_none(self, tmp_path):
        reviewer = make_user(roles.REVIEWER, confidential=True)

        told = run_import(reviewer, tmp_path, informant_row(), "--create-missing", "--dry-run")

        assert "gets a confidential claim of Testimony of an underground missionary in China" in told
        assert "[#None]" not in told

    def test_the_admin_preview_names_it_without_an_id_of_none(self, client):
        reviewer = make_user(roles.REVIEWER, confidential=True)
        client.force_login(reviewer)

        preview = client.post(
            ADMIN_IMPORT_URL,
            {"file": io.BytesIO(informant_row().encode()), "create_missing": "on"},
            format="multipart",
        )

        assert preview.status_code == 200
        assert "gets a confidential claim of Testimony of an underground missionary in China" in preview.text
        assert "[#None]" not in preview.text
        assert not Source.objects.exists()


class TestTooManyParametersUnderMakeRun:
    """README, REST API, Errors: "more than 1,000 parameters …, which Django refuses before any
    view, `{"detail": "The request sends more than 1,000 parameters or form fields."}`". Under
    `make run` (DJANGO_DEBUG=1) Django's debug page for the refusal reads the parameters again,
    fails the same way, and the server answers a bare 500 "A server error occurred"."""

    @pytest.mark.parametrize("path", ["/api/v1/incidents/", "/"])
    def test_a_request_of_1001_parameters_is_a_400_with_debug_on(self, path):
        query = "&".join(f"p{number}=1" for number in range(1001))
        with override_settings(DEBUG=True):
            try:
                answer = Client(raise_request_exception=False).get(f"{path}?{query}")
            except Exception as error:  # the handler's own page failed: the server answers a bare 500
                pytest.fail(f"The refusal escaped every handler (a 500 under runserver): {error!r}")

        assert answer.status_code == 400


# `make bench` runs `python bench/bench_*.py` one after another, with no argument, and stops at the
# first that fails (README, Development; Makefile). bench_csv_http.py needs two arguments (LABEL
# RUN) and fails at once with an IndexError, so `make bench` never reaches the scripts after it;
# these five also answer `--help` with a traceback instead of their usage.
SCRIPTS_WITHOUT_USAGE = [
    "bench_csv_http.py",
    "bench_csv_import.py",
    "bench_demo_data.py",
    "bench_export_refresh.py",
    "bench_import_limits.py",
]


@pytest.mark.parametrize("script", SCRIPTS_WITHOUT_USAGE)
def test_a_bench_script_answers_help_with_its_usage(script):
    answer = subprocess.run(
        [sys.executable, str(CHECKOUT / "bench" / script), "--help"],
        cwd=CHECKOUT,
        env={**os.environ, "DJANGO_DEBUG": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert answer.returncode == 0, answer.stderr[-600:]
    assert "usage" in answer.stdout.lower()
