"""Counts the datagrams the real relay sends to the addresses a participant names, with real sockets.

Run ONLY inside a fresh network namespace (``unshare --net``; it refuses to run anywhere else): it adds a
veth pair holding loopback-adjacent, private, CGNAT, link-local, documentation, ULA and "public" addresses,
binds a UDP listener on every (address, port) a hostile offer names, plus an mDNS listener (224.0.0.251:5353)
and a multicast group listener, then runs a real ``MediaRelay`` (aiortc + aioice) with the offer and
trickled candidates and counts what each listener receives. Nothing leaves the namespace: it has no route
out. ``tests/security/test_relay_egress.py`` runs it and asserts on its JSON; run by hand for the figures
in docs/RELIABILITY.md:

    unshare --net -- .venv/bin/python tests/security/relay_egress_probe.py [--observe 40] [--scenarios deny,cap]

When to stop counting is decided by a control candidate with the LOWEST priority: aioice checks pairs in
priority order, one every 20 ms, so by the time the control's listener hears its first check, every
candidate the relay accepted with a higher priority has been sent its first check too. ``--observe`` keeps
counting that many seconds longer (retransmissions), for the docs' totals.

Self-contained (imports only vIOP and aiortc) and written against the relay's public constructor, so the
same file measures a vIOP without the egress policy (``PYTHONPATH=<old checkout>``; ``deny`` and ``cap``
only): the "before" figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import AudioStreamTrack, VideoStreamTrack

from vIOP.client.media import MediaPeer
from vIOP.ids import ParticipantId
from vIOP.media.ice import IceConfig
from vIOP.media.relay import MediaRelay, RenegotiationOffer

SERVER_V4 = "11.0.0.254"  # the relay's own host address (globally routable, so only "own" denies it)
SERVER_V6 = "2a00:1::254"
CONTROL = "11.0.0.1"  # a public-looking address: allowed by the production policy
MCAST_GROUP = "239.1.2.3"
MDNS = ("224.0.0.251", 5353)
V4_ON_VETH = [
    SERVER_V4,
    CONTROL,
    "10.1.2.3",
    "172.16.5.6",
    "192.168.7.8",
    "100.64.1.2",
    "169.254.9.10",
    "192.0.2.5",
]
V6_ON_VETH = [SERVER_V6, "fd00::5"]
# (label, address) the production policy must never contact; the listener for 0.0.0.0 is a wildcard bind.
DENIED = [
    ("loopback", "127.0.0.1"),
    ("loopback", "127.0.0.2"),
    ("loopback", "127.1.2.3"),
    ("loopback", "::1"),
    ("private", "10.1.2.3"),
    ("private", "172.16.5.6"),
    ("private", "192.168.7.8"),
    ("private", "fd00::5"),
    ("cgnat", "100.64.1.2"),
    ("link_local", "169.254.9.10"),
    ("documentation", "192.0.2.5"),
    ("unspecified", "0.0.0.0"),
    ("own_address", SERVER_V4),
    ("multicast", MCAST_GROUP),
]
MDNS_NAMES = ["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.local", "printer.local"]
OFFERED = 300
TRICKLED = 50
CONTROL_TIMEOUT = 120.0


def sh(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


def set_up_namespace() -> None:
    interfaces = sorted(name for _, name in socket.if_nameindex())
    if interfaces != ["lo"]:
        sys.exit(
            f"refusing to run: this must be a fresh network namespace (found {interfaces}); use unshare --net"
        )
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    sh("ip", "link", "set", "v0", "up")
    sh("ip", "link", "set", "v1", "up")
    for address in V4_ON_VETH:
        sh("ip", "addr", "add", f"{address}/32", "dev", "v0")
    for address in V6_ON_VETH:
        sh("ip", "-6", "addr", "add", f"{address}/128", "dev", "v0", "nodad")
    sh("ip", "route", "add", "224.0.0.0/4", "dev", "v0")


class Counting(asyncio.DatagramProtocol):
    def __init__(self, tally: Tally, label: str, endpoint: str) -> None:
        self.tally, self.label, self.endpoint = tally, label, endpoint

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.tally.count(self.label, self.endpoint)


@dataclass
class Tally:
    by_label: dict[str, int] = field(default_factory=dict)
    by_endpoint: dict[str, int] = field(default_factory=dict)
    control: asyncio.Event = field(default_factory=asyncio.Event)
    control_endpoint: str = ""

    def count(self, label: str, endpoint: str) -> None:
        self.by_label[label] = self.by_label.get(label, 0) + 1
        self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1
        if endpoint == self.control_endpoint:
            self.control.set()


async def listen(tally: Tally, label: str, host: str, port: int) -> asyncio.DatagramTransport:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if host == MDNS[0] or host == MCAST_GROUP:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("", port) if host == MDNS[0] else (host, port))
        membership = socket.inet_aton(host) + socket.inet_aton(CONTROL)  # joined on v0
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    else:
        sock.bind((host, port))
    endpoint = f"{host}:{port}"
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Counting(tally, label, endpoint), sock=sock
    )
    return transport


def candidate(host: str, port: int, priority: int) -> str:
    return f"candidate:{port} 1 udp {priority} {host} {port} typ host"


def offer_with(sdp: str, lines: list[str]) -> str:
    """A real aiortc offer whose every m-line carries ``lines`` instead of its own candidates; no
    end-of-candidates, as a trickling browser sends it."""
    kept = [
        ln
        for ln in sdp.splitlines(keepends=True)
        if not ln.startswith(("a=candidate:", "a=end-of-candidates"))
    ]
    block = "".join(f"a={ln}\r\n" for ln in lines)
    return re.sub(r"(a=mid:[^\r\n]*\r\n)", lambda m: m.group(1) + block, "".join(kept))


async def real_offer() -> str:
    peer = MediaPeer(host_addresses=(CONTROL,))
    try:
        peer.publish(AudioStreamTrack(), VideoStreamTrack())
        return await peer.create_offer()
    finally:
        await peer.close()


async def _ignore(pid: ParticipantId, offer: RenegotiationOffer) -> None:
    pass


@dataclass
class Attack:
    offered: list[str]  # candidate lines, in SDP order
    trickled: list[str]
    listeners: list[tuple[str, str, int]]  # (label, host, port)
    control: tuple[str, int]


def deny_attack() -> Attack:
    """300 offered + 50 trickled candidates naming denied addresses (high priority), 2 trickled mDNS names,
    then the control (allowed, lowest priority)."""
    listeners, offered, trickled = [], [], []
    port = 20000
    for i in range(OFFERED + TRICKLED):
        label, host = DENIED[i % len(DENIED)]
        port += 1
        listeners.append((label, host, port))
        line = candidate(host, port, 2_000_000_000 - i)
        (offered if i < OFFERED else trickled).append(line)
    for name in MDNS_NAMES:
        trickled.append(candidate(name, 9, 1_000_000))
    listeners.append(("mdns", MDNS[0], MDNS[1]))
    listeners.append(("control", CONTROL, 40000))
    trickled.append(candidate(CONTROL, 40000, 1))
    return Attack(offered, trickled, listeners, (CONTROL, 40000))


def cap_attack() -> Attack:
    """350 allowed candidates (public-looking addresses): the control first in the offer (so the cap admits
    it) but with the lowest priority (so it is checked after every other admitted one)."""
    listeners = [("control", CONTROL, 40000)]
    offered = [candidate(CONTROL, 40000, 1)]
    trickled = []
    for i in range(1, OFFERED + TRICKLED):
        port = 40000 + i
        listeners.append(("allowed", CONTROL, port))
        line = candidate(CONTROL, port, 2_000_000_000 - i)
        (offered if i < OFFERED else trickled).append(line)
    return Attack(offered, trickled, listeners, (CONTROL, 40000))


def allow_list_attack() -> Attack:
    """With 10.0.0.0/8 allowed: 192.168.7.8 (high priority) stays denied, 10.1.2.3 (the control) is reached."""
    return Attack(
        [candidate("192.168.7.8", 30001, 2_000_000_000), candidate("10.1.2.3", 30002, 1)],
        [],
        [("private", "192.168.7.8", 30001), ("control", "10.1.2.3", 30002)],
        ("10.1.2.3", 30002),
    )


def loopback_attack() -> Attack:
    """With loopback allowed (development): 127.0.0.2 is reached, 10.1.2.3 and mDNS names are not."""
    return Attack(
        [candidate("10.1.2.3", 30003, 2_000_000_000)],
        [candidate(MDNS_NAMES[0], 9, 1_000_000), candidate("127.0.0.2", 30004, 1)],
        [("private", "10.1.2.3", 30003), ("mdns", MDNS[0], MDNS[1]), ("control", "127.0.0.2", 30004)],
        ("127.0.0.2", 30004),
    )


def scenario_config(name: str) -> IceConfig:
    if name in ("deny", "cap"):  # the relay's default policy is production's
        return IceConfig(host_addresses=(SERVER_V4, SERVER_V6))
    if name == "allow_list":
        return IceConfig(host_addresses=(SERVER_V4,), remote_allow=("10.0.0.0/8",))
    return IceConfig(host_addresses=("127.0.0.1",), allow_loopback_candidates=True)


ATTACKS = {
    "deny": deny_attack,
    "cap": cap_attack,
    "allow_list": allow_list_attack,
    "loopback": loopback_attack,
}


async def run(name: str, observe: float) -> dict[str, Any]:
    attack = ATTACKS[name]()
    tally = Tally(control_endpoint=f"{attack.control[0]}:{attack.control[1]}")
    transports = [await listen(tally, label, host, port) for label, host, port in attack.listeners]
    relay = MediaRelay(scenario_config(name), on_signal=_ignore)
    pid = ParticipantId("pt_egressprobe00001")
    started = time.monotonic()
    try:
        await relay.add_participant(pid)
        await relay.handle_offer(pid, offer_with(await real_offer(), attack.offered))
        for line in attack.trickled:
            await relay.add_remote_candidate(pid, {"candidate": line, "sdpMid": "0"})
        await asyncio.wait_for(tally.control.wait(), CONTROL_TIMEOUT)
        reached_after = time.monotonic() - started
        if observe:
            await asyncio.sleep(observe)  # a measurement window for the docs, not a test wait
    finally:
        await relay.close()
        for transport in transports:
            transport.close()
    denied = {k: v for k, v in tally.by_label.items() if k not in ("control", "allowed")}
    return {
        "offered": len(attack.offered),
        "trickled": len(attack.trickled),
        "control_reached_after_s": round(reached_after, 2),
        "observed_s": observe,
        "datagrams_by_label": tally.by_label,
        "datagrams_to_denied": sum(denied.values()),
        "denied_endpoints_contacted": len(
            [
                e
                for e, n in tally.by_endpoint.items()
                if n and e != tally.control_endpoint and _label(attack, e) in denied
            ]
        ),
        "endpoints_contacted": len(tally.by_endpoint),
    }


def _label(attack: Attack, endpoint: str) -> str:
    for label, host, port in attack.listeners:
        if f"{host}:{port}" == endpoint:
            return label
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="deny,cap,allow_list,loopback")
    parser.add_argument(
        "--observe", type=float, default=0.0, help="seconds to keep counting after the control"
    )
    args = parser.parse_args()
    set_up_namespace()
    results = {name: asyncio.run(run(name, args.observe)) for name in args.scenarios.split(",")}
    print(json.dumps(results, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
