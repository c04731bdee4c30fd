"""The process's live loops: room events from the bus (the one recovery loop: a gap arrives as ``Resync``
and :func:`repair` puts back what this process holds), the one sweeper, and the relay's signaling sender
(room events reach the relay through ``vIOP.session.media_controls``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

from vIOP.ids import ParticipantId, RoomId
from vIOP.media.relay import AudioOnlyCallback, RenegotiationOffer, SpeakerCallback
from vIOP.media.speaker import SpeakerChange
from vIOP.rooms.audio_only import AudioOnlyReason
from vIOP.rooms.events import Event, Resync
from vIOP.rooms.ports import EventBus
from vIOP.rooms.service import RoomService
from vIOP.session.delivery import RoomDelivery
from vIOP.session.live import EventListener
from vIOP.session.media_route import MediaRouter
from vIOP.session.room_end import directory_sync, end_hostless_rooms
from vIOP.session.services import Services
from vIOP.signaling import messages as m

log = logging.getLogger("vIOP.live")


def relay_audio_only_notifier(services: Services) -> AudioOnlyCallback:
    """The relay's audio-only changes, told to the room by this process's delivery (once it runs)."""

    def changed(pid: ParticipantId, reason: AudioOnlyReason | None) -> None:
        delivery, relay = services.live.delivery, services.relay
        room = relay.room_of(pid) if relay is not None else None
        if delivery is not None and room is not None:
            delivery.set_audio_only(RoomId(room), pid, reason)

    return changed


def relay_signal_sender(
    send: Callable[[ParticipantId, m.ServerMessage], object],
) -> Callable[[ParticipantId, RenegotiationOffer], Awaitable[None]]:
    """The relay's renegotiation offers, to the participant's socket (here or on its node)."""

    async def send_offer(pid: ParticipantId, offer: RenegotiationOffer) -> None:
        send(pid, m.ServerOffer(sdp=offer.sdp))

    return send_offer


def relay_speaker_sender(router: MediaRouter) -> SpeakerCallback:
    """A room's dominant-speaker change, as ``active_speaker``, to everyone with media in that room (the
    relay names them: never the lobby). Encoded once per node; queued on each socket, never awaited (the
    relay calls this from the media path)."""

    def send(recipients: tuple[ParticipantId, ...], change: SpeakerChange[ParticipantId]) -> None:
        if not recipients:
            return
        relay = router.services.relay
        room = relay.room_of(recipients[0]) if relay is not None else None
        message = m.ActiveSpeaker(speaker=change.speaker, recent=change.recent)
        router.send_many(recipients, message, room or "")

    return send


async def run_event_loop(
    services: Services, delivery: RoomDelivery, listeners: list[EventListener], retry: float = 1.0
) -> None:
    """Deliver every room event from every process, for the life of the app. After a gap (Redis restarted
    or unreachable), re-assert what this process holds, then refresh every local view."""

    async def handle(item: Event | Resync) -> None:
        if isinstance(item, Resync):
            await repair(services, delivery)
        else:
            await delivery.deliver(item)
        for listener in listeners:
            try:
                await listener(item)
            except Exception:
                log.exception("event listener failed")

    await follow_events(services.bus, handle, retry)


async def follow_events(
    bus: EventBus, handle: Callable[[Event | Resync], Awaitable[None]], retry: float = 1.0
) -> None:
    """The recovery loop: every event from ``bus`` to ``handle``, resubscribing after a failure; a gap in the
    stream (Redis restarted, perhaps empty) arrives as :class:`Resync`."""
    while True:
        try:
            subscription = await bus.subscribe()
        except Exception:
            log.warning("event bus unavailable; retrying")
            await asyncio.sleep(retry)
            continue
        try:
            async for item in subscription:
                await handle(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event stream failed; resubscribing")
            await asyncio.sleep(retry)
        finally:
            with contextlib.suppress(Exception):
                await subscription.close()


async def reassert_rooms(rooms: RoomService) -> bool:
    """Redis may have lost its data: put back this process's rooms, lobby entries and presence."""
    try:
        restored = await rooms.reassert()
    except Exception:
        log.exception("re-assert after a Redis restart failed")
        return False
    log.info("re-asserted after an event stream gap", extra={"count": len(restored)})
    return True


async def repair(services: Services, delivery: RoomDelivery) -> None:
    """After a gap in the event stream: the rooms (:func:`reassert_rooms`), then what this process's live
    sockets hold in Redis, then every local view."""
    if not await reassert_rooms(services.rooms):
        return
    for conn in list(services.connections):
        if conn.participant_id is not None:
            with contextlib.suppress(Exception):
                await services.rooms.heartbeat(conn.room_id, conn.participant_id)
    # Resume tokens and sign-ins of live sockets lived in that Redis too: without them every host and
    # staff dashboard would be closed "session ended" at its next heartbeat.
    for session in list(services.live.signal_sessions):
        with contextlib.suppress(Exception):
            await session.reassert()
    for stream in list(services.live.presence_streams):
        if stream.grant.session:
            with contextlib.suppress(Exception):
                await services.tokens.reassert(stream.grant.session)
    for room_id in {c.room_id for c in services.connections}:
        delivery.mark_dirty(room_id)


async def run_sweeper(services: Services, interval: float) -> None:
    """Mark silent participants reconnecting and let go of those whose grace ran out (every process runs
    it; each step is a no-op for the losers). Ends between rounds once ``services.stopping`` is set."""

    def after_round() -> None:
        if services.live.audit_outbox is not None:
            services.live.audit_outbox.kick()  # audit rows held back by a database outage
        directory_sync(services).kick()  # room ends the SQL directory has yet to take; its reconcile
        services.connections.close_stale()

    # Rooms whose hosts all left (issue 15) are looked for every tenth of the grace (at most every 30 s, at
    # least every round): each look reads every open room, and an end a few seconds late changes nothing.
    grace = float(services.settings.host_absent_grace_seconds)
    every = max(interval, min(30.0, grace / 10))
    last_look = -math.inf

    async def hostless() -> None:
        nonlocal last_look
        now = time.monotonic()
        if now - last_look >= every:
            last_look = now
            await end_hostless_rooms(services)

    await sweep_rooms(services.rooms, interval, after_round, stop=services.stopping, also=hostless)


async def sweep_rooms(
    rooms: RoomService,
    interval: float,
    after_round: Callable[[], None] | None = None,
    *,
    stop: asyncio.Event | None = None,
    also: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """The sweeper: every ``interval`` seconds a presence sweep, then the attendance rows a database outage
    held back; a failed round is logged and the next one tries again. Runs until cancelled, or until
    ``stop`` is set (then it ends between rounds, never in the middle of a store call)."""
    stop = stop or asyncio.Event()
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        if stop.is_set():
            return
        try:
            await rooms.sweep()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("presence sweep failed; will retry")
        # Apart from the sweep: a Redis outage must not hold back rows waiting for the database.
        try:
            await rooms.flush_attendance()  # ledger entries held back by a database outage
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("attendance flush failed; will retry")
        if also is not None:  # rooms whose hosts all left without ending them (issue 15)
            try:
                await also()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("ending host-less rooms failed; will retry")
        if after_round is not None:
            after_round()
