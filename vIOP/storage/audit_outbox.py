"""THE way to write an audit row: :class:`AuditOutbox`, one per process, for HTTP routes, sockets and the CLI.

An event happens (a room change in Redis, a read, a refusal); its audit row goes to the database. When the
database is unreachable (a restart, a lock held by a backup) the event must not wait on it, and its row
must not be lost: the entry is queued with the time of the event and one background writer appends the
queue in order, at once if it can, else on the next :meth:`kick` (the presence sweeper calls it every
couple of seconds) or at :meth:`close`. The queue is bounded; past the bound the oldest entries are dropped
with a critical log line saying how many.

Two ways in, one entry shape:

- :meth:`record` queues and returns at once: signaling sockets (the receive loop never waits on the
  database).
- :meth:`write` queues, then waits until the queue is written or the database is found away: HTTP routes
  and socket handshakes, so the row is in the database before the answer goes out whenever it can be.
  :meth:`AuditOutbox.record_operator` (the CLI) names the operator and additionally fails when the row could not be written.

Entries are checked when recorded (ids and names only, ``vIOP.storage.audit.check_entry``), so a bad
entry fails in the caller, not later in the writer; the user agent is kept only as its keyed hash.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging

from vIOP.compliance.audit import AuditRecorder
from vIOP.errors import Unavailable
from vIOP.storage.audit import (
    OPERATOR_ROLE,
    AuditEntry,
    AuditEvent,
    AuditLog,
    Outcome,
    check_entry,
    operator_id,
)
from vIOP.storage.crypto import utc_now
from vIOP.storage.outage import is_store_outage

log = logging.getLogger("vIOP.audit")
_BATCH = 200  # entries per transaction: a burst of refusals is written at database speed, not row by row


class AuditOutbox:
    """The :class:`~vIOP.compliance.audit.AuditRecorder`: the one way to append an audit row."""

    def __init__(self, audit: AuditLog, *, limit: int = 100_000) -> None:
        self._audit = audit
        self._limit = limit
        self._pending: collections.deque[AuditEntry] = collections.deque()
        self._writer = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(
        self,
        actor_id: str | None,
        actor_role: str,
        action: AuditEvent | str,
        object_type: str | None = None,
        object_id: str | None = None,
        outcome: Outcome | str = Outcome.SUCCESS,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Queue one entry stamped now and start the writer (needs a running loop); never waits.
        BadRequest (nothing queued) for anything but ids and names."""
        check_entry(actor_id, actor_role, action, object_type, object_id, outcome, ip)
        ua_hash = self._audit.user_agent_hash(user_agent) if user_agent else None
        self._pending.append(
            AuditEntry(utc_now(), actor_id, actor_role, action, object_type, object_id, outcome, ip, ua_hash)
        )
        if len(self._pending) > self._limit:
            dropped = len(self._pending) - self._limit
            for _ in range(dropped):
                self._pending.popleft()
            log.critical("audit outbox full: %d entries dropped, the database stayed unreachable", dropped)
        self.kick()

    async def write(
        self,
        actor_id: str | None,
        actor_role: str,
        action: AuditEvent | str,
        object_type: str | None = None,
        object_id: str | None = None,
        outcome: Outcome | str = Outcome.SUCCESS,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """:meth:`record`, then wait until it is written; if the database is away it stays queued (the
        caller goes on: a read or refusal is not held up by the audit store)."""
        self.record(actor_id, actor_role, action, object_type, object_id, outcome, ip, user_agent)
        await self.flush()

    def kick(self) -> None:
        """Start the background writer unless it is running or there is nothing to write."""
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self.flush())

    async def close(self) -> None:
        """At shutdown: let the running writer finish, then one last attempt."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        await self.flush()
        if self._pending:
            log.critical("audit outbox: %d entries not written at shutdown", len(self._pending))

    async def record_operator(
        self,
        action: AuditEvent | str,
        object_type: str | None = None,
        object_id: str | None = None,
        outcome: Outcome | str = Outcome.SUCCESS,
        *,
        role: str = OPERATOR_ROLE,
        actor_id: str | None = None,
    ) -> None:
        """A CLI operation, attributed to the operator (``SUDO_USER`` or the login name; ``actor_id`` when
        the command acts for a named account, e.g. the admin signing off break-glass access): written
        before the command reports success, or :class:`Unavailable` (a command must not finish
        unaudited). ``role``: ``users`` commands have always been recorded as ``cli``; the other commands
        as ``operator``."""
        await self.write(actor_id or operator_id(), role, action, object_type, object_id, outcome)
        if self._pending:
            raise Unavailable(
                "the operation was done, but the audit log could not be written: check the database"
            )

    async def flush(self) -> None:
        """Append the queued entries, oldest first, up to ``_BATCH`` per transaction; stop at the first
        outage and keep the rest."""
        async with self._writer:
            while self._pending:
                batch = list(itertools.islice(self._pending, _BATCH))
                try:
                    await self._audit.append_many(batch)
                except Exception as exc:
                    if is_store_outage(exc):  # the database is away: keep it for the next flush
                        log.warning(
                            "audit write deferred (%s); %d entries waiting",
                            type(exc).__name__,
                            len(self._pending),
                        )
                        return
                    # Entries were checked when recorded, so this is unexpected: log it and go on.
                    log.exception("audit entries refused", extra={"kind": str(batch[0].action)})
                for _ in batch:
                    self._pending.popleft()


def _implements_the_port(outbox: AuditOutbox) -> AuditRecorder:
    return outbox  # mypy checks here that AuditOutbox meets AuditRecorder
