"""What ICE gathering offers: the host addresses a peer connection advertises, and its ICE servers.

aioice offers every interface but loopback; :func:`advertising` makes the gathering done inside one
``setLocalDescription`` use configured addresses instead (a context variable, so other peer connections in
the process keep aioice's default). :func:`peer_configuration` never leaves aiortc to pick ICE servers.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

from vIOP.media import aiortc_internals

_advertised: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "viop_advertised_host_addresses", default=None
)


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _advertised.get()
    if chosen is None:
        return aiortc_internals.aioice_host_addresses(use_ipv4, use_ipv6)
    return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]


def interface_addresses() -> list[str]:
    """Every address aioice offers by default (all interfaces but loopback): the server's own addresses."""
    return aiortc_internals.aioice_host_addresses(True, True)


@contextlib.contextmanager
def advertising(addresses: Sequence[str]) -> Iterator[None]:
    """Within this block, ICE gathering offers exactly ``addresses`` as host candidates.

    An empty sequence keeps aioice's default (every interface except loopback).
    """
    if not addresses:
        yield
        return
    aiortc_internals.route_host_addresses(_host_addresses)
    token = _advertised.set(tuple(addresses))
    try:
        yield
    finally:
        _advertised.reset(token)


def peer_configuration(ice_servers: Sequence[RTCIceServer]) -> RTCConfiguration:
    """Always an explicit list: ``iceServers=None`` would make aiortc use Google's public STUN server."""
    return RTCConfiguration(iceServers=list(ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
