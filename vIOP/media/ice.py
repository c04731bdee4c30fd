"""ICE configuration: the server's advertised host addresses, ICE servers, TURN REST credentials.

- Host addresses: the server's peer connections offer exactly these as host candidates (empty: every
  non-loopback interface, aioice's default). Tests and single-machine setups use ``127.0.0.1``; a server
  behind 1:1 NAT lists its public address.
- ICE servers: the URLs clients get in ``welcome``. The server's own connections use only the first STUN
  URL (aiortc accepts one STUN and one TURN server, and the relay is the reachable end, so it needs no TURN).
  None configured means none at all: aiortc's fallback to Google's STUN server is never used.
- Remote candidates: which addresses a participant may make the relay contact, and how many per connection
  (:mod:`vIOP.media.egress`); built once per relay by :meth:`IceConfig.remote_policy`.
- TURN REST API credentials (coturn ``use-auth-secret``): username ``<expiry>:<participant id>``, password
  ``base64(HMAC-SHA1(secret, username))``. The participant id is opaque, so coturn's logs hold no PHI.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from aiortc import RTCConfiguration, RTCIceServer

from vIOP.errors import BadRequest, ConfigError
from vIOP.ids import ParticipantId
from vIOP.media.egress import DEFAULT_MAX_REMOTE_CANDIDATES, RemotePolicy, parse_network
from vIOP.media.ice_gathering import interface_addresses, peer_configuration

_URL: Final = re.compile(
    r"^(?P<scheme>stun|turn|turns):(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?$"
)
MIN_TURN_TTL: Final = 60


@dataclass(frozen=True, slots=True)
class IceServerEntry:
    """Shaped like the browser's ``RTCIceServer`` (what ``welcome`` carries)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    username: str
    password: str
    expires_at: int  # unix seconds
    ttl_seconds: int
    urls: tuple[str, ...]


def _validate_url(url: str, setting: str) -> str:
    match = _URL.match(url)
    if match is None:
        raise ConfigError(setting, f"{url!r} is not a stun:, turn: or turns: URL (host[:port][?transport=])")
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise ConfigError(setting, f"{url!r} has an invalid port")
    if match.group("scheme") == "stun" and match.group("transport"):
        raise ConfigError(setting, f"{url!r}: stun: URLs take no transport")
    return url


def _validate_address(address: str, setting: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise ConfigError(setting, f"{address!r} is not an IP address") from None


@dataclass(frozen=True, slots=True)
class IceConfig:
    host_addresses: tuple[str, ...] = ()
    server_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl_seconds: int = 4 * 3600
    # Egress policy for remote candidates (vIOP.media.egress). The defaults are production's: no loopback,
    # no private ranges; the settings layer turns loopback on outside production.
    remote_allow: tuple[str, ...] = ()  # CIDRs of private networks clients may legitimately be on
    allow_loopback_candidates: bool = False
    max_remote_candidates: int = DEFAULT_MAX_REMOTE_CANDIDATES
    public_addresses: tuple[str, ...] = ()  # the server's own addresses besides host_addresses

    def __post_init__(self) -> None:
        for address in self.host_addresses:
            _validate_address(address, "ice_host_addresses")
        for address in self.public_addresses:
            _validate_address(address, "public_addresses")
        for network in self.remote_allow:
            try:
                parse_network(network)
            except ValueError as exc:
                raise ConfigError("ice_remote_allow", str(exc)) from None
        if self.max_remote_candidates < 1:
            raise ConfigError("ice_max_remote_candidates", "must be at least 1")
        for url in self.server_urls:
            _validate_url(url, "ice_servers")
        if self.turn_urls and not self.turn_secret:
            raise ConfigError(
                "turn_secret", "TURN URLs are configured but no shared secret to sign credentials"
            )
        if self.turn_secret is not None and len(self.turn_secret) < 16:
            raise ConfigError("turn_secret", "must be at least 16 characters")
        if self.turn_ttl_seconds < MIN_TURN_TTL:
            raise ConfigError("turn_ttl_seconds", f"must be at least {MIN_TURN_TTL}")

    @classmethod
    def loopback(cls) -> IceConfig:
        """Tests and benchmarks: host candidates on 127.0.0.1 only, loopback candidates allowed, no ICE servers."""
        return cls(host_addresses=("127.0.0.1",), allow_loopback_candidates=True)

    def remote_policy(self) -> RemotePolicy:
        """The egress policy for remote candidates. The server's own addresses are the configured host and
        public addresses; with no host addresses configured, every interface address aioice would offer
        (read once, here). ICE server addresses are not among them: a client's relay candidate names the
        TURN server, and the relay must reach it there."""
        own = self.host_addresses or tuple(interface_addresses())
        return RemotePolicy.build(
            allow_loopback=self.allow_loopback_candidates,
            allow=self.remote_allow,
            own_addresses=(*own, *self.public_addresses),
            max_candidates=self.max_remote_candidates,
        )

    @property
    def stun_urls(self) -> tuple[str, ...]:
        return tuple(u for u in self.server_urls if u.startswith("stun:"))

    @property
    def turn_urls(self) -> tuple[str, ...]:
        return tuple(u for u in self.server_urls if u.startswith(("turn:", "turns:")))

    def server_configuration(self) -> RTCConfiguration:
        """For the relay's own peer connections: the first STUN server or none, never Google's."""
        servers = [RTCIceServer(urls=self.stun_urls[0])] if self.stun_urls else []
        return peer_configuration(servers)

    def turn_credentials(
        self, participant: ParticipantId, *, now: float, session_ends_at: float | None = None
    ) -> TurnCredentials:
        """Ephemeral TURN credentials that expire no later than the session (and the configured TTL)."""
        if not self.turn_secret or not self.turn_urls:
            raise BadRequest("TURN is not configured on this server")
        expires = int(now) + self.turn_ttl_seconds
        if session_ends_at is not None:
            expires = min(expires, int(session_ends_at))
        if expires <= int(now):
            raise BadRequest("the session has ended")
        return turn_rest_credentials(self.turn_secret, participant, expires, self.turn_urls, now=now)

    def client_ice_servers(
        self, participant: ParticipantId, *, now: float, session_ends_at: float | None = None
    ) -> tuple[IceServerEntry, ...]:
        """What a client is told in ``welcome``: STUN as is, TURN with fresh credentials."""
        entries: list[IceServerEntry] = []
        if self.stun_urls:
            entries.append(IceServerEntry(urls=self.stun_urls))
        if self.turn_urls and self.turn_secret:
            creds = self.turn_credentials(participant, now=now, session_ends_at=session_ends_at)
            entries.append(
                IceServerEntry(urls=creds.urls, username=creds.username, credential=creds.password)
            )
        return tuple(entries)


def turn_rest_credentials(
    secret: str, participant: str, expires_at: int, urls: Sequence[str], *, now: float
) -> TurnCredentials:
    """coturn ``use-auth-secret``: ``username = "<expiry>:<user>"``, ``password = b64(HMAC-SHA1(secret, username))``."""
    if ":" in participant or not participant:
        raise BadRequest("participant id must be non-empty and contain no ':'")
    username = f"{expires_at}:{participant}"
    # SHA-1 because coturn's use-auth-secret defines it so; HMAC-SHA1 is not broken as a MAC.
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(
        username=username,
        password=base64.b64encode(digest).decode("ascii"),
        expires_at=expires_at,
        ttl_seconds=max(0, expires_at - int(now)),
        urls=tuple(urls),
    )
