"""What every HTTP route does first: who is calling (bearer credential -> :class:`Caller`) and what they sent
(a JSON body decoded into a msgspec Struct).

Bearer credentials (docs/API.md, "Authentication"):

- an access token: signature and claims, the logout denylist and the idle timeout (``tokens.verify``, which
  also counts this use as activity), then the account must still be enabled;
- an invite token (``vinv_...``), only where the route allows it: read with ``Invites.authenticate``
  (nothing counted); routes that spend a use call :meth:`Caller.consume_invite` once every other check
  passed, so a refused request never burns one.

A refused credential is audited as ``auth.token_rejected`` (no token, ids only) and answered 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeVar

import msgspec
from starlette.requests import Request

from vIOP.api.context import services_of
from vIOP.api.openapi import Reply
from vIOP.auth.invites import Invite, looks_like_invite
from vIOP.auth.permissions import Action, Grant, PermissionDenied, Principal, Role, grant_for
from vIOP.auth.tokens import AccessClaims
from vIOP.errors import BadRequest, Error, Forbidden, PayloadTooLarge, Unauthenticated, UnsupportedMediaType
from vIOP.session.services import Services
from vIOP.session.wire_time import iso as iso  # re-exported: the edge's routes import it from here
from vIOP.storage.audit import AuditEvent, Outcome

MAX_JSON_BODY: Final = 16 * 1024
_BEARER: Final = "bearer"
_ANONYMOUS: Final = "anonymous"

S = TypeVar("S", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: an account (``claims``) or a client (``invite``), never both."""

    services: Services
    principal: Principal
    claims: AccessClaims | None = None
    invite: Invite | None = None
    address: str | None = None
    user_agent: str | None = None  # audited as a keyed hash only

    @property
    def is_client(self) -> bool:
        return self.invite is not None

    @property
    def session(self) -> str:
        """What binds a ticket to this sign-in: the token's ``jti``, or the invite id for a client."""
        if self.claims is not None:
            return self.claims.jti
        assert self.invite is not None
        return self.invite.id

    @property
    def session_ends_at(self) -> float:
        """The absolute end of this sign-in (token ``exp``), or of the invite."""
        if self.claims is not None:
            return float(self.claims.expires_at)
        assert self.invite is not None
        return self.invite.expires_at

    async def consume_invite(self, token: str) -> Invite:
        """Count one use of the caller's invite (ticket issuance); 401 if it was used up meanwhile."""
        return await self.services.invites.consume(token)

    def refused(self, message: str, action: Action, room_id: str | None = None) -> PermissionDenied:
        """A 403 for ``action`` (in ``room_id``) that the permission table does not decide by itself (e.g. a
        client naming another room); raise it: the 403 handler audits it like a table refusal."""
        return PermissionDenied(message, action, room_id)

    async def audit(
        self,
        action: AuditEvent | str,
        object_type: str | None = None,
        object_id: str | None = None,
        outcome: Outcome = Outcome.SUCCESS,
    ) -> None:
        """One audit row by this caller, in the database before the answer unless the database is away
        (then it is queued: ``vIOP.storage.audit_outbox``)."""
        await self.services.audit_outbox.write(
            self.principal.subject,
            self.principal.role.value,
            action,
            object_type,
            object_id,
            outcome,
            self.address,
            self.user_agent,
        )


def client_address(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


def bearer_credential(request: Request) -> str:
    """The credential of ``Authorization: Bearer <credential>``; 401 when absent or not a bearer."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("sign in first: this request needs an Authorization: Bearer credential")
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != _BEARER or not credential or " " in credential:
        raise Unauthenticated("the Authorization header must be: Bearer <credential>")
    return credential


async def authenticate(request: Request, *, allow_invite: bool = False) -> Caller:
    """The caller behind the bearer credential. Invite tokens only when ``allow_invite``; an invite token
    where only accounts may call is refused 403 (a client is authenticated, the role is not allowed)."""
    services = services_of(request)
    address = client_address(request)
    user_agent = request.headers.get("user-agent")
    try:
        credential = bearer_credential(request)
        if looks_like_invite(credential):
            invite = await services.invites.authenticate(credential)
            caller = Caller(services, invite.principal, invite=invite, address=address, user_agent=user_agent)
            request.state.caller = caller  # the actor of a 403's audit row (vIOP.api.audit_trail)
            if not allow_invite:
                raise Forbidden("the client role does not allow this request")
            return caller
        claims = await services.tokens.verify(credential)
        await services.authenticator.active_account(claims.subject)
    except Unauthenticated:
        await services.audit_outbox.write(
            None, _ANONYMOUS, AuditEvent.TOKEN_REJECTED, None, None, Outcome.DENIED, address, user_agent
        )
        raise
    caller = Caller(services, claims.principal, claims=claims, address=address, user_agent=user_agent)
    request.state.caller = caller
    return caller


def require_account(caller: Caller) -> AccessClaims:
    """Routes only accounts may use (clients have no access token)."""
    if caller.claims is None:
        raise Forbidden(f"the {Role.CLIENT.value} role does not allow this request")
    return caller.claims


def require_role(principal: Principal, action: Action) -> None:
    """403 when the role may never do ``action`` (before any room is looked up)."""
    if grant_for(principal.role, action) is Grant.NONE:
        what = action.value.replace("_", " ")
        raise PermissionDenied(f"the {principal.role.value} role does not allow: {what}", action)


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "application/json":
        return False
    charset = [p.strip().lower() for p in params.split(";") if p.strip().lower().startswith("charset=")]
    return all(c.removeprefix("charset=").strip('"') in ("utf-8", "utf8") for c in charset)


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
    return bytes(body)


def _schema_message(error: msgspec.ValidationError) -> str:
    text = str(error)
    # msgspec quotes an unknown field or a bad enum value as the caller wrote it: never echo caller text.
    if text.startswith("Object contains unknown field"):
        return "the request body has a field this endpoint does not take"
    if text.startswith("Invalid enum value"):
        _, at, path = text.rpartition(" - at `")
        return f"invalid request body: not an allowed value - at `{path}" if at else "invalid request body"
    return f"invalid request body: {text}"


async def read_json(request: Request, schema: type[S], *, empty: S | None = None) -> S:
    """Decode the JSON body into ``schema`` (a Struct with ``forbid_unknown_fields``).

    415 without ``Content-Type: application/json``; 413 over 16 KiB; 400 for malformed JSON, a non-object
    or a schema violation. With ``empty`` given, a request without a body stands for that value.
    """
    body = await _read_capped(request, MAX_JSON_BODY)
    if not body and empty is not None:
        return empty
    if not _is_json(request.headers.get("content-type")):
        raise UnsupportedMediaType("send the body as Content-Type: application/json")
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as error:
        raise BadRequest(_schema_message(error)) from None
    except msgspec.DecodeError:
        raise BadRequest("the request body is not valid JSON") from None


_REFUSALS: Final = {
    400: "Malformed JSON, schema violation or a value out of range",
    401: "Missing, malformed, expired, revoked or idle credential",
    403: "The role or room scope does not allow this",
    404: "Unknown id",
    409: "Conflicts with the current state",
    413: "Body over 16 KiB",
    415: "Body without Content-Type: application/json",
    429: "Too many attempts; Retry-After says when to try again",
    503: "Redis or the database is unreachable",
}

BEARER_SECURITY: Final[list[dict[str, list[str]]]] = [{"bearer": []}]


def refusals(*statuses: int) -> dict[int, Reply]:
    """OpenAPI responses for the listed error statuses (503 is always possible), each the Error schema."""
    return {status: Reply(_REFUSALS[status], Error) for status in sorted({*statuses, 503})}
