"""Storage: every Redis and SQL access. The Redis and SQL implementations of the room ports (room store,
presence, event bus, attendance) and of resume tokens; of the auth ports (``redis_auth.py``: tickets, token
sessions, login throttles, TOTP replay, revocations, ticket rate limits); the SQL room directory, accounts,
invites, consents and break-glass grants; the audit log and its one recorder (``audit_outbox.py``);
encryption at rest and key management; schema migrations; opening Redis (``redis_client.py``).

The layers above hold a Redis client only to hand it to these stores (``lint-imports``: nothing outside this
package imports ``redis``). The commands that operate on storage live in ``vIOP/cli/``.
"""
