"""Each room's media controls and their one route into a real relay (no peers: forwarding is relay state)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import pytest

from vIOP.ids import ParticipantId, RoomId, new_participant_id
from vIOP.media.ice import IceConfig
from vIOP.media.relay import MediaRelay, RenegotiationOffer
from vIOP.rooms.events import MuteKind
from vIOP.rooms.participant import Participant, ParticipantState, Role
from vIOP.session.media_controls import MediaControls, RelayHooks

ROOM = RoomId("room-1")


class Spawned:
    """Runs what the hooks spawn and lets the test await it."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def __call__(self, coro: Awaitable[None], name: str) -> None:
        async def run() -> None:
            await coro

        self.tasks.append(asyncio.create_task(run(), name=name))

    async def settle(self) -> None:
        await asyncio.gather(*self.tasks)


async def _no_signal(pid: ParticipantId, offer: RenegotiationOffer) -> None:
    return None


@pytest.fixture
async def relay() -> AsyncIterator[MediaRelay]:
    relay = MediaRelay(IceConfig.loopback(), on_signal=_no_signal)
    yield relay
    await relay.close()


def participant(pid: ParticipantId, *, muted: bool = False, video_muted: bool = False) -> Participant:
    return Participant(
        id=pid,
        room_id=ROOM,
        subject="client-1",
        role=Role.CLIENT,
        display_name="Client",
        state=ParticipantState.ADMITTED,
        knocked_at=0.0,
        muted=muted,
        video_muted=video_muted,
    )


def forwarding(relay: MediaRelay, pid: ParticipantId) -> tuple[bool, bool]:
    return relay.is_forwarding(pid, "audio"), relay.is_forwarding(pid, "video")


@pytest.mark.parametrize(
    ("muted", "video_muted"), [(True, False), (False, True), (True, True), (False, False)]
)
async def test_stored_host_mutes_apply_when_media_starts(
    relay: MediaRelay, muted: bool, video_muted: bool
) -> None:
    controls = MediaControls(RelayHooks(relay, Spawned()))
    pid = new_participant_id()
    await relay.add_participant(pid, room=ROOM)
    controls.media_started(participant(pid, muted=muted, video_muted=video_muted))
    assert forwarding(relay, pid) == (not muted, not video_muted)
    control = controls.of(ROOM, pid)
    assert (control.muted, control.video_muted) == (muted, video_muted)


async def test_a_host_mute_changes_only_its_kind_and_own_flags_never_stop_forwarding(
    relay: MediaRelay,
) -> None:
    controls = MediaControls(RelayHooks(relay, Spawned()))
    pid = new_participant_id()
    await relay.add_participant(pid, room=ROOM)
    controls.media_started(participant(pid, video_muted=True))

    controls.host_mute(ROOM, pid, MuteKind.AUDIO, True)
    assert forwarding(relay, pid) == (False, False)
    controls.host_mute(ROOM, pid, MuteKind.VIDEO, False)
    assert forwarding(relay, pid) == (False, True)

    own = controls.set_own(ROOM, pid, audio=False, video=False)
    hand = controls.set_hand(ROOM, pid, True)
    assert own is hand and (own.audio, own.video, own.hand) == (False, False, True)
    controls.host_mute(ROOM, pid, MuteKind.AUDIO, False)
    assert forwarding(relay, pid) == (True, True)  # the browser stops sending; the server does not


async def test_reading_records_nothing_and_leaving_drops_the_record_and_the_media(relay: MediaRelay) -> None:
    spawned = Spawned()
    controls = MediaControls(RelayHooks(relay, spawned))
    pid, other = new_participant_id(), new_participant_id()
    assert controls.of(ROOM, pid).audio and not controls.of(ROOM, pid).hand
    assert controls.rooms == {}

    await relay.add_participant(pid, room=ROOM)
    await relay.add_participant(other, room=ROOM)
    controls.set_hand(ROOM, pid, True)
    controls.set_hand(ROOM, other, True)
    controls.stop_media(pid)  # back to the lobby: media stops, the hand stays
    await spawned.settle()
    assert pid not in relay.participants() and controls.of(ROOM, pid).hand

    controls.drop(ROOM, other)
    await spawned.settle()
    assert other not in relay.participants() and not controls.of(ROOM, other).hand

    controls.drop_room(ROOM, [pid])
    assert controls.rooms == {}


async def test_the_room_ending_drops_every_record_of_the_room_and_no_other(relay: MediaRelay) -> None:
    spawned = Spawned()
    controls = MediaControls(RelayHooks(relay, spawned))
    here, elsewhere, other_room = new_participant_id(), new_participant_id(), new_participant_id()
    await relay.add_participant(here, room=ROOM)
    controls.set_own(ROOM, here, audio=False)
    controls.host_mute(ROOM, elsewhere, MuteKind.VIDEO, True)  # not carried by this relay: no error
    controls.set_hand(RoomId("room-2"), other_room, True)

    controls.drop_room(ROOM, [here])
    await spawned.settle()
    assert here not in relay.participants()
    assert set(controls.rooms) == {RoomId("room-2")}
    assert controls.of(ROOM, elsewhere).video_muted is False
