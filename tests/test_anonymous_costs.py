"""What an anonymous request may cost: its statements run at most TRACKER_ANON_STATEMENT_TIMEOUT
together (tracker/statement_timeout.py), whatever its parameters.

A statement made slow on purpose: another session holds a lock on the incidents' table, so the
request's query waits for it, as a query reading a million incidents would run, and PostgreSQL's
statement timeout counts that wait. Transactional tests, so that each request runs in autocommit as
in production (not inside the test's transaction) and a cancelled statement leaves nothing behind.
"""

import threading
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
import time_machine
from axes.models import AccessAttempt
from django.conf import settings
from django.db import DataError, connection, transaction
from django.http import JsonResponse
from django.test import Client
from django.urls import path
from django.utils import timezone

from incidents import roles
from incidents.statistics import recount_statistics
from tests.api_support import API, client_for
from tests.factories import make_incident, make_user

pytestmark = pytest.mark.django_db(transaction=True)

BOUND_MS = 200


@pytest.fixture(autouse=True)
def _short_bound(settings):
    settings.ANON_STATEMENT_TIMEOUT = BOUND_MS


@contextmanager
def held_by_another_session(sql: str, *, release_after: float = 2.0):
    """Another session that ran `sql` (took a lock, deleted rows) and holds what it took, not yet
    committed, for `release_after` seconds: ten times the bound, and given back even if nothing
    cancels the request, so that a missing bound fails the test rather than hanging it. Yields
    how many rows `sql` touched."""
    other = psycopg.connect(**connection.get_connection_params(), autocommit=False)
    touched = other.execute(sql).rowcount
    timer = threading.Timer(release_after, other.rollback)
    timer.start()
    try:
        yield touched
    finally:
        timer.join()
        other.close()


def incidents_locked(*, release_after: float = 2.0, table: str = "incidents_incident"):
    """Another session's exclusive lock on the incidents' table (or `table`)."""
    return held_by_another_session(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE", release_after=release_after)


def test_an_anonymous_list_that_outlasts_the_bound_answers_503_naming_its_parameters():
    with incidents_locked():
        response = Client().get(f"{API}/incidents/", {"country": "CN", "min_people": "5"})
    assert response.status_code == 503
    assert response.json() == {
        "detail": "This request needs more than 0.2 s of the database, the most an anonymous request may take, "
        "so it was stopped. Narrow it (a date range, a type, a country) or sign in.",
        "parameters": ["country", "min_people"],
    }


def test_an_anonymous_public_page_that_outlasts_the_bound_says_why_in_the_readers_language():
    with incidents_locked():
        english = Client().get("/", {"q": "women"})
        korean = Client().get("/ko/statistics/", {"group_by": "year", "min_people": "5"})
    assert english.status_code == korean.status_code == 503
    # Named as the pages name them, like a filter they refuse (the API names the parameters).
    assert (
        "Search titles, descriptions, sources’ words and places: This request needs more than 0.2 s of the database"
        in english.content.decode()
    )
    assert "묶음 기준, 인원 (최선 추정치) › 최소:" in korean.content.decode()
    assert "0.2초" in korean.content.decode()


def test_statements_each_within_the_budget_but_over_it_together_answer_503(settings):
    # The browse page reads the facets' kept totals first and the incidents later. Each waits for
    # another session's lock, the first some 0.6 s and the second 0.7 s: bounded statement by
    # statement, both were answered, 1.3 s of the database; now the second may take what the
    # first left.
    settings.ANON_STATEMENT_TIMEOUT = 1000
    make_incident()
    # Once before, so that the page's first statement is sent as soon as it is asked for.
    assert Client().get("/").status_code == 200
    with (
        held_by_another_session("LOCK TABLE incidents_incidentfacettotal IN ACCESS EXCLUSIVE MODE", release_after=0.6),
        incidents_locked(release_after=1.3),
    ):
        response = Client().get("/")
    assert response.status_code == 503
    assert "This request needs more than 1 s of the database" in response.content.decode()
    # Each within it apart, as the same page answered while the bound was per statement.
    with incidents_locked(release_after=0.6):
        assert Client().get("/").status_code == 200


def test_a_statement_within_the_bound_is_answered_and_the_bound_does_not_outlive_it():
    with incidents_locked():
        assert Client().get(f"{API}/incidents/").status_code == 503
    assert Client().get(f"{API}/incidents/", {"country": "CN"}).status_code == 200
    assert Client().get("/", {"q": "women"}).status_code == 200
    # Set for each statement only: the connection, which a pool hands to any request next, keeps
    # PostgreSQL's own setting.
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("0",)


@pytest.mark.django_db(transaction=False)
def test_within_a_transaction_the_bound_ends_with_its_statement():
    # Here the request runs inside the test's transaction, as a statement does inside any atomic
    # block, where `SET LOCAL` alone would hold until the transaction ends: for every later
    # statement of it, whoever runs them (a token's reader once DRF has accepted it, a command).
    assert Client().get(f"{API}/incidents/", {"country": "CN"}).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("0",)


def _counts_after_a_failed_nested_block(request):
    """A door that tries a statement in a nested atomic block, gives it up when it fails, and goes on
    in the outer block: Django rolls back to the block's savepoint in a transaction the failure
    aborted."""
    with transaction.atomic():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT 1 / 0")
        except DataError:
            pass
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM incidents_incident")
            (count,) = cursor.fetchone()
    return JsonResponse({"count": count})


urlpatterns = [path("nested/", _counts_after_a_failed_nested_block)]


def test_an_anonymous_request_may_give_up_a_failed_nested_block_and_go_on(settings):
    # The bound's `SET LOCAL` sent with Django's ROLLBACK TO SAVEPOINT was refused in the aborted
    # transaction, so the rollback failed and the request answered 500.
    settings.ROOT_URLCONF = __name__
    make_incident()
    response = Client().get("/nested/")
    assert response.status_code == 200
    assert response.json() == {"count": 1}


def test_a_signed_in_reader_waits_as_long_as_the_database_takes():
    client = Client()
    client.force_login(make_user())
    with incidents_locked(release_after=BOUND_MS * 3 / 1000):
        response = client.get("/", {"q": "women"})
    assert response.status_code == 200


def test_a_partner_tool_with_a_token_waits_as_long_as_the_database_takes():
    # The token is accepted inside the API's view: its statements from then on are not bounded.
    client = client_for(make_user())
    with incidents_locked(release_after=BOUND_MS * 3 / 1000):
        response = client.get(f"{API}/incidents/", {"country": "CN"})
    assert response.status_code == 200


def test_an_anonymous_csv_export_streams_for_as_long_as_it_takes():
    # Its COPY (into the download's file, in the view) runs on psycopg's own cursor, which the bound
    # does not reach: bounded by the export's rate, slots and one download at a time per client
    # instead (a common word's export took 8 s at a million incidents).
    make_incident()
    with incidents_locked(release_after=BOUND_MS * 3 / 1000, table="incidents_incidentexportrow"):
        response = Client().get("/incidents.csv")
        body = b"".join(response.streaming_content).decode()
    assert response.status_code == 200
    assert len(body.splitlines()) == 2  # the header and the incident


def test_no_bound_when_it_is_turned_off(settings):
    settings.ANON_STATEMENT_TIMEOUT = 0
    with incidents_locked(release_after=BOUND_MS * 3 / 1000):
        response = Client().get(f"{API}/incidents/", {"country": "CN"})
    assert response.status_code == 200


def test_a_sign_in_does_not_wait_for_another_sign_ins_clean_up_of_expired_attempts():
    # Each failed sign-in first deletes the attempts whose lockout has expired, anyone's; a sign-in
    # sent meanwhile waited for the rows the first was deleting, and the bound cut the wait short:
    # the failed sign-in answered 503 telling its sender to narrow a search.
    make_user(username="analyst")
    expired = timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(minutes=1)
    attempt = AccessAttempt.objects.create(username="someone else", ip_address="192.0.2.7", failures_since_start=3)
    AccessAttempt.objects.filter(pk=attempt.pk).update(attempt_time=expired)  # the field is set on creation
    # As another request's clean-up holds them meanwhile.
    with held_by_another_session("DELETE FROM axes_accessattempt") as deleted:
        assert deleted > 0
        response = client_for().post(f"{API}/auth/token/", {"username": "analyst", "password": "wrong"}, format="json")
    assert response.status_code == 400, response.content
    assert response.json() == {"non_field_errors": ["Unable to log in with the username and password given."]}
    # Counted: the other session's rows were left to it.
    assert AccessAttempt.objects.get(username="analyst").failures_since_start == 1
    # Once that session has let them go, the next sign-in deletes them as before.
    client_for().post(f"{API}/auth/token/", {"username": "analyst", "password": "wrong"}, format="json")
    assert set(AccessAttempt.objects.values_list("username", "failures_since_start")) == {("analyst", 2)}


def test_statistics_are_read_while_they_are_recounted():
    # `recount_statistics` (tens of seconds at a million incidents) makes writes wait, not reads:
    # emptying the totals with TRUNCATE locked them against every reader until it committed, and
    # the bound answered every anonymous statistic and the public pages' facets 503 meanwhile,
    # telling their readers to narrow what they asked.
    make_incident(date_start=date(2023, 8, 29), date_end=date(2023, 8, 29))
    recounted, release = threading.Event(), threading.Event()

    def recount():
        try:
            with transaction.atomic():
                recount_statistics()
                recounted.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    recounting = threading.Thread(target=recount)
    recounting.start()
    try:
        assert recounted.wait(timeout=30)
        response = Client().get(f"{API}/incidents/stats/", {"group_by": "year"})
        page = Client().get("/")
    finally:
        release.set()
        recounting.join()
    assert response.status_code == 200, response.content
    assert [(row["group"], row["incidents"]) for row in response.json()["results"]] == [("2023", 1)]
    assert page.status_code == 200


def test_an_address_whose_requests_took_its_share_of_the_database_waits_for_the_next_minute(settings):
    # Each request is bounded, and the rate counts requests: one address asking, at its rate, for
    # request after request near the bound held a backend each. Two here spend the share.
    settings.ANON_STATEMENT_TIMEOUT = 600
    settings.ANON_CLIENT_DATABASE_SECONDS = 1
    staff = make_user(roles.ANALYST)
    with time_machine.travel(datetime(2026, 12, 5, 12, 0, 5, tzinfo=UTC), tick=True):
        with incidents_locked():
            assert [Client().get(f"{API}/incidents/").status_code for _ in range(2)] == [503, 503]

        refused = Client().get(f"{API}/incidents/")
        page = Client().get("/")
        korean = Client().get("/ko/")
        # Another address, a signed-in reader and a partner tool's token are not held by it; a
        # request naming another scheme at the API is refused (401) before any statement.
        elsewhere = Client(REMOTE_ADDR="198.51.100.9").get(f"{API}/incidents/")
        browser = Client()
        browser.force_login(staff)
        signed_in = browser.get("/admin/incidents/incident/")
        with_token = client_for(staff).get(f"{API}/incidents/")
        other_scheme = Client(HTTP_AUTHORIZATION="Basic YWRtaW46YWRtaW4=").get(f"{API}/incidents/")
        # The public pages read no token: one made up lifted the address's share there.
        made_up_token = Client(HTTP_AUTHORIZATION="Token not-a-token").get("/ko/statistics/")
    with time_machine.travel(datetime(2026, 12, 5, 12, 1, 1, tzinfo=UTC)):
        next_minute = Client().get(f"{API}/incidents/")

    assert refused.status_code == page.status_code == korean.status_code == 429
    assert refused.json()["detail"].startswith(
        "The requests from your address have taken 1 s of the database this minute, the most an anonymous "
        "client may take. Try again in "
    )
    assert 0 < int(refused["Retry-After"]) <= 55
    assert "Too many requests" in page.content.decode() and "1 s of the database this minute" in page.content.decode()
    assert "데이터베이스" in korean.content.decode() and "요청이 너무 많습니다" in korean.content.decode()
    assert made_up_token.status_code == 429
    assert other_scheme.status_code == 401
    assert elsewhere.status_code == signed_in.status_code == with_token.status_code == next_minute.status_code == 200
