"""Django's PostgreSQL backend, which says at once, in one line, why a database cannot be reached.

With the pool, a process's connections are made by the pool's background thread: it logs each
refusal and tries again, while the query waiting for a connection fails only after the pool's
timeout (DATABASE_POOL_TIMEOUT, 10 s) with "couldn't get a connection", naming neither the address
nor the reason. A mistyped DATABASE_URL thus made every command wait, then print a long traceback
with the reason in the log lines above it. So before a pool opens (a process's first connection,
and each one after while that one fails), one connection is tried directly: refused, it fails at
once with the server's reason. Once the pool is open, an outage is the pool's to wait out as before.
Without the pool (DATABASE_POOL_SIZE=0) Django's own connection failed at once already; its error
is given the same line.
"""

import psycopg
from django.db.backends.postgresql import base


class DatabaseUnreachable(psycopg.OperationalError):
    """Django turns it into its own OperationalError, as any psycopg error, so callers (the replica
    router, a request's error handling) see what a refused connection always gave them; manage.py
    prints its message alone, which says all a traceback would."""


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        try:
            if self.pool is None:
                return super().get_new_connection(conn_params)
            if self.pool.closed:
                # No longer than the pool would wait (a replica's own connect_timeout comes first):
                # a host that drops packets rather than refusing them.
                timeout = self.settings_dict["OPTIONS"]["pool"]["timeout"]
                psycopg.connect(**{"connect_timeout": timeout, **conn_params}).close()
        except psycopg.OperationalError as error:
            # The variable, what it names (never the password) and libpq's reason, on one line.
            settings_dict = self.settings_dict
            address = f"{settings_dict['HOST'] or 'the local socket'}:{settings_dict['PORT'] or 5432}"
            reason = " ".join(str(error).split())
            raise DatabaseUnreachable(
                f"{settings_dict['URL_VARIABLE']}: cannot connect to database {settings_dict['NAME']!r} "
                f"as {settings_dict['USER']!r} on {address}: {reason}"
            ) from None
        return super().get_new_connection(conn_params)
