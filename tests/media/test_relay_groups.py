"""Issue 15, private breakout in the relay: media groups inside one room, over the same peer connections.

Four aiortc peers in one room; two are moved into a group of their own (``set_groups``, as a breakout does)
and back. While apart, each side decodes only its own group (the others' streams stop within a second, per
the frame counters); back together, every m-line carries its publisher again on the same connections and
everyone hears everyone. No sleeps:
bounded polls of the frame counters, with time measured by the frames of the streams that keep flowing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from itertools import permutations

import pytest

from tests.media.harness import Room, wait_until
from vIOP.ids import ParticipantId
from vIOP.media.peer import SlotState

FLOW_TIMEOUT = 30.0  # generous: two busy cores shared with other suites
STOP_WITHIN = 1.0


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    room = Room()
    yield room
    await room.close()


def frames(room: Room, viewer: ParticipantId, publisher: ParticipantId, kind: str = "video") -> int:
    return room.peers[viewer].counter.frames(publisher, kind)


def last_at(room: Room, viewer: ParticipantId, publisher: ParticipantId, kind: str) -> float:
    count = room.peers[viewer].counter.streams.get((publisher, kind))
    assert count is not None and count.last_at is not None
    return count.last_at


def carries(room: Room, viewer: ParticipantId, publisher: ParticipantId) -> bool:
    """``viewer``'s connection has an active m-line per kind carrying ``publisher``."""
    session = room.relay.session(viewer)
    assert session is not None
    keys = {
        slot.key for slot in session.slots if slot.state is SlotState.ACTIVE and slot.leg.source is not None
    }
    return {(publisher, "audio"), (publisher, "video")} <= keys


async def all_flowing(
    room: Room, pairs: list[tuple[ParticipantId, ParticipantId]], more: int, what: str
) -> None:
    start = {(v, p, k): frames(room, v, p, k) for v, p in pairs for k in ("audio", "video")}
    await wait_until(
        lambda: all(frames(room, v, p, k) >= n + more for (v, p, k), n in start.items()), FLOW_TIMEOUT, what
    )


async def test_two_moved_into_a_group_exchange_media_only_with_each_other_and_come_back(room: Room) -> None:
    people = [(await room.join())[0] for _ in range(4)]
    client, clinician, host, other = people
    await all_flowing(room, list(permutations(people, 2)), 3, "everyone before the breakout")
    sessions = {pid: room.relay.session(pid) for pid in people}

    moved_at = time.monotonic()
    room.relay.set_groups({client: "bo_1", clinician: "bo_1"})
    aside, group = (client, clinician), (host, other)
    # each side keeps flowing within itself, for a good while (30 frames, about 2 s)
    await all_flowing(
        room, [(client, clinician), (clinician, client), (host, other), (other, host)], 30, "apart"
    )
    for viewer, publisher in [(v, p) for v in aside for p in group] + [(v, p) for v in group for p in aside]:
        for kind in ("audio", "video"):
            assert last_at(room, viewer, publisher, kind) - moved_at <= STOP_WITHIN, (viewer, publisher, kind)
    assert room.relay.group_of(client) == "bo_1" and room.relay.group_of(host) is None

    room.relay.set_groups({client: None, clinician: None})
    # Back together on the same connections: every m-line carries its publisher again (negotiated), and
    # audio and video (after the keyframe the relay asks for) flow everyone to everyone.
    await wait_until(
        lambda: all(carries(room, v, p) for v, p in permutations(people, 2)), FLOW_TIMEOUT, "m-lines"
    )
    start = {(v, p): frames(room, v, p, "audio") for v, p in permutations(people, 2)}
    await wait_until(
        lambda: all(frames(room, v, p, "audio") >= n + 25 for (v, p), n in start.items()),
        FLOW_TIMEOUT,
        "everyone hears everyone after the breakout",
    )
    await all_flowing(room, list(permutations(people, 2)), 10, "everyone sees everyone after the breakout")
    assert all(room.relay.session(pid) is sessions[pid] for pid in people)  # the same peer connections
