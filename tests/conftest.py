import importlib

import pytest
from django.apps import apps

from incidents.models import IncidentType

# The module name starts with a digit, so it cannot be imported with an import statement.
seed_migration = importlib.import_module("incidents.migrations.0002_seed_incident_types")


@pytest.fixture(autouse=True)
def _database_for_every_test(db):
    """Every test here talks to the real PostgreSQL test database.

    A transactional test (the browser test's live server) empties the database when it ends, taking
    the incident types that migration 0002 seeded with it (the roles come back by themselves, on
    post_migrate); put them back for the tests that follow."""
    if not IncidentType.objects.exists():
        seed_migration.seed(apps, schema_editor=None)
