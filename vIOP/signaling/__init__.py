"""The signaling wire, without a web framework: every message as a msgspec Struct (``messages.py``), the one
frame codec, live connections with their send queues, the inbound rate limit and resume tokens.

The WebSocket endpoint that drives them is ``vIOP/api/ws_signal.py`` (edge) and ``vIOP/session/signal.py`` (what each message means); the protocol is docs/PROTOCOL.md.
"""
