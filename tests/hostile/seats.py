"""Participants for hostile-input runs against a live server, over the real signaling socket.

A :class:`Seat` is one participant identity that (re)opens its socket as often as needed: with its resume
token after a drop or an error close, with a plain ``join`` after a close 1000. Three uses:

- a fuzzing seat sends hostile frames, each followed by a ``ping`` probe; the probe's ``pong`` proves the
  server processed the frame and is still answering (anything else within the deadline is a hang);
- a helper seat reads its socket in the background, admits everyone when it hosts, and comes back
  whenever the fuzzer removes, denies or ends it;
- a bystander pings in its own room throughout and records every round trip.

Every server message any seat receives is checked: an ``internal`` error is a server fault. Every close
must be one PROTOCOL.md documents, preceded by the error it documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.client.signaling import (
    ConnectRefused,
    ServerProtocolError,
    SignalingClient,
    SignalingClosed,
)
from vIOP.signaling import messages as m

HANG_SECONDS = 20.0  # a busy shared 2-core machine; a hang is a frame never answered at all
REOPEN_ATTEMPTS = 40
# PROTOCOL.md "Close codes": what a close may follow, for closes a hostile client can cause.
ERROR_BEFORE_CLOSE: dict[int, frozenset[str] | None] = {
    1000: None,  # leave, denied, removed, room ended, replaced: no error first
    1003: frozenset({"malformed_frame"}),
    1008: frozenset(
        {"rate_limited", "unauthenticated", "resume_rejected", "already_connected", "bad_request"}
    ),
    1009: frozenset({"frame_too_large"}),
}

# uvicorn's ws_max_size in bench/scenarios/live_server.py and vIOP/server.py: twice the protocol's frame cap.
TRANSPORT_MAX_BYTES = 2 * m.MAX_FRAME_BYTES

TicketSource = Callable[[], Awaitable[str]]


def _size(frame: str | bytes) -> int:
    return len(frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame)


@dataclass
class SeatReport:
    frames: int = 0
    replies: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    reopens: int = 0
    problems: list[str] = field(default_factory=list)


class Seat:
    def __init__(self, name: str, tickets: TicketSource, origin: str) -> None:
        self.name = name
        self.tickets = tickets
        self.origin = origin
        self.client: SignalingClient | None = None
        self.welcome: m.Welcome | None = None
        self.report = SeatReport()
        self.on_room_ended: Callable[[], Awaitable[None]] | None = None
        self._probe_ids = itertools.count(1)
        self._resumable = False
        self._last: m.ServerMessage | None = None
        self._current: str | bytes = b"(join)"

    @property
    def participant_id(self) -> str | None:
        return self.welcome.participant_id if self.welcome else None

    # --- opening --------------------------------------------------------------------------------------

    async def open(self, stop: asyncio.Event | None = None) -> None:
        """Join (or resume) with a fresh ticket; retried a bounded number of times (or until ``stop``)."""
        for attempt in range(REOPEN_ATTEMPTS):
            await self.close()
            if stop is not None and stop.is_set():
                break
            try:
                client = await SignalingClient.connect(await self.tickets(), origin=self.origin)
            except ConnectRefused:
                await asyncio.sleep(min(0.05 * attempt, 0.5))
                continue
            self.client = client
            token = self.welcome.resume_token if (self._resumable and self.welcome) else None
            try:
                reply = await client.request(m.Join(resume_token=token), within=HANG_SECONDS)
            except (SignalingClosed, TimeoutError, ServerProtocolError) as exc:
                self._problem_if_fault(exc)
                self._resumable = False
                continue
            if isinstance(reply, m.Welcome):
                self.welcome, self._resumable = reply, True
                self.report.reopens += 1
                return
            assert isinstance(reply, m.ErrorMessage), reply
            self._check(reply)
            self._resumable = False
            if reply.code == "room_ended" and self.on_room_ended is not None:
                await self.on_room_ended()
            await asyncio.sleep(min(0.05 * attempt, 0.5))
        raise RuntimeError(f"{self.name}: could not rejoin in {REOPEN_ATTEMPTS} attempts")

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
            self.client = None

    # --- fuzzing --------------------------------------------------------------------------------------

    async def probe(self, frame: str | bytes) -> None:
        """Send ``frame`` then a ping; wait for that ping's pong or a documented close."""
        if self.client is None:
            try:
                await self.open()
            except RuntimeError as exc:
                self.report.problems.append(str(exc))
                raise
        assert self.client is not None
        probe_id = f"probe-{next(self._probe_ids)}"
        self.report.frames += 1
        self._current = frame
        try:
            await self.client.send_raw(frame)
            await self.client.send(m.Ping(id=probe_id))
            async with asyncio.timeout(HANG_SECONDS):
                while True:
                    message = await self.client.recv(within=None)
                    if isinstance(message, m.Pong) and message.id == probe_id:
                        return
                    self._check(message)
        except SignalingClosed as closed:
            self._closed(closed, frame)
        except TimeoutError:
            self.report.problems.append(f"{self.name}: no answer within {HANG_SECONDS} s to {frame[:300]!r}")
            await self.close()
        except ServerProtocolError as exc:
            self.report.problems.append(f"{self.name}: undecodable server frame after {frame[:300]!r}: {exc}")
            await self.close()

    def _closed(self, closed: SignalingClosed, frame: str | bytes) -> None:
        code = closed.close_code
        self.report.closes[code if code is not None else 1006] += 1
        expected = ERROR_BEFORE_CLOSE.get(code) if code is not None else None
        if code not in ERROR_BEFORE_CLOSE:
            self.report.problems.append(f"{self.name}: undocumented close {code} after {frame[:300]!r}")
        elif code == 1009 and _size(frame) > TRANSPORT_MAX_BYTES:
            pass  # PROTOCOL.md: over uvicorn's own limit, uvicorn closes 1009 before the codec sees it
        elif expected is not None:
            last = self._last
            if not (isinstance(last, m.ErrorMessage) and last.code in expected):
                self.report.problems.append(
                    f"{self.name}: close {code} without its error, after {frame[:300]!r}"
                )
        # After 1000 the participant is gone for good (left, removed, denied, ended): join afresh.
        self._resumable = self._resumable and code != 1000
        self.client = None

    # --- passive use ----------------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event, admit: bool = False) -> None:
        """Read until ``stop``; when hosting, admit whoever waits; come back after any close."""
        while not stop.is_set():
            if self.client is None:
                try:
                    await self.open(stop)
                except RuntimeError:
                    continue  # e.g. the fuzzer locked the room: knocking is refused until it unlocks
            assert self.client is not None
            try:
                message = await self.client.recv(within=0.5)
            except TimeoutError:
                continue
            except SignalingClosed as closed:
                self._closed(closed, b"(helper)")
                continue
            except ServerProtocolError as exc:
                self.report.problems.append(f"{self.name}: undecodable server frame: {exc}")
                await self.close()
                continue
            self._check(message)
            if admit and isinstance(message, m.Lobby) and message.waiting:
                with contextlib.suppress(SignalingClosed):
                    await self.client.send(m.AdmitAll())

    async def ping_loop(self, stop: asyncio.Event, rtts: list[float], interval: float = 0.05) -> None:
        """The bystander: ping until ``stop``; every round trip recorded, any failure is a problem."""
        assert self.client is not None
        while not stop.is_set():
            started = time.perf_counter()
            try:
                reply = await self.client.request(m.Ping(), within=HANG_SECONDS)
            except (SignalingClosed, TimeoutError, ServerProtocolError) as exc:
                self.report.problems.append(f"{self.name}: bystander lost: {type(exc).__name__} {exc}")
                return
            rtts.append(time.perf_counter() - started)
            if not isinstance(reply, m.Pong):
                self.report.problems.append(f"{self.name}: bystander got {reply!r} for a ping")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()

    # --- checks ---------------------------------------------------------------------------------------

    def _check(self, message: m.ServerMessage) -> None:
        self._last = message
        kind = m.message_type(message)
        if isinstance(message, m.ErrorMessage):
            kind = f"error:{message.code}"
            if message.code == "internal":
                self.report.problems.append(f"{self.name}: server fault after {self._current[:400]!r}")
        self.report.replies[kind] += 1

    def _problem_if_fault(self, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            self.report.problems.append(f"{self.name}: join not answered within {HANG_SECONDS} s")
        elif isinstance(exc, ServerProtocolError):
            self.report.problems.append(f"{self.name}: undecodable server frame on join: {exc}")


async def pair_in_room(live: LiveServer, name: str) -> tuple[Seat, Seat]:
    """A clinician and a client, both joined (the client waits in the lobby) in a new room of their own."""
    host = await ss.clinician(live, f"dr.{name}")
    scope = await ss.room(live, host)
    client_principal = await ss.invite(live, host, scope, name.title())
    host_seat = Seat(
        f"{name}-host", ss.ticket_source(live, host.principal, scope, host.session), live.base_url
    )
    client_seat = Seat(f"{name}-client", ss.ticket_source(live, client_principal, scope, None), live.base_url)
    await host_seat.open()
    await client_seat.open()
    return host_seat, client_seat


@dataclass
class Bystanders:
    """A host and an admitted client pinging in their own room while something hostile goes on."""

    host: Seat
    client: Seat
    rtts: list[float] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, live: LiveServer) -> Bystanders:
        host, client = await pair_in_room(live, "bystander")
        assert host.client is not None and client.client is not None
        await host.client.send(m.AdmitAll())
        await client.client.expect(m.Admitted)
        pair = cls(host, client)
        pair.tasks = [
            asyncio.create_task(host.ping_loop(pair.stop, pair.rtts)),
            asyncio.create_task(client.ping_loop(pair.stop, pair.rtts)),
        ]
        return pair

    async def finish(self) -> list[str]:
        """Stop pinging; the problems either of them had (none means nobody noticed anything)."""
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for seat in (self.host, self.client):
            await seat.close()
        return self.host.report.problems + self.client.report.problems

    def summary(self) -> str:
        rtts = sorted(self.rtts)
        if not rtts:
            return "bystander: no pings"
        return (
            f"bystander {len(rtts)} pings, p50 {rtts[len(rtts) // 2] * 1000:.1f} ms, "
            f"p99 {rtts[int(len(rtts) * 0.99)] * 1000:.1f} ms, max {rtts[-1] * 1000:.1f} ms"
        )
