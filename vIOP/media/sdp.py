"""Reading what a participant sends: SDP summarized for the relay's checks, and ICE candidate lines.

Both are parsed with aiortc's own parser (what ``setRemoteDescription`` and ``addIceCandidate`` will do,
reached through ``vIOP.media.aiortc_internals``); anything it cannot read, or that vIOP does not carry, is a
:class:`~vIOP.errors.BadRequest`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aiortc import RTCIceCandidate

from vIOP.errors import BadRequest
from vIOP.media import aiortc_internals

_CANDIDATE_TYPES: Final = frozenset({"host", "srflx", "prflx", "relay"})


@dataclass(frozen=True, slots=True)
class MediaSection:
    kind: str
    mid: str | None
    direction: str | None
    stream_id: str | None  # first half of a=msid
    codecs: tuple[str, ...]  # MIME types, lower case
    payload_types: tuple[int, ...]
    ssrcs: tuple[int, ...] = ()  # declared with a=ssrc (media and RTX)


@dataclass(frozen=True, slots=True)
class SdpSummary:
    media: tuple[MediaSection, ...]
    bundle: tuple[str, ...]
    has_credentials: bool  # every m-line carries ICE ufrag/pwd and a DTLS fingerprint


def summarize_sdp(sdp: str) -> SdpSummary:
    """Parse SDP with aiortc's own parser (what ``setRemoteDescription`` will do), or raise BadRequest."""
    try:
        media, bundle = aiortc_internals.parse_sdp_media(sdp)
    except Exception as exc:  # aiortc's parser raises whatever a malformed line triggers
        raise BadRequest("sdp: not a valid session description") from exc
    sections = []
    credentials = True
    for m in media:
        codecs = tuple(c.mimeType.lower() for c in m.codecs)
        pts = tuple(int(c.payloadType) for c in m.codecs if c.payloadType is not None)
        stream_id = m.msid.split()[0] if m.msid else None
        credentials = credentials and m.has_ice_credentials and m.has_fingerprint
        sections.append(MediaSection(m.kind, m.mid, m.direction, stream_id, codecs, pts, m.ssrcs))
    return SdpSummary(tuple(sections), bundle, credentials)


def parse_candidate(line: str, sdp_mid: str | None) -> RTCIceCandidate:
    """A browser ``RTCIceCandidate.candidate`` string (with or without the ``candidate:`` prefix)."""
    text = line.removeprefix("a=").removeprefix("candidate:")
    try:
        candidate = aiortc_internals.candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError) as exc:
        raise BadRequest("candidate: not a valid ICE candidate line") from exc
    if (
        candidate.protocol.lower() not in ("udp", "tcp")
        or not 0 < candidate.port < 65536
        or candidate.type not in _CANDIDATE_TYPES
    ):
        raise BadRequest("candidate: unsupported protocol or port")
    candidate.sdpMid = sdp_mid
    return candidate
