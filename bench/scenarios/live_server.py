"""A real uvicorn server on a free loopback port, configured as ``serve`` configures it (tests and benchmarks)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from vIOP.settings import Settings, load_settings


@dataclass
class LiveServer:
    settings: Settings
    app: Any
    server: uvicorn.Server

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.settings.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_settings(data_dir: Path, redis_url: str, **overrides: Any) -> Settings:
    """Settings for an in-process server: explicit Redis, SQLite in the test's data folder."""
    values = {"data_dir": str(data_dir), "redis_url": redis_url, "port": str(free_port())}
    values.update({k: str(v) for k, v in overrides.items()})
    return load_settings(environ={}, **values)


test_settings.__test__ = False  # type: ignore[attr-defined]


@asynccontextmanager
async def run_live_server(
    settings: Settings, *, request_deadline: float | None = None, clock: Callable[[], float] | None = None
) -> AsyncGenerator[LiveServer, None]:
    """uvicorn configured exactly as ``serve`` configures it (``request_deadline`` may be shortened;
    ``clock``, epoch seconds, is the server's injected clock: ``open_services(clock=...)``)."""
    from vIOP.app import close_services, create_app, open_services
    from vIOP.server import bind_socket, uvicorn_config

    services = None if clock is None else await open_services(settings, clock=clock)
    app = create_app(settings, services)
    sock = bind_socket(settings.host, settings.port)
    extra = {} if request_deadline is None else {"request_deadline": request_deadline}
    server = uvicorn.Server(uvicorn_config(app, settings, **extra))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        assert server.started, "server did not start"
        yield LiveServer(settings=settings, app=app, server=server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()
        if services is not None:
            await close_services(services)
