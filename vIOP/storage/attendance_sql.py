"""The attendance ledger on SQL (``attendance_intervals``, ``audio_only_spans``, ``breakout_spans`` and
``room_sessions`` in ``schema.py``).

Rows hold ids and times only (no PHI to encrypt). Each call is one transaction; on SQLite it begins
IMMEDIATE (``database.py``) and on PostgreSQL it locks the session row, so two processes recording the
same person cannot both open an interval.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from vIOP.ids import ParticipantId, RoomId, SessionId, new_id
from vIOP.rooms.attendance import (
    AudioOnlyMark,
    AudioOnlySpan,
    BreakoutMark,
    BreakoutSpan,
    CloseMark,
    CloseReason,
    Interval,
    OpenAction,
    OpenMark,
    SessionEndMark,
    decide_open,
)
from vIOP.rooms.audio_only import AudioOnlyReason
from vIOP.rooms.participant import Role
from vIOP.rooms.ports import AttendanceQuery
from vIOP.storage.database import Database
from vIOP.storage.schema import attendance_intervals as ai
from vIOP.storage.schema import audio_only_spans as aos
from vIOP.storage.schema import breakout_spans as bos
from vIOP.storage.schema import room_sessions
from vIOP.storage.webhooks_sql import SqlWebhookStore
from vIOP.webhooks.events import PayloadValue, WebhookEventType


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _ts(value: datetime) -> float:
    return value.timestamp()


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _covered_seconds(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by the union of ``spans`` (overlapping stays count once)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _subject_is(subject: str) -> Any:
    return or_(ai.c.client_id == subject, ai.c.user_id == subject)


def _span_subject_is(subject: str) -> Any:
    return or_(aos.c.client_id == subject, aos.c.user_id == subject)


class SqlAttendanceStore:
    """``webhooks``: when set, a room session's start and end (and each client's attended minutes at the
    end) are written to the webhook outbox in the same transaction as the ledger rows that record them."""

    def __init__(self, db: Database, webhooks: SqlWebhookStore | None = None) -> None:
        self.db = db
        self.webhooks = webhooks

    async def open(self, mark: OpenMark, grace: float) -> None:
        async with self.db.begin() as conn:
            made = await self._lock_session(conn, mark.room_id, mark.session_id, mark.at)
            if made and self.webhooks is not None:  # the first stay: a host entered, the room went live
                started = {
                    "room_id": mark.room_id,
                    "session_id": mark.session_id,
                    "started_at": _iso(_dt(mark.at)),
                }
                await self.webhooks.enqueue_in(conn, WebhookEventType.SESSION_STARTED, started, _dt(mark.at))
            latest = await self._latest(conn, mark.session_id, mark.subject)
            action = decide_open(latest, mark.at, grace)
            if action is OpenAction.REOPEN and latest is not None:
                await conn.execute(
                    update(ai).where(ai.c.id == latest.id).values(left_at=None, close_reason=None)
                )
            elif action is OpenAction.NEW:
                client = mark.subject if mark.role is Role.CLIENT else None
                user = mark.subject if mark.role is Role.HOST else None
                await conn.execute(
                    insert(ai).values(
                        id=new_id("at"),
                        session_id=mark.session_id,
                        room_id=mark.room_id,
                        participant_id=mark.participant_id,
                        client_id=client,
                        user_id=user,
                        joined_at=_dt(mark.at),
                    )
                )

    async def close(self, mark: CloseMark) -> None:
        async with self.db.begin() as conn:
            latest = await self._latest(conn, mark.session_id, mark.subject)
            if latest is None or latest.left_at is not None:
                return
            at = max(mark.at, latest.joined_at)
            await conn.execute(
                update(ai).where(ai.c.id == latest.id).values(left_at=_dt(at), close_reason=mark.reason.value)
            )
            await self._end_spans(
                conn, and_(aos.c.session_id == mark.session_id, _span_subject_is(mark.subject)), at
            )
            await self._end_breakouts(
                conn, and_(bos.c.session_id == mark.session_id, bos.c.client_id == mark.subject), at
            )

    async def end_session(self, mark: SessionEndMark) -> None:
        async with self.db.begin() as conn:
            never_live = await self._lock_session(conn, mark.room_id, mark.session_id, mark.at)
            ended = await conn.execute(
                update(room_sessions)
                .where(room_sessions.c.id == mark.session_id, room_sessions.c.ended_at.is_(None))
                .values(ended_at=_dt(mark.at))
            )
            await self._end_spans(conn, aos.c.session_id == mark.session_id, mark.at)
            await self._end_breakouts(conn, bos.c.session_id == mark.session_id, mark.at)
            if ended.rowcount and not never_live and self.webhooks is not None:
                await self._emit_end(conn, self.webhooks, mark)

    async def _emit_end(self, conn: AsyncConnection, webhooks: SqlWebhookStore, mark: SessionEndMark) -> None:
        """``session.ended``, then ``attendance.finalized`` per client of the session (ids and minutes)."""
        started = (
            await conn.execute(
                select(room_sessions.c.started_at).where(room_sessions.c.id == mark.session_id)
            )
        ).scalar_one()
        at = _dt(mark.at)
        ids: dict[str, PayloadValue] = {"room_id": mark.room_id, "session_id": mark.session_id}
        ended = {**ids, "started_at": _iso(started), "ended_at": _iso(at)}
        await webhooks.enqueue_in(conn, WebhookEventType.SESSION_ENDED, ended, at)
        rows = (
            await conn.execute(
                select(ai.c.client_id, ai.c.joined_at, ai.c.left_at).where(
                    ai.c.session_id == mark.session_id, ai.c.client_id.is_not(None)
                )
            )
        ).all()
        stays: dict[str, list[tuple[float, float]]] = {}
        for client_id, joined_at, left_at in rows:
            end = mark.at if left_at is None else _ts(left_at)
            stays.setdefault(client_id, []).append((_ts(joined_at), max(end, _ts(joined_at))))
        for client_id in sorted(stays):
            minutes = round(_covered_seconds(stays[client_id]) / 60, 2)
            payload = {**ids, "client_id": client_id, "minutes": minutes}
            await webhooks.enqueue_in(conn, WebhookEventType.ATTENDANCE_FINALIZED, payload, at)

    async def audio_only(self, mark: AudioOnlyMark) -> None:
        async with self.db.begin() as conn:
            await self._lock_session(conn, mark.room_id, mark.session_id, mark.at)
            mine = and_(aos.c.session_id == mark.session_id, _span_subject_is(mark.subject))
            current = (
                await conn.execute(select(aos.c.reason).where(mine, aos.c.ended_at.is_(None)).limit(1))
            ).scalar_one_or_none()
            wanted = None if mark.reason is None else mark.reason.value
            if current == wanted:
                return  # a repeated entry
            await self._end_spans(conn, mine, mark.at)
            if mark.reason is not None:
                await conn.execute(
                    insert(aos).values(
                        id=new_id("ao"),
                        session_id=mark.session_id,
                        room_id=mark.room_id,
                        participant_id=mark.participant_id,
                        client_id=mark.subject if mark.role is Role.CLIENT else None,
                        user_id=mark.subject if mark.role is Role.HOST else None,
                        reason=mark.reason.value,
                        started_at=_dt(mark.at),
                    )
                )

    async def breakout(self, mark: BreakoutMark) -> None:
        async with self.db.begin() as conn:
            await self._lock_session(conn, mark.room_id, mark.session_id, mark.at)
            mine = and_(bos.c.session_id == mark.session_id, bos.c.client_id == mark.subject)
            if not mark.started:
                await self._end_breakouts(conn, mine, mark.at)
                return
            open_now = (
                await conn.execute(select(bos.c.id).where(mine, bos.c.ended_at.is_(None)).limit(1))
            ).scalar_one_or_none()
            if open_now is not None:
                return  # a repeated entry
            await conn.execute(
                insert(bos).values(
                    id=new_id("bo"),
                    session_id=mark.session_id,
                    room_id=mark.room_id,
                    participant_id=mark.participant_id,
                    client_id=mark.subject,
                    clinician_id=mark.clinician,
                    started_at=_dt(mark.at),
                )
            )

    async def _end_breakouts(self, conn: AsyncConnection, which: Any, at: float) -> None:
        open_spans = (
            await conn.execute(select(bos.c.id, bos.c.started_at).where(which, bos.c.ended_at.is_(None)))
        ).all()
        for span_id, started_at in open_spans:
            await conn.execute(
                update(bos).where(bos.c.id == span_id).values(ended_at=_dt(max(at, _ts(started_at))))
            )

    async def _end_spans(self, conn: AsyncConnection, which: Any, at: float) -> None:
        """End the open spans ``which`` selects at ``at`` (never before they started)."""
        open_spans = (
            await conn.execute(select(aos.c.id, aos.c.started_at).where(which, aos.c.ended_at.is_(None)))
        ).all()
        for span_id, started_at in open_spans:
            await conn.execute(
                update(aos).where(aos.c.id == span_id).values(ended_at=_dt(max(at, _ts(started_at))))
            )

    async def intervals(self, query: AttendanceQuery) -> list[Interval]:
        stmt = select(ai).order_by(ai.c.joined_at, ai.c.id)
        if query.room_id is not None:
            stmt = stmt.where(ai.c.room_id == query.room_id)
        if query.session_id is not None:
            stmt = stmt.where(ai.c.session_id == query.session_id)
        if query.subject is not None:
            stmt = stmt.where(_subject_is(query.subject))
        if query.end is not None:
            stmt = stmt.where(ai.c.joined_at < _dt(query.end))
        if query.start is not None:
            stmt = stmt.where(or_(ai.c.left_at.is_(None), ai.c.left_at > _dt(query.start)))
        async with self.db.read() as conn:
            intervals = [_interval(row) for row in (await conn.execute(stmt)).mappings()]
            sessions = sorted({i.session_id for i in intervals})
            spans: list[Any] = []
            breakouts: list[Any] = []
            for chunk in range(0, len(sessions), 500):  # bounded IN lists
                chunk_stmt = select(aos).where(aos.c.session_id.in_(sessions[chunk : chunk + 500]))
                spans.extend((await conn.execute(chunk_stmt)).mappings())
                chunk_stmt = select(bos).where(bos.c.session_id.in_(sessions[chunk : chunk + 500]))
                breakouts.extend((await conn.execute(chunk_stmt)).mappings())
        return _with_breakouts(_with_spans(intervals, spans), breakouts)

    async def _lock_session(
        self, conn: AsyncConnection, room_id: RoomId, session_id: SessionId, at: float
    ) -> bool:
        """Make sure the session row exists (the first stay opens it) and, on PostgreSQL, lock it. True if
        this call made it."""
        values = {"id": session_id, "room_id": room_id, "started_at": _dt(at)}
        dialect = self.db.dialect
        if dialect == "postgresql":
            made = await conn.execute(
                postgresql.insert(room_sessions).values(values).on_conflict_do_nothing()
            )
            await conn.execute(
                select(room_sessions.c.id).where(room_sessions.c.id == session_id).with_for_update()
            )
        else:
            made = await conn.execute(sqlite.insert(room_sessions).values(values).on_conflict_do_nothing())
        return bool(made.rowcount)

    async def _latest(self, conn: AsyncConnection, session_id: SessionId, subject: str) -> Interval | None:
        stmt: Select[Any] = (
            select(ai)
            .where(and_(ai.c.session_id == session_id, _subject_is(subject)))
            .order_by(ai.c.joined_at.desc())
            .limit(1)
        )
        row = (await conn.execute(stmt)).mappings().first()
        return None if row is None else _interval(row)


def _interval(row: Any) -> Interval:
    client = row["client_id"]
    reason = row["close_reason"]
    return Interval(
        id=row["id"],
        room_id=RoomId(row["room_id"]),
        session_id=SessionId(row["session_id"]),
        participant_id=ParticipantId(row["participant_id"]),
        subject=client if client is not None else row["user_id"],
        role=Role.CLIENT if client is not None else Role.HOST,
        joined_at=_ts(row["joined_at"]),
        left_at=None if row["left_at"] is None else _ts(row["left_at"]),
        close_reason=None if reason is None else CloseReason(reason),
    )


def _with_spans(intervals: list[Interval], rows: list[Any]) -> list[Interval]:
    """Each audio-only span goes to the stay of the same person and session it started in (the latest
    that began at or before it; a span never outlives its stay, see ``close``)."""
    stays: dict[tuple[str, str], list[int]] = {}
    for index, interval in enumerate(intervals):
        stays.setdefault((interval.session_id, interval.subject), []).append(index)
    spans: dict[int, list[AudioOnlySpan]] = {}
    for row in sorted(rows, key=lambda r: _ts(r["started_at"])):
        subject = row["client_id"] if row["client_id"] is not None else row["user_id"]
        started = _ts(row["started_at"])
        candidates = [
            i for i in stays.get((row["session_id"], subject), []) if intervals[i].joined_at <= started
        ]
        if not candidates:
            continue  # its stay lies outside the query
        ended = row["ended_at"]
        spans.setdefault(candidates[-1], []).append(
            AudioOnlySpan(
                started_at=started,
                ended_at=None if ended is None else _ts(ended),
                reason=AudioOnlyReason(row["reason"]),
            )
        )
    return [
        replace(interval, audio_only=tuple(spans[index])) if index in spans else interval
        for index, interval in enumerate(intervals)
    ]


def _with_breakouts(intervals: list[Interval], rows: list[Any]) -> list[Interval]:
    """Each breakout span goes to the client's stay it started in (as audio-only spans do)."""
    stays: dict[tuple[str, str], list[int]] = {}
    for index, interval in enumerate(intervals):
        stays.setdefault((interval.session_id, interval.subject), []).append(index)
    spans: dict[int, list[BreakoutSpan]] = {}
    for row in sorted(rows, key=lambda r: _ts(r["started_at"])):
        started = _ts(row["started_at"])
        candidates = [
            i
            for i in stays.get((row["session_id"], row["client_id"]), [])
            if intervals[i].joined_at <= started
        ]
        if not candidates:
            continue  # its stay lies outside the query
        ended = row["ended_at"]
        spans.setdefault(candidates[-1], []).append(
            BreakoutSpan(
                started_at=started,
                ended_at=None if ended is None else _ts(ended),
                clinician=row["clinician_id"],
            )
        )
    return [
        replace(interval, breakouts=tuple(spans[index])) if index in spans else interval
        for index, interval in enumerate(intervals)
    ]
