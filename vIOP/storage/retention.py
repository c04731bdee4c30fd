"""The retention job: what is past its retention period is purged or crypto-shredded, and the run audited.

One run, in this order (each step its own transaction, each idempotent, so an interrupted run is finished
by the next one):

1. attendance intervals that ended before the attendance cut-off are deleted, then sessions left empty,
   and webhook outbox rows made before that cut-off, delivered or not (they hold attendance facts);
2. invites that expired before the invite cut-off are deleted (token hash, client link, label);
3. rooms that ended before the room cut-off have their saved chat transcript deleted and their title
   overwritten with an empty ciphertext (the row stays while attendance still points at it), and are
   deleted once nothing points at them;
4. clients created before the attendance cut-off with no attendance and no invite left are shredded
   (their data key is destroyed: name, labels and Part 2 consents become unreadable), and their consent
   rows deleted;
5. break-glass grants signed off before the audit cut-off are deleted (unreviewed ones stay listed);
6. audit rows older than the audit cut-off (6 years at least) are deleted behind a signed anchor, after the
   chain verified, so ``audit verify`` starts at the anchor (``AuditLog.purge_before``; docs/HIPAA.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from vIOP.compliance.retention import RetentionPolicy, due
from vIOP.settings import Settings
from vIOP.storage.audit import Outcome
from vIOP.storage.bootstrap import Storage
from vIOP.storage.crypto import FieldRef, shred_client_in
from vIOP.storage.schema import (
    attendance_intervals as ai,
)
from vIOP.storage.schema import (
    audio_only_spans as aos,
)
from vIOP.storage.schema import (
    audit_log,
    chat_transcripts,
    clients,
    invites,
    room_cohosts,
    room_sessions,
    rooms,
    webhook_outbox,
)
from vIOP.storage.schema import (
    break_glass_grants as bg,
)
from vIOP.storage.schema import (
    breakout_spans as bos,
)
from vIOP.storage.schema import (
    part2_consents as pc,
)

log = logging.getLogger("vIOP.retention")

RUN: Final = "retention.run"
PREVIEW: Final = "retention.previewed"
OBJECT_TYPE: Final = "retention"
CHECK_EVERY_SECONDS: Final = 3600.0


def policy_from(settings: Settings) -> RetentionPolicy:
    return RetentionPolicy(
        attendance_days=settings.retention_attendance_days,
        audit_days=settings.retention_audit_days,
        room_days=settings.retention_room_days,
        invite_days=settings.retention_invite_days,
    )


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """Counts only (no ids, no PHI): what was (or, in a dry run, would be) removed."""

    dry_run: bool
    attendance_deleted: int = 0
    sessions_deleted: int = 0
    invites_deleted: int = 0
    room_titles_purged: int = 0
    rooms_deleted: int = 0
    clients_shredded: int = 0
    consents_deleted: int = 0
    grants_deleted: int = 0
    audit_rows_deleted: int = 0
    transcripts_deleted: int = 0  # saved chat transcripts (issue 15), with their room's record

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k != "dry_run"}

    def audit_object_id(self) -> str:
        """The counts in one audit object id (ids and digits only): ``at3.ss1.iv2.rt1.rd0.cl1.cn0.bg0.au0.tr1``."""
        short = ("at", "ss", "iv", "rt", "rd", "cl", "cn", "bg", "au", "tr")
        return ".".join(
            f"{tag}{min(n, 10**6 - 1)}" for tag, n in zip(short, self.counts().values(), strict=True)
        )


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _title_ref(room_id: str) -> FieldRef:
    return FieldRef("rooms", "title", room_id)


class _DryRun(Exception):
    """Raised inside the run's transaction to roll a dry run back."""


async def _count(conn: AsyncConnection, table: Any, condition: Any) -> int:
    return int((await conn.execute(select(func.count()).select_from(table).where(condition))).scalar_one())


async def _delete(conn: AsyncConnection, table: Any, condition: Any) -> int:
    return int((await conn.execute(delete(table).where(condition))).rowcount or 0)


async def run_retention(
    storage: Storage,
    policy: RetentionPolicy,
    now: float,
    *,
    dry_run: bool = False,
    actor_role: str = "operator",
) -> RetentionReport:
    """One retention run at ``now`` (the caller's clock), in one transaction (a dry run is the same run,
    rolled back), audited as ``retention.run`` (``retention.previewed`` for a dry run) with the counts as
    its object id."""
    shredded_keys: list[str] = []
    report = RetentionReport(dry_run)
    try:
        async with storage.db.begin() as conn:
            report = await _run(conn, storage, policy, now, dry_run, shredded_keys)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    for key_id in shredded_keys if not dry_run else ():
        storage.keys.forget(key_id)
    purged = await storage.audit.purge_before(_at(policy.cutoffs(now).audit), dry_run=dry_run)
    report = replace(report, audit_rows_deleted=purged)
    await storage.audit.append(
        None, actor_role, PREVIEW if dry_run else RUN, OBJECT_TYPE, report.audit_object_id(), Outcome.SUCCESS,
        at=_at(now),
    )  # fmt: skip
    return report


async def _run(
    conn: AsyncConnection,
    storage: Storage,
    policy: RetentionPolicy,
    now: float,
    dry_run: bool,
    shredded_keys: list[str],
) -> RetentionReport:
    cut = policy.cutoffs(now)
    fields = storage.keys.system_fields
    empty_title = len(fields.encrypt(_title_ref("rm_x"), ""))

    attendance = await _delete(conn, ai, and_(ai.c.left_at.is_not(None), ai.c.left_at < _at(cut.attendance)))
    await _delete(
        conn, aos, and_(aos.c.ended_at.is_not(None), aos.c.ended_at < _at(cut.attendance))
    )  # audio-only spans go with the stays they lie in
    await _delete(
        conn, bos, and_(bos.c.ended_at.is_not(None), bos.c.ended_at < _at(cut.attendance))
    )  # and so do breakout spans (issue 15)
    empty_session = and_(
        ~exists().where(ai.c.session_id == room_sessions.c.id),
        ~exists().where(aos.c.session_id == room_sessions.c.id),
        ~exists().where(bos.c.session_id == room_sessions.c.id),
    )
    sessions = await _delete(
        conn, room_sessions, and_(room_sessions.c.ended_at < _at(cut.attendance), empty_session)
    )
    # Webhook outbox rows (issue 16) hold attendance facts (client ids, minutes): kept as long as attendance,
    # delivered or not (a receiver silent for the whole retention period gets nothing more).
    await _delete(conn, webhook_outbox, webhook_outbox.c.created_at < _at(cut.attendance))
    invites_gone = await _delete(conn, invites, invites.c.expires_at < _at(cut.invites))

    old_room = and_(rooms.c.state == "ended", rooms.c.ended_at < _at(cut.rooms))
    transcripts = await _delete(
        conn, chat_transcripts, chat_transcripts.c.room_id.in_(select(rooms.c.id).where(old_room))
    )
    titled = (
        (await conn.execute(select(rooms.c.id).where(old_room, func.length(rooms.c.title) > empty_title)))
        .scalars()
        .all()
    )
    for room_id in titled:
        blank = fields.encrypt(_title_ref(room_id), "")
        await conn.execute(update(rooms).where(rooms.c.id == room_id).values(title=blank))
    unreferenced = and_(
        ~exists().where(ai.c.room_id == rooms.c.id),
        ~exists().where(room_sessions.c.room_id == rooms.c.id),
        ~exists().where(invites.c.room_id == rooms.c.id),
    )
    old_unreferenced = select(rooms.c.id).where(old_room, unreferenced)
    await _delete(conn, room_cohosts, room_cohosts.c.room_id.in_(old_unreferenced))  # before their room
    rooms_gone = await _delete(conn, rooms, and_(old_room, unreferenced))

    expired_clients = (
        (
            await conn.execute(
                select(clients.c.id).where(
                    clients.c.shredded_at.is_(None),
                    clients.c.created_at < _at(cut.attendance),
                    ~exists().where(ai.c.client_id == clients.c.id),
                    ~exists().where(invites.c.client_id == clients.c.id),
                )
            )
        )
        .scalars()
        .all()
    )
    for client_id in expired_clients:
        shredded_keys.append((await shred_client_in(conn, client_id, _at(now))).data_key_id)
    shredded = select(clients.c.id).where(clients.c.shredded_at.is_not(None))
    consents = await _delete(conn, pc, pc.c.client_id.in_(shredded))
    grants = await _delete(conn, bg, and_(bg.c.signed_off_at.is_not(None), bg.c.created_at < _at(cut.audit)))
    return RetentionReport(
        dry_run,
        attendance,
        sessions,
        invites_gone,
        len(titled),
        rooms_gone,
        len(expired_clients),
        consents,
        grants,
        transcripts_deleted=transcripts,
    )


async def last_run(storage: Storage) -> float | None:
    """When the last real (not dry) run was audited."""
    async with storage.db.read() as conn:
        at = (
            await conn.execute(
                select(func.max(audit_log.c.at)).where(
                    audit_log.c.object_type == OBJECT_TYPE, audit_log.c.action == RUN
                )
            )
        ).scalar_one_or_none()
    if at is None:
        return None
    # SQLite's max() hands back text, not the UtcDateTime the column type would give a plain select
    moment = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


async def run_if_due(storage: Storage, policy: RetentionPolicy, now: float) -> RetentionReport | None:
    """The scheduled step: run when the last run is a day old (or there was none)."""
    if not due(await last_run(storage), now):
        return None
    return await run_retention(storage, policy, now, actor_role="system")


async def run_daily(
    storage: Storage,
    policy: RetentionPolicy,
    clock: Callable[[], float],
    every: float = CHECK_EVERY_SECONDS,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """The app's background loop: check every hour, run once a day. Failures are retried at the next check.
    Ends between checks once ``stop`` is set (never inside a run's transaction)."""
    stop = stop or asyncio.Event()
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return
        try:
            await run_if_due(storage, policy, clock())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("retention run failed; will retry at the next check")
