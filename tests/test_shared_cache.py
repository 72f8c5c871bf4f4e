"""The shared cache in PostgreSQL (tracker/cache.py), where the API's throttles count for every
worker: what is written is read back, a newer write replaces an older one, an expired value is
gone, and the table stays near MAX_ENTRIES however many clients write."""

import pytest
from django.db import connection

from tracker.cache import CULL_EVERY, PostgreSQLCache

pytestmark = pytest.mark.django_db


def shared_cache(max_entries: int = 1000) -> PostgreSQLCache:
    return PostgreSQLCache("tracker_cache", {"OPTIONS": {"MAX_ENTRIES": max_entries}})


def rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tracker_cache")
        return cursor.fetchone()[0]


def test_a_value_is_read_back_and_replaced_by_a_newer_one():
    cache = shared_cache()
    cache.set("throttle_anon_192.0.2.1", [1.5, 1.0], 60)
    assert cache.get("throttle_anon_192.0.2.1") == [1.5, 1.0]
    cache.set("throttle_anon_192.0.2.1", [2.5, 1.5, 1.0], 60)
    assert cache.get("throttle_anon_192.0.2.1") == [2.5, 1.5, 1.0]
    assert rows() == 1


def test_an_expired_value_is_gone():
    cache = shared_cache()
    cache.set("throttle_anon_192.0.2.2", [1.0], -1)
    assert cache.get("throttle_anon_192.0.2.2") is None


def test_the_table_is_culled_past_max_entries():
    # Every CULL_EVERY-th write counts the table and, past MAX_ENTRIES, culls a third, as Django does.
    max_entries = 2 * CULL_EVERY
    cache = shared_cache(max_entries)
    for number in range(6 * CULL_EVERY):
        cache.set(f"throttle_anon_{number}", [1.0], 60)
    assert max_entries <= rows() <= max_entries + CULL_EVERY
