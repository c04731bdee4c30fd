"""Invite links: creation rules and permissions, expiry, max uses, revocation, binding to room and client."""

from __future__ import annotations

import pytest

from tests.auth.support import ManualClock
from tests.auth.twins import MemoryInviteStore, MemoryRoomDirectory
from vIOP.auth.invites import (
    InviteAlreadyUsed,
    InviteFailure,
    InviteRejected,
    Invites,
    check_display_name,
    looks_like_invite,
    token_hash,
)
from vIOP.auth.permissions import Principal, Role, RoomScope
from vIOP.errors import BadRequest, Forbidden, NotFound
from vIOP.ids import InviteId, RoomId

ROOM = RoomScope(RoomId("rm_x"), frozenset({"us_host"}))
OTHER_ROOM = RoomScope(RoomId("rm_y"), frozenset({"us_other"}))
HOST = Principal(Role.CLINICIAN, "us_host")
OTHER_HOST = Principal(Role.CLINICIAN, "us_other")
ADMIN = Principal(Role.ADMIN, "us_admin")


@pytest.fixture
def store() -> MemoryInviteStore:
    return MemoryInviteStore()


@pytest.fixture
def invites(store: MemoryInviteStore, clock: ManualClock) -> Invites:
    return Invites(store, MemoryRoomDirectory(ROOM, OTHER_ROOM), clock=clock)


async def rejected(invites: Invites, token: str, *, consume: bool = False) -> InviteFailure:
    with pytest.raises(InviteRejected) as caught:
        await (invites.consume(token) if consume else invites.authenticate(token))
    assert caught.value.http_status == 401
    assert caught.value.message == "the invite link is invalid, expired or revoked"
    return caught.value.reason


async def test_create_binds_room_and_client(
    invites: Invites, store: MemoryInviteStore, clock: ManualClock
) -> None:
    created = await invites.create(HOST, ROOM, "  Jordan  ")
    invite, token = created.invite, created.token
    assert looks_like_invite(token) and len(token) == 5 + 43  # 256 random bits
    assert invite.room_id == ROOM.room_id and invite.created_by == "us_host"
    assert invite.client_id.startswith("cl_") and invite.id.startswith("iv_")
    assert invite.expires_at == clock() + 12 * 3600 and invite.max_uses is None  # issue 11: was 24 h
    assert await store.by_token_hash(token_hash(token)) == invite
    assert await store.client_display_name(invite.client_id) == "Jordan"
    # The same client re-using their link is the same participant, bound to the same room.
    for _ in range(3):
        assert (await invites.consume(token)).principal == Principal(
            Role.CLIENT, invite.client_id, ROOM.room_id
        )


async def test_every_invite_is_a_new_secret(invites: Invites) -> None:
    tokens = {(await invites.create(HOST, ROOM, f"client {n}")).token for n in range(50)}
    assert len(tokens) == 50


@pytest.mark.parametrize(
    ("who", "room"),
    [
        (OTHER_HOST, ROOM),  # another clinician's room
        (Principal(Role.STAFF, "us_staff"), ROOM),
        (ADMIN, ROOM),
        (Principal(Role.CLIENT, "cl_1", RoomId("rm_x")), ROOM),
    ],
)
async def test_create_forbidden(
    invites: Invites, store: MemoryInviteStore, who: Principal, room: RoomScope
) -> None:
    with pytest.raises(Forbidden):
        await invites.create(who, room, "Jordan")
    assert store._by_id == {}


@pytest.mark.parametrize(
    ("name", "expires_in", "max_uses"),
    [("", None, None), ("   ", None, None), ("x" * 65, None, None), ("Jo\x00rdan", None, None),
     ("Jo\u202erdan", None, None), ("Jordan", 59, None), ("Jordan", 31 * 24 * 3600, None),
     ("Jordan", None, 0), ("Jordan", None, 1001)],
)  # fmt: skip
async def test_create_refuses_bad_input(
    invites: Invites, store: MemoryInviteStore, name: str, expires_in: int | None, max_uses: int | None
) -> None:
    with pytest.raises(BadRequest):
        await invites.create(HOST, ROOM, name, expires_in, max_uses)
    assert store._by_id == {}


def test_display_names_keep_letters_of_every_script() -> None:
    assert check_display_name("José Ñúñez") == "José Ñúñez"
    assert check_display_name("李小龍") == "李小龍"
    assert check_display_name("x" * 64) == "x" * 64


async def test_expiry(invites: Invites, clock: ManualClock) -> None:
    token = (await invites.create(HOST, ROOM, "Jordan", expires_in=600)).token
    clock.advance(599)
    await invites.authenticate(token)
    clock.advance(1)
    assert await rejected(invites, token) is InviteFailure.EXPIRED
    assert await rejected(invites, token, consume=True) is InviteFailure.EXPIRED


async def test_max_uses(invites: Invites) -> None:
    token = (await invites.create(HOST, ROOM, "Jordan", max_uses=2)).token
    await invites.authenticate(token)  # looking does not count
    await invites.consume(token)
    await invites.consume(token)
    assert await rejected(invites, token, consume=True) is InviteFailure.EXHAUSTED
    assert await rejected(invites, token) is InviteFailure.EXHAUSTED


async def test_revocation_by_host_and_admin(invites: Invites) -> None:
    first = await invites.create(HOST, ROOM, "Jordan")
    second = await invites.create(HOST, ROOM, "Sam")
    with pytest.raises(Forbidden):
        await invites.revoke(OTHER_HOST, first.invite.id)
    with pytest.raises(Forbidden):
        await invites.revoke(Principal(Role.STAFF, "us_staff"), first.invite.id)
    await invites.authenticate(first.token)  # refused revocations changed nothing
    revoked = await invites.revoke(HOST, first.invite.id)
    assert revoked.revoked_at is not None
    assert await rejected(invites, first.token) is InviteFailure.REVOKED
    await invites.revoke(ADMIN, second.invite.id)
    assert await rejected(invites, second.token, consume=True) is InviteFailure.REVOKED
    with pytest.raises(NotFound):
        await invites.revoke(HOST, InviteId("iv_unknown"))


@pytest.mark.parametrize(
    "token", ["", "vinv_", "vinv_short", "eyJhbGciOi.x.y", "vinv_" + "é" * 43, "vinv_" + "a" * 44]
)
async def test_malformed_tokens(invites: Invites, token: str) -> None:
    assert await rejected(invites, token) is InviteFailure.MALFORMED


async def test_unknown_token(invites: Invites) -> None:
    assert await rejected(invites, "vinv_" + "a" * 43) is InviteFailure.UNKNOWN


async def test_a_link_is_exchanged_once_for_a_device_credential(invites: Invites, clock: ManualClock) -> None:
    """Issue 11, finding 3: the link is spent by its exchange; the device credential stands in for it."""
    link = (await invites.create(HOST, ROOM, "Jordan")).token
    exchanged = await invites.exchange(link)
    device = exchanged.device_token
    assert device.startswith("vdev_") and looks_like_invite(device) and len(device) == len(link)
    assert (await invites.authenticate(device)).id == exchanged.invite.id
    assert (await invites.consume(device)).principal == exchanged.invite.principal
    for spent in (invites.exchange(link), invites.authenticate(link), invites.consume(link)):
        with pytest.raises(InviteAlreadyUsed) as refused:
            await spent
        assert refused.value.code == "invite_already_used" and refused.value.http_status == 401
    with pytest.raises(InviteRejected):
        await invites.exchange(device)  # a device credential is not a link
    clock.advance(12 * 3600)
    with pytest.raises(InviteRejected) as expired:
        await invites.authenticate(device)
    assert expired.value.reason is InviteFailure.EXPIRED
