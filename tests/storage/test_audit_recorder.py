"""The one audit recorder (``AuditOutbox``): entries checked when recorded, ``write`` durable on return,
the user agent kept only as its keyed hash (CLI rows naming the operator: ``tests/cli/test_operator_rows.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from vIOP.errors import BadRequest
from vIOP.storage.audit import AuditEvent, AuditLog, Outcome, operator_id
from vIOP.storage.audit_outbox import AuditOutbox
from vIOP.storage.crypto import KeyRing
from vIOP.storage.schema import audit_log

AGENT = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131 canary-agent-7f3e"


async def rows(audit: AuditLog) -> list[Any]:
    async with audit.db.read() as conn:
        return list((await conn.execute(select(audit_log).order_by(audit_log.c.seq))).all())


async def test_record_refuses_free_text_at_once_and_queues_nothing(ring: KeyRing) -> None:
    audit = AuditLog(ring)
    outbox = AuditOutbox(audit)
    with pytest.raises(BadRequest):
        outbox.record("Jane Doe", "client", AuditEvent.KNOCK, "participant", "pt_1")
    with pytest.raises(BadRequest):
        outbox.record("cl_1", "client", "Room Admit", "participant", "pt_1")
    assert outbox.pending == 0
    await outbox.flush()
    assert await rows(audit) == []


async def test_write_is_in_the_database_on_return_with_the_agent_as_a_keyed_hash(ring: KeyRing) -> None:
    audit = AuditLog(ring)
    outbox = AuditOutbox(audit)
    await outbox.write(
        "us_1", "clinician", AuditEvent.ROOM_VIEWED, "room", "rm_1", Outcome.DENIED, "203.0.113.9", AGENT
    )
    assert outbox.pending == 0
    [row] = await rows(audit)
    assert (row.actor_id, row.action, row.object_id, row.outcome) == ("us_1", "room.viewed", "rm_1", "denied")
    assert row.user_agent_hash == audit.user_agent_hash(AGENT)
    assert "canary-agent" not in repr(row)
    assert (await audit.verify()).ok


async def test_recorded_rows_keep_their_order_and_event_time(ring: KeyRing) -> None:
    audit = AuditLog(ring)
    outbox = AuditOutbox(audit)
    for i in range(5):
        outbox.record("us_1", "clinician", AuditEvent.ADMIT, "participant", f"pt_{i}", user_agent=AGENT)
    await outbox.flush()
    written = await rows(audit)
    assert [r.object_id for r in written] == [f"pt_{i}" for i in range(5)]
    assert all(r.user_agent_hash == audit.user_agent_hash(AGENT) for r in written)
    assert [r.at for r in written] == sorted(r.at for r in written)


def test_operator_is_the_person_behind_sudo_else_the_login_name() -> None:
    assert operator_id({"SUDO_USER": "carol", "LOGNAME": "root"}) == "os:carol"
    assert operator_id({"LOGNAME": "dave"}) == "os:dave"
    odd = operator_id({"SUDO_USER": "CLINIC\\Jane Doe"})  # not a plain login name: never stored as text
    assert odd.startswith("os:h") and "Jane" not in odd and len(odd) <= 64


async def test_a_burst_is_written_in_batches_that_keep_the_chain_and_its_checkpoints(
    ring: KeyRing, tmp_path: Path
) -> None:
    audit = AuditLog(ring, checkpoint_path=tmp_path / "marks.jsonl", checkpoint_every=100)
    outbox = AuditOutbox(audit)
    for i in range(450):  # a refusal flood: more than two batches
        outbox.record(
            f"cl_{i % 7}", "client", AuditEvent.ADMIT, "room", "rm_1", Outcome.DENIED, "198.51.100.4"
        )
    await outbox.flush()
    assert outbox.pending == 0
    written = await rows(audit)
    assert [r.seq for r in written] == list(range(1, 451))
    assert [r.actor_id for r in written] == [f"cl_{i % 7}" for i in range(450)]  # in recorded order
    result = await audit.verify()
    assert result.ok and result.rows_checked == 450
    assert result.checkpoints_checked >= 2  # a batch that reaches a multiple of 100 signs a checkpoint
