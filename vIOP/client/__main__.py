"""``python -m vIOP.client``: join a room as a client (invite) or clinician (login), publish synthetic
media, count what arrives, print a JSON summary (``received``: per publisher and kind, frame rate, freezes,
audio missing and gaps, RTX repairs and bytes per second, as ``vIOP/client/receive_stats.py`` reports).

    python -m vIOP.client --server http://127.0.0.1:8000 --room rm_... --invite vinv_... --seconds 20
    echo "$PASSWORD" | python -m vIOP.client --server ... --room rm_... --username dr.lee --password-stdin \\
        --admit-all --seconds 60

Exit status: 0 after the run, 1 when the server refuses (one line on stderr), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Sequence

import httpx
from aiortc import AudioStreamTrack, MediaStreamTrack

from vIOP.client.media import ReceiveMode, SyntheticVideoTrack
from vIOP.client.session import HttpApi, RoomClient
from vIOP.client.signaling import ConnectRefused, SignalingClosed
from vIOP.signaling import messages as m


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vIOP.client", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="the server's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--room", required=True, help="room id (rm_...)")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--invite", help="a client's invite token (vinv_...); exchanged once, like the join page"
    )
    who.add_argument("--username", help="a clinician's username (password on stdin)")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    parser.add_argument("--totp", help="the current TOTP code, when the account has one")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to stay (default 20)")
    parser.add_argument("--admit-all", action="store_true", help="as a clinician, admit everyone who knocks")
    parser.add_argument("--no-media", action="store_true", help="signaling only: publish nothing")
    parser.add_argument("--host-address", action="append", default=[], help="ICE host address to advertise")
    return parser


def _tracks() -> Sequence[MediaStreamTrack]:
    return (AudioStreamTrack(), SyntheticVideoTrack(width=320, height=180, fps=15))


def _received(client: RoomClient) -> dict[str, dict[str, object]]:
    """The receive report per ``publisher/kind``: frame rate, freezes, audio missing and gaps, RTX, bytes."""
    if client.media is None:
        return {}
    return {
        f"{publisher}/{kind}": {
            name: round(value, 3) if isinstance(value, float) else value
            for name, value in dataclasses.asdict(report).items()
            if name not in ("publisher", "kind")
        }
        for (publisher, kind), report in client.media.receive_report().items()
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    api = HttpApi(args.server)
    try:
        if args.invite:
            # The link's token is spent by this, as the join page spends it: only this run holds the seat.
            bearer = await api.exchange_invite(args.invite)
        else:
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else ""
            bearer = await api.login(args.username, password, args.totp)
        client = RoomClient(
            api.ticket_source(bearer, args.room),
            origin=args.server.rstrip("/"),
            tracks=tuple if args.no_media else _tracks,
            host_addresses=tuple(args.host_address),
            receive=ReceiveMode.ENCODED,
        )
        try:
            welcome = await client.join()
            assert client.signaling is not None
            # The server closes a silent socket after a few intervals (1001): a client that stays must ping.
            client.signaling.start_heartbeat(welcome.heartbeat_seconds)
            deadline = time.monotonic() + args.seconds
            if welcome.role is m.Role.CLIENT:
                await client.wait_for(lambda msg: isinstance(msg, m.Admitted | m.Denied), args.seconds)
                if client.latest(m.Denied):
                    return {"participant_id": welcome.participant_id, "outcome": "denied"}
            if not args.no_media:
                await client.start_media()
            while (left := deadline - time.monotonic()) > 0:
                if args.admit_all and client.latest(m.Lobby) and client.latest(m.Lobby).waiting:  # type: ignore[union-attr]
                    await client.send(m.AdmitAll())
                    client.messages.clear()
                await asyncio.sleep(min(0.5, left))
                if client.closed is not None:
                    break
            return {
                "participant_id": welcome.participant_id,
                "role": welcome.role.value,
                "frames": {
                    f"{publisher}/{kind}": count.frames
                    for (publisher, kind), count in client.counter.streams.items()
                },
                "received": _received(client),
                "closed": client.closed.close_code if client.closed else None,
            }
        finally:
            await client.close()
    finally:
        await api.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.username and not args.password_stdin:
        print("vIOP.client: --username needs --password-stdin", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(run(args))
    except httpx.HTTPStatusError as exc:
        print(f"vIOP.client: the server refused: HTTP {exc.response.status_code}", file=sys.stderr)
        return 1
    except (httpx.HTTPError, ConnectRefused, SignalingClosed, TimeoutError, RuntimeError) as exc:
        print(f"vIOP.client: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
