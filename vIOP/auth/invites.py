"""Invite links: how clients (who have no account) prove who they are and which room they may knock on.

An invite token is ``vinv_`` + 256 random bits, shown once to the clinician who creates it (inside the
join URL's fragment, which browsers never send to servers or in ``Referer``). Only ``SHA-256(token)`` is
stored. Each invite is bound to one room and one client id. Invites expire (12 hours unless the clinician
asks otherwise), may have a maximum number of uses (each signaling ticket is one use) and can be revoked.
The token carries no PHI; the client's display name is stored encrypted by the :class:`InviteStore`.

Browsers keep every URL they navigate to in their history, fragment included, whatever a script does
afterwards (measured on Chromium: fragment, query, path and every server-redirect source), so the link must
be worth little once used: the join page exchanges it at once, one time only, for a device credential
(``vdev_`` + 256 random bits, held in that tab's ``sessionStorage``) that stands in for it from then on.
After the exchange the link is refused everywhere with ``invite_already_used`` ("ask your clinician").
"""

from __future__ import annotations

import hashlib
import secrets
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from vIOP.auth.permissions import Action, Principal, Role, RoomDirectory, RoomScope, authorize
from vIOP.errors import BadRequest, NotFound, Unauthenticated
from vIOP.ids import ClientId, InviteId, RoomId, UserId, new_client_id, new_invite_id
from vIOP.rooms.limits import MAX_DISPLAY_NAME_CHARS

INVITE_PREFIX: Final = "vinv_"
DEVICE_PREFIX: Final = "vdev_"  # the credential an invite link was exchanged for (same length)
_TOKEN_CHARS: Final = len(INVITE_PREFIX) + 43  # token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class InvitePolicy:
    default_expires_in: int = 12 * 3600  # a morning's link still works for the evening group
    max_expires_in: int = 30 * 24 * 3600
    min_expires_in: int = 60
    max_uses_limit: int = 1000


class InviteFailure(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    EXHAUSTED = "exhausted"
    ALREADY_USED = "already_used"  # the link was exchanged for a device credential (on another device?)


class InviteRejected(Unauthenticated):
    def __init__(self, reason: InviteFailure) -> None:
        super().__init__("the invite link is invalid, expired or revoked")
        self.reason = reason


class InviteAlreadyUsed(InviteRejected):
    """The link was already opened (exchanged) once: only the device that did so holds the credential."""

    code = "invite_already_used"

    def __init__(self) -> None:
        Unauthenticated.__init__(
            self, "this invite link was already used on another device: ask your clinician for a new link"
        )
        self.reason = InviteFailure.ALREADY_USED


@dataclass(frozen=True, slots=True)
class Invite:
    id: InviteId
    room_id: RoomId
    client_id: ClientId
    created_by: UserId
    created_at: float
    expires_at: float
    max_uses: int | None  # None: unlimited until expiry
    uses: int
    revoked_at: float | None
    exchanged_at: float | None = None  # when the link was exchanged for a device credential

    def failure_at(self, now: float) -> InviteFailure | None:
        """Why the invite cannot be used at ``now``, or None if it can."""
        if self.revoked_at is not None:
            return InviteFailure.REVOKED
        if now >= self.expires_at:
            return InviteFailure.EXPIRED
        if self.max_uses is not None and self.uses >= self.max_uses:
            return InviteFailure.EXHAUSTED
        return None

    @property
    def principal(self) -> Principal:
        return Principal(Role.CLIENT, self.client_id, self.room_id)


class InviteStore(Protocol):
    async def add(self, invite: Invite, token_hash: bytes, display_name: str | None) -> None:
        """Insert the invite and its (new) client, whose display name is stored encrypted; with
        ``display_name`` None the client exists already (an enrollment's, issue 16)."""
        ...

    async def by_token_hash(self, token_hash: bytes) -> Invite | None:
        """The invite whose link token hashes to ``token_hash`` (``exchanged_at`` filled in)."""
        ...

    async def by_device_hash(self, token_hash: bytes) -> Invite | None:
        """The invite whose device credential hashes to ``token_hash``."""
        ...

    async def exchange(self, invite_id: InviteId, device_hash: bytes, now: float) -> bool:
        """Record the one device of ``invite_id`` atomically; False when it was exchanged already."""
        ...

    async def get(self, invite_id: InviteId) -> Invite | None: ...

    async def consume(self, invite_id: InviteId, now: float) -> bool:
        """Atomically count one use iff not revoked, not expired and below ``max_uses``."""
        ...

    async def revoke(self, invite_id: InviteId, now: float) -> None:
        """Set ``revoked_at`` unless already set; NotFound for an unknown id."""
        ...

    async def client_display_name(self, client_id: ClientId) -> str:
        """The decrypted display name; NotFound for an unknown client."""
        ...

    async def revoke_for_client(self, client_id: ClientId, now: float) -> list[RoomId]:
        """Revoke every unrevoked invite of ``client_id`` (an enrollment ended, issue 16); their rooms."""
        ...


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def looks_like_invite(token: str) -> bool:
    """Tell a client's credential (an invite link's token or the device credential it was exchanged for)
    from a JWT in ``Authorization: Bearer ...`` without any lookup."""
    return token.startswith((INVITE_PREFIX, DEVICE_PREFIX))


def check_display_name(raw: str) -> str:
    name = unicodedata.normalize("NFC", raw).strip()
    if not 1 <= len(name) <= MAX_DISPLAY_NAME_CHARS:
        raise BadRequest(f"a display name has 1 to {MAX_DISPLAY_NAME_CHARS} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name):
        raise BadRequest("a display name cannot contain control or invisible characters")
    return name


@dataclass(frozen=True, slots=True)
class CreatedInvite:
    invite: Invite
    token: str  # shown once; never stored, never logged


@dataclass(frozen=True, slots=True)
class ExchangedInvite:
    invite: Invite
    device_token: str  # given once to the device that opened the link; never stored, never logged


class Invites:
    def __init__(
        self,
        store: InviteStore,
        rooms: RoomDirectory,
        policy: InvitePolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._rooms = rooms
        self._policy = policy or InvitePolicy()
        self._clock = clock

    async def create(
        self,
        principal: Principal,
        room: RoomScope,
        display_name: str,
        expires_in: int | None = None,
        max_uses: int | None = None,
    ) -> CreatedInvite:
        authorize(principal, Action.CREATE_INVITE, room)
        name = check_display_name(display_name)
        policy = self._policy
        lifetime = policy.default_expires_in if expires_in is None else expires_in
        if not policy.min_expires_in <= lifetime <= policy.max_expires_in:
            raise BadRequest(
                f"expires_in must be between {policy.min_expires_in} and {policy.max_expires_in} seconds"
            )
        if max_uses is not None and not 1 <= max_uses <= policy.max_uses_limit:
            raise BadRequest(f"max_uses must be between 1 and {policy.max_uses_limit}")
        now = self._clock()
        token = INVITE_PREFIX + secrets.token_urlsafe(32)
        invite = Invite(
            id=new_invite_id(), room_id=room.room_id, client_id=new_client_id(),
            created_by=UserId(principal.subject), created_at=now, expires_at=now + lifetime,
            max_uses=max_uses, uses=0, revoked_at=None,
        )  # fmt: skip
        await self._store.add(invite, token_hash(token), name)
        return CreatedInvite(invite, token)

    async def issue_device(
        self, room_id: RoomId, client_id: ClientId, created_by: UserId, expires_at: float
    ) -> ExchangedInvite:
        """An invite to ``room_id`` for an existing client, exchanged at once for a device credential
        (docs/PROGRAM.md, "Enrollment links"): the enrollment link stands in for the invite link, whose
        token is never shown. From here on the client knocks, reconnects and is counted as with any invite."""
        now = self._clock()
        if expires_at <= now:
            raise BadRequest("the session has ended")
        invite = Invite(
            id=new_invite_id(), room_id=room_id, client_id=client_id, created_by=created_by,
            created_at=now, expires_at=expires_at, max_uses=None, uses=0, revoked_at=None,
        )  # fmt: skip
        await self._store.add(invite, token_hash(INVITE_PREFIX + secrets.token_urlsafe(32)), None)
        device_token = DEVICE_PREFIX + secrets.token_urlsafe(32)
        exchanged = await self._store.exchange(invite.id, token_hash(device_token), now)
        assert exchanged  # a new invite has no device yet
        return ExchangedInvite(invite, device_token)

    async def authenticate(self, token: str) -> Invite:
        """The usable invite behind ``token`` (nothing counted), or :class:`InviteRejected`."""
        invite = await self._find(token)
        failure = invite.failure_at(self._clock())
        if failure is not None:
            raise InviteRejected(failure)
        return invite

    async def exchange(self, link_token: str) -> ExchangedInvite:
        """Trade an invite link's token, once, for a device credential. The link is spent by it: a copy
        of it (a browser's history, a forwarded message) is refused with :class:`InviteAlreadyUsed`."""
        if not link_token.startswith(INVITE_PREFIX):
            raise InviteRejected(InviteFailure.MALFORMED)
        invite = await self.authenticate(link_token)
        device_token = DEVICE_PREFIX + secrets.token_urlsafe(32)
        if not await self._store.exchange(invite.id, token_hash(device_token), self._clock()):
            raise InviteAlreadyUsed()
        return ExchangedInvite(invite, device_token)

    async def consume(self, token: str) -> Invite:
        """Like :meth:`authenticate`, and count one use (call when issuing a signaling ticket)."""
        invite = await self._find(token)
        now = self._clock()
        if not await self._store.consume(invite.id, now):
            current = await self._store.get(invite.id)
            raise InviteRejected((current or invite).failure_at(now) or InviteFailure.EXHAUSTED)
        return invite

    async def revoke(self, principal: Principal, invite_id: InviteId) -> Invite:
        invite = await self._store.get(invite_id)
        if invite is None:
            raise NotFound("no such invite")
        authorize(principal, Action.REVOKE_INVITE, await self._rooms.room_scope(invite.room_id))
        await self._store.revoke(invite_id, self._clock())
        revoked = await self._store.get(invite_id)
        assert revoked is not None
        return revoked

    async def revoke_for_client(self, client_id: ClientId) -> list[RoomId]:
        """Revoke every invite of ``client_id`` (their enrollment ended): the rooms they were for."""
        return await self._store.revoke_for_client(client_id, self._clock())

    async def client_display_name(self, client_id: ClientId) -> str:
        """The client's display name, for readers already allowed to see the client (hosts, attendance);
        NotFound for an unknown client. Callers check permission first: this method does not."""
        return await self._store.client_display_name(client_id)

    async def _find(self, token: str) -> Invite:
        if len(token) != _TOKEN_CHARS or not looks_like_invite(token) or not token.isascii():
            raise InviteRejected(InviteFailure.MALFORMED)
        if token.startswith(DEVICE_PREFIX):
            invite = await self._store.by_device_hash(token_hash(token))
        else:
            invite = await self._store.by_token_hash(token_hash(token))
            if invite is not None and invite.exchanged_at is not None:
                raise InviteAlreadyUsed()
        if invite is None:
            raise InviteRejected(InviteFailure.UNKNOWN)
        return invite
