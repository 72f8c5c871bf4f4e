"""An operator's year: what grows, or silently stops, on a server left running for a year."""

import re
import shlex
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from axes.models import AccessFailureLog, AccessLog
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from incidents import roles
from incidents.models import DuplicateWordFrequencies
from tests.factories import make_incident, make_user
from tracker.settings import TASKS

PASSWORD = "correct horse battery staple"


def sign_in(client, user, password=PASSWORD):
    return client.post("/admin/login/", {"username": user.username, "password": password, "next": "/admin/"})


def a_year_of_scanners_at(username: str):
    """django-axes' log of failures at an account that scanners tried all year (`admin`, the first
    administrator's name, is every scanner's first guess): past its 1,000 a username
    (AXES_ACCESS_FAILURE_LOG_PER_USER_LIMIT), django-axes deleted the excess, and autovacuum made
    the room they left in the table's first pages free for the next rows."""
    start = timezone.now() - timedelta(days=365)
    AccessFailureLog.objects.bulk_create(
        AccessFailureLog(username=username, ip_address=f"198.18.{n // 250}.{n % 250 + 1}", path_info="/admin/login/")
        for n in range(1050)
    )
    table = AccessFailureLog._meta.db_table
    with connection.cursor() as cursor:
        # Three a day, oldest first.
        cursor.execute(
            f"UPDATE {table} SET attempt_time = %s + (id - (SELECT min(id) FROM {table})) * interval '8 hours'",
            [start],
        )
    AccessFailureLog.objects.filter(pk__in=AccessFailureLog.objects.order_by("pk").values("pk")[:50]).delete()
    autovacuum()


def autovacuum():
    """What PostgreSQL's autovacuum does, now and then, to a table that rows were deleted from."""
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {AccessFailureLog._meta.db_table}")


@pytest.mark.django_db(transaction=True)
class TestFailedSignInsOverAYear:
    def test_the_account_wide_bound_still_holds_after_a_year_of_scanners(self):
        # django-axes deletes a username's failures beyond its 1,000 in no order (its model's
        # ordering is not inherited): the first rows of the table, which after a vacuum are those
        # written into the room it freed, the newest. Each failure was then deleted as it was
        # written, and the wide bounds, which count the last day's, counted none: a botnet had 5
        # guesses per address every 15 minutes at the most guessed account.
        analyst = make_user(roles.ANALYST)
        a_year_of_scanners_at(analyst.username)
        for host in range(1, 20):
            assert sign_in(Client(REMOTE_ADDR=f"203.0.113.{host}"), analyst, password="guess").status_code == 200
            autovacuum()
        recent = AccessFailureLog.objects.filter(
            username=analyst.username, attempt_time__gte=timezone.now() - timedelta(hours=1)
        )
        assert recent.count() == 19
        assert sign_in(Client(REMOTE_ADDR="203.0.113.20"), analyst, password="guess").status_code == 429
        assert sign_in(Client(REMOTE_ADDR="203.0.113.99"), analyst).status_code == 429
        # The log still keeps to its bound, the oldest going first.
        assert AccessFailureLog.objects.filter(username=analyst.username).count() == 1000


def run_the_readmes_cron_jobs():
    """Each line of the crontab that the README's "Backups and recovery" gives operators but the
    hourly backup (tests/test_backup.py), run as cron would run it today: its `manage.py` command
    with the line's arguments."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    jobs = re.findall(r"^\s*[\d*]+ [\d*]+ \* \* [\d*]+ .*? manage\.py (.+)$", readme, flags=re.MULTILINE)
    jobs = [shlex.split(job) for job in jobs]
    assert [name for name, *_ in jobs if name != "backup"], "the README's crontab has no clean-up"
    for name, *arguments in jobs:
        if name != "backup":
            call_command(name, *arguments, stdout=StringIO(), stderr=StringIO())


class TestTheDailyJobs:
    """What a server keeps of its staff's sign-ins, after a year of the README's crontab."""

    @pytest.fixture(autouse=True)
    def _tasks_in_the_database(self, settings):
        # The crontab's clean-up of the background tasks works on the settings' own queue.
        settings.TASKS = TASKS

    @pytest.fixture
    def a_year_ago_and_today(self):
        analyst = make_user(roles.ANALYST)
        with time_machine.travel(timezone.now() - timedelta(days=365)):
            assert sign_in(Client(REMOTE_ADDR="198.51.100.7"), analyst)["Location"] == "/admin/"
            assert sign_in(Client(REMOTE_ADDR="203.0.113.9"), analyst, password="guess").status_code == 200
        today = Client(REMOTE_ADDR="198.51.100.7")
        assert sign_in(today, analyst)["Location"] == "/admin/"
        assert sign_in(Client(REMOTE_ADDR="203.0.113.9"), analyst, password="guess").status_code == 200
        return analyst, today

    def test_a_sessions_row_is_deleted_once_it_has_expired(self, a_year_ago_and_today):
        # Django ignores an expired session's row and leaves it to `clearsessions`: a session
        # signed in a year ago (8 hours' life) and never signed out of stayed in the table for
        # good, holding which account and which second factor it had.
        _, today = a_year_ago_and_today
        assert Session.objects.count() == 2
        run_the_readmes_cron_jobs()
        assert list(Session.objects.values_list("session_key", flat=True)) == [today.session.session_key]
        assert today.get("/admin/").status_code == 200

    def test_who_signed_in_from_where_is_not_kept_for_years(self, a_year_ago_and_today):
        # django-axes writes every finished sign-in (account, address, browser) in its access log
        # and never deletes one; its `axes_reset_logs` does. Staff are targets: a backup or a
        # seized server held every address each of them had signed in from, since the first day.
        analyst, _ = a_year_ago_and_today
        run_the_readmes_cron_jobs()
        assert list(AccessLog.objects.filter(username=analyst.username).values_list("ip_address", flat=True)) == [
            "198.51.100.7"
        ]
        assert AccessLog.objects.get().attempt_time > timezone.now() - timedelta(hours=1)

    def test_failed_sign_ins_are_forgotten_once_no_bound_counts_them(self, a_year_ago_and_today):
        # The README named `axes_reset_failure_logs` in passing, with no crontab line: the log
        # grew by every guess of every scanner (up to 14,400 a day per address, the sign-in rate).
        # The wide bounds count the last day's; today's stay.
        analyst, _ = a_year_ago_and_today
        run_the_readmes_cron_jobs()
        assert AccessFailureLog.objects.filter(username=analyst.username).count() == 1
        assert AccessFailureLog.objects.get().attempt_time > timezone.now() - timedelta(hours=1)


def test_the_duplicates_word_weights_follow_a_years_new_words(settings):
    # The words' weights in the duplicates' score (how many incidents use each) are counted by
    # `find_duplicates`, and again by a rescoring only once the number of incidents has changed by
    # a quarter and by 100: a database growing by less than that in a year kept last year's
    # counts, so a word every report of the year used (a new prison's name) weighed as a word used
    # nowhere, as much as a word can, and raised the score of every pair of different events that
    # named it. Nothing in the README's crontab counted them again.
    settings.TASKS = TASKS
    for n in range(40):
        make_incident(title=f"Detention in Hoeryong number {n}")
    call_command("find_duplicates", stdout=StringIO())
    assert "onsong" not in DuplicateWordFrequencies.objects.get().frequencies
    with time_machine.travel(timezone.now() + timedelta(days=365)):
        for n in range(30):
            make_incident(title=f"Detention at the new Onsong centre {n}")
        run_the_readmes_cron_jobs()
        assert DuplicateWordFrequencies.objects.get().frequencies.get("onsong") == 30
