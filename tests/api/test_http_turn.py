"""``GET /api/v1/turn-credentials`` over a real socket: coturn REST credentials no longer-lived than the
caller's sign-in, and a clear 404 when the server has no TURN secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx

from tests.api.support import Api, assert_error, bearer
from vIOP.auth.permissions import Role
from vIOP.ids import RoomId

TURN = "/api/v1/turn-credentials"
SECRET = "turn-shared-secret-0123456789"
TURN_URL = "turn:127.0.0.1:3478?transport=udp"


@asynccontextmanager
async def _turn_api(factory: Callable[..., Any], **settings: Any) -> AsyncIterator[Api]:
    overrides = {"turn_secret": SECRET, "ice_servers": f"stun:127.0.0.1:3478,{TURN_URL}", **settings}
    async with factory(**overrides) as live, httpx.AsyncClient(base_url=live.base_url) as http:
        yield Api(live, http)


def _check_credentials(body: dict[str, Any], subject: str, max_ttl: int) -> None:
    assert body["urls"] == [TURN_URL]
    expiry, _, user = body["username"].partition(":")
    assert user == subject
    expected = base64.b64encode(hmac.new(SECRET.encode(), body["username"].encode(), hashlib.sha1).digest())
    assert body["credential"] == expected.decode()
    assert 0 < body["ttl"] <= max_ttl
    assert abs(int(expiry) - (time.time() + body["ttl"])) < 60
    assert datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp() == int(expiry)


async def test_a_clinicians_credentials_end_with_their_sign_in(
    live_server_factory: Callable[..., Any],
) -> None:
    async with _turn_api(live_server_factory, token_lifetime_seconds=3600) as api:
        dr = await api.user(Role.CLINICIAN)
        room = await api.create_room(dr)
        response = await api.http.get(f"{TURN}?room_id={room['id']}", headers=dr.headers)
        assert response.status_code == 200, response.text
        _check_credentials(response.json(), dr.id, 3600)  # the TURN TTL (4 h) is cut to the token's 1 h


async def test_a_clients_credentials_end_with_their_invite(live_server_factory: Callable[..., Any]) -> None:
    async with _turn_api(live_server_factory) as api:
        dr = await api.user(Role.CLINICIAN)
        room_x, room_y = await api.create_room(dr), await api.create_room(dr)
        invite = await api.create_invite(dr, room_x["id"], expires_in=600)
        client = bearer(invite["invite_token"])
        response = await api.http.get(TURN, headers=client)  # the room comes from the invite
        assert response.status_code == 200, response.text
        _check_credentials(response.json(), invite["client_id"], 600)
        assert_error(await api.http.get(f"{TURN}?room_id={room_y['id']}", headers=client), 403, "forbidden")


async def test_turn_credential_refusals(live_server_factory: Callable[..., Any]) -> None:
    async with _turn_api(live_server_factory) as api:
        dr_a, dr_b = await api.user(Role.CLINICIAN), await api.user(Role.CLINICIAN)
        staff, admin = await api.user(Role.STAFF), await api.user(Role.ADMIN)
        room = await api.create_room(dr_a)
        query = f"{TURN}?room_id={room['id']}"
        assert_error(await api.http.get(query), 401, "unauthenticated")
        assert_error(await api.http.get(TURN, headers=dr_a.headers), 400, "bad_request")
        assert_error(await api.http.get(query, headers=dr_b.headers), 403, "forbidden")
        assert_error(await api.http.get(query, headers=staff.headers), 403, "forbidden")
        assert_error(await api.http.get(query, headers=admin.headers), 403, "forbidden")
        assert_error(await api.http.get(f"{TURN}?room_id=rm_nope", headers=dr_a.headers), 404, "not_found")
        await api.services.rooms.end(RoomId(room["id"]), by=None)
        assert_error(await api.http.get(query, headers=dr_a.headers), 409, "conflict")


async def test_without_a_turn_secret_the_answer_is_a_clear_404(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    room = await api.create_room(dr)
    response = await api.http.get(f"{TURN}?room_id={room['id']}", headers=dr.headers)
    assert "TURN is not configured" in assert_error(response, 404, "not_found")["message"]
