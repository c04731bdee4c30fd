"""Hostile signaling frames for a live server: generated and mutated messages, SDP and ICE candidates.

The message mutators are the codec fuzz's (tests/signaling/test_codec_fuzz.py); this module adds what only
matters on a live socket: real ids substituted so host actions hit real participants, mutated SDP from a
real aiortc offer, mutated candidate lines, and a loopback gate. The gate decodes every frame exactly as
the server will and rewrites any ICE candidate that names a non-loopback address (or a hostname, which
would mean DNS or mDNS) to 127.0.0.1: the fuzzing must never make the server's ICE agent reach beyond
this machine.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiortc.sdp
import msgspec
from aiortc import AudioStreamTrack, VideoStreamTrack
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tests.signaling.test_codec_fuzz import BASES, _mutate_bytes, _mutate_structure, _near_cap, json_values
from vIOP.client.media import MediaPeer
from vIOP.signaling import messages as m
from vIOP.signaling.codec import DecodeFailure, decode_client, encode_text

Frame = str | bytes  # str goes out as a text frame, bytes as a binary frame

SAMPLE_PID = "pt_AbCdEfGhIjKlMnOp"  # the participant id in tests/signaling/samples.py
LOOPBACK_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Seed:
    """What hypothesis draws; a fast loop derives many frames from each."""

    base: dict[str, Any]
    junk: list[Any]
    text: str
    seed: int


def draw_seeds(count: int, run_seed: int) -> list[Seed]:
    seeds: list[Seed] = []

    @hypothesis_seed(run_seed)
    @settings(max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        base=st.sampled_from(BASES),
        junk=st.lists(json_values, min_size=1, max_size=6),
        text=st.text(max_size=200),
        seed=st.integers(0, 2**32 - 1),
    )
    def collect(base: dict[str, Any], junk: list[Any], text: str, seed: int) -> None:
        seeds.append(Seed(base, junk, text, seed))

    collect()
    return seeds


async def real_offer_sdp(*, screen: bool = False) -> str:
    """A genuine aiortc offer (audio + video, ICE on 127.0.0.1 only), as the Python client sends it;
    ``screen``: with a second video section, the screen share."""
    peer = MediaPeer(host_addresses=(LOOPBACK_HOST,))
    try:
        peer.publish(AudioStreamTrack(), VideoStreamTrack(), *([VideoStreamTrack()] if screen else []))
        return await peer.create_offer()
    finally:
        await peer.close()


# --- SDP and candidates ---------------------------------------------------------------------------------

_SDP_LINES = [
    "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
    "a=candidate:x",
    "a=candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype passive",
    "a=fingerprint:sha-256 00",
    "a=fingerprint:md5 " + ":".join(["AB"] * 16),
    "a=setup:holdconn",
    "a=ice-ufrag:",
    "a=ice-pwd:" + "p" * 300,
    "a=rtpmap:96 VP8/0",
    "a=rtpmap:300 opus/48000/2",
    "a=rtpmap:-1 VP8/90000",
    "a=fmtp:96 apt=9999",
    "a=rtcp-fb:96 nack pli",
    "a=ssrc:4294967296 cname:x",
    "a=ssrc-group:FID 1",
    "a=msid:- -",
    "a=mid:",
    "a=group:BUNDLE 9 9 9",
    "a=extmap:999 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sctp-port:0",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "m=video 9 UDP/TLS/RTP/SAVPF",
    "m=audio 0 RTP/AVP 0",
    "m=text 9 RTP/AVP 98",
    "c=IN IP6 ::1",
    "b=AS:-5",
    "v=1",
    "o=- 1 1 IN IP4",
    "a=" + "\u202e" * 20,
    "a=recvonly",
    "a=inactive",
    "a=sendonly",
    "",
]
_SEPARATORS = ["\r\n", "\n", "\r", "\r\n\r\n", "\x0b", "\u2028"]


def mutate_sdp(rng: random.Random, sdp: str) -> str:
    lines = sdp.split("\r\n")
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        i = rng.randrange(len(lines)) if lines else 0
        if op == 0 and lines:
            del lines[i]
        elif op == 1 and lines:
            lines.insert(i, lines[i])
        elif op == 2:
            lines.insert(i, rng.choice(_SDP_LINES))
        elif op == 3 and lines:
            # Numbers are where parsers trip: ports, payload types, SSRCs, priorities.
            words = lines[i].split(" ")
            j = rng.randrange(len(words))
            words[j] = str(rng.choice([0, -1, 65536, 2**32, 2**63, 10**30, 127]))
            lines[i] = " ".join(words)
        elif op == 4 and lines:
            cut = rng.randint(0, len(lines[i]))
            lines[i] = lines[i][:cut]
        elif op == 5:
            lines = lines[: rng.randint(0, len(lines))]
        elif op == 6 and lines:
            lines[i] = (
                lines[i].replace("audio", "video")
                if rng.random() < 0.5
                else lines[i].replace("video", "audio")
            )
        elif op == 7 and lines:
            lines[i] = lines[i] + rng.choice(["\x00", "\u00e9", "\ud7ff", " ", ":", "=" * 50, "x" * 2000])
        elif op == 8:
            rng.shuffle(lines)
        else:
            lines = [
                line
                for line in lines
                if not line.startswith(
                    rng.choice(
                        ["a=ice", "a=finger", "a=mid", "a=group", "a=rtpmap", "a=candidate", "a=setup"]
                    )
                )
            ]
    return rng.choice(_SEPARATORS).join(lines)


def mutate_candidate(rng: random.Random, line: str) -> str:
    words = line.split(" ")
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        j = rng.randrange(len(words)) if words else 0
        if op == 0 and words:
            del words[j]
        elif op == 1 and words:
            words[j] = str(rng.choice([0, -1, 65535, 65536, 2**32, 2**64, "1e9", "NaN", ""]))
        elif op == 2:
            words.insert(
                j, rng.choice(["typ", "raddr", "rport", "tcptype", "generation", "ufrag", "x" * 300])
            )
        elif op == 3 and words:
            words[j] = rng.choice(["udp", "tcp", "UDP", "sctp", "host", "srflx", "relay", "prflx", "bogus"])
        elif op == 4:
            words = words[: rng.randint(0, len(words))]
        elif op == 5 and words:
            words[j] = rng.choice(
                ["::1", "127.0.0.2", "example.local", "[::1]", "999.1.1.1", "\u00e9", "0.0.0.0"]
            )
        else:
            return rng.choice(["", "candidate:", "a=candidate:", "candidate:" + "1 " * 500, "\x00"])
    prefix = rng.choice(["", "candidate:", "a=candidate:"])
    return prefix + " ".join(words).removeprefix("candidate:")


def _loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a hostname: resolving it would leave the machine (DNS, or mDNS for .local)
    return address.is_loopback


def _parsed_candidate(text: str) -> Any | None:
    try:
        return aiortc.sdp.candidate_from_sdp(text.removeprefix("a=").removeprefix("candidate:"))
    except Exception:
        return None  # the server refuses it the same way: nothing will be contacted


def _loopback_candidate_line(line: str) -> str:
    candidate = _parsed_candidate(line)
    if candidate is None or _loopback(candidate.ip):
        return line
    candidate.ip = LOOPBACK_HOST
    return (
        "a=candidate:" + aiortc.sdp.candidate_to_sdp(candidate)
        if line.startswith("a=")
        else ("candidate:" + aiortc.sdp.candidate_to_sdp(candidate))
    )


def _sdp_candidates_loopback(sdp: str) -> bool:
    try:
        description = aiortc.sdp.SessionDescription.parse(sdp)
    except Exception:
        return True  # the server cannot parse it either
    return all(_loopback(c.ip) for media in description.media for c in media.ice_candidates)


def _loopback_sdp(sdp: str) -> str:
    out = []
    for line in sdp.splitlines(keepends=True):  # aiortc splits with str.splitlines() too
        body = line.rstrip("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
        if body.startswith("a=candidate:"):
            line = _loopback_candidate_line(body) + line[len(body) :]
        out.append(line)
    return "".join(out)


def loopback_only(frame: Frame) -> Frame | None:
    """The frame, with any ICE address the server would contact made loopback; None if that fails."""
    decoded = decode_client(frame)
    if isinstance(decoded, DecodeFailure):
        return frame
    if isinstance(decoded, m.Offer | m.Answer):
        if _sdp_candidates_loopback(decoded.sdp):
            return frame
        sdp = _loopback_sdp(decoded.sdp)
        if not _sdp_candidates_loopback(sdp):
            return None
        return encode_text(msgspec.structs.replace(decoded, sdp=sdp))
    if isinstance(decoded, m.Candidate):
        candidate = _parsed_candidate(decoded.candidate) if decoded.candidate else None
        if candidate is None or _loopback(candidate.ip):
            return frame
        return encode_text(
            msgspec.structs.replace(decoded, candidate=_loopback_candidate_line(decoded.candidate))
        )
    return frame


# --- the mix ----------------------------------------------------------------------------------------------


class FrameMaker:
    """Frames for one fuzzing seat. ``targets`` are real participant ids to aim host actions at."""

    def __init__(self, seeds: Sequence[Seed], offer_sdp: str, candidate_line: str) -> None:
        self.seeds = seeds
        self.offer_sdp = offer_sdp
        self.candidate_line = candidate_line
        self.kinds: dict[str, int] = {}

    def frames(self, rng: random.Random, count: int, targets: Sequence[str]) -> list[tuple[str, Frame]]:
        made: list[tuple[str, Frame]] = []
        while len(made) < count:
            kind, frame = self._one(rng, rng.choice(self.seeds), targets)
            safe = loopback_only(frame)
            if safe is not None:
                made.append((kind, safe))
                self.kinds[kind] = self.kinds.get(kind, 0) + 1
        return made

    def _aimed(self, base: dict[str, Any], targets: Sequence[str], rng: random.Random) -> dict[str, Any]:
        if "participant_id" in base and targets and rng.random() < 0.7:
            return {**base, "participant_id": rng.choice(targets)}
        return base

    def _one(self, rng: random.Random, seed: Seed, targets: Sequence[str]) -> tuple[str, Frame]:
        roll = rng.random()
        base = self._aimed(seed.base, targets, rng)
        if roll < 0.45:
            return "mutated", _text_or_binary(_mutate_structure(rng, base, seed.junk))
        if roll < 0.57:
            return "valid", json.dumps(base)
        if roll < 0.65:
            return "bytes", _text_or_binary(_mutate_bytes(rng, json.dumps(base).encode()))
        if roll < 0.67:
            return "near_cap", _text_or_binary(_near_cap(rng))
        if roll < 0.70:
            junk = rng.choice(seed.junk) if rng.random() < 0.7 else seed.text
            return "junk", json.dumps(junk)
        if roll < 0.82:
            # One in ten unchanged: the whole path to a new peer connection runs too.
            sdp = self.offer_sdp if rng.random() < 0.1 else mutate_sdp(rng, self.offer_sdp)
            return "offer", json.dumps({"type": "offer", "id": rng.randrange(2**31), "sdp": sdp})
        if roll < 0.85:
            return "answer", json.dumps({"type": "answer", "sdp": mutate_sdp(rng, self.offer_sdp)})
        candidate: dict[str, Any] = {
            "type": "candidate",
            "candidate": mutate_candidate(rng, self.candidate_line),
        }
        if rng.random() < 0.7:
            candidate["sdp_mid"] = rng.choice(["0", "1", "", "x" * 64, "\u00e9"])
        if rng.random() < 0.7:
            candidate["sdp_mline_index"] = rng.choice([0, 1, 255, 256, -1])
        return "candidate", json.dumps(candidate)


def _text_or_binary(frame: bytes) -> Frame:
    """Valid UTF-8 goes out as a text frame; anything else can only be a binary frame."""
    try:
        return frame.decode("utf-8")
    except UnicodeDecodeError:
        return frame
