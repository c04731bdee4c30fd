"""Break-glass access: the rule with an injected clock, the store on real SQL, and the whole flow over HTTP
(reason required, time-boxed, audited, listed until a second admin signs it off)."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.api.support import Api, User, assert_error
from tests.auth.support import CHEAP_ARGON2
from tests.compliance.support import START, stay
from vIOP.auth.passwords import PasswordHasher
from vIOP.auth.permissions import Role
from vIOP.cli.storage import add_parsers as add_storage_parsers
from vIOP.cli.storage import run as run_storage
from vIOP.cli.users import open_account_admin
from vIOP.compliance.break_glass import (
    HEADER,
    BreakGlassRefused,
    Grant,
    SelfSignOff,
    check_reason,
    check_sign_off,
    check_use,
)
from vIOP.errors import BadRequest, ConfigError, Conflict, NotFound
from vIOP.rooms.clock import ManualClock
from vIOP.settings import Settings
from vIOP.storage.bootstrap import Storage, open_storage
from vIOP.storage.break_glass_sql import SqlBreakGlassStore
from vIOP.storage.schema import break_glass_grants

REASON = "Covering for the host: client called the crisis line about tonight's group"
ATTENDANCE = "/api/v1/attendance"


# --- the rule ---------------------------------------------------------------------------------------


def test_a_reason_is_a_real_sentence() -> None:
    assert check_reason("  " + REASON + "  ") == REASON
    for bad in ("", "because", "x" * 501, "emergency\x00access now"):
        with pytest.raises(BadRequest):
            check_reason(bad)


def test_a_grant_works_for_its_opener_in_its_room_until_it_expires() -> None:
    clock = ManualClock(START)
    grant = Grant("bg_1", "us_admin", "admin", "rm_a", REASON, clock(), clock() + 3600)
    check_use(grant, "us_admin", "rm_a", clock())
    clock.advance(3599)
    check_use(grant, "us_admin", "rm_a", clock())
    clock.advance(1)
    with pytest.raises(BreakGlassRefused, match="expired"):
        check_use(grant, "us_admin", "rm_a", clock())
    with pytest.raises(BreakGlassRefused, match="someone else"):
        check_use(grant, "us_other", "rm_a", START)
    for room in ("rm_b", None):
        with pytest.raises(BreakGlassRefused, match="another room"):
            check_use(grant, "us_admin", room, START)


def test_the_opener_never_signs_off_their_own_access() -> None:
    grant = Grant("bg_1", "us_admin", "admin", "rm_a", REASON, START, START + 60)
    with pytest.raises(SelfSignOff):
        check_sign_off(grant, "us_admin")
    check_sign_off(grant, "us_second_admin")


# --- the store --------------------------------------------------------------------------------------


async def _admin_rows(storage: Storage, *ids: str) -> None:
    from tests.compliance.support import World

    for user_id in ids:
        world = World(storage)
        world.host = user_id  # type: ignore[assignment]
        await world.add_host(START)


async def test_store_keeps_the_reason_sealed_and_lists_until_signed_off(storage: Storage) -> None:
    await _admin_rows(storage, "us_one", "us_two")
    clock = ManualClock(START)
    store = SqlBreakGlassStore(storage.db, storage.keys)
    grant = await store.open("us_one", "admin", "rm_a", REASON, clock(), 3600)
    assert (grant.created_at, grant.expires_at) == (START, START + 3600)
    async with storage.db.read() as conn:
        sealed = (await conn.execute(select(break_glass_grants.c.reason))).scalar_one()
    assert REASON.encode() not in sealed and b"crisis" not in sealed
    stored = await store.get(grant.id)
    assert (stored.reason, stored.room_id, stored.expires_at) == (REASON, "rm_a", START + 3600)
    assert [g.id for g in await store.pending_review()] == [grant.id]
    clock.advance(7200)
    signed = await store.sign_off(grant.id, "us_two", clock())
    assert (signed.signed_off_by, signed.signed_off_at) == ("us_two", START + 7200)
    assert await store.pending_review() == []
    with pytest.raises(Conflict):
        await store.sign_off(grant.id, "us_two", clock())
    with pytest.raises(NotFound):
        await store.sign_off("bg_unknown", "us_two", clock())


# --- over HTTP --------------------------------------------------------------------------------------


async def _clinic(api: Api) -> tuple[User, User, str, str, str]:
    dr_a, dr_b = await api.user(Role.CLINICIAN), await api.user(Role.CLINICIAN)
    room_a, room_b = (await api.create_room(dr_a))["id"], (await api.create_room(dr_b))["id"]
    blake = (await api.create_invite(dr_b, room_b, display_name="Blake Hollis"))["client_id"]
    await stay(api, room_b, blake, START + 36_000, START + 43_200)
    return dr_a, dr_b, room_a, room_b, blake


async def _open(api: Api, user: User, room_id: str, reason: str = REASON) -> str:
    response = await api.http.post(
        "/api/v1/break-glass", json={"room_id": room_id, "reason": reason}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert "reason" not in body and body["room_id"] == room_id and body["signed_off_by"] is None
    grant_id: str = body["id"]
    return grant_id


def _names(report: dict[str, object]) -> set[object]:
    days = report["days"]
    assert isinstance(days, list)
    return {d["display_name"] for d in days}


async def test_an_admin_names_clients_only_through_break_glass_and_a_second_admin_signs_it_off(
    api: Api,
) -> None:
    _dr_a, _dr_b, _room_a, room_b, blake = await _clinic(api)
    admin, second = await api.user(Role.ADMIN), await api.user(Role.ADMIN)
    normal = await api.http.get(ATTENDANCE, params={"room_id": room_b}, headers=admin.headers)
    assert normal.status_code == 200, normal.text
    assert _names(normal.json()) == {None}  # the admin's normal scope: ids, minutes, flags, no names
    assert {d["subject"] for d in normal.json()["days"]} == {blake}

    grant_id = await _open(api, admin, room_b)
    opened = await api.http.get(
        ATTENDANCE, params={"room_id": room_b}, headers={**admin.headers, HEADER: grant_id}
    )
    assert opened.status_code == 200, opened.text
    assert _names(opened.json()) == {"Blake Hollis"}
    # the grant is for one room: the whole-clinic report is refused with it
    everywhere = await api.http.get(ATTENDANCE, headers={**admin.headers, HEADER: grant_id})
    assert_error(everywhere, 403, "break_glass_refused")
    # ...and it is the opener's: another admin cannot ride on it
    borrowed = await api.http.get(
        ATTENDANCE, params={"room_id": room_b}, headers={**second.headers, HEADER: grant_id}
    )
    assert_error(borrowed, 403, "break_glass_refused")

    review = await api.http.get("/api/v1/break-glass", headers=second.headers)
    assert review.status_code == 200, review.text
    [listed] = review.json()["grants"]
    assert (listed["id"], listed["actor_id"], listed["reason"]) == (grant_id, admin.id, REASON)
    sign_off = f"/api/v1/break-glass/{grant_id}/sign-off"
    assert_error(await api.http.post(sign_off, headers=admin.headers), 403, "self_sign_off")
    signed = await api.http.post(sign_off, headers=second.headers)
    assert signed.status_code == 200, signed.text
    assert signed.json()["signed_off_by"] == second.id
    assert (await api.http.get("/api/v1/break-glass", headers=second.headers)).json()["grants"] == []
    assert_error(await api.http.post(sign_off, headers=second.headers), 409, "conflict")

    opened_rows = await api.audit_rows("access.break_glass")
    assert [(r["actor_id"], r["object_id"], r["outcome"]) for r in opened_rows] == [
        (admin.id, grant_id, "success")
    ]
    used = [(r["actor_id"], r["outcome"]) for r in await api.audit_rows("access.break_glass_used")]
    assert used == [(admin.id, "success"), (admin.id, "denied"), (second.id, "denied")]
    signed_rows = await api.audit_rows("access.break_glass_signed_off")
    assert [(r["actor_id"], r["object_id"]) for r in signed_rows] == [(second.id, grant_id)]


async def test_a_clinician_covers_a_room_they_do_not_host_only_with_a_grant(api: Api) -> None:
    dr_a, _dr_b, room_a, room_b, _blake = await _clinic(api)
    assert_error(
        await api.http.get(ATTENDANCE, params={"room_id": room_b}, headers=dr_a.headers), 403, "forbidden"
    )
    grant_id = await _open(api, dr_a, room_b)
    covered = await api.http.get(
        ATTENDANCE, params={"room_id": room_b}, headers={**dr_a.headers, HEADER: grant_id}
    )
    assert covered.status_code == 200, covered.text
    assert _names(covered.json()) == {"Blake Hollis"}
    # a grant for room B opens room B only
    other = await api.http.get(
        ATTENDANCE, params={"room_id": room_a}, headers={**dr_a.headers, HEADER: grant_id}
    )
    assert_error(other, 403, "break_glass_refused")
    unknown = await api.http.get(
        ATTENDANCE, params={"room_id": room_b}, headers={**dr_a.headers, HEADER: "bg_nosuchgrant"}
    )
    assert_error(unknown, 403, "break_glass_refused")


async def test_an_expired_grant_opens_nothing(api: Api) -> None:
    _dr_a, _dr_b, _room_a, room_b, _blake = await _clinic(api)
    admin = await api.user(Role.ADMIN)
    ttl = api.services.settings.break_glass_minutes * 60.0
    # opened through the server's own store at a time the test injects: two hours ago, 60 minutes long
    store = SqlBreakGlassStore(api.services.storage.db, api.services.storage.keys)
    stale = await store.open(admin.id, "admin", room_b, REASON, time.time() - 7200, ttl)
    response = await api.http.get(
        ATTENDANCE, params={"room_id": room_b}, headers={**admin.headers, HEADER: stale.id}
    )
    error = assert_error(response, 403, "break_glass_refused")
    assert "expired" in error["message"]


async def test_opening_needs_a_reason_a_room_and_a_role_that_may(api: Api) -> None:
    _dr_a, _dr_b, _room_a, room_b, _blake = await _clinic(api)
    admin, staff = await api.user(Role.ADMIN), await api.user(Role.STAFF)
    url = "/api/v1/break-glass"
    assert_error(
        await api.http.post(url, json={"room_id": room_b}, headers=admin.headers), 400, "bad_request"
    )
    short = {"room_id": room_b, "reason": "because"}
    assert_error(await api.http.post(url, json=short, headers=admin.headers), 400, "bad_request")
    unknown = {"room_id": "rm_nope", "reason": REASON}
    assert_error(await api.http.post(url, json=unknown, headers=admin.headers), 404, "not_found")
    good = {"room_id": room_b, "reason": REASON}
    assert_error(await api.http.post(url, json=good, headers=staff.headers), 403, "forbidden")
    assert_error(await api.http.post(url, json=good), 401, "unauthenticated")
    assert_error(await api.http.get(url, headers=staff.headers), 403, "forbidden")
    assert (
        await api.audit_rows("access.break_glass", "success") == []
    )  # nothing was opened (the 403 is a denied row)


# --- from the command line: `audit review`, `audit sign-off` ----------------------------------------


def test_audit_review_lists_open_accesses_and_a_second_admin_signs_off(
    data_dir: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_storage_parsers(parser.add_subparsers(dest="command", required=True))

    def cli(settings: Settings, *argv: str) -> int:
        return run_storage(parser.parse_args(list(argv)), settings)

    assert cli(Settings(data_dir=data_dir), "keys", "init", str(key_file)) == 0
    settings = Settings(data_dir=data_dir, key_file=key_file)

    async def seed() -> str:
        async with open_account_admin(settings, PasswordHasher(CHEAP_ARGON2)) as accounts:
            opener = (
                await accounts.create(Role.ADMIN, "admin.one", "correct horse battery", with_totp=False)
            ).account
            await accounts.create(Role.ADMIN, "admin.two", "correct horse battery", with_totp=False)
            await accounts.create(Role.STAFF, "staff.one", "correct horse battery", with_totp=False)
        storage = await open_storage(settings)
        try:
            store = SqlBreakGlassStore(storage.db, storage.keys)
            return (await store.open(opener.id, "admin", "rm_a", REASON, START, 3600)).id
        finally:
            await storage.close()

    grant_id = asyncio.run(seed())
    capsys.readouterr()
    assert cli(settings, "audit", "review") == 0
    out = capsys.readouterr().out
    assert grant_id in out and REASON in out and "1 break-glass access(es) waiting" in out
    with pytest.raises(SelfSignOff):
        cli(settings, "audit", "sign-off", grant_id, "--by", "admin.one")
    with pytest.raises(ConfigError):
        cli(settings, "audit", "sign-off", grant_id, "--by", "staff.one")
    assert cli(settings, "audit", "sign-off", grant_id, "--by", "admin.two") == 0
    assert cli(settings, "audit", "review") == 0
    assert "0 break-glass access(es) waiting" in capsys.readouterr().out
    assert cli(settings, "audit", "verify") == 0
