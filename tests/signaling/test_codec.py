"""The codec's decision table: what each kind of bad frame gets, and that error texts never quote input."""

from __future__ import annotations

import json

import pytest

from tests.signaling.samples import CANDIDATE
from vIOP.errors import Forbidden
from vIOP.signaling import messages as m
from vIOP.signaling.codec import (
    DecodeFailure,
    FrameTooLarge,
    InvalidMessage,
    MalformedFrame,
    UnknownMessageType,
    binary_frame_failure,
    decode_client,
    decode_server,
    encode,
    error_reply,
)

CANARY = "Jordan-Canary-42"


def failure(frame: str | bytes) -> DecodeFailure:
    result = decode_client(frame)
    assert isinstance(result, DecodeFailure), result
    # Every error reply is itself a valid server message (codes and texts stay within the schema).
    assert decode_server(encode(result.reply())) == result.reply()
    return result


def test_valid_frame_decodes_to_its_struct_from_str_and_bytes() -> None:
    frame = json.dumps({"type": "candidate", "candidate": CANDIDATE, "sdp_mid": "0", "sdp_mline_index": 0})
    expected = m.Candidate(candidate=CANDIDATE, sdp_mid="0", sdp_mline_index=0)
    assert decode_client(frame) == expected
    assert decode_client(frame.encode()) == expected


def test_unknown_type_keeps_the_connection_and_echoes_the_id() -> None:
    result = failure(json.dumps({"type": CANARY, "id": "r1"}))
    assert isinstance(result.error, UnknownMessageType)
    assert result.close_code is None
    assert result.reply() == m.ErrorMessage(code="unknown_type", message="unknown message type", id="r1")


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "offer", "id": 9},
        {"type": "offer", "sdp": 12, "id": 9},
        {"type": "offer", "sdp": "v=0", CANARY: 1, "id": 9},
        {"type": "mute", "participant_id": "pt_x", "kind": CANARY, "id": 9},
        {"type": "admit", "participant_id": CANARY, "id": 9},
    ],
)
def test_invalid_fields_keep_the_connection_and_do_not_quote_the_input(frame: dict[str, object]) -> None:
    result = failure(json.dumps(frame))
    assert isinstance(result.error, InvalidMessage)
    assert result.close_code is None
    assert result.request_id == 9
    assert CANARY not in result.reply().message


def test_the_error_text_names_the_field() -> None:
    assert failure('{"type":"offer","sdp":12}').reply().message == "Expected `str`, got `int` at $.sdp"
    assert failure('{"type":"offer"}').reply().message == "Object missing required field `sdp`"


@pytest.mark.parametrize(
    "frame", ["[1, 2]", '"ping"', "42", "null", '{"id": 3}', '{"type": 5}', '{"type": null}']
)
def test_valid_json_that_is_not_a_message_is_invalid_not_malformed(frame: str) -> None:
    result = failure(frame)
    assert isinstance(result.error, InvalidMessage)
    assert result.close_code is None


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "{",
        '{"type": "ping"',
        '{"type": "ping"} trailing',
        "{'type': 'ping'}",
        '{"type": "ping", "x": "\\q"}',  # a bad escape in a field the schema would skip
        "[1e999999, x",  # well-formed up to a huge number, then garbage
        '{"type": "ping", "id": NaN}',
        b"\xff\xfe{}",
        b'{"type": "ping", "id": "\xc3"}',
        '{"type": "ping", "id": "\ud800"}',  # a lone surrogate cannot be UTF-8
        CANARY,
    ],
)
def test_malformed_json_is_answered_then_closed_1003(frame: str | bytes) -> None:
    result = failure(frame)
    assert isinstance(result.error, MalformedFrame)
    assert result.close_code == m.CloseCode.UNSUPPORTED_DATA == 1003
    assert result.reply().code == "malformed_frame"
    assert CANARY not in result.reply().message


def test_binary_frames_are_refused_with_1003() -> None:
    result = binary_frame_failure()
    assert result.close_code == 1003
    assert result.reply().code == "malformed_frame"


def test_size_cap_is_exact_in_utf8_bytes() -> None:
    head = '{"type":"offer","sdp":"'
    tail = '"}'
    filler = m.MAX_FRAME_BYTES - len(head) - len(tail)
    at_cap = head + "v" * filler + tail
    assert len(at_cap.encode()) == m.MAX_FRAME_BYTES
    # Within the cap the codec gets to validate (here: the SDP bound); one byte more is too large.
    assert isinstance(failure(at_cap).error, InvalidMessage)
    over = head + "v" * (filler + 1) + tail
    result = failure(over)
    assert isinstance(result.error, FrameTooLarge)
    assert result.close_code == m.CloseCode.MESSAGE_TOO_BIG == 1009
    assert isinstance(failure(over.encode()).error, FrameTooLarge)


def test_size_cap_counts_multibyte_characters() -> None:
    # 20,000 characters of 4-byte emoji: short as a str, 80 KB as UTF-8.
    frame = '{"type":"offer","sdp":"' + "\U0001f600" * 20_000 + '"}'
    assert len(frame) < m.MAX_FRAME_BYTES
    assert isinstance(failure(frame).error, FrameTooLarge)


def test_excessive_nesting_is_malformed_not_a_crash() -> None:
    # RFC 8259 lets a parser limit nesting depth; beyond the interpreter's recursion limit we close 1003.
    for kind in ("offer", "nope"):
        deep = '{"type": "' + kind + '", "sdp": "x", "junk": ' + "[" * 30_000 + "]" * 30_000 + "}"
        result = failure(deep)
        assert result.close_code == 1003
        assert result.reply().message == "frame is nested too deeply"
    # Moderate nesting is fine JSON, merely not a message.
    assert failure('{"type": "ping", "junk": ' + "[" * 50 + "]" * 50 + "}").close_code is None


def test_huge_numbers_are_invalid_not_crashes() -> None:
    for number in ("1" + "0" * 400, "-" + "9" * 400, "1e999999", "1e-999999"):
        result = failure('{"type": "candidate", "candidate": "", "sdp_mline_index": ' + number + "}")
        assert isinstance(result.error, InvalidMessage)
        assert result.reply().message.endswith("at $.sdp_mline_index")


def test_error_reply_carries_domain_errors_too() -> None:
    reply = error_reply(Forbidden("a client may not admit here"), request_id="a1")
    assert reply == m.ErrorMessage(code="forbidden", message="a client may not admit here", id="a1")
