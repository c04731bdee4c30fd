"""Shared by the hostile-input and security suites: the server's own log lines, captured as JSON records.

The server runs in the test's process, so ``vIOP.logging.configure_logging`` with a StringIO stream sees
every record it writes (uvicorn's included). The global logging state it changes is put back afterwards.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from vIOP.logging import configure_logging

_TOUCHED = ("uvicorn", "uvicorn.error", "uvicorn.access", "aioice", "aiortc")
# Words that mark a record as an unexpected fault, whatever its level.
FAULT_WORDS = ("unhandled", "failed", "traceback", "exception")


@dataclass
class ServerLogs:
    stream: io.StringIO = field(default_factory=io.StringIO)

    def lines(self) -> list[str]:
        # JSON Lines end at "\n" only: str.splitlines() would also split at U+2028, U+0085... that
        # json.dumps(ensure_ascii=False) leaves unescaped inside strings.
        return [line for line in self.stream.getvalue().split("\n") if line]

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]

    def faults(self) -> list[dict[str, Any]]:
        """Records at error level or above, and any record naming a failure or carrying an exception."""
        return [
            r
            for r in self.records()
            if r["level"] in ("error", "critical")
            or "exc" in r
            or any(word in r["msg"].lower() for word in FAULT_WORDS)
        ]


@contextmanager
def captured_server_logs(level: str = "info") -> Iterator[ServerLogs]:
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved = {
        name: (
            list(lg.handlers),
            lg.propagate,
            lg.level,
            lg.disabled,
        )
        for name in _TOUCHED
        for lg in [logging.getLogger(name)]
    }
    logs = ServerLogs()
    configure_logging(level, stream=logs.stream)
    try:
        yield logs
    finally:
        root.handlers[:] = saved_root[0]
        root.setLevel(saved_root[1])
        for name, (handlers, propagate, lvl, disabled) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers[:] = handlers
            lg.propagate = propagate
            lg.setLevel(lvl)
            lg.disabled = disabled
