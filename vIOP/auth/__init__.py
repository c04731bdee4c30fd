"""Who someone is and what they may do: workforce accounts (password + TOTP), access tokens and their
sessions, invite links (clients have no account), single-use WebSocket tickets, sign-in throttling,
revocations, the room records permission checks read, and the role x action permission matrix.

The policies live here (what a ticket means, MACs, time rules); each store is a ``Protocol`` beside the
policy that uses it, implemented in ``vIOP/storage/`` (Redis: ``redis_auth.py``; SQL: ``*_sql.py``). The
``users`` commands are in ``vIOP/cli/users.py``.
"""
