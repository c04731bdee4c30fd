"""PHI leak scan: a whole session with canary values, then every byte the server left behind is searched.

The session runs over the real HTTP API and signaling socket: sign-in (a canary username), a room with a
canary title, invites with canary display names (ASCII and non-ASCII), knocks, a lobby message, an admit,
a deny and a removal with canary texts, hands and media flags, audio only by choice (an audio-only span in
the attendance ledger), a leave, presence and attendance exports
(JSON, CSV and FHIR Encounters), a 42 CFR part 2 consent (canary recipient and purpose) with a disclosure to that recipient
and a refused one, break-glass access with a canary reason (reviewed, signed off), the chat saved to the
session record by the host and read back (issue 15), the end of the room and
sign-out; two webhook subscriptions (issue 16: one ids only, one allowed PHI over plain http) get the room's
events through the outbox table. The scan then reads:

- every file in the data folder (the SQLite database, its WAL, keys, anything else), byte for byte;
- on PostgreSQL (when VIOP_TEST_POSTGRES_URL is set): a ``pg_dump`` of the database and every file of the
  cluster's data directory (tables, WAL) when the test can read it;
- every Redis key name and every value of every type;
- every log line the server wrote (all loggers, debug level);
- every webhook message a loopback receiver got (body as sent), after verifying its signature.

Each canary is searched in UTF-8, UTF-16 (LE and BE) and JSON-escaped, each in its original, lower, upper
and case-folded spelling. The scanner is first shown to find each form in a control blob, and the session
proves the canaries really went through the server (the host saw them in the lobby, the export has them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select

from tests.api.support import Api, bearer
from tests.hostile.frames import real_offer_sdp
from tests.hostile.support import ServerLogs, captured_server_logs
from tests.session.webhook_support import Receiver, new_receiver, serving
from tests.support import run_live_server, test_settings
from vIOP.auth.permissions import Role
from vIOP.client.signaling import SignalingClient, SignalingClosed
from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms.audio_only import AudioOnlyReason
from vIOP.rooms.ports import AttendanceQuery
from vIOP.signaling import messages as m
from vIOP.storage.database import upgrade
from vIOP.storage.schema import webhook_outbox
from vIOP.webhooks.events import WebhookEventType

POSTGRES_URL = os.environ.get("VIOP_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]

CANARIES = {
    "username": "dr.QuillonCanary",
    "shown": "Dr. Quillon Canaryshown",  # the account's display name, seen by clients in the room
    "title": "Thornfield Canary Group",
    "client_a": "Marisol Canarywood",
    "client_b": "Zoë Ångström-Canaré",  # non-ASCII: UTF-8 and UTF-16 differ from ASCII here
    "client_c": "Bartholomew Canaryfield",
    "lobby": "Canarylobby: your counselor is running late",
    "deny": "Canarydeny: not today, call the front desk",
    "remove": "Canaryremove: see you tomorrow",
    "recipient": "Canarysworth County Recovery Court",  # a 42 CFR part 2 consent's recipient
    "purpose": "Canarypurpose probation check-ins",
    "reason": "Canaryreason: the host is out sick and a client called in crisis",  # a break-glass reason
    # issue 15, chat: a line of each kind, and lines refused (switch off, over the limit)
    "chat_lobby": "Canarychatlobby: my camera does not work",
    "chat_lobby_reply": "Canarychatreply: audio only is fine, come in",
    "chat_room": "Canarychatroom: I used again on Saturday",
    "chat_private": "Canarychatprivate: can I talk to you after group",
    "chat_refused": "Canarychatrefused: nobody should see this",
    "chat_overlong": "Canarychatoverlong",  # padded past the limit in the session
    # issue 15: a co-host added by username, who renames themself over the API
    "cohost": "dr.CohostCanary",
    "cohost_shown": "Dr. Canaryrenamed Cohost",
    # issue 16: a track's title (sealed like a room's), a client enrolled by name
    "track_title": "Larkspur Canary Evening Track",
    "enrolled": "Philippa Canaryenrolled",
}
# Chat lines travel between processes on Redis pub/sub: these are also searched in everything Redis saw
# (MONITOR) while the session ran, not only in what it kept.
CHAT_CANARIES = (
    "chat_lobby",
    "chat_lobby_reply",
    "chat_room",
    "chat_private",
    "chat_refused",
    "chat_overlong",
)
PASSWORD = "correct horse battery staple"
# Credentials made during the session, searched like the canaries (issue 11: an invite link and the device
# credential it is exchanged for are stored only as SHA-256).
SESSION_SECRETS: dict[str, str] = {}


def forms(canary: str) -> Iterator[tuple[str, bytes]]:
    """Every byte string the canary could be stored or logged as."""
    for spelling in dict.fromkeys([canary, canary.lower(), canary.upper(), canary.casefold()]):
        yield spelling, spelling.encode("utf-8")
        yield spelling, spelling.encode("utf-16-le")
        yield spelling, spelling.encode("utf-16-be")
        escaped = json.dumps(spelling)[1:-1].encode()  # "\u00eb" style, as json.dumps writes by default
        if escaped != spelling.encode():
            yield spelling, escaped


def hits(where: str, blob: bytes) -> list[str]:
    return [
        f"{where}: {name} as {encoded[:40]!r}"
        for name, canary in {**CANARIES, **SESSION_SECRETS}.items()
        for _spelling, encoded in forms(canary)
        if encoded in blob
    ]


def test_the_scanner_finds_every_form_it_looks_for() -> None:
    for name, canary in CANARIES.items():
        for spelling, encoded in forms(canary):
            assert hits("control", b"..." + encoded + b"..."), (name, spelling)
    assert hits("control", b"nothing to see") == []


# --- the session --------------------------------------------------------------------------------------------


async def socket(api: Api, credential: str, room_id: str | None) -> SignalingClient:
    body = {"room_id": room_id} if room_id else None
    response = await api.http.post("/api/v1/signal-tickets", json=body, headers=bearer(credential))
    assert response.status_code == 200, response.text
    return await SignalingClient.connect(response.json()["ws_url"], origin=api.live.base_url)


async def subscribe_receiver(api: Api, receiver: Receiver) -> None:
    """Issue 16: two webhook subscriptions on a loopback receiver, one ids only and one allowed PHI (over
    plain http, so it gets no names either); the room's events reach both, through the outbox table."""
    admin = await api.user(Role.ADMIN)
    for path, allow_phi in (("ids", False), ("phi-over-http", True)):
        body = {
            "url": receiver.url(path),
            "events": [e.value for e in WebhookEventType],
            "allow_phi": allow_phi,
        }
        created = await api.http.post("/api/v1/webhooks", json=body, headers=admin.headers)
        assert created.status_code == 201, created.text
        receiver.secrets[path] = SESSION_SECRETS[f"webhook_secret_{path}"] = created.json()["secret"]


async def delivered_webhooks(receiver: Receiver) -> list[bytes]:
    """Every message both subscriptions got for the room (started, ended, two clients' attendance)."""
    while sum(len(got) for got in receiver.received.values()) < 8:
        receiver.arrived.clear()
        await asyncio.wait_for(receiver.arrived.wait(), timeout=30)
    assert receiver.refused == 0
    kinds = sorted(m.body["type"] for got in receiver.received.values() for m in got)
    assert kinds == sorted(
        ["session.started", "session.ended", "attendance.finalized", "attendance.finalized"] * 2
    )
    return [m.raw for got in receiver.received.values() for m in got]


async def full_session(api: Api) -> None:
    await api.account(Role.CLINICIAN, CANARIES["username"], PASSWORD, CANARIES["shown"])
    login = await api.http.post(
        "/api/v1/auth/login", json={"username": CANARIES["username"], "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    room = await api.http.post(
        "/api/v1/rooms", json={"kind": "group", "title": CANARIES["title"]}, headers=bearer(token)
    )
    assert room.status_code == 201, room.text
    room_id = room.json()["id"]
    invites, client_ids = {}, {}
    for who in ("client_a", "client_b", "client_c"):
        created = await api.http.post(
            f"/api/v1/rooms/{room_id}/invites", json={"display_name": CANARIES[who]}, headers=bearer(token)
        )
        assert created.status_code == 201, created.text
        invites[who] = created.json()["invite_token"]
        client_ids[who] = created.json()["client_id"]
    exchanged = await api.http.post("/api/v1/invites/exchange", json={"invite_token": invites["client_a"]})
    assert exchanged.status_code == 200, exchanged.text
    SESSION_SECRETS.update(invite_link=invites["client_a"], device_token=exchanged.json()["device_token"])
    invites["client_a"] = exchanged.json()["device_token"]

    host = await socket(api, token, room_id)
    assert isinstance(await host.request(m.Join()), m.Welcome)
    clients = {who: await socket(api, invite, None) for who, invite in invites.items()}
    pids = {}
    for who, client in clients.items():
        welcome = await client.request(m.Join())
        assert isinstance(welcome, m.Welcome)
        pids[who] = welcome.participant_id
        await client.expect(m.Waiting)
    lobby = await host.expect(m.Lobby)
    while len(lobby.waiting) < 3:
        lobby = await host.expect(m.Lobby)
    assert {e.display_name for e in lobby.waiting} == {CANARIES[w] for w in clients}  # they went through

    await host.send(m.LobbyMessage(participant_id=pids["client_a"], message=CANARIES["lobby"]))
    while (await clients["client_a"].expect(m.Waiting)).message != CANARIES["lobby"]:
        pass
    # Lobby chat, both ways, before admission.
    await clients["client_a"].send(m.Chat(text=CANARIES["chat_lobby"], private=True))
    await expect_line(host, CANARIES["chat_lobby"])
    await host.send(m.Chat(text=CANARIES["chat_lobby_reply"], private=True, to=pids["client_a"]))
    await expect_line(clients["client_a"], CANARIES["chat_lobby_reply"])
    await host.send(m.Deny(participant_id=pids["client_b"], message=CANARIES["deny"]))
    assert (await clients["client_b"].expect(m.Denied)).message == CANARIES["deny"]
    # A revocation (its Redis key and stream entry; the sign-out below makes another kind).
    spare = await api.http.post(
        f"/api/v1/rooms/{room_id}/invites", json={"display_name": CANARIES["client_b"]}, headers=bearer(token)
    )
    revoked = await api.http.delete(f"/api/v1/invites/{spare.json()['id']}", headers=bearer(token))
    assert revoked.status_code == 204
    for who in ("client_a", "client_c"):
        await host.send(m.Admit(participant_id=pids[who]))
        await clients[who].expect(m.Admitted)
    for person in (host, clients["client_a"], clients["client_c"]):
        # An offer is what enters the room (and opens an attendance interval); ICE need not connect.
        answer = await person.request(m.Offer(sdp=await real_offer_sdp()), within=30)
        assert isinstance(answer, m.ServerAnswer), answer
    await chat_session(host, clients["client_a"], clients["client_c"])
    # The host saves the chat to the session record (sealed in the database) and reads it back: the chat
    # canaries are now in the database too, and the scan below finds none of them in plaintext.
    transcript_url = f"/api/v1/rooms/{room_id}/chat-transcript"
    saved = await api.http.post(transcript_url, headers=bearer(token))
    assert saved.status_code == 201, saved.text
    read = await api.http.get(transcript_url, headers=bearer(token))
    assert read.status_code == 200, read.text
    kept = {line["text"] for line in read.json()["lines"]}
    assert {CANARIES[k] for k in ("chat_lobby", "chat_lobby_reply", "chat_room", "chat_private")} <= kept
    await cohost_and_talk_session(api, token, room_id, host, clients["client_a"], pids["client_a"])
    await clients["client_a"].send(m.RaiseHand(up=True))
    await clients["client_a"].send(m.SetMedia(audio=False))
    # Audio only: a span in the attendance ledger (ids, times, reason) while the person is inside. ICE is
    # not connected here, so the relay's report of it is made the way the relay makes it.
    await clients["client_a"].send(m.SaveData(on=True))
    delivery = api.services.live.delivery
    assert delivery is not None
    delivery.set_audio_only(RoomId(room_id), ParticipantId(pids["client_a"]), AudioOnlyReason.SAVE_DATA)
    assert (await clients["client_a"].expect(m.AudioOnly)).on
    assert (await host.expect(m.AudioOnly)).participant_id == pids["client_a"]
    await delivery.audio_only_settled()
    await host.send(m.Remove(participant_id=pids["client_c"], message=CANARIES["remove"]))
    assert (await clients["client_c"].expect(m.Removed)).message == CANARIES["remove"]
    await clients["client_a"].send(m.Leave())
    presence = await api.http.get("/api/v1/presence", headers=bearer(token))
    assert presence.status_code == 200
    report = await api.http.get("/api/v1/attendance", params={"room_id": room_id}, headers=bearer(token))
    assert report.status_code == 200 and CANARIES["client_a"] in report.text
    ledger = api.services.rooms.attendance
    assert ledger is not None
    stays = await ledger.intervals(AttendanceQuery(room_id=RoomId(room_id)))
    assert [sp.reason for i in stays for sp in i.audio_only] == [AudioOnlyReason.SAVE_DATA]  # stored
    csv = await api.http.get("/api/v1/attendance", params={"format": "csv"}, headers=bearer(token))
    assert csv.status_code == 200
    # The FHIR export (issue 16) leaves for an EHR: ids only, no name, no room title, even for the host.
    fhir = await api.http.get("/api/v1/attendance", params={"format": "fhir"}, headers=bearer(token))
    assert fhir.status_code == 200 and '"Encounter"' in fhir.text
    assert not [name for name, value in CANARIES.items() if value.casefold() in fhir.text.casefold()]
    await compliance_session(api, room_id, client_ids["client_a"])
    await program_session(api, token)
    await host.send(m.End())
    await host.expect(m.RoomEnded)
    for client in [host, *clients.values()]:
        with contextlib.suppress(SignalingClosed):
            await client.close()
    assert (await api.http.post("/api/v1/auth/logout", headers=bearer(token))).status_code == 204


async def program_session(api: Api, token: str) -> None:
    """Issue 16: a track in progress (its lobby open), a client enrolled by name who knocks with the
    enrollment link, the enrollment listing, and a calendar feed read through its secret URL."""
    start = datetime.now(UTC) - timedelta(minutes=1)
    track = await api.http.post(
        "/api/v1/tracks",
        json={
            "title": CANARIES["track_title"], "time_zone": "UTC", "first_start": start.strftime("%Y-%m-%dT%H:%M"),
            "rrule": "FREQ=DAILY", "duration_minutes": 60,
        },
        headers=bearer(token),
    )  # fmt: skip
    assert track.status_code == 201, track.text
    track_id = track.json()["id"]
    enrolled = await api.http.post(
        f"/api/v1/tracks/{track_id}/enrollments",
        json={"display_name": CANARIES["enrolled"]},
        headers=bearer(token),
    )
    assert enrolled.status_code == 201, enrolled.text
    link = {"enrollment_token": enrolled.json()["enrollment_token"]}
    knocked = await api.http.post("/api/v1/enrollments/knock", json=link)
    assert knocked.status_code == 200, knocked.text
    SESSION_SECRETS.update(
        enrollment_link=link["enrollment_token"], enrollment_device=knocked.json()["device_token"]
    )
    client = await socket(api, knocked.json()["device_token"], None)
    assert isinstance(await client.request(m.Join()), m.Welcome)
    await client.expect(m.Waiting)
    listed = await api.http.get(f"/api/v1/tracks/{track_id}/enrollments", headers=bearer(token))
    assert CANARIES["enrolled"] in listed.text  # the name went through the server
    feed = await api.http.post("/api/v1/calendar-feeds", headers=bearer(token))
    assert feed.status_code == 201, feed.text
    feed_path = httpx.URL(feed.json()["url"]).path
    SESSION_SECRETS["calendar_feed"] = feed_path.removeprefix("/calendar/").removesuffix(".ics")
    served = await api.http.get(feed_path)
    assert CANARIES["track_title"] in served.text
    with contextlib.suppress(SignalingClosed):
        await client.close()


async def expect_line(reader: SignalingClient, text: str) -> None:
    """The chat line ``text`` reaches ``reader`` (after the sender's own echo, when it is the sender)."""
    while (await reader.expect(m.ChatMessage)).text != text:
        pass


async def chat_session(host: SignalingClient, client_a: SignalingClient, client_c: SignalingClient) -> None:
    """Room chat and private chat inside, then the switch off and a refused line, and a line over the limit
    (a decode error): each canary went through the server (seen by its readers) or was refused."""
    await client_a.send(m.Chat(text=CANARIES["chat_room"]))
    for reader in (host, client_c):
        await expect_line(reader, CANARIES["chat_room"])
    await client_c.send(m.Chat(text=CANARIES["chat_private"], private=True))
    await expect_line(host, CANARIES["chat_private"])
    await host.send(m.SetChatPolicy(clients_may_chat=False))
    while (await client_a.expect(m.ChatPolicy)).clients_may_chat:  # told True on admission, then False
        pass
    refused = await client_a.request(m.Chat(text=CANARIES["chat_refused"]))
    assert isinstance(refused, m.ErrorMessage) and refused.code == "chat_off"
    overlong = CANARIES["chat_overlong"] + " x" * m.MAX_CHAT_CHARS
    await client_c.send_raw(json.dumps({"type": "chat", "text": overlong, "id": "long"}))
    error = await client_c.expect(m.ErrorMessage)
    assert (error.code, error.id) == ("invalid_message", "long")
    await host.send(m.SetChatPolicy(clients_may_chat=True))


async def cohost_and_talk_session(
    api: Api, token: str, room_id: str, host: SignalingClient, client: SignalingClient, client_pid: str
) -> None:
    """Issue 15: a co-host added by a canary username and renamed to a canary name joins; the client asks to
    talk and the co-host acknowledges it (the request: an id and a time in the sealed room)."""
    await api.account(Role.CLINICIAN, CANARIES["cohost"], PASSWORD)
    body = {"username": CANARIES["cohost"]}
    added = await api.http.post(f"/api/v1/rooms/{room_id}/cohosts", json=body, headers=bearer(token))
    assert added.status_code == 201, added.text
    cohost_token = (await api.services.tokens.issue(added.json()["user_id"], Role.CLINICIAN)).token
    body = {"display_name": CANARIES["cohost_shown"]}
    renamed = await api.http.put("/api/v1/account/display-name", json=body, headers=bearer(cohost_token))
    assert renamed.status_code == 200, renamed.text
    cohost = await socket(api, cohost_token, room_id)
    try:
        assert isinstance(await cohost.request(m.Join()), m.Welcome)
        await client.send(m.NeedToTalk())
        assert (await host.expect(m.TalkRequest)).pending
        await cohost.send(m.AcknowledgeNeed(participant_id=client_pid))
        while (await client.expect(m.TalkRequest)).pending:
            pass
    finally:
        with contextlib.suppress(SignalingClosed):
            await cohost.close()


async def compliance_session(api: Api, room_id: str, client_id: str) -> None:
    """A Part 2 consent (canary recipient and purpose), a disclosure to that recipient, a refused one, and
    break-glass access with a canary reason, reviewed and signed off."""
    admin, second = await api.user(Role.ADMIN), await api.user(Role.ADMIN)
    consent = {
        "recipient": CANARIES["recipient"],
        "purpose": CANARIES["purpose"],
        "data": ["attendance"],
        "expires_at": "2099-01-01T00:00:00Z",
    }
    added = await api.http.post(f"/api/v1/clients/{client_id}/consents", json=consent, headers=admin.headers)
    assert added.status_code == 201, added.text
    disclosure = {"room_id": room_id, "client": client_id, "recipient": CANARIES["recipient"]}
    disclosed = await api.http.get("/api/v1/attendance", params=disclosure, headers=admin.headers)
    assert disclosed.status_code == 200 and CANARIES["client_a"] in disclosed.text, disclosed.text
    refused = await api.http.get(
        "/api/v1/attendance", params={**disclosure, "client": ""}, headers=admin.headers
    )
    assert refused.status_code == 403 and CANARIES["recipient"] not in refused.text
    grant = await api.http.post(
        "/api/v1/break-glass", json={"room_id": room_id, "reason": CANARIES["reason"]}, headers=admin.headers
    )
    assert grant.status_code == 201, grant.text
    opened = await api.http.get(
        "/api/v1/attendance",
        params={"room_id": room_id},
        headers={**admin.headers, "X-Break-Glass": grant.json()["id"]},
    )
    assert opened.status_code == 200 and CANARIES["client_a"] in opened.text
    review = await api.http.get("/api/v1/break-glass", headers=second.headers)
    assert CANARIES["reason"] in review.text  # the reason went through the server
    signed = await api.http.post(f"/api/v1/break-glass/{grant.json()['id']}/sign-off", headers=second.headers)
    assert signed.status_code == 200, signed.text
    listed = await api.http.get(f"/api/v1/clients/{client_id}/consents", headers=admin.headers)
    assert CANARIES["recipient"] in listed.text and CANARIES["purpose"] in listed.text


async def session_over_http(live: Any) -> list[bytes]:
    """The session; returns the webhook messages the receiver got (issue 16), to be scanned too."""
    # Sent as the User-Agent of every HTTP request: the audit log keeps only its keyed hash (issue 11).
    CANARIES["user_agent"] = "CanaryBrowser/9.9 (Hollingsworth Canaryagent)"
    agent = {"User-Agent": CANARIES["user_agent"]}
    receiver = new_receiver()
    async with (
        httpx.AsyncClient(base_url=live.base_url, timeout=30, trust_env=False, headers=agent) as http,
        serving(receiver),
    ):
        api = Api(live, http)
        await subscribe_receiver(api, receiver)
        await full_session(api)
        messages = await delivered_webhooks(receiver)
        async with api.services.storage.db.read() as conn:  # the outbox table the file scan reads
            outbox_rows = (await conn.execute(select(func.count()).select_from(webhook_outbox))).scalar_one()
        assert outbox_rows == 8
        return messages


# --- the places to scan -------------------------------------------------------------------------------------


def scan_files(root: Path) -> tuple[int, list[str]]:
    found, count = [], 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            count += 1
            found += hits(str(path), path.read_bytes())
    return count, found


async def scan_redis(url: str, match: str | None = None) -> tuple[int, list[str]]:
    client = aioredis.from_url(url)
    found: list[str] = []
    count = 0
    try:
        async for key in client.scan_iter(match=match, count=500):
            count += 1
            found += hits(f"redis key {key[:60]!r}", key)
            kind = (await client.type(key)).decode()
            values: list[bytes] = []
            if kind == "string":
                values = [await client.get(key) or b""]
            elif kind == "hash":
                values = [b for pair in (await client.hgetall(key)).items() for b in pair]
            elif kind == "list":
                values = await client.lrange(key, 0, -1)
            elif kind == "set":
                values = list(await client.smembers(key))
            elif kind == "zset":
                values = [member for member, _ in await client.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                values = [
                    b for _id, fields in await client.xrange(key) for pair in fields.items() for b in pair
                ]
            else:
                raise AssertionError(f"unexpected Redis type {kind} at {key!r}")
            found += [hit for value in values for hit in hits(f"redis value of {key[:60]!r}", value)]
    finally:
        await client.aclose()
    return count, found


class RedisMonitor:
    """Everything Redis is sent while it runs (``MONITOR``), raw: what a MONITOR or a captured connection
    would show, pub/sub messages included."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen = bytearray()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RedisMonitor:
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            reader, self._writer = await asyncio.open_unix_connection(parts.path)
        else:
            reader, self._writer = await asyncio.open_connection(parts.hostname, parts.port or 6379)
        self._writer.write(b"MONITOR\r\n")
        assert (await reader.readline()).startswith(b"+OK")

        async def read() -> None:
            while chunk := await reader.read(65536):
                self.seen += chunk

        self._task = asyncio.create_task(read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._writer is not None and self._task is not None
        await asyncio.sleep(0.2)  # the last replies in flight: bounded, the lines are long sent
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._writer.close()


def chat_hits(where: str, blob: bytes) -> list[str]:
    return [
        f"{where}: {name} ({spelling!r})"
        for name in CHAT_CANARIES
        for spelling, encoded in forms(CANARIES[name])
        if encoded in blob
    ]


def scan_postgres(url: str, workdir: Path) -> tuple[int, list[str]]:
    """A pg_dump of the database, and the cluster's files when readable (tables and WAL, raw)."""
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    dump = workdir / "dump.sql"
    command = [
        "pg_dump",
        "--no-owner",
        "--host",
        socket_dir,
        "--username",
        parts.username or "postgres",
        parts.path.lstrip("/"),
    ]
    with dump.open("wb") as out:
        subprocess.run(command, stdout=out, check=True, timeout=120)
    found = hits("pg_dump", dump.read_bytes())
    files = 0
    data = Path(socket_dir) / "data"
    if data.is_dir() and os.access(data, os.R_OK | os.X_OK):
        files, on_disk = scan_files(data)
        found += on_disk
    return files, found


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "postgresql":
        from tests.storage.conftest import _reset_postgres

        assert POSTGRES_URL is not None
        await _reset_postgres(POSTGRES_URL)
        await upgrade(POSTGRES_URL)  # a server migrates SQLite itself; PostgreSQL is `vIOP db upgrade`
        return POSTGRES_URL
    return None  # SQLite in the test's data folder


async def test_no_canary_anywhere_after_a_full_session(
    data_dir: Path, redis_url: str, redis_client: aioredis.Redis, database_url: str | None, tmp_path: Path
) -> None:
    overrides: dict[str, Any] = {"database_url": database_url} if database_url else {}
    logs: ServerLogs
    with captured_server_logs("debug") as logs:
        async with (
            RedisMonitor(redis_url) as monitor,
            run_live_server(test_settings(data_dir, redis_url, **overrides)) as live,
        ):
            webhook_messages = await session_over_http(live)
            # The node's registry record goes at shutdown: scanned while it is there.
            node_keys, node_hits = await scan_redis(redis_url, match="viop:node*")
    files, file_hits = scan_files(data_dir)
    keys, redis_hits = await scan_redis(redis_url)
    redis_hits += node_hits
    assert node_keys >= 2  # the record and the index
    assert await redis_client.keys("viop:lease:*")  # the room's media lease (released, kept) was scanned
    log_hits = [hit for i, line in enumerate(logs.lines()) for hit in hits(f"log line {i}", line.encode())]
    pg_files, pg_hits = scan_postgres(database_url, tmp_path) if database_url else (0, [])
    monitor_hits = chat_hits("Redis MONITOR", bytes(monitor.seen))
    webhook_hits = [
        hit for i, raw in enumerate(webhook_messages) for hit in hits(f"webhook message {i}", raw)
    ]
    assert b"PUBLISH" in monitor.seen and b"viop:chat" in monitor.seen  # the chat went through Redis
    print(
        f"PHI scan: {files} files, {keys} Redis keys, {len(logs.lines())} log lines, "
        f"{len(monitor.seen)} bytes of Redis MONITOR"
        + (f", pg_dump + {pg_files} cluster files" if database_url else "")
    )
    assert files >= 1 and keys >= 5 and len(logs.lines()) >= 20  # there was something to scan
    assert file_hits + redis_hits + log_hits + pg_hits + monitor_hits + webhook_hits == []


def test_pg_dump_is_available_where_postgres_tests_run() -> None:
    if POSTGRES_URL:
        assert shutil.which("pg_dump"), "VIOP_TEST_POSTGRES_URL is set but pg_dump is not on PATH"
