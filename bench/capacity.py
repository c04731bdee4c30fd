"""Benchmark: how many concurrent 13-person groups W worker nodes carry at full frame rate.

    .venv/bin/python bench/capacity.py --workers W [--groups 1,2,3,4] [--group-size 13] [--per-process 13]
                                       [--fps 15] [--width 640 --height 360 --bitrate 500000]
                                       [--warmup 5] [--seconds 20] [--hold 0.95] [--max-seconds 900]

What runs, all on loopback:
- one real redis-server (unix socket) and one SQLite database, shared by W ``python -m vIOP serve``
  processes, each its own node (``VIOP_NODE_ID`` ``worker-<i>``) on its own port (:func:`start_workers`:
  the one function to change for ``serve --workers W`` on one port);
- groups of ``--group-size`` people (a clinician host and invited guests, admitted by the host), in client
  processes of ``--per-process`` participants (``bench/capacity_group.py``); every participant publishes
  VP8 (``--width`` x ``--height`` at ``--fps`` and ``--bitrate``; default 640x360, 15 fps, 500 kbit/s)
  and Opus, encoded once here and replayed by the clients (no encoder runs in a client), and counts the
  frames it receives without decoding them. Participant sockets go to the workers round-robin
  (as a load balancer would spread them); each room's media is placed by the real placement (room leases
  in Redis, ``vIOP.cluster``), and the report reads where every room went from its lease;
- a sweep: for each K in ``--groups`` the groups are added (the ones already running keep running), then
  after ``--warmup`` seconds a ``--seconds`` window is measured: per-worker CPU (from /proc/<pid>/stat of
  each worker), rooms and participants per worker (leases and node records), redis-server and client CPU,
  the whole machine's busy share, and the video frame rate delivered on every stream (receiver x publisher:
  median, p5, min; per receiver: its streams' mean, median and p5 over receivers). The sweep stops at the
  first K whose p5 stream frame rate is below ``--hold`` x ``--fps``; the bound is the largest K before it.

Stops by itself after ``--max-seconds``; every process it started is stopped (SIGTERM, then SIGKILL) whatever
happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis

from bench.capacity_group import clip_to_json
from bench.harness import (
    PASSWORD,
    REPO,
    ClinicApi,
    RedisProcess,
    ServerProcess,
    percentile,
    process_cpu,
)
from vIOP.client.media import encode_opus_clip, encode_video_clip
from vIOP.ids import RoomId
from vIOP.storage.redis_cluster import RedisNodeRegistry, RedisRoomLeases

CLINICIAN = "capacity.host"
GROUP_SCRIPT = REPO / "bench" / "capacity_group.py"


# --- pure summaries (tests/cluster/test_capacity_bench.py) ---------------------------------------------


def cpu_share(before: float, after: float, wall: float) -> float:
    """CPU seconds used between two readings as a percentage of one core over ``wall`` seconds."""
    return 100 * (after - before) / wall if wall > 0 else 0.0


def stream_rates(
    before: Mapping[str, Mapping[str, int]],
    after: Mapping[str, Mapping[str, int]],
    wall: float,
    receivers: Sequence[str],
    group: Sequence[str],
) -> dict[tuple[str, str], float]:
    """Frames per second on every stream each of ``receivers`` should get (every other member of
    ``group``): a stream that delivered nothing counts as 0, not as missing."""
    rates: dict[tuple[str, str], float] = {}
    for receiver in receivers:
        for publisher in group:
            if publisher == receiver:
                continue
            frames = after.get(receiver, {}).get(publisher, 0) - before.get(receiver, {}).get(publisher, 0)
            rates[(receiver, publisher)] = frames / wall if wall > 0 else 0.0
    return rates


@dataclass(frozen=True)
class FpsSummary:
    streams: int
    median: float
    p5: float
    min: float
    receivers: int
    receiver_median: float  # of each receiver's mean over its streams
    receiver_p5: float


def summarise_fps(rates: Mapping[tuple[str, str], float]) -> FpsSummary:
    values = list(rates.values())
    per_receiver: dict[str, list[float]] = {}
    for (receiver, _), rate in rates.items():
        per_receiver.setdefault(receiver, []).append(rate)
    means = [statistics.fmean(v) for v in per_receiver.values()]
    return FpsSummary(
        streams=len(values),
        median=round(statistics.median(values), 2) if values else 0.0,
        p5=round(percentile(values, 5), 2) if values else 0.0,
        min=round(min(values), 2) if values else 0.0,
        receivers=len(means),
        receiver_median=round(statistics.median(means), 2) if means else 0.0,
        receiver_p5=round(percentile(means, 5), 2) if means else 0.0,
    )


def holds(summary: FpsSummary, fps: float, hold: float) -> bool:
    """Delivered video holds the source's frame rate: the p5 stream at least ``hold`` x ``fps``."""
    return summary.streams > 0 and summary.p5 >= hold * fps


def bound(steps: Sequence[tuple[int, bool]]) -> int:
    """The largest K of (K, held) steps, in sweep order, before the first that did not hold (0: none)."""
    best = 0
    for groups, held in steps:
        if not held:
            break
        best = groups
    return best


def per_worker(
    holders: Mapping[str, str], group_size: int, workers: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Rooms and participants per worker from each room's lease holder (room id -> node id)."""
    out = {w: {"rooms": 0, "participants": 0} for w in workers}
    for node in holders.values():
        entry = out.setdefault(node, {"rooms": 0, "participants": 0})
        entry["rooms"] += 1
        entry["participants"] += group_size
    return out


# --- processes -------------------------------------------------------------------------------------------


@dataclass
class Worker:
    node_id: str
    pid: int
    base_url: str


@contextlib.contextmanager
def start_workers(
    count: int, folder: Path, redis_url: str, keep_logs: Path | None = None, log_level: str = "warning"
) -> Iterator[list[Worker]]:
    """W nodes as W ``python -m vIOP serve`` processes on one Redis and one SQLite, each on its own port.

    The one place to change for ``python -m vIOP serve --workers W`` (one supervisor, one port): start it
    instead, and yield one Worker per worker process (its pid from the supervisor's children, its node id
    from the registry, the one shared base URL); nothing else here depends on how the nodes were started.
    """
    data_dir = folder / "var"
    servers = [
        ServerProcess(
            data_dir,
            redis_url=redis_url,
            settings={"ice_host_addresses": "127.0.0.1", "node_id": f"worker-{i}", "log_level": log_level},
            log_name=f"worker-{i}.log",
        )
        for i in range(count)
    ]
    try:
        servers[0].create_clinician(CLINICIAN)  # also creates and migrates the database
        for server in servers:
            server.start()
        yield [Worker(f"worker-{i}", s.pid, s.base_url) for i, s in enumerate(servers)]
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop(timeout=15)
            if keep_logs is not None and server.log_path.exists():
                keep_logs.mkdir(parents=True, exist_ok=True)
                shutil.copy(server.log_path, keep_logs / server.log_path.name)


def split_group(
    clips: Path,
    room_id: str,
    origins: Sequence[str],
    bearers: Sequence[str],
    per_process: int,
    **settings: object,
) -> list[dict[str, Any]]:
    """The configuration of each client process of one group (``per_process`` participants each, the host,
    first in ``bearers``, in the first); ``settings``: the rest of ``bench/capacity_group.py``'s keys."""
    return [
        {
            "clips": str(clips),
            "room_id": room_id,
            "origins": list(origins[first : first + per_process]),
            "bearers": list(bearers[first : first + per_process]),
            "has_host": first == 0,
            "group_size": len(bearers),
            **settings,
        }
        for first in range(0, len(bearers), per_process)
    ]


class ClientProcess:
    """Some participants of one group in a child process (``bench/capacity_group.py``)."""

    def __init__(self, group: int, process: asyncio.subprocess.Process) -> None:
        self.group = group
        self.process = process
        self.participants: list[str] = []
        self.missing = 0

    @classmethod
    async def start(cls, group: int, config: dict[str, Any]) -> ClientProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(GROUP_SCRIPT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            limit=1 << 24,
        )
        assert process.stdin is not None
        process.stdin.write(json.dumps(config).encode() + b"\n")  # tokens: on stdin, never in argv
        await process.stdin.drain()
        return cls(group, process)

    async def read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"group {self.group}: a client process exited {await self.process.wait()}")
        message: dict[str, Any] = json.loads(line)
        if message["event"] == "failed":
            raise RuntimeError(f"group {self.group}: {message['error']}")
        return message

    async def ready(self, timeout: float) -> None:
        message = await self.read(timeout)
        assert message["event"] == "ready", message
        self.participants = list(message["participants"])
        self.missing = int(message["missing"])

    async def snapshot(self, timeout: float = 30.0) -> dict[str, Any]:
        return await self.command("snapshot", timeout)

    async def command(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """Send one command line (``snapshot``, ``reset_gaps``) and read its answer."""
        assert self.process.stdin is not None
        self.process.stdin.write(name.encode() + b"\n")
        await self.process.stdin.drain()
        return await self.read(timeout)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            assert self.process.stdin is not None
            self.process.stdin.write(b"quit\n")
            await self.process.stdin.drain()
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


@dataclass
class Group:
    index: int
    room_id: str
    processes: list[ClientProcess]

    @property
    def participants(self) -> list[str]:
        return [p for process in self.processes for p in process.participants]


# --- measuring -------------------------------------------------------------------------------------------


def machine_jiffies() -> tuple[float, float]:
    """(busy, total) jiffies over all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


def udp_drops() -> int:
    """Datagrams the kernel dropped machine-wide for a full receive buffer (``RcvbufErrors``) so far."""
    rows = [
        line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")
    ]
    return int(rows[1][rows[0].index("RcvbufErrors")]) if len(rows) >= 2 else 0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class Reading:
    wall: float
    workers: dict[str, float]
    redis: float
    machine: tuple[float, float]
    udp_drops: int
    clients: list[dict[str, Any]]  # one snapshot per client process


async def read_all(
    workers: Sequence[Worker], redis_pid: int | None, processes: Sequence[ClientProcess]
) -> Reading:
    snapshots = await asyncio.gather(*(p.snapshot() for p in processes))
    return Reading(
        wall=time.monotonic(),
        workers={w.node_id: process_cpu(w.pid) for w in workers},
        redis=process_cpu(redis_pid) if redis_pid else 0.0,
        machine=machine_jiffies(),
        udp_drops=udp_drops(),
        clients=list(snapshots),
    )


@dataclass
class Step:
    groups: int
    participants: int
    load_at_start: str
    window_s: float
    worker_cpu_pct: dict[str, float]
    rooms_per_worker: dict[str, dict[str, int]]  # from the leases
    registry: dict[str, dict[str, float]]  # what each node announced at its last heartbeat
    redis_cpu_pct: float
    clients_cpu_pct: float
    machine_busy_pct: float
    udp_receive_buffer_drops: int  # machine-wide, in the window (loopback loss when a reader falls behind)
    fps: FpsSummary
    audio_fps_median: float
    streams_not_flowing_at_ready: int
    audio_only_notices: dict[str, int]  # `audio_only on` messages the participants got so far, by reason
    connections_at_end: dict[str, int]  # participants per peer connection state at the window's end
    client_consent_expired: int  # client ICE connections closed for lack of consent (aioice), so far
    held: bool
    notes: list[str] = field(default_factory=list)


def summarise_step(
    k: int,
    args: argparse.Namespace,
    load: str,
    a: Reading,
    b: Reading,
    groups: Sequence[Group],
    holders: Mapping[str, str],
    registry: dict[str, dict[str, float]],
) -> Step:
    wall = b.wall - a.wall
    video: dict[tuple[str, str], float] = {}
    audio: dict[tuple[str, str], float] = {}
    clients = 0.0
    processes = [(group, process) for group in groups for process in group.processes]
    notices: dict[str, int] = {}
    connections: dict[str, int] = {}
    for (group, process), before, after in zip(processes, a.clients, b.clients, strict=True):
        own = after["t"] - before["t"]  # the client's own reading times for its counters
        everyone = group.participants
        video |= stream_rates(before["video"], after["video"], own, process.participants, everyone)
        audio |= stream_rates(before["audio"], after["audio"], own, process.participants, everyone)
        clients += after["cpu"] - before["cpu"]
        for reason in after["audio_only"]:
            notices[reason] = notices.get(reason, 0) + 1
        for state, n in after["connections"].items():
            connections[state] = connections.get(state, 0) + n
    fps = summarise_fps(video)
    busy = (b.machine[0] - a.machine[0]) / max(1.0, b.machine[1] - a.machine[1])
    return Step(
        groups=k,
        participants=sum(len(g.participants) for g in groups),
        load_at_start=load,
        window_s=round(wall, 1),
        worker_cpu_pct={w: round(cpu_share(a.workers[w], b.workers[w], wall), 1) for w in a.workers},
        rooms_per_worker=per_worker(holders, args.group_size, list(a.workers)),
        registry=registry,
        redis_cpu_pct=round(cpu_share(a.redis, b.redis, wall), 1),
        clients_cpu_pct=round(cpu_share(0.0, clients, wall), 1),
        machine_busy_pct=round(100 * busy, 1),
        udp_receive_buffer_drops=b.udp_drops - a.udp_drops,
        fps=fps,
        audio_fps_median=round(statistics.median(audio.values()), 1) if audio else 0.0,
        streams_not_flowing_at_ready=sum(p.missing for _, p in processes),
        audio_only_notices=notices,
        connections_at_end=connections,
        client_consent_expired=sum(int(s["consent_expired"]) for s in b.clients),
        held=holds(fps, args.fps, args.hold),
    )


async def lease_holders(client: aioredis.Redis, rooms: Sequence[str]) -> dict[str, str]:
    leases = RedisRoomLeases(client)
    out: dict[str, str] = {}
    for room in rooms:
        lease = await leases.current(RoomId(room))
        out[room] = lease.node_id if lease is not None and lease.node_id else "(none)"
    return out


async def node_records(client: aioredis.Redis) -> dict[str, dict[str, float]]:
    return {
        n.id: {"rooms": n.load.rooms, "participants": n.load.participants, "streams": n.load.streams,
               "cpu_pct": round(100 * n.load.cpu, 1)}
        for n in await RedisNodeRegistry(client).nodes(time.time())
    }  # fmt: skip


def print_step(step: Step) -> None:
    cpu = ", ".join(f"{w} {c:.1f} %" for w, c in step.worker_cpu_pct.items())
    rooms = ", ".join(
        f"{w} {r['rooms']} rooms / {r['participants']} people" for w, r in step.rooms_per_worker.items()
    )
    print(
        f"K={step.groups} ({step.participants} people, load {step.load_at_start}): "
        f"video fps per stream median {step.fps.median} p5 {step.fps.p5} min {step.fps.min}; "
        f"per receiver median {step.fps.receiver_median} p5 {step.fps.receiver_p5}; audio {step.audio_fps_median}/s; "
        f"{'HOLDS' if step.held else 'DOES NOT HOLD'}",
        flush=True,
    )
    print(f"    worker CPU: {cpu}; redis {step.redis_cpu_pct} %; clients {step.clients_cpu_pct} %; "
          f"machine busy {step.machine_busy_pct} % of all cores; UDP receive-buffer drops "
          f"{step.udp_receive_buffer_drops}", flush=True)  # fmt: skip
    print(f"    placement: {rooms}; node records {step.registry}", flush=True)
    print(
        f"    peer connections at the window's end: {step.connections_at_end}; "
        f"client ICE consent expired: {step.client_consent_expired}",
        flush=True,
    )
    if step.streams_not_flowing_at_ready or step.audio_only_notices:
        print(
            f"    streams without video when the groups were ready: {step.streams_not_flowing_at_ready}; "
            f"audio_only notices: {step.audio_only_notices}",
            flush=True,
        )


async def start_group(
    args: argparse.Namespace,
    index: int,
    api: ClinicApi,
    bearer: str,
    workers: Sequence[Worker],
    sockets: int,
    clips: Path,
    spawned: list[ClientProcess],
) -> Group:
    """A room, its invites and its client processes (``--per-process`` participants each, the host in the
    first); returns once every participant receives video from everyone else (or the join deadline
    passed). Each client process is added to ``spawned`` as soon as it exists, so that whoever stops the
    run stops it too."""
    room_id = await api.create_room(bearer, f"Capacity group {index}", capacity=args.group_size + 2)
    invites = [await api.create_invite(bearer, room_id, f"Member {n}") for n in range(args.group_size - 1)]
    bearers = [bearer, *invites]
    origins = [workers[(sockets + n) % len(workers)].base_url for n in range(args.group_size)]
    group = Group(index, room_id, [])
    configs = split_group(
        clips, room_id, origins, bearers, args.per_process, ready_seconds=60, max_seconds=args.max_seconds
    )
    for config in configs:
        process = await ClientProcess.start(index, config)
        spawned.append(process)
        group.processes.append(process)
    await asyncio.gather(*(p.ready(timeout=args.group_size * 20 + 60) for p in group.processes))
    return group


async def sweep(
    args: argparse.Namespace, folder: Path, workers: Sequence[Worker], redis: RedisProcess
) -> dict[str, Any]:
    clips = folder / "clips.json"
    started = time.monotonic()
    clips.write_text(
        json.dumps(
            {
                "video": clip_to_json(
                    encode_video_clip(args.width, args.height, args.fps, 4.0, bitrate=args.bitrate)
                ),
                "audio": clip_to_json(encode_opus_clip(4.0)),
            }
        )
    )
    print(f"clips encoded once in {time.monotonic() - started:.1f} s; replayed by every client", flush=True)
    api = ClinicApi(workers[0].base_url, timeout=30)
    client = aioredis.Redis.from_url(redis.url)
    groups: list[Group] = []
    spawned: list[ClientProcess] = []  # every client process, stopped in the end whatever happens
    steps: list[Step] = []
    sockets = 0  # participants placed so far: the round-robin over the workers' origins
    try:
        bearer = await api.login(CLINICIAN, PASSWORD)
        for k in args.groups:
            load = loadavg()
            while len(groups) < k:
                groups.append(
                    await start_group(args, len(groups), api, bearer, workers, sockets, clips, spawned)
                )
                sockets += args.group_size
            await asyncio.sleep(args.warmup)
            processes = [p for g in groups for p in g.processes]
            first = await read_all(workers, redis.pid, processes)
            await asyncio.sleep(args.seconds)
            last = await read_all(workers, redis.pid, processes)
            holders = await lease_holders(client, [g.room_id for g in groups])
            step = summarise_step(k, args, load, first, last, groups, holders, await node_records(client))
            steps.append(step)
            print_step(step)
            if not step.held and not args.keep_going:
                break
    finally:
        await asyncio.gather(*(p.stop() for p in spawned), return_exceptions=True)
        await client.aclose()
        await api.close()
    return {
        "workers": len(workers),
        "group_size": args.group_size,
        "fps": args.fps,
        "video": f"{args.width}x{args.height} VP8 at {args.bitrate // 1000} kbit/s",
        "per_process": args.per_process,
        "hold": args.hold,
        "bound_groups": bound([(s.groups, s.held) for s in steps]),
        "steps": [asdict(s) for s in steps],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="viop-capacity-") as tmp:
        folder = Path(tmp)
        redis = RedisProcess(folder / "redis", persistent=False)
        (folder / "redis").mkdir()
        redis.start()
        try:
            with start_workers(args.workers, folder, redis.url, args.keep_logs, args.log_level) as workers:
                return asyncio.run(asyncio.wait_for(sweep(args, folder, workers, redis), args.max_seconds))
        finally:
            redis.stop()


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Hard bound on the whole run; SIGTERM ends it the same way (every child is stopped on the way out)."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"capacity benchmark exceeded --max-seconds {seconds:.0f}")

    def terminated(*_: object) -> None:
        raise SystemExit("terminated")

    signal.signal(signal.SIGALRM, expire)
    signal.signal(signal.SIGTERM, terminated)
    signal.alarm(int(seconds) + 60)  # the sweep's own bound comes first; this one covers start and stop
    try:
        yield
    finally:
        signal.alarm(0)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=1, help="W: worker nodes")
    parser.add_argument(
        "--groups", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 2, 3, 4],
        help="K values to sweep, increasing (groups are added, not restarted)",
    )  # fmt: skip
    parser.add_argument("--group-size", type=int, default=13)
    parser.add_argument(
        "--per-process",
        type=int,
        default=13,
        help="participants per client process (the host in a group's first)",
    )
    parser.add_argument("--fps", type=int, default=15, help="the source's video frame rate")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--bitrate", type=int, default=500_000, help="the video clip's target, bit/s")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window per K")
    parser.add_argument(
        "--hold", type=float, default=0.95, help="p5 stream fps must be at least this x --fps"
    )
    parser.add_argument("--keep-going", action="store_true", help="measure every K even after one fails")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep-logs", type=Path, help="copy the workers' logs into this folder at the end")
    parser.add_argument("--log-level", default="warning", help="the workers' VIOP_LOG_LEVEL")
    args = parser.parse_args(argv)
    if (
        args.workers < 1
        or args.per_process < 1
        or args.group_size < 2
        or not args.groups
        or args.groups != sorted(args.groups)
    ):
        parser.error("--workers >= 1, --group-size >= 2, --groups increasing")
    return args


def main() -> int:
    args = parse_args()
    command = ".venv/bin/python bench/capacity.py " + shlex.join(sys.argv[1:])
    print(f"command: {command.strip()}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"load average at start: {loadavg()} (uptime; other work may share these cores)", flush=True)
    with time_limit(args.max_seconds):
        report = run(args)
    print(
        f"\nbound: {report['bound_groups']} concurrent {args.group_size}-person groups on {args.workers} "
        f"worker(s) at >= {args.hold:.0%} of {args.fps} fps (p5 stream)"
    )
    print(json.dumps({"command": command, **report}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, **report}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
