"""The egress policy for remote ICE candidates (vIOP/media/egress.py), on its own: addresses, the cap, and
an SDP filter that agrees with aiortc's own parser on which lines are candidates."""

from __future__ import annotations

import aiortc.sdp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vIOP.errors import BadRequest, ConfigError
from vIOP.media.egress import DropReason, RemoteCandidates, RemotePolicy, parse_candidate_value
from vIOP.media.ice import IceConfig

OWN = "11.0.0.254"
PRODUCTION = RemotePolicy.build(own_addresses=[OWN, "2a00:1::254"])
DEVELOPMENT = RemotePolicy.build(allow_loopback=True, own_addresses=["127.0.0.1", OWN])


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", DropReason.LOOPBACK),
        ("127.1.2.3", DropReason.LOOPBACK),
        ("::1", DropReason.LOOPBACK),
        ("::ffff:127.0.0.1", DropReason.LOOPBACK),  # IPv4-mapped: judged as the IPv4 address
        ("10.1.2.3", DropReason.PRIVATE),
        ("172.16.5.6", DropReason.PRIVATE),
        ("192.168.7.8", DropReason.PRIVATE),
        ("::ffff:192.168.7.8", DropReason.PRIVATE),
        ("fd00::5", DropReason.PRIVATE),  # IPv6 ULA
        ("100.64.1.2", DropReason.NOT_GLOBAL),  # RFC 6598 CGNAT
        ("169.254.169.254", DropReason.LINK_LOCAL),  # cloud metadata endpoints live here
        ("fe80::1", DropReason.LINK_LOCAL),
        ("fe80::1%eth0", DropReason.LINK_LOCAL),
        ("224.0.0.251", DropReason.MULTICAST),
        ("239.1.2.3", DropReason.MULTICAST),
        ("ff02::fb", DropReason.MULTICAST),
        ("0.0.0.0", DropReason.PRIVATE),  # "this host"
        ("::", DropReason.PRIVATE),
        ("240.0.0.5", DropReason.PRIVATE),  # reserved
        ("255.255.255.255", DropReason.PRIVATE),
        ("192.0.2.5", DropReason.PRIVATE),  # documentation
        ("2001:db8::5", DropReason.PRIVATE),
        ("2002:a01:203::1", DropReason.PRIVATE),  # 6to4 wrapping 10.1.2.3
        (OWN, DropReason.OWN_ADDRESS),
        ("2a00:1::254", DropReason.OWN_ADDRESS),
        ("abcdef01-2345.local", DropReason.MDNS),
        ("Printer.LOCAL.", DropReason.MDNS),
        ("relay.example.org", DropReason.HOSTNAME),
        ("", DropReason.HOSTNAME),
    ],
)
def test_production_policy_refuses(host: str, reason: DropReason) -> None:
    assert PRODUCTION.refusal(host) is reason


@pytest.mark.parametrize("host", ["11.0.0.1", "8.8.8.8", "2a00:1::5", "::ffff:8.8.8.8", "192.88.99.1"])
def test_production_policy_allows_global_addresses(host: str) -> None:
    assert PRODUCTION.refusal(host) is None


def test_development_allows_loopback_even_as_its_own_address_but_nothing_else_private() -> None:
    assert DEVELOPMENT.refusal("127.0.0.1") is None  # the server's own host address in tests
    assert DEVELOPMENT.refusal("::1") is None
    assert DEVELOPMENT.refusal("10.1.2.3") is DropReason.PRIVATE
    assert DEVELOPMENT.refusal("x.local") is DropReason.MDNS
    assert DEVELOPMENT.refusal(OWN) is DropReason.OWN_ADDRESS


def test_allow_list_admits_its_networks_only_and_never_the_server_itself() -> None:
    policy = RemotePolicy.build(allow=["10.0.0.0/8", "fd00::/8"], own_addresses=["10.0.0.254"])
    assert policy.refusal("10.1.2.3") is None
    assert policy.refusal("fd00::5") is None
    assert policy.refusal("192.168.7.8") is DropReason.PRIVATE
    assert policy.refusal("127.0.0.1") is DropReason.LOOPBACK
    assert policy.refusal("10.0.0.254") is DropReason.OWN_ADDRESS
    assert policy.refusal("x.local") is DropReason.MDNS


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "10.0.0.0/33", "clinic-lan", ""])
def test_allow_list_entries_must_be_networks(bad: str) -> None:
    with pytest.raises(ValueError, match="not a network"):
        RemotePolicy.build(allow=[bad])
    with pytest.raises(ConfigError):
        IceConfig(remote_allow=(bad,))


def line(host: str, port: int = 50000, priority: int = 100, component: int = 1) -> str:
    return f"candidate:{port} {component} udp {priority} {host} {port} typ host"


def test_cap_holds_across_offer_answer_and_trickle_and_repeats_do_not_count() -> None:
    dropped: list[DropReason] = []
    gate = RemoteCandidates(RemotePolicy.build(max_candidates=5), dropped.append)
    offer = "".join(f"a={line('11.0.0.1', 1000 + i)}\r\n" for i in range(4))
    assert (
        gate.filter_sdp("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + offer + "m=video 9 x 96\r\n" + offer).count(
            "a=candidate:"
        )
        == 8
    )  # the same four on both m-lines: admitted once, kept on both
    assert gate.admitted == 4
    assert gate.admit_line(line("11.0.0.1", 2000))
    assert not gate.admit_line(line("11.0.0.1", 2001))
    assert gate.admit_line(line("11.0.0.1", 1000))  # already admitted: no new budget needed
    assert gate.filter_sdp(f"m=audio 9 x 111\r\na={line('11.0.0.1', 3000)}\r\n") == "m=audio 9 x 111\r\n"
    assert dropped == [DropReason.OVER_CAP, DropReason.OVER_CAP]
    assert gate.admitted == 5


def test_denied_candidates_do_not_use_the_budget() -> None:
    gate = RemoteCandidates(RemotePolicy.build(max_candidates=2))
    for i in range(50):
        assert not gate.admit_line(line("10.0.0.1", 1000 + i))
    assert gate.admit_line("a=" + line("11.0.0.1"))
    assert gate.admitted == 1


def test_end_of_candidates_is_withheld_once_a_candidate_was_dropped() -> None:
    """Otherwise aioice fails the connection at once, before the client's own checks (peer-reflexive) can
    save it; the test in test_relay_egress.py shows such a client connecting."""
    end = "a=end-of-candidates\r\n"
    clean = RemoteCandidates(PRODUCTION)
    sdp = f"m=audio 9 x 111\r\na={line('11.0.0.1')}\r\n{end}"
    assert clean.filter_sdp(sdp) == sdp
    assert clean.may_end
    gate = RemoteCandidates(PRODUCTION)
    assert gate.filter_sdp(f"m=audio 9 x 111\r\na={line('x.local')}\r\n{end}m=video 9 x 96\r\n{end}") == (
        "m=audio 9 x 111\r\nm=video 9 x 96\r\n"
    )
    assert not gate.may_end


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1 1 udp 100 11.0.0.1 65536 typ host", "port"),
        ("1 1 udp 100 11.0.0.1 0 typ host", "port"),
        ("1 1 udp 100 11.0.0.1 -1 typ host", "port"),
        ("1 1 udp 100 11.0.0.1 5000", "not a valid"),
        ("1 x udp 100 11.0.0.1 5000 typ host", "not a valid"),
        ("", "not a valid"),
    ],
)
def test_unreadable_candidates_are_refused(value: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_candidate_value(value)
    with pytest.raises(BadRequest, match=message):
        RemoteCandidates(PRODUCTION).filter_sdp(f"v=0\r\nm=audio 9 x 111\r\na=candidate:{value}\r\n")


# --- the SDP filter agrees with aiortc's parser ---------------------------------------------------------

HOSTS = ["11.0.0.1", "10.1.2.3", "127.0.0.1", "x.local", "fe80::1", "2a00:1::5", "8.8.8.8"]
BREAKS = ["\r\n", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@st.composite
def sdp_with_candidates(draw: st.DrawFn) -> str:
    """Sections whose candidate lines aiortc's parser reads, separated by every line break it accepts."""
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0"]
    for kind in draw(st.lists(st.sampled_from(["audio", "video"]), min_size=1, max_size=4)):
        lines.append(f"m={kind} 9 UDP/TLS/RTP/SAVPF 96")
        for _ in range(draw(st.integers(0, 8))):
            host = draw(st.sampled_from(HOSTS))
            port = draw(st.integers(1, 65535))
            lines.append(f"a={line(host, port, draw(st.integers(1, 2**31)))}")
    sdp = ""
    for text in lines:
        sdp += text + draw(st.sampled_from(BREAKS))
    return sdp


@settings(max_examples=200, deadline=None)
@given(sdp_with_candidates(), st.integers(1, 6))
def test_aiortc_reads_only_admitted_candidates_from_a_filtered_sdp(sdp: str, cap: int) -> None:
    gate = RemoteCandidates(RemotePolicy.build(max_candidates=cap))
    filtered = gate.filter_sdp(sdp)
    parsed = aiortc.sdp.SessionDescription.parse(filtered)
    seen = {(c.ip, c.port) for media in parsed.media for c in media.ice_candidates}
    assert all(PRODUCTION.refusal(ip) is None for ip, _ in seen)
    assert len(seen) <= cap
    before = aiortc.sdp.SessionDescription.parse(sdp)
    allowed = {
        (c.ip, c.port) for m in before.media for c in m.ice_candidates if PRODUCTION.refusal(c.ip) is None
    }
    assert len(seen) == min(cap, len(allowed))  # nothing allowed is lost below the cap
