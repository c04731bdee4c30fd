"""Raw TCP clients for the slow and oversized-input tests: HTTP and WebSocket bytes written by hand, so a
test can stop half-way through a header, a body or a frame (no client library lets one do that)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
import time
from dataclasses import dataclass


@dataclass
class RawConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> bool:
        """False once the server has closed the connection."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def closed_by_server(self, within: float) -> tuple[float, bytes]:
        """Read until the server closes; returns (seconds it took, everything read). TimeoutError if not."""
        started = time.monotonic()
        received = bytearray()
        async with asyncio.timeout(within):
            while True:
                try:
                    chunk = await self.reader.read(65536)
                except (ConnectionError, OSError):
                    break
                if not chunk:
                    break
                received += chunk
        return time.monotonic() - started, bytes(received)

    async def read_http_head(self, within: float = 10.0) -> bytes:
        async with asyncio.timeout(within):
            return await self.reader.readuntil(b"\r\n\r\n")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def upgrade_request(path: str, origin: str, host: str = "127.0.0.1") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
    ).encode()


def ws_frame(payload: bytes, *, opcode: int = 0x1, declared: int | None = None) -> bytes:
    """A masked client frame; ``declared`` overrides the length in the header (to promise more than sent)."""
    length = len(payload) if declared is None else declared
    head = bytes([0x80 | opcode])
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_ws_frame(conn: RawConnection, within: float = 10.0) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    async with asyncio.timeout(within):
        first, second = await conn.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await conn.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await conn.reader.readexactly(8))
        return first & 0x0F, await conn.reader.readexactly(length)
