"""Frames <-> messages: the only place signaling JSON is parsed.

Decoding never raises. It returns either a message or a :class:`DecodeFailure` that says what to send back
and whether to close:

- unknown ``type`` or an invalid field: reply ``error``, keep the connection;
- malformed JSON (or a binary frame): reply ``error``, then close 1003;
- a frame over the size cap: reply ``error``, then close 1009.

Error texts are built from the schema only (field paths, expected types), never from the client's values,
so they are safe to log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from vIOP.errors import BadRequest, VIOPError
from vIOP.signaling.messages import (
    CLIENT_TYPE_NAMES,
    MAX_FRAME_BYTES,
    MAX_SERVER_FRAME_BYTES,
    SERVER_TYPE_NAMES,
    ClientMessage,
    CloseCode,
    ErrorMessage,
    RequestId,
    ServerMessage,
)


class FrameError(BadRequest):
    """A frame that is not a valid message of this protocol."""


class UnknownMessageType(FrameError):
    code = "unknown_type"


class InvalidMessage(FrameError):
    code = "invalid_message"


class MalformedFrame(FrameError):
    code = "malformed_frame"
    ws_close_code = int(CloseCode.UNSUPPORTED_DATA)


class FrameTooLarge(FrameError):
    code = "frame_too_large"
    http_status = 413
    ws_close_code = int(CloseCode.MESSAGE_TOO_BIG)


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """Why a frame was refused, the error reply to send, and the close code to follow it (None: stay)."""

    error: FrameError
    request_id: RequestId | None = None

    @property
    def close_code(self) -> CloseCode | None:
        if isinstance(self.error, MalformedFrame | FrameTooLarge):
            return CloseCode(self.error.ws_close_code)
        return None

    def reply(self) -> ErrorMessage:
        return error_reply(self.error, self.request_id)


def error_reply(error: VIOPError, request_id: RequestId | None = None) -> ErrorMessage:
    """The wire ``error`` for any typed error; the dispatcher uses it for domain errors too."""
    return ErrorMessage(code=error.code, message=error.message[:500] or error.code, id=request_id)


_client_decoder = msgspec.json.Decoder(ClientMessage)
_server_decoder = msgspec.json.Decoder(ServerMessage)
_encoder = msgspec.json.Encoder()

M = TypeVar("M")


def decode_client(frame: str | bytes) -> ClientMessage | DecodeFailure:
    """Decode and validate one text frame from a client (bytes are read as UTF-8 JSON)."""
    return _decode(frame, _client_decoder, MAX_FRAME_BYTES, CLIENT_TYPE_NAMES)


def decode_server(frame: str | bytes) -> ServerMessage | DecodeFailure:
    """Decode and validate one frame from the server (used by the Python client)."""
    return _decode(frame, _server_decoder, MAX_SERVER_FRAME_BYTES, SERVER_TYPE_NAMES)


def binary_frame_failure() -> DecodeFailure:
    """What to answer a binary frame with: the protocol is JSON text frames only."""
    return DecodeFailure(MalformedFrame("binary frames are not part of this protocol; send JSON text"))


def encode(message: ClientMessage | ServerMessage) -> bytes:
    return _encoder.encode(message)


def encode_text(message: ClientMessage | ServerMessage) -> str:
    """A text frame; encode once and hand the same string to every recipient of a fan-out."""
    return _encoder.encode(message).decode()


def _decode(
    frame: str | bytes, decoder: msgspec.json.Decoder[M], cap: int, known_types: frozenset[str]
) -> M | DecodeFailure:
    size = len(frame)
    if isinstance(frame, str) and size * 4 > cap:
        # A str may hold up to 4 UTF-8 bytes per character: only long ones need the exact count.
        try:
            size = len(frame.encode())
        except UnicodeEncodeError:
            return DecodeFailure(MalformedFrame("frame is not valid UTF-8 text"))
    if size > cap:
        return DecodeFailure(FrameTooLarge(f"frame is larger than {cap} bytes"))
    try:
        return decoder.decode(frame)
    except msgspec.ValidationError as exc:
        return _invalid(frame, str(exc), known_types)
    except (msgspec.DecodeError, UnicodeError):
        return DecodeFailure(MalformedFrame("frame is not well-formed JSON"))
    except RecursionError:
        return DecodeFailure(MalformedFrame("frame is nested too deeply"))


_any_json = msgspec.json.Decoder(float_hook=str)  # str: a number like 1e999999 is still well-formed JSON
_AT_PATH = re.compile(r" - at `(\$[^`]{0,120})`$")
_SAFE_PATH = re.compile(r"^\$(\.[a-z_]{1,40}|\[\d{1,6}\])*$")
_SAFE_DETAIL = ("Expected ", "Object missing required field ")


def _invalid(frame: str | bytes, detail: str, known_types: frozenset[str]) -> DecodeFailure:
    """A frame the schema refused: malformed JSON (close) or a wrong message (stay)?

    msgspec validates while it parses and stops at the first bad field, so the rest of the frame has not
    been read yet: parse all of it, untyped, to tell the two apart (error path only).
    """
    if isinstance(frame, bytes):
        # msgspec does not check UTF-8 inside keys and values it skips.
        try:
            frame.decode()
        except UnicodeDecodeError:
            return DecodeFailure(MalformedFrame("frame is not valid UTF-8 text"))
    try:
        document = _any_json.decode(frame)
    except RecursionError:
        # RFC 8259 section 9 lets a parser limit nesting; beyond the interpreter's limit we call it malformed.
        return DecodeFailure(MalformedFrame("frame is nested too deeply"))
    except (msgspec.DecodeError, UnicodeError):
        return DecodeFailure(MalformedFrame("frame is not well-formed JSON"))
    if not isinstance(document, dict):
        return DecodeFailure(InvalidMessage("a message is a JSON object with a string field `type`"))
    request_id = _request_id(document.get("id"))
    kind = document.get("type")
    if not isinstance(kind, str):
        return DecodeFailure(InvalidMessage("a message needs a string field `type`"), request_id)
    if kind not in known_types:
        return DecodeFailure(UnknownMessageType("unknown message type"), request_id)
    return DecodeFailure(InvalidMessage(_describe(detail)), request_id)


def _describe(detail: str) -> str:
    """Keep msgspec's schema wording and path; drop anything that could quote the client's data."""
    match = _AT_PATH.search(detail)
    path = match.group(1) if match else ""
    head = detail[: match.start()] if match else detail
    where = f" at {path}" if _SAFE_PATH.match(path) else ""
    if head.startswith("Object contains unknown field"):
        return f"unknown field{where}"
    if head.startswith(_SAFE_DETAIL):
        return f"{head[:200]}{where}"
    return f"invalid value{where}"


def _request_id(value: object) -> RequestId | None:
    if isinstance(value, str) and 1 <= len(value) <= 64:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**53 - 1:
        return value
    return None
