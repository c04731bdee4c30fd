"""``attendance export`` as an operator runs it: JSON and CSV, filters, flags, private files, audited."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter
from sqlalchemy import select

from tests.rooms.support import HOST
from tests.storage.attendance_seed import seed_people, seed_room
from vIOP.cli.attendance import add_parsers, run
from vIOP.cli.storage import add_parsers as add_storage_parsers
from vIOP.cli.storage import run as run_storage
from vIOP.errors import ConfigError
from vIOP.ids import ParticipantId, RoomId, SessionId, UserId, new_track_id
from vIOP.program.ports import Track, TrackKind
from vIOP.program.schedule import Occurrence, Schedule
from vIOP.rooms.attendance import AudioOnlyMark, CloseMark, CloseReason, OpenMark
from vIOP.rooms.audio_only import AudioOnlyReason
from vIOP.rooms.participant import Role
from vIOP.settings import Settings
from vIOP.storage.attendance_sql import SqlAttendanceStore
from vIOP.storage.bootstrap import open_storage
from vIOP.storage.schema import audit_log
from vIOP.storage.tracks_sql import SqlTrackStore

ROOM = RoomId("rm_group1")
REPO = Path(__file__).resolve().parents[2]


def cli(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(list(argv)), settings)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.fixture
def settings(data_dir: Path, key_file: Path) -> Settings:
    parser = argparse.ArgumentParser()
    add_storage_parsers(parser.add_subparsers(dest="command", required=True))
    assert run_storage(parser.parse_args(["keys", "init", str(key_file)]), Settings(data_dir=data_dir)) == 0
    settings = Settings(data_dir=data_dir, key_file=key_file)

    async def seed() -> None:
        storage = await open_storage(settings)
        await seed_people(storage.db)
        await seed_room(storage.db, ROOM)
        ledger = SqlAttendanceStore(storage.db)
        stays = [  # (client, session, start, end), UTC
            ("cl_1", "ss_mon", "2026-01-05T15:00:00", "2026-01-05T18:10:00"),  # 190 min
            ("cl_1", "ss_wed", "2026-01-07T15:00:00", "2026-01-07T17:30:00"),  # 150 min: under 3 h
            ("cl_1", "ss_thu", "2026-01-08T15:00:00", "2026-01-08T18:00:00"),  # 180 min
            ("cl_2", "ss_mon", "2026-01-05T15:00:00", "2026-01-05T16:00:00"),
        ]
        for n, (client, session, start, end) in enumerate(stays):
            pid = ParticipantId(f"pt_{n}")
            await ledger.open(OpenMark(ROOM, SessionId(session), pid, client, Role.CLIENT, ts(start)), 60)
            if session == "ss_wed":  # 45 minutes on audio only ("save data"), within the stay
                ids = (ROOM, SessionId(session), pid, client, Role.CLIENT)
                await ledger.audio_only(
                    AudioOnlyMark(*ids, ts("2026-01-07T15:30:00"), AudioOnlyReason.SAVE_DATA)
                )
                await ledger.audio_only(AudioOnlyMark(*ids, ts("2026-01-07T16:15:00"), None))
            await ledger.close(CloseMark(ROOM, SessionId(session), pid, client, ts(end), CloseReason.LEFT))
        await storage.close()

    asyncio.run(seed())
    return settings


def exports_audited(settings: Settings) -> list[tuple[str, str | None]]:
    async def go() -> list[tuple[str, str | None]]:
        storage = await open_storage(settings)
        async with storage.db.read() as conn:
            rows = (await conn.execute(select(audit_log.c.action, audit_log.c.object_id))).all()
        await storage.close()
        return [(r[0], r[1]) for r in rows if r[0] == "attendance.exported"]

    return asyncio.run(go())


def test_csv_days_with_flags_written_privately(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "days.csv"
    assert cli(settings, "attendance", "export", "--format", "csv", "--output", str(out)) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["subject"], r["day"], r["minutes"], r["under_3_hours"]) for r in table] == [
        ("cl_1", "2026-01-05", "190.0", "False"),
        ("cl_1", "2026-01-07", "150.0", "True"),
        ("cl_1", "2026-01-08", "180.0", "False"),
        ("cl_2", "2026-01-05", "60.0", "True"),
    ]
    assert exports_audited(settings) == [("attendance.exported", None)]


def test_json_for_one_client_and_a_date_range(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("attendance", "export", "--client", "cl_1", "--from", "2026-01-06", "--to", "2026-01-11")
    assert cli(settings, *argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert [d["day"] for d in report["days"]] == ["2026-01-07", "2026-01-08"]
    (week,) = report["weeks"]
    assert week["minutes"] == 330.0 and week["under_9_hours"] and week["days_with_3_hours"] == 1
    assert {i["session_id"] for i in report["intervals"]} == {"ss_wed", "ss_thu"}
    assert exports_audited(settings) == [("attendance.exported", "cl_1")]


def test_audio_only_minutes_per_client_in_json_and_csv(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli(settings, "attendance", "export", "--client", "cl_1") == 0
    report = json.loads(capsys.readouterr().out)
    assert [(d["day"], d["audio_only_minutes"]) for d in report["days"]] == [
        ("2026-01-05", 0.0),
        ("2026-01-07", 45.0),
        ("2026-01-08", 0.0),
    ]
    assert [w["audio_only_minutes"] for w in report["weeks"]] == [45.0]
    wednesday = next(s for s in report["sessions"] if s["session_id"] == "ss_wed")
    assert [(line["minutes"], line["audio_only_minutes"]) for line in wednesday["roster"]] == [(150.0, 45.0)]
    out = tmp_path / "days.csv"
    assert (
        cli(settings, "attendance", "export", "--client", "cl_1", "--format", "csv", "--output", str(out))
        == 0
    )
    lines = out.read_text().splitlines()
    assert lines[0] == "subject,day,minutes,under_3_hours,audio_only_minutes,minutes_missing"
    assert lines[2] == "cl_1,2026-01-07,150.0,True,45.0,30.0"


def test_bad_arguments_are_refused_before_anything_is_read(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="--tz"):
        cli(settings, "attendance", "export", "--tz", "Mars/Olympus")
    with pytest.raises(ConfigError, match="--to"):
        cli(settings, "attendance", "export", "--from", "2026-01-08", "--to", "2026-01-01")
    assert exports_audited(settings) == []


# --- attendance that bills (issue 16) ----------------------------------------------------------------------


def test_fhir_export_parses_back_as_encounters_ids_only(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "encounters.json"
    assert cli(settings, "attendance", "export", "--format", "fhir", "--output", str(out)) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    bundle = Bundle.model_validate_json(out.read_text())
    encounters = [e.resource for e in bundle.entry or [] if isinstance(e.resource, Encounter)]
    assert sorted(e.identifier[0].value for e in encounters if e.identifier) == [
        "ss_mon/cl_1",
        "ss_mon/cl_2",
        "ss_thu/cl_1",
        "ss_wed/cl_1",
    ]
    assert {e.status for e in encounters} == {"finished"}
    assert exports_audited(settings) == [("attendance.exported", None)]


def test_weeks_from_sunday_with_the_minutes_missing(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(settings, "attendance", "export", "--client", "cl_1", "--week-start", "sunday") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["week_start"] == "sunday"
    assert [
        (w["week_start"], w["week_end"], w["minutes"], w["minutes_missing"]) for w in report["weeks"]
    ] == [("2026-01-04", "2026-01-10", 520.0, 20.0)]
    assert [d["minutes_missing"] for d in report["days"]] == [0.0, 30.0, 0.0]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--format", "fhir4"), "vIOP: argument --format: invalid choice: 'fhir4'"),
        (("--week-start", "funday"), "vIOP: argument --week-start: invalid choice: 'funday'"),
        (("--from", "2026-02-30"), "vIOP: argument --from: must be a day as YYYY-MM-DD"),
        # a day past what every time zone can turn into a timestamp: was an OverflowError traceback
        (("--to", "9999-12-31"), "vIOP: argument --to: must be a day from 1970-01-02 to 9998-12-30"),
    ],
)
def test_bad_export_arguments_are_one_error_line(
    settings: Settings, tmp_path: Path, args: tuple[str, ...], line: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIOP_")}
    env.update(
        PYTHONPATH=str(REPO), VIOP_DATA_DIR=str(settings.data_dir), VIOP_KEY_FILE=str(settings.key_file)
    )
    done = subprocess.run(
        [sys.executable, "-m", "vIOP", "attendance", "export", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    [error] = done.stderr.splitlines()
    assert error.startswith(line)
    assert exports_audited(settings) == []


def test_a_room_opened_for_a_track_occurrence_reports_the_track(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator's export asks the track store which occurrence each room was opened for: its rows carry
    the track's id, title and scheduled start (the HTTP export does the same)."""
    start = datetime(2026, 1, 12, 23, 0, tzinfo=UTC)  # Monday 18:00 in New York
    track = Track(
        id=new_track_id(), title="Evening IOP", kind=TrackKind.GROUP, capacity=12, host_id=UserId(HOST),
        cohost_ids=frozenset(), created_by=UserId(HOST), created_at=start.timestamp() - 86400,
        schedule=Schedule("America/New_York", datetime(2026, 1, 12, 18, 0), "FREQ=WEEKLY;BYDAY=MO", 180),
    )  # fmt: skip
    occurrence = Occurrence(
        track.id, track.title, start, start, start + timedelta(hours=3), start - timedelta(minutes=15)
    )
    room = RoomId("rm_track1")

    async def seed() -> None:
        storage = await open_storage(settings)
        tracks = SqlTrackStore(storage.db, storage.keys)
        await tracks.add_track(track)
        await tracks.claim_occurrence(track, occurrence, room, start.timestamp() - 900)
        ledger = SqlAttendanceStore(storage.db)
        pid, session = ParticipantId("pt_t"), SessionId("ss_track")
        await ledger.open(OpenMark(room, session, pid, "cl_1", Role.CLIENT, start.timestamp()), 60)
        await ledger.close(CloseMark(room, session, pid, "cl_1", start.timestamp() + 10800, CloseReason.LEFT))
        await storage.close()

    asyncio.run(seed())
    assert cli(settings, "attendance", "export", "--from", "2026-01-12", "--to", "2026-01-12") == 0
    report = json.loads(capsys.readouterr().out)
    (interval,) = report["intervals"]
    assert (interval["room_id"], interval["track_id"], interval["track_title"]) == (
        room,
        track.id,
        "Evening IOP",
    )
