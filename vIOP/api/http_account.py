"""The signed-in account's own settings over HTTP (issue 15, docs/API.md "PUT /api/v1/account/display-name").

A clinician appears to clients by a display name, never by the login username: ``users create
--display-name`` sets it, ``users set-display-name`` (an administrator) and this route (the account itself)
change it. It is stored sealed like every name (``vIOP/storage/accounts_sql.py``) and shown from the next
room entry.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from vIOP.api.auth_context import BEARER_SECURITY, authenticate, read_json, refusals
from vIOP.api.openapi import Operation, Reply, documented_route, struct_response
from vIOP.auth.permissions import Action, authorize
from vIOP.ids import UserId
from vIOP.rooms.limits import MAX_DISPLAY_NAME_CHARS
from vIOP.storage.audit import AuditEvent


class DisplayNameBody(msgspec.Struct, forbid_unknown_fields=True):
    # Checked after trimming (1 to MAX_DISPLAY_NAME_CHARS printable characters, not the username).
    display_name: Annotated[
        str, msgspec.Meta(extra_json_schema={"minLength": 1, "maxLength": MAX_DISPLAY_NAME_CHARS})
    ]


class AccountName(msgspec.Struct):
    id: str
    display_name: str


async def set_display_name(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    authorize(caller.principal, Action.SET_DISPLAY_NAME)
    body = await read_json(request, DisplayNameBody)
    account = await caller.services.authenticator.set_own_display_name(
        UserId(caller.principal.subject), body.display_name
    )
    await caller.audit(AuditEvent.DISPLAY_NAME_CHANGED, "user", account.id)
    return struct_response(AccountName(id=account.id, display_name=account.display_name))


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/account/display-name",
            set_display_name,
            ["PUT"],
            Operation(
                summary="Change the name this account is shown under in rooms (never the username)",
                operation_id="setDisplayName",
                security=BEARER_SECURITY,
                request=DisplayNameBody,
                responses={200: Reply(body=AccountName), **refusals(400, 401, 403, 413, 415)},
            ),
        )
    ]
