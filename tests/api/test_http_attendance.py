"""``GET /api/v1/attendance`` over a real socket, on a ledger written through the server's own SQL store."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter

from tests.api.support import Api, User, assert_error, bearer
from vIOP.auth.permissions import Role
from vIOP.ids import ParticipantId, RoomId, SessionId, new_participant_id
from vIOP.rooms.attendance import AudioOnlyMark, CloseMark, CloseReason, OpenMark
from vIOP.rooms.audio_only import AudioOnlyReason
from vIOP.rooms.occurrences import OccurrenceRef
from vIOP.rooms.participant import Role as ParticipantRole
from vIOP.rooms.ports import AttendanceQuery

ATTENDANCE = "/api/v1/attendance"


def _at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC).timestamp()  # 2026-03-02 is a Monday


@dataclass
class Clinic:
    dr_a: User
    dr_b: User
    room_a: str
    room_b: str
    avery: str  # client of room A
    blake: str  # client of room B


async def _stay(
    api: Api, room: str, session: str, subject: str, role: ParticipantRole, start: float, stop: float | None
) -> None:
    ledger = api.services.rooms.attendance
    assert ledger is not None
    pid: ParticipantId = new_participant_id()
    ids = (RoomId(room), SessionId(session), pid, subject)
    await ledger.open(OpenMark(*ids, role=role, at=start), 60.0)
    if stop is not None:
        await ledger.close(CloseMark(*ids, at=stop, reason=CloseReason.LEFT))


async def _clinic(api: Api) -> Clinic:
    dr_a, dr_b = await api.user(Role.CLINICIAN), await api.user(Role.CLINICIAN)
    room_a, room_b = (await api.create_room(dr_a))["id"], (await api.create_room(dr_b))["id"]
    avery = (await api.create_invite(dr_a, room_a, display_name="Avery"))["client_id"]
    blake = (await api.create_invite(dr_b, room_b, display_name="Blake"))["client_id"]
    client = ParticipantRole.CLIENT
    await _stay(api, room_a, "ss_monday", dr_a.id, ParticipantRole.HOST, _at(2, 9, 55), _at(2, 13, 35))
    await _stay(api, room_a, "ss_monday", avery, client, _at(2, 10), _at(2, 13, 30))  # 210 min
    await _stay(api, room_a, "ss_tuesday", avery, client, _at(3, 10), _at(3, 12))  # 120 min
    await _stay(api, room_b, "ss_b_monday", blake, client, _at(2, 10), _at(2, 11))
    return Clinic(dr_a, dr_b, room_a, room_b, avery, blake)


async def _report(api: Api, user: User, query: str = "") -> dict[str, Any]:
    response = await api.http.get(ATTENDANCE + query, headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


async def test_a_clinician_gets_rosters_days_and_weeks_of_their_rooms(api: Api) -> None:
    c = await _clinic(api)
    report = await _report(api, c.dr_a)
    assert report["thresholds"] == {"day_minutes": 180.0, "week_minutes": 540.0}
    assert {i["room_id"] for i in report["intervals"]} == {c.room_a}
    days = [
        (d["subject"], d["day"], d["minutes"], d["under_3_hours"], d["display_name"]) for d in report["days"]
    ]
    assert days == [
        (c.avery, "2026-03-02", 210.0, False, "Avery"),
        (c.avery, "2026-03-03", 120.0, True, "Avery"),
    ]
    [week] = report["weeks"]
    assert (week["subject"], week["week_start"], week["minutes"]) == (c.avery, "2026-03-02", 330.0)
    assert (week["days_attended"], week["days_with_3_hours"]) == (2, 1)
    assert week["under_9_hours"] is True and week["under_3_qualifying_days"] is True
    monday, tuesday = report["sessions"]
    assert (monday["session_id"], monday["room_id"], monday["started_at"]) == (
        "ss_monday",
        c.room_a,
        "2026-03-02T09:55:00Z",
    )
    roster = {line["subject"]: line for line in monday["roster"]}
    assert roster[c.avery]["display_name"] == "Avery"
    assert (roster[c.avery]["joined_at"], roster[c.avery]["left_at"]) == (
        "2026-03-02T10:00:00Z",
        "2026-03-02T13:30:00Z",
    )
    assert roster[c.avery]["minutes"] == 210.0
    assert (roster[c.dr_a.id]["role"], roster[c.dr_a.id]["display_name"]) == ("host", None)
    assert [line["subject"] for line in tuesday["roster"]] == [c.avery]
    audited = await api.audit_rows("attendance.exported")
    assert [(r["actor_id"], r["object_type"], r["object_id"]) for r in audited] == [
        (c.dr_a.id, "room", "all")
    ]


async def test_scope_clinicians_their_rooms_admins_all_staff_and_clients_nothing(api: Api) -> None:
    c = await _clinic(api)
    admin, staff = await api.user(Role.ADMIN), await api.user(Role.STAFF)
    assert {d["subject"] for d in (await _report(api, admin))["days"]} == {c.avery, c.blake}
    assert {d["subject"] for d in (await _report(api, c.dr_b))["days"]} == {c.blake}
    assert (await _report(api, c.dr_a, f"?client={c.blake}"))["days"] == []
    assert_error(
        await api.http.get(f"{ATTENDANCE}?room_id={c.room_b}", headers=c.dr_a.headers), 403, "forbidden"
    )
    assert_error(await api.http.get(ATTENDANCE, headers=staff.headers), 403, "forbidden")
    invite = await api.create_invite(c.dr_a, c.room_a)
    assert_error(await api.http.get(ATTENDANCE, headers=bearer(invite["invite_token"])), 403, "forbidden")
    assert_error(await api.http.get(ATTENDANCE), 401, "unauthenticated")
    assert_error(await api.http.get(f"{ATTENDANCE}?room_id=rm_nope", headers=admin.headers), 404, "not_found")
    by_room = await _report(api, admin, f"?room_id={c.room_b}")
    assert {i["room_id"] for i in by_room["intervals"]} == {c.room_b}
    audited = [
        (r["object_type"], r["object_id"]) for r in await api.audit_rows("attendance.exported", "success")
    ]
    assert audited == [("room", "all"), ("room", "all"), ("client", c.blake), ("room", c.room_b)]


async def test_day_filters_use_the_requested_time_zone(api: Api) -> None:
    c = await _clinic(api)
    tuesday = await _report(api, c.dr_a, "?from=2026-03-03")
    assert [d["day"] for d in tuesday["days"]] == ["2026-03-03"]
    monday = await _report(api, c.dr_a, "?from=2026-03-02&to=2026-03-02")
    assert [d["day"] for d in monday["days"]] == ["2026-03-02"]
    assert monday["filters"] == {"room_id": None, "client": None, "from": "2026-03-02", "to": "2026-03-02"}
    # 10:00 UTC is 19:00 in Tokyo: the same stays, on the same local days.
    tokyo = await _report(api, c.dr_a, "?tz=Asia/Tokyo")
    assert tokyo["time_zone"] == "Asia/Tokyo"
    assert [d["day"] for d in tokyo["days"]] == ["2026-03-02", "2026-03-03"]


async def test_csv_exports_one_table_with_ids_only(api: Api) -> None:
    c = await _clinic(api)
    response = await api.http.get(f"{ATTENDANCE}?format=csv", headers=c.dr_a.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="attendance-days.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["subject"], r["day"], r["under_3_hours"]) for r in rows] == [
        (c.avery, "2026-03-02", "False"),
        (c.avery, "2026-03-03", "True"),
    ]
    assert "Avery" not in response.text
    weeks = await api.http.get(f"{ATTENDANCE}?format=csv&table=weeks", headers=c.dr_a.headers)
    [week] = list(csv.DictReader(io.StringIO(weeks.text)))
    assert (week["minutes"], week["under_9_hours"]) == ("330.0", "True")
    intervals = await api.http.get(f"{ATTENDANCE}?format=csv&table=intervals", headers=c.dr_a.headers)
    assert len(list(csv.DictReader(io.StringIO(intervals.text)))) == 3
    assert len(await api.audit_rows("attendance.exported")) == 3


async def test_audio_only_minutes_per_client_in_json_and_csv(api: Api) -> None:
    c = await _clinic(api)
    ledger = api.services.rooms.attendance
    assert ledger is not None
    [stay] = await ledger.intervals(AttendanceQuery(session_id=SessionId("ss_monday"), subject=c.avery))
    ids = (RoomId(c.room_a), SessionId("ss_monday"), stay.participant_id, c.avery, ParticipantRole.CLIENT)
    await ledger.audio_only(AudioOnlyMark(*ids, at=_at(2, 10, 30), reason=AudioOnlyReason.BANDWIDTH))
    await ledger.audio_only(AudioOnlyMark(*ids, at=_at(2, 11), reason=None))  # 30 minutes without video
    report = await _report(api, c.dr_a)
    assert [(d["day"], d["minutes"], d["audio_only_minutes"]) for d in report["days"]] == [
        ("2026-03-02", 210.0, 30.0),
        ("2026-03-03", 120.0, 0.0),
    ]
    assert [w["audio_only_minutes"] for w in report["weeks"]] == [30.0]
    monday = next(s for s in report["sessions"] if s["session_id"] == "ss_monday")
    roster = {line["subject"]: line["audio_only_minutes"] for line in monday["roster"]}
    assert roster == {c.avery: 30.0, c.dr_a.id: 0.0}
    response = await api.http.get(f"{ATTENDANCE}?format=csv&table=intervals", headers=c.dr_a.headers)
    table = {
        (r["session_id"], r["subject"]): r["audio_only_minutes"]
        for r in csv.DictReader(io.StringIO(response.text))
    }
    assert table[("ss_monday", c.avery)] == "30.0" and table[("ss_tuesday", c.avery)] == "0.0"


@pytest.mark.parametrize(
    "query",
    [
        "?format=xml",
        "?table=everything",
        "?from=2026-13-01",
        "?from=yesterday",
        "?from=2026-03-03&to=2026-03-02",
        "?tz=Mars/Olympus_Mons",
        "?tz=../../etc/passwd",
        "?client=Jordan",
    ],
)
async def test_bad_filters_are_400_and_not_audited(api: Api, query: str) -> None:
    admin = await api.user(Role.ADMIN)
    assert_error(await api.http.get(ATTENDANCE + query, headers=admin.headers), 400, "bad_request")
    assert await api.audit_rows("attendance.exported") == []


@pytest.mark.parametrize(
    "query",
    ["?to=9999-12-31", "?from=9999-12-31", "?from=0001-01-01", "?from=0001-01-01&tz=Pacific/Kiritimati"],
)
async def test_out_of_range_days_are_400_not_500(api: Api, query: str) -> None:
    """Issue 11: ``to=9999-12-31`` overflowed the day after it into a 500."""
    admin = await api.user(Role.ADMIN)
    response = await api.http.get(ATTENDANCE + query, headers=admin.headers)
    assert_error(response, 400, "bad_request")
    assert "from 1970-01-02 to 9998-12-30" in response.json()["error"]["message"]
    assert await api.audit_rows("attendance.exported") == []


async def test_the_role_is_authorized_before_filters_are_parsed(api: Api) -> None:
    """Issue 11: a caller without the permission gets 403 whatever the query string holds (malformed filters
    must not tell them how the endpoint parses, nor cost the server anything)."""
    staff = await api.user(Role.STAFF)
    for query in ("?to=9999-12-31", "?format=xml", "?tz=../../etc/passwd", "?from=yesterday"):
        assert_error(await api.http.get(ATTENDANCE + query, headers=staff.headers), 403, "forbidden")


# --- attendance that bills (issue 16) ----------------------------------------------------------------------


class TrackTable:
    """The occurrence port as tracks provide it, over a dict (rooms opened for a track occurrence)."""

    def __init__(self, known: dict[RoomId, OccurrenceRef]) -> None:
        self.known = known

    async def occurrence_of(self, room_id: RoomId) -> OccurrenceRef | None:
        return self.known.get(room_id)


async def test_fhir_export_is_a_bundle_of_encounters_with_ids_only(api: Api) -> None:
    c = await _clinic(api)
    response = await api.http.get(f"{ATTENDANCE}?format=fhir", headers=c.dr_a.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    bundle = Bundle.model_validate_json(response.text)
    encounters = [entry.resource for entry in bundle.entry or []]
    assert all(isinstance(e, Encounter) for e in encounters)
    assert sorted((e.identifier[0].value, e.status) for e in encounters) == [
        (f"ss_monday/{c.avery}", "finished"),
        (f"ss_tuesday/{c.avery}", "finished"),
    ]
    assert "Avery" not in response.text and "Blake" not in response.text
    assert await api.audit_rows("attendance.exported") != []


async def test_track_titles_in_json_and_csv_and_in_fhir_only_for_the_treating_team(api: Api) -> None:
    c = await _clinic(api)
    starts = _at(2, 10)
    api.services.occurrences = TrackTable(
        {RoomId(c.room_a): OccurrenceRef("tr_evening", "Evening IOP", starts)}
    )
    try:
        report = await _report(api, c.dr_a)
        monday = next(s for s in report["sessions"] if s["session_id"] == "ss_monday")
        assert (monday["track_id"], monday["track_title"], monday["occurrence_start"]) == (
            "tr_evening",
            "Evening IOP",
            "2026-03-02T10:00:00Z",
        )
        assert {(i["track_id"], i["track_title"]) for i in report["intervals"]} == {
            ("tr_evening", "Evening IOP")
        }
        admin = await api.user(Role.ADMIN)
        everything = await _report(api, admin)
        room_b = [s for s in everything["sessions"] if s["room_id"] == c.room_b]
        assert [s["track_title"] for s in room_b] == [None]  # a room made by hand: by room id, as before
        treating = await api.http.get(f"{ATTENDANCE}?format=fhir", headers=c.dr_a.headers)
        titles = {e.serviceType.text for e in _encounters(treating.text) if e.serviceType}
        assert titles == {"Evening IOP"}
        ids_only = await api.http.get(f"{ATTENDANCE}?format=fhir", headers=admin.headers)
        assert "Evening IOP" not in ids_only.text and "tr_evening" in ids_only.text
    finally:
        api.services.occurrences = None


def _encounters(text: str) -> list[Encounter]:
    return [
        e.resource for e in Bundle.model_validate_json(text).entry or [] if isinstance(e.resource, Encounter)
    ]


async def test_weeks_start_where_the_program_says_with_the_hours_missing(api: Api) -> None:
    c = await _clinic(api)
    monday_weeks = (await _report(api, c.dr_a))["weeks"]
    assert [(w["week_start"], w["week_end"], w["minutes_missing"]) for w in monday_weeks] == [
        ("2026-03-02", "2026-03-08", 210.0)  # 330 of 540 minutes: "needs 3.5 h more by Sunday"
    ]
    sunday = await _report(api, c.dr_a, "?week_start=sunday")
    assert sunday["week_start"] == "sunday"
    assert [(w["week_start"], w["week_end"]) for w in sunday["weeks"]] == [("2026-03-01", "2026-03-07")]
    assert [(d["day"], d["minutes_missing"]) for d in sunday["days"]] == [
        ("2026-03-02", 0.0),
        ("2026-03-03", 60.0),
    ]
    response = await api.http.get(
        f"{ATTENDANCE}?format=csv&table=weeks&week_start=sunday", headers=c.dr_a.headers
    )
    [week] = list(csv.DictReader(io.StringIO(response.text)))
    assert (week["week_start"], week["week_end"], week["minutes_missing"]) == (
        "2026-03-01",
        "2026-03-07",
        "210.0",
    )


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("?format=fhir4", "format"),
        ("?format=FHIR", "format"),
        ("?week_start=funday", "week_start"),
        ("?week_start=", "week_start"),
        ("?format=fhir&from=2026-02-30", "from"),
        ("?format=fhir&from=2026-03-03&to=2026-03-02", "to"),
    ],
)
async def test_bad_billing_filters_are_400_naming_the_parameter(api: Api, query: str, names: str) -> None:
    admin = await api.user(Role.ADMIN)
    error = assert_error(await api.http.get(ATTENDANCE + query, headers=admin.headers), 400, "bad_request")
    assert error["message"].startswith(names)
    assert await api.audit_rows("attendance.exported") == []
