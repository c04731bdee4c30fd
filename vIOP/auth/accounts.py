"""Workforce accounts (admin, clinician, staff): creation, sign-in with password + TOTP, disable, MFA reset.

The account service works over a small :class:`AccountStore` protocol; the SQL implementation
(``vIOP/storage/accounts_sql.py``) encrypts the username, display name and TOTP secret and finds accounts by
the username's blind index. The username is a sign-in credential and is never shown to clients: rooms show
the account's display name (by default the role's title, e.g. "Clinician").

Sign-in never says which of username, password or code was wrong, costs the same argon2id verification for
unknown usernames, is throttled per (account, address), per account and per address, locking out only the
attacking address (:mod:`vIOP.auth.throttle`), refuses a TOTP code used before
(:mod:`vIOP.auth.totp_replay`) and reports every outcome as a :class:`LoginEvent` for the audit log.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final, Protocol

from vIOP.auth.invites import check_display_name
from vIOP.auth.passwords import (
    PasswordHasher,
    Totp,
    check_password_shape,
    new_totp_secret,
    provisioning_uri,
)
from vIOP.auth.permissions import ACCOUNT_ROLES, Role
from vIOP.auth.throttle import LoginThrottle, LoginThrottled
from vIOP.auth.totp_replay import TotpReplayGuard
from vIOP.errors import BadRequest, NotFound, Unauthenticated
from vIOP.ids import UserId, new_user_id

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@+-]{2,63}$")
MAX_TOTP_CHARS: Final = 16


@dataclass(frozen=True, slots=True)
class Account:
    id: UserId
    role: Role
    username: str
    password_hash: str
    totp_secret: bytes | None
    disabled: bool
    display_name: str  # what clients and colleagues see in a room; never the username

    @property
    def mfa_enabled(self) -> bool:
        return self.totp_secret is not None


class AccountStore(Protocol):
    """Persistence of accounts; implementations keep the username and TOTP secret encrypted.

    Every ``set_*``/``record_login`` on an unknown user id raises :class:`~vIOP.errors.NotFound`.
    """

    async def add(self, account: Account, username_index: bytes, now: float) -> None:
        """Insert; :class:`~vIOP.errors.Conflict` if the username index is taken."""
        ...

    async def by_username_index(self, username_index: bytes) -> Account | None: ...

    async def get(self, user_id: UserId) -> Account | None: ...

    async def set_password_hash(self, user_id: UserId, password_hash: str, now: float) -> None: ...

    async def set_disabled(self, user_id: UserId, disabled: bool, now: float) -> None: ...

    async def set_totp_secret(self, user_id: UserId, secret: bytes | None, now: float) -> None: ...

    async def set_display_name(self, user_id: UserId, display_name: str, now: float) -> None: ...

    async def record_login(self, user_id: UserId, now: float) -> None: ...


_ROLE_TITLES: Final = {Role.ADMIN: "Administrator", Role.CLINICIAN: "Clinician", Role.STAFF: "Staff"}


def default_display_name(role: Role) -> str:
    """The display name of an account that was given none (and of accounts made before display names)."""
    return _ROLE_TITLES.get(role, "Staff")


def normalize_username(raw: str) -> str:
    """NFKC + case-fold; refuse anything but 3-64 of ``a-z 0-9 . _ @ + -`` (so e-mail addresses work)."""
    username = unicodedata.normalize("NFKC", raw).strip().casefold()
    if not _USERNAME.fullmatch(username):
        raise BadRequest("a username has 3 to 64 characters: letters, digits and . _ @ + -")
    return username


@dataclass(frozen=True, slots=True)
class CreatedAccount:
    account: Account
    provisioning_uri: str | None  # shown once to the person enrolling; never stored or logged


class AccountChange(StrEnum):
    """Administrative changes, named as the audit log names them."""

    CREATED = "user.created"
    DISABLED = "user.disabled"
    ENABLED = "user.enabled"
    MFA_RESET = "user.mfa_reset"
    DISPLAY_NAME_CHANGED = "user.display_name_changed"


AccountChanges = Callable[[AccountChange, Account], Awaitable[None]]
# Ends every sign-in and live socket of the account, in every process (vIOP.auth.revocation).
RevokeAccount = Callable[[Account], Awaitable[None]]
# Changes after which nothing signed in before may go on (a password reset or role change belongs here).
REVOKING_CHANGES: Final = frozenset({AccountChange.DISABLED, AccountChange.MFA_RESET})


async def _no_audit(change: AccountChange, account: Account) -> None:
    return None


async def _no_revocation(account: Account) -> None:
    return None


class AccountAdmin:
    """What ``python -m vIOP users ...`` does: create, disable, reset MFA. No Redis needed."""

    def __init__(
        self,
        store: AccountStore,
        username_index: Callable[[str], bytes],
        hasher: PasswordHasher,
        *,
        require_totp: bool,
        changes: AccountChanges = _no_audit,
        clock: Callable[[], float] = time.time,
        revoke: RevokeAccount = _no_revocation,
    ) -> None:
        self._store = store
        self._index = username_index
        self._hasher = hasher
        self._require_totp = require_totp
        self._changes = changes
        self._clock = clock
        self._revoke = revoke

    async def _changed(self, change: AccountChange, account: Account) -> None:
        await self._changes(change, account)
        if change in REVOKING_CHANGES:
            await self._revoke(account)

    async def create(
        self, role: Role, username: str, password: str, *, with_totp: bool, display_name: str | None = None
    ) -> CreatedAccount:
        if role not in ACCOUNT_ROLES:
            raise BadRequest("accounts are for admin, clinician and staff; clients join from an invite")
        name = normalize_username(username)
        shown = default_display_name(role) if display_name is None else self._display_name(display_name, name)
        check_password_shape(password)
        if self._require_totp and not with_totp:
            raise BadRequest("every account needs a TOTP second factor in production: add --totp")
        secret = new_totp_secret() if with_totp else None
        password_hash = await self._hasher.hash_async(password)
        account = Account(
            new_user_id(), role, name, password_hash, secret, disabled=False, display_name=shown
        )
        await self._store.add(account, self._index(name), self._clock())
        await self._changes(AccountChange.CREATED, account)
        uri = provisioning_uri(secret, name) if secret is not None else None
        return CreatedAccount(account, uri)

    async def find(self, username: str) -> Account:
        account = await self._store.by_username_index(self._index(normalize_username(username)))
        if account is None:
            raise NotFound("no account with that username")
        return account

    async def set_disabled(self, username: str, disabled: bool) -> Account:
        account = replace(await self.find(username), disabled=disabled)
        await self._store.set_disabled(account.id, disabled, self._clock())
        await self._changed(AccountChange.DISABLED if disabled else AccountChange.ENABLED, account)
        return account

    async def set_display_name(self, username: str, display_name: str) -> Account:
        account = await self.find(username)
        account = replace(account, display_name=self._display_name(display_name, account.username))
        await self._store.set_display_name(account.id, account.display_name, self._clock())
        await self._changes(AccountChange.DISPLAY_NAME_CHANGED, account)
        return account

    @staticmethod
    def _display_name(raw: str, username: str) -> str:
        shown = check_display_name(raw)
        # The username is half of the credentials: a display name equal to it would hand it to every client.
        if shown.casefold() == username:
            raise BadRequest("a display name must not be the username: clients see it")
        return shown

    async def reset_mfa(self, username: str) -> CreatedAccount:
        """Replace the TOTP secret (a lost phone): the old authenticator stops working at once."""
        account = await self.find(username)
        secret = new_totp_secret()
        await self._store.set_totp_secret(account.id, secret, self._clock())
        await self._changed(AccountChange.MFA_RESET, account)
        return CreatedAccount(
            replace(account, totp_secret=secret), provisioning_uri(secret, account.username)
        )


class LoginOutcome(StrEnum):
    SUCCEEDED = "login_succeeded"
    FAILED = "login_failed"
    THROTTLED = "login_throttled"
    LOCKED = "account_locked"  # this failure locked the account


class FailureReason(StrEnum):
    NONE = "none"
    UNKNOWN_USER = "unknown_user"
    BAD_PASSWORD = "bad_password"  # noqa: S105 - a reason name, not a password
    DISABLED = "disabled"
    TOTP_MISSING = "totp_missing"
    TOTP_INVALID = "totp_invalid"
    TOTP_REPLAYED = "totp_replayed"
    MFA_NOT_ENROLLED = "mfa_not_enrolled"
    THROTTLED = "throttled"


@dataclass(frozen=True, slots=True)
class LoginEvent:
    """One audit record's worth: ids and reasons only. ``address`` is the client IP (encrypt it at rest)."""

    outcome: LoginOutcome
    reason: FailureReason
    user_id: UserId | None
    role: Role | None
    address: str


LoginEvents = Callable[[LoginEvent], Awaitable[None]]


class LoginFailed(Unauthenticated):
    def __init__(self) -> None:
        super().__init__("the username, password or code is incorrect")


async def _ignore(event: LoginEvent) -> None:
    return None


class Authenticator:
    """Password + TOTP sign-in, throttled; returns the :class:`Account` to issue a token for."""

    def __init__(
        self,
        store: AccountStore,
        username_index: Callable[[str], bytes],
        address_index: Callable[[str], bytes],
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        totp_replay: TotpReplayGuard,
        *,
        require_totp: bool,
        events: LoginEvents = _ignore,
        totp: Totp | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._username_index = username_index
        self._address_index = address_index
        self._hasher = hasher
        self._throttle = throttle
        self._replay = totp_replay
        self._require_totp = require_totp
        self._events = events
        self._totp = totp or Totp()
        self._clock = clock

    async def login(self, username: str, password: str, totp: str | None, address: str) -> Account:
        """Raise :class:`LoginFailed` (401), :class:`LoginThrottled` (429) or BadRequest (oversized input)."""
        if len(username) > 256 or len(password) > 1024 or (totp is not None and len(totp) > MAX_TOTP_CHARS):
            raise BadRequest("username, password or code is too long")
        # An unparseable username is just a wrong one: same path, same answer, same cost.
        try:
            name = normalize_username(username)
        except BadRequest:
            name = "\x00" + username
        try:
            attempt = await self._throttle.begin(self._username_index(name), self._address_index(address))
        except LoginThrottled:
            # Attributed to the account when the username names one: its owner's review shows the attack.
            known = await self._store.by_username_index(self._username_index(name))
            user_id, role = (known.id, known.role) if known is not None else (None, None)
            await self._events(
                LoginEvent(LoginOutcome.THROTTLED, FailureReason.THROTTLED, user_id, role, address)
            )
            raise
        account = await self._store.by_username_index(self._username_index(name))
        reason = await self._check(account, password, totp)
        if reason is FailureReason.NONE:
            assert account is not None
            await self._throttle.succeeded(attempt)
            await self._after_success(account, password)
            await self._events(LoginEvent(LoginOutcome.SUCCEEDED, reason, account.id, account.role, address))
            return account
        locked = self._throttle.failed(attempt).locked_now
        user_id, role = (account.id, account.role) if account is not None else (None, None)
        await self._events(LoginEvent(LoginOutcome.FAILED, reason, user_id, role, address))
        if locked:
            await self._events(LoginEvent(LoginOutcome.LOCKED, reason, user_id, role, address))
        raise LoginFailed()

    async def _check(self, account: Account | None, password: str, totp: str | None) -> FailureReason:
        if account is None:
            await self._hasher.verify_dummy_async(password)
            return FailureReason.UNKNOWN_USER
        if not await self._hasher.verify_async(account.password_hash, password):
            return FailureReason.BAD_PASSWORD
        if account.disabled:
            return FailureReason.DISABLED
        if account.totp_secret is None:
            return FailureReason.MFA_NOT_ENROLLED if self._require_totp else FailureReason.NONE
        if not totp:
            return FailureReason.TOTP_MISSING
        step = self._totp.match_step(account.totp_secret, totp, self._clock())
        if step is None:
            return FailureReason.TOTP_INVALID
        if not await self._replay.claim(account.id, step):
            return FailureReason.TOTP_REPLAYED
        return FailureReason.NONE

    async def _after_success(self, account: Account, password: str) -> None:
        now = self._clock()
        if self._hasher.needs_rehash(account.password_hash):
            await self._store.set_password_hash(account.id, await self._hasher.hash_async(password), now)
        await self._store.record_login(account.id, now)

    async def set_own_display_name(self, user_id: UserId, display_name: str) -> Account:
        """Issue 15: a signed-in account renames itself (what clients and colleagues see in rooms, from the
        next room entry). BadRequest for a name that is blank, too long, invisible or the username itself."""
        account = await self.active_account(user_id)
        account = replace(account, display_name=AccountAdmin._display_name(display_name, account.username))
        await self._store.set_display_name(account.id, account.display_name, self._clock())
        return account

    async def account_named(self, username: str) -> Account | None:
        """The account a colleague names by its username (adding a co-host), or None (also for a username
        that is not one). No sign-in happens: nothing is throttled or audited here; the caller audits."""
        try:
            name = normalize_username(username)
        except BadRequest:
            return None
        return await self._store.by_username_index(self._username_index(name))

    async def active_account(self, user_id: UserId) -> Account:
        """For every authenticated request: a disabled (or deleted) account's tokens stop working at once."""
        account = await self._store.get(user_id)
        if account is None or account.disabled:
            raise Unauthenticated("the account is disabled")
        return account
