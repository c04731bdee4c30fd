"""HTTP API tests: a real uvicorn server, real accounts in its SQL store, an httpx client on its socket."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select

from tests.auth.support import CHEAP_ARGON2
from tests.support import LiveServer
from vIOP.auth.accounts import Account, AccountAdmin
from vIOP.auth.passwords import PasswordHasher
from vIOP.auth.permissions import Role
from vIOP.session.services import Services
from vIOP.storage.accounts_sql import SqlAccountStore
from vIOP.storage.schema import audit_log

PASSWORD = "correct horse battery staple"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True, slots=True)
class User:
    account: Account
    token: str
    password: str = PASSWORD

    @property
    def id(self) -> str:
        return self.account.id

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class Api:
    live: LiveServer
    http: httpx.AsyncClient
    _admin: AccountAdmin | None = field(default=None, init=False)

    @property
    def services(self) -> Services:
        services = self.live.app.state.services
        assert isinstance(services, Services)
        return services

    def admin(self) -> AccountAdmin:
        """Accounts made as ``users create`` makes them, in the server's own store (cheap argon2 cost)."""
        if self._admin is None:
            ring = self.services.storage.keys
            self._admin = AccountAdmin(
                SqlAccountStore(self.services.storage.db, ring),
                lambda username: ring.blind_index("username", username),
                PasswordHasher(CHEAP_ARGON2),
                require_totp=False,
            )
        return self._admin

    async def account(
        self,
        role: Role,
        username: str | None = None,
        password: str = PASSWORD,
        display_name: str | None = None,
    ) -> Account:
        name = username or f"{role.value}.{secrets.token_hex(4)}"
        created = await self.admin().create(role, name, password, with_totp=False, display_name=display_name)
        return created.account

    async def user(self, role: Role) -> User:
        """An account with an access token issued by the server's own token service (no sign-in cost)."""
        account = await self.account(role)
        issued = await self.services.tokens.issue(account.id, account.role)
        return User(account, issued.token)

    async def create_room(
        self, user: User, kind: str = "group", title: str = "Tuesday group"
    ) -> dict[str, Any]:
        response = await self.http.post(
            "/api/v1/rooms", json={"kind": kind, "title": title}, headers=user.headers
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def create_invite(self, user: User, room_id: str, **fields: Any) -> dict[str, Any]:
        payload = {"display_name": "Jordan", **fields}
        response = await self.http.post(
            f"/api/v1/rooms/{room_id}/invites", json=payload, headers=user.headers
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def audit_rows(self, action: str, outcome: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``action`` (only those with ``outcome`` when given: refusals share the action name)."""
        query = select(audit_log).where(audit_log.c.action == action)
        if outcome is not None:
            query = query.where(audit_log.c.outcome == outcome)
        async with self.services.storage.db.read() as conn:
            result = await conn.execute(query.order_by(audit_log.c.seq))
            return [dict(row._mapping) for row in result]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    """The uniform error body, nothing else in it."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="vIOP"'
    error: dict[str, str] = body["error"]
    return error
