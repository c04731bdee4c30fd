"""Hostile input: >= 100,000 generated and mutated frames through the codec, 0 unexpected exceptions.

Hypothesis draws the seeds (a valid message, junk JSON values, text, a random seed); a fast loop then
derives 1,000 mutations from each: fields replaced with wrong types, huge numbers, nested junk, unicode,
SDP-ish strings, frames at and over the size cap, byte flips, truncations and raw garbage. Each result is
checked against the codec's contract, not only for "no exception".
"""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.signaling.samples import CANDIDATE, CLIENT_SAMPLES, SDP
from vIOP.signaling import messages as m
from vIOP.signaling.codec import (
    DecodeFailure,
    FrameTooLarge,
    MalformedFrame,
    decode_client,
    decode_server,
    encode,
)

EXAMPLES = 110
MUTATIONS_PER_EXAMPLE = 1_000
CANARY = "Riley-Canary-7"
DEEP = "__deep__"  # replaced by deeply nested JSON after json.dumps (which would hit its own recursion limit)
DEEP_JSON = b'"__deep__"'

BASES: list[dict[str, Any]] = [msgspec.to_builtins(message) for message in CLIENT_SAMPLES]
TYPES = [*sorted(m.CLIENT_TYPE_NAMES | m.SERVER_TYPE_NAMES), "", "PING", "ping ", CANARY]
FIELDS = [
    "type",
    "id",
    "sdp",
    "candidate",
    "sdp_mid",
    "sdp_mline_index",
    "participant_id",
    "message",
    "audio",
    "video",
    "up",
    "kind",
    "muted",
    "resume_token",
    "protocol_version",
    CANARY,
]
NASTY: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**53,
    2**64,
    -(2**63) - 1,
    10**400,
    1e308,
    -0.0,
    1.5,
    "",
    CANARY,
    "pt_" + CANARY,
    "rt_" + "A" * 43,
    "rt_" + "A" * 44,
    SDP,
    SDP * 40,
    CANDIDATE,
    "\x00",
    "\u202e" + CANARY,
    "\U0001f600" * 50,
    "a\r\nb=c\r\n" * 100,
    [],
    {},
    [[[[[]]]]],
    {"type": "ping"},
    [CANARY] * 50,
    {"a": {"b": {"c": [1, 2, {"d": CANARY}]}}},
    "x" * (m.MAX_SDP_CHARS + 1),
    "é" * 300,
]
RAW_SNIPPETS = [
    b"\xff",
    b"\xc3",
    b"\x00",
    b"\xed\xa0\x80",
    b'"',
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"NaN",
    b"Infinity",
    b"1e999999",
    b"-",
    b"\xef\xbb\xbf",
    CANARY.encode(),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _dumps(value: Any, rng: random.Random) -> bytes:
    text = json.dumps(value, ensure_ascii=rng.random() < 0.5, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def _mutate_structure(rng: random.Random, base: dict[str, Any], junk: list[Any]) -> bytes:
    message = dict(base)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        if op == 0:
            message[rng.choice(FIELDS)] = rng.choice(junk) if rng.random() < 0.5 else rng.choice(NASTY)
        elif op == 1 and message:
            message.pop(rng.choice(list(message)))
        elif op == 2:
            message["type"] = rng.choice(TYPES)
        elif op == 3:
            message = {**rng.choice(BASES), **{k: v for k, v in message.items() if k != "type"}}
        elif op == 4:
            message[rng.choice(FIELDS)] = DEEP
        else:
            message["id"] = rng.choice([CANARY, "x" * 65, -1, 2**53, 1.0, True, [], "ok", 7])
    frame = _dumps(message, rng)
    if DEEP_JSON in frame:
        depth = rng.choice([10, 100, 1_000, 10_000])
        opener, closer = (b"[", b"]") if rng.random() < 0.5 else (b'{"k":', b"}")
        frame = frame.replace(DEEP_JSON, opener * depth + CANARY.encode().join([b'"', b'"']) + closer * depth)
    return frame


def _mutate_bytes(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        position = rng.randint(0, len(data))
        if op == 0 and data:
            data[min(position, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[position:position] = rng.choice(RAW_SNIPPETS)
        elif op == 2:
            del data[position : position + rng.randint(1, 16)]
        elif op == 3:
            data[position:position] = data[max(0, position - 32) : position]
        elif op == 4:
            del data[position:]
        else:
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def _near_cap(rng: random.Random) -> bytes:
    head = b'{"type":"' + rng.choice([b"offer", b"answer", b"nope"]) + b'","sdp":"'
    size = m.MAX_FRAME_BYTES + rng.randint(-3, 3) - len(head) - 2
    body = (b"a=candidate:1 1 udp 2 127.0.0.1 9 typ host\\r\\n" * 2_000)[:size]
    return head + body + b'"}'


def _frame(rng: random.Random, base: dict[str, Any], junk: list[Any], text: str) -> str | bytes:
    roll = rng.random()
    if roll < 0.45:
        frame = _mutate_structure(rng, base, junk)
    elif roll < 0.85:
        frame = _mutate_bytes(
            rng, _dumps(base, rng) if rng.random() < 0.5 else _mutate_structure(rng, base, junk)
        )
    elif roll < 0.88:
        frame = _near_cap(rng)
    elif roll < 0.94:
        frame = _dumps(rng.choice(junk), rng)
    else:
        frame = (
            text.encode("utf-8", "surrogatepass") if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 64))
        )
    if rng.random() < 0.3:
        # The endpoint hands the codec str for text frames; lone surrogates must not escape as exceptions.
        return frame.decode("utf-8", "surrogateescape" if rng.random() < 0.5 else "replace")
    return frame


def _check(frame: str | bytes, result: object) -> None:
    size = len(frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame)
    if not isinstance(result, DecodeFailure):
        assert size <= m.MAX_FRAME_BYTES
        assert decode_client(encode(result)) == result  # type: ignore[arg-type]
        return
    reply = result.reply()
    assert decode_server(encode(reply)) == reply, reply
    assert CANARY not in reply.message
    assert (result.close_code is None) != isinstance(result.error, MalformedFrame | FrameTooLarge)
    if size > m.MAX_FRAME_BYTES:
        assert isinstance(result.error, FrameTooLarge) or (
            isinstance(frame, str) and result.close_code == 1003
        )
        return
    if size > 8_192:
        return  # the JSON oracle below is slow on big frames; the checks above still ran
    try:
        json.loads(frame)
    except (json.JSONDecodeError, UnicodeError):
        assert isinstance(result.error, MalformedFrame), (frame[:200], result)
    except (ValueError, RecursionError):
        pass  # e.g. Python's 4300-digit int limit: not a JSON syntax verdict


def test_codec_survives_100k_generated_and_mutated_frames() -> None:
    tally = {"frames": 0, "decoded": 0, "kept": 0, "closed": 0}
    unexpected: list[tuple[bytes | str, BaseException]] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        base=st.sampled_from(BASES),
        junk=st.lists(json_values, min_size=1, max_size=6),
        text=st.text(max_size=200),
        seed=st.integers(0, 2**32 - 1),
    )
    def run(base: dict[str, Any], junk: list[Any], text: str, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(MUTATIONS_PER_EXAMPLE):
            frame = _frame(rng, base, junk, text)
            tally["frames"] += 1
            try:
                result = decode_client(frame)
            except Exception as exc:  # the contract: decoding never raises
                unexpected.append((frame[:200], exc))
                continue
            _check(frame, result)
            if not isinstance(result, DecodeFailure):
                tally["decoded"] += 1
            elif result.close_code is None:
                tally["kept"] += 1
            else:
                tally["closed"] += 1

    run()
    assert unexpected == []
    assert tally["frames"] >= 100_000
    # The mix exercises every outcome in quantity, not just one path.
    print(tally)
    assert min(tally["decoded"], tally["kept"], tally["closed"]) >= 1_000, tally
