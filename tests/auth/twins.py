"""In-memory twins of the auth stores, for fast service tests.

The same contract tests (``test_store_contracts.py``) run against these and the SQL stores on real SQLite.
"""

from __future__ import annotations

from dataclasses import replace

from vIOP.auth.accounts import Account
from vIOP.auth.invites import Invite
from vIOP.auth.permissions import RoomScope
from vIOP.errors import Conflict, NotFound
from vIOP.ids import ClientId, InviteId, RoomId, UserId


class MemoryAccountStore:
    def __init__(self) -> None:
        self._by_id: dict[UserId, Account] = {}
        self._index: dict[bytes, UserId] = {}
        self.logins: dict[UserId, float] = {}

    async def add(self, account: Account, username_index: bytes, now: float) -> None:
        if username_index in self._index or account.id in self._by_id:
            raise Conflict("that username is taken")
        self._by_id[account.id] = account
        self._index[username_index] = account.id

    async def by_username_index(self, username_index: bytes) -> Account | None:
        user_id = self._index.get(username_index)
        return self._by_id.get(user_id) if user_id is not None else None

    async def get(self, user_id: UserId) -> Account | None:
        return self._by_id.get(user_id)

    async def set_password_hash(self, user_id: UserId, password_hash: str, now: float) -> None:
        self._by_id[user_id] = replace(self._existing(user_id), password_hash=password_hash)

    async def set_disabled(self, user_id: UserId, disabled: bool, now: float) -> None:
        self._by_id[user_id] = replace(self._existing(user_id), disabled=disabled)

    async def set_totp_secret(self, user_id: UserId, secret: bytes | None, now: float) -> None:
        self._by_id[user_id] = replace(self._existing(user_id), totp_secret=secret)

    async def set_display_name(self, user_id: UserId, display_name: str, now: float) -> None:
        self._by_id[user_id] = replace(self._existing(user_id), display_name=display_name)

    async def record_login(self, user_id: UserId, now: float) -> None:
        self._existing(user_id)
        self.logins[user_id] = now

    def _existing(self, user_id: UserId) -> Account:
        account = self._by_id.get(user_id)
        if account is None:
            raise NotFound("no such account")
        return account


class MemoryInviteStore:
    def __init__(self) -> None:
        self._by_id: dict[InviteId, Invite] = {}
        self._by_hash: dict[bytes, InviteId] = {}
        self._names: dict[ClientId, str] = {}
        self._by_device: dict[bytes, InviteId] = {}

    async def add(self, invite: Invite, token_hash: bytes, display_name: str | None) -> None:
        if token_hash in self._by_hash or invite.id in self._by_id:
            raise Conflict("duplicate invite")
        if (display_name is None) != (invite.client_id in self._names):
            raise Conflict("a new client needs a name; an existing one keeps theirs")
        self._by_id[invite.id] = invite
        self._by_hash[token_hash] = invite.id
        if display_name is not None:
            self._names[invite.client_id] = display_name

    async def by_token_hash(self, token_hash: bytes) -> Invite | None:
        invite_id = self._by_hash.get(token_hash)
        return self._by_id.get(invite_id) if invite_id is not None else None

    async def get(self, invite_id: InviteId) -> Invite | None:
        return self._by_id.get(invite_id)

    async def by_device_hash(self, token_hash: bytes) -> Invite | None:
        invite_id = self._by_device.get(token_hash)
        return self._by_id.get(invite_id) if invite_id is not None else None

    async def exchange(self, invite_id: InviteId, device_hash: bytes, now: float) -> bool:
        invite = self._by_id[invite_id]
        if invite.exchanged_at is not None or device_hash in self._by_device:
            return False
        self._by_id[invite_id] = replace(invite, exchanged_at=now)
        self._by_device[device_hash] = invite_id
        return True

    async def consume(self, invite_id: InviteId, now: float) -> bool:
        invite = self._by_id.get(invite_id)
        if invite is None or invite.failure_at(now) is not None:
            return False
        self._by_id[invite_id] = replace(invite, uses=invite.uses + 1)
        return True

    async def revoke(self, invite_id: InviteId, now: float) -> None:
        invite = self._by_id.get(invite_id)
        if invite is None:
            raise NotFound("no such invite")
        if invite.revoked_at is None:
            self._by_id[invite_id] = replace(invite, revoked_at=now)

    async def revoke_for_client(self, client_id: ClientId, now: float) -> list[RoomId]:
        found = [i for i in self._by_id.values() if i.client_id == client_id and i.revoked_at is None]
        for invite in found:
            self._by_id[invite.id] = replace(invite, revoked_at=now)
        return sorted({invite.room_id for invite in found})

    async def client_display_name(self, client_id: ClientId) -> str:
        name = self._names.get(client_id)
        if name is None:
            raise NotFound("no such client")
        return name


class MemoryRoomDirectory:
    def __init__(self, *rooms: RoomScope) -> None:
        self.rooms = {room.room_id: room for room in rooms}

    async def room_scope(self, room_id: RoomId) -> RoomScope:
        room = self.rooms.get(room_id)
        if room is None:
            raise NotFound("no such room")
        return room
