"""The shared cache in PostgreSQL (settings.CACHES without REDIS_URL): the API's throttle counters.

Django's DatabaseCache writes a value in five round trips: `SELECT COUNT(*)` of the whole table (to
cull it past MAX_ENTRIES), then BEGIN, SELECT of the key, UPDATE or INSERT, COMMIT. A throttle
writes its counter on every API request, so every request paid them, and the count grows with the
table (up to MAX_ENTRIES rows: one per client of the last hour). Here a write is one statement,
`INSERT … ON CONFLICT DO UPDATE`, which also cannot lose a race between two workers inserting the
same key, as Django's select-then-insert can. Every CULL_EVERY-th write of a process goes through
Django's own path instead, so the table is still counted and culled as Django does (past
MAX_ENTRIES, the expired entries and then a third of the rest); between two counts it may grow by
CULL_EVERY writes per process beyond MAX_ENTRIES (50,000 in settings).
"""

import base64
import itertools
import pickle
from datetime import UTC, datetime

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import DatabaseCache
from django.db import DatabaseError, connections, router

CULL_EVERY = 100


class PostgreSQLCache(DatabaseCache):
    # Every thread has its own cache object; the writes are counted per process.
    _writes = itertools.count(1)

    def _base_set(self, mode, key, value, timeout=DEFAULT_TIMEOUT):
        if mode != "set" or next(self._writes) % CULL_EVERY == 0:
            return super()._base_set(mode, key, value, timeout)
        timeout = self.get_backend_timeout(timeout)
        expires = datetime.max if timeout is None else datetime.fromtimestamp(timeout, tz=UTC)
        connection = connections[router.db_for_write(self.cache_model_class)]
        table = connection.ops.quote_name(self._table)
        # As Django stores it: base64 text of the pickle, expiry to the second.
        encoded = base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {table} (cache_key, value, expires) VALUES (%s, %s, %s) "
                    "ON CONFLICT (cache_key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires",
                    [key, encoded, connection.ops.adapt_datetimefield_value(expires.replace(microsecond=0))],
                )
        except DatabaseError:
            # As Django's: a cache write may fail without failing the request.
            return False
        return True
