import pytest


@pytest.fixture(autouse=True)
def _database_for_every_test(db):
    """Every test here talks to the real PostgreSQL test database."""


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
