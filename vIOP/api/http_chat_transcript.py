"""A room's chat transcript over HTTP (issue 15, docs/API.md "Chat transcript"): a host saves the room's chat
to the session record on purpose, and reads it back.

Saving copies every line the room kept (sealed in Redis while it is live: room chat, and private and lobby
lines between a client and the hosts) into ``chat_transcripts`` sealed; a later save replaces the earlier
one. Only the room's hosts (creator and co-hosts) may save or read it: admins and staff never see clinical
content. The save is audited ``room.chat_transcript_saved`` and every read ``room.chat_transcript_viewed``
(ids only); refusals are audited ``denied`` by the permission check.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from vIOP.api.auth_context import BEARER_SECURITY, authenticate, iso, read_json, refusals
from vIOP.api.http_auth import EmptyBody
from vIOP.api.http_rooms import require_not_ended, room_for
from vIOP.api.openapi import IsoTime, Operation, Reply, documented_route, path_param, struct_response
from vIOP.auth.permissions import Action
from vIOP.errors import Conflict, NotFound
from vIOP.ids import RoomId, UserId
from vIOP.rooms.chat import ChatLine
from vIOP.session.delivery import wire_role
from vIOP.signaling import messages as m
from vIOP.storage.audit import AuditEvent


class NothingToSave(Conflict):
    """The room has no chat lines kept (none written yet)."""

    code = "nothing_to_save"


class NoTranscript(NotFound):
    """No host has saved this room's chat."""

    code = "no_transcript"


class SavedChatTranscript(msgspec.Struct):
    room_id: str
    line_count: int
    saved_at: IsoTime


class TranscriptLine(msgspec.Struct):
    """One line as its readers saw it (``chat`` on the signaling socket, docs/PROTOCOL.md "Chat")."""

    sender: str
    sender_name: str
    sender_role: m.Role
    text: str
    private: bool
    thread: str | None
    sent_at: IsoTime


class ChatTranscript(msgspec.Struct):
    room_id: str
    saved_by: str
    saved_at: IsoTime
    lines: list[TranscriptLine]


def _line(line: ChatLine) -> TranscriptLine:
    return TranscriptLine(
        sender=line.sender,
        sender_name=line.sender_name,
        sender_role=wire_role(line.sender_role),
        text=line.text,
        private=line.private,
        thread=line.thread,
        sent_at=iso(line.at),
    )


async def save_chat_transcript(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    record, live = await room_for(caller, request.path_params["room_id"], Action.SAVE_CHAT_TRANSCRIPT)
    require_not_ended(record, live)
    await read_json(request, EmptyBody, empty=EmptyBody())  # no body, or `{}`
    services = caller.services
    room_id = RoomId(record.id)
    lines = await services.chat.transcript(room_id)
    if not lines:
        raise NothingToSave("this room has no chat to save")
    at = services.rooms.clock()
    await services.chat_transcripts.save(room_id, lines, by=UserId(caller.principal.subject), at=at)
    await caller.audit(AuditEvent.CHAT_TRANSCRIPT_SAVED, "room", room_id)
    return struct_response(
        SavedChatTranscript(room_id=room_id, line_count=len(lines), saved_at=iso(at)),
        status_code=201,
        headers={"Location": f"/api/v1/rooms/{room_id}/chat-transcript"},
    )


async def get_chat_transcript(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    record, _live = await room_for(caller, request.path_params["room_id"], Action.VIEW_CHAT_TRANSCRIPT)
    saved = await caller.services.chat_transcripts.get(RoomId(record.id))
    if saved is None:
        raise NoTranscript("no chat transcript has been saved for this room")
    await caller.audit(AuditEvent.CHAT_TRANSCRIPT_VIEWED, "room", record.id)
    return struct_response(
        ChatTranscript(
            room_id=saved.room_id,
            saved_by=saved.saved_by,
            saved_at=iso(saved.saved_at),
            lines=[_line(x) for x in saved.lines],
        )
    )


async def _chat_transcript(request: Request) -> Response:
    if request.method == "POST":
        return await save_chat_transcript(request)
    return await get_chat_transcript(request)


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/rooms/{room_id}/chat-transcript",
            _chat_transcript,
            ["GET", "POST"],
            {
                "post": Operation(
                    summary="Save the room's chat (every kept line, private ones too) to the session record",
                    operation_id="saveChatTranscript",
                    security=BEARER_SECURITY,
                    parameters=[path_param("room_id")],
                    request=EmptyBody,
                    request_required=False,
                    responses={
                        201: Reply("Saved (replacing an earlier save of this room)", SavedChatTranscript),
                        **refusals(400, 401, 403, 404, 409, 413, 415),
                    },
                ),
                "get": Operation(
                    summary="The room's saved chat transcript (hosts only)",
                    operation_id="getChatTranscript",
                    security=BEARER_SECURITY,
                    parameters=[path_param("room_id")],
                    responses={200: Reply("The saved transcript", ChatTranscript), **refusals(401, 403, 404)},
                ),
            },
        ),
    ]
