"""Break-glass access and 42 CFR Part 2 consents over HTTP (docs/API.md, "Break-glass" and "Consents"),
and the access rule the attendance export applies (:func:`attendance_access`).

- ``POST /api/v1/break-glass`` opens a grant for one room with a stated reason (admins; clinicians for
  rooms they do not host), valid ``VIOP_BREAK_GLASS_MINUTES``; requests carry it in ``X-Break-Glass``;
- ``GET /api/v1/break-glass`` lists grants not yet signed off; ``POST .../{grant_id}/sign-off`` by a second
  admin;
- ``POST|GET /api/v1/clients/{client_id}/consents`` and ``DELETE /api/v1/consents/{consent_id}`` (admins).

Reasons, recipients and purposes are PHI-adjacent: stored as ciphertext, never logged, never in audit rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from vIOP.api.auth_context import (
    BEARER_SECURITY,
    Caller,
    authenticate,
    iso,
    read_json,
    refusals,
    require_account,
    require_role,
)
from vIOP.api.openapi import documented_route, json_body
from vIOP.auth.permissions import Action, Grant, RoomScope, authorize
from vIOP.compliance.break_glass import (
    HEADER,
    MAX_REASON_CHARS,
    MIN_REASON_CHARS,
    BreakGlassRefused,
    check_reason,
    check_sign_off,
    check_use,
)
from vIOP.compliance.break_glass import Grant as BreakGlassGrant
from vIOP.compliance.consent import (
    MAX_TEXT_CHARS,
    REDISCLOSURE_NOTICE,
    Consent,
    ConsentRequired,
    DataCategory,
    check_text,
    parse_categories,
)
from vIOP.errors import BadRequest, NotFound
from vIOP.rooms.attendance import Interval
from vIOP.rooms.participant import Role as ParticipantRole
from vIOP.session.services import Services
from vIOP.storage.audit import Action as AuditAction
from vIOP.storage.audit import Outcome
from vIOP.storage.break_glass_sql import SqlBreakGlassStore
from vIOP.storage.consents_sql import SqlConsentStore, require_consent

BREAK_GLASS_USED: Final = "access.break_glass_used"
BREAK_GLASS_REVIEWED: Final = "access.break_glass_reviewed"
BREAK_GLASS_SIGNED_OFF: Final = "access.break_glass_signed_off"
CONSENT_ADDED: Final = "consent.added"
CONSENT_REVOKED: Final = "consent.revoked"
CONSENT_LISTED: Final = "consent.listed"
DISCLOSED: Final = "part2.disclosed"
_GRANT_ID: Final = re.compile(r"^bg_[A-Za-z0-9_-]{1,61}$")  # fits an audit object id (64)
_CLIENT_ID: Final = re.compile(r"^cl_[A-Za-z0-9_-]{1,61}$")
_CONSENT_ID: Final = re.compile(r"^cn_[A-Za-z0-9_-]{1,61}$")


def break_glass_store(services: Services) -> SqlBreakGlassStore:
    return SqlBreakGlassStore(services.storage.db, services.storage.keys)


def consent_store(services: Services) -> SqlConsentStore:
    return SqlConsentStore(services.storage.db, services.storage.keys)


# --- the attendance export's access rule ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttendanceAccess:
    """What one attendance request may see, decided before the ledger is read.

    ``grant``: a break-glass grant the caller presented for the requested room (checked and audited);
    ``recipient``: set when the export is a disclosure to someone outside the treating team."""

    caller: Caller
    grant: BreakGlassGrant | None
    recipient: str | None

    def authorize_room(self, room: RoomScope) -> None:
        """VIEW_ATTENDANCE in the room, unless a break-glass grant for it was presented."""
        if self.grant is None or self.grant.room_id != room.room_id:
            authorize(self.caller.principal, Action.VIEW_ATTENDANCE, room)

    @property
    def identified(self) -> bool:
        """Client names: the treating team (a clinician's own rooms), a break-glass grant, or a consented
        disclosure. An admin's normal view is ids, minutes and flags only."""
        if self.grant is not None or self.recipient is not None:
            return True
        return authorize(self.caller.principal, Action.VIEW_ATTENDANCE) is not Grant.ALL

    @property
    def notice(self) -> str | None:
        """The 42 CFR 2.32 notice a disclosure carries."""
        return REDISCLOSURE_NOTICE if self.recipient is not None else None

    async def check_disclosure(self, intervals: list[Interval]) -> None:
        """For a disclosure: refuse (403 ``consent_required``) unless every client in it consented to this
        recipient receiving attendance; then account for each disclosure in the audit log."""
        if self.recipient is None:
            return
        services = self.caller.services
        clients = [i.subject for i in intervals if i.role is ParticipantRole.CLIENT]
        try:
            await require_consent(
                consent_store(services),
                clients,
                self.recipient,
                DataCategory.ATTENDANCE,
                services.rooms.clock(),
            )
        except ConsentRequired:
            await self.caller.audit(DISCLOSED, "client", None, Outcome.DENIED)
            raise
        for client in dict.fromkeys(clients):
            await self.caller.audit(DISCLOSED, "client", client)


async def attendance_access(caller: Caller, request: Request, room_id: str | None) -> AttendanceAccess:
    """Read ``X-Break-Glass`` and ``recipient`` of an attendance request (400/403 before any data is read)."""
    raw_recipient = request.query_params.get("recipient")
    recipient = None if raw_recipient is None else check_text(raw_recipient, "recipient")
    grant_id = request.headers.get(HEADER)
    if grant_id is None:
        return AttendanceAccess(caller, None, recipient)
    grant = await usable_grant(caller, grant_id, room_id)
    return AttendanceAccess(caller, grant, recipient)


async def usable_grant(caller: Caller, grant_id: str, room_id: str | None) -> BreakGlassGrant:
    """The caller's own, unexpired grant for ``room_id`` (403 ``break_glass_refused`` otherwise); each use
    is audited with the grant id."""
    try:
        if not _GRANT_ID.match(grant_id):
            raise NotFound("malformed")
        grant = await break_glass_store(caller.services).get(grant_id)
        check_use(grant, caller.principal.subject, room_id, caller.services.rooms.clock())
    except (NotFound, BreakGlassRefused) as refused:
        known = grant_id if _GRANT_ID.match(grant_id) else None
        await caller.audit(BREAK_GLASS_USED, "break_glass", known, outcome=Outcome.DENIED)
        if isinstance(refused, BreakGlassRefused):
            raise
        raise BreakGlassRefused("no such break-glass grant") from None
    await caller.audit(BREAK_GLASS_USED, "break_glass", grant.id)
    return grant


# --- break-glass endpoints --------------------------------------------------------------------------------


class OpenBreakGlassBody(msgspec.Struct, forbid_unknown_fields=True):
    room_id: str
    reason: str


def grant_object(grant: BreakGlassGrant, *, with_reason: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": grant.id,
        "actor_id": grant.actor_id,
        "actor_role": grant.actor_role,
        "room_id": grant.room_id,
        "created_at": iso(grant.created_at),
        "expires_at": iso(grant.expires_at),
        "signed_off_by": grant.signed_off_by,
        "signed_off_at": iso(grant.signed_off_at),
    }
    if with_reason:
        body["reason"] = grant.reason
    return body


async def open_break_glass(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    require_role(caller.principal, Action.BREAK_GLASS)
    body = await read_json(request, OpenBreakGlassBody)
    reason = check_reason(body.reason)
    services = caller.services
    record = await services.room_directory.get(body.room_id)  # 404 for an unknown room
    authorize(caller.principal, Action.BREAK_GLASS, record.scope)
    ttl = services.settings.break_glass_minutes * 60.0
    grant = await break_glass_store(services).open(
        caller.principal.subject, caller.principal.role.value, record.id, reason, services.rooms.clock(), ttl
    )
    await caller.audit(AuditAction.BREAK_GLASS, "break_glass", grant.id)
    return JSONResponse(grant_object(grant, with_reason=False), status_code=201)


async def list_break_glass(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    authorize(caller.principal, Action.REVIEW_BREAK_GLASS)
    pending = await break_glass_store(caller.services).pending_review()
    await caller.audit(BREAK_GLASS_REVIEWED, "break_glass")
    return JSONResponse({"grants": [grant_object(g, with_reason=True) for g in pending]})


async def sign_off_break_glass(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    authorize(caller.principal, Action.REVIEW_BREAK_GLASS)
    grant_id = request.path_params["grant_id"]
    if not _GRANT_ID.match(grant_id):
        raise NotFound("no such break-glass grant")
    await read_json(request, SignOffBody, empty=SignOffBody())
    store = break_glass_store(caller.services)
    check_sign_off(await store.get(grant_id), caller.principal.subject)
    grant = await store.sign_off(grant_id, caller.principal.subject, caller.services.rooms.clock())
    await caller.audit(BREAK_GLASS_SIGNED_OFF, "break_glass", grant.id)
    return JSONResponse(grant_object(grant, with_reason=False))


# --- consent endpoints ------------------------------------------------------------------------------------


class SignOffBody(msgspec.Struct, forbid_unknown_fields=True):
    """No fields: the sign-off is the reviewer's identity and the time."""


class AddConsentBody(msgspec.Struct, forbid_unknown_fields=True):
    recipient: str
    purpose: str
    data: list[str]
    expires_at: datetime


def consent_object(consent: Consent) -> dict[str, Any]:
    return {
        "id": consent.id,
        "client_id": consent.client_id,
        "recipient": consent.recipient,
        "purpose": consent.purpose,
        "data": sorted(consent.data),
        "created_by": consent.created_by,
        "created_at": iso(consent.created_at),
        "expires_at": iso(consent.expires_at),
        "revoked_at": iso(consent.revoked_at),
        "revoked_by": consent.revoked_by,
    }


def _client_id(request: Request) -> str:
    client_id: str = request.path_params["client_id"]
    if not _CLIENT_ID.match(client_id):
        raise NotFound("no such client")
    return client_id


async def _consent_admin(request: Request) -> Caller:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    authorize(caller.principal, Action.MANAGE_CONSENT)
    return caller


async def client_consents(request: Request) -> Response:
    caller = await _consent_admin(request)
    client_id = _client_id(request)
    store = consent_store(caller.services)
    if request.method == "GET":
        consents = await store.for_client(client_id)
        await caller.audit(CONSENT_LISTED, "client", client_id)
        return JSONResponse({"consents": [consent_object(c) for c in consents]})
    body = await read_json(request, AddConsentBody)
    if body.expires_at.tzinfo is None:
        raise BadRequest("expires_at needs a time zone (e.g. 2027-01-31T00:00:00Z)")
    consent = await store.add(
        client_id,
        check_text(body.recipient, "recipient"),
        check_text(body.purpose, "purpose"),
        parse_categories(body.data),
        body.expires_at.timestamp(),
        caller.principal.subject,
        caller.services.rooms.clock(),
    )
    await caller.audit(CONSENT_ADDED, "consent", consent.id)
    return JSONResponse(consent_object(consent), status_code=201)


async def revoke_consent(request: Request) -> Response:
    caller = await _consent_admin(request)
    consent_id = request.path_params["consent_id"]
    if not _CONSENT_ID.match(consent_id):
        raise NotFound("no such consent")
    consent = await consent_store(caller.services).revoke(
        consent_id, caller.principal.subject, caller.services.rooms.clock()
    )
    await caller.audit(CONSENT_REVOKED, "consent", consent.id)
    return JSONResponse(consent_object(consent))


# --- OpenAPI ----------------------------------------------------------------------------------------------

_ID: Final = {"type": "string"}
_TIME: Final = {"type": "string", "format": "date-time"}
_MAYBE: Final = {"type": ["string", "null"]}
_MAYBE_TIME: Final = {"type": ["string", "null"], "format": "date-time"}
GRANT_SCHEMA: Final = {
    "type": "object",
    "required": ["id", "actor_id", "actor_role", "room_id", "created_at", "expires_at", "signed_off_by",
                 "signed_off_at"],
    "properties": {
        "id": _ID, "actor_id": _ID, "actor_role": _ID, "room_id": _ID, "created_at": _TIME,
        "expires_at": _TIME, "signed_off_by": _MAYBE, "signed_off_at": _MAYBE_TIME, "reason": _ID,
    },
}  # fmt: skip
CONSENT_SCHEMA: Final = {
    "type": "object",
    "required": ["id", "client_id", "recipient", "purpose", "data", "created_by", "created_at", "expires_at",
                 "revoked_at", "revoked_by"],
    "properties": {
        "id": _ID, "client_id": _ID, "recipient": _ID, "purpose": _ID,
        "data": {"type": "array", "items": {"type": "string", "enum": [c.value for c in DataCategory]}},
        "created_by": _MAYBE, "created_at": _TIME, "expires_at": _TIME, "revoked_at": _MAYBE_TIME,
        "revoked_by": _MAYBE,
    },
}  # fmt: skip
_OPEN_BODY: Final = {
    "type": "object",
    "additionalProperties": False,
    "required": ["room_id", "reason"],
    "properties": {
        "room_id": _ID,
        "reason": {"type": "string", "minLength": MIN_REASON_CHARS, "maxLength": MAX_REASON_CHARS},
    },
}
_TEXT: Final = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}
_CONSENT_BODY: Final = {
    "type": "object",
    "additionalProperties": False,
    "required": ["recipient", "purpose", "data", "expires_at"],
    "properties": {
        "recipient": _TEXT,
        "purpose": _TEXT,
        "data": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "enum": [c.value for c in DataCategory]},
        },
        "expires_at": _TIME,
    },
}
BREAK_GLASS_HEADER: Final = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": _GRANT_ID.pattern},
    "description": "a break-glass grant id (bg_...) of the caller, for the room named by room_id",
}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _ID}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def routes() -> list[BaseRoute]:
    grants = {
        "type": "object",
        "required": ["grants"],
        "properties": {"grants": {"type": "array", "items": GRANT_SCHEMA}},
    }
    consents = {"type": "object", "required": ["consents"],
                "properties": {"consents": {"type": "array", "items": CONSENT_SCHEMA}}}  # fmt: skip
    return [
        documented_route(
            "/api/v1/break-glass",
            _break_glass_collection,
            ["GET", "POST"],
            {
                "post": {
                    "summary": "Open break-glass access to one room's records, stating a reason (time-boxed, audited)",
                    "operationId": "openBreakGlass",
                    "security": BEARER_SECURITY,
                    "requestBody": _body(_OPEN_BODY),
                    "responses": {
                        "201": json_body(GRANT_SCHEMA, "Opened"),
                        **refusals(400, 401, 403, 404, 413, 415),
                    },
                },
                "get": {
                    "summary": "Break-glass accesses not yet signed off by a second admin, with their reasons",
                    "operationId": "listBreakGlass",
                    "security": BEARER_SECURITY,
                    "responses": {"200": json_body(grants), **refusals(401, 403)},
                },
            },
        ),
        documented_route(
            "/api/v1/break-glass/{grant_id}/sign-off",
            sign_off_break_glass,
            ["POST"],
            {
                "post": {
                    "summary": "Sign off a break-glass access (a second admin, not the one who opened it)",
                    "operationId": "signOffBreakGlass",
                    "security": BEARER_SECURITY,
                    "parameters": [_path("grant_id")],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {"schema": {"type": "object", "additionalProperties": False}}
                        },
                    },
                    "responses": {
                        "200": json_body(GRANT_SCHEMA),
                        **refusals(400, 401, 403, 404, 409, 413, 415),
                    },
                }
            },
        ),
        documented_route(
            "/api/v1/clients/{client_id}/consents",
            client_consents,
            ["GET", "POST"],
            {
                "post": {
                    "summary": "Record a client's 42 CFR part 2 consent to a disclosure",
                    "operationId": "addConsent",
                    "security": BEARER_SECURITY,
                    "parameters": [_path("client_id")],
                    "requestBody": _body(_CONSENT_BODY),
                    "responses": {
                        "201": json_body(CONSENT_SCHEMA, "Recorded"),
                        **refusals(400, 401, 403, 404, 409, 413, 415),
                    },
                },
                "get": {
                    "summary": "A client's consents (active, expired and revoked)",
                    "operationId": "listConsents",
                    "security": BEARER_SECURITY,
                    "parameters": [_path("client_id")],
                    "responses": {"200": json_body(consents), **refusals(401, 403, 404)},
                },
            },
        ),
        documented_route(
            "/api/v1/consents/{consent_id}",
            revoke_consent,
            ["DELETE"],
            {
                "delete": {
                    "summary": "Revoke a consent: it stops permitting disclosures at once (idempotent)",
                    "operationId": "revokeConsent",
                    "security": BEARER_SECURITY,
                    "parameters": [_path("consent_id")],
                    "responses": {"200": json_body(CONSENT_SCHEMA, "Revoked"), **refusals(401, 403, 404)},
                }
            },
        ),
    ]


async def _break_glass_collection(request: Request) -> Response:
    if request.method == "POST":
        return await open_break_glass(request)
    return await list_break_glass(request)
