"""Subscription rules and the retry schedule: which URLs a subscription may name, secrets, backoff."""

from __future__ import annotations

import base64
import ipaddress
import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from vIOP.errors import BadRequest

MAX_URL_LENGTH = 2048
SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret).
# Standard Webhooks: base64 of the key, prefixed


class BadWebhookUrl(BadRequest):
    code = "bad_webhook_url"


def check_url_form(url: str) -> tuple[str, str]:
    """(scheme, host) of an absolute http(s) URL with no credentials in it; BadWebhookUrl otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise BadWebhookUrl(f"the URL must be 1 to {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # a malformed port raises here
    except ValueError:
        raise BadWebhookUrl("not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise BadWebhookUrl("the URL must be http:// or https://")
    if not host:
        raise BadWebhookUrl("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise BadWebhookUrl("the URL must not carry credentials: the signature authenticates us")
    if parts.fragment:
        raise BadWebhookUrl("the URL must not have a #fragment")
    return parts.scheme, host


def is_private(address: str) -> bool:
    """Loopback, private, link-local, unspecified, multicast or reserved: not a public receiver."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_reserved
    )


def check_addresses(host: str, addresses: Iterable[str], *, allow_private: bool) -> None:
    """BadWebhookUrl when ``host`` resolved to nothing, or (unless ``allow_private``) to any address that is
    not public: a receiver must not reach into the server's own network (SSRF)."""
    found = list(addresses)
    if not found:
        raise BadWebhookUrl(f"the host {host!r} does not resolve")
    if not allow_private and any(is_private(a) for a in found):
        raise BadWebhookUrl("the URL resolves to a loopback or private address (refused in production)")


def may_carry_names(url: str, allow_phi: bool) -> bool:
    """Names go only to a subscription allowed PHI, and only over TLS."""
    return allow_phi and urlsplit(url).scheme == "https"


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: the n-th failure waits a uniform time in [base/2, base], base =
    min(cap, first * 2**(n-1)). There is no last attempt: an event waits for its receiver (docs/PROGRAM.md)."""

    first: float = 5.0
    cap: float = 3600.0

    def delay(self, failures: int, rng: random.Random) -> float:
        base: float = min(self.cap, self.first * 2.0 ** max(0, min(failures - 1, 60)))
        return base / 2 + rng.uniform(0, base / 2)
