"""The durable room record and its port: what outlives a room's live session (kind, title, capacity, host,
state) and what permission checks read (a record's :class:`~vIOP.auth.permissions.RoomScope`).

Live state (lobby, roster) is the domain's (:mod:`vIOP.rooms.ports`); this directory is kept in SQL by
:class:`vIOP.storage.rooms_sql.SqlRoomDirectory`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from vIOP.auth.permissions import RoomDirectory, RoomScope
from vIOP.ids import RoomId, UserId


@dataclass(frozen=True, slots=True)
class RoomRecord:
    id: RoomId
    kind: str
    title: str
    capacity: int
    host_user_id: UserId
    state: str
    created_at: datetime
    ended_at: datetime | None
    cohost_ids: frozenset[UserId] = field(default_factory=frozenset)  # issue 15: clinicians added later

    @property
    def host_ids(self) -> frozenset[UserId]:
        """Every host of the room: the clinician who created it and its co-hosts (one concept, everywhere)."""
        return self.cohost_ids | {self.host_user_id}

    @property
    def scope(self) -> RoomScope:
        return RoomScope(room_id=self.id, host_ids=frozenset(self.host_ids))


class RoomRecords(RoomDirectory, Protocol):
    """Every room's durable record (:class:`vIOP.storage.rooms_sql.SqlRoomDirectory`)."""

    async def add(self, record: RoomRecord) -> None: ...

    async def get(self, room_id: str) -> RoomRecord:
        """:class:`~vIOP.errors.NotFound` for an unknown or malformed id."""
        ...

    async def hosted_by(self, user_id: UserId, *, include_ended: bool = False) -> list[RoomRecord]:
        """The rooms ``user_id`` hosts or co-hosts, newest first (bounded)."""
        ...

    async def add_cohost(self, room_id: RoomId, user_id: UserId, *, by: UserId | None, at: float) -> None:
        """Record ``user_id`` as a co-host (:class:`~vIOP.rooms.errors.AlreadyAHost` if they host it)."""
        ...

    async def remove_cohost(self, room_id: RoomId, user_id: UserId) -> bool:
        """Forget ``user_id`` as a co-host; False if they were not one."""
        ...

    async def all_rooms(self, *, include_ended: bool = False) -> list[RoomRecord]:
        """Every room, newest first (bounded)."""
        ...

    async def set_state(self, room_id: RoomId, state: str, *, ended_at: float | None = None) -> None: ...

    async def unended_ids(self) -> list[RoomId]:
        """Every room whose record is not ended (unbounded: the directory reconcile walks them all)."""
        ...
