"""Simulcast on the publisher hop: what a publisher offers, what the relay answers, and which packet is which.

A browser publishing with ``sendEncodings`` (RFC 8853, RID-based) offers on its video m-line
``a=rid:<id> send`` per encoding and ``a=simulcast:send <id>;<id>``, and sends each encoding on its own
SSRC, naming its RID in the ``sdes:rtp-stream-id`` header extension (RTX packets name the RID they repair
in ``sdes:repaired-rtp-stream-id``) until RTCP has acknowledged the SSRC. aiortc's SDP parser drops the
``a=rid``/``a=simulcast`` lines and its answer would say nothing, so the browser would send one layer only:
:func:`offered_layers` reads them from the offer, :func:`accept_layers` writes the receive side into the
relay's answer (and into every later server offer, or the browser drops the other layers again), and
:class:`LayerDemux` learns from the header extensions which SSRC carries which layer.

Pure: SDP text and values in, SDP text and values out; no aiortc.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from vIOP.errors import BadRequest

RTP_STREAM_ID: Final = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RTP_STREAM_ID: Final = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
MAX_LAYERS: Final = 3
# RFC 8851 rid-syntax is 1*(alpha-numeric / "-" / "_"); RFC 8852 caps an RtpStreamId at 255 bytes, a
# browser's are a few characters: 16 is plenty and keeps header extensions one-byte elements.
_RID: Final = re.compile(r"[A-Za-z0-9_-]{1,16}")
_LINE_BREAK: Final = re.compile(r"\r?\n")


def _sections(sdp: str) -> list[list[str]]:
    """The SDP's lines split into the session part and one list per m-section."""
    sections: list[list[str]] = [[]]
    for line in _LINE_BREAK.split(sdp):
        if line.startswith("m="):
            sections.append([])
        if line:
            sections[-1].append(line)
    return sections


def _mid(section: list[str]) -> str | None:
    return next((line[6:].strip() for line in section if line.startswith("a=mid:")), None)


def offered_layers(sdp: str) -> dict[str, tuple[str, ...]]:
    """``{mid: rids}`` for each video m-line offering RID simulcast (send direction), in the offer's order.

    An m-line with ``a=simulcast:send`` must name only RIDs it declares with ``a=rid:<id> send``, each a
    valid RID, at most :data:`MAX_LAYERS`; otherwise :class:`BadRequest`. Alternatives (``h,l``) count as
    their first choice; a paused RID (``~l``) is still a layer (the publisher may resume it).
    """
    found: dict[str, tuple[str, ...]] = {}
    for section in _sections(sdp)[1:]:
        if not section[0].startswith("m=video"):
            continue
        declared: list[str] = []
        listed: list[str] | None = None
        for line in section:
            if line.startswith("a=rid:"):
                parts = line[6:].split()
                if len(parts) >= 2 and parts[1] == "send":
                    declared.append(parts[0])
            elif line.startswith("a=simulcast:"):
                words = line[12:].split()
                if len(words) >= 2 and words[0] == "send":
                    listed = [alt.split(",")[0].removeprefix("~") for alt in words[1].split(";")]
        if listed is None:
            continue
        mid = _mid(section)
        if mid is None:
            raise BadRequest("offer: a simulcast section needs a mid")
        if not listed or len(listed) > MAX_LAYERS:
            raise BadRequest(f"offer: simulcast needs 1 to {MAX_LAYERS} layers")
        if len(set(listed)) != len(listed) or any(not _RID.fullmatch(r) or r not in declared for r in listed):
            raise BadRequest("offer: simulcast names a rid it does not declare, or an invalid rid")
        found[mid] = tuple(listed)
    return found


def accept_layers(sdp: str, layers: Mapping[str, tuple[str, ...]]) -> str:
    """``sdp`` (the relay's answer or offer) with each m-line named in ``layers`` receiving those RIDs."""
    if not layers:
        return sdp
    sections = _sections(sdp)
    out: list[str] = list(sections[0])
    for section in sections[1:]:
        rids = layers.get(_mid(section) or "")
        kept = [line for line in section if not line.startswith(("a=rid:", "a=simulcast:"))]
        if rids:
            kept += [f"a=rid:{rid} recv" for rid in rids]
            kept.append("a=simulcast:recv " + ";".join(rids))
        out += kept
    return "\r\n".join(out) + "\r\n"


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a VP8 keyframe (RFC 6386 section 9.1), None for anything else."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    return (data[6] | data[7] << 8) & 0x3FFF, (data[8] | data[9] << 8) & 0x3FFF


class LayerDemux:
    """Which layer (RID) each SSRC of a simulcast publisher carries, learned from the RID extensions.

    libwebrtc names the RID on a stream's packets only until RTCP acknowledges the SSRC, so the first
    sighting is kept for good; an RTX SSRC is tied to the media SSRC of the RID it repairs.
    """

    __slots__ = ("_rid_of", "_rids", "_rtx", "_ssrc_of")

    def __init__(self, rids: tuple[str, ...]) -> None:
        self._rids = frozenset(rids)
        self._rid_of: dict[int, str] = {}
        self._ssrc_of: dict[str, int] = {}
        self._rtx: dict[int, int] = {}  # RTX SSRC -> media SSRC

    def media(self, ssrc: int, rid: str | None) -> str | None:
        """The layer of a media packet from ``ssrc`` carrying ``rid`` (None: not a layer we receive)."""
        known = self._rid_of.get(ssrc)
        if known is not None or rid is None or rid not in self._rids:
            return known
        previous = self._ssrc_of.get(rid)
        if previous is not None:  # the publisher restarted this layer on a new SSRC
            del self._rid_of[previous]
        self._rid_of[ssrc] = rid
        self._ssrc_of[rid] = ssrc
        return rid

    def repair(self, rtx_ssrc: int, repaired_rid: str | None) -> int | None:
        """The media SSRC an RTX stream repairs (None while unknown)."""
        known = self._rtx.get(rtx_ssrc)
        if known is not None or repaired_rid is None:
            return known
        media = self._ssrc_of.get(repaired_rid)
        if media is not None:
            self._rtx[rtx_ssrc] = media
        return media

    def ssrc(self, rid: str) -> int | None:
        """The SSRC carrying ``rid`` now (None before its first packet)."""
        return self._ssrc_of.get(rid)
