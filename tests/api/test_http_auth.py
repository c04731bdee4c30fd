"""Sign-in, sign-out and bearer credentials over a real socket (docs/API.md "Authentication")."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.support import PASSWORD, Api, assert_error, bearer
from vIOP.auth.permissions import Role
from vIOP.auth.tokens import SESSION_KEY_PURPOSE, AccessTokens, TokenKeys, TokenPolicy
from vIOP.storage.redis_auth import RedisSessionStore

WRONG_SIGN_IN = "the username, password or code is incorrect"


async def test_login_returns_a_working_token_and_the_account(api: Api) -> None:
    account = await api.account(Role.CLINICIAN, "dr.lee")
    response = await api.http.post("/api/v1/auth/login", json={"username": "DR.LEE", "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["user"] == {"id": account.id, "role": "clinician"}
    assert body["expires_in"] == api.live.settings.token_lifetime_seconds
    assert body["idle_timeout"] == api.live.settings.token_idle_seconds
    listed = await api.http.get("/api/v1/rooms", headers=bearer(body["access_token"]))
    assert listed.status_code == 200
    assert listed.json() == {"rooms": []}
    success = [r for r in await api.audit_rows("auth.login") if r["outcome"] == "success"]
    assert [r["actor_id"] for r in success] == [account.id]


async def test_wrong_password_and_unknown_user_get_the_same_401(api: Api) -> None:
    await api.account(Role.STAFF, "front.desk")
    wrong = await api.http.post(
        "/api/v1/auth/login", json={"username": "front.desk", "password": "nope nope"}
    )
    unknown = await api.http.post("/api/v1/auth/login", json={"username": "nobody.here", "password": "x"})
    assert assert_error(wrong, 401, "unauthenticated")["message"] == WRONG_SIGN_IN
    assert assert_error(unknown, 401, "unauthenticated")["message"] == WRONG_SIGN_IN
    assert "access_token" not in wrong.text


async def test_lockout_after_the_configured_failures_answers_429_with_retry_after(
    live_server_factory: Callable[..., Any],
) -> None:
    async with (
        live_server_factory(login_max_failures=3) as live,
        httpx.AsyncClient(base_url=live.base_url) as http,
    ):
        api = Api(live, http)
        await api.account(Role.CLINICIAN, "dr.lock")
        bad = {"username": "dr.lock", "password": "guess guess"}
        for _ in range(3):  # the first failures are free of delay; the third locks the account
            assert_error(await http.post("/api/v1/auth/login", json=bad), 401, "unauthenticated")
        locked = await http.post("/api/v1/auth/login", json={"username": "dr.lock", "password": PASSWORD})
        error = assert_error(locked, 429, "rate_limited")
        retry_after = int(locked.headers["retry-after"])
        assert 60 < retry_after <= 15 * 60
        assert str(retry_after) in error["message"]
        assert len(await api.audit_rows("auth.account_locked")) == 1


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        (b'{"username": "a", "password": "b"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b'{"username": "a", "password": "b"}', {}, 415, "unsupported_media_type"),
        (b'{"username": "a", "password":', {"Content-Type": "application/json"}, 400, "bad_request"),
        (b'["username", "password"]', {"Content-Type": "application/json"}, 400, "bad_request"),
        (b'{"username": "a"}', {"Content-Type": "application/json"}, 400, "bad_request"),
        (b'{"username": 1, "password": "b"}', {"Content-Type": "application/json"}, 400, "bad_request"),
        (b'\xff\xfe{"username"}', {"Content-Type": "application/json; charset=utf-8"}, 400, "bad_request"),
        (b'{"username": "a", "password": "b"}', {"Content-Type": "application/json; charset=latin-1"}, 415,
         "unsupported_media_type"),
    ],
)  # fmt: skip
async def test_login_body_errors_are_typed(
    api: Api, content: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    assert_error(await api.http.post("/api/v1/auth/login", content=content, headers=headers), status, code)


async def test_unknown_fields_and_bad_values_are_refused_without_echoing_them(api: Api) -> None:
    canary = "CanaryField9x"
    body = {"username": "a", "password": "b", canary: 1}
    error = assert_error(await api.http.post("/api/v1/auth/login", json=body), 400, "bad_request")
    assert canary not in error["message"]
    user = await api.user(Role.CLINICIAN)
    room = {"kind": canary, "title": "t"}
    error = assert_error(
        await api.http.post("/api/v1/rooms", json=room, headers=user.headers), 400, "bad_request"
    )
    assert canary not in error["message"]
    assert "$.kind" in error["message"]


async def test_body_over_16_kib_is_413(api: Api) -> None:
    body = json.dumps({"username": "a", "password": "p" * (17 * 1024)}).encode()
    response = await api.http.post(
        "/api/v1/auth/login", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


async def test_logout_revokes_the_token_and_closes_the_users_sockets(api: Api) -> None:
    user = await api.user(Role.CLINICIAN)
    closed: list[str] = []

    async def close_user_sockets(user_id: str) -> None:
        closed.append(user_id)

    api.services.live.close_user_sockets = close_user_sockets
    other = await api.services.tokens.issue(user.account.id, Role.CLINICIAN)  # another sign-in
    response = await api.http.post("/api/v1/auth/logout", headers=user.headers)
    assert response.status_code == 204
    assert closed == [user.id]
    again = await api.http.get("/api/v1/rooms", headers=user.headers)
    assert (
        assert_error(again, 401, "unauthenticated")["message"] == "the session was signed out; sign in again"
    )
    assert (await api.http.get("/api/v1/rooms", headers=bearer(other.token))).status_code == 200
    assert [r["actor_id"] for r in await api.audit_rows("auth.logout")] == [user.id]


async def test_logout_accepts_an_empty_object_and_refuses_other_bodies(api: Api) -> None:
    user = await api.user(Role.STAFF)
    wrong = await api.http.post("/api/v1/auth/logout", json={"everywhere": True}, headers=user.headers)
    assert_error(wrong, 400, "bad_request")
    assert (await api.http.post("/api/v1/auth/logout", json={}, headers=user.headers)).status_code == 204
    assert_error(await api.http.post("/api/v1/auth/logout", headers=user.headers), 401, "unauthenticated")


async def test_logout_needs_an_account_token(api: Api) -> None:
    assert_error(await api.http.post("/api/v1/auth/logout"), 401, "unauthenticated")
    clinician = await api.user(Role.CLINICIAN)
    room = await api.create_room(clinician)
    invite = await api.create_invite(clinician, room["id"])
    client = await api.http.post("/api/v1/auth/logout", headers=bearer(invite["invite_token"]))
    assert_error(client, 403, "forbidden")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _hostile_tokens(api: Api) -> dict[str, str]:
    user = await api.user(Role.CLINICIAN)
    header, payload, signature = user.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    ring = api.services.storage.keys
    keys = TokenKeys("v1", ring.derive_key("access-token/ed25519/v1"))
    lifetime = api.live.settings.token_lifetime_seconds
    past = AccessTokens(
        keys,
        RedisSessionStore(api.services.redis),
        TokenPolicy(lifetime_seconds=lifetime),
        clock=lambda: 1e9,
        session_key=api.services.storage.keys.derive_key(SESSION_KEY_PURPOSE),
    )
    expired = await past.issue(user.account.id, Role.CLINICIAN)
    return {
        "malformed": "not-a-token",
        "truncated": user.token[: len(user.token) // 2],
        "tampered signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg HS256": f"{_b64({'alg': 'HS256', 'kid': 'v1'})}.{payload}.{signature}",
        "other audience": f"{header}.{_b64({**claims, 'aud': 'elsewhere'})}.{signature}",
        "expired": expired.token,
        "unknown invite": "vinv_" + "A" * 43,
        "short invite": "vinv_abc",
        "with spaces": "a b",
    }


async def test_hostile_credentials_are_401_never_500_and_audited(api: Api) -> None:
    tokens = await _hostile_tokens(api)
    for name, token in tokens.items():
        response = await api.http.get("/api/v1/rooms", headers=bearer(token))
        assert response.status_code == 401, name
        assert_error(response, 401, "unauthenticated")
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "token"):
        assert_error(
            await api.http.get("/api/v1/rooms", headers={"Authorization": header}), 401, "unauthenticated"
        )
    rejected = await api.audit_rows("auth.token_rejected")
    assert len(rejected) == len(tokens) + 4
    assert {r["outcome"] for r in rejected} == {"denied"}


async def test_a_disabled_accounts_token_stops_working_at_once(api: Api) -> None:
    user = await api.user(Role.STAFF)
    assert (await api.http.get("/api/v1/presence", headers=user.headers)).status_code == 200
    await api.admin().set_disabled(user.account.username, True)
    assert_error(await api.http.get("/api/v1/presence", headers=user.headers), 401, "unauthenticated")
