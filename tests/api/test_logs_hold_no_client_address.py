"""Issue 11: client IP addresses reached the log in plaintext from uvicorn's WebSocket handshake lines.

A real uvicorn socket configured as ``serve`` configures it, logging at debug level into a buffer; the
clients connect from their own loopback address (127.0.0.77, not the server's 127.0.0.1), so any mention
of it in any line, from uvicorn.error, uvicorn.access or our own loggers, is a leak.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from tests.api import signal_support as ss
from tests.support import run_live_server, test_settings
from vIOP.auth.tickets import TicketPurpose
from vIOP.logging import configure_logging
from vIOP.signaling import messages as m
from vIOP.signaling.codec import encode_text

CLIENT_ADDRESS = "127.0.0.77"


async def test_no_client_address_in_any_log_line(data_dir: Path, redis_url: str) -> None:
    stream = io.StringIO()
    handler = configure_logging("debug", stream=stream)
    try:
        async with run_live_server(test_settings(data_dir, redis_url)) as live:
            host = await ss.clinician(live)
            scope = await ss.room(live, host)
            issued = await ss.services(live).tickets.issue(
                host.principal, TicketPurpose.SIGNAL, scope, session=host.session
            )
            url = f"{live.ws_url}/ws/signal?ticket={issued.ticket}"
            # An accepted handshake, a socket that talks, then a refused handshake (no ticket).
            async with connect(url, origin=Origin(live.base_url), local_addr=(CLIENT_ADDRESS, 0)) as ws:
                await ws.send(encode_text(m.Join()))
                assert json.loads(await ws.recv())["type"] == "welcome"
            with pytest.raises(InvalidStatus):
                async with connect(
                    f"{live.ws_url}/ws/signal", origin=Origin(live.base_url), local_addr=(CLIENT_ADDRESS, 0)
                ):
                    pass
            transport = httpx.AsyncHTTPTransport(local_address=CLIENT_ADDRESS)
            async with httpx.AsyncClient(base_url=live.base_url, transport=transport) as http:
                assert (await http.get("/healthz")).status_code == 200
                assert (await http.get("/nothing-here")).status_code == 404
    finally:
        logging.getLogger().removeHandler(handler)
    lines = stream.getvalue().splitlines()
    handshakes = [line for line in lines if "WebSocket" in line]
    assert len(handshakes) >= 2, lines  # uvicorn's handshake lines are there, and were scanned
    assert any('"logger": "uvicorn.error"' in line for line in handshakes)
    assert any('"path": "/healthz"' in line for line in lines)  # so is our access log
    leaked = [line for line in lines if CLIENT_ADDRESS in line]
    assert leaked == []
