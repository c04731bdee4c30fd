"""Audit rows the completeness table does not reach: sign-in (throttled attempts named by the account they
aimed at, the user-agent hash on every sign-in row) and refusals on a socket that never block it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import select

from tests.api import signal_support as ss
from tests.api.support import PASSWORD, Api, assert_error
from tests.security.test_authorization_sweep import open_seat, send_and_settle
from vIOP.auth.permissions import Role
from vIOP.signaling import messages as m
from vIOP.storage.schema import audit_log

AGENT = "Mozilla/5.0 (audit-trail test)"


async def test_throttled_login_is_attributed_to_the_account(live_server_factory: Callable[..., Any]) -> None:
    async with (
        live_server_factory(login_max_failures=3) as live,
        httpx.AsyncClient(base_url=live.base_url, headers={"User-Agent": AGENT}, trust_env=False) as http,
    ):
        api = Api(live, http)
        target = await api.account(Role.CLINICIAN, "dr.target")
        bad = {"username": "dr.target", "password": "guess guess"}
        for _ in range(3):  # the third failure locks the account
            assert_error(await http.post("/api/v1/auth/login", json=bad), 401, "unauthenticated")
        right = {"username": "dr.target", "password": PASSWORD}
        assert_error(await http.post("/api/v1/auth/login", json=right), 429, "rate_limited")
        unknown = {"username": "nobody.at.all", "password": "guess guess"}
        for _ in range(4):
            await http.post("/api/v1/auth/login", json=unknown)

        logins = await api.audit_rows("auth.login")
        throttled = [r for r in logins if r["outcome"] == "denied"]
        # The attempt refused by the lock names the account it was aimed at (it used to be anonymous).
        mine = [r for r in throttled if r["actor_id"] == target.id]
        assert len(mine) == 1, throttled
        assert (mine[0]["actor_role"], mine[0]["object_type"], mine[0]["object_id"]) == (
            "clinician",
            "user",
            target.id,
        )
        # An unknown username has no account to name: its throttled attempts stay anonymous.
        assert all(r["actor_id"] in (target.id, None) for r in throttled)
        # Every sign-in row (failed, locked, throttled) carries the keyed hash of the user agent.
        rows = logins + await api.audit_rows("auth.account_locked")
        expected = api.services.storage.audit.user_agent_hash(AGENT)
        assert rows and all(r["user_agent_hash"] == expected for r in rows)


async def test_refusals_on_a_socket_are_answered_while_the_database_is_locked_and_written_after(
    live_server_factory: Callable[..., Any],
) -> None:
    """The receive loop never waits on the audit store: with the database locked by another process's
    transaction, 20 refused host actions are all answered at once; their rows are written when it frees."""
    async with live_server_factory() as live:
        host = await ss.clinician(live, "dr.locked.out")
        scope = await ss.room(live, host)
        client = await ss.invite(live, host, scope, "Sam")
        seat = await open_seat(live, ss.ticket_source(live, client, scope, None))
        outbox = ss.services(live).audit_outbox
        await outbox.flush()
        locker = sqlite3.connect(live.settings.data_dir / "viop.db", isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            started = time.monotonic()
            for _ in range(20):
                error = await send_and_settle(seat.socket, m.Lock())
                assert error is not None and error.code == "forbidden", error
            answered_in = time.monotonic() - started
            assert outbox.pending >= 1  # queued: the database could not take them yet
        finally:
            locker.rollback()
            locker.close()
        await seat.socket.close()
        await outbox.flush()
        async with ss.services(live).storage.db.read() as conn:
            query = select(audit_log.c.actor_id).where(
                audit_log.c.action == "room.locked", audit_log.c.outcome == "denied"
            )
            denied = (await conn.execute(query)).scalars().all()
        assert denied == [client.subject] * 20
        print(f"20 refusals answered in {answered_in:.3f} s with the database locked")
        assert answered_in < 5.0  # the busy timeout is 10 s: waiting on the database would show
