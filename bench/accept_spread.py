"""Which worker accepts each connection under ``serve --workers N``: one SO_REUSEPORT socket per worker
(what vIOP does on Linux) against one listening socket shared by every worker (uvicorn's ``--workers``).

    .venv/bin/python bench/accept_spread.py [--workers 2] [--connections 200] [--json]

For each way, a supervisor with ``--workers`` workers runs on the embedded defaults in a temporary folder;
``--connections`` connections are opened one after another (each sends ``GET /healthz``, reads the answer
and stays open, as a signaling socket does), and the worker process holding each one's server end is read
from the operating system. Reported: connections per worker, and the largest worker's share.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
SERVE = "import sys; from vIOP.settings import load_settings; from vIOP.supervisor import serve_workers; " \
    "sys.exit(serve_workers(load_settings(), balanced=sys.argv[1] == 'reuseport'))"  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spread(mode: str, workers: int, connections: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as root:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIOP_")} | {
            "PYTHONPATH": str(REPO), "VIOP_DATA_DIR": f"{root}/var", "VIOP_PORT": str(port),
            "VIOP_WORKERS": str(workers), "VIOP_LOG_LEVEL": "warning",
        }  # fmt: skip
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE, mode], env=env, cwd=root, stderr=subprocess.DEVNULL
        )
        try:
            pids = _wait_workers(server.pid, port, workers)
            held: list[socket.socket] = []
            for _ in range(connections):
                conn = socket.create_connection(("127.0.0.1", port))
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                conn.recv(4096)
                held.append(conn)
            ports = {c.getsockname()[1] for c in held}
            per_worker: Counter[int] = Counter()
            for index, pid in enumerate(sorted(pids)):
                for c in psutil.Process(pid).net_connections("tcp"):
                    if c.raddr and c.raddr.port in ports and c.laddr.port == port:
                        per_worker[index + 1] += 1
            for conn in held:
                conn.close()
        finally:
            server.terminate()
            server.wait(60)
    counts = [per_worker[n] for n in range(1, workers + 1)]
    return {"mode": mode, "per_worker": counts, "largest_share": max(counts) / max(1, sum(counts))}


def _wait_workers(supervisor: int, port: int, workers: int) -> set[int]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        pids = {
            child.pid
            for child in psutil.Process(supervisor).children()
            if "multiprocessing.spawn" in " ".join(child.cmdline())
        }
        serving = {
            pid
            for pid in pids
            if any(c.laddr.port == port for c in psutil.Process(pid).net_connections("tcp"))
        }
        if len(serving) == workers:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    time.sleep(1)  # the last worker's loop is accepting too
                    return pids
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    raise TimeoutError("the workers did not start")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [spread(mode, args.workers, args.connections) for mode in ("reuseport", "shared")]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(
            f"{r['mode']:<10} connections per worker {r['per_worker']}  largest share {r['largest_share']:.0%}"
        )


if __name__ == "__main__":
    main()
