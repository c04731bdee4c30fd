"""Shared scenery for the compliance tests: accounts, rooms, clients and attendance written through the
real stores (SQL), with times chosen by the test."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert

from tests.api.support import Api
from vIOP.auth.invites import Invite
from vIOP.ids import ClientId, InviteId, RoomId, SessionId, UserId, new_id, new_participant_id
from vIOP.rooms.attendance import AudioOnlyMark, CloseMark, CloseReason, OpenMark, SessionEndMark
from vIOP.rooms.audio_only import AudioOnlyReason
from vIOP.rooms.participant import Role as ParticipantRole
from vIOP.storage.attendance_sql import SqlAttendanceStore
from vIOP.storage.bootstrap import Storage
from vIOP.storage.crypto import FieldRef
from vIOP.storage.invites_sql import SqlInviteStore
from vIOP.storage.rooms_sql import RoomRecord, SqlRoomDirectory
from vIOP.storage.schema import users

DAY = 86_400.0
YEAR = 365 * DAY
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def stay(
    api: Api,
    room: str,
    subject: str,
    start: float,
    stop: float,
    role: ParticipantRole = ParticipantRole.CLIENT,
) -> None:
    """One closed attendance interval written through the server's own ledger."""
    ledger = api.services.rooms.attendance
    assert ledger is not None
    ids = (RoomId(room), SessionId(f"ss_{room}"), new_participant_id(), subject)
    await ledger.open(OpenMark(*ids, role=role, at=start), 60.0)
    await ledger.close(CloseMark(*ids, at=stop, reason=CloseReason.LEFT))


class World:
    """Rooms, clients, invites and attendance on the storage layer, at times the test picks."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.rooms = SqlRoomDirectory(storage.db, storage.keys)
        self.invites = SqlInviteStore(storage.db, storage.keys)
        self.ledger = SqlAttendanceStore(storage.db)
        self.host = UserId(new_id("us"))

    async def add_host(self, now: float) -> None:
        async with self.storage.db.begin() as conn:
            await conn.execute(
                insert(users).values(
                    id=self.host, role="clinician", username_index=self.host.encode(),
                    username=self.storage.keys.system_fields.encrypt(
                        FieldRef("users", "username", self.host), "host"
                    ),
                    password_hash="x", mfa_enabled=False, disabled=False, failed_logins=0,
                    created_at=at(now), updated_at=at(now),
                )
            )  # fmt: skip

    async def room(self, created: float, ended: float | None, title: str = "Evening group") -> RoomId:
        room_id = RoomId(new_id("rm"))
        await self.rooms.add(
            RoomRecord(
                room_id, "group", title, 12, self.host, "ended" if ended else "open", at(created),
                at(ended) if ended else None,
            )
        )  # fmt: skip
        return room_id

    async def client(self, room: RoomId, created: float, name: str, expires: float) -> ClientId:
        client_id = ClientId(new_id("cl"))
        invite = Invite(
            id=InviteId(new_id("iv")), room_id=room, client_id=client_id, created_by=self.host,
            created_at=created, expires_at=expires, max_uses=1, uses=0, revoked_at=None,
        )  # fmt: skip
        await self.invites.add(invite, new_id("th").encode(), name)
        return client_id

    async def attended(self, room: RoomId, client: ClientId, start: float, stop: float) -> None:
        session = SessionId(f"ss_{room}_{int(start)}")
        ids = (room, session, new_participant_id(), client)
        await self.ledger.open(OpenMark(*ids, role=ParticipantRole.CLIENT, at=start), 60.0)
        # ten minutes on audio only: its span lives and goes with the stay
        client_ids = (*ids, ParticipantRole.CLIENT)
        await self.ledger.audio_only(
            AudioOnlyMark(*client_ids, at=start + 60, reason=AudioOnlyReason.SAVE_DATA)
        )
        await self.ledger.audio_only(AudioOnlyMark(*client_ids, at=start + 660, reason=None))
        await self.ledger.close(CloseMark(*ids, at=stop, reason=CloseReason.LEFT))
        await self.ledger.end_session(SessionEndMark(room, session, at=stop))
