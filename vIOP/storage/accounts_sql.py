"""The SQL :class:`~vIOP.auth.accounts.AccountStore`: the ``users`` table; username, display name and TOTP
secret encrypted.

All three fields are under the ``sys.fields`` data key with AAD = (users, column, user id); the username is found
through its blind index (``username_index``, computed by the caller), never by its plaintext. Accounts made
before display names existed (migration 0002) have none stored and show their role's title.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from vIOP.auth.accounts import Account, default_display_name
from vIOP.auth.permissions import Role
from vIOP.errors import Conflict, NotFound
from vIOP.ids import UserId
from vIOP.storage.crypto import FieldRef, KeyRing
from vIOP.storage.database import Database
from vIOP.storage.schema import users


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class SqlAccountStore:
    __slots__ = ("_db", "_ring")

    def __init__(self, db: Database, ring: KeyRing) -> None:
        self._db = db
        self._ring = ring

    async def add(self, account: Account, username_index: bytes, now: float) -> None:
        cipher = self._ring.system_fields
        secret = account.totp_secret
        values = {
            "id": account.id,
            "role": account.role.value,
            "username_index": username_index,
            "username": cipher.encrypt(FieldRef("users", "username", account.id), account.username),
            "display_name": cipher.encrypt(self._display_name_ref(account.id), account.display_name),
            "password_hash": account.password_hash,
            "totp_secret": None if secret is None else cipher.encrypt(self._secret_ref(account.id), secret),
            "mfa_enabled": secret is not None,
            "disabled": account.disabled,
            "failed_logins": 0,
            "created_at": _at(now),
            "updated_at": _at(now),
        }
        try:
            async with self._db.begin() as conn:
                await conn.execute(insert(users).values(**values))
        except IntegrityError:
            raise Conflict("that username is taken") from None

    async def by_username_index(self, username_index: bytes) -> Account | None:
        return await self._one(users.c.username_index == username_index)

    async def get(self, user_id: UserId) -> Account | None:
        return await self._one(users.c.id == user_id)

    async def set_password_hash(self, user_id: UserId, password_hash: str, now: float) -> None:
        await self._update(user_id, now, password_hash=password_hash, password_changed_at=_at(now))

    async def set_disabled(self, user_id: UserId, disabled: bool, now: float) -> None:
        await self._update(user_id, now, disabled=disabled)

    async def set_totp_secret(self, user_id: UserId, secret: bytes | None, now: float) -> None:
        blob = None if secret is None else self._ring.system_fields.encrypt(self._secret_ref(user_id), secret)
        await self._update(user_id, now, totp_secret=blob, mfa_enabled=secret is not None)

    async def set_display_name(self, user_id: UserId, display_name: str, now: float) -> None:
        blob = self._ring.system_fields.encrypt(self._display_name_ref(user_id), display_name)
        await self._update(user_id, now, display_name=blob)

    async def record_login(self, user_id: UserId, now: float) -> None:
        await self._update(user_id, now, last_login_at=_at(now))

    @staticmethod
    def _display_name_ref(user_id: str) -> FieldRef:
        return FieldRef("users", "display_name", user_id)

    @staticmethod
    def _secret_ref(user_id: str) -> FieldRef:
        return FieldRef("users", "totp_secret", user_id)

    async def _update(self, user_id: UserId, now: float, **values: Any) -> None:
        async with self._db.begin() as conn:
            result = await conn.execute(
                update(users).where(users.c.id == user_id).values(updated_at=_at(now), **values)
            )
        if result.rowcount == 0:
            raise NotFound("no such account")

    async def _one(self, condition: Any) -> Account | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(users).where(condition))).first()
        return None if row is None else await self._account(row)

    async def _account(self, row: Row[Any]) -> Account:
        ring = self._ring
        username = await ring.decrypt_text(FieldRef("users", "username", row.id), row.username)
        secret = None
        if row.totp_secret is not None:
            secret = await ring.decrypt_field(self._secret_ref(row.id), row.totp_secret)
        role = Role(row.role)
        shown = default_display_name(role)
        if row.display_name is not None:
            shown = await ring.decrypt_text(self._display_name_ref(row.id), row.display_name)
        return Account(
            id=UserId(row.id),
            role=role,
            username=username,
            password_hash=row.password_hash,
            totp_secret=secret,
            disabled=bool(row.disabled),
            display_name=shown,
        )
