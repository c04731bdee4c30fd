"""Storage: the Redis and SQL implementations of the room ports (room store, presence, event bus, attendance)
and of resume tokens; the SQL room directory, accounts and invites; the audit log; encryption at rest and
key management; schema migrations; the ``db``, ``keys``, ``audit``, ``attendance`` and ``clients`` commands.

Not yet everything that touches Redis: ``vIOP/auth/`` keeps its tickets, token sessions, throttles and TOTP
replay records there itself, and ``vIOP/api/ticket_rate.py`` its rate limits.
"""
