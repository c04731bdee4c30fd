"""A real webhook receiver (Starlette under uvicorn on a 127.0.0.1 socket) that verifies every message with
``standardwebhooks.Webhook.verify``, and a migrated database with its key ring for the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vIOP.storage.crypto import KeyRing
from vIOP.storage.database import Database, default_sqlite_url, upgrade
from vIOP.storage.keys import FileKeySource


@dataclass
class Received:
    msg_id: str
    body: dict[str, Any]
    raw: bytes


@dataclass
class Receiver:
    """Every verified message in arrival order; ``refused`` counts those that failed verification."""

    sock: socket.socket  # bound, not listening until served: refused until then, and the port stays ours
    secrets: dict[str, str] = field(default_factory=dict)  # path -> secret
    received: dict[str, list[Received]] = field(default_factory=dict)  # path -> messages
    refused: int = 0
    delay: dict[str, asyncio.Event] = field(default_factory=dict)  # path -> held until set
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # The first ``together`` requests are held until that many are in at once (two senders at work).
    together: int = 0
    _waiting: int = 0
    _met: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def handle(self, request: Request) -> Response:
        path = request.path_params["path"]
        raw = await request.body()
        try:
            body = Webhook(self.secrets[path]).verify(raw, dict(request.headers))
        except Exception:
            self.refused += 1
            return Response(status_code=401)
        if self.together and not self._met.is_set():
            self._waiting += 1
            if self._waiting >= self.together:
                self._met.set()
            await self._met.wait()
        hold = self.delay.get(path)
        if hold is not None:
            await hold.wait()
        self.received.setdefault(path, []).append(Received(request.headers["webhook-id"], body, raw))
        self.arrived.set()
        return Response(status_code=204)


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[None]:
    app = Starlette(routes=[Route("/{path}", receiver.handle, methods=["POST"])])
    # No log_config and no log_level: either makes uvicorn reconfigure the process's logging, which outlives
    # this receiver (a later test that reads uvicorn's handshake lines at debug level then saw none).
    config = uvicorn.Config(app, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[receiver.sock]))
    while not server.started:  # bounded by uvicorn's own start; a failure ends the task
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        for hold in receiver.delay.values():
            hold.set()
        receiver._met.set()
        server.should_exit = True
        await task


def new_receiver() -> Receiver:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return Receiver(sock)


async def open_database(data_dir: Path, url: str | None = None) -> tuple[Database, KeyRing]:
    """A migrated database (SQLite in ``data_dir`` unless ``url`` names another) and its key ring; the
    key file beside ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url = url or default_sqlite_url(data_dir)
    await upgrade(url)
    db = await Database.open(url)
    ring = await KeyRing.open(db, FileKeySource(data_dir.parent / "keys.json", create=True))
    return db, ring
