"""Sign-in and sign-out (docs/API.md ``POST /api/v1/auth/login`` and ``/logout``).

Sign-in is :class:`vIOP.auth.accounts.Authenticator` (throttling, lockout, TOTP, the audit events) plus an
access token. Sign-out revokes the token and closes the user's WebSockets through the integrator's hook.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Final, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from vIOP.api.audit_trail import login_user_agent
from vIOP.api.auth_context import (
    BEARER_SECURITY,
    authenticate,
    client_address,
    read_json,
    refusals,
    require_account,
)
from vIOP.api.context import services_of
from vIOP.api.openapi import Operation, Reply, documented_route, struct_response
from vIOP.auth.accounts import MAX_TOTP_CHARS
from vIOP.auth.passwords import MAX_PASSWORD_CHARS
from vIOP.auth.permissions import ACCOUNT_ROLES, Action, Role, authorize
from vIOP.auth.revocation import RevocationKind
from vIOP.storage.audit import AuditEvent

log = logging.getLogger("vIOP.api")

# The hook ``services.live.close_user_sockets`` (set by vIOP/app.py): an async callable taking the
# user id that closes every signaling and presence socket of that user with 1000 "signed out". Logout
# must not hang on it: it gets this long, and a failure is logged, never turned into a failed logout
# (the token is already revoked by then, which is what protects the account).
CLOSE_SOCKETS_TIMEOUT: Final = 5.0
UNKNOWN_ADDRESS: Final = "unknown"


# The lengths are checked by the authenticator (vIOP/auth/accounts.py), after decoding: documented here.
class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(extra_json_schema={"maxLength": 256})]
    password: Annotated[str, msgspec.Meta(extra_json_schema={"maxLength": MAX_PASSWORD_CHARS})]
    totp: Annotated[str, msgspec.Meta(extra_json_schema={"maxLength": MAX_TOTP_CHARS})] | None = None


class EmptyBody(msgspec.Struct, forbid_unknown_fields=True):
    pass


class SignedInUser(msgspec.Struct):
    id: str
    role: Annotated[Role, msgspec.Meta(extra_json_schema={"enum": sorted(r.value for r in ACCOUNT_ROLES)})]


class SignedIn(msgspec.Struct):
    access_token: str
    token_type: Literal["bearer"]
    expires_in: int
    idle_timeout: int
    user: SignedInUser


async def login(request: Request) -> Response:
    services = services_of(request)
    body = await read_json(request, LoginBody)
    address = client_address(request) or UNKNOWN_ADDRESS
    login_user_agent.set(request.headers.get("user-agent"))  # for the audit rows of this attempt
    # LoginFailed (401), LoginThrottled (429 + Retry-After) and BadRequest propagate as they are.
    account = await services.authenticator.login(body.username, body.password, body.totp, address)
    issued = await services.tokens.issue(account.id, account.role)
    return struct_response(
        SignedIn(
            access_token=issued.token,
            token_type="bearer",  # noqa: S106  # the OAuth token type, not a secret
            expires_in=issued.expires_in,
            idle_timeout=services.tokens.policy.idle_seconds,
            user=SignedInUser(id=account.id, role=account.role),
        )
    )


async def logout(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    authorize(caller.principal, Action.LOGOUT)
    claims = require_account(caller)
    await read_json(request, EmptyBody, empty=EmptyBody())
    services = caller.services
    await services.tokens.revoke(claims)
    await caller.audit(AuditEvent.LOGOUT, "user", claims.subject)
    try:  # the user's sockets in the other processes (this process closes its own just below)
        await services.revocations.publish(RevocationKind.SIGNED_OUT, claims.subject)
    except Exception:
        log.exception("publishing the sign-out to other processes failed")
    closer = services.live.close_user_sockets
    if closer is not None:
        try:
            await asyncio.wait_for(closer(claims.subject), CLOSE_SOCKETS_TIMEOUT)
        except Exception:
            log.exception("closing the signed-out user's sockets failed")
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/auth/login",
            login,
            ["POST"],
            Operation(
                summary="Sign in with username, password and (when enrolled) a TOTP code",
                operation_id="login",
                security=[],
                request=LoginBody,
                responses={200: Reply("Signed in", SignedIn), **refusals(400, 401, 413, 415, 429)},
            ),
        ),
        documented_route(
            "/api/v1/auth/logout",
            logout,
            ["POST"],
            Operation(
                summary="End the session of the presented access token and close its sockets",
                operation_id="logout",
                security=BEARER_SECURITY,
                request=EmptyBody,
                request_required=False,
                responses={204: Reply("Signed out"), **refusals(400, 401, 403, 413, 415)},
            ),
        ),
    ]
