"""Who someone is and what they may do: workforce accounts (password + TOTP), access tokens and their
sessions, invite links (clients have no account), single-use WebSocket tickets, sign-in throttling, the role
x action permission matrix, and the ``users`` commands.
"""
