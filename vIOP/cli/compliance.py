"""Compliance subcommands: ``consent add|revoke|list``, ``retention run [--dry-run]``, and the break-glass
review under ``audit`` (``audit review``, ``audit sign-off GRANT_ID --by USERNAME``).

Wiring: ``(compliance, "add_parsers", "run")`` in ``_GROUPS`` of ``vIOP/cli/main.py``; the two ``audit``
subcommands are added by ``vIOP/cli/storage.py`` through :func:`add_review_parsers` / :func:`run_review`.
Exit status: 0 done, 1 refused (e.g. a self sign-off), 2 usage error. Every command is audited with actor
role ``operator``; recipients, purposes and reasons are printed to the operator, never logged or audited.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, date, datetime
from typing import Any

from vIOP.auth.accounts import normalize_username
from vIOP.auth.permissions import Role
from vIOP.compliance.break_glass import check_sign_off
from vIOP.compliance.consent import Consent, DataCategory, check_text, parse_categories
from vIOP.errors import ConfigError, Forbidden, NotFound
from vIOP.settings import Settings, load_settings
from vIOP.storage.accounts_sql import SqlAccountStore
from vIOP.storage.audit import Outcome
from vIOP.storage.audit_outbox import AuditOutbox
from vIOP.storage.bootstrap import Storage, open_storage
from vIOP.storage.break_glass_sql import SqlBreakGlassStore
from vIOP.storage.consents_sql import SqlConsentStore
from vIOP.storage.retention import policy_from, run_retention

Subparsers = Any  # argparse's _SubParsersAction is private


def _say(message: str) -> None:
    print(message, flush=True)


def _iso(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _run(settings: Settings, work: Any) -> int:
    async def go() -> int:
        storage = await open_storage(settings)
        try:
            result: int = await work(storage)
            return result
        finally:
            await storage.close()

    return asyncio.run(go())


# --- consent ----------------------------------------------------------------------------------------


def add_consent_parser(sub: Subparsers) -> str:
    consent = sub.add_parser("consent", help="42 CFR part 2 consents to disclose a client's records")
    consent_sub = consent.add_subparsers(dest="consent_command", required=True)
    add = consent_sub.add_parser("add", help="record a signed consent")
    add.add_argument("--client", required=True, help="client id (cl_...)")
    add.add_argument(
        "--recipient", required=True, help="who may receive the records (person or organisation)"
    )
    add.add_argument("--purpose", required=True, help="why (as written on the consent form)")
    add.add_argument(
        "--data",
        action="append",
        required=True,
        choices=[c.value for c in DataCategory],
        help="what (repeat)",
    )
    add.add_argument(
        "--expires", required=True, type=date.fromisoformat, help="last day it is valid, YYYY-MM-DD"
    )
    revoke = consent_sub.add_parser("revoke", help="revoke a consent (takes effect at once)")
    revoke.add_argument("consent_id")
    listing = consent_sub.add_parser("list", help="a client's consents")
    listing.add_argument("--client", required=True, help="client id (cl_...)")
    return "consent"


def _show(consent: Consent) -> None:
    state = (
        "revoked"
        if consent.revoked_at is not None
        else "active"
        if consent.active(time.time())
        else "expired"
    )
    _say(
        f"{consent.id}  {state}  to: {consent.recipient}  for: {consent.purpose}  "
        f"data: {','.join(sorted(consent.data))}  expires {_iso(consent.expires_at)}"
        + (f"  revoked {_iso(consent.revoked_at)}" if consent.revoked_at is not None else "")
    )


def run_consent(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or load_settings()

    async def work(storage: Storage) -> int:
        store = SqlConsentStore(storage.db, storage.keys)
        now = time.time()
        if args.consent_command == "add":
            # valid through the whole --expires day (UTC)
            end = datetime.combine(args.expires, datetime.max.time(), UTC).timestamp()
            consent = await store.add(
                args.client,
                check_text(args.recipient, "--recipient"),
                check_text(args.purpose, "--purpose"),
                parse_categories(args.data),
                end,
                None,
                now,
            )
            await AuditOutbox(storage.audit).record_operator("consent.added", "consent", consent.id)
            _show(consent)
        elif args.consent_command == "revoke":
            consent = await store.revoke(args.consent_id, None, now)
            await AuditOutbox(storage.audit).record_operator("consent.revoked", "consent", consent.id)
            _show(consent)
        else:
            consents = await store.for_client(args.client)
            await AuditOutbox(storage.audit).record_operator("consent.listed", "client", args.client)
            for consent in consents:
                _show(consent)
            if not consents:
                _say(f"client {args.client} has no consents on record")
        return 0

    return _run(settings, work)


# --- retention --------------------------------------------------------------------------------------


def add_retention_parser(sub: Subparsers) -> str:
    retention = sub.add_parser("retention", help="purge and shred what is past its retention period")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True)
    run = retention_sub.add_parser("run", help="one retention run now (the server also runs one daily)")
    run.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")
    return "retention"


def run_retention_cli(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or load_settings()

    async def work(storage: Storage) -> int:
        report = await run_retention(storage, policy_from(settings), time.time(), dry_run=args.dry_run)
        verb = "would remove" if report.dry_run else "removed"
        _say(f"retention run ({'dry run' if report.dry_run else 'done'}): {verb}")
        for name, count in report.counts().items():
            _say(f"  {name.replace('_', ' ')}: {count}")
        return 0

    return _run(settings, work)


# --- break-glass review (under `audit`) -------------------------------------------------------------


def add_review_parsers(audit_sub: Subparsers) -> None:
    audit_sub.add_parser("review", help="break-glass accesses waiting for a second admin's sign-off")
    sign_off = audit_sub.add_parser("sign-off", help="sign off a break-glass access as a second admin")
    sign_off.add_argument("grant_id")
    sign_off.add_argument(
        "--by", required=True, help="username of the signing admin (not the one who opened it)"
    )


async def run_review(args: argparse.Namespace, storage: Storage) -> int:
    store = SqlBreakGlassStore(storage.db, storage.keys)
    if args.audit_command == "review":
        pending = await store.pending_review()
        await AuditOutbox(storage.audit).record_operator("access.break_glass_reviewed", "break_glass")
        for grant in pending:
            _say(
                f"{grant.id}  room {grant.room_id}  by {grant.actor_id} ({grant.actor_role})  "
                f"{_iso(grant.created_at)} to {_iso(grant.expires_at)}  reason: {grant.reason}"
            )
        _say(f"{len(pending)} break-glass access(es) waiting for sign-off")
        return 0
    accounts = SqlAccountStore(storage.db, storage.keys)
    admin = await accounts.by_username_index(
        storage.keys.blind_index("username", normalize_username(args.by))
    )
    if admin is None or admin.disabled or admin.role is not Role.ADMIN:
        raise ConfigError("--by", "name an enabled admin account")
    try:
        check_sign_off(await store.get(args.grant_id), admin.id)
    except (Forbidden, NotFound):
        await AuditOutbox(storage.audit).record_operator(
            "access.break_glass_signed_off", "break_glass", None, Outcome.DENIED, actor_id=admin.id
        )
        raise
    grant = await store.sign_off(args.grant_id, admin.id, time.time())
    await AuditOutbox(storage.audit).record_operator(
        "access.break_glass_signed_off", "break_glass", grant.id, actor_id=admin.id
    )
    _say(f"break-glass access {grant.id} signed off by {admin.id}")
    return 0


# --- group entry ------------------------------------------------------------------------------------

_RUN = {"consent": run_consent, "retention": run_retention_cli}


def add_parsers(sub: Subparsers) -> list[str]:
    return [add_consent_parser(sub), add_retention_parser(sub)]


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    return _RUN[args.command](args, settings)
