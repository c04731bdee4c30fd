"""The attendance export as FHIR R4 ``Encounter`` resources, for EHR import (``?format=fhir``, ``attendance
export --format fhir``).

One Encounter per client per room session (a track occurrence, once tracks open rooms), in a ``collection``
Bundle, built with ``fhir.resources``' R4B models: R4B (FHIR 4.3) keeps R4's Encounter unchanged (``class`` a
Coding, ``status`` ``finished``), where the package's default R5 models changed both. People appear by opaque
ids only, as logical references (``Reference.identifier``), never by name: the EHR matches ``urn:viop:client``
ids to its own patients. Each Encounter's id is derived from (session, client), so exporting the same
occurrence again yields the same resource and the receiver can update rather than duplicate it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, overload

from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.duration import Duration
from fhir.resources.R4B.encounter import Encounter, EncounterParticipant
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.reference import Reference

from vIOP.rooms.attendance import Interval, session_roster
from vIOP.rooms.attendance_report import AttendanceReport
from vIOP.rooms.participant import Role
from vIOP.session.wire_time import iso

MEDIA_TYPE: Final = "application/fhir+json"
# Identifier systems: opaque vIOP ids, for the receiver to map to its own records.
CLIENT_SYSTEM: Final = "urn:viop:client"
USER_SYSTEM: Final = "urn:viop:user"
ENCOUNTER_SYSTEM: Final = "urn:viop:encounter"  # value: "<session id>/<client id>"
OCCURRENCE_SYSTEM: Final = "urn:viop:occurrence"  # value: "<track id>/<scheduled start, UTC>"
AUDIO_ONLY_EXTENSION: Final = "urn:viop:fhir:audio-only-minutes"  # of ``length``, those without video
_ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_PARTICIPATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_UCUM: Final = "http://unitsofmeasure.org"
# uuid5 namespace for Encounter ids (any fixed UUID; this one is uuid5(NAMESPACE_URL, "urn:viop:encounter")).
_ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, ENCOUNTER_SYSTEM)


@overload
def _instant(ts: float) -> datetime: ...
@overload
def _instant(ts: float | None) -> datetime | None: ...
def _instant(ts: float | None) -> datetime | None:
    """UTC, to the second (as the JSON and CSV exports write times)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).replace(microsecond=0)


def _minutes(value: float) -> Duration:
    return Duration(value=Decimal(str(value)), unit="min", system=_UCUM, code="min")


def _person(system: str, subject: str, resource_type: str) -> Reference:
    return Reference(type=resource_type, identifier=Identifier(system=system, value=subject))


def _clinicians(stays: list[Interval], now: float) -> list[EncounterParticipant]:
    """The room's clinicians in that session, each with the span they were in."""
    return [
        EncounterParticipant(
            type=[
                CodeableConcept(
                    coding=[Coding(system=_PARTICIPATION, code="PPRF", display="primary performer")]
                )
            ],
            individual=_person(USER_SYSTEM, line.subject, "Practitioner"),
            period=Period(start=_instant(line.first_joined), end=_instant(line.last_left)),
        )
        for line in session_roster(stays, stays[0].session_id, now=now)
        if line.role is Role.HOST
    ]


def encounters(report: AttendanceReport, *, titles: bool = True) -> list[Encounter]:
    """One Encounter per client per session in ``report``; ``titles``: carry a track's title as the
    Encounter's ``serviceType`` (else the track appears by id only, in ``appointment``)."""
    by_session: dict[str, list[Interval]] = defaultdict(list)
    for interval in report.intervals:
        by_session[interval.session_id].append(interval)
    out: list[Encounter] = []
    for session_id, stays in by_session.items():
        room_id = stays[0].room_id
        occurrence = report.occurrences.get(room_id)
        clinicians = _clinicians(stays, report.generated_at)
        for line in session_roster(stays, stays[0].session_id, now=report.generated_at):
            if line.role is not Role.CLIENT:
                continue
            key = f"{session_id}/{line.subject}"
            # ``class`` is a Python keyword: the model's own name for it is its alias.
            virtual: dict[str, Any] = {"class": Coding(system=_ACT_CODE, code="VR", display="virtual")}
            encounter = Encounter(
                **virtual,
                id=str(uuid.uuid5(_ID_NAMESPACE, key)),
                identifier=[Identifier(system=ENCOUNTER_SYSTEM, value=key)],
                # Someone still inside when the report was made: the encounter is not over yet.
                status="finished" if line.last_left is not None else "in-progress",
                subject=_person(CLIENT_SYSTEM, line.subject, "Patient"),
                participant=clinicians or None,
                period=Period(start=_instant(line.first_joined), end=_instant(line.last_left)),
                length=_minutes(line.minutes),
            )
            if line.audio_only_minutes:
                encounter.extension = [
                    Extension(url=AUDIO_ONLY_EXTENSION, valueDuration=_minutes(line.audio_only_minutes))
                ]
            if occurrence is not None:
                encounter.appointment = [
                    Reference(
                        type="Appointment",
                        identifier=Identifier(
                            system=OCCURRENCE_SYSTEM,
                            value=f"{occurrence.track_id}/{iso(occurrence.starts_at)}",
                        ),
                    )
                ]
                if titles:
                    encounter.serviceType = CodeableConcept(text=occurrence.title)
            out.append(encounter)
    out.sort(key=lambda e: (str(e.period.start) if e.period else "", e.id or ""))
    return out


def _part2_labels() -> Meta:
    """The security labels of a 42 CFR part 2 disclosure: the policy, and "no redisclosure without
    consent" (HL7's codes for the notice the JSON and CSV carry as text)."""
    return Meta(
        security=[
            Coding(system=_ACT_CODE, code="42CFRPart2", display="42 CFR Part2"),
            Coding(system=_ACT_CODE, code="NORDSCLCD", display="no redisclosure without consent directive"),
        ]
    )


def encounter_bundle(report: AttendanceReport, *, titles: bool = True, disclosure: bool = False) -> Bundle:
    """The report's Encounters as a FHIR ``collection`` Bundle; ``disclosure``: labelled as a 42 CFR part 2
    disclosure (the Bundle and each Encounter, since an importer may keep the Encounters alone)."""
    found = encounters(report, titles=titles)
    if disclosure:
        for encounter in found:
            encounter.meta = _part2_labels()
    return Bundle(
        meta=_part2_labels() if disclosure else None,
        type="collection",
        timestamp=_instant(report.generated_at),
        entry=[BundleEntry(fullUrl=f"urn:uuid:{encounter.id}", resource=encounter) for encounter in found]
        or None,
    )


def fhir_json(report: AttendanceReport, *, titles: bool = True, disclosure: bool = False) -> str:
    return encounter_bundle(report, titles=titles, disclosure=disclosure).model_dump_json(exclude_none=True)
