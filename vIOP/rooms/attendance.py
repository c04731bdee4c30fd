"""The IOP attendance ledger, as pure interval logic.

An interval is one stay of one person in one room session: opened when they enter the room, closed when
they leave, are removed, are sent back to the lobby, time out, or the room ends. A return within the grace
window (default 60 s) reopens the previous interval instead of starting a new one, so a dropped connection
does not split attendance; a longer absence does. Within a stay, the spans during which the person received
no video (audio only: their link could not carry it, or they chose "save data") are kept too: programs report
audio-only telehealth separately. So are the spans of a private breakout (issue 15): the client stepped out of
the group into a 1:1 conversation with a clinician, still in the same program session (one interval). Reports give minutes per client per day and per week
(in the program's time zone) and flag days under 3 hours and weeks under 9 hours (H0015 asks >= 3 h a day
on >= 3 days a week; Medicare IOP certifies >= 9 h a week).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from vIOP.ids import ParticipantId, RoomId, SessionId
from vIOP.rooms.audio_only import AudioOnlyReason
from vIOP.rooms.events import (
    BreakoutEnded,
    BreakoutStarted,
    Joined,
    LeaveReason,
    Left,
    Removed,
    ReturnedToLobby,
    RoomEnded,
)
from vIOP.rooms.participant import Role
from vIOP.rooms.room import Transition

DEFAULT_GRACE_SECONDS = 60.0
DAY_MINUTES_REQUIRED = 180.0
WEEK_MINUTES_REQUIRED = 540.0
QUALIFYING_DAYS_PER_WEEK = 3


class WeekStart(StrEnum):
    """The first day of a program's billing week (Monday by default; some payers count Sunday to Saturday)."""

    MONDAY = "monday"
    TUESDAY = "tuesday"
    WEDNESDAY = "wednesday"
    THURSDAY = "thursday"
    FRIDAY = "friday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"

    @property
    def weekday(self) -> int:
        """As :meth:`datetime.date.weekday` counts: Monday 0 to Sunday 6."""
        return list(WeekStart).index(self)

    def week_of(self, day: date) -> date:
        """The first day of the week ``day`` falls in."""
        return day - timedelta(days=(day.weekday() - self.weekday) % 7)


class IntervalKind(StrEnum):
    """What a stay was spent in. Only the room today; a breakout (a part of the room's session) will be a
    second kind, reported on its own rows with the same program-time columns."""

    ROOM = "room"


class CloseReason(StrEnum):
    LEFT = "left"
    REMOVED = "removed"
    ENDED = "ended"
    TIMEOUT = "timeout"
    RETURNED = "returned"  # sent back to the lobby by a host


_LEAVE_TO_CLOSE = {
    LeaveReason.LEFT: CloseReason.LEFT,
    LeaveReason.TIMEOUT: CloseReason.TIMEOUT,
    LeaveReason.ENDED: CloseReason.ENDED,
}


@dataclass(frozen=True, slots=True)
class AudioOnlySpan:
    """A time within a stay during which the person received audio only."""

    started_at: float
    ended_at: float | None  # None while it lasts
    reason: AudioOnlyReason


@dataclass(frozen=True, slots=True)
class BreakoutSpan:
    """A time within a client's stay spent in a private breakout with the clinician ``clinician`` (their
    UserId), out of the group but in the same program session."""

    started_at: float
    ended_at: float | None  # None while it lasts
    clinician: str


@dataclass(frozen=True, slots=True)
class Interval:
    id: str
    room_id: RoomId
    session_id: SessionId
    participant_id: ParticipantId  # the participant that opened it
    subject: str  # ClientId or UserId: the same person across re-knocks in one session
    role: Role
    joined_at: float
    left_at: float | None = None  # None while open
    close_reason: CloseReason | None = None
    audio_only: tuple[AudioOnlySpan, ...] = ()  # within this stay, oldest first
    kind: IntervalKind = IntervalKind.ROOM
    breakouts: tuple[BreakoutSpan, ...] = ()  # within this stay, oldest first (issue 15)

    def end(self, now: float) -> float:
        return self.left_at if self.left_at is not None else max(now, self.joined_at)

    def audio_only_spans(self, now: float) -> list[tuple[float, float]]:
        """The audio-only spans clipped to this stay (an open span lasts until the stay's end)."""
        stop = self.end(now)
        out = []
        for span in self.audio_only:
            start = max(span.started_at, self.joined_at)
            end = min(span.ended_at if span.ended_at is not None else stop, stop)
            if end > start:
                out.append((start, end))
        return _union(out)

    def audio_only_seconds(self, now: float) -> float:
        return sum(stop - start for start, stop in self.audio_only_spans(now))

    def breakout_spans(self, now: float) -> list[tuple[float, float]]:
        """Each private breakout within this stay as (start, end), an open one ending now (or at the
        stay's end); program time for the client, so the stay's minutes include them."""
        end = self.end(now)
        return [
            (b.started_at, min(end, b.ended_at if b.ended_at is not None else end)) for b in self.breakouts
        ]

    def breakout_seconds(self, now: float) -> float:
        return sum(max(0.0, stop - start) for start, stop in self.breakout_spans(now))


@dataclass(frozen=True, slots=True)
class OpenMark:
    room_id: RoomId
    session_id: SessionId
    participant_id: ParticipantId
    subject: str
    role: Role
    at: float


@dataclass(frozen=True, slots=True)
class CloseMark:
    room_id: RoomId
    session_id: SessionId
    participant_id: ParticipantId
    subject: str
    at: float
    reason: CloseReason


@dataclass(frozen=True, slots=True)
class SessionEndMark:
    room_id: RoomId
    session_id: SessionId
    at: float


@dataclass(frozen=True, slots=True)
class AudioOnlyMark:
    """The relay stopped video to the person (``reason``) or resumed it (``reason`` None) at ``at``."""

    room_id: RoomId
    session_id: SessionId
    participant_id: ParticipantId
    subject: str
    role: Role
    at: float
    reason: AudioOnlyReason | None


@dataclass(frozen=True, slots=True)
class BreakoutMark:
    """The client ``subject`` went into a private breakout with the clinician ``clinician`` (``started``), or
    came back to the group, at ``at``."""

    room_id: RoomId
    session_id: SessionId
    participant_id: ParticipantId
    subject: str
    clinician: str
    at: float
    started: bool


Mark = OpenMark | CloseMark | SessionEndMark | AudioOnlyMark | BreakoutMark


def marks_for(transition: Transition) -> list[Mark]:
    """The ledger entries a stored transition implies, in order. Leaving from the lobby (never inside)
    closes nothing; the end of the room closes the session after everyone's interval."""
    room = transition.room
    marks: list[Mark] = []
    for event in transition.events:
        if isinstance(event, RoomEnded):
            marks.append(SessionEndMark(room.id, room.session_id, event.at))
        if isinstance(event, BreakoutStarted | BreakoutEnded):
            client = room.participant(event.participant_id)
            clinician = room.participant(event.clinician).subject
            started = isinstance(event, BreakoutStarted)
            ids = (room.id, room.session_id, client.id, client.subject)
            marks.append(BreakoutMark(*ids, clinician=clinician, at=event.at, started=started))
            continue
        if not isinstance(event, Joined | Left | Removed | ReturnedToLobby):
            continue
        p = room.participant(event.participant_id)
        ids = (room.id, room.session_id, p.id, p.subject)
        if isinstance(event, Joined):
            marks.append(OpenMark(*ids, role=p.role, at=event.at))
        elif isinstance(event, ReturnedToLobby):
            marks.append(CloseMark(*ids, at=event.at, reason=CloseReason.RETURNED))
        elif p.joined_at is None:
            continue
        elif isinstance(event, Left):
            marks.append(CloseMark(*ids, at=event.present_until, reason=_LEAVE_TO_CLOSE[event.reason]))
        else:
            marks.append(CloseMark(*ids, at=event.at, reason=CloseReason.REMOVED))
    return marks


class OpenAction(StrEnum):
    NEW = "new"
    REOPEN = "reopen"  # the latest interval closed within the grace window: continue it
    NOTHING = "nothing"  # already open (a repeated mark)


def decide_open(latest: Interval | None, at: float, grace: float) -> OpenAction:
    """What opening at ``at`` does, given the subject's latest interval in the same room session."""
    if latest is None:
        return OpenAction.NEW
    if latest.left_at is None:
        return OpenAction.NOTHING
    if at - latest.left_at <= grace:
        return OpenAction.REOPEN
    return OpenAction.NEW


def merged(intervals: Iterable[Interval], grace: float = DEFAULT_GRACE_SECONDS) -> list[Interval]:
    """Intervals of the same person in the same room session whose gap is within ``grace``, joined."""
    groups: dict[tuple[str, str, str], list[Interval]] = defaultdict(list)
    for i in intervals:
        groups[(i.room_id, i.session_id, i.subject)].append(i)
    out: list[Interval] = []
    for group in groups.values():
        group.sort(key=lambda i: i.joined_at)
        current = group[0]
        for nxt in group[1:]:
            if current.left_at is None:
                break  # an open interval swallows whatever follows it
            if nxt.joined_at - current.left_at <= grace:
                current = _extend(current, nxt)
            else:
                out.append(current)
                current = nxt
        out.append(current)
    out.sort(key=lambda i: (i.joined_at, i.subject))
    return out


def _extend(first: Interval, second: Interval) -> Interval:
    spans = first.audio_only + second.audio_only
    breakouts = first.breakouts + second.breakouts
    if second.left_at is None or first.left_at is None:
        return replace(first, left_at=None, close_reason=None, audio_only=spans, breakouts=breakouts)
    if second.left_at >= first.left_at:
        return replace(
            first,
            left_at=second.left_at,
            close_reason=second.close_reason,
            audio_only=spans,
            breakouts=breakouts,
        )
    return replace(first, audio_only=spans, breakouts=breakouts)


# --- reports -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayTotal:
    subject: str
    day: date
    minutes: float
    audio_only_minutes: float = 0.0  # of ``minutes``, those without video

    @property
    def below_three_hours(self) -> bool:
        return self.minutes < DAY_MINUTES_REQUIRED

    @property
    def minutes_missing(self) -> float:
        """How much more the day needed to reach 3 hours (0 when it did)."""
        return round(max(0.0, DAY_MINUTES_REQUIRED - self.minutes), 2)


@dataclass(frozen=True, slots=True)
class WeekTotal:
    subject: str
    week_start: date  # the week's first day (a Monday unless the program counts weeks otherwise)
    minutes: float
    days_attended: int
    qualifying_days: int  # days with >= 3 hours
    audio_only_minutes: float = 0.0

    @property
    def week_end(self) -> date:
        """The week's last day: the day by which the missing hours are due."""
        return self.week_start + timedelta(days=6)

    @property
    def below_nine_hours(self) -> bool:
        return self.minutes < WEEK_MINUTES_REQUIRED

    @property
    def minutes_missing(self) -> float:
        """How much more the week needs to reach 9 hours (0 when it has)."""
        return round(max(0.0, WEEK_MINUTES_REQUIRED - self.minutes), 2)

    @property
    def below_three_qualifying_days(self) -> bool:
        return self.qualifying_days < QUALIFYING_DAYS_PER_WEEK


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping stays (two rooms at once) count once."""
    spans.sort()
    out: list[tuple[float, float]] = []
    for start, stop in spans:
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def _split_by_day(start: float, stop: float, tz: ZoneInfo) -> Iterable[tuple[date, float]]:
    """Seconds of [start, stop) falling on each local calendar day."""
    cursor = datetime.fromtimestamp(start, tz)
    end = datetime.fromtimestamp(stop, tz)
    # A stay cannot span more days than it has; the bound keeps the loop finite on odd input.
    for _ in range((end.date() - cursor.date()).days + 1):
        next_midnight = datetime.combine(cursor.date() + timedelta(days=1), datetime.min.time(), tz)
        piece_end = min(end, next_midnight)
        seconds = piece_end.timestamp() - cursor.timestamp()
        if seconds > 0:
            yield cursor.date(), seconds
        if piece_end >= end:
            return
        cursor = piece_end


def daily_totals(
    intervals: Iterable[Interval],
    *,
    now: float,
    tz: ZoneInfo | None = None,
    roles: frozenset[Role] = frozenset({Role.CLIENT}),
) -> list[DayTotal]:
    zone = tz or ZoneInfo("UTC")
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    audio_spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for i in intervals:
        if i.role in roles:
            spans[i.subject].append((i.joined_at, i.end(now)))
            audio_spans[i.subject].extend(i.audio_only_spans(now))
    seconds = _seconds_by_day(spans, zone)
    audio_seconds = _seconds_by_day(audio_spans, zone)
    return [
        DayTotal(s, d, round(secs / 60.0, 2), round(audio_seconds.get((s, d), 0.0) / 60.0, 2))
        for (s, d), secs in sorted(seconds.items())
    ]


def _seconds_by_day(
    spans: dict[str, list[tuple[float, float]]], zone: ZoneInfo
) -> dict[tuple[str, date], float]:
    seconds: dict[tuple[str, date], float] = defaultdict(float)
    for subject, subject_spans in spans.items():
        for start, stop in _union(subject_spans):
            for day, secs in _split_by_day(start, stop, zone):
                seconds[(subject, day)] += secs
    return seconds


def weekly_totals(days: Sequence[DayTotal], week_start: WeekStart = WeekStart.MONDAY) -> list[WeekTotal]:
    """The days' totals per client per week; a week runs from ``week_start`` to the day before the next."""
    weeks: dict[tuple[str, date], list[DayTotal]] = defaultdict(list)
    for d in days:
        weeks[(d.subject, week_start.week_of(d.day))].append(d)
    return [
        WeekTotal(
            subject=subject,
            week_start=first_day,
            minutes=round(sum(d.minutes for d in group), 2),
            days_attended=len(group),
            qualifying_days=sum(1 for d in group if not d.below_three_hours),
            audio_only_minutes=round(sum(d.audio_only_minutes for d in group), 2),
        )
        for (subject, first_day), group in sorted(weeks.items())
    ]


@dataclass(frozen=True, slots=True)
class RosterLine:
    subject: str
    role: Role
    participant_ids: tuple[ParticipantId, ...]
    stays: tuple[tuple[float, float | None], ...]  # (joined_at, left_at or None while inside)
    minutes: float
    audio_only_minutes: float = 0.0

    @property
    def first_joined(self) -> float:
        return self.stays[0][0]

    @property
    def last_left(self) -> float | None:
        return self.stays[-1][1]


def session_roster(intervals: Iterable[Interval], session_id: SessionId, *, now: float) -> list[RosterLine]:
    """Everyone who entered the room in one session, with their join and leave times."""
    by_subject: dict[str, list[Interval]] = defaultdict(list)
    for i in intervals:
        if i.session_id == session_id:
            by_subject[i.subject].append(i)
    lines = []
    for subject, stays in by_subject.items():
        stays.sort(key=lambda i: i.joined_at)
        seconds = sum(stop - start for start, stop in _union([(i.joined_at, i.end(now)) for i in stays]))
        audio = _union([span for i in stays for span in i.audio_only_spans(now)])
        lines.append(
            RosterLine(
                subject=subject,
                role=stays[0].role,
                participant_ids=tuple(dict.fromkeys(i.participant_id for i in stays)),
                stays=tuple((i.joined_at, i.left_at) for i in stays),
                minutes=round(seconds / 60.0, 2),
                audio_only_minutes=round(sum(stop - start for start, stop in audio) / 60.0, 2),
            )
        )
    lines.sort(key=lambda line: (line.first_joined, line.subject))
    return lines
