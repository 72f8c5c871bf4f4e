"""Upgrading an installation that holds years of data: the migrations since run over what the
doors of its older version let analysts store."""

import io
import unicodedata

import pytest
from django.core.management import call_command
from django.db import connection

from incidents.models import SEARCHED_TEXT_MAX_LENGTH, Claim, Incident
from tests.database_support import migrate_incidents_back_to
from tests.factories import make_claim, make_incident

pytestmark = pytest.mark.django_db(transaction=True)

# A report pasted into the admin before migration 0086 bounded descriptions: a browser sends a
# textarea's line breaks as CR LF.
REPORT = "North Korean refugees were returned across the border at Tumen.\r\n" * 3200
assert len(REPORT) > SEARCHED_TEXT_MAX_LENGTH


def stored_before_the_bounds(table: str, column: str, constraint: str, pk: int, text: str) -> None:
    """`text` in the row as a version before migration 0086 stored it, the bound added since NOT VALID."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [text, pk])
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} CHECK (length({column}) <= 200000) NOT VALID")


def test_an_upgrade_runs_over_a_description_and_an_excerpt_longer_than_their_bound():
    # Migration 0086 bounded descriptions and excerpts NOT VALID so that longer ones stored before
    # stayed; but PostgreSQL holds such a constraint on every row written, whichever column
    # changed, and the later migrations write every incident (0095, 0097, 0102, 0104: versions and
    # times per audience) or the texts not in normal form (0112, 0115, 0120, 0123): the upgrade
    # stopped at 0095 with the check's violation, and no version since 0086 could be deployed over
    # the data. The title's no-break space is 0120's to write, its soft hyphen 0123's.
    incident = make_incident(title="Re\u00adturned\u00a0at Tumen")
    claim = make_claim(incident=incident)
    migrate_incidents_back_to("0094_export_marks_confidential_claims")
    stored_before_the_bounds(
        "incidents_incident",
        "description",
        "incident_description_bounded",
        incident.pk,
        REPORT + unicodedata.normalize("NFD", "Sinŭiju"),
    )
    stored_before_the_bounds("incidents_claim", "excerpt", "claim_excerpt_bounded", claim.pk, REPORT)

    try:
        call_command("migrate", "incidents", verbosity=0, stdout=io.StringIO())
    except Exception as error:
        # The database back at the latest migration for the tests that follow, the long texts cut.
        with connection.cursor() as cursor:
            cursor.execute("UPDATE incidents_incident SET description = '' WHERE id = %s", [incident.pk])
            cursor.execute("UPDATE incidents_claim SET excerpt = '' WHERE id = %s", [claim.pk])
        call_command("migrate", "incidents", verbosity=0, stdout=io.StringIO())
        raise AssertionError(f"The upgrade failed: {type(error).__name__}: {error}") from error

    stored = Incident.objects.get(pk=incident.pk)
    assert stored.title == "Returned at Tumen"
    assert stored.description == REPORT.replace("\r\n", "\n") + "Sinŭiju"
    assert Claim.objects.get(pk=claim.pk).excerpt == REPORT.replace("\r\n", "\n")
    # The bounds hold for every row written from now on, as migration 0086 left them.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, convalidated FROM pg_constraint"
            " WHERE conname IN ('incident_description_bounded', 'claim_excerpt_bounded') ORDER BY conname"
        )
        assert cursor.fetchall() == [("claim_excerpt_bounded", False), ("incident_description_bounded", False)]
