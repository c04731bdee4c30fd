"""The attendance export as FHIR R4 Encounters: parsed back with ``fhir.resources`` (R4B models, R4's
Encounter), one per client per session, ids only, stable across exports."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter

from vIOP.ids import ParticipantId, RoomId, SessionId
from vIOP.rooms.attendance import AudioOnlySpan, CloseReason, Interval
from vIOP.rooms.attendance_report import AttendanceReport, build_report
from vIOP.rooms.audio_only import AudioOnlyReason
from vIOP.rooms.occurrences import OccurrenceRef
from vIOP.rooms.participant import Role
from vIOP.session.attendance_fhir import (
    AUDIO_ONLY_EXTENSION,
    CLIENT_SYSTEM,
    ENCOUNTER_SYSTEM,
    OCCURRENCE_SYSTEM,
    USER_SYSTEM,
    fhir_json,
)

ROOM = RoomId("rm_evening")
MONDAY, WEDNESDAY = SessionId("ss_monday"), SessionId("ss_wednesday")


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def stay(session: SessionId, subject: str, role: Role, start: str, stop: str | None, n: int) -> Interval:
    return Interval(
        id=f"at_{n}",
        room_id=ROOM,
        session_id=session,
        participant_id=ParticipantId(f"pt_{n}"),
        subject=subject,
        role=role,
        joined_at=ts(start),
        left_at=None if stop is None else ts(stop),
        close_reason=None if stop is None else CloseReason.LEFT,
    )


def _report(occurrence: OccurrenceRef | None = None) -> AttendanceReport:
    audio = AudioOnlySpan(ts("2026-03-02T23:30:00"), ts("2026-03-02T23:50:00"), AudioOnlyReason.BANDWIDTH)
    stays = [
        stay(MONDAY, "us_dr", Role.HOST, "2026-03-02T22:55:00", "2026-03-03T02:05:00", 0),
        stay(MONDAY, "cl_a", Role.CLIENT, "2026-03-02T23:00:00", "2026-03-03T01:00:00", 1),
        # cl_a drops out for 10 minutes and comes back: one Encounter, its length the time inside
        stay(MONDAY, "cl_a", Role.CLIENT, "2026-03-03T01:10:00", "2026-03-03T02:00:00", 2),
        stay(MONDAY, "cl_b", Role.CLIENT, "2026-03-02T23:00:00", "2026-03-03T02:00:00", 3),
        stay(WEDNESDAY, "cl_a", Role.CLIENT, "2026-03-04T23:00:00", None, 4),  # still inside
    ]
    stays[3] = replace(stays[3], audio_only=(audio,))  # 20 minutes without video
    occurrences = {ROOM: occurrence} if occurrence else None
    return build_report(stays, now=ts("2026-03-05T00:00:00"), tz="America/New_York", occurrences=occurrences)


def _encounters(text: str) -> list[Encounter]:
    bundle = Bundle.model_validate_json(text)  # parsing back is the validation
    assert bundle.type == "collection"
    found = [entry.resource for entry in bundle.entry or []]
    assert all(isinstance(e, Encounter) for e in found)
    for entry in bundle.entry or []:
        assert entry.fullUrl == f"urn:uuid:{entry.resource.id}"
    return [e for e in found if isinstance(e, Encounter)]


def test_one_finished_virtual_encounter_per_client_per_session() -> None:
    found = _encounters(fhir_json(_report()))
    keys = [(e.identifier[0].system, e.identifier[0].value) for e in found if e.identifier]
    assert sorted(keys) == [
        (ENCOUNTER_SYSTEM, "ss_monday/cl_a"),
        (ENCOUNTER_SYSTEM, "ss_monday/cl_b"),
        (ENCOUNTER_SYSTEM, "ss_wednesday/cl_a"),
    ]
    by_key = {e.identifier[0].value: e for e in found if e.identifier}
    monday_a = by_key["ss_monday/cl_a"]
    assert monday_a.status == "finished"
    assert (monday_a.class_fhir.system, monday_a.class_fhir.code) == (
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "VR",
    )
    assert monday_a.period is not None
    assert (monday_a.period.start, monday_a.period.end) == (
        datetime(2026, 3, 2, 23, 0, tzinfo=UTC),
        datetime(2026, 3, 3, 2, 0, tzinfo=UTC),
    )
    assert monday_a.length is not None and monday_a.length.value == Decimal("170.0")  # 3 h less 10 min away
    assert (monday_a.length.system, monday_a.length.code) == ("http://unitsofmeasure.org", "min")
    assert monday_a.subject is not None and monday_a.subject.identifier is not None
    assert (monday_a.subject.type, monday_a.subject.identifier.system, monday_a.subject.identifier.value) == (
        "Patient",
        CLIENT_SYSTEM,
        "cl_a",
    )
    [clinician] = monday_a.participant or []
    assert clinician.individual is not None and clinician.individual.identifier is not None
    assert (clinician.individual.identifier.system, clinician.individual.identifier.value) == (
        USER_SYSTEM,
        "us_dr",
    )
    assert by_key["ss_wednesday/cl_a"].status == "in-progress"
    assert by_key["ss_wednesday/cl_a"].period is not None and by_key["ss_wednesday/cl_a"].period.end is None
    [audio] = by_key["ss_monday/cl_b"].extension or []
    assert audio.url == AUDIO_ONLY_EXTENSION and audio.valueDuration is not None
    assert audio.valueDuration.value == Decimal("20.0")
    assert not monday_a.extension
    # No reference is a literal one the EHR could not resolve, and nothing names a person.
    text = fhir_json(_report())
    assert '"reference"' not in text and "display_name" not in text


def test_the_same_occurrence_exported_twice_gives_the_same_encounter_ids() -> None:
    first = [e.id for e in _encounters(fhir_json(_report()))]
    second = [e.id for e in _encounters(fhir_json(_report()))]
    assert first == second and len(set(first)) == 3


def test_a_track_occurrence_by_id_and_its_title_only_when_allowed() -> None:
    occurrence = OccurrenceRef("tr_evening", "Evening IOP", ts("2026-03-02T23:00:00"))
    with_title = _encounters(fhir_json(_report(occurrence), titles=True))
    for encounter in with_title:
        [appointment] = encounter.appointment or []
        assert appointment.identifier is not None
        assert appointment.identifier.system == OCCURRENCE_SYSTEM
        assert appointment.identifier.value == "tr_evening/2026-03-02T23:00:00Z"
        assert encounter.serviceType is not None and encounter.serviceType.text == "Evening IOP"
    ids_only = fhir_json(_report(occurrence), titles=False)
    assert "Evening IOP" not in ids_only and "tr_evening" in ids_only
    assert all(e.serviceType is None for e in _encounters(ids_only))
    no_track = _encounters(fhir_json(_report(None)))
    assert all(e.appointment is None and e.serviceType is None for e in no_track)


def test_a_disclosure_is_labelled_42_cfr_part_2() -> None:
    bundle = Bundle.model_validate_json(fhir_json(_report(), disclosure=True))
    codes = {c.code for c in (bundle.meta.security if bundle.meta else None) or []}
    assert codes == {"42CFRPart2", "NORDSCLCD"}
    for entry in bundle.entry or []:
        assert entry.resource.meta is not None
        assert {c.code for c in entry.resource.meta.security or []} == codes
    assert Bundle.model_validate_json(fhir_json(_report())).meta is None


def test_an_empty_report_is_an_empty_bundle() -> None:
    empty = build_report([], now=ts("2026-03-05T00:00:00"))
    bundle = Bundle.model_validate_json(fhir_json(empty))
    assert bundle.type == "collection" and not bundle.entry
