"""The room's chat record (issue 15): every line kept sealed in Redis while the room is live and gone with
the room's end; a host saves it to the session record and reads it back (HTTP), everyone else is refused.
Real redis-server, real SQLite, real uvicorn sockets."""

from __future__ import annotations

import httpx
import redis.asyncio as aioredis
from sqlalchemy import select

from tests.api import signal_support as ss
from tests.api import test_chat as chat_world
from tests.api.support import Api, assert_error, bearer
from vIOP.auth.permissions import Role
from vIOP.signaling import messages as m
from vIOP.storage.redis_rooms import RedisKeys
from vIOP.storage.schema import chat_transcripts

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


async def test_a_host_saves_the_transcript_and_reads_back_exactly_the_lines(
    group: chat_world.Group,
) -> None:
    g = group
    services = ss.services(g.live)
    url = f"/api/v1/rooms/{g.room_id}/chat-transcript"
    record = await services.room_directory.get(g.room_id)
    host = bearer((await services.tokens.issue(record.host_user_id, Role.CLINICIAN)).token)
    async with httpx.AsyncClient(base_url=g.live.base_url, timeout=30, trust_env=False) as http:
        api = Api(g.live, http)
        assert_error(await http.get(url, headers=host), 404, "no_transcript")
        # A room with no chat yet: nothing to save, nothing written.
        empty_room = await http.post("/api/v1/rooms", json={"kind": "group", "title": "Quiet"}, headers=host)
        empty_url = f"/api/v1/rooms/{empty_room.json()['id']}/chat-transcript"
        assert_error(await http.post(empty_url, headers=host), 409, "nothing_to_save")

        sent = [
            (g.ana, m.Chat(text="Savedroomline one")),
            (g.ben, m.Chat(text="Savedprivateline two", private=True)),
            (g.wes, m.Chat(text="Savedlobbyline three", private=True)),
            (g.host, m.Chat(text="Savedhostline four", private=True, to=g.ben.pid)),
        ]
        for seat, message in sent:
            assert isinstance(await seat.request(message), m.ChatMessage)

        # Not a host: a client (their invite token), staff, an admin, another clinician. Refused, audited
        # `denied`, nothing saved.
        client_token = (await http.post(
            f"/api/v1/rooms/{g.room_id}/invites", json={"display_name": "Zed"}, headers=host
        )).json()["invite_token"]  # fmt: skip
        others = [bearer(client_token)] + [
            (await api.user(role)).headers for role in (Role.STAFF, Role.ADMIN, Role.CLINICIAN)
        ]
        for who in others:
            assert_error(await http.post(url, headers=who), 403, "forbidden")
            assert_error(await http.get(url, headers=who), 403, "forbidden")
        assert await services.chat_transcripts.get(g.room_id) is None
        assert len(await api.audit_rows("room.chat_transcript_saved", "denied")) == len(others)
        assert len(await api.audit_rows("room.chat_transcript_viewed", "denied")) == len(others)
        assert_error(
            await http.post("/api/v1/rooms/rm_nosuchroom/chat-transcript", headers=host), 404, "not_found"
        )

        # A body other than none or `{}`: refused, nothing saved.
        assert_error(
            await http.post(url, content=b"save", headers=host | {"Content-Type": "text/plain"}),
            415,
            "unsupported_media_type",
        )
        assert_error(await http.post(url, json={"lines": 3}, headers=host), 400, "bad_request")
        assert await services.chat_transcripts.get(g.room_id) is None

        saved = await http.post(url, headers=host)
        assert saved.status_code == 201, saved.text
        assert saved.json()["line_count"] == len(sent) and saved.json()["room_id"] == g.room_id
        [row] = await api.audit_rows("room.chat_transcript_saved", "success")
        assert (row["object_type"], row["object_id"], row["actor_id"]) == (
            "room",
            g.room_id,
            record.host_user_id,
        )

        # The room ends: its live chat is gone, the saved transcript stays and reads back exactly.
        await g.host.socket.send(m.End())
        await g.ana.socket.expect(m.RoomEnded)
        assert_error(await http.post(url, headers=host), 409, "conflict")
        read = await http.get(url, headers=host)
        assert read.status_code == 200, read.text
        body = read.json()
        assert body["saved_by"] == record.host_user_id
        assert [
            (x["text"], x["sender"], x["private"], x["thread"], x["sender_role"]) for x in body["lines"]
        ] == [
            ("Savedroomline one", g.ana.pid, False, None, "client"),
            ("Savedprivateline two", g.ben.pid, True, g.ben.pid, "client"),
            ("Savedlobbyline three", g.wes.pid, True, g.wes.pid, "client"),
            ("Savedhostline four", g.host.pid, True, g.ben.pid, "host"),
        ]
        assert [x["sender_name"] for x in body["lines"]] == [
            "Ana Chatwell",
            "Ben Chatwell",
            "Wes Chatwell",
            body["lines"][3]["sender_name"],
        ]
        [viewed] = await api.audit_rows("room.chat_transcript_viewed", "success")
        assert (viewed["object_type"], viewed["object_id"]) == ("room", g.room_id)
        # In the database only sealed.
        async with services.storage.db.read() as conn:
            blob = (await conn.execute(select(chat_transcripts.c.lines))).scalar_one()
        assert b"Savedroomline" not in blob and b"Ana Chatwell" not in blob
