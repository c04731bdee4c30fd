"""One frozen Settings object, read once from ``VIOP_*`` environment variables and an optional TOML file.

Precedence: environment > TOML file (``VIOP_CONFIG``, else ``config/viop.toml`` when present) > defaults.
Every setting is declared once in ``_FIELDS``: its parser, default and whether it is a secret (masked by
``python -m vIOP config``). Anything invalid raises :class:`ConfigError` naming the setting.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from vIOP.cluster.nodes import valid_node_id
from vIOP.errors import ConfigError
from vIOP.media.egress import DEFAULT_MAX_REMOTE_CANDIDATES, parse_network  # pure: no aiortc behind it

Environment = Literal["development", "production"]

# Variables with this prefix belong to the test suite, not to the server.
_TEST_PREFIX = "VIOP_TEST_"
_CONFIG_FILE_VAR = "VIOP_CONFIG"
DEFAULT_CONFIG_FILE = Path("config/viop.toml")


@dataclass(frozen=True, slots=True)
class Settings:
    env: Environment = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("var")
    redis_url: str | None = None
    # Redis Sentinel (instead of VIOP_REDIS_URL): where the sentinels are and which master they watch.
    redis_sentinels: tuple[str, ...] = ()
    redis_sentinel_master: str | None = None
    redis_sentinel_password: str | None = None  # the sentinels' own AUTH password
    redis_password: str | None = None  # the master's AUTH password (with sentinels; a URL carries its own)
    database_url: str | None = None
    key_file: Path | None = None
    audit_checkpoint_file: Path | None = None
    keys: str | None = None
    allowed_origins: tuple[str, ...] = ()
    public_url: str | None = None
    # Reverse proxies (CIDRs) whose X-Forwarded-For / X-Forwarded-Proto are believed: the client address
    # that login throttling and audit rows use. Empty: none (the peer's address is the client's).
    trusted_proxies: tuple[str, ...] = ()
    log_level: str = "info"
    ws_max_message_bytes: int = 64 * 1024
    ice_servers: tuple[str, ...] = ()
    ice_host_addresses: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl_seconds: int = 4 * 3600
    reconnect_grace_seconds: int = 60
    # The last host left a started room without ending it: clients may stay this long, then it ends.
    host_absent_grace_seconds: int = 600
    heartbeat_seconds: int = 10
    presence_expiry_seconds: int = 30
    token_idle_seconds: int = 15 * 60
    token_lifetime_seconds: int = 12 * 3600
    login_max_failures: int = 5
    signal_rate_per_second: float = 20.0
    shutdown_timeout_seconds: int = 8
    # --- relay egress (remote ICE candidates; vIOP/media/egress.py, docs/MEDIA.md "Remote candidates") ---
    ice_remote_allow: tuple[str, ...] = ()  # private CIDRs clients may be on (loopback: the next setting)
    ice_allow_loopback: bool | None = None  # unset: allowed in development, refused in production
    ice_max_remote_candidates: int = (
        DEFAULT_MAX_REMOTE_CANDIDATES  # per peer connection (its offer, answers and trickled candidates)
    )
    break_glass_minutes: int = 60
    retention_attendance_days: int = 2190
    retention_audit_days: int = 2190
    retention_room_days: int = 400
    retention_invite_days: int = 400
    # --- cluster (docs/SCALING.md): this process as a node, its room capacity, heartbeats and leases ---
    node_id: str | None = None  # unset: a random id per start
    node_capacity: int = 200  # most rooms whose media this node carries
    node_heartbeat_seconds: int = 2
    node_ttl_seconds: int = 6  # a node silent this long is dead
    room_lease_seconds: int = 10  # a room's media lease lives this long without a renewal
    # Node processes `serve` runs on its one port (vIOP/supervisor.py); 1: the single process, no supervisor.
    workers: int = 1
    # --- webhooks (issue 16, docs/PROGRAM.md "Webhooks") ---
    # Receivers on loopback or private addresses: unset, allowed in development, refused in production.
    webhook_allow_private: bool | None = None
    webhook_timeout_seconds: int = 10  # a receiver slower than this is a failed attempt (retried later)
    webhook_concurrency: int = 8  # deliveries in flight at once per process (one per subscription at most)
    # --- no-shows (issue 16, docs/PROGRAM.md "No-shows and expected vs present") ---
    no_show_minutes: int = 10  # an expected client not here this long after the start is a no-show
    source: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None and not self.redis_sentinels

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'viop.db').absolute()}"

    @property
    def origin(self) -> str:
        """The server's own origin: the default allowed origin in development."""
        if self.public_url:
            parts = urlsplit(self.public_url)
            return f"{parts.scheme}://{parts.netloc}"
        return f"http://{self.host}:{self.port}"

    @property
    def effective_allowed_origins(self) -> tuple[str, ...]:
        if self.allowed_origins:
            return self.allowed_origins
        own = self.origin
        # The same server reached as localhost or 127.0.0.1 is the same origin to a developer.
        if self.host in ("127.0.0.1", "localhost"):
            return (f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}")
        return (own,)

    @property
    def effective_ice_allow_loopback(self) -> bool:
        """Tests and single-machine development run every peer on 127.0.0.1; production never should."""
        return self.env != "production" if self.ice_allow_loopback is None else self.ice_allow_loopback

    @property
    def effective_webhook_allow_private(self) -> bool:
        """Tests and development run receivers on 127.0.0.1; production must not reach its own network."""
        return self.env != "production" if self.webhook_allow_private is None else self.webhook_allow_private

    @property
    def own_ip_addresses(self) -> tuple[str, ...]:
        """The server's addresses named in its configuration (bind host, public URL) besides its ICE host
        addresses: remote candidates naming them are refused."""
        hosts = [self.host]
        if self.public_url:
            hosts.append(urlsplit(self.public_url).hostname or "")
        own = []
        for host in hosts:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                continue  # a name: resolving it here would be a network call at start-up
            if not address.is_unspecified:
                own.append(str(address))
        return tuple(dict.fromkeys(own))

    def with_overrides(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


# ---- parsers: each returns the typed value or raises ValueError with a human reason ----------------


def _str(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _env(raw: str) -> str:
    if raw not in ("development", "production"):
        raise ValueError("must be 'development' or 'production'")
    return raw


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return parse


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _path(raw: str) -> Path:
    return Path(_str(raw))


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parts = urlsplit(raw.strip())
        if parts.scheme not in schemes:
            raise ValueError(f"must be a URL with scheme {' or '.join(schemes)}")
        if parts.scheme != "unix" and not parts.netloc and not parts.scheme.startswith("sqlite"):
            raise ValueError("must name a host")
        if parts.scheme == "unix" and not parts.path:
            raise ValueError("must name a socket path")
        return raw.strip()

    return parse


def _host_port(raw: str) -> str:
    """``host:port`` (``[v6]:port`` for an IPv6 address), e.g. a sentinel's address."""
    value = raw.strip()
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not host:port (e.g. 10.0.0.5:26379)")
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:26379")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    return value


def split_host_port(value: str) -> tuple[str, int]:
    """A value checked by ``_host_port`` as (host, port), IPv6 brackets removed."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _origin(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"{raw!r} is not an origin like https://clinic.example.org")
    return f"{parts.scheme}://{parts.netloc}"


def _list(item: Callable[[str], str]) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        if raw.lstrip().startswith("["):
            raise ValueError(_not_json_list(raw))
        return tuple(item(part) for part in raw.split(",") if part.strip())

    return parse


def _not_json_list(raw: str) -> str:
    """The fix for a list written as JSON (``["a", "b"]``), which would otherwise fail on its first item
    with a message about the brackets and quotes."""
    try:
        decoded = json.loads(raw)
    except ValueError:
        decoded = None
    if isinstance(decoded, list):
        items = [str(value).strip() for value in decoded]
    else:  # not valid JSON, e.g. [127.0.0.1] or ['a', 'b']
        items = [part.strip().strip("\"'").strip() for part in raw.strip().strip("[]").split(",")]
    example = ",".join(value for value in items if value)
    if not example:
        return "must be a comma-separated list, not JSON: for none, leave it empty or unset"
    return f"must be a comma-separated list, not JSON: write {example} (no brackets, no quotes)"


def _ice_server(raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("stun:", "turn:", "turns:")):
        raise ValueError(f"{value!r} is not a stun:, turn: or turns: URL")
    return value


def _ip(raw: str) -> str:
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise ValueError(f"{raw.strip()!r} is not an IP address") from None


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {raw.strip()!r}")


def _cidr(raw: str) -> str:
    return str(parse_network(raw))


def _log_level(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("debug", "info", "warning", "error"):
        raise ValueError("must be debug, info, warning or error")
    return value


def _node_id(raw: str) -> str:
    value = raw.strip()
    if not valid_node_id(value):
        raise ValueError("must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


MAX_WORKERS = 64  # a sane bound: each worker is a whole server process (~100 MB, its own Redis pool)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity: a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parse_workers(raw: str) -> int:
    """``auto`` (one per available core, at most MAX_WORKERS) or a whole number from 1 to MAX_WORKERS."""
    value = raw.strip().lower()
    if value == "auto":
        return min(available_cores(), MAX_WORKERS)
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"{raw.strip()!r} is not a number: give 1 to {MAX_WORKERS}, or auto") from None
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"{count} is out of range: give 1 to {MAX_WORKERS}, or auto (one per core)")
    return count


@dataclass(frozen=True, slots=True)
class _Field:
    parse: Callable[[str], Any]
    secret: bool = False


_FIELDS: dict[str, _Field] = {
    "env": _Field(_env),
    "host": _Field(_str),
    "port": _Field(_int_range(1, 65535)),
    "data_dir": _Field(_path),
    "redis_url": _Field(_url(("redis", "rediss", "unix")), secret=True),
    "redis_sentinels": _Field(_list(_host_port)),
    "redis_sentinel_master": _Field(_str),
    "redis_sentinel_password": _Field(_str, secret=True),
    "redis_password": _Field(_str, secret=True),
    "database_url": _Field(_url(("sqlite+aiosqlite", "postgresql+asyncpg", "postgresql")), secret=True),
    "key_file": _Field(_path),
    "keys": _Field(_str, secret=True),
    "audit_checkpoint_file": _Field(_path),
    "allowed_origins": _Field(_list(_origin)),
    "public_url": _Field(_url(("http", "https"))),
    "trusted_proxies": _Field(_list(_cidr)),
    "log_level": _Field(_log_level),
    "ws_max_message_bytes": _Field(_int_range(1024, 16 * 1024 * 1024)),
    "ice_servers": _Field(_list(_ice_server)),
    "ice_host_addresses": _Field(_list(_ip)),
    "turn_secret": _Field(_str, secret=True),
    "turn_ttl_seconds": _Field(_int_range(60, 24 * 3600)),
    "reconnect_grace_seconds": _Field(_int_range(1, 3600)),
    "host_absent_grace_seconds": _Field(_int_range(1, 24 * 3600)),
    "heartbeat_seconds": _Field(_int_range(1, 300)),
    "presence_expiry_seconds": _Field(_int_range(2, 900)),
    "token_idle_seconds": _Field(_int_range(60, 24 * 3600)),
    "token_lifetime_seconds": _Field(_int_range(300, 7 * 24 * 3600)),
    "login_max_failures": _Field(_int_range(1, 100)),
    "signal_rate_per_second": _Field(_positive_float),
    "shutdown_timeout_seconds": _Field(_int_range(1, 120)),
    # relay egress
    "ice_remote_allow": _Field(_list(_cidr)),
    "ice_allow_loopback": _Field(_bool),
    "ice_max_remote_candidates": _Field(_int_range(1, 200)),
    "break_glass_minutes": _Field(_int_range(5, 24 * 60)),
    "retention_attendance_days": _Field(_int_range(30, 36500)),
    "retention_audit_days": _Field(_int_range(2190, 36500)),  # HIPAA: 6 years at least
    "retention_room_days": _Field(_int_range(30, 36500)),
    "retention_invite_days": _Field(_int_range(1, 36500)),
    "node_id": _Field(_node_id),
    "node_capacity": _Field(_int_range(1, 100_000)),
    "node_heartbeat_seconds": _Field(_int_range(1, 60)),
    "node_ttl_seconds": _Field(_int_range(2, 600)),
    "room_lease_seconds": _Field(_int_range(2, 3600)),
    "workers": _Field(parse_workers),
    "webhook_allow_private": _Field(_bool),
    "webhook_timeout_seconds": _Field(_int_range(1, 120)),
    "webhook_concurrency": _Field(_int_range(1, 256)),
    "no_show_minutes": _Field(_int_range(1, 240)),
}

SECRET_FIELDS = frozenset(name for name, spec in _FIELDS.items() if spec.secret)


def _read_toml(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(_CONFIG_FILE_VAR, f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(_CONFIG_FILE_VAR, f"cannot read {path}: {exc}") from None
    out: dict[str, str] = {}
    for key, value in data.items():
        if key not in _FIELDS:
            raise ConfigError(f"{path}:{key}", "unknown setting")
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = str(value).lower()
        out[key] = str(value)
    return out


def load_settings(environ: Mapping[str, str] | None = None, **overrides: str) -> Settings:
    """Read the configuration once. ``overrides`` (e.g. from CLI flags) win over everything."""
    environ = os.environ if environ is None else environ
    raw: dict[str, str] = {}
    source: dict[str, str] = {}

    config_path = environ.get(_CONFIG_FILE_VAR)
    if config_path:
        file_values = _read_toml(Path(config_path))
    elif DEFAULT_CONFIG_FILE.is_file():
        config_path = str(DEFAULT_CONFIG_FILE)
        file_values = _read_toml(DEFAULT_CONFIG_FILE)
    else:
        file_values = {}
    for key, value in file_values.items():
        raw[key], source[key] = value, f"file {config_path}"

    for var, value in environ.items():
        if not var.startswith("VIOP_") or var.startswith(_TEST_PREFIX) or var == _CONFIG_FILE_VAR:
            continue
        key = var[len("VIOP_") :].lower()
        if key not in _FIELDS:
            raise ConfigError(var, "unknown setting (see `python -m vIOP config` for the list)")
        raw[key], source[key] = value, "env"

    for key, value in overrides.items():
        raw[key], source[key] = value, "command line"

    values: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            values[key] = _FIELDS[key].parse(value)
        except ValueError as exc:
            raise ConfigError(_setting_name(key, source[key]), str(exc)) from None

    settings = Settings(**values, source=source)
    _check_consistency(settings)
    return settings


def worker_node_id(node_id: str, worker: int) -> str:
    """The node id of worker ``worker`` (1-based) when ``VIOP_NODE_ID`` names the whole server."""
    return f"{node_id}-{worker}"


def _setting_name(key: str, where: str) -> str:
    return f"VIOP_{key.upper()}" if where in ("env", "command line") else f"{key} ({where})"


def _check_consistency(s: Settings) -> None:
    if s.presence_expiry_seconds <= s.heartbeat_seconds:
        raise ConfigError("VIOP_PRESENCE_EXPIRY_SECONDS", "must be longer than VIOP_HEARTBEAT_SECONDS")
    if s.node_ttl_seconds < 2 * s.node_heartbeat_seconds:
        raise ConfigError(
            "VIOP_NODE_TTL_SECONDS",
            "must be at least twice VIOP_NODE_HEARTBEAT_SECONDS (one late heartbeat "
            "must not count as a dead node)",
        )
    if s.room_lease_seconds < 2 * s.node_heartbeat_seconds:
        raise ConfigError(
            "VIOP_ROOM_LEASE_SECONDS",
            "must be at least twice VIOP_NODE_HEARTBEAT_SECONDS (leases are renewed once per heartbeat)",
        )
    if s.workers > 1 and s.node_id is not None and not valid_node_id(worker_node_id(s.node_id, s.workers)):
        raise ConfigError("VIOP_NODE_ID", "too long for several workers (each adds -<worker number>)")
    if s.token_lifetime_seconds < s.token_idle_seconds:
        raise ConfigError("VIOP_TOKEN_LIFETIME_SECONDS", "must be at least VIOP_TOKEN_IDLE_SECONDS")
    _check_redis(s)
    if s.env != "production":
        return
    # Production refuses every embedded default: the data and its keys must live apart.
    required = {
        "VIOP_REDIS_URL or VIOP_REDIS_SENTINELS": s.redis_url or s.redis_sentinels,
        "VIOP_DATABASE_URL": s.database_url,
        "VIOP_ALLOWED_ORIGINS": s.allowed_origins or None,
        "VIOP_KEY_FILE or VIOP_KEYS": s.key_file or s.keys,
    }
    for name, value in required.items():
        if not value:
            raise ConfigError(name, "is required when VIOP_ENV=production (embedded defaults are refused)")
    if s.key_file is not None:
        key_path, data_path = s.key_file.absolute(), s.data_dir.absolute()
        if key_path.is_relative_to(data_path):
            raise ConfigError("VIOP_KEY_FILE", "must be outside the data folder in production")


def _check_redis(s: Settings) -> None:
    """One way to reach Redis: a URL, or sentinels with the master's name (and nothing of one with the
    other)."""
    if s.redis_sentinels:
        if s.redis_url is not None:
            raise ConfigError("VIOP_REDIS_URL", "set either VIOP_REDIS_URL or VIOP_REDIS_SENTINELS, not both")
        if s.redis_sentinel_master is None:
            raise ConfigError(
                "VIOP_REDIS_SENTINEL_MASTER",
                "is required with VIOP_REDIS_SENTINELS (the monitored master's name)",
            )
        return
    for name, value in (
        ("VIOP_REDIS_SENTINEL_MASTER", s.redis_sentinel_master),
        ("VIOP_REDIS_SENTINEL_PASSWORD", s.redis_sentinel_password),
        ("VIOP_REDIS_PASSWORD", s.redis_password),
    ):
        if value is not None:
            raise ConfigError(
                name, "only applies with VIOP_REDIS_SENTINELS (a VIOP_REDIS_URL carries its own)"
            )


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(VIOP_NAME, shown value, source) for every setting, secrets masked."""
    rows = []
    for key in _FIELDS:
        value = getattr(settings, key)
        if key == "ice_allow_loopback" and value is None:  # unset: derived from env, shown as in effect
            value = settings.effective_ice_allow_loopback
        if key == "webhook_allow_private" and value is None:
            value = settings.effective_webhook_allow_private
        if isinstance(value, tuple):
            shown = ",".join(value)
        elif isinstance(value, bool):
            shown = str(value).lower()
        elif value is None:
            shown = ""
        else:
            shown = str(value)
        if key in SECRET_FIELDS and shown:
            shown = "********"
        rows.append((f"VIOP_{key.upper()}", shown, settings.source.get(key, "default")))
    return rows
