"""What the edges audit: the audit name of every permission-table action, and the row for an HTTP 403.

Every refusal by the permission table is one ``denied`` row named like the action it refused (a refused
``admit`` is ``room.admit``/``denied``), with the caller as actor and the room (or invite) as object. HTTP
refusals are written by the 403 handler (``vIOP.api.responses``), signaling refusals by the socket
(``vIOP.session.signal``); both go through the one recorder, ``Services.audit_outbox``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Final

from starlette.requests import Request

from vIOP.auth.permissions import Action, PermissionDenied
from vIOP.errors import Forbidden
from vIOP.session.audit_names import AUDIT_NAMES, audit_name
from vIOP.session.services import Services
from vIOP.storage.audit import AuditEvent, Outcome

__all__ = ["AUDIT_NAMES", "audit_http_refusal", "audit_name", "login_user_agent"]

log = logging.getLogger("vIOP.audit")

# The sign-in route's user agent, for the login audit rows the Authenticator reports as events (which
# carry only ids and the address): set by ``POST /api/v1/auth/login``, read by ``vIOP.app.audit_login``.
login_user_agent: ContextVar[str | None] = ContextVar("login_user_agent", default=None)

# A 403 raised without naming its action (e.g. "accounts only"): the route tells which action it was.
ROUTE_ACTIONS: Final[Mapping[str, Action]] = MappingProxyType(
    {
        "POST /api/v1/auth/logout": Action.LOGOUT,
        "GET /api/v1/rooms": Action.VIEW_ROOM,
        "POST /api/v1/rooms": Action.CREATE_ROOM,
        "GET /api/v1/rooms/{room_id}": Action.VIEW_ROOM,
        "POST /api/v1/rooms/{room_id}/invites": Action.CREATE_INVITE,
        "DELETE /api/v1/invites/{invite_id}": Action.REVOKE_INVITE,
        "POST /api/v1/signal-tickets": Action.ISSUE_SIGNAL_TICKET,
        "GET /api/v1/presence": Action.VIEW_PRESENCE,
        "GET /api/v1/attendance": Action.VIEW_ATTENDANCE,
        "GET /api/v1/turn-credentials": Action.GET_TURN_CREDENTIALS,
    }
)
_OPAQUE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# Path parameters that name the object of a request, most specific first (``{name}`` -> object type).
_PATH_OBJECTS: Final = {
    "enrollment_id": "enrollment",
    "feed_id": "calendar_feed",
    "track_id": "track",
    "invite_id": "invite",
    "consent_id": "consent",
    "grant_id": "break_glass",
    "client_id": "client",
    "room_id": "room",
}


def _refused_action(request: Request, exc: Forbidden) -> AuditEvent | str:
    if isinstance(exc, PermissionDenied):
        return audit_name(exc.action)
    route = request.scope.get("route")
    key = f"{request.method} {getattr(route, 'path', request.url.path)}"
    action = ROUTE_ACTIONS.get(key)
    return audit_name(action) if action is not None else "access.denied"


def _refused_object(request: Request, exc: Forbidden) -> tuple[str | None, str | None]:
    """The invite or room the request was about; caller-supplied ids only when they look like ids."""
    params = request.path_params
    candidates = [(kind, params.get(name)) for name, kind in _PATH_OBJECTS.items()] + [
        ("room", exc.room_id if isinstance(exc, PermissionDenied) else None),
        ("room", request.query_params.get("room_id")),
    ]
    for object_type, object_id in candidates:
        if isinstance(object_id, str) and _OPAQUE.match(object_id):
            return object_type, object_id
    return None, None


async def audit_http_refusal(request: Request, exc: Forbidden) -> None:
    """The ``denied`` row of an HTTP 403: who (the authenticated caller, if any), what, which object."""
    services = getattr(request.app.state, "services", None)
    if not isinstance(services, Services):
        return
    caller = getattr(request.state, "caller", None)
    principal = getattr(caller, "principal", None)
    try:
        await services.audit_outbox.write(
            principal.subject if principal is not None else None,
            principal.role.value if principal is not None else "anonymous",
            _refused_action(request, exc),
            *_refused_object(request, exc),
            Outcome.DENIED,
            request.client.host if request.client is not None else None,
            request.headers.get("user-agent"),
        )
    except Exception:  # the refusal stands; a broken audit entry must not turn it into a 500
        log.exception("audit of a refusal failed")
