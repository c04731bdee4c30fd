"""The room's chat record (issue 15): every line kept sealed in Redis while the room is live, for a host's
transcript save, and gone with the room's end. Real redis-server, real uvicorn sockets."""

from __future__ import annotations

import redis.asyncio as aioredis

from tests.api import signal_support as ss
from tests.api import test_chat as chat_world
from vIOP.signaling import messages as m
from vIOP.storage.redis_rooms import RedisKeys

group = chat_world.group  # the same room: a host, two admitted clients, one waiting


async def test_chat_lines_are_kept_sealed_while_live_and_gone_with_the_end(
    group: chat_world.Group, redis_client: aioredis.Redis
) -> None:
    g = group
    texts = [
        ("Recordroomline one", g.ana, m.Chat(text="Recordroomline one")),
        ("Recordprivateline two", g.ben, m.Chat(text="Recordprivateline two", private=True)),
        ("Recordlobbyline three", g.wes, m.Chat(text="Recordlobbyline three", private=True)),
        ("Recordhostline four", g.host, m.Chat(text="Recordhostline four", private=True, to=g.ben.pid)),
    ]
    for text, seat, message in texts:
        echo = await seat.request(message)
        assert isinstance(echo, m.ChatMessage) and echo.text == text, echo
    key = RedisKeys().chat(g.room_id)
    stored = await redis_client.lrange(key, 0, -1)  # type: ignore[misc]
    assert len(stored) == len(texts)
    for blob in stored:
        for text, _, _ in texts:
            assert text.encode() not in blob and text.split()[0].lower().encode() not in blob.lower()
    assert await redis_client.ttl(key) > 0
    # The process reads them back, in order, with who wrote each and whether it was private.
    kept = await ss.services(g.live).chat.transcript(g.room_id)
    assert [(x.text, x.sender, x.private) for x in kept] == [
        (text, seat.pid, message.private) for text, seat, message in texts
    ]
    assert kept[3].thread == g.ben.pid and kept[2].thread == g.wes.pid and kept[0].thread is None

    await g.host.socket.send(m.End())
    await g.ana.socket.expect(m.RoomEnded)
    assert await redis_client.exists(key) == 0
    assert await ss.services(g.live).chat.transcript(g.room_id) == []
