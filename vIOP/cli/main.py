"""Command line: ``python -m vIOP serve|config|...``; the other subcommands come from the modules beside
this one (``users``, ``storage``, ``attendance``, ``compliance``, ``webhooks``, ``tracks``).

Every failure is one clear line on stderr and a non-zero exit: 2 for configuration and usage errors,
1 for everything else. Never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from vIOP.cli import attendance, compliance, nodes, storage, tracks, users, webhooks
from vIOP.errors import ConfigError, VIOPError
from vIOP.logging import configure_logging
from vIOP.settings import MAX_WORKERS, Settings, describe, load_settings, parse_workers

# Subcommand groups: (module, add_parser function, run function).
_GROUPS: tuple[tuple[ModuleType, str, str], ...] = (
    (storage, "add_parsers", "run"),
    (users, "add_users_parser", "run_users"),
    (attendance, "add_parsers", "run"),
    (compliance, "add_parsers", "run"),
    (nodes, "add_parsers", "run"),
    (webhooks, "add_parsers", "run"),
    (tracks, "add_parsers", "run"),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"vIOP: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _port(raw: str) -> str:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {raw!r}: must be a number from 1 to 65535") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value}: must be from 1 to 65535")
    return str(value)


def _workers(raw: str) -> str:
    try:
        parse_workers(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid worker count: {exc}") from None
    return raw


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings.log_level)
    if settings.workers > 1:
        from vIOP.supervisor import serve_workers

        return serve_workers(settings)
    from vIOP.server import serve

    return serve(settings)


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    rows = describe(settings)
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {value or '-'}  ({source})")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[..., int]]]:
    parser = _Parser(prog="python -m vIOP", description="vIOP: virtual IOP backend")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    handlers: dict[str, Callable[..., int]] = {}

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port to listen on (default 8000)")
    serve.add_argument(
        "--workers",
        type=_workers,
        help=f"server processes sharing the port, supervised (default 1; auto: one per core; at most {MAX_WORKERS})",
    )
    handlers["serve"] = _cmd_serve

    sub.add_parser("config", help="print the effective configuration, secrets masked")
    handlers["config"] = _cmd_config

    for module, add_name, run_name in _GROUPS:
        names = getattr(module, add_name)(sub)
        for name in names if isinstance(names, list | tuple) else [names]:
            handlers[name] = getattr(module, run_name)
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    overrides = {k: v for k in ("host", "port", "workers") if (v := getattr(args, k, None)) is not None}
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        print(f"vIOP: invalid configuration: {exc.message}", file=sys.stderr)
        return 2
    try:
        return handlers[args.command](args, settings)
    except VIOPError as exc:
        print(f"vIOP: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
