"""The Python signaling client against a real uvicorn + Starlette socket: handshake, replies, close codes."""

from __future__ import annotations

import pytest

from tests.signaling.conftest import ORIGIN, MiniServer
from tests.signaling.samples import SDP
from vIOP.client.signaling import ConnectRefused, SignalingClient, SignalingClosed
from vIOP.signaling import messages as m


async def test_join_ping_and_offer_get_replies_with_their_ids(mini_server: MiniServer) -> None:
    async with await SignalingClient.connect(mini_server.url, origin=ORIGIN) as client:
        welcome = await client.request(m.Join())
        assert isinstance(welcome, m.Welcome)
        assert welcome.protocol_version == m.PROTOCOL_VERSION and welcome.room_id == "rm_e2e"
        pong = await client.request(m.Ping(id="p-1"))
        assert pong == m.Pong(id="p-1")
        answer = await client.request(m.Offer(sdp=SDP))
        assert isinstance(answer, m.ServerAnswer) and answer.sdp == SDP


async def test_a_fan_out_reaches_the_other_client_and_expect_keeps_other_messages(
    mini_server: MiniServer,
) -> None:
    async with (
        await SignalingClient.connect(mini_server.url, origin=ORIGIN) as first,
        await SignalingClient.connect(mini_server.url, origin=ORIGIN) as second,
    ):
        await first.request(m.Join())
        await first.send(m.Ping(id=1))
        welcome = await second.request(m.Join())
        assert isinstance(welcome, m.Welcome)
        announced = await first.expect(m.HandRaised)
        assert announced.participant_id == welcome.participant_id
        assert await first.recv() == m.Pong(id=1)  # set aside by expect(), still delivered in order


async def test_the_origin_header_is_sent_and_a_wrong_one_is_refused(mini_server: MiniServer) -> None:
    with pytest.raises(ConnectRefused) as refused:
        await SignalingClient.connect(mini_server.url, origin="https://evil.example")
    assert refused.value.status == 403
    with pytest.raises(ConnectRefused):
        await SignalingClient.connect(mini_server.base + "?ticket=wrong", origin=ORIGIN)


async def test_unknown_type_and_invalid_fields_get_an_error_and_the_socket_stays(
    mini_server: MiniServer,
) -> None:
    async with await SignalingClient.connect(mini_server.url, origin=ORIGIN) as client:
        await client.send_raw('{"type": "teleport", "id": "t1"}')
        error = await client.recv()
        assert error == m.ErrorMessage(code="unknown_type", message="unknown message type", id="t1")
        await client.send_raw('{"type": "raise_hand", "up": "yes", "id": 5}')
        error = await client.recv()
        assert isinstance(error, m.ErrorMessage) and error.code == "invalid_message" and error.id == 5
        assert await client.request(m.Ping()) == m.Pong(id=1)


@pytest.mark.parametrize(
    ("frame", "code", "close_code"),
    [
        ('{"type": "ping"', "malformed_frame", 1003),
        (b'{"type": "ping"}', "malformed_frame", 1003),  # binary frame
        ('{"type": "offer", "sdp": "' + "v" * (m.MAX_FRAME_BYTES + 10) + '"}', "frame_too_large", 1009),
    ],
)
async def test_fatal_frames_get_an_error_then_the_close_code(
    mini_server: MiniServer, frame: str | bytes, code: str, close_code: int
) -> None:
    async with await SignalingClient.connect(mini_server.url, origin=ORIGIN) as client:
        await client.send_raw(frame)
        error = await client.recv()
        assert isinstance(error, m.ErrorMessage) and error.code == code
        with pytest.raises(SignalingClosed) as closed:
            await client.recv()
        assert closed.value.close_code == close_code == client.close_code


async def test_a_flood_is_rate_limited_then_closed_1008_while_others_are_served(
    mini_server: MiniServer,
) -> None:
    async with (
        await SignalingClient.connect(mini_server.url, origin=ORIGIN) as flooder,
        await SignalingClient.connect(mini_server.url, origin=ORIGIN) as bystander,
    ):
        for _ in range(100):
            try:
                await flooder.send(m.Ping())
            except SignalingClosed:
                break
        replies = [message async for message in flooder]  # until the server closes it
        assert flooder.close_code == 1008
        assert sum(isinstance(r, m.Pong) for r in replies) >= 30
        assert any(isinstance(r, m.ErrorMessage) and r.code == "rate_limited" for r in replies)
        assert await bystander.request(m.Ping()) == m.Pong(id=1)


async def test_leave_closes_1000_and_iteration_ends(mini_server: MiniServer) -> None:
    async with await SignalingClient.connect(mini_server.url, origin=ORIGIN) as client:
        await client.request(m.Join())
        await client.send(m.Leave())
        assert [message async for message in client] == []
        assert client.close_code == 1000
        with pytest.raises(SignalingClosed):
            await client.send(m.Ping())
