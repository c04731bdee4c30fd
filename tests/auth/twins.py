"""In-memory twins of the auth stores, for fast service tests.

The same contract tests (``test_store_contracts.py``) run against these and the SQL stores on real SQLite.
"""

from __future__ import annotations

from dataclasses import replace

from vIOP.auth.accounts import Account
from vIOP.errors import Conflict, NotFound
from vIOP.ids import UserId


class MemoryAccountStore:
    def __init__(self) -> None:
        self._by_id: dict[UserId, Account] = {}
        self._index: dict[bytes, UserId] = {}
        self.logins: dict[UserId, float] = {}

    async def add(self, account: Account, username_index: bytes, now: float) -> None:
        if username_index in self._index or account.id in self._by_id:
            raise Conflict("that username is taken")
        self._by_id[account.id] = account
        self._index[username_index] = account.id

    async def by_username_index(self, username_index: bytes) -> Account | None:
        user_id = self._index.get(username_index)
        return self._by_id.get(user_id) if user_id is not None else None

    async def get(self, user_id: UserId) -> Account | None:
        return self._by_id.get(user_id)

    async def set_password_hash(self, user_id: UserId, password_hash: str, now: float) -> None:
        self._by_id[user_id] = replace(self._existing(user_id), password_hash=password_hash)

    async def set_disabled(self, user_id: UserId, disabled: bool, now: float) -> None:
        self._by_id[user_id] = replace(self._existing(user_id), disabled=disabled)

    async def set_totp_secret(self, user_id: UserId, secret: bytes | None, now: float) -> None:
        self._by_id[user_id] = replace(self._existing(user_id), totp_secret=secret)

    async def record_login(self, user_id: UserId, now: float) -> None:
        self._existing(user_id)
        self.logins[user_id] = now

    def _existing(self, user_id: UserId) -> Account:
        account = self._by_id.get(user_id)
        if account is None:
            raise NotFound("no such account")
        return account
