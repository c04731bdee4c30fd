"""SIGTERM with live sockets: they close with 1001 (reconnect elsewhere), then the process exits cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.api.test_two_processes import PASSWORD, App
from vIOP.client.session import HttpApi, RoomClient
from vIOP.signaling import messages as m


async def test_sigterm_closes_websockets_with_1001_and_exits(tmp_path: Path, redis_url: str) -> None:
    app = App(tmp_path / "var", redis_url)
    api = HttpApi(app.base_url)
    host = None
    try:
        app.wait_ready()
        created = subprocess.run(
            [sys.executable, "-m", "vIOP", "users", "create", "--role", "clinician", "--username", "dr.term",
             "--password-stdin"],
            input=PASSWORD, env=app.env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        token = await api.login("dr.term", PASSWORD)
        room = (await api.http.post("/api/v1/rooms", json={"kind": "individual", "title": "1:1"},
                                    headers={"Authorization": f"Bearer {token}"})).json()  # fmt: skip
        host = RoomClient(api.ticket_source(token, room["id"]), origin=app.base_url)
        await host.join()
        await host.wait_message(m.Lobby)

        app.process.send_signal(signal.SIGTERM)
        closed = await host.wait_closed(10)
        assert closed.close_code == 1001
        assert app.process.wait(10) == 0
        stderr = app.process.stderr.read().decode() if app.process.stderr else ""
        assert "Traceback" not in stderr
    finally:
        if host is not None:
            await host.close()
        await api.close()
        app.stop()
