import pytest


@pytest.fixture(autouse=True)
def _database_for_every_test(db):
    """Every test here talks to the real PostgreSQL test database."""


@pytest.fixture(autouse=True)
def _fresh_cache():
    """API throttles count requests in the cache; each test starts with a clean count."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
