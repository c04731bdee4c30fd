"""Node loss (issue 14): the node carrying a room's media is SIGKILLed mid-session. Two real `python -m vIOP
serve` processes on one redis-server, real aiortc peers (``vIOP.client``).

The participants whose sockets are on the surviving node are told ``media_moved`` and renegotiate by
themselves onto it (the lease taken over by compare-and-set, a larger token); the one whose socket died
with the node resumes on the survivor. Everyone decodes everyone again, nobody knocks again, the waiting
client is still waiting and can be admitted, and every attendance stay runs on across the gap."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from tests.api.test_two_processes import App
from tests.cluster.test_signaling_on_any_node import (  # noqa: F401 (two_nodes is a fixture)
    both_registered,
    decoding_grows,
    group_room,
    media_tracks,
    two_nodes,
)
from vIOP.client.session import HttpApi, RoomClient
from vIOP.ids import RoomId
from vIOP.signaling import messages as m
from vIOP.storage.redis_cluster import RedisRoomLeases


async def test_media_node_sigkill_moves_the_room_to_the_surviving_node(
    two_nodes: tuple[App, App],  # noqa: F811 (the fixture imported above)
    redis_client: aioredis.Redis,
) -> None:
    """Regression: on main the participants whose sockets survived were never told their media was gone
    (no `media_moved`), so their peer connections stayed dead."""
    a, b = two_nodes
    await both_registered(redis_client)
    api_a, api_b = HttpApi(a.base_url), HttpApi(b.base_url)
    people: list[RoomClient] = []
    try:
        room = await group_room(api_b, "Node loss", "Kim", "Lee", "Pat")
        token, headers, room_id = room.token, room.headers, room.room_id
        kim_invite, lee_invite, pat_invite = (room.invites[name] for name in ("Kim", "Lee", "Pat"))
        host = RoomClient(api_b.ticket_source(token, room_id), origin=b.base_url, tracks=media_tracks)
        kim = RoomClient(api_b.ticket_source(kim_invite, room_id), origin=b.base_url, tracks=media_tracks)
        lee = RoomClient(api_a.ticket_source(lee_invite, room_id), origin=a.base_url, tracks=media_tracks)
        pat = RoomClient(api_b.ticket_source(pat_invite, room_id), origin=b.base_url, tracks=media_tracks)
        people += [host, kim, lee, pat]
        await host.join()
        # Lee (socket on node a) offers first: both nodes empty, so the room's media is placed on a.
        for guest in (lee, kim):
            await guest.join()
            await guest.wait_message(m.Waiting)
            await host.send(m.Admit(participant_id=guest.participant_id))
            await guest.wait_message(m.Admitted)
        await lee.start_media()
        await host.start_media()
        await kim.start_media()
        await pat.join()
        await pat.wait_message(m.Waiting)  # Pat waits in the lobby through the node's loss

        leases = RedisRoomLeases(redis_client)
        before = await leases.current(RoomId(room_id))
        assert before is not None and before.node_id == "node-a"
        live = (host, kim, lee)
        for viewer in live:
            for publisher in live:
                if publisher is not viewer:
                    await viewer.wait_frames(publisher.participant_id, "video", at_least=10, within=30)

        killed_at = time.monotonic()
        a.process.kill()  # the room's media node dies; Lee's socket with it
        a.process.wait(10)

        # The host and Kim (sockets on b) are told, and renegotiate by themselves onto node b.
        for person in (host, kim):
            moved = await person.wait_message(m.MediaMoved, within=30)
            assert moved.reason is m.MediaMoveReason.NODE_LOST
        # Lee's client reconnects to the surviving node with its resume token (as the web client does).
        await lee.wait_closed(within=15)
        lee.tickets = api_b.ticket_source(lee_invite, room_id)
        lee.origin = b.base_url
        welcome = await lee.join(resume=True)
        assert welcome.resumed
        await lee.wait_message(m.Admitted)  # back in the room, no knock
        await lee.start_media(retry_within=30)

        for viewer in live:
            for publisher in live:
                if publisher is not viewer:
                    await decoding_grows(viewer, publisher, "video")
        await decoding_grows(host, kim, "audio")
        assert len(host.renegotiated) == 1 and len(kim.renegotiated) == 1
        assert time.monotonic() - killed_at < 60  # generous: the recovery figure is bench/node_loss.py's

        after = await leases.current(RoomId(room_id))
        assert after is not None and after.node_id == "node-b" and after.token > before.token

        # Nobody knocked again: no `waiting` reached anyone admitted since the kill (Lee's socket is new,
        # and its resume went straight to `admitted`).
        assert not host.received_since(m.Waiting, killed_at) and not kim.received_since(m.Waiting, killed_at)
        assert lee.latest(m.Waiting) is None
        # Pat's waiting entry survived: admitted now, Pat decodes the room from node b.
        lobby = host.latest(m.Lobby)
        assert lobby is not None and pat.participant_id in {w.participant_id for w in lobby.waiting}
        await host.send(m.Admit(participant_id=pat.participant_id))
        await pat.wait_message(m.Admitted)
        await pat.start_media(retry_within=30)
        await pat.wait_frames(host.participant_id, "video", at_least=10, within=30)

        # Attendance: each person's stay runs on across the gap (one stay, still open).
        report = await api_b.http.get("/api/v1/attendance", params={"room_id": room_id}, headers=headers)
        assert report.status_code == 200, report.text
        (session,) = report.json()["sessions"]
        by_subject = {line["subject"]: line for line in session["roster"]}
        assert len(by_subject) == 4  # host, Kim, Lee, Pat
        for line in by_subject.values():
            assert len(line["stays"]) == 1, line["stays"]
            assert line["stays"][0]["left_at"] is None
    finally:
        for person in people:
            await person.close()
        await api_a.close()
        await api_b.close()
