"""A second network namespace joined to this one by a veth pair, with a ``tbf`` rate cap that can be set,
changed and lifted while media flows: how a real Chromium sits behind a slow home link in tests and benchmarks.

Topology (``this`` is the caller's namespace, which must be one it created itself, e.g. under
``unshare --net``: :meth:`VethLink.open` refuses to run where any interface but ``lo`` exists, so it can
never touch a real network)::

    this namespace (server)                       peer namespace (browser)
    lo 127.0.0.1                                  lo 127.0.0.1
    viop-srv 10.200.0.1/30  <--- veth pair --->   viop-br 10.200.0.2/30
      root qdisc: tbf (server -> browser cap)

Nothing is routed anywhere else: both ends have only the /30 and loopback. The peer namespace is held open
by a ``sleep`` started under ``unshare --net`` (no named ``ip netns``: nothing is left in ``/run/netns``
if the test dies); a program enters it with ``nsenter --net=/proc/<pid>/ns/net`` (see
:meth:`VethLink.wrapper`, a launcher script for Chromium that Playwright can start: Playwright talks to the
browser over a pipe, so the browser's network namespace does not matter to it).

Facts measured on this machine's kernel (6.18, Debian 12 userland, as root), December 2026:

- ``unshare --net`` works; ``ip link add A type veth peer name B netns <pid>`` creates the pair across
  namespaces; addresses and ``up`` on both ends work, and TCP/UDP flow between 10.200.0.1 and 10.200.0.2.
- ``tc qdisc add dev A root tbf rate 300kbit burst 16kb latency 100ms`` works, as do ``tc qdisc replace``
  (a new rate while traffic flows) and ``tc qdisc del dev A root`` (back to ``noqueue``: uncapped);
  ``tc -s -j qdisc show`` reports bytes sent and packets dropped.
- ``netem`` is not there ("Specified qdisc kind is unknown"), nor ``gact`` random drop: random loss and
  delay have to be injected in the clients (:mod:`bench.scenarios.impairment`).
- A ``tbf`` on the egress of the server's end caps what the server sends to the browser; the browser's
  uplink stays uncapped.
- Chromium in the peer namespace offers 10.200.0.2 as its host candidate (it has a non-loopback interface,
  so it needs no ``--allow-loopback-in-peer-connection``); the server must advertise 10.200.0.1
  (``VIOP_ICE_HOST_ADDRESSES``) and its egress policy must admit the browser's private address
  (``VIOP_ICE_REMOTE_ALLOW=10.200.0.0/30``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.scenarios.chromium import CHROMIUM

SERVER_ADDRESS: Final = "10.200.0.1"
PEER_ADDRESS: Final = "10.200.0.2"
NETWORK: Final = "10.200.0.0/30"
SERVER_DEVICE: Final = "viop-srv"
PEER_DEVICE: Final = "viop-br"

# tbf: a 16 kB bucket (one video keyframe's worth of packets passes at line rate, as on a real access
# link) and a queue of at most 100 ms at the cap; the rest is dropped at the tail, as a home router does.
TBF_BURST: Final = "16kb"
TBF_LATENCY: Final = "100ms"


class LinkError(RuntimeError):
    """The namespace topology could not be built here (not root, tools missing, not an isolated namespace)."""


def missing_prerequisites() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root: network namespaces and tc need root")
    for tool, package in (("unshare", "util-linux"), ("nsenter", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` not found: install the Debian package {package}")
    if shutil.which("tc") is None and not Path("/usr/sbin/tc").exists():
        problems.append("`tc` not found: install the Debian package iproute2")
    return problems


def only_loopback_here() -> bool:
    return sorted(name for _, name in socket.if_nameindex()) == ["lo"]


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise LinkError(f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class QdiscCounters:
    """What the server's end sent into the link (after the cap) and what the cap dropped."""

    sent_bytes: int
    sent_packets: int
    dropped_packets: int


class VethLink:
    """The peer namespace, the veth pair and the cap. Use :meth:`open` (a context manager)."""

    def __init__(self, holder: subprocess.Popen[bytes], workdir: Path) -> None:
        self._holder = holder
        self._workdir = workdir
        self.rate_bps: int | None = None

    @property
    def peer_netns(self) -> str:
        return f"/proc/{self._holder.pid}/ns/net"

    @classmethod
    @contextlib.contextmanager
    def open(cls) -> Iterator[VethLink]:
        problems = missing_prerequisites()
        if problems:
            raise LinkError("; ".join(problems))
        if not only_loopback_here():
            raise LinkError(
                "refusing to add interfaces: this network namespace has more than loopback "
                "(run inside a namespace you created, e.g. `unshare --net`)"
            )
        workdir = Path(tempfile.mkdtemp(prefix="viop-netns-"))
        holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"])
        link = cls(holder, workdir)
        try:
            link._wait_for_peer_namespace()
            link._build()
            yield link
        finally:
            with contextlib.suppress(LinkError):
                _run("ip", "link", "del", SERVER_DEVICE)  # deletes both ends
            holder.kill()
            holder.wait(timeout=5)
            shutil.rmtree(workdir, ignore_errors=True)

    def _wait_for_peer_namespace(self) -> None:
        """Bounded poll: ``unshare`` has made its namespace once the holder's differs from ours."""
        ours = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(FileNotFoundError):
                if os.readlink(self.peer_netns) != ours:
                    return
            if self._holder.poll() is not None or time.monotonic() > deadline:
                raise LinkError("`unshare --net` did not create the peer namespace")
            time.sleep(0.01)

    def in_peer(self, *command: str) -> list[str]:
        """``command`` run inside the peer namespace."""
        return ["nsenter", f"--net={self.peer_netns}", "--", *command]

    def _build(self) -> None:
        _run("ip", "link", "set", "lo", "up")
        _run(
            "ip", "link", "add", SERVER_DEVICE, "type", "veth",
            "peer", "name", PEER_DEVICE, "netns", str(self._holder.pid),
        )  # fmt: skip
        # No IPv6 link-local address on either end: its duplicate-address detection completes about a second
        # after `up`, and Chromium treats that address change as a network change, failing every request in
        # flight with ERR_NETWORK_CHANGED (a CI run lost the join page's scripts that way).
        _run("ip", "link", "set", SERVER_DEVICE, "addrgenmode", "none")
        _run(*self.in_peer("ip", "link", "set", PEER_DEVICE, "addrgenmode", "none"))
        _run("ip", "addr", "add", f"{SERVER_ADDRESS}/30", "dev", SERVER_DEVICE)
        _run("ip", "link", "set", SERVER_DEVICE, "up")
        _run(*self.in_peer("ip", "link", "set", "lo", "up"))
        _run(*self.in_peer("ip", "addr", "add", f"{PEER_ADDRESS}/30", "dev", PEER_DEVICE))
        _run(*self.in_peer("ip", "link", "set", PEER_DEVICE, "up"))
        self._wait_until_settled()

    def _wait_until_settled(self) -> None:
        """Bounded poll until both ends are up with only their IPv4 address: a browser started after this
        sees no interface change."""
        deadline = time.monotonic() + 10
        while True:
            ends = [
                json.loads(_run("ip", "-j", "addr", "show", "dev", SERVER_DEVICE)),
                json.loads(_run(*self.in_peer("ip", "-j", "addr", "show", "dev", PEER_DEVICE))),
            ]
            settled = all(
                row.get("operstate") == "UP"
                and [a.get("family") for a in row.get("addr_info", [])] == ["inet"]
                for rows in ends
                for row in rows
            )
            if settled:
                return
            if time.monotonic() > deadline:
                raise LinkError(f"the veth pair did not settle: {ends}")
            time.sleep(0.05)

    def wrapper(self, program: Path = CHROMIUM) -> Path:
        """An executable that starts ``program`` (with its arguments) inside the peer namespace."""
        script = self._workdir / f"in-peer-{program.name}"
        nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        script.write_text(f'#!/bin/sh\nexec {nsenter} --net={self.peer_netns} -- {program} "$@"\n')
        script.chmod(0o755)
        return script

    # --- the cap ---------------------------------------------------------------------------------------

    def cap(self, rate_bps: int) -> None:
        """Cap server -> peer at ``rate_bps`` (``tc qdisc replace``: also changes a cap in place)."""
        _run(
            "tc", "qdisc", "replace", "dev", SERVER_DEVICE, "root", "tbf",
            "rate", f"{rate_bps}bit", "burst", TBF_BURST, "latency", TBF_LATENCY,
        )  # fmt: skip
        self.rate_bps = rate_bps

    def lift(self) -> None:
        """No cap any more (``tc qdisc del``: the device is back to ``noqueue``)."""
        _run("tc", "qdisc", "del", "dev", SERVER_DEVICE, "root")
        self.rate_bps = None

    def counters(self) -> QdiscCounters:
        """The tbf's counters (zero when no cap is set: ``noqueue`` counts nothing)."""
        rows: list[dict[str, Any]] = json.loads(
            _run("tc", "-s", "-j", "qdisc", "show", "dev", SERVER_DEVICE) or "[]"
        )
        row: dict[str, Any] = next((r for r in rows if r.get("root")), {})
        return QdiscCounters(
            sent_bytes=int(row.get("bytes", 0)),
            sent_packets=int(row.get("packets", 0)),
            dropped_packets=int(row.get("drops", 0)),
        )

    def device_bytes(self) -> int:
        """Bytes the server's end has transmitted since the link was built (capped or not)."""
        # Not /sys/class/net: sysfs shows the namespace it was mounted in, not this one.
        rows = json.loads(_run("ip", "-s", "-j", "link", "show", "dev", SERVER_DEVICE))
        return int(rows[0]["stats64"]["tx"]["bytes"])
