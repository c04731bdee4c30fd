"""Benchmark: relay server CPU and delivered frame rate, vIOP pass-through vs aiortc's re-encoding relay.

    .venv/bin/python bench/relay.py [--subscribers 1,4,8,12] [--group 13] [--warmup 3] [--seconds 6]

Scenarios, each against a fresh server process (``bench/relay_server.py``) so its CPU can be read from
/proc: one publisher and N subscribers at 640x360 30 fps VP8 (~500 kbit/s) + Opus, for the vIOP relay and
for stock aiortc ``MediaRelay`` (decode once, re-encode per subscriber) as the baseline, and (``--queued``)
for vIOP with aiortc's own sender loop instead of its direct RTP writer; then a group of
``--group`` people all-to-all at 640x360 15 fps on the vIOP relay; then the N=8 pass-through run again
under cProfile to find the cost per forwarded packet. Clients all run in this process: they send media
encoded once (replayed packets) and count RTP packets (a video frame ends with the marker bit) without
decoding, so the figures measure the server. Loopback only; bounded by ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import pstats
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vIOP.client.media import (
    EncodedClip,
    FrameCounter,
    MediaPeer,
    PreEncodedTrack,
    ReceiveMode,
    encode_opus_clip,
    encode_video_clip,
)

HERE = Path(__file__).resolve().parent
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
LOOPBACK = ("127.0.0.1",)


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return float(sum(values) - idle), float(sum(values))


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


@dataclass
class Result:
    name: str
    server: str
    publishers: int
    subscribers: int
    fps_target: int
    server_cpu: float  # % of one core
    client_cpu: float
    fps_mean: float  # received by the clients
    fps_min: float
    fps_sent: float  # sent by the relay per video leg (vIOP only): tells a slow relay from starved clients
    fps_in: float  # complete frames per publisher out of the relay's jitter buffers (vIOP only)
    audio_pps_mean: float
    packets_forwarded_per_s: float
    us_per_packet: float  # server CPU per forwarded packet, everything included
    rss_mb: float
    threads: int
    machine_busy: float  # % of all cores busy (anything: this benchmark and everyone else)
    notes: list[str] = field(default_factory=list)


class ServerProcess:
    def __init__(self, mode: str, folder: Path) -> None:
        self.mode = mode
        self.socket = folder / f"{mode}.sock"
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "relay_server.py"), mode, str(self.socket)],
            env={**os.environ, "PYTHONPATH": str(HERE.parent)},
        )
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.replies: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self.offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.audio_only: list[tuple[float, str, str | None]] = []  # (monotonic time, pid, reason or None)

    async def start(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.proc.kill()
                raise RuntimeError(f"{self.mode} server did not start")
            try:
                self.reader, self.writer = await asyncio.open_unix_connection(str(self.socket), limit=1 << 22)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                await asyncio.sleep(0.05)
        self._pump = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while line := await self.reader.readline():
            message = json.loads(line)
            if message["op"] == "offer":
                self.offers.put_nowait(message)
                continue
            if message["op"] == "audio_only":
                self.audio_only.append((time.monotonic(), message["pid"], message["reason"]))
                continue
            future = self.replies.pop((message["op"], message.get("pid", "")), None)
            if future is not None and not future.done():
                future.set_result(message)

    async def request(self, message: dict[str, Any], reply: str, timeout: float = 60.0) -> dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self.replies[(reply, message.get("pid", ""))] = future
        self.send(message)
        return await asyncio.wait_for(future, timeout)

    def send(self, message: dict[str, Any]) -> None:
        self.writer.write(json.dumps(message).encode() + b"\n")

    def cpu(self) -> float:
        return process_cpu(self.proc.pid)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.send({"op": "quit"})
            await self.writer.drain()
        try:
            await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 10)
        except TimeoutError:
            self.proc.kill()
        self._pump.cancel()


@dataclass
class Clips:
    video: dict[int, EncodedClip]
    audio: EncodedClip


async def run_scenario(
    name: str,
    mode: str,
    *,
    publishers: int,
    subscribers: int,
    fps: int,
    clips: Clips,
    warmup: float,
    seconds: float,
    folder: Path,
    profile_to: Path | None = None,
    spy_to: Path | None = None,
) -> Result:
    server = ServerProcess(mode, folder)
    peers: dict[str, MediaPeer] = {}
    notes: list[str] = []
    await server.start()
    answering = asyncio.get_running_loop().create_task(_answer_offers(server, peers))
    try:
        pub_ids = [f"pt_pub{i}" for i in range(publishers)]
        sub_ids = [f"pt_sub{i}" for i in range(subscribers)]
        for pid in pub_ids + sub_ids:
            peer = MediaPeer(host_addresses=LOOPBACK, receive=ReceiveMode.PACKETS, counter=FrameCounter())
            if pid in pub_ids:
                peer.publish(PreEncodedTrack(clips.audio), PreEncodedTrack(clips.video[fps]))
            else:
                peer.receive_only("audio", "video")
            peers[pid] = peer
            offer = await peer.create_offer()
            reply = await server.request({"op": "join", "pid": pid, "sdp": offer}, "answer")
            await peer.accept_answer(reply["sdp"])

        viewers = [p for p in peers if p in sub_ids or publishers > 1]
        expected = {v: [p for p in pub_ids if p != v] for v in viewers}
        deadline = time.monotonic() + 30
        while not all(peers[v].counter.frames(p, "video") for v, ps in expected.items() for p in ps):
            if time.monotonic() > deadline:
                notes.append("not every viewer received video within 30 s")
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(warmup)

        if profile_to is not None:
            await server.request({"op": "profile_start"}, "profiling")
        before = await _snapshot(server, peers, expected)
        spy = _start_spy(server.proc.pid, spy_to, seconds) if spy_to is not None else None
        await asyncio.sleep(seconds)
        after = await _snapshot(server, peers, expected)
        if spy is not None:
            await asyncio.wait_for(asyncio.to_thread(spy.wait), seconds + 30)
        if profile_to is not None:
            await server.request({"op": "profile_stop", "path": str(profile_to)}, "profiled", timeout=60)
        return _result(name, mode, publishers, subscribers, fps, before, after, notes)
    finally:
        answering.cancel()
        await server.stop()
        for peer in peers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(peer.close(), 5)


def _py_spy() -> str | None:
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


def _start_spy(pid: int, output: Path, seconds: float) -> subprocess.Popen[bytes]:
    """Sample the server's stacks (all threads, idle excluded) without stopping it."""
    spy = _py_spy()
    assert spy is not None
    command = [
        spy,
        "record",
        "--format",
        "raw",
        "-o",
        str(output),
        "-d",
        str(max(1, int(seconds))),
        "-r",
        "200",
    ]
    return subprocess.Popen([*command, "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _answer_offers(server: ServerProcess, peers: dict[str, MediaPeer]) -> None:
    while True:
        message = await server.offers.get()
        answer = await peers[message["pid"]].accept_offer(message["sdp"])
        server.send({"op": "answer", "pid": message["pid"], "sdp": answer})


@dataclass
class Snapshot:
    wall: float
    server_cpu: float
    client_cpu: float
    machine: tuple[float, float]
    video: dict[tuple[str, str], int]
    audio: dict[tuple[str, str], int]
    stats: dict[str, Any]


async def _snapshot(
    server: ServerProcess, peers: dict[str, MediaPeer], expected: dict[str, list[str]]
) -> Snapshot:
    stats = await server.request({"op": "stats"}, "stats")
    return Snapshot(
        wall=time.monotonic(),
        server_cpu=server.cpu(),
        client_cpu=time.process_time(),
        machine=machine_busy(),
        video={(v, p): peers[v].counter.frames(p, "video") for v, ps in expected.items() for p in ps},
        audio={(v, p): peers[v].counter.frames(p, "audio") for v, ps in expected.items() for p in ps},
        stats=stats,
    )


def _per_second(a: Snapshot, b: Snapshot, count: str, per: str, wall: float) -> float:
    return (b.stats[count] - a.stats[count]) / wall / max(1, b.stats[per])


def _result(
    name: str,
    mode: str,
    publishers: int,
    subscribers: int,
    fps: int,
    a: Snapshot,
    b: Snapshot,
    notes: list[str],
) -> Result:
    wall = b.wall - a.wall
    rates = [(b.video[k] - a.video[k]) / wall for k in a.video]
    audio = [(b.audio[k] - a.audio[k]) / wall for k in a.audio]
    packets = (b.stats["packets_sent"] - a.stats["packets_sent"]) / wall
    server_cpu = (b.server_cpu - a.server_cpu) / wall
    return Result(
        name=name,
        server=mode,
        publishers=publishers,
        subscribers=subscribers,
        fps_target=fps,
        server_cpu=100 * server_cpu,
        client_cpu=100 * (b.client_cpu - a.client_cpu) / wall,
        fps_mean=sum(rates) / len(rates) if rates else 0.0,
        fps_min=min(rates, default=0.0),
        fps_sent=_per_second(a, b, "video_frames_sent", "video_legs", wall),
        fps_in=_per_second(a, b, "video_frames_in", "video_publishers", wall),
        audio_pps_mean=sum(audio) / len(audio) if audio else 0.0,
        packets_forwarded_per_s=packets,
        us_per_packet=1e6 * server_cpu / packets if packets else float("nan"),
        rss_mb=b.stats["rss_kb"] / 1024,
        threads=b.stats["threads"],
        machine_busy=100 * (b.machine[0] - a.machine[0]) / max(1.0, b.machine[1] - a.machine[1]),
        notes=notes,
    )


def print_table(results: list[Result]) -> None:
    header = (
        f"{'scenario':<26} {'server':<11} {'srv CPU%':>8} {'fps mean':>8} {'fps min':>7} {'fps in':>6} {'fps sent':>8} {'audio/s':>7} "
        f"{'pkt out/s':>9} {'us/pkt':>6} {'RSS MB':>6} {'thr':>4} {'client CPU%':>11} {'machine busy%':>13}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.name:<26} {r.server:<11} {r.server_cpu:8.1f} {r.fps_mean:8.1f} {r.fps_min:7.1f} "
            f"{(f'{r.fps_in:.1f}' if r.server != 'stock' else '-'):>6} "
            f"{(f'{r.fps_sent:.1f}' if r.server != 'stock' else '-'):>8} "
            f"{r.audio_pps_mean:7.1f} {r.packets_forwarded_per_s:9.0f} {r.us_per_packet:6.1f} "
            f"{r.rss_mb:6.0f} {r.threads:4d} {r.client_cpu:11.1f} {r.machine_busy:13.0f}"
            + (f"  ({'; '.join(r.notes)})" if r.notes else "")
        )


def print_marginal(results: list[Result]) -> None:
    sweep = sorted(
        (r for r in results if r.server == "viop" and r.publishers == 1), key=lambda r: r.subscribers
    )
    if len(sweep) >= 2 and sweep[-1].packets_forwarded_per_s > sweep[0].packets_forwarded_per_s:
        lo, hi = sweep[0], sweep[-1]
        slope = (
            (hi.server_cpu - lo.server_cpu) / 100 / (hi.packets_forwarded_per_s - lo.packets_forwarded_per_s)
        )
        print(
            f"\nmarginal cost per forwarded packet (vIOP, N={lo.subscribers}->{hi.subscribers}): "
            f"{slope * 1e6:.1f} us of server CPU"
        )
    for n in (8,):
        ours = next(
            (r for r in results if r.server == "viop" and r.publishers == 1 and r.subscribers == n), None
        )
        base = next((r for r in results if r.server == "stock" and r.subscribers == n), None)
        if ours and base and ours.server_cpu > 0:
            print(
                f"N={n}: stock {base.server_cpu:.0f}% at {base.fps_mean:.1f} fps vs vIOP {ours.server_cpu:.0f}% "
                f"at {ours.fps_mean:.1f} fps -> {base.server_cpu / ours.server_cpu:.1f}x less CPU"
            )


GROUPS = {  # first match wins; keys are matched against "function (file:line)" / "file:line(function)"
    "SRTP protect/unprotect (pylibsrtp)": ("pylibsrtp",),
    "UDP sendto (on loopback it includes the kernel's delivery)": ("sendto",),
    "vIOP fan-out and RTP writing": ("fanout.py", "DirectSender", "_vp8_payloads", "_ntp_now"),
    "aiortc receiver (RTP parse, stats, REMB estimate, jitter buffer)": (
        "rtcrtpreceiver",
        "jitterbuffer",
        "rate.py",
        "rtp.py",
        "clock.py",
        "_EncodedOutput",
    ),
    "aiortc sender (RTCP here; the whole send loop when queued)": ("rtcrtpsender", "codecs/"),
    "UDP receive, DTLS/ICE demux": ("_read_ready", "recvfrom", "rtcdtlstransport", "aioice"),
    "event loop": ("asyncio", "selectors", "events.py"),
}
IDLE_LEAVES = ("Condition.wait", "EpollSelector.select", "Event.wait")  # blocked, not running


def print_profile(path: Path, result: Result, seconds: float, unprofiled: Result | None) -> None:
    """Where the event-loop thread's CPU goes, as shares scaled to the unprofiled cost per packet.

    cProfile with a CPU timer adds a fixed cost to every call, so absolute profiled times are inflated;
    the shares are what it is good for.
    """
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    forwarded = result.packets_forwarded_per_s * seconds
    real = (unprofiled or result).us_per_packet
    print(
        f"\nprofile of the N=8 vIOP server's event-loop thread, {seconds:.0f} s, {forwarded:.0f} packets forwarded; "
        f"{real:.1f} us/packet all-in without the profiler (profiled: {1e6 * total / forwarded:.0f}):"
    )
    rows = []
    for (filename, line, func), (_, calls, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tottime, calls, f"{filename}:{line}({func})"))
    print_groups({where: tottime for tottime, _, where in rows}, real)
    print("  top functions by own time (share of the profiled thread):")
    for tottime, calls, where in sorted(rows, reverse=True)[:15]:
        short = where.split("site-packages/")[-1].split("/work/main/")[-1]
        print(f"    {100 * tottime / total:5.1f}%  {calls / forwarded:6.2f} calls/pkt  {short}")


def print_groups(weights: dict[str, float], real_us: float) -> None:
    """Sum ``weights`` (per function) into :data:`GROUPS`; print shares and their part of ``real_us``."""
    total = sum(weights.values())
    grouped = dict.fromkeys([*GROUPS, "other"], 0.0)
    for where, weight in weights.items():
        grouped[next((g for g, keys in GROUPS.items() if any(k in where for k in keys)), "other")] += weight
    for group, weight in grouped.items():
        print(f"  {group:<66} {100 * weight / total:5.1f}%  ~{real_us * weight / total:5.1f} us/packet")


def print_spy(path: Path, unprofiled: Result | None, profiled: Result) -> None:
    """Where the server's CPU goes, from py-spy's stack samples (no per-call overhead, unlike cProfile)."""
    leaves: dict[str, int] = {}
    idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            leaf = stack.split(";")[-1]
            if leaf.startswith(IDLE_LEAVES):
                idle += int(count)
                continue
            leaves[leaf] = leaves.get(leaf, 0) + int(count)
    total = sum(leaves.values())
    if not total:
        print("\npy-spy collected no samples")
        return
    real = (unprofiled or profiled).us_per_packet
    print(
        f"\nsampled profile (py-spy, 500 Hz) of the N=8 vIOP server: {total} busy samples ({idle} idle left out); "
        f"{real:.1f} us/packet all-in unprofiled:"
    )
    print_groups({leaf: float(count) for leaf, count in leaves.items()}, real)
    print("  top functions (share of samples, where the sample was taken):")
    for leaf, count in sorted(leaves.items(), key=lambda kv: -kv[1])[:15]:
        short = leaf.split("site-packages/")[-1].replace("/work/main/", "")
        print(f"    {100 * count / total:5.1f}%  {short}")


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Hard bound on the whole run (a stuck connection must not hang the benchmark)."""
    import signal

    def expire(*_: object) -> None:
        raise TimeoutError(f"benchmark exceeded --max-seconds {seconds:.0f}")

    signal.signal(signal.SIGALRM, expire)
    signal.alarm(int(seconds))
    try:
        yield
    finally:
        signal.alarm(0)


async def main(args: argparse.Namespace) -> None:
    print("command:", " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/relay.py", *sys.argv[1:]]))
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}")
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other work shares these cores)")
    started = time.monotonic()
    clips = Clips(
        video={30: encode_video_clip(640, 360, 30, 4.0), 15: encode_video_clip(640, 360, 15, 4.0)},
        audio=encode_opus_clip(4.0),
    )
    print(f"clips encoded once in {time.monotonic() - started:.1f} s; replayed for every scenario\n")
    counts = [int(n) for n in args.subscribers.split(",") if n]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="viop-bench-") as tmp:
        folder = Path(tmp)
        common = {"clips": clips, "warmup": args.warmup, "seconds": args.seconds, "folder": folder}
        for mode in ("viop", "stock"):
            for n in counts:
                name = f"1 pub -> {n} subs, 30 fps"
                results.append(await run_scenario(name, mode, publishers=1, subscribers=n, fps=30, **common))
                print_table(results[-1:])
        for n in [int(x) for x in args.queued.split(",") if x]:
            name = f"1 pub -> {n} subs, 30 fps"
            results.append(
                await run_scenario(name, "viop-queued", publishers=1, subscribers=n, fps=30, **common)
            )
            print_table(results[-1:])
        if args.group:
            name = f"{args.group} all-to-all, 15 fps"
            results.append(
                await run_scenario(name, "viop", publishers=args.group, subscribers=0, fps=15, **common)
            )
            print_table(results[-1:])
        print()
        print_table(results)
        print_marginal(results)
        plain = next(
            (r for r in results if r.server == "viop" and r.publishers == 1 and r.subscribers == 8), None
        )
        if args.profile and _py_spy() is not None:
            samples = folder / "relay.spy"
            spied = await run_scenario(
                "profile (py-spy)", "viop", publishers=1, subscribers=8, fps=30, spy_to=samples, **common
            )
            print_table([spied])
            print_spy(samples, plain, spied)
        elif args.profile:
            profile = folder / "relay.prof"
            profiled = await run_scenario(
                "profile (cProfile)",
                "viop",
                publishers=1,
                subscribers=8,
                fps=30,
                profile_to=profile,
                **common,
            )
            print_table([profiled])
            print_profile(profile, profiled, args.seconds, plain)
    print(f"\ntotal {time.monotonic() - started:.0f} s")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", default="1,4,8,12", help="comma-separated N for the 1 -> N sweep")
    parser.add_argument(
        "--queued", default="8", help="N for vIOP with aiortc's sender loop instead of the direct RTP writer"
    )
    parser.add_argument("--group", type=int, default=13, help="all-to-all group size (0 to skip)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=6.0, help="measurement window per scenario")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    with time_limit(arguments.max_seconds):
        asyncio.run(main(arguments))
