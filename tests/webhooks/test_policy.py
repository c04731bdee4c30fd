"""The pure webhook rules: id-only payloads, the URL policy, names only with PHI allowed over https, and
the backoff schedule (seeded jitter)."""

from __future__ import annotations

import random

import pytest

from vIOP.webhooks.events import BadPayload, WebhookEventType, check_payload
from vIOP.webhooks.policy import (
    Backoff,
    BadWebhookUrl,
    check_addresses,
    check_url_form,
    is_private,
    may_carry_names,
    new_secret,
)


def test_payloads_carry_ids_times_and_counts_only() -> None:
    ok = {"client_id": "cl_abc", "room_id": "rm_x", "starts_at": "2026-12-07T23:00:00Z", "minutes_late": 10}
    assert check_payload(WebhookEventType.CLIENT_NO_SHOW, ok) == ok
    with pytest.raises(BadPayload, match="client_name"):
        check_payload(WebhookEventType.CLIENT_NO_SHOW, {"client_id": "cl_1", "client_name": "Ana"})
    with pytest.raises(BadPayload, match="id or an ISO 8601 time"):
        check_payload(WebhookEventType.CLIENT_NO_SHOW, {"client_id": "Ana Canary"})  # free text
    with pytest.raises(BadPayload, match="unknown webhook event"):
        check_payload("client.exploded", {})
    with pytest.raises(BadPayload, match="must be text"):
        check_payload(WebhookEventType.ATTENDANCE_FINALIZED, {"minutes": [1, 2]})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://ehr.example/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("https://", "names no host"),
        ("https://u:p@ehr.example/x", "credentials"),
        ("https://ehr.example:70000/x", "not a valid URL"),
        ("https://ehr.example/x#frag", "fragment"),
        ("h" * 3000, "2048"),
    ],
)
def test_urls_that_are_not_plain_http_or_https_are_refused(url: str, message: str) -> None:
    with pytest.raises(BadWebhookUrl, match=message):
        check_url_form(url)


def test_private_addresses_are_refused_unless_allowed() -> None:
    for address in (
        "127.0.0.1",
        "::1",
        "10.0.0.5",
        "192.168.1.1",
        "169.254.169.254",
        "::ffff:127.0.0.1",
        "0.0.0.0",
    ):
        assert is_private(address), address
        with pytest.raises(BadWebhookUrl, match="private"):
            check_addresses("h", ["93.184.216.34", address], allow_private=False)  # one is enough
        check_addresses("h", [address], allow_private=True)
    assert not is_private("93.184.216.34")
    with pytest.raises(BadWebhookUrl, match="does not resolve"):
        check_addresses("h", [], allow_private=True)


def test_names_only_with_phi_allowed_and_https() -> None:
    assert may_carry_names("https://ehr.example/in", True)
    assert not may_carry_names("http://ehr.example/in", True)
    assert not may_carry_names("https://ehr.example/in", False)


def test_secrets_are_standard_webhooks_secrets() -> None:
    a, b = new_secret(), new_secret()
    assert a.startswith("whsec_") and a != b and len(a) > 40


def test_backoff_doubles_to_its_cap_with_jitter_from_the_seeded_rng() -> None:
    backoff = Backoff(first=5.0, cap=60.0)
    delays = [backoff.delay(n, random.Random(42)) for n in range(1, 8)]
    for n, delay in enumerate(delays, start=1):
        base = min(60.0, 5.0 * 2 ** (n - 1))
        assert base / 2 <= delay <= base
    assert delays == [backoff.delay(n, random.Random(42)) for n in range(1, 8)]  # reproducible
    assert backoff.delay(10_000, random.Random(1)) <= 60.0  # no overflow far out
