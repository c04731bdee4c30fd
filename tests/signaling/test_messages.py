"""The wire schema: every message round-trips, names match the permission matrix, every bound holds."""

from __future__ import annotations

import json

import msgspec
import pytest

from tests.signaling.samples import CLIENT_SAMPLES, PID, ROSTER_ENTRY, SDP, SERVER_SAMPLES
from vIOP.auth.permissions import Action, Grant, Role, grant_for
from vIOP.signaling import messages as m
from vIOP.signaling.codec import DecodeFailure, decode_client, decode_server, encode, encode_text


def test_samples_cover_every_message_type() -> None:
    assert {m.message_type(x) for x in CLIENT_SAMPLES} == m.CLIENT_TYPE_NAMES
    assert {m.message_type(x) for x in SERVER_SAMPLES} == m.SERVER_TYPE_NAMES


@pytest.mark.parametrize("message", CLIENT_SAMPLES, ids=lambda x: m.message_type(x))
def test_client_messages_round_trip(message: m.ClientMessage) -> None:
    assert decode_client(encode(message)) == message
    assert decode_client(encode_text(message)) == message


@pytest.mark.parametrize("message", SERVER_SAMPLES, ids=lambda x: m.message_type(x))
def test_server_messages_round_trip(message: m.ServerMessage) -> None:
    assert decode_server(encode(message)) == message


def test_wire_shape_is_a_flat_object_with_type_and_no_empty_id() -> None:
    assert json.loads(encode(m.Ping())) == {"type": "ping"}
    assert json.loads(encode(m.Pong(id=3))) == {"type": "pong", "id": 3}
    # Booleans and enums of server messages are always present, even at their usual value.
    muted = m.Muted(participant_id=PID, kind=m.MediaKind.AUDIO, muted=True)
    assert json.loads(encode(muted)) == {
        "type": "muted",
        "participant_id": PID,
        "kind": "audio",
        "muted": True,
    }
    assert json.loads(encode(m.Denied())) == {"type": "denied"}


def test_client_and_server_directions_are_separate_unions() -> None:
    # `offer` exists both ways, but a server-only message is an unknown type from a client.
    for server_only in ("welcome", "roster", "pong", "error", "room_ended"):
        result = decode_client(json.dumps({"type": server_only}))
        assert isinstance(result, DecodeFailure)
        assert result.error.code == "unknown_type"
    assert isinstance(decode_client(encode(m.ServerOffer(sdp=SDP))), m.Offer)


def test_every_client_message_is_an_action_of_the_permission_matrix() -> None:
    for name in m.CLIENT_TYPE_NAMES:
        action = Action(name)  # raises if the matrix has no row for this message
        client_may = grant_for(Role.CLIENT, action) is not Grant.NONE
        assert client_may == (name not in m.HOST_ONLY_TYPE_NAMES), name
        # Issue 15 adds the one message only a client sends ("I need to talk": a clinician has other ways).
        clinician_may = name not in CLIENT_ONLY_TYPE_NAMES
        assert (grant_for(Role.CLINICIAN, action) is not Grant.NONE) == clinician_may, name


CLIENT_ONLY_TYPE_NAMES = frozenset({"need_to_talk"})


def test_server_roles_match_the_room_domain() -> None:
    from vIOP.rooms.participant import Role as RoomRole

    assert {r.value for r in m.Role} == {r.value for r in RoomRole}


def _invalid(frame: object, *, server: bool = False) -> str:
    text = json.dumps(frame)
    result = decode_server(text) if server else decode_client(text)
    assert isinstance(result, DecodeFailure), frame
    assert result.close_code is None
    return result.error.code


def test_sdp_bound_admits_a_fifteen_person_answer_and_nothing_beyond_the_cap() -> None:
    # aiortc 1.16 answers a 15-person room's offer with ~43 KB of SDP (measured): it must fit.
    big_answer = (SDP * 200)[:43_131]
    frame = encode(m.Answer(sdp=big_answer))
    assert len(frame) < m.MAX_FRAME_BYTES
    assert decode_client(frame) == m.Answer(sdp=big_answer)
    assert decode_client(json.dumps({"type": "answer", "sdp": "x" * m.MAX_SDP_CHARS})) == m.Answer(
        sdp="x" * m.MAX_SDP_CHARS
    )
    assert _invalid({"type": "answer", "sdp": "x" * (m.MAX_SDP_CHARS + 1)}) == "invalid_message"
    assert _invalid({"type": "offer", "sdp": ""}) == "invalid_message"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "ping", "id": "x" * 65},
        {"type": "ping", "id": ""},
        {"type": "ping", "id": -1},
        {"type": "ping", "id": 2**53},
        {"type": "ping", "id": True},
        {"type": "ping", "id": 1.5},
        {"type": "ping", "id": None, "extra": 1},
        {"type": "set_media"},
        {"type": "set_media", "audio": "yes"},
        {"type": "raise_hand"},
        {"type": "raise_hand", "up": 1},
        {"type": "admit", "participant_id": "rm_0123"},
        {"type": "admit", "participant_id": "pt_" + "a" * 65},
        {"type": "admit", "participant_id": "pt_a b"},
        {"type": "deny", "participant_id": PID, "message": "x" * (m.MAX_TEXT_CHARS + 1)},
        {"type": "lobby_message", "participant_id": PID, "message": ""},
        {"type": "mute", "participant_id": PID, "kind": "screen"},
        {"type": "join", "resume_token": "rt_short"},
        {"type": "join", "protocol_version": 0},
        {"type": "candidate", "candidate": "c" * (m.MAX_CANDIDATE_CHARS + 1)},
        {"type": "candidate", "candidate": "", "sdp_mline_index": 256},
        {"type": "candidate", "candidate": "", "sdp_mid": "m" * 65},
    ],
)
def test_client_bounds_and_types_are_enforced(frame: dict[str, object]) -> None:
    assert _invalid(frame) == "invalid_message"


def test_server_lists_and_names_are_bounded() -> None:
    entry = msgspec.to_builtins(ROSTER_ENTRY)
    too_many = {"type": "roster", "locked": False, "participants": [entry] * (m.MAX_ROSTER + 1)}
    assert _invalid(too_many, server=True) == "invalid_message"
    assert isinstance(
        decode_server(json.dumps({**too_many, "participants": [entry] * m.MAX_ROSTER})), m.Roster
    )
    long_name = {"type": "participant_joined", "participant": {**entry, "display_name": "n" * 81}}
    assert _invalid(long_name, server=True) == "invalid_message"
    five_servers = {"urls": ["stun:127.0.0.1:3478"]}
    welcome = msgspec.to_builtins(SERVER_SAMPLES[0])
    assert _invalid({**welcome, "ice_servers": [five_servers] * 5}, server=True) == "invalid_message"
    assert (
        _invalid({**welcome, "ice_servers": [{"urls": ["http://evil.example"]}]}, server=True)
        == "invalid_message"
    )


def test_roster_entries_always_carry_their_flags() -> None:
    entry = json.loads(encode(m.Roster(participants=(ROSTER_ENTRY,), locked=False)))["participants"][0]
    assert {"hand", "muted_by_host", "reconnecting", "audio", "video", "role"} <= entry.keys()
    assert entry["reconnecting"] is False


def test_server_messages_tolerate_fields_added_by_a_newer_server() -> None:
    assert decode_server(json.dumps({"type": "pong", "server_time": 1})) == m.Pong()
