"""No-shows (docs/PROGRAM.md "No-shows and expected vs present"): who an occurrence expects, who is
waiting, who is in, and who has not arrived N minutes after its start. Pure rules over ids and times.

One definition of the limit: a client is a no-show at ``starts_at + no_show_minutes`` (the setting
``VIOP_NO_SHOW_MINUTES``, default 10) when they are neither waiting nor in the room. The decision to emit
``client.no_show`` is taken once per (occurrence, client) (:class:`NoShowClaims`); the dashboard's flag is
recomputed at every view, so a client who arrives later loses it there (the webhook stays sent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol

from vIOP.ids import ClientId
from vIOP.program.schedule import Occurrence

DEFAULT_NO_SHOW_MINUTES: Final = 10


class Attendance(StrEnum):
    """Where an expected client is now, as the staff dashboard shows it."""

    EXPECTED = "expected"  # not here yet, and the no-show limit has not passed
    WAITING = "waiting"  # in the occurrence room's lobby
    PRESENT = "present"  # admitted or in the room
    LEFT = "left"  # not here now, but was in the room earlier in this session (the attendance ledger)
    NO_SHOW = "no_show"  # not here, never in the room this session, and the limit has passed


def no_show_at(occurrence: Occurrence, minutes: int) -> datetime:
    """The moment an absent expected client becomes a no-show: ``minutes`` after the start."""
    return occurrence.starts_at + timedelta(minutes=minutes)


def is_past_limit(occurrence: Occurrence, minutes: int, now: float) -> bool:
    return now >= no_show_at(occurrence, minutes).timestamp()


def attendance_of(
    client_id: ClientId,
    *,
    waiting: frozenset[str],
    present: frozenset[str],
    occurrence: Occurrence,
    minutes: int,
    now: float,
    stayed: frozenset[str] = frozenset(),
) -> Attendance:
    """One expected client's state: present wins over waiting; an absent client who was in the room
    earlier (``stayed``) has left; any other absent client is a no-show past the limit."""
    if client_id in present:
        return Attendance.PRESENT
    if client_id in waiting:
        return Attendance.WAITING
    if client_id in stayed:
        return Attendance.LEFT
    return Attendance.NO_SHOW if is_past_limit(occurrence, minutes, now) else Attendance.EXPECTED


def attendance_by_client(
    expected: Iterable[ClientId],
    *,
    waiting: frozenset[str],
    present: frozenset[str],
    occurrence: Occurrence,
    minutes: int,
    now: float,
    stayed: frozenset[str] = frozenset(),
) -> dict[ClientId, Attendance]:
    return {
        c: attendance_of(
            c,
            waiting=waiting,
            present=present,
            occurrence=occurrence,
            minutes=minutes,
            now=now,
            stayed=stayed,
        )
        for c in expected
    }


def no_shows(states: Mapping[ClientId, Attendance]) -> list[ClientId]:
    return [c for c, state in states.items() if state is Attendance.NO_SHOW]


def occurrence_id(occurrence: Occurrence) -> str:
    """The occurrence's opaque id in webhook payloads: its track and its key (original start, UTC)."""
    return f"{occurrence.track_id}.{occurrence.key:%Y%m%dT%H%M%SZ}"


@dataclass(frozen=True, slots=True)
class NoShowDecision:
    occurrence: Occurrence
    client_id: ClientId
    flagged_at: float


class NoShowClaims(Protocol):
    """Once per (occurrence, client) across every process: the first :meth:`claim` wins."""

    async def claim(self, occurrence_id: str, client_id: ClientId, *, keep_seconds: int) -> bool: ...

    async def release(self, occurrence_id: str, client_id: ClientId) -> None:
        """Undo a claim whose event could not be stored, so that a later round decides it again."""
        ...
