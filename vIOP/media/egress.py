"""Which remote ICE candidates the relay may send STUN to, and how many per connection (egress policy).

Every remote candidate a participant names (in an offer, an answer or a trickled ``candidate`` message)
makes the server's ICE agent send connectivity checks to that address: without a policy a participant can
point the relay at loopback services, the private network behind it, link-local metadata endpoints, or
fan one offer out to hundreds of hosts. The relay is always the reachable end (it advertises host
addresses; a browser's own checks reach it and create peer-reflexive pairs), so a dropped candidate costs a
legitimate client nothing but one path it did not need.

The rules, in order (the first that applies decides):

1. ``*.local`` names (mDNS) and any other non-IP name are dropped: resolving them would send mDNS multicast
   or DNS queries on the participant's behalf.
2. Loopback is allowed only with ``allow_loopback`` (tests and single-machine development).
3. The server's own addresses are dropped (checks to itself would reach its other services).
4. An address inside an ``allow`` network is allowed (deployments whose clients are on a private network).
5. Link-local, multicast and every address that is not globally routable (``ipaddress``'s ``is_global``:
   RFC 1918, RFC 6598 CGNAT, IPv6 ULA, unspecified, reserved, documentation ...) is dropped.

An IPv4-mapped IPv6 address is judged as the IPv4 address it carries, a 6to4 address also by its embedded
IPv4 address. :class:`RemoteCandidates` then admits at most ``max_candidates`` distinct candidates per
connection; the rest are dropped too. Dropping is silent toward the client (browsers treat a candidate the
peer ignores as normal) and reported to ``on_drop`` with a :class:`DropReason` (never the address: client
addresses are PHI).

Pure: no sockets, no aiortc. The SDP filter mirrors how aiortc's parser finds candidate lines
(``str.splitlines()``, ``a=candidate:`` in any section), so nothing it would read escapes the filter.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from vIOP.errors import BadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MAX_REMOTE_CANDIDATES: Final = 20
"""Per connection. A browser sends well under 10 per transport (host, srflx, relay; IPv4 and IPv6)."""


class DropReason(enum.StrEnum):
    """Why a remote candidate was dropped (a metric label: a category, never the address)."""

    MDNS = "mdns"
    HOSTNAME = "hostname"
    LOOPBACK = "loopback"
    OWN_ADDRESS = "own_address"
    LINK_LOCAL = "link_local"
    MULTICAST = "multicast"
    PRIVATE = "private"  # ipaddress's is_private: RFC 1918, ULA, documentation, benchmarking ...
    NOT_GLOBAL = "not_global"  # neither private nor global: RFC 6598 CGNAT and the like
    OVER_CAP = "over_cap"


def parse_network(text: str) -> IPNetwork:
    """A CIDR such as ``10.20.0.0/16`` (a bare address means just that address); ValueError otherwise."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"{text.strip()!r} is not a network like 10.20.0.0/16 ({exc})") from None


def _judged_address(host: str) -> IPAddress | DropReason:
    name = host.rstrip(".").lower()
    if name.endswith(".local"):
        return DropReason.MDNS
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return DropReason.HOSTNAME
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _category(address: IPAddress) -> DropReason | None:
    """The default-deny ranges, from the ``ipaddress`` properties (no hand-written range table)."""
    if address.is_loopback:
        return DropReason.LOOPBACK
    if address.is_link_local:
        return DropReason.LINK_LOCAL
    if address.is_multicast:  # is_global is True for global-scope multicast
        return DropReason.MULTICAST
    if isinstance(address, ipaddress.IPv6Address) and address.sixtofour is not None:
        embedded = _category(address.sixtofour)
        if embedded is not None:
            return embedded
    if not address.is_global:
        return DropReason.PRIVATE if address.is_private else DropReason.NOT_GLOBAL
    return None


@dataclass(frozen=True, slots=True)
class RemotePolicy:
    """Which addresses the relay may contact as remote ICE candidates (see the module docstring)."""

    allow_loopback: bool = False
    allow: tuple[IPNetwork, ...] = ()
    own_addresses: frozenset[IPAddress] = frozenset()
    max_candidates: int = DEFAULT_MAX_REMOTE_CANDIDATES

    def __post_init__(self) -> None:
        if self.max_candidates < 1:
            raise ValueError("max_candidates must be at least 1")

    @classmethod
    def build(
        cls,
        *,
        allow_loopback: bool = False,
        allow: Iterable[str] = (),
        own_addresses: Iterable[str] = (),
        max_candidates: int = DEFAULT_MAX_REMOTE_CANDIDATES,
    ) -> RemotePolicy:
        """From configuration strings (CIDRs and addresses); ValueError names a bad one."""
        own: set[IPAddress] = set()
        for text in own_addresses:
            judged = _judged_address(text)
            if isinstance(judged, DropReason):
                raise ValueError(f"{text!r} is not an IP address")
            own.add(judged)
        return cls(allow_loopback, tuple(parse_network(n) for n in allow), frozenset(own), max_candidates)

    def refusal(self, host: str) -> DropReason | None:
        """None if the relay may send to ``host`` (a candidate's address field), else why not."""
        address = _judged_address(host)
        if isinstance(address, DropReason):
            return address
        if address.is_loopback and self.allow_loopback:
            return None
        if address in self.own_addresses:
            return DropReason.OWN_ADDRESS
        if any(address in network for network in self.allow):
            return None
        return _category(address)


@dataclass(frozen=True, slots=True)
class CandidateAddress:
    """The fields of an ICE candidate line that say where checks go (RFC 8839 section 5.1)."""

    component: int
    transport: str
    host: str
    port: int

    @property
    def key(self) -> tuple[int, str, str, int]:
        """Lines naming the same transport address, spelt the same, are one candidate. Spellings are not
        merged: two spellings of one address count twice, so the cap bounds what aioice can be given."""
        return (self.component, self.transport, self.host, self.port)


def parse_candidate_value(value: str) -> CandidateAddress:
    """The part after ``candidate:``, split exactly as aiortc's ``candidate_from_sdp`` splits it.

    BadRequest for a line aiortc could not read, or whose port no socket can send to (found by the live
    fuzz: aioice passed a port above 65535 to ``sendto``, which killed the connection's UDP transport).
    """
    bits = value.split()
    try:
        if len(bits) < 8:
            raise ValueError("too few fields")
        component, port = int(bits[1]), int(bits[5])
    except ValueError:
        raise BadRequest("candidate: not a valid ICE candidate line") from None
    if not 0 < port < 65536:
        raise BadRequest("candidate: the port must be between 1 and 65535")
    return CandidateAddress(component, bits[2], bits[4], port)


def _attribute(line: str) -> str | None:
    """aiortc's ``parse_attr``: the attribute name is what follows ``a=`` up to the first ``:``."""
    return line[2:].split(":", 1)[0] if line.startswith("a=") else None


DropListener = Callable[[DropReason], None]


def _ignore(reason: DropReason) -> None:
    pass


@dataclass(slots=True, eq=False)
class RemoteCandidates:
    """One peer connection's remote candidates: the policy applied, at most ``max_candidates`` admitted.

    The budget spans the connection's whole life (its offer, later answers and trickled candidates); a
    candidate already admitted is not counted twice (browsers repeat the same candidates on every bundled
    m-line).
    """

    policy: RemotePolicy
    on_drop: DropListener = _ignore
    dropped: int = 0
    _admitted: set[tuple[int, str, str, int]] = field(default_factory=set)

    @property
    def admitted(self) -> int:
        return len(self._admitted)

    @property
    def may_end(self) -> bool:
        """Whether end-of-candidates may reach the ICE agent. Not once a candidate was dropped: at
        end-of-candidates aioice fails a component that has no pair yet, and a client whose only
        candidates were dropped (mDNS names, a private host address on the server's LAN) connects through
        the peer-reflexive pair its own checks create, which may arrive after its end-of-candidates."""
        return self.dropped == 0

    def admit(self, candidate: CandidateAddress) -> bool:
        reason = self.policy.refusal(candidate.host)
        if reason is None:
            key = candidate.key
            if key in self._admitted:
                return True
            if len(self._admitted) < self.policy.max_candidates:
                self._admitted.add(key)
                return True
            reason = DropReason.OVER_CAP
        self.dropped += 1
        self.on_drop(reason)
        return False

    def admit_line(self, line: str) -> bool:
        """A trickled candidate (``candidate:...``, with or without ``a=``); BadRequest if unreadable."""
        return self.admit(parse_candidate_value(line.removeprefix("a=").removeprefix("candidate:")))

    def filter_sdp(self, sdp: str) -> str:
        """``sdp`` without the candidate lines this connection may not use, in every section.

        Every section matters: aiortc feeds the shared (BUNDLE) transport the candidates of the LAST
        bundled m-line, so filtering only the first would be a bypass. BadRequest if a candidate line is
        unreadable (aiortc would refuse the whole description anyway). ``a=end-of-candidates`` goes too
        once anything was dropped (see :attr:`may_end`). Other lines are kept byte for byte.
        """
        kept: list[tuple[str | None, str]] = []
        for body, line in zip(sdp.splitlines(), sdp.splitlines(keepends=True), strict=True):
            attribute = _attribute(body)
            if attribute == "candidate":
                value = body[2:].split(":", 1)[1] if ":" in body[2:] else ""
                if not self.admit(parse_candidate_value(value)):
                    continue
            kept.append((attribute, line))
        ending = self.may_end
        return "".join(line for attribute, line in kept if ending or attribute != "end-of-candidates")
