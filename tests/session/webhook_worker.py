"""One app process's webhook delivery loop, run alone: ``python -m tests.session.webhook_worker DB_URL
KEY_FILE``. It delivers from the shared outbox until nothing waits, then prints how many rows it sent.
Two of these at once are two app processes on one outbox."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from vIOP.session.webhooks import DeliveryPolicy, HttpSender, WebhookDelivery
from vIOP.storage.crypto import KeyRing
from vIOP.storage.database import Database
from vIOP.storage.keys import FileKeySource
from vIOP.storage.webhooks_sql import SqlWebhookStore


class CountingSender(HttpSender):
    sent = 0

    async def send(self, url: str, secret: str, msg_id: str, body: bytes) -> int:
        status = await super().send(url, secret, msg_id, body)
        CountingSender.sent += 1
        return status


async def main(url: str, key_file: str) -> None:
    db = await Database.open(url)
    ring = await KeyRing.open(db, FileKeySource(Path(key_file)))
    store = SqlWebhookStore(db, ring)
    sender = CountingSender(timeout=30.0, allow_private=True)
    delivery = WebhookDelivery(store, sender, policy=DeliveryPolicy(concurrency=1))
    for _ in range(20_000):  # bounded: the other process may hold the last rows for a moment
        if not await store.waiting():
            break
        if not await delivery.round():
            await asyncio.sleep(0.01)  # a poll of the other process's progress
        await delivery.settle()
    await sender.aclose()
    await db.close()
    print(CountingSender.sent)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
