"""A loopback TCP proxy that can cut every connection through it: the "network blip" of the reconnect test.

One browser loads the app through the proxy (its origin is the proxy's), so its HTTP calls and its
signaling socket pass here; media goes straight to the server over UDP. :meth:`cut` aborts every open
connection and refuses new ones until :meth:`restore`, exactly what a client sees when its Wi-Fi drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field

CHUNK = 64 * 1024


@dataclass
class FaultProxy:
    target_port: int
    listen_port: int
    cuts: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _cut: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def console_errors_of_a_cut(self) -> tuple[re.Pattern[str], ...]:
        """What Chromium itself logs for requests and sockets the cut killed: only through this proxy."""
        origin = re.escape(f"127.0.0.1:{self.listen_port}/")
        return (
            re.compile(rf"Failed to load resource: net::ERR_[A-Z_]+ \(http://{origin}\S*\)"),
            re.compile(rf"WebSocket connection to 'ws://{origin}[^']*' failed: .* \(http://{origin}\S*\)"),
        )

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        """Abort every live connection (RST, no goodbye) and refuse new ones."""
        self._cut = True
        self.cuts += 1
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self._cut = False

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._cut:
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, server_writer))
        pumps = [
            asyncio.create_task(self._pump(client_reader, server_writer)),
            asyncio.create_task(self._pump(server_reader, client_writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for writer in (client_writer, server_writer):
                writer.transport.abort()
                self._writers.discard(writer)
            for pump in pumps:
                pump.cancel()
                self._tasks.discard(pump)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, OSError):
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
