"""How an edge finds the process's :class:`~vIOP.session.services.Services`: from the Starlette app."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from vIOP.errors import Unavailable
from vIOP.session.services import Services


def services_of(conn: HTTPConnection) -> Services:
    services = getattr(conn.app.state, "services", None)
    if not isinstance(services, Services):
        raise Unavailable("the server is starting or stopping: retry shortly")
    if services.draining:
        raise Unavailable("the server is shutting down: retry shortly")
    return services
