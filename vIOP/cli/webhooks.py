"""``python -m vIOP webhooks add|list|remove``: the receivers of signed events (issue 16, docs/PROGRAM.md).

Wiring: ``(webhooks, "add_parsers", "run")`` in ``_GROUPS`` of ``vIOP/cli/main.py``. ``add`` prints the
signing secret once (stored sealed, never shown again). Exit status: 0 done, 1 refused (a bad URL or
event, an unknown id), 2 usage error. Every change and listing is audited as the operator (ids only).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

from vIOP.session.webhooks import subscribe
from vIOP.settings import Settings, load_settings
from vIOP.storage.audit import AuditEvent
from vIOP.storage.audit_outbox import AuditOutbox
from vIOP.storage.bootstrap import open_storage
from vIOP.storage.webhooks_sql import SqlWebhookStore, Subscription
from vIOP.webhooks.events import WebhookEventType

Subparsers = Any  # argparse's _SubParsersAction is private


def add_parsers(sub: Subparsers) -> list[str]:
    webhooks = sub.add_parser("webhooks", help="receivers of signed events (Standard Webhooks)")
    webhooks_sub = webhooks.add_subparsers(dest="webhooks_command", required=True)
    add = webhooks_sub.add_parser("add", help="subscribe a receiver; prints its signing secret once")
    add.add_argument("--url", required=True, help="http(s) URL of the receiver")
    add.add_argument(
        "--event", action="append", required=True, choices=[e.value for e in WebhookEventType], help="repeat"
    )
    add.add_argument(
        "--allow-phi", action="store_true", help="names in payloads (only ever sent when the URL is https)"
    )
    webhooks_sub.add_parser("list", help="the subscriptions (never their secrets)")
    remove = webhooks_sub.add_parser("remove", help="stop sending to a subscription")
    remove.add_argument("webhook_id")
    return ["webhooks"]


def _show(sub: Subscription) -> None:
    events = ",".join(e.value for e in sub.events)
    phi = "  names allowed (https only)" if sub.allow_phi else ""
    print(f"{sub.id}  {sub.url}  events: {events}{phi}", flush=True)


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or load_settings()

    async def go() -> int:
        storage = await open_storage(settings)
        try:
            store, audit = SqlWebhookStore(storage.db, storage.keys), AuditOutbox(storage.audit)
            if args.webhooks_command == "add":
                sub, secret = await subscribe(
                    store,
                    args.url,
                    args.event,
                    allow_phi=args.allow_phi,
                    allow_private=settings.effective_webhook_allow_private,
                    created_by=None,
                )
                await audit.record_operator(AuditEvent.WEBHOOK_ADDED, "webhook", sub.id)
                _show(sub)
                print(f"secret (shown once, keep it with the receiver): {secret}", flush=True)
            elif args.webhooks_command == "remove":
                sub = await store.remove(args.webhook_id, datetime.now(UTC))
                await audit.record_operator(AuditEvent.WEBHOOK_REMOVED, "webhook", sub.id)
                print(f"removed {sub.id}", flush=True)
            else:
                subs = await store.subscriptions()
                await audit.record_operator(AuditEvent.WEBHOOKS_VIEWED, "webhook", None)
                for sub in subs:
                    _show(sub)
                if not subs:
                    print("no webhook subscriptions", flush=True)
            return 0
        finally:
            await storage.close()

    return asyncio.run(go())
