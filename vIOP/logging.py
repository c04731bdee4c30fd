"""JSON log lines on stderr with a request id, behind a redaction layer.

Two guarantees keep PHI and credentials out of logs:
- structure: only allow-listed ``extra`` fields are emitted (ids, status codes, timings), never free-form
  objects; the access log writes the path without its query string; other libraries' lines keep their
  wording but not their text arguments (uvicorn formats the peer's address into every WebSocket handshake
  line, and a client's IP address is personal data), see :func:`message_of`;
- redaction: every emitted string passes through :func:`redact`, which removes ticket/token/password
  parameters, bearer credentials, JWT-shaped strings and any value registered with :func:`register_secret`
  (e.g. display names a process handles, so even a stray exception message cannot carry them).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import weakref
from collections import OrderedDict
from typing import Any, Final

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

REDACTED: Final = "[redacted]"
_SENSITIVE_PARAMS = r"ticket|token|access_token|invite|invite_token|resume_token|password|totp|secret|code"
_Sub = tuple[re.Pattern[str], str]
_PATTERNS: tuple[_Sub, ...] = (
    # key=value in query strings or free text
    (re.compile(rf"(?i)\b({_SENSITIVE_PARAMS})=([^&\s\"']+)"), rf"\1={REDACTED}"),
    # "key": "value" in JSON-ish text
    (
        re.compile(rf'(?i)("(?:{_SENSITIVE_PARAMS}|display_name|name|message|username)"\s*:\s*)"[^"]*"'),
        rf'\1"{REDACTED}"',
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # Bare invite tokens, tickets and resume tokens, wherever they appear.
    (re.compile(r"\b(?:vinv|vtk|rt)_[A-Za-z0-9_-]{20,}"), REDACTED),
)

# Values this process must never log (display names, invite labels...). Bounded: oldest forgotten first.
_SECRETS: OrderedDict[str, None] = OrderedDict()
_SECRETS_MAX = 10_000
_secret_re: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Make ``value`` unloggable in this process (case-sensitive exact substring)."""
    global _secret_re
    if len(value) < 3 or value in _SECRETS:
        return
    _SECRETS[value] = None
    if len(_SECRETS) > _SECRETS_MAX:
        _SECRETS.popitem(last=False)
    _secret_re = None


def _secret_pattern() -> re.Pattern[str] | None:
    global _secret_re
    if _secret_re is None and _SECRETS:
        alternatives = sorted(_SECRETS, key=len, reverse=True)
        _secret_re = re.compile("|".join(re.escape(v) for v in alternatives))
    return _secret_re


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    secrets_re = _secret_pattern()
    if secrets_re is not None:
        text = secrets_re.sub(REDACTED, text)
    return text


# Extra fields a log call may attach; anything else is dropped.
ALLOWED_EXTRA: Final = frozenset(
    {
        "method",
        "path",
        "status",
        "duration_ms",
        "route",
        "event",
        "room_id",
        "participant_id",
        "user_id",
        "client_id",
        "role",
        "code",
        "close_code",
        "count",
        "pid",
        "port",
        "host",
        "kind",
        "setting",
        "dependency",
        "reason",
        "node_id",
        "worker",  # serve --workers: a worker's number, its exit status, the wait before its restart
        "exit_code",
        "restart_seconds",
    }
)


OMITTED: Final = "[omitted]"
_NUMBERS: Final = (int, float)


def message_of(record: logging.LogRecord) -> str:
    """The record's message. vIOP's own lines are formatted as written (vIOP code chooses what it logs);
    another library's line gets its numeric arguments but every other argument replaced by ``[omitted]``:
    ``'%s - "WebSocket %s" [accepted]'`` from uvicorn becomes ``[omitted] - "WebSocket [omitted]" [accepted]``
    whatever address and path it was given."""
    if not record.args or record.name == "vIOP" or record.name.startswith("vIOP."):
        return record.getMessage()
    given = record.args if isinstance(record.args, tuple) else (record.args,)
    kept = tuple(a if isinstance(a, _NUMBERS) and not isinstance(a, bool) else OMITTED for a in given)
    try:
        return str(record.msg) % kept
    except (TypeError, ValueError, KeyError):  # e.g. %d given [omitted], or named arguments
        return str(record.msg)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": request_id_var.get(),
            "msg": redact(message_of(record)),
        }
        for key in ALLOWED_EXTRA:
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, exc = record.exc_info[0], record.exc_info[1]
            # Type and redacted message only: frames can hold PHI in locals' reprs.
            out["exc"] = f"{exc_type.__name__}: {redact(str(exc))}"
        return json.dumps(out, ensure_ascii=True, default=str)  # one record per line for any reader


_handlers: weakref.WeakSet[logging.Handler] = weakref.WeakSet()


def configure_logging(level: str = "info", stream: Any = None) -> logging.Handler:
    """Route every logger (uvicorn's included) to one JSON handler on stderr."""
    handler: logging.Handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if old in _handlers:
            root.removeHandler(old)
    root.addHandler(handler)
    _handlers.add(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # uvicorn's own access log prints the raw query string: ours replaces it (see vIOP/api/middleware.py).
    logging.getLogger("uvicorn.access").disabled = True
    # aioice/aiortc log candidate addresses at debug/info, httpcore connection addresses at debug (its
    # messages come pre-formatted, so message_of cannot hold them back): keep them quiet.
    for name in ("aioice", "aiortc", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Alembic announces every plugin it sets up and every migration step at info on each start-up: noise
    # in an operator's log. Its warnings and errors still come through.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return handler
