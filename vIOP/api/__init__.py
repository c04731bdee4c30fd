"""The Starlette edge: HTTP routes, both WebSocket endpoints (accept, guard, receive pump), middleware,
error rendering, OpenAPI. What a request or a socket message means is the application's
(``vIOP/session``): each decoded signaling message is handed to its ``SignalSession`` in one call.
"""
