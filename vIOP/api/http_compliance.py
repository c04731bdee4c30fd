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
from typing import Annotated, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
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
from vIOP.api.openapi import IsoTime, Operation, Param, Reply, documented_route, path_param, struct_response
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
from vIOP.storage.audit import AuditEvent, Outcome
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


# Text fields are checked after trimming (check_reason, check_text): their bounds are documented here.
class OpenBreakGlassBody(msgspec.Struct, forbid_unknown_fields=True):
    room_id: str
    reason: Annotated[
        str, msgspec.Meta(extra_json_schema={"minLength": MIN_REASON_CHARS, "maxLength": MAX_REASON_CHARS})
    ]


class GrantView(msgspec.Struct):
    """A break-glass grant; its ``reason`` only for the reviewers' list."""

    id: str
    actor_id: str
    actor_role: str
    room_id: str
    created_at: IsoTime
    expires_at: IsoTime
    signed_off_by: str | None
    signed_off_at: IsoTime | None
    reason: str | msgspec.UnsetType = msgspec.UNSET


class GrantList(msgspec.Struct):
    grants: list[GrantView]


def grant_object(grant: BreakGlassGrant, *, with_reason: bool) -> GrantView:
    return GrantView(
        id=grant.id,
        actor_id=grant.actor_id,
        actor_role=grant.actor_role,
        room_id=grant.room_id,
        created_at=iso(grant.created_at),
        expires_at=iso(grant.expires_at),
        signed_off_by=grant.signed_off_by,
        signed_off_at=iso(grant.signed_off_at),
        reason=grant.reason if with_reason else msgspec.UNSET,
    )


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
    await caller.audit(AuditEvent.BREAK_GLASS, "break_glass", grant.id)
    return struct_response(grant_object(grant, with_reason=False), status_code=201)


async def list_break_glass(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    authorize(caller.principal, Action.REVIEW_BREAK_GLASS)
    pending = await break_glass_store(caller.services).pending_review()
    await caller.audit(BREAK_GLASS_REVIEWED, "break_glass")
    return struct_response(GrantList(grants=[grant_object(g, with_reason=True) for g in pending]))


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
    return struct_response(grant_object(grant, with_reason=False))


# --- consent endpoints ------------------------------------------------------------------------------------


class SignOffBody(msgspec.Struct, forbid_unknown_fields=True):
    """No fields: the sign-off is the reviewer's identity and the time."""


_CONSENT_TEXT: Final = msgspec.Meta(extra_json_schema={"minLength": 1, "maxLength": MAX_TEXT_CHARS})
_CATEGORIES: Final = [c.value for c in DataCategory]


class AddConsentBody(msgspec.Struct, forbid_unknown_fields=True):
    recipient: Annotated[str, _CONSENT_TEXT]
    purpose: Annotated[str, _CONSENT_TEXT]
    # parse_categories names an unknown category in its 400; the schema lists the known ones.
    data: Annotated[
        list[Annotated[str, msgspec.Meta(extra_json_schema={"enum": _CATEGORIES})]],
        msgspec.Meta(extra_json_schema={"minItems": 1}),
    ]
    expires_at: Annotated[datetime, msgspec.Meta(extra_json_schema={"format": "date-time"})]


class ConsentView(msgspec.Struct):
    id: str
    client_id: str
    recipient: str
    purpose: str
    data: list[DataCategory]
    created_by: str | None
    created_at: IsoTime
    expires_at: IsoTime
    revoked_at: IsoTime | None
    revoked_by: str | None


class ConsentList(msgspec.Struct):
    consents: list[ConsentView]


def consent_object(consent: Consent) -> ConsentView:
    return ConsentView(
        id=consent.id,
        client_id=consent.client_id,
        recipient=consent.recipient,
        purpose=consent.purpose,
        data=sorted(consent.data),
        created_by=consent.created_by,
        created_at=iso(consent.created_at),
        expires_at=iso(consent.expires_at),
        revoked_at=iso(consent.revoked_at),
        revoked_by=consent.revoked_by,
    )


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
        return struct_response(ConsentList(consents=[consent_object(c) for c in consents]))
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
    return struct_response(consent_object(consent), status_code=201)


async def revoke_consent(request: Request) -> Response:
    caller = await _consent_admin(request)
    consent_id = request.path_params["consent_id"]
    if not _CONSENT_ID.match(consent_id):
        raise NotFound("no such consent")
    consent = await consent_store(caller.services).revoke(
        consent_id, caller.principal.subject, caller.services.rooms.clock()
    )
    await caller.audit(CONSENT_REVOKED, "consent", consent.id)
    return struct_response(consent_object(consent))


# --- OpenAPI ----------------------------------------------------------------------------------------------

BREAK_GLASS_HEADER: Final = Param(
    HEADER,
    "header",
    Annotated[str, msgspec.Meta(pattern=_GRANT_ID.pattern)],
    "a break-glass grant id (bg_...) of the caller, for the room named by room_id",
)


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/break-glass",
            _break_glass_collection,
            ["GET", "POST"],
            {
                "post": Operation(
                    summary="Open break-glass access to one room's records, stating a reason (time-boxed, audited)",
                    operation_id="openBreakGlass",
                    security=BEARER_SECURITY,
                    request=OpenBreakGlassBody,
                    responses={201: Reply("Opened", GrantView), **refusals(400, 401, 403, 404, 413, 415)},
                ),
                "get": Operation(
                    summary="Break-glass accesses not yet signed off by a second admin, with their reasons",
                    operation_id="listBreakGlass",
                    security=BEARER_SECURITY,
                    responses={200: Reply(body=GrantList), **refusals(401, 403)},
                ),
            },
        ),
        documented_route(
            "/api/v1/break-glass/{grant_id}/sign-off",
            sign_off_break_glass,
            ["POST"],
            Operation(
                summary="Sign off a break-glass access (a second admin, not the one who opened it)",
                operation_id="signOffBreakGlass",
                security=BEARER_SECURITY,
                parameters=[path_param("grant_id")],
                request=SignOffBody,
                request_required=False,
                responses={200: Reply(body=GrantView), **refusals(400, 401, 403, 404, 409, 413, 415)},
            ),
        ),
        documented_route(
            "/api/v1/clients/{client_id}/consents",
            client_consents,
            ["GET", "POST"],
            {
                "post": Operation(
                    summary="Record a client's 42 CFR part 2 consent to a disclosure",
                    operation_id="addConsent",
                    security=BEARER_SECURITY,
                    parameters=[path_param("client_id")],
                    request=AddConsentBody,
                    responses={
                        201: Reply("Recorded", ConsentView),
                        **refusals(400, 401, 403, 404, 409, 413, 415),
                    },
                ),
                "get": Operation(
                    summary="A client's consents (active, expired and revoked)",
                    operation_id="listConsents",
                    security=BEARER_SECURITY,
                    parameters=[path_param("client_id")],
                    responses={200: Reply(body=ConsentList), **refusals(401, 403, 404)},
                ),
            },
        ),
        documented_route(
            "/api/v1/consents/{consent_id}",
            revoke_consent,
            ["DELETE"],
            Operation(
                summary="Revoke a consent: it stops permitting disclosures at once (idempotent)",
                operation_id="revokeConsent",
                security=BEARER_SECURITY,
                parameters=[path_param("consent_id")],
                responses={200: Reply("Revoked", ConsentView), **refusals(401, 403, 404)},
            ),
        ),
    ]


async def _break_glass_collection(request: Request) -> Response:
    if request.method == "POST":
        return await open_break_glass(request)
    return await list_break_glass(request)
