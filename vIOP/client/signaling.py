"""An asyncio signaling client over the ``websockets`` package, for tests, benchmarks and ``vIOP.client``.

It obtains nothing itself: give it the ``ws://`` or ``wss://`` URL that already carries a ticket, and the
Origin to present. Messages go out and come back as the typed structs of ``vIOP.signaling.messages``;
frames are encoded and decoded by ``vIOP.signaling.codec`` (compression off, as measured to be faster).
The URL holds a ticket: this module never logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self, TypeVar

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin

from vIOP.errors import Unavailable, VIOPError
from vIOP.signaling.codec import DecodeFailure, decode_server, encode_text
from vIOP.signaling.messages import (
    MAX_SERVER_FRAME_BYTES,
    ClientMessage,
    Ping,
    RequestId,
    ServerMessage,
)

M = TypeVar("M", bound=ServerMessage)
C = TypeVar("C", bound=ClientMessage)

MAX_BACKLOG = 10_000  # messages set aside by expect()/request() while waiting for another one


class ConnectRefused(Unavailable):
    """The server refused the WebSocket handshake (bad ticket or Origin answer with an HTTP status)."""

    code = "connect_refused"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SignalingClosed(VIOPError):
    """The socket is closed; ``close_code`` says how (None when it dropped without a close frame)."""

    code = "closed"

    def __init__(self, close_code: int | None, reason: str) -> None:
        super().__init__(f"signaling socket closed ({close_code})")
        self.close_code = close_code
        self.reason = reason


class ServerProtocolError(VIOPError):
    """The server sent a frame this client cannot decode (a server bug or a newer protocol)."""

    code = "server_protocol_error"

    def __init__(self, message: str, failure: DecodeFailure | None = None) -> None:
        super().__init__(message)
        self.failure = failure


class SignalingClient:
    def __init__(self, connection: ClientConnection) -> None:
        self._ws = connection
        self._backlog: deque[ServerMessage] = deque()
        self._ids = itertools.count(1)
        self._heartbeat: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls, url: str, *, origin: str, open_timeout: float = 10.0, max_size: int = MAX_SERVER_FRAME_BYTES
    ) -> Self:
        try:
            connection = await connect(
                url,
                origin=Origin(origin),
                compression=None,
                max_size=max_size,
                open_timeout=open_timeout,
                proxy=None,  # never route signaling through an environment proxy
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ConnectRefused(f"handshake refused with HTTP {status}", status) from None
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise ConnectRefused(f"could not open the signaling socket: {type(exc).__name__}") from None
        return cls(connection)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self._ws.close_reason

    def next_id(self) -> int:
        return next(self._ids)

    async def send(self, message: ClientMessage) -> None:
        await self.send_raw(encode_text(message))

    async def send_raw(self, frame: str | bytes) -> None:
        """Send any frame as is: str as a text frame, bytes as a binary frame (for hostile-input tests)."""
        try:
            await self._ws.send(frame)
        except ConnectionClosed:
            raise SignalingClosed(self._ws.close_code, self._ws.close_reason or "") from None

    async def recv(self, within: float | None = 10.0) -> ServerMessage:
        """The next server message. Raises SignalingClosed, ServerProtocolError or TimeoutError."""
        if self._backlog:
            return self._backlog.popleft()
        async with asyncio.timeout(within):
            return await self._recv_wire()

    async def __aiter__(self) -> AsyncIterator[ServerMessage]:
        """Every server message until the socket closes (then the iteration simply ends)."""
        while True:
            try:
                yield await self.recv(within=None)
            except SignalingClosed:
                return

    async def expect(self, kind: type[M], within: float = 10.0) -> M:
        """Wait for the next message of ``kind``; messages of other kinds stay queued for recv()."""
        for index, message in enumerate(self._backlog):
            if isinstance(message, kind):
                del self._backlog[index]
                return message
        skipped: list[ServerMessage] = []
        try:
            async with asyncio.timeout(within):
                while True:
                    message = await self._recv_wire()
                    if isinstance(message, kind):
                        return message
                    skipped.append(message)
                    if len(skipped) + len(self._backlog) > MAX_BACKLOG:
                        raise ServerProtocolError(f"no {kind.__name__} among {MAX_BACKLOG} messages")
        finally:
            self._backlog.extend(skipped)

    async def request(self, message: C, within: float = 10.0) -> ServerMessage:
        """Send ``message`` with a fresh id and return the server's reply carrying that id."""
        request_id: RequestId = message.id if message.id is not None else self.next_id()
        await self.send(_with_id(message, request_id))
        skipped: list[ServerMessage] = []
        try:
            async with asyncio.timeout(within):
                while True:
                    reply = await self._recv_wire()
                    if reply.id == request_id:
                        return reply
                    skipped.append(reply)
                    if len(skipped) + len(self._backlog) > MAX_BACKLOG:
                        raise ServerProtocolError(
                            f"no reply to request {request_id!r} among {MAX_BACKLOG} messages"
                        )
        finally:
            self._backlog.extend(skipped)

    def start_heartbeat(self, interval_seconds: float) -> None:
        """Send ``ping`` every interval until the socket closes (replies arrive as ``pong`` messages)."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(interval_seconds))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self._ws.close(code, reason)

    async def _recv_wire(self) -> ServerMessage:
        try:
            frame = await self._ws.recv()
        except ConnectionClosed:
            raise SignalingClosed(self._ws.close_code, self._ws.close_reason or "") from None
        decoded = decode_server(frame)
        if isinstance(decoded, DecodeFailure):
            error = decoded.error
            raise ServerProtocolError(f"undecodable server frame: {error.code}: {error.message}", decoded)
        return decoded

    async def _beat(self, interval: float) -> None:
        with contextlib.suppress(SignalingClosed):
            while self._ws.close_code is None:  # ends with the socket
                await asyncio.sleep(interval)
                await self.send(Ping())


def _with_id(message: C, request_id: RequestId) -> C:
    return msgspec.structs.replace(message, id=request_id)
