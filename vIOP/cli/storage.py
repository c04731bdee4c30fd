"""Storage subcommands: ``db upgrade``, ``keys init|status|rotate|retire``, ``audit verify|checkpoint``,
``clients shred``.

Wiring for ``vIOP/cli/main.py``: ``(storage, "add_parsers", "run")`` in ``_GROUPS``;
``run(args, settings)`` dispatches on ``args.command``. Each command also has its own ``add_<name>_parser``
and ``run_<name>``. Exit status: 0 done, 1 failed (e.g. the audit chain is broken), 2 usage/config error.
Operator actions are audited with actor role ``operator`` and actor ``os:<SUDO_USER or login name>``
(``vIOP.storage.audit_outbox.AuditOutbox.record_operator``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vIOP.cli import compliance
from vIOP.errors import ConfigError
from vIOP.settings import Settings, load_settings
from vIOP.storage.audit import AuditEvent, Outcome
from vIOP.storage.audit_outbox import AuditOutbox
from vIOP.storage.bootstrap import Storage, open_storage
from vIOP.storage.crypto import shred_client
from vIOP.storage.database import current_revision, upgrade
from vIOP.storage.keys import FileKeySource
from vIOP.storage.rotation import kek_usage, retire_keks, rotate_keys

Subparsers = Any  # argparse's _SubParsersAction is private


def _say(message: str) -> None:
    print(message, flush=True)


async def _with_storage(
    settings: Settings, args: argparse.Namespace, work: Callable[[Storage], Awaitable[int]]
) -> int:
    storage = await open_storage(settings, checkpoint_path=getattr(args, "checkpoints", None))
    try:
        return await work(storage)
    finally:
        await storage.close()


# --- db ---------------------------------------------------------------------------------------------


def add_db_parser(sub: Subparsers) -> str:
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply schema migrations (run before starting a new version)")
    return "db"


def run_db(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or load_settings()
    url = settings.effective_database_url
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def go() -> str | None:
        await upgrade(url)
        return await current_revision(url)

    _say(f"database schema is at revision {asyncio.run(go())}")
    return 0


# --- keys -------------------------------------------------------------------------------------------


def add_keys_parser(sub: Subparsers) -> str:
    keys = sub.add_parser("keys", help="key-encryption keys: create, inspect, rotate, retire")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    init = keys_sub.add_parser(
        "init", help="write a new key file (for VIOP_KEY_FILE, outside the data folder)"
    )
    init.add_argument("path", type=Path)
    keys_sub.add_parser("status", help="KEK versions and how many data keys each wraps")
    rotate = keys_sub.add_parser(
        "rotate", help="add a new primary KEK and re-wrap every data key (resumable)"
    )
    rotate.add_argument(
        "--no-new-kek",
        action="store_true",
        help="only re-wrap under the current primary (the key source is managed outside vIOP)",
    )
    rotate.add_argument("--batch-size", type=int, default=500)
    keys_sub.add_parser("retire", help="remove old KEK versions that no data key uses any more")
    return "keys"


def run_keys(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or load_settings()
    if args.keys_command == "init":
        return _keys_init(args.path, settings)
    handlers = {"status": _keys_status, "rotate": _keys_rotate, "retire": _keys_retire}
    handler = handlers[args.keys_command]
    return asyncio.run(_with_storage(settings, args, lambda storage: handler(storage, args)))


def _keys_init(path: Path, settings: Settings) -> int:
    if path.exists():
        raise ConfigError("keys init", f"{path} already exists: vIOP never overwrites a key file")
    FileKeySource(path, create=True, data_dir=settings.data_dir)
    _say(f"wrote a new key file {path} (mode 0600). Back it up apart from the data; set VIOP_KEY_FILE={path}")
    return 0


async def _keys_status(storage: Storage, _args: argparse.Namespace) -> int:
    source = storage.keys.source
    primary = await source.primary()
    async with storage.db.read() as conn:
        usage = await kek_usage(conn)
    _say(f"key source: {source.description}")
    for kek in sorted(await source.versions() | set(usage)):
        role = (
            "primary"
            if kek == primary
            else ("MISSING from the source" if kek not in await source.versions() else "")
        )
        _say(f"  {kek}  {usage.get(kek, 0)} data keys  {role}".rstrip())
    return 0


async def _keys_rotate(storage: Storage, args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ConfigError("--batch-size", "must be at least 1")

    def progress(done: int) -> None:
        _say(f"  re-wrapped {done} data keys")

    try:
        report = await rotate_keys(
            storage.keys, new_kek=not args.no_new_kek, batch_size=args.batch_size, on_progress=progress
        )
    except Exception:
        with contextlib.suppress(Exception):  # the original error matters more than its audit row
            await AuditOutbox(storage.audit).record_operator(
                AuditEvent.KEYS_ROTATED, "kek", None, Outcome.FAILURE
            )
        raise
    await AuditOutbox(storage.audit).record_operator(
        AuditEvent.KEYS_ROTATED, "kek", str(report.target), Outcome.SUCCESS
    )
    verb = "resumed and finished" if report.resumed else "finished"
    if not report.finished:
        _say(f"rotation to {report.target} stopped with {report.remaining} data keys left: run it again")
        return 1
    _say(
        f"rotation to {report.target} {verb}: {report.rewrapped} data keys re-wrapped in {report.seconds:.2f} s. "
        "Old KEK versions stay readable until `keys retire`."
    )
    return 0


async def _keys_retire(storage: Storage, _args: argparse.Namespace) -> int:
    retired, in_use = await retire_keks(storage.keys)
    for kek in retired:
        await AuditOutbox(storage.audit).record_operator(
            AuditEvent.KEYS_RETIRED, "kek", str(kek), Outcome.SUCCESS
        )
    _say("retired: " + (", ".join(map(str, retired)) or "nothing"))
    for kek, count in in_use.items():
        _say(f"kept {kek}: {count} data keys still use it (run `keys rotate --no-new-kek`)")
    return 0


# --- audit ------------------------------------------------------------------------------------------


def add_audit_parser(sub: Subparsers) -> str:
    audit = sub.add_parser("audit", help="the tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    for name, text in (
        ("verify", "check the whole chain and the checkpoints"),
        ("checkpoint", "sign one now"),
    ):
        cmd = audit_sub.add_parser(name, help=text)
        cmd.add_argument(
            "--checkpoints", type=Path, help="checkpoint file (default: <data dir>/audit-checkpoints.jsonl)"
        )
    compliance.add_review_parsers(audit_sub)  # `audit review`, `audit sign-off` (break-glass)
    return "audit"


def run_audit(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or load_settings()

    async def verify(storage: Storage) -> int:
        result = await storage.audit.verify()
        # Reading the log is itself audited (after the walk, so it checks what was there before).
        outcome = Outcome.SUCCESS if result.ok else Outcome.FAILURE
        await AuditOutbox(storage.audit).record_operator(
            AuditEvent.AUDIT_VERIFIED, "audit_log", str(result.last_seq), outcome
        )
        if result.ok:
            _say(
                f"audit log intact: {result.rows_checked} rows, "
                f"{result.checkpoints_checked} checkpoints agree (last row {result.last_seq})"
            )
            return 0
        print(f"audit log BROKEN at row {result.bad_seq}: {result.problem}: {result.detail}", file=sys.stderr)
        return 1

    async def checkpoint(storage: Storage) -> int:
        seq = await storage.audit.checkpoint()
        _say(f"checkpoint written at row {seq}" if seq else "the audit log is empty: nothing to sign")
        return 0

    async def review(storage: Storage) -> int:
        return await compliance.run_review(args, storage)

    work = {"verify": verify, "checkpoint": checkpoint}.get(args.audit_command, review)
    return asyncio.run(_with_storage(settings, args, work))


# --- clients ----------------------------------------------------------------------------------------


def add_clients_parser(sub: Subparsers) -> str:
    clients = sub.add_parser("clients", help="client records")
    clients_sub = clients.add_subparsers(dest="clients_command", required=True)
    shred = clients_sub.add_parser(
        "shred", help="destroy a client's data key: their names and labels become unreadable for good"
    )
    shred.add_argument("client_id")
    shred.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    return "clients"


def run_clients(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or load_settings()
    if not args.yes:
        raise ConfigError(
            "clients shred", "destroys data for good: add --yes once the retention period is over"
        )

    async def shred(storage: Storage) -> int:
        result = await shred_client(storage.keys, args.client_id)
        await AuditOutbox(storage.audit).record_operator(
            AuditEvent.CLIENT_SHREDDED, "client", result.client_id
        )
        state = "was already shredded" if result.already_shredded else "shredded"
        _say(f"client {result.client_id} {state}: data key {result.data_key_id} destroyed")
        return 0

    return asyncio.run(_with_storage(settings, args, shred))


# --- group entry ------------------------------------------------------------------------------------

_RUN = {"db": run_db, "keys": run_keys, "audit": run_audit, "clients": run_clients}


def add_parsers(sub: Subparsers) -> list[str]:
    return [add_db_parser(sub), add_keys_parser(sub), add_audit_parser(sub), add_clients_parser(sub)]


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    return _RUN[args.command](args, settings)
