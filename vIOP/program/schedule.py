"""A track's schedule and the occurrences it yields (docs/PROGRAM.md, "Tracks").

A schedule is RFC 5545: a first start (wall time in the program's IANA time zone), an ``RRULE``, ``EXDATE``
exceptions and one-off moves (a ``RECURRENCE-ID`` override: the occurrence keeps its identity, its original
start, and takes place at another time). Occurrences are computed by ``recurring-ical-events`` over an
``icalendar`` event built from exactly these parts, never by hand; this module only checks the input and
bounds the work.

Daylight saving: a start's wall time must exist and be unambiguous on every day the rule yields in the
track's first year (a 02:30 start in America/New_York falls in the spring gap, 01:30 in the autumn overlap):
such a schedule is refused (:class:`DstGap`, :class:`DstOverlap`) rather than silently shifted. Wall times
that do exist keep their wall time across a change (18:00 stays 18:00 local; the UTC instant moves).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events
from dateutil.rrule import rrule as RRule
from dateutil.rrule import rrulestr

from vIOP.errors import BadRequest
from vIOP.ids import RoomId, TrackId

# One request computes at most a year of occurrences; a track's rule is checked over its first year.
MAX_WINDOW: Final = timedelta(days=366)
# At most this many occurrences in a year (a session a day, with room to spare for a second track slot).
MAX_OCCURRENCES_PER_YEAR: Final = 400
DEFAULT_LOBBY_MINUTES: Final = 15
MAX_LOBBY_MINUTES: Final = 120
MIN_DURATION_MINUTES: Final = 5
MAX_DURATION_MINUTES: Final = 12 * 60
MAX_RRULE_CHARS: Final = 500
MAX_EXCEPTIONS: Final = 200
# Frequencies that make sense for sessions: finer ones yield overlapping rooms.
_FREQUENCIES: Final = frozenset({"DAILY", "WEEKLY", "MONTHLY", "YEARLY"})
_UID_DOMAIN: Final = "viop.invalid"


class InvalidSchedule(BadRequest):
    code = "invalid_schedule"


class UnknownTimeZone(InvalidSchedule):
    code = "unknown_time_zone"


class InvalidRecurrence(InvalidSchedule):
    code = "invalid_rrule"


class RecurrenceNeverYields(InvalidSchedule):
    code = "rrule_never_yields"


class TooManyOccurrences(InvalidSchedule):
    code = "too_many_occurrences"


class DstGap(InvalidSchedule):
    code = "dst_gap"


class DstOverlap(InvalidSchedule):
    code = "dst_overlap"


def program_zone(name: str) -> ZoneInfo:
    """The IANA zone named ``name``; :class:`UnknownTimeZone` for anything else (no path tricks, no
    abbreviations like "EST" that name no place)."""
    if not name or len(name) > 64 or ("/" not in name and name != "UTC"):
        raise UnknownTimeZone("time_zone must be an IANA time zone such as America/New_York")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownTimeZone("time_zone must be an IANA time zone such as America/New_York") from None


def _wall_time_problem(local: datetime, zone: ZoneInfo) -> type[InvalidSchedule] | None:
    """Whether the naive wall time ``local`` does not exist (gap) or happens twice (overlap) in ``zone``."""
    first, second = local.replace(tzinfo=zone, fold=0), local.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return None
    round_trip = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return DstGap if round_trip != local else DstOverlap


def wall_time(local: datetime, zone: ZoneInfo) -> datetime:
    """``local`` (naive, in ``zone``) as an aware datetime; :class:`DstGap`/:class:`DstOverlap` when that
    wall time does not exist or happens twice there."""
    problem = _wall_time_problem(local, zone)
    if problem is DstGap:
        raise DstGap(f"{local:%Y-%m-%d %H:%M} does not exist in {zone.key} (the clocks skip it)")
    if problem is DstOverlap:
        raise DstOverlap(f"{local:%Y-%m-%d %H:%M} happens twice in {zone.key} (the clocks go back)")
    return local.replace(tzinfo=zone)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a track meets. Local times are naive wall times in ``time_zone``."""

    time_zone: str
    first_start: datetime
    rrule: str
    duration_minutes: int
    lobby_minutes: int = DEFAULT_LOBBY_MINUTES
    skipped: frozenset[datetime] = frozenset()
    moved: Mapping[datetime, datetime] = field(default_factory=dict)  # original start -> new start

    @property
    def zone(self) -> ZoneInfo:
        return program_zone(self.time_zone)

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)

    @property
    def lobby(self) -> timedelta:
        return timedelta(minutes=self.lobby_minutes)


def _rule(schedule: Schedule, zone: ZoneInfo) -> RRule:
    text = schedule.rrule.strip()
    if not text or len(text) > MAX_RRULE_CHARS or not text.isascii() or "\n" in text or ":" in text:
        raise InvalidRecurrence("rrule must be one RFC 5545 RRULE value, e.g. FREQ=WEEKLY;BYDAY=MO,WE,TH")
    try:
        parsed = icalendar.vRecur.from_ical(text)
        rule = rrulestr(text, dtstart=schedule.first_start.replace(tzinfo=zone))
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise InvalidRecurrence(f"rrule is not a valid RFC 5545 RRULE: {str(error)[:120]}") from None
    frequency = [str(f).upper() for f in parsed.get("FREQ", [])]
    if len(frequency) != 1 or frequency[0] not in _FREQUENCIES:
        raise InvalidRecurrence("rrule FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY")
    if not isinstance(rule, RRule):
        raise InvalidRecurrence("rrule must be a single rule")
    return rule


def validate(schedule: Schedule) -> None:
    """Refuse a schedule that cannot run (each a 400 with its own code, nothing stored): unknown zone,
    malformed rule or numbers, a rule that yields nothing or more than :data:`MAX_OCCURRENCES_PER_YEAR`
    in the first year, a first start the rule does not name, or a start in a daylight-saving gap/overlap."""
    zone = program_zone(schedule.time_zone)
    if not MIN_DURATION_MINUTES <= schedule.duration_minutes <= MAX_DURATION_MINUTES:
        raise InvalidSchedule(
            f"duration_minutes must be between {MIN_DURATION_MINUTES} and {MAX_DURATION_MINUTES}"
        )
    if not 0 <= schedule.lobby_minutes <= MAX_LOBBY_MINUTES:
        raise InvalidSchedule(f"lobby_minutes must be between 0 and {MAX_LOBBY_MINUTES}")
    if len(schedule.skipped) + len(schedule.moved) > MAX_EXCEPTIONS:
        raise InvalidSchedule(f"a track holds at most {MAX_EXCEPTIONS} exceptions and moves")
    rule = _rule(schedule, zone)
    first = wall_time(schedule.first_start, zone)
    horizon = first + MAX_WINDOW
    starts = rule.between(first - timedelta(seconds=1), horizon, inc=True)
    if not starts:
        raise RecurrenceNeverYields("the rrule yields no session in the track's first year")
    if len(starts) > MAX_OCCURRENCES_PER_YEAR:
        raise TooManyOccurrences(f"the rrule yields more than {MAX_OCCURRENCES_PER_YEAR} sessions in a year")
    if starts[0].replace(tzinfo=None) != schedule.first_start:
        raise InvalidSchedule("first_start must be a day and time the rrule yields (its first session)")
    for start in starts:
        wall_time(start.replace(tzinfo=None), zone)
    named = {start.replace(tzinfo=None) for start in starts}
    for original, new in schedule.moved.items():
        wall_time(new, zone)
        if original not in named:
            raise InvalidSchedule(f"{original:%Y-%m-%d %H:%M} is not a session of this track")
        if original in schedule.skipped:
            raise InvalidSchedule(f"{original:%Y-%m-%d %H:%M} is both skipped and moved")
    for original in schedule.skipped:
        if original not in named:
            raise InvalidSchedule(f"{original:%Y-%m-%d %H:%M} is not a session of this track")


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One meeting of a track: the stable domain object other features (attendance, webhooks) use.

    ``key`` is its identity (the original start, RFC 5545's RECURRENCE-ID, in UTC): a moved occurrence
    keeps it. ``room_id`` is set once its lobby opened and its room was made."""

    track_id: TrackId
    title: str
    key: datetime
    starts_at: datetime
    ends_at: datetime
    lobby_opens_at: datetime
    room_id: RoomId | None = None

    def with_room(self, room_id: RoomId | None) -> Occurrence:
        return Occurrence(
            self.track_id, self.title, self.key, self.starts_at, self.ends_at, self.lobby_opens_at, room_id
        )


def _event_uid(track_id: str) -> str:
    return f"{track_id}@{_UID_DOMAIN}"


def calendar_event(track_id: str, schedule: Schedule) -> icalendar.Calendar:
    """The schedule as one iCalendar VEVENT series (RRULE, EXDATE, RECURRENCE-ID overrides)."""
    zone = program_zone(schedule.time_zone)
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//vIOP//program//EN")
    calendar.add("version", "2.0")
    series = icalendar.Event()
    series.add("uid", _event_uid(track_id))
    series.add("dtstart", schedule.first_start.replace(tzinfo=zone))
    series.add("duration", schedule.duration)
    series.add("rrule", icalendar.vRecur.from_ical(schedule.rrule.strip()))
    for skipped in sorted(schedule.skipped):
        series.add("exdate", skipped.replace(tzinfo=zone))
    calendar.add_component(series)
    for original, new in sorted(schedule.moved.items()):
        moved = icalendar.Event()
        moved.add("uid", _event_uid(track_id))
        moved.add("recurrence-id", original.replace(tzinfo=zone))
        moved.add("dtstart", new.replace(tzinfo=zone))
        moved.add("duration", schedule.duration)
        calendar.add_component(moved)
    return calendar


def _utc(value: Any) -> datetime:
    assert isinstance(value, datetime) and value.tzinfo is not None
    return value.astimezone(UTC)


def occurrences(
    track_id: TrackId, title: str, schedule: Schedule, start: datetime, end: datetime
) -> list[Occurrence]:
    """The occurrences that overlap [start, end) (aware datetimes), in start order; at most
    :data:`MAX_WINDOW` per call (:class:`TooManyOccurrences` beyond)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("occurrences() takes aware datetimes")
    if end <= start:
        return []
    if end - start > MAX_WINDOW:
        raise TooManyOccurrences("ask for at most a year of sessions at a time")
    query = recurring_ical_events.of(calendar_event(track_id, schedule))
    found: list[Occurrence] = []
    for event in query.between(start, end):
        starts_at = _utc(event["DTSTART"].dt)
        ends_at = _utc(event["DTEND"].dt) if "DTEND" in event else starts_at + schedule.duration
        key = _utc(event["RECURRENCE-ID"].dt) if "RECURRENCE-ID" in event else starts_at
        found.append(Occurrence(track_id, title, key, starts_at, ends_at, starts_at - schedule.lobby))
    found.sort(key=lambda o: (o.starts_at, o.key))
    return found


def occurrence_at(track_id: TrackId, title: str, schedule: Schedule, key: datetime) -> Occurrence | None:
    """The occurrence whose identity (original start) is ``key``, wherever it was moved to."""
    window = MAX_WINDOW / 2
    for occurrence in occurrences(track_id, title, schedule, key - window, key + window):
        if occurrence.key == key:
            return occurrence
    return None


def next_occurrence(track_id: TrackId, title: str, schedule: Schedule, now: datetime) -> Occurrence | None:
    """The occurrence in progress at ``now`` (lobby open or started, not ended), else the next one within
    a year."""
    # between() also yields the occurrence in progress at ``now`` (it overlaps the window).
    for occurrence in occurrences(track_id, title, schedule, now, now + MAX_WINDOW):
        if occurrence.ends_at > now:
            return occurrence
    return None
