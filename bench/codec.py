"""Benchmark: signaling codec cost per message (decode + validate, error paths, encode).

    .venv/bin/python bench/codec.py [--seconds 0.5]

One process, one core, no I/O. Each figure is CPU time per call, the best of 3 runs of ``--seconds`` each
(the machine is shared, so the best run is the least disturbed one). ``json.loads`` of the same ICE
candidate frame is printed as a reference point: it parses but validates nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable

import msgspec

from vIOP.signaling import messages as m
from vIOP.signaling.codec import decode_client, encode_text

CANDIDATE = (
    '{"type":"candidate","id":17,"candidate":"candidate:842163049 1 udp 1677729535 192.0.2.10 46154 typ '
    'srflx raddr 0.0.0.0 rport 0 generation 0 ufrag sWMK network-cost 999","sdp_mid":"0","sdp_mline_index":0}'
)
SDP_SECTION = (
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:sWMK\r\na=ice-pwd:7nKXeZ0nqSdyq4P3JqQ1UQ2a\r\na=fingerprint:sha-256 "
    "3B:6F:5B:0C:9D:3E:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA\r\n"
    "a=setup:actpass\r\na=mid:1\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n"
    "a=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n"
    "a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=ssrc-group:FID 2231627014 632943048\r\n"
)


def sdp_of(size: int) -> str:
    return (
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" + SDP_SECTION * (size // len(SDP_SECTION) + 1)
    )[:size]


def per_call(seconds: float, op: Callable[[], object]) -> float:
    """Best of 3: CPU microseconds per call."""
    best = float("inf")
    for _ in range(3):
        count, batch = 0, 200
        wall0, cpu0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - wall0 < seconds:
            for _ in range(batch):
                op()
            count += batch
        best = min(best, (time.process_time() - cpu0) / count * 1e6)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="length of each timed run")
    args = parser.parse_args()

    roster = m.Roster(
        participants=tuple(
            m.RosterEntry(
                participant_id=f"pt_{n:016d}",
                display_name=f"Participant {n}",
                role=m.Role.CLIENT,
                audio=True,
                video=True,
                hand=False,
                muted_by_host=False,
            )
            for n in range(15)
        ),
        locked=False,
    )
    frames: list[tuple[str, str | bytes]] = [
        ("ping", '{"type":"ping","id":1}'),
        (f"candidate ({len(CANDIDATE)} B)", CANDIDATE),
        ("candidate as bytes", CANDIDATE.encode()),
        ("set_media", '{"type":"set_media","audio":false}'),
        ("admit (participant id pattern)", '{"type":"admit","participant_id":"pt_AbCdEfGhIjKlMnOp"}'),
        ("offer, 6 KB SDP (a browser's first offer)", encode_text(m.Offer(sdp=sdp_of(6_000)))),
        ("answer, 43 KB SDP (15-person room)", encode_text(m.Answer(sdp=sdp_of(43_000)))),
        ("error path: unknown type", '{"type":"teleport","id":3}'),
        ("error path: invalid field", '{"type":"raise_hand","up":"yes","id":3}'),
        ("error path: malformed JSON", '{"type":"ping",'),
        ("error path: 70 KB frame (too large)", '{"type":"offer","sdp":"' + "v" * 70_000 + '"}'),
    ]

    print(f"python {platform.python_version()}, msgspec {msgspec.__version__}, {platform.machine()}")
    print(f"command: .venv/bin/python bench/codec.py {shlex.join(sys.argv[1:])}".rstrip())
    print("\ndecode + validate (decode_client), CPU µs per message")
    for label, frame in frames:
        print(f"  {label:<44} {per_call(args.seconds, lambda f=frame: decode_client(f)):9.2f} µs")
    print(
        f"  {'reference: json.loads(candidate), no checks':<44} {per_call(args.seconds, lambda: json.loads(CANDIDATE)):9.2f} µs"
    )

    welcome = m.Welcome(
        protocol_version=1,
        participant_id="pt_AbCdEfGhIjKlMnOp",
        room_id="rm_0123456789abcdef",
        role=m.Role.CLIENT,
        resume_token="rt_" + "A" * 43,
        resume_grace_seconds=60,
        heartbeat_seconds=10,
        ice_servers=(m.IceServer(urls=("turn:127.0.0.1:3478",), username="1:pt_x", credential="c2VjcmV0"),),
        resumed=False,
    )
    print("\nencode (encode_text), CPU µs per message; a fan-out encodes once for all recipients")
    for label, message in [
        ("pong", m.Pong(id=1)),
        ("welcome", welcome),
        (f"roster of 15 ({len(encode_text(roster))} B)", roster),
        ("server offer, 46 KB SDP", m.ServerOffer(sdp=sdp_of(46_000))),
    ]:
        print(f"  {label:<44} {per_call(args.seconds, lambda msg=message: encode_text(msg)):9.2f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
