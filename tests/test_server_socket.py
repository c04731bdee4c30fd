"""The listening socket ``serve`` binds itself must give accepted connections TCP_NODELAY.

asyncio only sets TCP_NODELAY when the listening socket's proto is IPPROTO_TCP; a socket made with proto 0
left Nagle on, and with delayed ACKs every keep-alive response took 40+ ms (measured 48 ms vs 0.8 ms).
"""

from __future__ import annotations

import asyncio
import socket

from vIOP.server import bind_socket


async def test_accepted_connections_have_nodelay() -> None:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            raw = transport.get_extra_info("socket")
            seen.set_result(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(seen, 5) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
