"""``python -m vIOP nodes list|drain`` against a real ``serve`` process on a real redis-server, and a
misconfigured node that refuses to start."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]


def _env(data_dir: Path, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIOP_")}
    env.update(PYTHONPATH=str(REPO), VIOP_DATA_DIR=str(data_dir), VIOP_REDIS_URL=redis_url, **extra)
    return env


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vIOP", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def wait_until(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_nodes_list_and_drain_against_a_running_server(
    tmp_path: Path, redis_url: str, redis_client: object
) -> None:
    port = free_port()
    env = _env(
        tmp_path / "var", redis_url, VIOP_PORT=str(port), VIOP_NODE_ID="node-a",
        VIOP_ICE_HOST_ADDRESSES="127.0.0.1", VIOP_NODE_CAPACITY="12",
    )  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "vIOP", "serve"], env=env, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def ready() -> bool:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready)
        wait_until(lambda: "node-a" in cli(env, tmp_path, "nodes", "list").stdout)
        listed = cli(env, tmp_path, "nodes", "list")
        assert listed.returncode == 0, listed.stderr
        header, row = listed.stdout.splitlines()
        assert header.split()[:3] == ["NODE", "STATE", "ROOMS"]
        assert row.split()[:3] == ["node-a", "serving", "0/12"] and "127.0.0.1" in row

        drained = cli(env, tmp_path, "nodes", "drain", "node-a")
        assert drained.returncode == 0, drained.stderr
        assert "draining" in drained.stdout and "not built yet" in drained.stdout
        after = cli(env, tmp_path, "nodes", "list").stdout.splitlines()[1]
        assert after.split()[:2] == ["node-a", "draining"]
        with sqlite3.connect(tmp_path / "var" / "viop.db") as db:
            rows = db.execute(
                "SELECT actor_role, object_type, object_id, outcome FROM audit_log WHERE action = 'node.drain'"
            ).fetchall()
        assert rows == [("operator", "node", "node-a", "success")]  # the operator's drain is audited

        unknown = cli(env, tmp_path, "nodes", "drain", "node-z")
        assert unknown.returncode == 1
        assert unknown.stderr.strip() == "vIOP: no live node node-z (see `python -m vIOP nodes list`)"
        bad = cli(env, tmp_path, "nodes", "drain", "{room:x}")
        assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
        assert "is not a node id" in bad.stderr

        server.send_signal(signal.SIGTERM)
        server.wait(30)
        assert server.returncode == 0
        gone = cli(env, tmp_path, "nodes", "list")
        assert gone.returncode == 0 and "no live nodes" in gone.stdout  # deregistered at shutdown
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def test_a_misconfigured_node_refuses_to_start_with_one_line(tmp_path: Path, redis_url: str) -> None:
    env = _env(
        tmp_path / "var", redis_url, VIOP_PORT=str(free_port()),
        VIOP_NODE_HEARTBEAT_SECONDS="5", VIOP_ROOM_LEASE_SECONDS="6",
    )  # fmt: skip
    refused = cli(env, tmp_path, "serve")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "vIOP: invalid configuration: VIOP_NODE_TTL_SECONDS: must be at least twice "
        "VIOP_NODE_HEARTBEAT_SECONDS (one late heartbeat must not count as a dead node)"
    ]


def test_nodes_list_says_when_redis_is_unreachable(tmp_path: Path) -> None:
    env = _env(tmp_path / "var", f"redis://127.0.0.1:{free_port()}/0")
    answer = cli(env, tmp_path, "nodes", "list")
    assert answer.returncode == 1
    assert answer.stderr.strip().splitlines() == [
        "vIOP: Redis is unreachable (ConnectionError): check VIOP_REDIS_URL"
    ]
