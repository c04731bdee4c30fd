"""``python -m vIOP users create|set-display-name|disable|enable|reset-mfa``: workforce accounts from the CLI.

The password is read from standard input (never from the command line, where ``ps`` and shell history
would show it). ``disable`` and ``reset-mfa`` also publish a revocation on the server's Redis
(:mod:`vIOP.auth.revocation`): the account's tokens stop working and its live sockets close in every
server process within seconds (the embedded Redis is started for a moment when no server runs). A TOTP provisioning URI is printed once, at creation or MFA reset, and stored nowhere in
plaintext. Wired into ``vIOP/cli/main.py``: ``(users, "add_users_parser", "run_users")`` in ``_GROUPS``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TextIO

from vIOP.auth.accounts import Account, AccountAdmin, AccountChange, CreatedAccount
from vIOP.auth.passwords import PasswordHasher
from vIOP.auth.permissions import ACCOUNT_ROLES, Role
from vIOP.errors import BadRequest, Unavailable
from vIOP.settings import Settings, load_settings

OpenAdmin = Callable[[Settings], AbstractAsyncContextManager[AccountAdmin]]


def add_users_parser(subparsers: Any) -> str:
    users = subparsers.add_parser("users", help="manage workforce accounts (admin, clinician, staff)")
    commands = users.add_subparsers(dest="users_command", required=True)
    create = commands.add_parser("create", help="create an account; the password is read from stdin")
    create.add_argument("--role", required=True, choices=sorted(r.value for r in ACCOUNT_ROLES))
    create.add_argument("--username", required=True)
    create.add_argument(
        "--password-stdin", action="store_true", required=True, help="read the password from standard input"
    )
    create.add_argument(
        "--totp", action="store_true", help="enrol a TOTP second factor (required in production)"
    )
    shown = "the name clients and colleagues see in a room (never the username)"
    create.add_argument("--display-name", help=shown + "; default: the role's title, e.g. Clinician")
    rename = commands.add_parser(
        "set-display-name", help="change the name an account is shown under in rooms"
    )
    rename.add_argument("--username", required=True)
    rename.add_argument("--display-name", required=True, help=shown)
    for name, text in (
        ("disable", "disable an account: it can no longer sign in, and its tokens stop working"),
        ("enable", "enable a disabled account again"),
        ("reset-mfa", "replace the account's TOTP secret and print the new provisioning URI once"),
    ):
        commands.add_parser(name, help=text).add_argument("--username", required=True)
    return "users"


async def publish_account_revocation(settings: Settings, account: Account) -> None:
    """End the account's sign-ins and close its sockets everywhere; one clear error if Redis is away."""
    from vIOP.auth.revocation import RevocationKind, Revocations
    from vIOP.storage.redis_auth import RedisRevocationLog
    from vIOP.storage.redis_client import RedisError, operator_redis

    try:
        async with operator_redis(settings) as redis:
            await Revocations(RedisRevocationLog(redis)).publish(RevocationKind.ACCOUNT, account.id)
    except (RedisError, OSError) as exc:
        raise Unavailable(
            f"the account {account.id} was changed, but its live sessions could not be ended: Redis is "
            f"unreachable ({type(exc).__name__}); run the command again once Redis is back"
        ) from None


@asynccontextmanager
async def open_account_admin(
    settings: Settings, hasher: PasswordHasher | None = None
) -> AsyncIterator[AccountAdmin]:
    """The real thing: the configured store (``open_storage``), every change written to the audit log.

    An entry point like ``app.py``: the top floor wires the auth policy to its storage.
    """
    from vIOP.storage.accounts_sql import SqlAccountStore
    from vIOP.storage.audit_outbox import AuditOutbox
    from vIOP.storage.bootstrap import open_storage

    storage = await open_storage(settings)

    async def audit(change: AccountChange, account: Account) -> None:
        await AuditOutbox(storage.audit).record_operator(
            change.value, "user", account.id, role="cli"
        )  # actor: SUDO_USER

    try:
        ring = storage.keys
        yield AccountAdmin(
            SqlAccountStore(storage.db, ring),
            lambda username: ring.blind_index("username", username),
            hasher or PasswordHasher(),
            require_totp=settings.env == "production",
            changes=audit,
            revoke=lambda account: publish_account_revocation(settings, account),
        )
    finally:
        await storage.close()


def read_password(stdin: TextIO) -> str:
    """The first line of stdin without its line ending (a password may contain spaces)."""
    password = stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise BadRequest(
            "no password on standard input (use: printf '%s' \"$PASSWORD\" | ... --password-stdin)"
        )
    return password


def run_users(
    args: argparse.Namespace,
    settings: Settings | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    open_admin: OpenAdmin = open_account_admin,
) -> int:
    """Run one ``users`` subcommand; VIOPErrors propagate (``__main__`` prints them as one line)."""
    config = settings if settings is not None else load_settings()
    out = stdout or sys.stdout
    password = read_password(stdin or sys.stdin) if args.users_command == "create" else ""
    return asyncio.run(_run(args, config, password, out, open_admin))


async def _run(
    args: argparse.Namespace, settings: Settings, password: str, out: TextIO, open_admin: OpenAdmin
) -> int:
    async with open_admin(settings) as admin:
        command = args.users_command
        if command == "create":
            created = await admin.create(
                Role(args.role), args.username, password, with_totp=args.totp, display_name=args.display_name
            )
            print(f"created {created.account.role.value} account {created.account.id}", file=out)
            _print_uri(created, out)
        elif command == "set-display-name":
            account = await admin.set_display_name(args.username, args.display_name)
            print(f"account {account.id} is shown as the new display name from the next room entry", file=out)
        elif command in ("disable", "enable"):
            account = await admin.set_disabled(args.username, command == "disable")
            print(f"{command}d account {account.id}", file=out)
        elif command == "reset-mfa":
            reset = await admin.reset_mfa(args.username)
            print(
                f"new TOTP secret for account {reset.account.id}; the previous one no longer works", file=out
            )
            _print_uri(reset, out)
        else:  # argparse restricts the choices; keep mypy and readers sure
            raise BadRequest(f"unknown users command {command!r}")
    return 0


def _print_uri(created: CreatedAccount, out: TextIO) -> None:
    if created.provisioning_uri is not None:
        print("TOTP provisioning URI (shown once: add it to an authenticator app now):", file=out)
        print(created.provisioning_uri, file=out)
