"""uvicorn's HTTP protocol with the two limits it lacks: a deadline for receiving a whole request, and a cap
on the bytes of a request's headers.

Measured on uvicorn 0.54 with httptools 0.9: a connection that sends part of its headers (or nothing at
all) and then trickles a byte now and then is kept open forever (slow-loris: enough of them exhaust the
process's file descriptors), and one endless header line is buffered whole (13 MB fed, no refusal).
uvicorn's own ``timeout_keep_alive`` only covers the idle time *between* requests.

Here, from a connection's first byte (or the first byte of its next request on a kept-alive connection),
the whole request, headers and body, must arrive within ``request_deadline`` seconds, or the connection is
closed (with a 408 if the headers were still incomplete). Header bytes beyond ``max_header_bytes`` get a
431 and a close. A WebSocket upgrade hands the connection over once its handshake request is complete;
from then on the signaling endpoint's own limits apply (join within 15 s, heartbeat timeout, frame cap).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vIOP.errors import error_body

REQUEST_DEADLINE_SECONDS: Final = 10.0
MAX_HEADER_BYTES: Final = 64 * 1024
_END_OF_HEADERS: Final = b"\r\n\r\n"
_REASONS: Final = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _refusal(status: int, code: str, message: str) -> bytes:
    body = error_body(code, message)
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\ncache-control: no-store\r\n\r\n" % (status, _REASONS[status], len(body))
    )
    return head + body


class GuardedHttpProtocol(HttpToolsProtocol):
    request_deadline: float = REQUEST_DEADLINE_SECONDS
    max_header_bytes: int = MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._headers_done = False
        self._header_bytes = 0
        self._tail = b""  # the last bytes seen, so an end of headers split across reads is still found

    # --- asyncio.Protocol --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._headers_done:
            window = self._tail + data
            end = window.find(_END_OF_HEADERS)
            self._header_bytes += (
                len(data) if end < 0 else max(0, end + len(_END_OF_HEADERS) - len(self._tail))
            )
            self._tail = window[-(len(_END_OF_HEADERS) - 1) :]
            if self._header_bytes > self.max_header_bytes:
                self._refuse(431, "headers_too_large", f"request headers over {self.max_header_bytes} bytes")
                return
        super().data_received(data)

    # --- httptools parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._headers_done = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._headers_done, self._header_bytes, self._tail = False, 0, b""

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    # --- the deadline ------------------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_deadline, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._headers_done:
            self.transport.close()  # the handler sees the client go away; nothing may be written over it
        else:
            self._refuse(
                408, "request_timeout", f"the request did not arrive within {self.request_deadline:g} s"
            )

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_refusal(status, code, message))
            self.transport.close()


def guarded_protocol(
    request_deadline: float = REQUEST_DEADLINE_SECONDS, max_header_bytes: int = MAX_HEADER_BYTES
) -> type[GuardedHttpProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type(
        "GuardedHttpProtocol",
        (GuardedHttpProtocol,),
        {"request_deadline": request_deadline, "max_header_bytes": max_header_bytes},
    )
