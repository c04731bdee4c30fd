"""Signaling over WebSockets: wire messages, codec, live connections and resume tokens."""
