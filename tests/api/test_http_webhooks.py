"""Webhook subscriptions over the HTTP API (issue 16) on a real server: an admin subscribes a real loopback
receiver, the server's own delivery loop sends it a signed event that ``standardwebhooks`` verifies; the
secret is shown once; bad input is a 4xx with nothing stored; only admins manage subscriptions; every
change is audited by id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.api.support import Api, assert_error
from tests.session.webhook_support import new_receiver, serving
from vIOP.auth.permissions import Role
from vIOP.storage.schema import webhook_outbox, webhook_subscriptions
from vIOP.webhooks.events import WebhookEventType

# A host that cannot resolve: a 64-character label is refused before any DNS query (nothing leaves the machine).
UNRESOLVABLE = f"http://{'a' * 64}.test/x"


@pytest.fixture
async def strict_api(live_server_factory: Any) -> AsyncIterator[Api]:
    """A server that refuses receivers on loopback and private addresses, as production does."""
    async with (
        live_server_factory(webhook_allow_private="false") as live,
        httpx.AsyncClient(base_url=live.base_url, timeout=30, trust_env=False) as http,
    ):
        yield Api(live, http)


async def count(api: Api, table: Any) -> int:
    async with api.services.storage.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_admin_subscribes_and_the_server_delivers_a_signed_event(api: Api) -> None:
    admin = await api.user(Role.ADMIN)
    receiver = new_receiver()
    async with serving(receiver):
        response = await api.http.post(
            "/api/v1/webhooks",
            json={"url": receiver.url("ehr"), "events": ["client.no_show", "session.started"]},
            headers=admin.headers,
        )
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["secret"].startswith("whsec_")
        assert created["events"] == ["client.no_show", "session.started"]
        assert created["allow_phi"] is False
        assert response.headers["cache-control"] == "no-store"
        receiver.secrets["ehr"] = created["secret"]
        await api.services.webhook_events.emit(
            WebhookEventType.CLIENT_NO_SHOW, {"client_id": "cl_x", "track_id": "tr_1"}
        )
        await asyncio.wait_for(receiver.arrived.wait(), timeout=30)
    (message,) = receiver.received["ehr"]
    assert message.body["type"] == "client.no_show"
    assert message.body["data"] == {"client_id": "cl_x", "track_id": "tr_1"}
    assert receiver.refused == 0

    listed = (await api.http.get("/api/v1/webhooks", headers=admin.headers)).json()["webhooks"]
    assert [w["id"] for w in listed] == [created["id"]]
    assert "secret" not in listed[0]  # shown once, at creation
    async with api.services.storage.db.read() as conn:
        sealed = (await conn.execute(select(webhook_subscriptions.c.secret))).scalar_one()
    assert created["secret"].encode() not in sealed

    assert (
        await api.http.delete(f"/api/v1/webhooks/{created['id']}", headers=admin.headers)
    ).status_code == 204
    assert_error(
        await api.http.delete(f"/api/v1/webhooks/{created['id']}", headers=admin.headers), 404, "not_found"
    )
    rows_before = await count(api, webhook_outbox)
    await api.services.webhook_events.emit(WebhookEventType.CLIENT_NO_SHOW, {"client_id": "cl_x"})
    assert await count(api, webhook_outbox) == rows_before  # a removed subscription gets nothing
    added = await api.audit_rows("webhook.added")
    removed = await api.audit_rows("webhook.removed")
    assert [(r["actor_id"], r["object_id"]) for r in added] == [(admin.id, created["id"])]
    assert [(r["actor_id"], r["object_id"]) for r in removed] == [(admin.id, created["id"])]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://127.0.0.1/x", "events": ["session.started"]}, "bad_webhook_url"),
        ({"url": "javascript:alert(1)", "events": ["session.started"]}, "bad_webhook_url"),
        ({"url": "http://user:pw@127.0.0.1/x", "events": ["session.started"]}, "bad_webhook_url"),
        ({"url": UNRESOLVABLE, "events": ["session.started"]}, "bad_webhook_url"),
        ({"url": "http://127.0.0.1:99999/x", "events": ["session.started"]}, "bad_webhook_url"),
        ({"url": "http://127.0.0.1/x", "events": ["session.exploded"]}, "bad_request"),
        ({"url": "http://127.0.0.1/x", "events": []}, "bad_request"),
        ({"url": "http://127.0.0.1/x"}, "bad_request"),
        ({"url": "http://127.0.0.1/x", "events": ["session.started"], "extra": 1}, "bad_request"),
    ],
)
async def test_bad_subscriptions_are_refused_and_nothing_is_stored(
    api: Api, body: dict[str, Any], code: str
) -> None:
    admin = await api.user(Role.ADMIN)
    assert_error(await api.http.post("/api/v1/webhooks", json=body, headers=admin.headers), 400, code)
    assert await count(api, webhook_subscriptions) == 0
    assert await api.audit_rows("webhook.added") == []


async def test_only_admins_manage_webhooks(api: Api) -> None:
    body = {"url": "http://127.0.0.1:9/x", "events": ["session.started"]}
    for role in (Role.CLINICIAN, Role.STAFF):
        user = await api.user(role)
        assert_error(
            await api.http.post("/api/v1/webhooks", json=body, headers=user.headers), 403, "forbidden"
        )
        assert_error(await api.http.get("/api/v1/webhooks", headers=user.headers), 403, "forbidden")
    assert_error(await api.http.post("/api/v1/webhooks", json=body), 401, "unauthenticated")
    assert await count(api, webhook_subscriptions) == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "https://localhost/x",
        "http://10.1.2.3/x",
        "http://[::1]/x",
        "http://169.254.169.254/",
    ],
)
async def test_loopback_and_private_receivers_are_refused_where_private_is_not_allowed(
    strict_api: Api, url: str
) -> None:
    admin = await strict_api.user(Role.ADMIN)
    body = {"url": url, "events": ["session.started"]}
    error = assert_error(
        await strict_api.http.post("/api/v1/webhooks", json=body, headers=admin.headers),
        400,
        "bad_webhook_url",
    )
    assert "private" in error["message"]
    assert await count(strict_api, webhook_subscriptions) == 0
