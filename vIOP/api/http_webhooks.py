"""Webhook subscriptions over HTTP (issue 16, docs/API.md "Webhooks", docs/PROGRAM.md): admins add, list
and remove the receivers of signed events. The secret is in the answer to the add, once; it is stored
sealed and never shown again. Every change and every listing is audited (ids only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from vIOP.api.auth_context import (
    BEARER_SECURITY,
    authenticate,
    read_json,
    refusals,
    require_account,
    require_role,
)
from vIOP.api.openapi import Operation, Reply, documented_route, path_param, struct_response
from vIOP.auth.permissions import Action
from vIOP.errors import Unavailable
from vIOP.session.services import Services
from vIOP.session.webhooks import subscribe
from vIOP.storage.audit import AuditEvent
from vIOP.storage.webhooks_sql import SqlWebhookStore, Subscription
from vIOP.webhooks.events import WebhookEventType
from vIOP.webhooks.policy import MAX_URL_LENGTH


class AddWebhookBody(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL_LENGTH)]
    events: Annotated[list[WebhookEventType], msgspec.Meta(min_length=1, max_length=len(WebhookEventType))]
    # Names (client, room title) in payloads: only if true AND the URL is https.
    allow_phi: bool = False


class WebhookView(msgspec.Struct):
    id: str
    url: str
    events: list[WebhookEventType]
    allow_phi: bool
    created_at: datetime


class NewWebhook(WebhookView):
    """The subscription and its signing secret (Standard Webhooks ``whsec_...``): shown this once."""

    secret: str


class WebhookList(msgspec.Struct):
    webhooks: list[WebhookView]


def _view(sub: Subscription) -> WebhookView:
    return WebhookView(sub.id, sub.url, list(sub.events), sub.allow_phi, sub.created_at)


def _store(services: Services) -> SqlWebhookStore:
    if services.webhooks is None:
        raise Unavailable("webhooks are not configured on this server")
    return services.webhooks


async def add_webhook(request: Request) -> Response:
    caller = await authenticate(request)
    require_account(caller)
    require_role(caller.principal, Action.MANAGE_WEBHOOKS)
    body = await read_json(request, AddWebhookBody)
    settings = caller.services.settings
    sub, secret = await subscribe(
        _store(caller.services),
        body.url,
        [e.value for e in body.events],
        allow_phi=body.allow_phi,
        allow_private=settings.effective_webhook_allow_private,
        created_by=caller.principal.subject,
    )
    await caller.audit(AuditEvent.WEBHOOK_ADDED, "webhook", sub.id)
    view = _view(sub)
    return struct_response(
        NewWebhook(view.id, view.url, view.events, view.allow_phi, view.created_at, secret),
        status_code=201,
        headers={"Location": f"/api/v1/webhooks/{sub.id}", "Cache-Control": "no-store"},
    )


async def list_webhooks(request: Request) -> Response:
    caller = await authenticate(request)
    require_account(caller)
    require_role(caller.principal, Action.MANAGE_WEBHOOKS)
    subs = await _store(caller.services).subscriptions()
    await caller.audit(AuditEvent.WEBHOOKS_VIEWED, "webhook", None)
    return struct_response(WebhookList([_view(s) for s in subs]))


async def remove_webhook(request: Request) -> Response:
    caller = await authenticate(request)
    require_account(caller)
    require_role(caller.principal, Action.MANAGE_WEBHOOKS)
    sub_id = request.path_params["webhook_id"]
    await _store(caller.services).remove(sub_id, datetime.now(UTC))
    await caller.audit(AuditEvent.WEBHOOK_REMOVED, "webhook", sub_id)
    return Response(status_code=204)


async def _webhooks_collection(request: Request) -> Response:
    return await (add_webhook(request) if request.method == "POST" else list_webhooks(request))


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/webhooks",
            _webhooks_collection,
            ["GET", "POST"],
            {
                "post": Operation(
                    summary="Subscribe a receiver to signed events (admins); the secret is shown once",
                    operation_id="addWebhook",
                    security=BEARER_SECURITY,
                    request=AddWebhookBody,
                    responses={201: Reply("Subscribed", NewWebhook), **refusals(400, 401, 403, 413, 415)},
                ),
                "get": Operation(
                    summary="The webhook subscriptions (admins; never their secrets)",
                    operation_id="listWebhooks",
                    security=BEARER_SECURITY,
                    responses={200: Reply("The subscriptions", WebhookList), **refusals(401, 403)},
                ),
            },
        ),
        documented_route(
            "/api/v1/webhooks/{webhook_id}",
            remove_webhook,
            ["DELETE"],
            Operation(
                summary="Remove a subscription: nothing more is sent to it",
                operation_id="removeWebhook",
                security=BEARER_SECURITY,
                parameters=[path_param("webhook_id")],
                responses={204: Reply("Removed"), **refusals(401, 403, 404)},
            ),
        ),
    ]
