"""Each field limit is defined once (``vIOP/rooms/limits.py``); every place it shows up must agree.

Reads the codec's msgspec constraints, the relay's check, the HTTP API's Structs and validators, the
domain's validators, the generated ``protocol.js``, the console form and the numbers written in
docs/PROTOCOL.md, docs/API.md and README.md. A limit changed in one place only fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from vIOP.api import http_rooms
from vIOP.auth.invites import check_display_name
from vIOP.errors import BadRequest
from vIOP.media import relay
from vIOP.rooms import limits
from vIOP.rooms.errors import InvalidRoomInput
from vIOP.rooms.participant import clean_display_name, clean_message
from vIOP.signaling import js_protocol, messages

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "vIOP" / "web" / "static"


def _field(struct: type[msgspec.Struct], name: str) -> msgspec.inspect.Type:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    (field,) = [f for f in info.fields if f.name == name]
    return field.type


def _non_null(t: msgspec.inspect.Type) -> msgspec.inspect.Type:
    if isinstance(t, msgspec.inspect.UnionType):
        (t,) = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
    return t


def _doc(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def _one(pattern: str, text: str) -> int:
    found = re.findall(pattern, text)
    assert len(found) == 1, (pattern, found)
    return int(found[0])


def _js_constants() -> dict[str, int]:
    text = (STATIC / "js" / "protocol.js").read_text(encoding="utf-8")
    return {name: int(value) for name, value in re.findall(r"export const (MAX_\w+) = (\d+);", text)}


def test_sdp_limit_agrees_between_codec_relay_js_and_docs() -> None:
    limit = limits.MAX_SDP_CHARS
    assert limit == messages.MAX_SDP_CHARS
    for struct in (messages.Offer, messages.Answer):
        sdp = _field(struct, "sdp")
        assert isinstance(sdp, msgspec.inspect.StrType)
        assert sdp.max_length == limit, struct
    assert limit == relay.MAX_SDP_CHARS  # the bound handle_offer / handle_answer check
    assert _js_constants()["MAX_SDP_CHARS"] == limit
    kib = _one(
        r"\| SDP in `offer` / `answer` from a client \| (\d+) KiB characters", _doc("docs/PROTOCOL.md")
    )
    assert kib * 1024 == limit
    assert _one(r"Why SDP may be (\d+) KiB", _doc("docs/PROTOCOL.md")) * 1024 == limit


def test_candidate_limit_agrees_between_codec_relay_js_and_docs() -> None:
    limit = limits.MAX_CANDIDATE_CHARS
    assert limit == messages.MAX_CANDIDATE_CHARS == relay.MAX_CANDIDATE_CHARS
    candidate = _field(messages.Candidate, "candidate")
    assert isinstance(candidate, msgspec.inspect.StrType) and candidate.max_length == limit
    assert _js_constants()["MAX_CANDIDATE_CHARS"] == limit
    assert _one(r"\| ICE candidate line \| (\d+) characters", _doc("docs/PROTOCOL.md")) == limit


def test_display_name_limit_agrees_everywhere() -> None:
    limit = limits.MAX_DISPLAY_NAME_CHARS
    assert limit == messages.MAX_DISPLAY_NAME_CHARS
    entry = _field(messages.RosterEntry, "display_name")
    assert isinstance(entry, msgspec.inspect.StrType) and entry.max_length == limit
    # The API (invites and account names) and the domain accept exactly up to the limit.
    assert check_display_name("n" * limit) == "n" * limit
    with pytest.raises(BadRequest):
        check_display_name("n" * (limit + 1))
    assert clean_display_name("n" * limit) == "n" * limit
    with pytest.raises(InvalidRoomInput):
        clean_display_name("n" * (limit + 1))
    assert _js_constants()["MAX_DISPLAY_NAME_CHARS"] == limit
    assert _one(r"\| display name \| 1-(\d+) characters", _doc("docs/PROTOCOL.md")) == limit
    assert (
        _one(r"\| `display_name` \| string \| required; 1 to (\d+) characters", _doc("docs/API.md")) == limit
    )
    assert _one(r"the account's display name \(1-(\d+) characters", _doc("README.md")) == limit


def test_host_message_limit_agrees_between_domain_codec_js_form_and_docs() -> None:
    """A lobby message, denial or removal text: the domain used to accept 1000 characters while the wire
    carried 500 (and the delivery cut what it sent to 500)."""
    limit = limits.MAX_MESSAGE_CHARS
    assert limit == messages.MAX_TEXT_CHARS
    inbound = [(messages.LobbyMessage, "message"), (messages.Deny, "message"), (messages.Remove, "message")]
    outbound = [(messages.Waiting, "message"), (messages.Denied, "message"), (messages.Removed, "message")]
    for struct, name in inbound + outbound:
        text = _non_null(_field(struct, name))
        assert isinstance(text, msgspec.inspect.StrType) and text.max_length == limit, struct
    assert clean_message("m" * limit) == "m" * limit
    with pytest.raises(InvalidRoomInput):
        clean_message("m" * (limit + 1))
    assert _js_constants()["MAX_TEXT_CHARS"] == limit
    prompt = (STATIC / "js" / "moderation.js").read_text(encoding="utf-8")
    assert "maxlength: String(MAX_TEXT_CHARS)" in prompt  # the host's message form
    protocol = _doc("docs/PROTOCOL.md")
    assert _one(r"\| lobby / deny / remove text \| 1-(\d+) characters", protocol) == limit
    assert _one(r"\| `lobby_message` \| `participant_id`, `message` \(1-(\d+)\)", protocol) == limit
    for kind in ("deny", "remove"):
        assert _one(rf"\| `{kind}` \| `participant_id`, `message`\? \(<= (\d+)\)", protocol) == limit


def test_room_title_limit_agrees_everywhere() -> None:
    limit = limits.MAX_ROOM_TITLE_CHARS
    assert http_rooms.check_title("t" * limit) == "t" * limit
    with pytest.raises(BadRequest):
        http_rooms.check_title("t" * (limit + 1))
    assert _js_constants()["MAX_ROOM_TITLE_CHARS"] == limit
    assert _one(r"\| `title` \| string \| required; 1 to (\d+) characters", _doc("docs/API.md")) == limit


def test_room_capacity_limit_agrees_everywhere() -> None:
    limit = limits.MAX_ROOM_CAPACITY
    capacity = _non_null(_field(http_rooms.CreateRoomBody, "capacity"))
    assert isinstance(capacity, msgspec.inspect.IntType)
    assert (capacity.ge, capacity.le) == (1, limit)
    assert _js_constants()["MAX_ROOM_CAPACITY"] == limit
    assert (
        _one(r"\| `capacity` \| integer \| optional; client seats, 1 to (\d+)", _doc("docs/API.md")) == limit
    )


def test_forms_take_their_limits_from_the_generated_module() -> None:
    """No number is written into the console's inputs; console.js sets each from protocol.js."""
    html = (STATIC / "console.html").read_text(encoding="utf-8")
    for input_id in ("room-title", "room-capacity", "invite-name"):
        (tag,) = re.findall(rf'<input id="{input_id}"[^>]*>', html)
        assert not re.search(r"\b(maxlength|max)=", tag), tag
    script = (STATIC / "js" / "pages" / "console.js").read_text(encoding="utf-8")
    assert '($("#invite-name")).maxLength = MAX_DISPLAY_NAME_CHARS;' in script
    assert '($("#room-title")).maxLength = MAX_ROOM_TITLE_CHARS;' in script
    assert '($("#room-capacity")).max = String(MAX_ROOM_CAPACITY);' in script


def test_generated_module_is_current() -> None:
    assert (STATIC / "js" / "protocol.js").read_text(encoding="utf-8") == js_protocol.render()


def test_chat_limit_agrees_between_domain_codec_js_form_and_docs() -> None:
    """Issue 15: a chat line's length, one number for the wire both ways, the domain, the form and docs."""
    from vIOP.rooms.chat import InvalidChat, clean_text

    limit = limits.MAX_CHAT_CHARS
    assert limit == messages.MAX_CHAT_CHARS
    for struct in (messages.Chat, messages.ChatMessage):
        text = _field(struct, "text")
        assert isinstance(text, msgspec.inspect.StrType) and text.max_length == limit, struct
    assert clean_text("c" * limit) == "c" * limit
    with pytest.raises(InvalidChat):
        clean_text("c" * (limit + 1))
    assert _js_constants()["MAX_CHAT_CHARS"] == limit
    assert "maxlength: String(MAX_CHAT_CHARS)" in (STATIC / "js" / "chat.js").read_text(encoding="utf-8")
    protocol = _doc("docs/PROTOCOL.md")
    assert _one(r"\| chat line \(`chat`\) \| 1-(\d+) characters", protocol) == limit
    assert _one(r"\| `text` \| 1-(\d+) characters; surrounding white space", protocol) == limit
    assert _one(r"per sender socket: bursts of (\d+) lines", protocol) == limits.CHAT_BURST
