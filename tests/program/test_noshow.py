"""The no-show rule on its own (vIOP.program.noshow): one limit, start + N minutes, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime

from vIOP.ids import ClientId, TrackId
from vIOP.program.noshow import Attendance, attendance_by_client, no_show_at, no_shows, occurrence_id
from vIOP.program.schedule import Schedule, occurrences
from vIOP.rooms.clock import ManualClock

ANA, BO, CY = ClientId("cl_ana"), ClientId("cl_bo"), ClientId("cl_cy")
SCHEDULE = Schedule("America/New_York", datetime(2026, 3, 2, 18, 0), "FREQ=DAILY", 180)
[TONIGHT] = occurrences(
    TrackId("tr_evening"), "Evening IOP", SCHEDULE,
    datetime(2026, 3, 2, 22, 0, tzinfo=UTC), datetime(2026, 3, 2, 23, 30, tzinfo=UTC),
)  # fmt: skip


def states(clock: ManualClock, minutes: int = 10) -> dict[ClientId, Attendance]:
    return attendance_by_client(
        [ANA, BO, CY],
        waiting=frozenset({BO}), present=frozenset({ANA}), occurrence=TONIGHT, minutes=minutes, now=clock(),
    )  # fmt: skip


def test_absent_clients_are_expected_until_the_limit_and_no_shows_from_it() -> None:
    start = datetime(2026, 3, 2, 23, 0, tzinfo=UTC).timestamp()  # 18:00 in New York
    assert no_show_at(TONIGHT, 10).timestamp() == start + 600
    clock = ManualClock(start + 599.999)
    assert states(clock) == {ANA: Attendance.PRESENT, BO: Attendance.WAITING, CY: Attendance.EXPECTED}
    assert no_shows(states(clock)) == []
    clock.now = start + 600
    assert states(clock) == {ANA: Attendance.PRESENT, BO: Attendance.WAITING, CY: Attendance.NO_SHOW}
    assert no_shows(states(clock)) == [CY]


def test_the_limit_is_the_setting() -> None:
    start = datetime(2026, 3, 2, 23, 0, tzinfo=UTC).timestamp()
    clock = ManualClock(start + 600)
    assert states(clock, minutes=15)[CY] is Attendance.EXPECTED
    clock.now = start + 900
    assert states(clock, minutes=15)[CY] is Attendance.NO_SHOW


def test_arriving_late_clears_the_flag() -> None:
    clock = ManualClock(datetime(2026, 3, 2, 23, 30, tzinfo=UTC).timestamp())
    late = attendance_by_client(
        [CY], waiting=frozenset({CY}), present=frozenset(), occurrence=TONIGHT, minutes=10, now=clock()
    )
    assert late == {CY: Attendance.WAITING}
    seated = attendance_by_client(
        [CY], waiting=frozenset({CY}), present=frozenset({CY}), occurrence=TONIGHT, minutes=10, now=clock()
    )
    assert seated == {CY: Attendance.PRESENT}  # present wins over a stale lobby entry


def test_the_occurrence_id_is_the_track_and_the_original_start() -> None:
    assert occurrence_id(TONIGHT) == "tr_evening.20260302T230000Z"


def test_a_client_who_was_in_the_room_and_left_is_not_a_no_show() -> None:
    clock = ManualClock(datetime(2026, 3, 2, 23, 30, tzinfo=UTC).timestamp())
    states = attendance_by_client(
        [ANA, CY], waiting=frozenset(), present=frozenset(), occurrence=TONIGHT, minutes=10, now=clock(),
        stayed=frozenset({ANA}),
    )  # fmt: skip
    assert states == {ANA: Attendance.LEFT, CY: Attendance.NO_SHOW}
    assert no_shows(states) == [CY]
