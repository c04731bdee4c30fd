"""Retention: what is past its period is purged or shredded, at a time the test injects, on real SQL; the
run is audited with counts, a dry run changes nothing, a second run finds nothing, ``audit verify`` holds."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update

from tests.compliance.support import DAY, START, YEAR, World, at
from vIOP.cli import compliance as compliance_cli
from vIOP.cli.storage import add_parsers as add_storage_parsers
from vIOP.cli.storage import run as run_storage
from vIOP.compliance.consent import DataCategory
from vIOP.compliance.retention import RetentionPolicy, due
from vIOP.ids import ParticipantId, RoomId, UserId
from vIOP.rooms.chat import ChatLine
from vIOP.rooms.clock import ManualClock
from vIOP.rooms.participant import Role
from vIOP.settings import Settings
from vIOP.storage.audit import AuditLog, Problem
from vIOP.storage.bootstrap import Storage, open_storage
from vIOP.storage.break_glass_sql import SqlBreakGlassStore
from vIOP.storage.chat_transcripts_sql import SqlChatTranscripts
from vIOP.storage.consents_sql import SqlConsentStore
from vIOP.storage.crypto import KeyDestroyed
from vIOP.storage.retention import RetentionReport, last_run, run_daily, run_if_due, run_retention
from vIOP.storage.schema import (
    attendance_intervals,
    audio_only_spans,
    audit_anchors,
    audit_log,
    break_glass_grants,
    chat_transcripts,
    invites,
    part2_consents,
    rooms,
    webhook_outbox,
)
from vIOP.storage.webhooks_sql import SqlWebhookStore
from vIOP.webhooks.events import WebhookEventType
from vIOP.webhooks.policy import new_secret

POLICY = RetentionPolicy()  # attendance and audit 2190 days, rooms and invites 400
OLD_TITLE = "Thursday opioid recovery group"


def test_cutoffs_and_the_daily_schedule_follow_the_clock() -> None:
    clock = ManualClock(START)
    cut = RetentionPolicy(attendance_days=10, audit_days=20, room_days=3, invite_days=1).cutoffs(clock())
    assert (cut.attendance, cut.audit, cut.rooms, cut.invites) == (
        START - 10 * DAY, START - 20 * DAY, START - 3 * DAY, START - DAY,
    )  # fmt: skip
    assert due(None, clock())
    last = clock()
    clock.advance(DAY - 1)
    assert not due(last, clock())
    clock.advance(1)
    assert due(last, clock())


async def _count(storage: Storage, table: object) -> int:
    async with storage.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_a_run_purges_and_shreds_what_is_past_retention_and_nothing_else(storage: Storage) -> None:
    clock = ManualClock(START + 8 * YEAR)
    now = clock()
    world = World(storage)
    await world.add_host(START)
    # seven years ago: a room, a client who attended once, a consent, a signed-off and an unreviewed grant
    ancient_room = await world.room(now - 7 * YEAR, now - 7 * YEAR + DAY, OLD_TITLE)
    gone = await world.client(ancient_room, now - 7 * YEAR, "Avery Quinn", now - 7 * YEAR + DAY)
    await world.attended(ancient_room, gone, now - 7 * YEAR + 3600, now - 7 * YEAR + 4 * 3600)
    consents = SqlConsentStore(storage.db, storage.keys)
    await consents.add(
        gone, "Old Court", "monitoring", frozenset({DataCategory.ATTENDANCE}), now + DAY, None, now - 7 * YEAR
    )
    grants = SqlBreakGlassStore(storage.db, storage.keys)
    reviewed = await grants.open(
        world.host, "admin", ancient_room, "covering the host, old case", now - 7 * YEAR, 3600
    )
    await grants.sign_off(reviewed.id, world.host, now - 7 * YEAR + DAY)
    unreviewed = await grants.open(
        world.host, "admin", ancient_room, "never looked at by anyone", now - 7 * YEAR, 3600
    )
    # two years ago: a room ended, its client attended (attendance kept 6 years; the room's title is not)
    old_room = await world.room(now - 2 * YEAR, now - 2 * YEAR + DAY, OLD_TITLE)
    kept = await world.client(old_room, now - 2 * YEAR, "Blake Hollis", now - 2 * YEAR + DAY)
    await world.attended(old_room, kept, now - 2 * YEAR + 3600, now - 2 * YEAR + 4 * 3600)
    # last month: a live room and its client, untouched
    new_room = await world.room(now - 30 * DAY, None, "Monday group")
    recent = await world.client(new_room, now - 30 * DAY, "Casey Rivera", now + DAY)
    await world.attended(new_room, recent, now - 29 * DAY, now - 29 * DAY + 3 * 3600)
    # issue 15: a saved chat transcript in each room; the two ended past the room cut-off go
    transcripts = SqlChatTranscripts(storage.db, storage.keys)
    for room_id, ended in ((ancient_room, now - 7 * YEAR), (old_room, now - 2 * YEAR), (new_room, now - DAY)):
        line = ChatLine(
            room_id=RoomId(room_id), sender=ParticipantId("pt_h"), sender_name="Dr. Lee", sender_role=Role.HOST,
            text="Retentionchatline", private=False, thread=None, at=ended,
        )  # fmt: skip
        await transcripts.save(RoomId(room_id), [line], by=UserId(world.host), at=ended)

    for _ in range(3):  # audit rows of seven years ago
        await storage.audit.append(world.host, "admin", "auth.login", at=at(now - 7 * YEAR))
    await storage.audit.append(world.host, "admin", "auth.login", at=at(now - DAY))  # and yesterday's

    preview = await run_retention(storage, POLICY, now, dry_run=True)
    expected = RetentionReport(
        dry_run=False, attendance_deleted=1, sessions_deleted=1, invites_deleted=2, room_titles_purged=2,
        rooms_deleted=1, clients_shredded=1, consents_deleted=1, grants_deleted=1, audit_rows_deleted=3,
        transcripts_deleted=2,
    )  # fmt: skip
    assert preview.counts() == expected.counts() and preview.dry_run
    assert await _count(storage, attendance_intervals) == 3 and await _count(storage, invites) == 3
    assert await _count(storage, audio_only_spans) == 3
    assert (await world.invites.client_display_name(gone)) == "Avery Quinn"  # the dry run changed nothing

    report = await run_retention(storage, POLICY, now)
    assert report == expected
    assert await _count(storage, audio_only_spans) == 2  # the ancient stay's span went with it
    with pytest.raises(KeyDestroyed):
        await world.invites.client_display_name(gone)
    assert await world.invites.client_display_name(kept) == "Blake Hollis"
    assert await world.invites.client_display_name(recent) == "Casey Rivera"
    with pytest.raises(Exception, match="no such room"):
        await world.rooms.get(ancient_room)
    assert (await world.rooms.get(old_room)).title == ""  # the row stays while its attendance does
    assert (await world.rooms.get(new_room)).title == "Monday group"
    async with storage.db.read() as conn:
        left = {r.client_id for r in await conn.execute(select(attendance_intervals.c.client_id))}
        titles = [t for (t,) in await conn.execute(select(rooms.c.title))]
        grant_ids = {g for (g,) in await conn.execute(select(break_glass_grants.c.id))}
    assert left == {kept, recent}
    assert all(OLD_TITLE.encode() not in t for t in titles)
    assert grant_ids == {unreviewed.id}  # unreviewed access stays on the review list
    assert await _count(storage, part2_consents) == 0
    assert await _count(storage, chat_transcripts) == 1
    assert await transcripts.get(RoomId(old_room)) is None
    assert [x.text for x in (await transcripts.get(RoomId(new_room)) or pytest.fail("kept")).lines] == [
        "Retentionchatline"
    ]

    again = await run_retention(storage, POLICY, now)
    assert set(again.counts().values()) == {0}
    async with storage.db.read() as conn:
        runs = (
            await conn.execute(
                select(audit_log.c.action, audit_log.c.actor_role, audit_log.c.object_id)
                .where(audit_log.c.object_type == "retention")
                .order_by(audit_log.c.seq)
            )
        ).all()
    assert [tuple(r) for r in runs] == [
        ("retention.previewed", "operator", "at1.ss1.iv2.rt2.rd1.cl1.cn1.bg1.au3.tr2"),
        ("retention.run", "operator", "at1.ss1.iv2.rt2.rd1.cl1.cn1.bg1.au3.tr2"),
        ("retention.run", "operator", "at0.ss0.iv0.rt0.rd0.cl0.cn0.bg0.au0.tr0"),
    ]
    assert (await storage.audit.verify()).ok  # old audit rows went behind a signed anchor: the chain holds


async def test_the_scheduled_job_runs_once_a_day(storage: Storage) -> None:
    clock = ManualClock(START)
    first = await run_if_due(storage, POLICY, clock())
    assert first is not None
    assert await last_run(storage) == START
    clock.advance(DAY / 2)
    assert await run_if_due(storage, POLICY, clock()) is None
    clock.advance(DAY / 2)
    assert await run_if_due(storage, POLICY, clock()) is not None
    async with storage.db.read() as conn:
        roles = (
            (await conn.execute(select(audit_log.c.actor_role).where(audit_log.c.action == "retention.run")))
            .scalars()
            .all()
        )
    assert roles == ["system", "system"]


async def test_the_app_loop_runs_the_job_when_due(storage: Storage) -> None:
    clock = ManualClock(START)
    task = asyncio.create_task(run_daily(storage, POLICY, clock, every=0.01))
    try:
        for _ in range(500):  # bounded poll of the background loop
            if await last_run(storage) is not None:
                break
            await asyncio.sleep(0.01)
        assert await last_run(storage) == START
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_retention_run_from_the_command_line(
    data_dir: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_storage_parsers(parser.add_subparsers(dest="command", required=True))
    assert run_storage(parser.parse_args(["keys", "init", str(key_file)]), Settings(data_dir=data_dir)) == 0
    settings = Settings(data_dir=data_dir, key_file=key_file)
    cli = argparse.ArgumentParser()
    compliance_cli.add_parsers(cli.add_subparsers(dest="command", required=True))
    assert compliance_cli.run(cli.parse_args(["retention", "run", "--dry-run"]), settings) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "clients shredded: 0" in out
    assert compliance_cli.run(cli.parse_args(["retention", "run"]), settings) == 0

    async def actions() -> list[str]:
        storage = await open_storage(settings)
        try:
            async with storage.db.read() as conn:
                return list((await conn.execute(select(audit_log.c.action))).scalars())
        finally:
            await storage.close()

    assert asyncio.run(actions())[-2:] == ["retention.previewed", "retention.run"]


# --- the audit log past its retention: purged behind a signed anchor -------------------------------


async def test_old_audit_rows_go_behind_a_signed_anchor_and_verify_still_holds(
    storage: Storage, tmp_path: Path
) -> None:
    audit = AuditLog(storage.keys, checkpoint_path=tmp_path / "marks.jsonl", checkpoint_every=3)
    clock = ManualClock(START)
    for _ in range(10):  # rows 1..10, one a day; checkpoints at rows 3, 6, 9
        await audit.append("us_x", "admin", "auth.login", at=at(clock()))
        clock.advance(DAY)
    assert (await audit.verify()).ok
    assert await audit.purge_before(at(START + 4 * DAY), dry_run=True) == 4
    assert await _count(storage, audit_log) == 10
    assert await audit.purge_before(at(START + 4 * DAY)) == 4  # rows 1..4: all older than day 4
    result = await audit.verify()
    assert result.ok and (result.rows_checked, result.last_seq) == (6, 10), result
    await audit.append("us_x", "admin", "auth.login")
    assert (await audit.verify()).ok  # the chain goes on from row 10
    assert await audit.purge_before(at(START + 100 * DAY)) == 6  # never the newest row
    assert (await audit.verify()).ok and await _count(storage, audit_log) == 1

    async with storage.db.begin() as conn:  # a forged anchor (another sig) is caught
        await conn.execute(update(audit_anchors).where(audit_anchors.c.seq == 10).values(sig="0" * 64))
    forged = await audit.verify()
    assert forged.problem is Problem.BAD_CHECKPOINT and forged.bad_seq == 10


async def test_a_gap_after_the_anchor_is_still_a_deletion_and_a_broken_log_is_never_purged(
    storage: Storage,
) -> None:
    audit = storage.audit
    for day in range(6):
        await audit.append("us_x", "admin", "auth.login", at=at(START + day * DAY))
    assert await audit.purge_before(at(START + 2 * DAY)) == 2
    async with storage.db.begin() as conn:
        await conn.execute(delete(audit_log).where(audit_log.c.seq == 4))
    broken = await audit.verify()
    assert (broken.problem, broken.bad_seq) == (Problem.DELETED, 4)
    assert await audit.purge_before(at(START + 5 * DAY)) == 0  # evidence is kept
    assert await _count(storage, audit_log) == 3


async def test_webhook_outbox_rows_go_with_attendance_retention(storage: Storage) -> None:
    """Issue 16: outbox rows hold attendance facts; those older than the attendance cut-off are deleted,
    delivered or not, the recent ones kept."""
    now = START + 8 * YEAR
    store = SqlWebhookStore(storage.db, storage.keys)
    await store.add(
        "https://ehr.example/in", (WebhookEventType.CLIENT_NO_SHOW,), allow_phi=False, secret=new_secret(),
        created_by=None, at=at(now - 7 * YEAR),
    )  # fmt: skip
    for when in (now - 7 * YEAR, now - 7 * YEAR + DAY, now - DAY):
        await store.enqueue(WebhookEventType.CLIENT_NO_SHOW, {"client_id": "cl_1"}, at(when))
    assert await _count(storage, webhook_outbox) == 3
    await run_retention(storage, POLICY, now)
    async with storage.db.read() as conn:
        kept = (await conn.execute(select(webhook_outbox.c.created_at))).scalars().all()
    assert [k.timestamp() for k in kept] == [now - DAY]
