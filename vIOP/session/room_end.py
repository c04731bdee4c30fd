"""Ending a room, in one place (:func:`end_room`), and the SQL room directory catching up with ended rooms
(:class:`DirectorySync`).

A room ends in Redis (``services.rooms.end``: the ended room and its ``RoomEnded`` event in one atomic
step). The directory (``services.room_directory``: what listings and permission checks read) must say so
too, but the two stores share no transaction, so the directory follows the live store:

- :func:`end_room` ends the live session, then writes the directory at once when the database takes it.
- When it does not (the database is down, locked or restarting), the end is kept and retried with backoff
  (1 s, doubling, at most 60 s) on the sweeper's rounds until the database takes it: no read is needed
  for that, and a read never writes (``vIOP.session.rooms_view``).
- A queue in memory dies with its process, so the same object also *reconciles*: at start and every five
  minutes it marks ended each directory row still open whose live room Redis reports ended (Redis keeps an
  ended room for ``ENDED_ROOM_TTL``, 6 h). That repairs a process that crashed or restarted between the
  two writes, whichever process it was.

Why a reconcile and not an outbox table: the end is already durable in Redis, written atomically with its
event; an outbox row in SQL cannot be written while SQL is the store that is down, and an outbox in Redis
would only copy what the ended room already says. Deriving the missing write from the two stores needs no
new state and repairs every cause of drift, not just the ones foreseen (docs/ROOMS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final

from vIOP.auth.room_records import RoomRecords
from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms.clock import Clock
from vIOP.rooms.errors import RoomNotFound
from vIOP.rooms.ports import RoomStore
from vIOP.rooms.room import RoomState, Transition
from vIOP.session.services import Services
from vIOP.storage.outage import is_store_outage

log = logging.getLogger("vIOP.rooms.directory")

ENDED: Final = RoomState.ENDED.value
RETRY_FIRST_SECONDS: Final = 1.0
RETRY_MAX_SECONDS: Final = 60.0
RECONCILE_EVERY_SECONDS: Final = 300.0


async def end_room(services: Services, room_id: RoomId, *, by: ParticipantId | None) -> Transition:
    """End the live session, then record the end in the directory (now, or retried until it is)."""
    t = await services.rooms.end(room_id, by=by)
    ended_at = t.room.ended_at if t.room.ended_at is not None else services.rooms.clock()
    await directory_sync(services).record_end(room_id, ended_at)
    return t


async def end_hostless_rooms(services: Services, now: float | None = None) -> list[RoomId]:
    """End every started room whose hosts have all been gone for the host-absence grace (issue 15: the last
    host left without ending it); the sweeper calls it every round. ``now`` (epoch seconds, default the room
    clock) is injectable. Each end re-checks the room atomically (a host back in time keeps it open), then
    goes to the directory like every end. Returns the rooms it ended."""
    grace = float(services.settings.host_absent_grace_seconds)
    ended: list[RoomId] = []
    for room_id in await services.rooms.hostless_due(grace, now):
        try:
            t = await services.rooms.end_if_hostless(room_id, grace=grace, now=now)
        except RoomNotFound:
            continue
        if not t.changed:
            continue
        ended_at = t.room.ended_at if t.room.ended_at is not None else services.rooms.clock()
        await directory_sync(services).record_end(room_id, ended_at)
        log.info("room ended: no host came back within the grace", extra={"room_id": room_id})
        ended.append(room_id)
    return ended


def directory_sync(services: Services) -> DirectorySync:
    """The process's one :class:`DirectorySync` (created on first use; one last attempt when the app drains)."""
    sync = services.live.directory_sync
    if sync is None:
        sync = services.live.directory_sync = DirectorySync(services.room_directory, services.rooms.rooms)
        services.drain_hooks.append(sync.close)
    return sync


class DirectorySync:
    """Ends the directory has not taken yet (``pending``), retried with backoff; and the reconcile that
    finds ends no process of this run knows of. :meth:`kick` is cheap when nothing is due: the sweeper
    calls it every round."""

    def __init__(
        self,
        directory: RoomRecords,
        live_rooms: RoomStore,
        *,
        clock: Clock = time.monotonic,
        reconcile_every: float = RECONCILE_EVERY_SECONDS,
        retry_first: float = RETRY_FIRST_SECONDS,
        retry_max: float = RETRY_MAX_SECONDS,
    ) -> None:
        self._directory = directory
        self._live_rooms = live_rooms
        self._clock = clock
        self._reconcile_every = reconcile_every
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._pending: dict[RoomId, float] = {}  # room -> ended_at
        self._reconcile_at = clock()  # due at start: a previous run may have left rows behind
        self._retry_at = 0.0
        self._delay = 0.0
        self._writer = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Ends not yet in the directory."""
        return len(self._pending)

    @property
    def retry_in(self) -> float:
        """Seconds until the next attempt may run (0: now)."""
        return max(0.0, self._retry_at - self._clock())

    async def record_end(self, room_id: RoomId, ended_at: float) -> None:
        """Keep the end and write it now, unless a writer is already at it (maybe stuck on a database that
        is away): then that writer or the next round takes it, and the caller (a host's ``end`` on its
        socket) does not queue behind it. Never raises: the room has ended either way."""
        self._pending[room_id] = ended_at
        if self._writer.locked():
            return
        async with self._writer:
            await self._attempt(reconcile=False)

    def kick(self) -> None:
        """Start a catch-up in the background if one is due (an end waiting whose backoff has passed, or
        the reconcile's time) and none is running."""
        if self._writer.locked() or (self._task is not None and not self._task.done()):
            return
        now = self._clock()
        if now < self._retry_at or not (self._pending or now >= self._reconcile_at):
            return
        self._task = asyncio.get_running_loop().create_task(self.catch_up(), name="room-directory-sync")

    async def catch_up(self) -> None:
        """Write the waiting ends, and reconcile when it is time."""
        async with self._writer:
            await self._attempt(reconcile=self._clock() >= self._reconcile_at)

    async def close(self) -> None:
        """At shutdown: let a running catch-up finish, then one last try of the waiting ends."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        async with self._writer:
            await self._attempt(reconcile=False)
        if self._pending:
            log.error("room directory: %d ended rooms not recorded at shutdown", len(self._pending))

    async def _attempt(self, *, reconcile: bool) -> None:
        try:
            if reconcile:
                await self._find_unrecorded_ends()
            await self._write_pending()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure: keep what waits and back off
            self._delay = min(self._retry_max, self._delay * 2 if self._delay else self._retry_first)
            self._retry_at = self._clock() + self._delay
            if not is_store_outage(exc):  # not the database or Redis being away: worth a traceback
                log.exception("room directory catch-up failed")
            log.warning(
                "room directory write deferred (%s); %d ended rooms waiting, next try in %.0f s",
                type(exc).__name__,
                len(self._pending),
                self._delay,
            )
            return
        self._delay, self._retry_at = 0.0, 0.0
        if reconcile:
            self._reconcile_at = self._clock() + self._reconcile_every

    async def _find_unrecorded_ends(self) -> None:
        """Directory rows still open whose live room has ended join the waiting ends."""
        for room_id in await self._directory.unended_ids():
            if room_id in self._pending:
                continue
            try:
                room = await self._live_rooms.get(room_id)
            except RoomNotFound:
                continue  # never opened, ended over 6 h ago, or lost with Redis: nothing to go by
            if room.state is RoomState.ENDED and room.ended_at is not None:
                self._pending[room_id] = room.ended_at

    async def _write_pending(self) -> None:
        for room_id, ended_at in list(self._pending.items()):
            await self._directory.set_state(room_id, ENDED, ended_at=ended_at)
            del self._pending[room_id]
