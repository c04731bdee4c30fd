"""The signaling wire: every message as a msgspec Struct, one tagged union per direction.

Frames are JSON text objects ``{"type": ..., ...}``. A client may add ``id`` (a string or a non-negative
integer) to any message; the server echoes it in the direct reply (``welcome``, ``answer``, ``pong`` or
``error``). Every string and list is bounded so a valid message is always small; the codec additionally
caps a whole frame at :data:`MAX_FRAME_BYTES`.

Client messages forbid unknown fields (a typo is an error, not a silent no-op). Server messages ignore
unknown fields so an older client keeps working when the server adds a field. See docs/PROTOCOL.md.
"""

from __future__ import annotations

import enum
from typing import Annotated, ClassVar, TypeAlias

import msgspec
from msgspec import Meta

from vIOP.rooms import limits
from vIOP.rooms.audio_only import AudioOnlyReason as AudioOnlyReason  # the relay's reasons are the wire's
from vIOP.rooms.participant import Role as Role  # the domain's room role is the wire's (same values)
from vIOP.rooms.share import SCREEN_STREAM_SUFFIX as SCREEN_STREAM_SUFFIX  # the share's stream id suffix

PROTOCOL_VERSION = 1

MAX_FRAME_BYTES = 64 * 1024
# Client SDP fits one 64 KiB frame even with JSON escaping (why 56 KiB: vIOP/rooms/limits.py); server
# frames may be larger.
MAX_SDP_CHARS = limits.MAX_SDP_CHARS
MAX_SERVER_SDP_CHARS = 192 * 1024
MAX_SERVER_FRAME_BYTES = 256 * 1024
MAX_CANDIDATE_CHARS = limits.MAX_CANDIDATE_CHARS
MAX_DISPLAY_NAME_CHARS = limits.MAX_DISPLAY_NAME_CHARS
MAX_TEXT_CHARS = limits.MAX_MESSAGE_CHARS
MAX_CHAT_CHARS = limits.MAX_CHAT_CHARS
MAX_ROSTER = 100
MAX_LOBBY = 200
MAX_ICE_SERVERS = 4
MAX_ICE_URLS = 4
MAX_RECENT_SPEAKERS = 8
MAX_TILE_PIXELS = 8192  # a tile larger than an 8K screen is not a tile
# Not on the wire; exported so the web client's forms (through protocol.js) use the API's limits.
MAX_ROOM_TITLE_CHARS = limits.MAX_ROOM_TITLE_CHARS
MAX_ROOM_CAPACITY = limits.MAX_ROOM_CAPACITY


class CloseCode(enum.IntEnum):
    """WebSocket close codes used by the signaling endpoint (RFC 6455 section 7.4.1)."""

    NORMAL = 1000  # leave, denied, removed, room ended, replaced by a resumed connection
    GOING_AWAY = 1001  # server shutting down or heartbeat lost: reconnect with the resume token
    UNSUPPORTED_DATA = 1003  # malformed JSON, binary frame
    POLICY_VIOLATION = 1008  # bad Origin, ticket or resume token; message flood
    MESSAGE_TOO_BIG = 1009  # frame over MAX_FRAME_BYTES
    INTERNAL_ERROR = 1011  # unexpected server fault: reconnect with the resume token
    TRY_AGAIN_LATER = 1013  # overloaded, a store unavailable, or this client too slow to read


class MediaKind(enum.StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


class MediaMoveReason(enum.StrEnum):
    NODE_LOST = "node_lost"  # the server carrying the room's media stopped (its heartbeat lapsed)
    DRAIN = "drain"  # that server is draining: keep the old connection until the new one delivers


class LeaveReason(enum.StrEnum):
    LEFT = "left"
    REMOVED = "removed"
    RETURNED_TO_LOBBY = "returned_to_lobby"
    TIMEOUT = "timeout"  # the socket dropped and the resume grace window passed


# --- bounded field types -------------------------------------------------------------------------------

RequestId: TypeAlias = (
    Annotated[str, Meta(min_length=1, max_length=64)] | Annotated[int, Meta(ge=0, le=2**53 - 1)]
)
ParticipantIdField = Annotated[str, Meta(pattern=r"^pt_[A-Za-z0-9_-]{1,64}$")]
RoomIdField = Annotated[str, Meta(pattern=r"^rm_[A-Za-z0-9_-]{1,64}$")]
ResumeTokenField = Annotated[str, Meta(pattern=r"^rt_[A-Za-z0-9_-]{43}$")]
Sdp = Annotated[str, Meta(min_length=1, max_length=MAX_SDP_CHARS)]
ServerSdp = Annotated[str, Meta(min_length=1, max_length=MAX_SERVER_SDP_CHARS)]
CandidateLine = Annotated[str, Meta(max_length=MAX_CANDIDATE_CHARS)]  # "" means end of candidates
SdpMid = Annotated[str, Meta(max_length=64)]
MLineIndex = Annotated[int, Meta(ge=0, le=255)]
DisplayName = Annotated[str, Meta(min_length=1, max_length=MAX_DISPLAY_NAME_CHARS)]
Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_CHARS)]
ChatText = Annotated[str, Meta(min_length=1, max_length=MAX_CHAT_CHARS)]
ErrorCodeField = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
ShortText = Annotated[str, Meta(max_length=256)]
IceUrl = Annotated[str, Meta(pattern=r"^(stun|stuns|turn|turns):", max_length=256)]
Count = Annotated[int, Meta(ge=0, le=10_000_000)]
Position = Annotated[int, Meta(ge=1, le=MAX_LOBBY)]


class _ClientMessage(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    forbid_unknown_fields=True,
    tag_field="type",
):
    """Base of client -> server messages. ``host_only`` feeds the permission check in dispatch."""

    host_only: ClassVar[bool] = False
    id: RequestId | None = None


class _HostMessage(_ClientMessage, frozen=True):
    host_only: ClassVar[bool] = True


class _ServerMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type"):
    """Base of server -> client messages. Only ``id`` and optional texts have defaults (omitted when
    None); every other field is always on the wire, so a JavaScript client never reads ``undefined``."""

    id: RequestId | None = None


# --- client -> server ----------------------------------------------------------------------------------


class Join(_ClientMessage, frozen=True, tag="join"):
    """First message on a socket. With ``resume_token`` it takes back a dropped participant."""

    protocol_version: Annotated[int, Meta(ge=1, le=1000)] = PROTOCOL_VERSION
    resume_token: ResumeTokenField | None = None
    audio: bool = True
    video: bool = True


class Offer(_ClientMessage, frozen=True, tag="offer"):
    """Opens a new peer connection (first join or after reconnect), replacing any previous one."""

    sdp: Sdp


class Answer(_ClientMessage, frozen=True, tag="answer"):
    """Answer to the server's renegotiation ``offer``."""

    sdp: Sdp


class Candidate(_ClientMessage, frozen=True, tag="candidate"):
    candidate: CandidateLine
    sdp_mid: SdpMid | None = None
    sdp_mline_index: MLineIndex | None = None


class Leave(_ClientMessage, frozen=True, tag="leave"):
    pass


class SetMedia(_ClientMessage, frozen=True, tag="set_media"):
    """Own microphone/camera on or off; omitted fields stay as they are."""

    audio: bool | None = None
    video: bool | None = None

    def __post_init__(self) -> None:
        if self.audio is None and self.video is None:
            raise ValueError("Expected `audio` or `video`")


class RaiseHand(_ClientMessage, frozen=True, tag="raise_hand"):
    up: bool


class Tile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One video tile the client shows: whose video, and its size on screen in device pixels."""

    participant: ParticipantIdField
    width: Annotated[int, Meta(ge=1, le=MAX_TILE_PIXELS)]
    height: Annotated[int, Meta(ge=1, le=MAX_TILE_PIXELS)]


class SetSubscriptions(_ClientMessage, frozen=True, tag="set_subscriptions"):
    """The video tiles on screen now. Everyone else's video is paused for this client; small tiles get a
    publisher's low layer. Until a client sends one it receives every video at the default layer."""

    tiles: Annotated[tuple[Tile, ...], Meta(max_length=MAX_ROSTER)]


class SaveData(_ClientMessage, frozen=True, tag="save_data"):
    """Receive audio only (``on``), or video again: the person's own choice, e.g. on mobile data."""

    on: bool


class Ping(_ClientMessage, frozen=True, tag="ping"):
    """Keeps the seat (presence, resume token). For a clinician it renews the sign-in's idle timer only when
    ``active``: the page is being used (recent input, or visible with media flowing). Scripted clients that
    omit it count as active; the web console always says."""

    active: bool = True


class Admit(_HostMessage, frozen=True, tag="admit"):
    participant_id: ParticipantIdField


class AdmitAll(_HostMessage, frozen=True, tag="admit_all"):
    pass


class Deny(_HostMessage, frozen=True, tag="deny"):
    participant_id: ParticipantIdField
    message: Text | None = None


class LobbyMessage(_HostMessage, frozen=True, tag="lobby_message"):
    participant_id: ParticipantIdField
    message: Text


class ReturnToLobby(_HostMessage, frozen=True, tag="return_to_lobby"):
    participant_id: ParticipantIdField


class Mute(_HostMessage, frozen=True, tag="mute"):
    """Server-enforced: the relay stops forwarding that media. ``muted: false`` lifts the host mute."""

    participant_id: ParticipantIdField
    kind: MediaKind = MediaKind.AUDIO
    muted: bool = True


class Remove(_HostMessage, frozen=True, tag="remove"):
    participant_id: ParticipantIdField
    message: Text | None = None


class Lock(_HostMessage, frozen=True, tag="lock"):
    pass


class Unlock(_HostMessage, frozen=True, tag="unlock"):
    pass


class End(_HostMessage, frozen=True, tag="end"):
    pass


# --- chat (issue 15), client -> server ------------------------------------------------------------------


class Chat(_ClientMessage, frozen=True, tag="chat"):
    """A chat line, delivered live to those present and kept nowhere. Room chat (``private`` false) goes to
    everyone in the room; a client's private line goes to the hosts (no ``to``; also from the waiting room);
    a host's private line names the client (``to``, seated or waiting) and reaches that client and every
    host. The sender gets the line back as ``chat`` with this message's ``id``."""

    text: ChatText
    private: bool = False
    to: ParticipantIdField | None = None


class SetChatPolicy(_HostMessage, frozen=True, tag="set_chat_policy"):
    """Turn clients' chat to everyone on or off (private chat with the hosts stays)."""

    clients_may_chat: bool


# --- end chat (client -> server) -------------------------------------------------------------------------
# --- "I need to talk" (issue 15) ---------------------------------------------------------------------------


class NeedToTalk(_ClientMessage, frozen=True, tag="need_to_talk"):
    """A client asks, privately, for a clinician (a distress or check-in request), from the lobby or the room.
    Only the room's hosts and the staff presence dashboard learn of it; it stays until a host acknowledges it.
    Sending it again while it is pending changes nothing."""


class AcknowledgeNeed(_HostMessage, frozen=True, tag="acknowledge_need"):
    """A host has seen a client's request to talk: it is cleared for every host and staff view."""

    participant_id: ParticipantIdField


# --- private breakout (issue 15) -------------------------------------------------------------------------


class StartBreakout(_HostMessage, frozen=True, tag="start_breakout"):
    """Move the client ``participant_id`` (in the room) into a private 1:1 breakout with the clinician
    ``clinician_id`` (a host in the room; default: the sender). The group sees them only as stepped out;
    their media and room chat go to each other only. A pending request to talk from that client is
    acknowledged with it (the console's "Talk privately")."""

    participant_id: ParticipantIdField
    clinician_id: ParticipantIdField | None = None


class EndBreakout(_HostMessage, frozen=True, tag="end_breakout"):
    """Bring the breakout of ``participant_id`` (its client or its clinician) back to the group, no knock."""

    participant_id: ParticipantIdField


# --- screen share (issue 15), client -> server -------------------------------------------------------------


class StartShare(_ClientMessage, frozen=True, tag="start_share"):
    """Send my screen to the room: the second video section of my peer connection (docs/PROTOCOL.md, "Screen
    share"). A host may always; a client only while a host allows it. One share at a time per room."""


class StopShare(_ClientMessage, frozen=True, tag="stop_share"):
    """My share ended (my stop button, or the browser's own: the track's ``ended`` event)."""


class AllowShare(_HostMessage, frozen=True, tag="allow_share"):
    """Let a seated client share their screen (they start it themselves with ``start_share``)."""

    participant_id: ParticipantIdField


class RevokeShare(_HostMessage, frozen=True, tag="revoke_share"):
    """Take back a client's permission to share; their share, if running, stops for everyone now."""

    participant_id: ParticipantIdField


ClientMessage: TypeAlias = (
    Join
    | Offer
    | Answer
    | Candidate
    | Leave
    | SetMedia
    | RaiseHand
    | SetSubscriptions
    | SaveData
    | Ping
    | Admit
    | AdmitAll
    | Deny
    | LobbyMessage
    | ReturnToLobby
    | Mute
    | Remove
    | Lock
    | Unlock
    | End
    | Chat
    | SetChatPolicy
    | NeedToTalk
    | AcknowledgeNeed
    | StartBreakout
    | EndBreakout
    | StartShare
    | StopShare
    | AllowShare
    | RevokeShare
)

# --- server -> client ----------------------------------------------------------------------------------


class IceServer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Shaped like the browser's RTCIceServer so a web client can pass it through unchanged."""

    urls: Annotated[tuple[IceUrl, ...], Meta(min_length=1, max_length=MAX_ICE_URLS)]
    username: ShortText | None = None
    credential: ShortText | None = None


class LobbyEntry(msgspec.Struct, frozen=True, kw_only=True):
    participant_id: ParticipantIdField
    display_name: DisplayName
    waited_seconds: Count
    # A host removed this client earlier in this session and they knocked again (removal is not a ban:
    # the host decides, knowing it).
    returning_after_removal: bool = False
    talk_requested: bool = False  # issue 15: "I need to talk", pending (the lobby goes to hosts only)


class RosterEntry(msgspec.Struct, frozen=True, kw_only=True):
    participant_id: ParticipantIdField
    display_name: DisplayName
    role: Role
    audio: bool
    video: bool
    hand: bool
    muted_by_host: bool
    # Still listed while their socket is down within the grace window. Defaulted so existing callers
    # keep working; RosterEntry does not omit defaults, so it is always on the wire.
    reconnecting: bool = False
    # Receives no video (their link, or their own "save data" choice): the clinician sees who is audio only.
    audio_only: bool = False
    # Issue 15: asked to talk and no host has acknowledged it yet. Only in hosts' rosters (false for clients).
    talk_requested: bool = False
    # Issue 15: in a private breakout the reader is not part of (the group sees only this, never why).
    stepped_out: bool = False
    # Issue 15: the other side of their breakout. Only in hosts' rosters (None for clients).
    breakout_with: ParticipantIdField | None = None


class Welcome(_ServerMessage, frozen=True, tag="welcome"):
    protocol_version: int
    participant_id: ParticipantIdField
    room_id: RoomIdField
    role: Role
    resume_token: ResumeTokenField
    resume_grace_seconds: Count
    heartbeat_seconds: Count
    ice_servers: Annotated[tuple[IceServer, ...], Meta(max_length=MAX_ICE_SERVERS)]
    resumed: bool


class Waiting(_ServerMessage, frozen=True, tag="waiting"):
    position: Position
    message: Text | None = None


class Lobby(_ServerMessage, frozen=True, tag="lobby"):
    waiting: Annotated[tuple[LobbyEntry, ...], Meta(max_length=MAX_LOBBY)]


class Admitted(_ServerMessage, frozen=True, tag="admitted"):
    pass


class Denied(_ServerMessage, frozen=True, tag="denied"):
    message: Text | None = None


class Roster(_ServerMessage, frozen=True, tag="roster"):
    participants: Annotated[tuple[RosterEntry, ...], Meta(max_length=MAX_ROSTER)]
    locked: bool


class ParticipantJoined(_ServerMessage, frozen=True, tag="participant_joined"):
    participant: RosterEntry


class ParticipantLeft(_ServerMessage, frozen=True, tag="participant_left"):
    participant_id: ParticipantIdField
    reason: LeaveReason


class Reconnecting(_ServerMessage, frozen=True, tag="reconnecting"):
    participant_id: ParticipantIdField


class ServerOffer(_ServerMessage, frozen=True, tag="offer"):
    sdp: ServerSdp


class ServerAnswer(_ServerMessage, frozen=True, tag="answer"):
    sdp: ServerSdp


class ServerCandidate(_ServerMessage, frozen=True, tag="candidate"):
    candidate: CandidateLine
    sdp_mid: SdpMid | None = None
    sdp_mline_index: MLineIndex | None = None


class MediaChanged(_ServerMessage, frozen=True, tag="media_changed"):
    participant_id: ParticipantIdField
    audio: bool
    video: bool


class MediaMoved(_ServerMessage, frozen=True, tag="media_moved"):
    """The room's media moved to another server: open a new peer connection (a new ``offer``) on the same
    socket; admission, seat and attendance go on (docs/SCALING.md, "Node loss", "Drain"). On ``drain`` the
    old connection still flows: publish on both until the new one delivers, then close the old one."""

    reason: MediaMoveReason


class AudioOnly(_ServerMessage, frozen=True, tag="audio_only"):
    """``participant_id`` now receives audio only (``on``) or video again; ``reason`` is why it started
    (when ``on``) or which state ended (when not)."""

    participant_id: ParticipantIdField
    on: bool
    reason: AudioOnlyReason


class Muted(_ServerMessage, frozen=True, tag="muted"):
    participant_id: ParticipantIdField
    kind: MediaKind
    muted: bool


class Removed(_ServerMessage, frozen=True, tag="removed"):
    message: Text | None = None


class ReturnedToLobby(_ServerMessage, frozen=True, tag="returned_to_lobby"):
    pass


class RoomLocked(_ServerMessage, frozen=True, tag="room_locked"):
    pass


class RoomUnlocked(_ServerMessage, frozen=True, tag="room_unlocked"):
    pass


class RoomEnded(_ServerMessage, frozen=True, tag="room_ended"):
    pass


class HandRaised(_ServerMessage, frozen=True, tag="hand_raised"):
    participant_id: ParticipantIdField
    up: bool


class ActiveSpeaker(_ServerMessage, frozen=True, tag="active_speaker"):
    """The room's dominant speaker changed (from the audio levels publishers send; rate-limited by the
    relay's hysteresis). ``speaker`` is None only when the last speaker left or was muted by a host;
    ``recent`` lists recent speakers, newest first (the current one included)."""

    speaker: ParticipantIdField | None
    recent: Annotated[tuple[ParticipantIdField, ...], Meta(max_length=MAX_RECENT_SPEAKERS)]


class TalkRequest(_ServerMessage, frozen=True, tag="talk_request"):
    """Issue 15. To the room's hosts (and to the asking client, about themself only): ``participant_id`` asked
    to talk (``pending``) or a host acknowledged it (not ``pending``). Never sent to other clients."""

    participant_id: ParticipantIdField
    pending: bool


class Breakout(_ServerMessage, frozen=True, tag="breakout"):
    """Issue 15. To the breakout's client, its clinician and the room's hosts, never to other clients: the
    client ``participant_id`` is in a private breakout with ``clinician_id`` (``active``) or back with the
    group. ``clinician_name``: the clinician's display name, for "You are in a private conversation with
    ..."."""

    participant_id: ParticipantIdField
    clinician_id: ParticipantIdField
    clinician_name: DisplayName
    active: bool


class ErrorMessage(_ServerMessage, frozen=True, tag="error"):
    code: ErrorCodeField
    message: Text


class Pong(_ServerMessage, frozen=True, tag="pong"):
    pass


# --- chat (issue 15), server -> client ------------------------------------------------------------------


class ChatMessage(_ServerMessage, frozen=True, tag="chat"):
    """A chat line from ``sender`` (named as the room shows them). ``private`` lines belong to the thread of
    the client ``thread`` with the hosts (None for room chat). ``sent_at``: Unix time in milliseconds.
    Always render ``text`` as text, never as markup."""

    sender: ParticipantIdField
    sender_name: DisplayName
    sender_role: Role
    text: ChatText
    private: bool
    thread: ParticipantIdField | None
    sent_at: Annotated[int, Meta(ge=0)]


class ChatPolicy(_ServerMessage, frozen=True, tag="chat_policy"):
    """Whether clients may chat to everyone in the room; sent on admission and whenever a host changes it."""

    clients_may_chat: bool


# --- end chat (server -> client) -------------------------------------------------------------------------


# --- screen share (issue 15), server -> client -------------------------------------------------------------


class ShareState(_ServerMessage, frozen=True, tag="share_state"):
    """Who shares their screen now (None: nobody) and which clients a host allowed to; sent to everyone in
    the room on admission and on every change. The share's media arrives with the stream id
    ``<sharer>`` + :data:`SCREEN_STREAM_SUFFIX`."""

    sharer: ParticipantIdField | None
    allowed: Annotated[tuple[ParticipantIdField, ...], Meta(max_length=MAX_ROSTER)]


ServerMessage: TypeAlias = (
    Welcome
    | Waiting
    | Lobby
    | Admitted
    | Denied
    | Roster
    | ParticipantJoined
    | ParticipantLeft
    | Reconnecting
    | ServerOffer
    | ServerAnswer
    | ServerCandidate
    | MediaChanged
    | MediaMoved
    | AudioOnly
    | Muted
    | Removed
    | ReturnedToLobby
    | RoomLocked
    | RoomUnlocked
    | RoomEnded
    | HandRaised
    | ActiveSpeaker
    | TalkRequest
    | Breakout
    | ErrorMessage
    | Pong
    | ChatMessage
    | ChatPolicy
    | ShareState
)

CLIENT_MESSAGE_TYPES: tuple[type[_ClientMessage], ...] = ClientMessage.__args__
SERVER_MESSAGE_TYPES: tuple[type[_ServerMessage], ...] = ServerMessage.__args__


def message_type(message: ClientMessage | ServerMessage) -> str:
    """The wire ``type`` tag of a message object."""
    tag = type(message).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


CLIENT_TYPE_NAMES: frozenset[str] = frozenset(str(cls.__struct_config__.tag) for cls in CLIENT_MESSAGE_TYPES)
SERVER_TYPE_NAMES: frozenset[str] = frozenset(str(cls.__struct_config__.tag) for cls in SERVER_MESSAGE_TYPES)
HOST_ONLY_TYPE_NAMES: frozenset[str] = frozenset(
    str(cls.__struct_config__.tag) for cls in CLIENT_MESSAGE_TYPES if cls.host_only
)
