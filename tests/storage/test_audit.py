from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select, update

from vIOP.errors import BadRequest
from vIOP.storage.audit import GENESIS, AuditEvent, AuditLog, Outcome, Problem
from vIOP.storage.crypto import KeyRing
from vIOP.storage.schema import audit_log


class StepClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 4, 9, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def checkpoints(tmp_path: Path) -> Path:
    return tmp_path / "audit-checkpoints" / "checkpoints.jsonl"


@pytest.fixture
async def audit(ring: KeyRing, checkpoints: Path) -> AuditLog:
    return AuditLog(ring, checkpoint_path=checkpoints, checkpoint_every=5, clock=StepClock())


async def fill(audit: AuditLog, count: int) -> None:
    for i in range(count):
        await audit.append(
            f"us_{i % 3}",
            "clinician",
            AuditEvent.ADMIT,
            "participant",
            f"pt_{i}",
            Outcome.SUCCESS,
            ip="203.0.113.7",
            user_agent="Mozilla/5.0 (X11) Chrome/131",
        )


async def test_intact_log_verifies_and_rows_hold_no_plaintext_ip_or_agent(
    audit: AuditLog, checkpoints: Path
) -> None:
    await fill(audit, 12)
    result = await audit.verify()
    assert result.ok
    assert result.rows_checked == 12
    assert result.last_seq == 12
    assert result.checkpoints_checked == 2  # rows 5 and 10
    async with audit.db.read() as conn:
        row = (await conn.execute(select(audit_log).where(audit_log.c.seq == 3))).one()
    assert row.prev_mac != GENESIS
    assert b"203.0.113.7" not in row.ip
    assert await audit.client_ip(3, row.ip) == "203.0.113.7"
    assert "Chrome" not in row.user_agent_hash
    assert row.user_agent_hash == audit.user_agent_hash("Mozilla/5.0 (X11) Chrome/131")
    assert row.at == datetime(2026, 5, 4, 9, 0, 3, 123456, tzinfo=UTC)
    lines = checkpoints.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [5, 10]


async def test_edited_row_is_named(audit: AuditLog) -> None:
    await fill(audit, 12)
    async with audit.db.begin() as conn:
        await conn.execute(update(audit_log).where(audit_log.c.seq == 7).values(outcome="denied"))
    result = await audit.verify()
    assert (result.problem, result.bad_seq) == (Problem.ALTERED, 7)
    assert "row 7" in result.detail


async def test_edited_timestamp_is_named(audit: AuditLog) -> None:
    await fill(audit, 4)
    async with audit.db.begin() as conn:
        await conn.execute(
            update(audit_log).where(audit_log.c.seq == 2).values(at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    result = await audit.verify()
    assert (result.problem, result.bad_seq) == (Problem.ALTERED, 2)


async def test_deleted_row_is_named(audit: AuditLog) -> None:
    await fill(audit, 12)
    async with audit.db.begin() as conn:
        await conn.execute(delete(audit_log).where(audit_log.c.seq == 4))
    result = await audit.verify()
    assert (result.problem, result.bad_seq) == (Problem.DELETED, 4)
    assert result.rows_checked == 3


async def test_inserted_row_is_named(audit: AuditLog) -> None:
    await fill(audit, 12)
    async with audit.db.begin() as conn:
        # Make room at seq 6 (highest first: seq is the primary key) and splice a forged row in.
        for seq in range(12, 5, -1):
            await conn.execute(update(audit_log).where(audit_log.c.seq == seq).values(seq=seq + 1))
        prev = (await conn.execute(select(audit_log.c.mac).where(audit_log.c.seq == 5))).scalar_one()
        await conn.execute(
            insert(audit_log).values(
                seq=6,
                at=datetime(2026, 5, 4, 9, 0, 6, tzinfo=UTC),
                actor_id="us_evil",
                actor_role="admin",
                action="access.break_glass",
                outcome="success",
                prev_mac=prev,
                mac=bytes(32),
            )
        )
    result = await audit.verify()
    assert (result.problem, result.bad_seq) == (Problem.INSERTED, 6)


async def test_truncated_tail_is_detected_through_checkpoints(audit: AuditLog) -> None:
    await fill(audit, 12)
    async with audit.db.begin() as conn:
        await conn.execute(delete(audit_log).where(audit_log.c.seq > 8))
    result = await audit.verify()
    assert (result.problem, result.bad_seq) == (Problem.TRUNCATED, 9)
    assert "cut" in result.detail


async def test_forged_or_edited_checkpoint_line_is_reported(audit: AuditLog, checkpoints: Path) -> None:
    await fill(audit, 10)
    lines = checkpoints.read_text().splitlines()
    forged = json.loads(lines[1]) | {"seq": 500}
    checkpoints.write_text(lines[0] + "\n" + json.dumps(forged) + "\n")
    result = await audit.verify()
    assert (result.problem, result.bad_seq) == (Problem.BAD_CHECKPOINT, 2)


async def test_chain_rewritten_from_scratch_disagrees_with_checkpoints(
    audit: AuditLog, ring: KeyRing, tmp_path: Path
) -> None:
    await fill(audit, 10)
    # Even someone who re-creates a valid chain (with the key) cannot match the checkpoints already written.
    async with audit.db.begin() as conn:
        await conn.execute(delete(audit_log))
    rewriter = AuditLog(ring, clock=StepClock())
    for _ in range(10):
        await rewriter.append("us_1", "admin", AuditEvent.LOGIN)
    result = await audit.verify()
    assert (result.problem, result.bad_seq) == (Problem.ALTERED, 5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"actor_id": "Zoë Canary"},
        {"object_id": "Jane Doe"},
        {"action": "Admitted Jane"},
        {"actor_role": ""},
        {"object_type": "Client Name"},
        {"ip": "x" * 100},
    ],
)
async def test_free_text_is_refused_and_nothing_is_written(audit: AuditLog, kwargs: dict[str, str]) -> None:
    args = {
        "actor_id": "us_1",
        "actor_role": "clinician",
        "action": "room.admit",
        "object_type": "participant",
    }
    with pytest.raises(BadRequest):
        await audit.append(**(args | kwargs))  # type: ignore[arg-type]
    async with audit.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(audit_log))).scalar_one() == 0


async def test_concurrent_appends_from_two_logs_keep_one_chain(ring: KeyRing) -> None:
    import asyncio

    first, second = AuditLog(ring), AuditLog(ring)  # two processes' worth of loggers
    await asyncio.gather(
        *(log.append("us_1", "staff", AuditEvent.PRESENCE_VIEWED) for log in [first, second] * 20)
    )
    result = await first.verify()
    assert result.ok
    assert result.rows_checked == 40


async def test_empty_log_verifies(audit: AuditLog) -> None:
    result = await audit.verify()
    assert result.ok
    assert result.rows_checked == 0
    assert await audit.checkpoint() is None
