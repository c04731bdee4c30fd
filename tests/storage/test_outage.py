"""Which failures count as a store outage (kept and retried) rather than a bad entry (logged, dropped)."""

from __future__ import annotations

import asyncpg.exceptions as pg
import pytest
from sqlalchemy import exc as sa_errors

from vIOP.storage.outage import is_store_outage


def _as_sqlalchemy_raises(error: Exception) -> BaseException:
    """``error`` wrapped the way SQLAlchemy's asyncpg dialect raises it: a plain DBAPIError, the driver's
    exception as its cause."""
    try:
        try:
            raise error
        except Exception as driver_error:
            raise sa_errors.DBAPIError("INSERT INTO audit_log ...", {}, driver_error) from driver_error
    except sa_errors.DBAPIError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    "error",
    [
        pg.CannotConnectNowError("the database system is starting up"),  # seen in CI: audit rows were lost
        pg.AdminShutdownError("terminating connection due to administrator command"),
        pg.CrashShutdownError("terminating connection because of crash of another server process"),
        pg.ConnectionFailureError("connection failure"),
        pg.TooManyConnectionsError("sorry, too many clients already"),
        pg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_postgres_saying_it_cannot_serve_now_is_an_outage(error: Exception) -> None:
    assert is_store_outage(_as_sqlalchemy_raises(error))


@pytest.mark.parametrize(
    "error",
    [
        pg.UniqueViolationError("duplicate key value violates unique constraint"),
        pg.NotNullViolationError("null value in column"),
        pg.UndefinedTableError("relation does not exist"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_bad_statement_or_entry_is_not_an_outage(error: Exception) -> None:
    assert not is_store_outage(_as_sqlalchemy_raises(error))
