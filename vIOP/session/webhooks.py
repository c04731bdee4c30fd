"""Webhooks in the running app (issue 16, docs/PROGRAM.md "Webhooks"): subscribing, emitting, delivering.

- :func:`subscribe` checks a subscription (http(s) URL, known events, a host that resolves, and outside
  development only to public addresses), makes its secret and stores it: the secret is shown once.
- :class:`OutboxEvents` is the :class:`~vIOP.webhooks.events.WebhookEvents` port: ``emit`` writes the
  outbox rows and wakes the delivery loop. Room sessions emit from the attendance ledger's transactions
  (``vIOP.storage.attendance_sql``); other use cases (a no-show) call ``emit``.
- :class:`WebhookDelivery` is the delivery loop each process runs: it claims the head row of each
  subscription (in order, one at a time per subscription), sends it signed (the ``standardwebhooks``
  library; ``webhook-id`` is the receiver's idempotency key) with a timeout, and marks it delivered on a
  2xx or schedules a retry with exponential backoff and jitter. At most ``concurrency`` sends are in flight;
  a slow receiver holds only its own subscription. It runs beside the sessions, never in their path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import httpx
from standardwebhooks import Webhook

from vIOP.errors import BadRequest
from vIOP.ids import new_id
from vIOP.metrics import WEBHOOK_ATTEMPTS
from vIOP.storage.webhooks_sql import OutboxRow, SqlWebhookStore, Subscription
from vIOP.webhooks.events import Payload, WebhookEventType
from vIOP.webhooks.policy import Backoff, check_addresses, check_url_form, may_carry_names, new_secret

log = logging.getLogger("vIOP.webhooks")

Resolver = Callable[[str], Awaitable[list[str]]]
EpochClock = Callable[[], float]
LEASE_MARGIN_SECONDS = 30.0  # a lease outlives the send timeout by this much


class BadWebhookEvents(BadRequest):
    code = "bad_webhook_events"


async def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself); [] if it does not resolve."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


def parse_events(names: Iterable[str]) -> tuple[WebhookEventType, ...]:
    """Known event types, deduplicated in the order given; BadWebhookEvents for none or an unknown one."""
    out: list[WebhookEventType] = []
    for name in names:
        try:
            kind = WebhookEventType(name)
        except ValueError:
            known = ", ".join(e.value for e in WebhookEventType)
            raise BadWebhookEvents(f"unknown event {name!r} (known: {known})") from None
        if kind not in out:
            out.append(kind)
    if not out:
        raise BadWebhookEvents("name at least one event")
    return tuple(out)


async def subscribe(
    store: SqlWebhookStore,
    url: str,
    events: Iterable[str],
    *,
    allow_phi: bool,
    allow_private: bool,
    created_by: str | None,
    resolve: Resolver = resolve_host,
) -> tuple[Subscription, str]:
    """Check and store a subscription; (subscription, secret). Nothing is stored on a 4xx error."""
    _, host = check_url_form(url)
    kinds = parse_events(events)
    check_addresses(host, await resolve(host), allow_private=allow_private)
    secret = new_secret()
    sub = await store.add(
        url, kinds, allow_phi=allow_phi, secret=secret, created_by=created_by, at=datetime.now(UTC)
    )
    return sub, secret


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def message_body(row: OutboxRow, names: dict[str, str]) -> bytes:
    """The Standard Webhooks payload shape: ``type``, ``timestamp`` (when it happened), ``data``."""
    data = {**row.payload, **names}
    body = {"type": row.event_type.value, "timestamp": _iso(row.created_at), "data": data}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class HttpSender:
    """POSTs signed messages with httpx; the answer's status, or 0 when there was none (refused, timed
    out, or a host that now resolves to a private address where those are refused)."""

    def __init__(
        self,
        *,
        timeout: float,
        allow_private: bool,
        resolve: Resolver = resolve_host,
        wall_clock: EpochClock = time.time,
    ) -> None:
        self._timeout = timeout
        self._allow_private = allow_private
        self._resolve = resolve
        self._wall_clock = wall_clock
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)

    async def send(self, url: str, secret: str, msg_id: str, body: bytes) -> int:
        if not self._allow_private:  # checked at every send: a name may resolve elsewhere since
            try:
                _, host = check_url_form(url)
                check_addresses(host, await self._resolve(host), allow_private=False)
            except BadRequest:
                return 0
        stamp = datetime.fromtimestamp(self._wall_clock(), UTC)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, stamp, body),
            "content-type": "application/json",
            "user-agent": "vIOP-webhooks/1",
        }
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(url, content=body, headers=headers)
        except (httpx.HTTPError, TimeoutError, OSError):
            return 0
        return response.status_code

    async def aclose(self) -> None:
        await self._client.aclose()


class Sender(Protocol):
    """What the delivery loop sends with (:class:`HttpSender`)."""

    async def send(self, url: str, secret: str, msg_id: str, body: bytes) -> int: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    concurrency: int = 8
    timeout: float = 10.0
    poll_seconds: float = 1.0  # how often the loop looks for due rows when nothing woke it
    backoff: Backoff = field(default_factory=Backoff)


class WebhookDelivery:
    """This process's delivery loop over the shared outbox (see the module docstring)."""

    def __init__(
        self,
        store: SqlWebhookStore,
        sender: Sender,
        *,
        policy: DeliveryPolicy = DeliveryPolicy(),
        clock: EpochClock = time.time,
        rng: random.Random | None = None,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.sender = sender
        self.policy = policy
        self.owner = owner or new_id("dl")
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # subscription id -> its one send
        self._wake = asyncio.Event()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def round(self) -> int:
        """Claim what is due (heads of subscriptions with nothing in flight, up to the concurrency left)
        and start sending it; the number of rows claimed."""
        room = self.policy.concurrency - len(self._in_flight)
        lease = self.policy.timeout + LEASE_MARGIN_SECONDS
        rows = await self.store.claim(self.owner, self._now(), lease, room, busy=frozenset(self._in_flight))
        for row in rows:
            task = asyncio.get_running_loop().create_task(self._deliver(row), name=f"webhook-{row.id}")
            self._in_flight[row.subscription_id] = task
        return len(rows)

    async def settle(self) -> None:
        """Wait for the sends in flight (tests; shutdown)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight.values()), return_exceptions=True)

    async def _deliver(self, row: OutboxRow) -> None:
        try:
            names = await self.store.names_for(row.payload) if may_carry_names(row.url, row.allow_phi) else {}
            status = await self.sender.send(row.url, row.secret, row.id, message_body(row, names))
            if 200 <= status < 300:
                WEBHOOK_ATTEMPTS.labels(row.event_type.value, "delivered").inc()
                await self.store.delivered(row, self.owner, self._now(), status)
                return
            WEBHOOK_ATTEMPTS.labels(row.event_type.value, "failed").inc()
            delay = self.policy.backoff.delay(row.attempts + 1, self._rng)
            await self.store.failed(row, self.owner, self._now() + timedelta(seconds=delay), status)
            log.warning(
                "webhook delivery failed; retrying",
                extra={"kind": row.event_type.value, "status": status, "count": row.attempts + 1},
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # the database away: the lease runs out and the row is sent again
            log.exception("webhook delivery round failed", extra={"kind": row.event_type.value})
        finally:  # in the task itself, so whoever awaited it sees the subscription free
            self._in_flight.pop(row.subscription_id, None)
            self._wake.set()  # the subscription's next row may go now

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set: a round whenever woken (an emit, a send finished) or every
        ``poll_seconds`` (retries coming due, rows other processes wrote)."""
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("webhook outbox unavailable; will retry")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.policy.poll_seconds):
                    await _first(self._wake.wait(), stop.wait())
        await self.settle()
        await self.sender.aclose()


async def _first(*waits: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


class OutboxEvents:
    """The :class:`~vIOP.webhooks.events.WebhookEvents` port over the SQL outbox."""

    def __init__(
        self, store: SqlWebhookStore, *, clock: EpochClock = time.time, wake: Callable[[], None] | None = None
    ):
        self._store = store
        self._clock = clock
        self._wake = wake

    async def emit(self, event_type: WebhookEventType, payload: Payload) -> None:
        await self._store.enqueue(event_type, payload, datetime.fromtimestamp(self._clock(), UTC))
        if self._wake is not None:
            self._wake()
