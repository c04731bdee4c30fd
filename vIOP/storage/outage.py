"""Which failures mean "a store is unreachable right now" (Redis or the database down, restarting or
locked), so callers can answer 503 / ``unavailable`` and keep what they must write, instead of a 500.

The drivers raise a mix: redis-py its ConnectionError/TimeoutError family, SQLAlchemy OperationalError or
InterfaceError (sqlite "database is locked", a PostgreSQL connection cut), and asyncpg sometimes a bare OS
error while connecting (a vanished unix socket is FileNotFoundError, a stopped server ConnectionRefusedError).
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


def is_store_outage(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says Redis or the database cannot be reached now."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:  # drivers wrap each other; a short chain is enough
        if isinstance(current, _REDIS + _SQL + _OS):
            return True
        if isinstance(current, sa_errors.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False
