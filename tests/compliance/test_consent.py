"""42 CFR Part 2 consent: the rule with an injected clock, the store on real SQL (sealed under the client's
key, shredded with the client), disclosures over HTTP and from the CLI (refused without consent, revocation
at once, the redisclosure notice on what goes out)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter
from sqlalchemy import select

from tests.api.support import Api, User, assert_error
from tests.compliance.support import DAY, START, World, stay
from vIOP.auth.permissions import Role
from vIOP.cli import attendance as attendance_cli
from vIOP.cli import compliance as compliance_cli
from vIOP.cli.storage import add_parsers as add_storage_parsers
from vIOP.cli.storage import run as run_storage
from vIOP.compliance.consent import (
    REDISCLOSURE_NOTICE,
    Consent,
    ConsentRequired,
    DataCategory,
    missing_consent,
    normalise_recipient,
)
from vIOP.errors import Conflict, NotFound
from vIOP.rooms.clock import ManualClock
from vIOP.settings import Settings
from vIOP.storage.bootstrap import Storage, open_storage
from vIOP.storage.consents_sql import SqlConsentStore, require_consent
from vIOP.storage.crypto import KeyRing, shred_client
from vIOP.storage.schema import audit_log, part2_consents

COURT = "Travis County Recovery Court"
PURPOSE = "Compliance monitoring for the diversion program"
ATTENDANCE = "/api/v1/attendance"
ATT = frozenset({DataCategory.ATTENDANCE})


# --- the rule ---------------------------------------------------------------------------------------


def test_a_consent_covers_its_recipient_and_data_until_it_expires_or_is_revoked() -> None:
    clock = ManualClock(START)
    consent = Consent("cn_1", "cl_a", COURT, PURPOSE, ATT, "us_admin", clock(), clock() + 30 * DAY)
    consents = {"cl_a": [consent]}
    assert (
        missing_consent(
            ["cl_a", "cl_a"], consents, "travis  county RECOVERY court", DataCategory.ATTENDANCE, clock()
        )
        == []
    )
    assert missing_consent(["cl_a", "cl_b"], consents, COURT, DataCategory.ATTENDANCE, clock()) == ["cl_b"]
    assert missing_consent(["cl_a"], consents, "Another Court", DataCategory.ATTENDANCE, clock()) == ["cl_a"]
    clock.advance(30 * DAY - 1)
    assert missing_consent(["cl_a"], consents, COURT, DataCategory.ATTENDANCE, clock()) == []
    clock.advance(1)
    assert missing_consent(["cl_a"], consents, COURT, DataCategory.ATTENDANCE, clock()) == ["cl_a"]
    revoked = Consent(
        "cn_2", "cl_a", COURT, PURPOSE, ATT, None, START, START + 90 * DAY, revoked_at=START + 1
    )
    assert missing_consent(["cl_a"], {"cl_a": [revoked]}, COURT, DataCategory.ATTENDANCE, START + 2) == [
        "cl_a"
    ]
    assert normalise_recipient("Ｔravis\u00a0County") == "travis county"


# --- the store --------------------------------------------------------------------------------------


async def test_consents_are_sealed_under_the_client_key_and_shredded_with_the_client(
    storage: Storage,
) -> None:
    world = World(storage)
    await world.add_host(START)
    room = await world.room(START, None)
    client = await world.client(room, START, "Avery Quinn", START + DAY)
    clock = ManualClock(START)
    store = SqlConsentStore(storage.db, storage.keys)
    consent = await store.add(client, COURT, PURPOSE, ATT, clock() + 90 * DAY, None, clock())
    async with storage.db.read() as conn:
        row = (await conn.execute(select(part2_consents))).one()
    assert COURT.encode() not in row.recipient and PURPOSE.encode() not in row.purpose
    assert [c.recipient for c in await store.for_client(client)] == [COURT]
    await require_consent(store, [client], COURT, DataCategory.ATTENDANCE, clock())

    clock.advance(60)
    revoked = await store.revoke(consent.id, None, clock())
    assert revoked.revoked_at == START + 60
    with pytest.raises(ConsentRequired):  # revocation takes effect at the very next check
        await require_consent(store, [client], COURT, DataCategory.ATTENDANCE, clock())
    again = await store.revoke(consent.id, None, clock() + 5)
    assert again.revoked_at == START + 60  # idempotent: the first revocation's time stays

    fresh = await store.add(client, COURT, PURPOSE, ATT, clock() + 90 * DAY, None, clock())
    await require_consent(store, [client], COURT, DataCategory.ATTENDANCE, clock())
    await shred_client(storage.keys, client)
    assert await store.for_client(client) == []
    with pytest.raises(NotFound):
        await store.get(fresh.id)
    with pytest.raises(ConsentRequired):
        await require_consent(store, [client], COURT, DataCategory.ATTENDANCE, clock())
    with pytest.raises(Conflict):
        await store.add(client, COURT, PURPOSE, ATT, clock() + DAY, None, clock())
    with pytest.raises(NotFound):
        await store.add("cl_nobody", COURT, PURPOSE, ATT, clock() + DAY, None, clock())


# --- over HTTP --------------------------------------------------------------------------------------


async def _clinic(api: Api) -> tuple[User, str, str, str]:
    dr = await api.user(Role.CLINICIAN)
    room = (await api.create_room(dr))["id"]
    avery = (await api.create_invite(dr, room, display_name="Avery Quinn"))["client_id"]
    blake = (await api.create_invite(dr, room, display_name="Blake Hollis"))["client_id"]
    for client in (avery, blake):
        await stay(api, room, client, START + 36_000, START + 46_800)
    return dr, room, avery, blake


async def _consent(api: Api, admin: User, client: str, **changes: object) -> dict[str, object]:
    body = {
        "recipient": COURT,
        "purpose": PURPOSE,
        "data": ["attendance"],
        "expires_at": "2099-01-01T00:00:00Z",
    }
    response = await api.http.post(
        f"/api/v1/clients/{client}/consents", json={**body, **changes}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_a_disclosure_needs_every_clients_consent_and_revocation_stops_it_at_once(api: Api) -> None:
    dr, room, avery, blake = await _clinic(api)
    admin = await api.user(Role.ADMIN)
    disclosure = {"room_id": room, "recipient": COURT}
    refused = await api.http.get(ATTENDANCE, params=disclosure, headers=admin.headers)
    error = assert_error(refused, 403, "consent_required")
    assert avery in error["message"] and blake in error["message"] and COURT not in error["message"]

    first = await _consent(api, admin, avery)
    assert (first["recipient"], first["data"], first["revoked_at"]) == (COURT, ["attendance"], None)
    refused = await api.http.get(ATTENDANCE, params=disclosure, headers=admin.headers)
    assert blake in assert_error(refused, 403, "consent_required")["message"]
    await _consent(api, admin, blake, recipient="travis county recovery court")
    # another recipient, or another kind of record, is still refused
    other = await api.http.get(
        ATTENDANCE, params={**disclosure, "recipient": "Acme Staffing"}, headers=admin.headers
    )
    assert_error(other, 403, "consent_required")

    allowed = await api.http.get(ATTENDANCE, params=disclosure, headers=admin.headers)
    assert allowed.status_code == 200, allowed.text
    document = allowed.json()
    assert document["redisclosure_notice"] == REDISCLOSURE_NOTICE
    assert {d["display_name"] for d in document["days"]} == {"Avery Quinn", "Blake Hollis"}
    as_csv = await api.http.get(ATTENDANCE, params={**disclosure, "format": "csv"}, headers=admin.headers)
    assert as_csv.status_code == 200
    notice_line, *table = as_csv.text.splitlines()
    assert notice_line == f"# {REDISCLOSURE_NOTICE}"
    assert {row["subject"] for row in csv.DictReader(io.StringIO("\n".join(table)))} == {avery, blake}
    disclosed = [(r["object_id"], r["outcome"]) for r in await api.audit_rows("part2.disclosed")]
    assert sorted(x for x in disclosed if x[1] == "success") == sorted(
        [(avery, "success"), (blake, "success")] * 2
    )

    revoke = await api.http.delete(f"/api/v1/consents/{first['id']}", headers=admin.headers)
    assert revoke.status_code == 200, revoke.text
    assert revoke.json()["revoked_by"] == admin.id
    after = await api.http.get(ATTENDANCE, params=disclosure, headers=admin.headers)
    assert avery in assert_error(after, 403, "consent_required")["message"]
    listed = await api.http.get(f"/api/v1/clients/{avery}/consents", headers=admin.headers)
    assert [c["revoked_at"] is not None for c in listed.json()["consents"]] == [True]

    # the treating team reading its own room is not a disclosure: no consent, no notice
    own = await api.http.get(ATTENDANCE, params={"room_id": room}, headers=dr.headers)
    assert own.status_code == 200 and "redisclosure_notice" not in own.json()
    assert {d["display_name"] for d in own.json()["days"]} == {"Avery Quinn", "Blake Hollis"}
    # a clinician disclosing their own room to an outsider needs the consents too
    assert_error(
        await api.http.get(ATTENDANCE, params=disclosure, headers=dr.headers), 403, "consent_required"
    )


async def test_consents_are_managed_by_admins_with_clear_refusals(api: Api) -> None:
    dr, _room, avery, _blake = await _clinic(api)
    admin = await api.user(Role.ADMIN)
    url = f"/api/v1/clients/{avery}/consents"
    good = {
        "recipient": COURT,
        "purpose": PURPOSE,
        "data": ["attendance"],
        "expires_at": "2099-01-01T00:00:00Z",
    }
    assert_error(await api.http.post(url, json=good, headers=dr.headers), 403, "forbidden")
    assert_error(await api.http.get(url, headers=dr.headers), 403, "forbidden")
    for bad in (
        {**good, "data": []},
        {**good, "data": ["psychotherapy_notes"]},
        {**good, "recipient": ""},
        {**good, "recipient": "x" * 201},
        {**good, "expires_at": "2099-01-01T00:00:00"},
        {**good, "expires_at": "soon"},
        {k: v for k, v in good.items() if k != "purpose"},
    ):
        assert_error(await api.http.post(url, json=bad, headers=admin.headers), 400, "bad_request")
    past = {**good, "expires_at": "2001-01-01T00:00:00Z"}
    assert_error(await api.http.post(url, json=past, headers=admin.headers), 409, "conflict")
    assert_error(
        await api.http.post("/api/v1/clients/cl_nobody/consents", json=good, headers=admin.headers),
        404,
        "not_found",
    )
    assert_error(await api.http.delete("/api/v1/consents/cn_nobody", headers=admin.headers), 404, "not_found")
    assert (await api.http.get(url, headers=admin.headers)).json() == {"consents": []}
    assert await api.audit_rows("consent.added") == []


# --- from the command line --------------------------------------------------------------------------


def _cli(module: object, settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    module.add_parsers(parser.add_subparsers(dest="command", required=True))  # type: ignore[attr-defined]
    return int(module.run(parser.parse_args(list(argv)), settings))  # type: ignore[attr-defined]


@pytest.fixture
def settings(data_dir: Path, key_file: Path) -> Settings:
    parser = argparse.ArgumentParser()
    add_storage_parsers(parser.add_subparsers(dest="command", required=True))
    assert run_storage(parser.parse_args(["keys", "init", str(key_file)]), Settings(data_dir=data_dir)) == 0
    return Settings(data_dir=data_dir, key_file=key_file)


def _seed(settings: Settings) -> tuple[str, str]:
    async def go() -> tuple[str, str]:
        storage = await open_storage(settings)
        try:
            world = World(storage)
            await world.add_host(START)
            room = await world.room(START, None)
            clients = []
            for name in ("Avery Quinn", "Blake Hollis"):
                client = await world.client(room, START, name, START + DAY)
                await world.attended(room, client, START + 3600, START + 4 * 3600)
                clients.append(client)
            return clients[0], clients[1]
        finally:
            await storage.close()

    return asyncio.run(go())


def test_the_cli_export_for_a_recipient_is_refused_without_consent_and_carries_the_notice(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    avery, blake = _seed(settings)
    out = tmp_path / "export.json"
    export = ("attendance", "export", "--recipient", COURT, "--output", str(out))
    with pytest.raises(ConsentRequired):
        _cli(attendance_cli, settings, *export)
    assert not out.exists()  # nothing was written
    for client in (avery, blake):
        assert _cli(compliance_cli, settings, "consent", "add", "--client", client, "--recipient", COURT,
                    "--purpose", PURPOSE, "--data", "attendance", "--expires", "2099-12-31") == 0  # fmt: skip
    assert _cli(attendance_cli, settings, *export) == 0
    notice, document = out.read_text().split("\n", 1)
    assert notice == f"# {REDISCLOSURE_NOTICE}"
    assert {d["subject"] for d in json.loads(document)["days"]} == {avery, blake}
    capsys.readouterr()
    assert _cli(compliance_cli, settings, "consent", "list", "--client", avery) == 0
    [line] = capsys.readouterr().out.splitlines()
    consent_id = line.split()[0]
    assert "active" in line and COURT in line
    assert _cli(compliance_cli, settings, "consent", "revoke", consent_id) == 0
    assert "revoked" in capsys.readouterr().out
    with pytest.raises(ConsentRequired):
        _cli(attendance_cli, settings, *export)

    async def audited() -> list[tuple[str, str | None, str]]:
        storage = await open_storage(settings)
        try:
            async with storage.db.read() as conn:
                rows = await conn.execute(
                    select(audit_log.c.action, audit_log.c.object_id, audit_log.c.outcome)
                )
                return [(r.action, r.object_id, r.outcome) for r in rows]
        finally:
            await storage.close()

    rows = asyncio.run(audited())
    assert ("part2.disclosed", None, "denied") in rows
    assert {(a, o) for a, o, outcome in rows if a == "part2.disclosed" and outcome == "success"} == {
        ("part2.disclosed", avery),
        ("part2.disclosed", blake),
    }
    assert [a for a, _, _ in rows].count("consent.added") == 2


def test_a_refused_disclosure_is_one_clear_line_and_exit_1(settings: Settings) -> None:
    _seed(settings)
    env = {**os.environ, "VIOP_DATA_DIR": str(settings.data_dir), "VIOP_KEY_FILE": str(settings.key_file)}
    env = {k: v for k, v in env.items() if k not in ("VIOP_CONFIG",)}
    done = subprocess.run(
        [sys.executable, "-m", "vIOP", "attendance", "export", "--recipient", COURT],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("vIOP: no active 42 CFR part 2 consent") and COURT not in line


async def test_a_shred_done_elsewhere_stops_disclosures_here_at_once(storage: Storage) -> None:
    """Another process still caches the client's data key (up to 60 s): its check refuses all the same."""
    world = World(storage)
    await world.add_host(START)
    client = await world.client(await world.room(START, None), START, "Avery Quinn", START + DAY)
    here = SqlConsentStore(storage.db, storage.keys)
    await here.add(client, COURT, PURPOSE, ATT, START + 90 * DAY, None, START)
    other_ring = await KeyRing.open(storage.db, storage.keys.source)  # a second process's key ring
    elsewhere = SqlConsentStore(storage.db, other_ring)
    await require_consent(elsewhere, [client], COURT, DataCategory.ATTENDANCE, START)  # its cache is warm
    await shred_client(storage.keys, client)
    with pytest.raises(ConsentRequired):
        await require_consent(elsewhere, [client], COURT, DataCategory.ATTENDANCE, START)


async def test_a_fhir_disclosure_is_refused_without_consent_and_labelled_part_2_with_it(api: Api) -> None:
    """Issue 16: the FHIR export goes through the same consent check; a disclosed Bundle carries the 42 CFR
    part 2 security labels on every Encounter and the notice as a header."""
    _dr, room, avery, blake = await _clinic(api)
    admin = await api.user(Role.ADMIN)
    disclosure = {"room_id": room, "recipient": COURT, "format": "fhir"}
    await _consent(api, admin, avery)
    assert_error(
        await api.http.get(ATTENDANCE, params=disclosure, headers=admin.headers), 403, "consent_required"
    )
    await _consent(api, admin, blake)
    allowed = await api.http.get(ATTENDANCE, params=disclosure, headers=admin.headers)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["content-type"] == "application/fhir+json"
    assert allowed.headers["x-redisclosure-notice"] == REDISCLOSURE_NOTICE
    bundle = Bundle.model_validate_json(allowed.text)
    labels = {"42CFRPart2", "NORDSCLCD"}
    assert {c.code for c in (bundle.meta.security if bundle.meta else None) or []} == labels
    encounters = [e.resource for e in bundle.entry or [] if isinstance(e.resource, Encounter)]
    assert len(encounters) == 2
    assert all({c.code for c in (e.meta.security if e.meta else None) or []} == labels for e in encounters)
    assert "Avery" not in allowed.text and "Blake" not in allowed.text  # ids only, even in a disclosure
