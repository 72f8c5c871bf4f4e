"""The lockout's bound on a username's log of failures keeps each failed sign-in's work small, whatever
backlog a botnet left at the account."""

from datetime import timedelta

import pytest
from axes.models import AccessFailureLog
from django.db import connection
from django.test import Client
from django.utils import timezone

from incidents import roles
from tests.factories import make_user
from tests.test_operations_upkeep import autovacuum, sign_in


def a_day_of_a_botnet_at(username: str, failures: int, *, days_ago: int) -> None:
    """`failures` failed sign-ins at `username`, a second apart, ending `days_ago` days ago: all
    within one window when they were made, all past it now."""
    table = AccessFailureLog._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {table} (username, ip_address, user_agent, http_accept, path_info, attempt_time, locked_out)
            SELECT %s, ('198.18.' || (n / 250 %% 250) || '.' || (n %% 250 + 1))::inet, '', '', '/admin/login/',
                   now() - %s * interval '1 day' - n * interval '200 ms', true
            FROM generate_series(1, %s) n""",
            [username, days_ago, failures],
        )
    autovacuum()


@pytest.mark.django_db(transaction=True)
def test_a_failed_sign_in_after_a_botnets_day_at_the_account_is_still_counted(settings):
    # A botnet's day of guesses at one account, within the window, is kept whole (the wide bound
    # counts it). Once the window has passed, the next failure there deleted all of them at once,
    # in its own request, after counting every failure the name had: past the anonymous request's
    # budget (TRACKER_ANON_STATEMENT_TIMEOUT, 3 s, for 2,000,000 failures; here 200 ms for
    # 300,000), it answered 503 and its failure, inserted in the same transaction, was undone.
    # Every later guess at the account went the same way, uncounted by the wide bounds, until
    # the daily clean-up deleted the backlog a month later.
    settings.ANON_STATEMENT_TIMEOUT = 200
    analyst = make_user(roles.ANALYST)
    a_day_of_a_botnet_at(analyst.username, 300_000, days_ago=2)

    answers = [
        sign_in(Client(REMOTE_ADDR=f"203.0.113.{host}"), analyst, password="guess").status_code for host in (1, 2, 3)
    ]

    assert answers == [200, 200, 200]
    recent = AccessFailureLog.objects.filter(
        username=analyst.username, attempt_time__gte=timezone.now() - timedelta(hours=1)
    )
    assert recent.count() == 3
