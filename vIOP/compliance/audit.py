"""The audit trail's port: the one way to append an audit row (HIPAA §164.312(b), 42 CFR 2.24/2.25).

Implemented by :class:`vIOP.storage.audit_outbox.AuditOutbox` (one per process: rows are queued with the
time of the event and written in order, so a database outage never loses or blocks them). Actions and
outcomes are the string enums of :mod:`vIOP.storage.audit`; entries hold ids and names, never free text.
"""

from __future__ import annotations

from typing import Protocol


class AuditRecorder(Protocol):
    def record(
        self,
        actor_id: str | None,
        actor_role: str,
        action: str,
        object_type: str | None = None,
        object_id: str | None = None,
        outcome: str = ...,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Queue one row stamped now; never waits (the signaling receive loop)."""
        ...

    async def write(
        self,
        actor_id: str | None,
        actor_role: str,
        action: str,
        object_type: str | None = None,
        object_id: str | None = None,
        outcome: str = ...,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Queue one row and wait until it is written (or the database is found away: it stays queued)."""
        ...

    async def record_operator(
        self,
        action: str,
        object_type: str | None = None,
        object_id: str | None = None,
        outcome: str = ...,
        *,
        role: str = ...,
        actor_id: str | None = None,
    ) -> None:
        """A CLI operation, attributed to the operator; raises when the row could not be written."""
        ...
