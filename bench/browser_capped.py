"""Benchmark: a real Chromium subscriber behind a tbf-capped veth link in a 4-person session (issue 13).

    PYTHONPATH=$PWD .venv/bin/python bench/browser_capped.py [--cap-kbps 300] [--capped 12] [--json]

Needs root. It re-runs itself under ``unshare --net`` (a fresh namespace with only loopback), where the
server (in-process uvicorn, a real redis-server on a unix socket, SQLite) and three aiortc publishers
(simulcast, 640x360 + 320x180, as the web client sends) run;
Chromium runs in a second namespace joined by a veth pair (10.200.0.1/30 <-> 10.200.0.2/30) whose server ->
browser direction is capped with ``tc qdisc ... tbf`` (``bench/scenarios/netns_link.py``), then lifted.
It prints, per window (clean, the first seconds under the cap, the rest of the cap, after lifting it) and
per publisher, what Chromium's ``getStats()`` saw: concealed audio, audio packets/s and lost, video frames
decoded per second, frame height, freezes; plus what crossed the link and what the tbf dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.scenarios.capped_browser import Report, guarantee_problems, run_capped_session, server_overrides
from bench.scenarios.live_server import free_port, run_live_server, test_settings
from bench.scenarios.netns_link import VethLink, missing_prerequisites, only_loopback_here
from vIOP.storage.embedded_redis import EmbeddedRedis

ISOLATED = "VIOP_BENCH_ISOLATED"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cap-kbps", type=int, default=300, help="the cap, kbit/s (default 300)")
    parser.add_argument("--clean", type=float, default=5.0, help="seconds measured before the cap")
    parser.add_argument("--settle", type=float, default=3.0, help="first seconds under the cap, apart")
    parser.add_argument(
        "--capped", type=float, default=12.0, help="seconds measured under the cap after that"
    )
    parser.add_argument(
        "--recover-within", type=float, default=15.0, help="how long to wait for video after lifting the cap"
    )
    parser.add_argument("--after", type=float, default=4.0, help="seconds measured after recovery")
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    return parser


def _print(report: Report) -> None:
    names = {pid: f"pub{n + 1}" for n, pid in enumerate(report.publishers)}
    print(f"cap {report.cap_bps // 1000} kbit/s; publishers: {', '.join(names.values())}")
    for window in report.windows.values():
        print(
            f"\n[{window.name}] {window.seconds} s: Chromium received {window.received_kbps} kbit/s; the link "
            f"carried {window.link_sent_kbps} kbit/s, tbf dropped {window.link_dropped_packets} packets; "
            f"Chromium sent {window.nacks_sent} NACKs, {window.plis_sent} PLIs"
        )
        for pid, name in names.items():
            print(
                f"  {name}: audio concealed {window.audio_concealed_percent[pid]} %, "
                f"{window.audio_packets_per_s[pid]} pkt/s, lost {window.audio_lost[pid]}; video "
                f"{window.video_fps[pid]} fps at {window.video_frame_height[pid]}p, lost "
                f"{window.video_lost[pid]}, freezes {window.video_freezes[pid]}"
            )
    recovered = "never" if report.recovered_after_s is None else f"{report.recovered_after_s} s"
    print(f"\nvideo from every publisher decoding again after the cap was lifted: {recovered}")
    low = "never" if report.low_after_s is None else f"after {report.low_after_s} s"
    high = "never" if report.high_after_s is None else f"{report.high_after_s} s"
    print(f"a low layer (180p) decoding under the cap: {low} ({report.low_publishers} publishers)")
    print(f"every publisher on the high layer (360p) again after the lift: {high}")
    print(f"audio_only messages at the browser: {report.audio_only_messages or 'none'}")
    print(f"browser phases: {report.phases}; peer connections made: {report.peer_connections}")
    print(f"relay's layer changes for Chromium (cap lifted at {report.lifted_at}):")
    print("\n".join(f"  {line}" for line in report.layer_changes) or "  (none)")
    problems = guarantee_problems(report)
    print(
        "\nissue 13 guarantees: " + ("all held" if not problems else "NOT held:\n  " + "\n  ".join(problems))
    )


async def _run(args: argparse.Namespace) -> Report:
    with tempfile.TemporaryDirectory(prefix="viop-bench-capped-") as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis", appendonly=False)
        redis.start()
        try:
            with VethLink.open() as link:
                port = free_port()
                data = Path(tmp) / "var"
                data.mkdir()
                settings = test_settings(data, redis.url, **server_overrides(port))
                async with run_live_server(settings) as live:
                    log = (lambda _line: None) if args.json else (lambda line: print(f"# {line}", flush=True))
                    return await run_capped_session(
                        live, link, cap_bps=args.cap_kbps * 1000, clean_s=args.clean,
                        settle_s=args.settle, capped_s=args.capped, after_s=args.after,
                        recover_within_s=args.recover_within, log=log,
                    )  # fmt: skip
        finally:
            redis.stop()


def main() -> int:
    args = _parser().parse_args()
    problems = missing_prerequisites()
    if problems:
        print("bench/browser_capped.py: " + "; ".join(problems), file=sys.stderr)
        return 1
    if os.environ.get(ISOLATED) != "1" or not only_loopback_here():
        # Our own namespace: traffic never leaves it, and the veth pair is created inside it.
        inner = ["sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, *sys.argv]
        env = {**os.environ, ISOLATED: "1"}
        return subprocess.run(["unshare", "--net", "--", *inner], env=env, check=False).returncode
    report = asyncio.run(_run(args))
    if args.json:
        print(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        print(f"\ncommand: {shlex.join(['bench/browser_capped.py', *sys.argv[1:]])}")
        _print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
