import pytest


@pytest.fixture(autouse=True)
def _database_for_every_test(db):
    """Every test here talks to the real PostgreSQL test database."""
