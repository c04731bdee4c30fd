"""Which codecs a connection carries, and under which numbers, for the life of the connection.

Only VP8 (with its RTX) and Opus are offered or accepted (:func:`restrict_codecs`): nothing is transcoded.
A re-offer from aiortc re-numbers codecs from its global table, which collides with the numbers a browser
chose in the first offer (same BUNDLE); :class:`CodecPlan` pins them per connection.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Final

import aiortc
from aiortc import (
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from vIOP.media import aiortc_internals
from vIOP.media.frames import AUDIO_CODEC, RTX_CODEC, VIDEO_CODEC

_DYNAMIC_PTS: Final = range(96, 128)
_EXTENSION_IDS: Final = range(1, 15)


def restrict_codecs(transceiver: RTCRtpTransceiver) -> None:
    """Offer/accept only VP8 (with its RTX) or Opus on this transceiver: nothing is transcoded."""
    wanted = (VIDEO_CODEC, RTX_CODEC) if transceiver.kind == "video" else (AUDIO_CODEC,)
    capabilities = aiortc.RTCRtpSender.getCapabilities(transceiver.kind).codecs
    transceiver.setCodecPreferences([c for c in capabilities if c.mimeType in wanted])


@dataclass(frozen=True, slots=True)
class CodecPlan:
    """The payload types and header-extension ids one peer connection uses on every m-line, for good.

    Taken from the first negotiation (a browser's offer decides them); every later server offer is
    rewritten to match, so BUNDLE never sees one payload type mean two codecs.
    """

    codecs: dict[str, tuple[RTCRtpCodecParameters, ...]]
    extensions: dict[str, tuple[RTCRtpHeaderExtensionParameters, ...]]

    @classmethod
    def from_negotiated(cls, pc: RTCPeerConnection) -> CodecPlan:
        codecs: dict[str, tuple[RTCRtpCodecParameters, ...]] = {}
        extensions: dict[str, tuple[RTCRtpHeaderExtensionParameters, ...]] = {}
        for t in pc.getTransceivers():
            t_codecs, t_extensions = aiortc_internals.negotiated(t)
            if t.kind not in codecs and t_codecs:
                codecs[t.kind] = tuple(copy.deepcopy(t_codecs))
                extensions[t.kind] = tuple(copy.deepcopy(t_extensions))
        for kind in ("audio", "video"):
            if kind not in codecs:
                codecs[kind], extensions[kind] = _defaults_avoiding(kind, codecs, extensions)
        return cls(codecs, extensions)

    def apply(self, pc: RTCPeerConnection, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Rewrite a fresh ``createOffer()`` result (and the transceivers behind it) to this plan."""
        for t in pc.getTransceivers():
            aiortc_internals.set_negotiated(
                t, list(copy.deepcopy(self.codecs[t.kind])), list(copy.deepcopy(self.extensions[t.kind]))
            )
        sdp = aiortc_internals.rewrite_offer(offer.sdp, self.codecs, self.extensions)
        return RTCSessionDescription(sdp=sdp, type=offer.type)


def _defaults_avoiding(
    kind: str,
    taken_codecs: dict[str, tuple[RTCRtpCodecParameters, ...]],
    taken_extensions: dict[str, tuple[RTCRtpHeaderExtensionParameters, ...]],
) -> tuple[tuple[RTCRtpCodecParameters, ...], tuple[RTCRtpHeaderExtensionParameters, ...]]:
    """aiortc's own VP8 (+RTX) or Opus entry, renumbered where the other kind already uses a number."""
    used = {c.payloadType for cs in taken_codecs.values() for c in cs}
    defaults = aiortc_internals.default_codecs(kind)
    wanted = VIDEO_CODEC if kind == "video" else AUDIO_CODEC
    base = copy.deepcopy(next(c for c in defaults if c.mimeType.lower() == wanted.lower()))
    chosen = [base]
    if kind == "video":
        rtx = next(
            c for c in defaults if c.mimeType == RTX_CODEC and c.parameters.get("apt") == base.payloadType
        )
        chosen.append(copy.deepcopy(rtx))
    free = (pt for pt in _DYNAMIC_PTS if pt not in used)
    for codec in chosen:
        if codec.payloadType in used:
            codec.payloadType = next(free)
        used.add(codec.payloadType)
    if len(chosen) == 2:
        chosen[1].parameters["apt"] = base.payloadType
    by_uri = {e.uri: e.id for es in taken_extensions.values() for e in es}
    used_ids = set(by_uri.values())
    extensions = []
    for ext in aiortc_internals.default_header_extensions(kind):
        ext_id = by_uri.get(ext.uri)
        if ext_id is None:
            ext_id = (
                ext.id if ext.id not in used_ids else next(i for i in _EXTENSION_IDS if i not in used_ids)
            )
            used_ids.add(ext_id)
        extensions.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=ext.uri))
    return tuple(chosen), tuple(extensions)
