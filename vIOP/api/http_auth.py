"""Sign-in and sign-out (docs/API.md ``POST /api/v1/auth/login`` and ``/logout``).

Sign-in is :class:`vIOP.auth.accounts.Authenticator` (throttling, lockout, TOTP, the audit events) plus an
access token. Sign-out revokes the token and closes the user's WebSockets through the integrator's hook.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
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
from vIOP.api.openapi import documented_route, json_body
from vIOP.auth.permissions import Action, authorize
from vIOP.auth.revocation import RevocationKind
from vIOP.storage.audit import Action as AuditAction

log = logging.getLogger("vIOP.api")

# The hook ``services.live.close_user_sockets`` (set by vIOP/app.py): an async callable taking the
# user id that closes every signaling and presence socket of that user with 1000 "signed out". Logout
# must not hang on it: it gets this long, and a failure is logged, never turned into a failed logout
# (the token is already revoked by then, which is what protects the account).
CLOSE_SOCKETS_TIMEOUT: Final = 5.0
UNKNOWN_ADDRESS: Final = "unknown"


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str
    totp: str | None = None


class EmptyBody(msgspec.Struct, forbid_unknown_fields=True):
    pass


async def login(request: Request) -> Response:
    services = services_of(request)
    body = await read_json(request, LoginBody)
    address = client_address(request) or UNKNOWN_ADDRESS
    login_user_agent.set(request.headers.get("user-agent"))  # for the audit rows of this attempt
    # LoginFailed (401), LoginThrottled (429 + Retry-After) and BadRequest propagate as they are.
    account = await services.authenticator.login(body.username, body.password, body.totp, address)
    issued = await services.tokens.issue(account.id, account.role)
    return JSONResponse(
        {
            "access_token": issued.token,
            "token_type": "bearer",
            "expires_in": issued.expires_in,
            "idle_timeout": services.tokens.policy.idle_seconds,
            "user": {"id": account.id, "role": account.role.value},
        }
    )


async def logout(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    authorize(caller.principal, Action.LOGOUT)
    claims = require_account(caller)
    await read_json(request, EmptyBody, empty=EmptyBody())
    services = caller.services
    await services.tokens.revoke(claims)
    await caller.audit(AuditAction.LOGOUT, "user", claims.subject)
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


_LOGIN_BODY: Final = {
    "type": "object",
    "additionalProperties": False,
    "required": ["username", "password"],
    "properties": {
        "username": {"type": "string", "maxLength": 256},
        "password": {"type": "string", "maxLength": 1024},
        "totp": {"type": ["string", "null"], "maxLength": 16},
    },
}
_SESSION: Final = {
    "type": "object",
    "required": ["access_token", "token_type", "expires_in", "idle_timeout", "user"],
    "properties": {
        "access_token": {"type": "string"},
        "token_type": {"type": "string", "enum": ["bearer"]},
        "expires_in": {"type": "integer"},
        "idle_timeout": {"type": "integer"},
        "user": {
            "type": "object",
            "required": ["id", "role"],
            "properties": {
                "id": {"type": "string"},
                "role": {"type": "string", "enum": ["admin", "clinician", "staff"]},
            },
        },
    },
}


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/auth/login",
            login,
            ["POST"],
            {
                "post": {
                    "summary": "Sign in with username, password and (when enrolled) a TOTP code",
                    "operationId": "login",
                    "security": [],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _LOGIN_BODY}},
                    },
                    "responses": {
                        "200": json_body(_SESSION, "Signed in"),
                        **refusals(400, 401, 413, 415, 429),
                    },
                }
            },
        ),
        documented_route(
            "/api/v1/auth/logout",
            logout,
            ["POST"],
            {
                "post": {
                    "summary": "End the session of the presented access token and close its sockets",
                    "operationId": "logout",
                    "security": BEARER_SECURITY,
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {"schema": {"type": "object", "additionalProperties": False}}
                        },
                    },
                    "responses": {
                        "204": {"description": "Signed out"},
                        **refusals(400, 401, 403, 413, 415),
                    },
                }
            },
        ),
    ]
