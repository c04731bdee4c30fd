"""SDP and ICE candidate lines read with aiortc's parser: malformed input is a BadRequest."""

from __future__ import annotations

import pytest

from vIOP.errors import BadRequest
from vIOP.media.sdp import parse_candidate, summarize_sdp


@pytest.mark.parametrize(
    "sdp",
    [
        "v=0\r\nm=audio x y z\r\n",
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96\r\n",
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=candidate:1 1 udp\r\n",
    ],
)
def test_malformed_sdp_is_a_bad_request(sdp: str) -> None:
    with pytest.raises(BadRequest):
        summarize_sdp(sdp)


def test_sdp_without_media_sections_summarizes_to_nothing() -> None:
    assert summarize_sdp("garbage").media == ()


def test_candidate_lines_are_parsed_or_refused() -> None:
    line = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
    candidate = parse_candidate(line, "0")
    assert (candidate.ip, candidate.port, candidate.type, candidate.sdpMid) == (
        "127.0.0.1",
        50000,
        "host",
        "0",
    )
    for bad in [
        "",
        "candidate:1 1 udp",
        "candidate:1 1 sctp 1 127.0.0.1 5 typ host",
        "1 1 udp 1 1.2.3.4 0 typ host",
        "1 1 udp 1 1.2.3.4 5 typ bogus",
        "1 x udp 1 1.2.3.4 5 typ host",
    ]:
        with pytest.raises(BadRequest):
            parse_candidate(bad, None)
