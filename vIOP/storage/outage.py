"""Which failures mean "a store is unreachable right now" (Redis or the database down, restarting or
locked), so callers can answer 503 / ``unavailable`` and keep what they must write, instead of a 500.

The drivers raise a mix: redis-py its ConnectionError/TimeoutError family, SQLAlchemy OperationalError or
InterfaceError (sqlite "database is locked", a PostgreSQL connection cut), and asyncpg sometimes a bare OS
error while connecting (a vanished unix socket is FileNotFoundError, a stopped server ConnectionRefusedError).
PostgreSQL also answers on a live connection that it cannot serve now, by SQLSTATE, which SQLAlchemy wraps
in a plain DBAPIError: a restart or failover in progress ("the database system is starting up", 57P03; an
administrator's or a crash shutdown, 57P01/57P02), a connection exception (class 08), too many connections
(53300), a read-only standby after a failover (25006). Those are outages too: what was to be written must be
kept, not dropped as if the entry were bad.
"""

from __future__ import annotations

import redis.exceptions as redis_errors
from sqlalchemy import exc as sa_errors

_REDIS = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.BusyLoadingError)
_SQL = (
    sa_errors.OperationalError,
    sa_errors.InterfaceError,
    sa_errors.TimeoutError,
    sa_errors.DisconnectionError,
)
_OS = (ConnectionError, FileNotFoundError, TimeoutError)
_OUTAGE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "25006")  # prefixes (a class or one code)


def is_store_outage(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says Redis or the database cannot be reached now."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:  # drivers wrap each other; a short chain is enough
        if isinstance(current, _REDIS + _SQL + _OS):
            return True
        if isinstance(current, sa_errors.DBAPIError) and current.connection_invalidated:
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_OUTAGE_SQLSTATES):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False
