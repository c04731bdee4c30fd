"""The Starlette edge: HTTP routes, both WebSocket endpoints, middleware, error rendering, OpenAPI; for now
also the use-case logic of a signaling socket (``ws_signal.py``), the projection of room events onto the
wire (``room_delivery.py``) and the process's live loops (``live.py``).
"""
