"""Track schedules (vIOP.program.schedule): occurrences computed by recurring-ical-events, bad input refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from vIOP.ids import TrackId
from vIOP.program import schedule as s

NY = ZoneInfo("America/New_York")
TRACK = TrackId("tk_evening")
# Monday 2 March 2026; the US changes to daylight time on Sunday 8 March 2026 at 02:00.
FIRST = datetime(2026, 3, 2, 18, 0)


def evening(**changes: object) -> s.Schedule:
    values: dict[str, object] = {
        "time_zone": "America/New_York",
        "first_start": FIRST,
        "rrule": "FREQ=WEEKLY;BYDAY=MO,WE,TH",
        "duration_minutes": 180,
    }
    values.update(changes)
    return s.Schedule(**values)  # type: ignore[arg-type]


def local_starts(schedule: s.Schedule, days: int = 14) -> list[datetime]:
    start = FIRST.replace(tzinfo=NY)
    found = s.occurrences(TRACK, "Evening IOP", schedule, start, start + timedelta(days=days))
    return [o.starts_at.astimezone(NY).replace(tzinfo=None) for o in found]


def test_mon_wed_thu_at_six_in_new_york_keeps_local_time_across_dst() -> None:
    schedule = evening()
    s.validate(schedule)
    start = FIRST.replace(tzinfo=NY)
    found = s.occurrences(TRACK, "Evening IOP", schedule, start, start + timedelta(days=10))
    assert [o.starts_at for o in found] == [
        datetime(2026, 3, 2, 23, 0, tzinfo=UTC),  # EST: UTC-5
        datetime(2026, 3, 4, 23, 0, tzinfo=UTC),
        datetime(2026, 3, 5, 23, 0, tzinfo=UTC),
        datetime(2026, 3, 9, 22, 0, tzinfo=UTC),  # EDT: UTC-4, still 18:00 local
        datetime(2026, 3, 11, 22, 0, tzinfo=UTC),
    ]
    assert all(o.ends_at - o.starts_at == timedelta(hours=3) for o in found)
    assert all(o.starts_at - o.lobby_opens_at == timedelta(minutes=15) for o in found)
    assert all(o.key == o.starts_at for o in found)


def test_an_exception_date_skips_and_a_moved_occurrence_keeps_its_identity() -> None:
    schedule = evening(
        skipped=frozenset({datetime(2026, 3, 4, 18, 0)}),
        moved={datetime(2026, 3, 5, 18, 0): datetime(2026, 3, 6, 17, 0)},
    )
    s.validate(schedule)
    start = FIRST.replace(tzinfo=NY)
    found = s.occurrences(TRACK, "Evening IOP", schedule, start, start + timedelta(days=6))
    assert [o.starts_at.astimezone(NY).replace(tzinfo=None) for o in found] == [
        datetime(2026, 3, 2, 18, 0),
        datetime(2026, 3, 6, 17, 0),  # Thursday's session moved to Friday 17:00
    ]
    moved = found[1]
    assert moved.key == datetime(2026, 3, 5, 18, 0, tzinfo=NY).astimezone(UTC)
    assert moved.ends_at - moved.starts_at == timedelta(hours=3)
    assert s.occurrence_at(TRACK, "Evening IOP", schedule, moved.key) == moved


def test_next_occurrence_is_the_one_in_progress_then_the_next() -> None:
    schedule = evening()
    during = datetime(2026, 3, 2, 19, 0, tzinfo=NY)
    current = s.next_occurrence(TRACK, "t", schedule, during)
    assert current is not None and current.starts_at == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    after = datetime(2026, 3, 2, 21, 0, tzinfo=NY)
    following = s.next_occurrence(TRACK, "t", schedule, after)
    assert following is not None and following.starts_at == datetime(2026, 3, 4, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"time_zone": "America/Atlantis"}, s.UnknownTimeZone),
        ({"time_zone": "../../etc/passwd"}, s.UnknownTimeZone),
        ({"time_zone": "EST"}, s.UnknownTimeZone),
        ({"rrule": "FREQ=WEEKLX;BYDAY=MO"}, s.InvalidRecurrence),
        ({"rrule": "FREQ=WEEKLY;BYDAY=ZZ"}, s.InvalidRecurrence),
        ({"rrule": "RRULE:FREQ=WEEKLY\nEXDATE:20260302"}, s.InvalidRecurrence),
        ({"rrule": "FREQ=MINUTELY"}, s.InvalidRecurrence),
        ({"rrule": ""}, s.InvalidRecurrence),
        # never yields: 30 February; or a COUNT/UNTIL that ended before the first start
        ({"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, s.RecurrenceNeverYields),
        ({"rrule": "FREQ=WEEKLY;UNTIL=20260101T000000Z"}, s.RecurrenceNeverYields),
        # more than 400 sessions in a year: three a day
        ({"rrule": "FREQ=DAILY;BYHOUR=8,12,18"}, s.TooManyOccurrences),
        # the first start is a Tuesday, the rule names Mon/Wed/Thu
        ({"first_start": datetime(2026, 3, 3, 18, 0)}, s.InvalidSchedule),
        ({"duration_minutes": 0}, s.InvalidSchedule),
        ({"lobby_minutes": -1}, s.InvalidSchedule),
        # 02:30 does not exist on 8 March 2026 in New York; 01:30 happens twice on 1 November 2026
        ({"first_start": datetime(2026, 3, 1, 2, 30), "rrule": "FREQ=DAILY"}, s.DstGap),
        ({"first_start": datetime(2026, 10, 25, 1, 30), "rrule": "FREQ=WEEKLY;BYDAY=SU"}, s.DstOverlap),
        ({"moved": {datetime(2026, 3, 5, 18, 0): datetime(2026, 3, 8, 2, 30)}}, s.DstGap),
        ({"skipped": frozenset({datetime(2026, 3, 3, 18, 0)})}, s.InvalidSchedule),
        ({"moved": {datetime(2026, 3, 3, 18, 0): datetime(2026, 3, 6, 18, 0)}}, s.InvalidSchedule),
    ],
)
def test_bad_schedules_are_refused_with_their_own_code(
    changes: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error) as refused:
        s.validate(evening(**changes))
    assert isinstance(refused.value, s.InvalidSchedule)
    assert refused.value.http_status == 400
    assert refused.value.code == error.code  # type: ignore[attr-defined]


def test_a_request_for_more_than_a_year_of_occurrences_is_refused() -> None:
    start = FIRST.replace(tzinfo=NY)
    with pytest.raises(s.TooManyOccurrences):
        s.occurrences(TRACK, "t", evening(), start, start + timedelta(days=400))
