import time

import pytest
from django.conf import settings
from django.core.management.commands import flush
from django.db import connection, connections
from django.test import override_settings
from django.utils import translation

from incidents import roles
from tests.factories import make_user


@pytest.fixture
def reviewer():
    """A Reviewer without Confidential access (a test file may define its own)."""
    return make_user(roles.REVIEWER)


@pytest.fixture
def keeper():
    """A Reviewer with Confidential access, who writes what only such readers see."""
    return make_user(roles.REVIEWER, confidential=True)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database commits without waiting for the disk, for this process's connection and
    every other one (a gunicorn server, a live server's threads, an importer's process): only a
    crash could tell, and no test survives one. The hundred or so commits of each flush between
    transactional tests (post_migrate puts back content types, permissions, roles and incident
    types one commit at a time) waited 3-30 ms each."""
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        name = connection.ops.quote_name(connection.settings_dict["NAME"])
        cursor.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        superuser = cursor.fetchone()[0]
    # A transactional test's flush empties the tables with DELETE, its triggers off (a superuser's
    # `session_replication_role`: no history or totals row is written for a row deleted), not
    # Django's TRUNCATE, which makes new files for each of ~60 tables and their indexes: 1-1.5 s a
    # test under load where DELETE of their few rows takes 0.1 s. The tables end as empty.
    operations = type(connection.ops)
    truncate = operations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or allow_cascade or not tables:
            return truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        deletes = [f"DELETE FROM {self.quote_name(table)}" for table in tables]
        return ["SET LOCAL session_replication_role = replica", *deletes]

    # The flush's post_migrate then puts back the rows it deleted; pgtrigger's part of it
    # (`PGTRIGGER_INSTALL_ON_MIGRATE`) installed all 69 triggers again, some 200 statements of DDL
    # and a commit for each (0.7-0.9 s a test under load), though neither DELETE nor TRUNCATE
    # touches a trigger. A migrate (a migration's test) still installs them.
    emit_post_migrate_signal = flush.emit_post_migrate_signal

    def emit_keeping_the_triggers(*args, **kwargs):
        with override_settings(PGTRIGGER_INSTALL_ON_MIGRATE=False):
            emit_post_migrate_signal(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flush, "emit_post_migrate_signal", emit_keeping_the_triggers)
        if superuser:
            patch.setattr(operations, "sql_flush", sql_flush)
        yield


@pytest.fixture(scope="session", autouse=True)
def _replica_pools_closed_before_the_database_is_dropped(django_db_setup):
    """A replica's alias mirrors the test database; its pool, left open, kept reconnecting to the
    database just dropped and logged each failure after the run."""
    yield
    for alias in settings.DATABASE_REPLICAS:
        connections[alias].close_pool()


@pytest.fixture(autouse=True)
def _default_language_after_each_test():
    """A request in Korean activates Korean for the thread (LocaleMiddleware activates the reader's
    language and leaves it), and a command a later test ran in the same worker answered in Korean
    (`export_incidents`' errors in test_csv.py, after another test's Korean requests)."""
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture(autouse=True)
def _database_for_every_test(db):
    """Every test here talks to the real PostgreSQL test database."""


# Other sessions of this test's database still holding a download's turn or slot (`incidents.exports`):
# the advisory locks of the two namespaces, by their first key as pg_locks shows it (an oid).
_EXPORT_LOCKS_HELD_ELSEWHERE = """
    SELECT DISTINCT locks.pid FROM pg_locks AS locks
    JOIN pg_database AS db ON db.oid = locks.database AND db.datname = current_database()
    WHERE locks.locktype = 'advisory' AND locks.objsubid = 2 AND locks.pid <> pg_backend_pid()
      AND locks.classid::bigint IN (
          (hashtext('incidents.export_client')::bigint + 4294967296) % 4294967296,
          (hashtext('incidents.export_slot')::bigint + 4294967296) % 4294967296
      )
"""


@pytest.fixture(autouse=True)
def _no_download_left_running(_database_for_every_test):
    """Each test starts with no download's turn or slot held. A download a test left unread holds
    its client's turn (an advisory lock) on the connection that served it until the response is
    closed, or the connection: this test's, or a request thread's, closed when that thread is
    collected, at a moment no test chooses. The next test's download from the same address (the
    test client's 127.0.0.1) was then refused, now and then, "Another download of yours is still
    running" (429). A server would close them; so does this, waiting a moment for other sessions,
    then ending those that still hold one."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock_all()")
        for _ in range(50):
            cursor.execute(_EXPORT_LOCKS_HELD_ELSEWHERE)
            holders = [pid for (pid,) in cursor.fetchall()]
            if not holders:
                break
            time.sleep(0.1)
        for pid in holders:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.fixture(autouse=True)
def _fresh_cache(settings):
    """API throttles count requests in the cache; each test starts with a clean count.

    In this process's memory rather than the shared PostgreSQL cache: its reads and writes would
    add to every pinned query count. The shared cache is tested through the real server with two
    workers (tests/test_accounts_server.py)."""
    from django.core.cache import cache

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _tasks_run_where_queued(settings):
    """Background tasks (the duplicates' rescoring after a write) run as they are queued, so that a
    test sees their effect without a worker; tests/test_duplicates_background.py uses the settings' own
    queue in the database and runs its worker (`db_worker`)."""
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}


@pytest.fixture(autouse=True)
def _one_step_sign_in(settings):
    """Staff sign in with a password alone here, as with DEBUG on; the accounts tests turn the
    second factor on themselves."""
    settings.REQUIRE_2FA = False


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Tests create many accounts; the production hasher's deliberate slowness would dominate."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _reads_from_the_primary(request, settings):
    """Tests read what they have just written; only the replica tests (marked `replica`) let reads go
    to a replica, when DATABASE_REPLICA_URLS names one (as in CI), and wait for it themselves."""
    if request.node.get_closest_marker("replica") is None:
        settings.DATABASE_REPLICAS = []
