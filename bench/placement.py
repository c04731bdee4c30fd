"""Placement simulation: 10,000 rooms over 100 nodes with churn and node failures, on the real placement
decision (``vIOP.cluster.nodes.choose_node``) and node records; a fixed seed, so every run gives the same
figures.

    .venv/bin/python bench/placement.py [--rooms 10000] [--nodes 100] [--capacity 150] [--events 40000]
                                        [--failures 20] [--seed 14] [--json]

What happens, in order:
1. ``--rooms`` rooms are placed one by one, each on ``choose_node`` of the live node records.
2. ``--events`` churn steps: a random live room ends and a new one starts (placed the same way), so about
   ``--rooms`` stay live. Every ``events / failures`` steps a random node fails: its rooms are placed again
   on the others, one by one (what the room leases' take-over does: docs/SCALING.md); the node comes back
   empty ``--down-events`` steps later (a restart), and from then takes rooms like the rest.
3. Reported: rooms per node (min, max, mean, max/mean) after the initial placement, at the worst moment of the
   churn (right after each failure, and every 100 steps) and at the end; rooms moved per failure; rooms refused (no node with room left); the cost of one
   placement decision. The same run with random placement (a uniform hash of the room id, capacity-blind)
   is the baseline.

Load is rooms per node as a share of the node's capacity, as the registry reports it (participants per room
are drawn from 2..13 and break ties, as in the records real nodes announce).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vIOP.cluster.nodes import Node, NodeLoad, NodeState, choose_node

NOW = 1_000_000.0  # every live record expires long after the simulation's "now"


@dataclass
class Cluster:
    capacity: int
    choose: Callable[[Cluster, int], str | None]
    records: dict[str, Node] = field(default_factory=dict)
    rooms: dict[int, tuple[str, int]] = field(default_factory=dict)  # room -> (node, participants)
    live: list[int] = field(default_factory=list)  # the same rooms, for an O(1) random pick
    position: dict[int, int] = field(default_factory=dict)
    refused: int = 0

    def add_node(self, node_id: str) -> None:
        self.records[node_id] = Node(node_id, "10.0.0.1", NodeState.SERVING, self.capacity, NOW + 3600)

    def _load(self, node_id: str, rooms: int, participants: int) -> None:
        node = self.records[node_id]
        load = NodeLoad(rooms=node.load.rooms + rooms, participants=node.load.participants + participants)
        self.records[node_id] = dataclasses.replace(node, load=load)

    def place(self, room: int, participants: int) -> bool:
        node_id = self.choose(self, room)
        if node_id is None:
            self.refused += 1
            self._forget(room)
            return False
        self.rooms[room] = (node_id, participants)
        self._load(node_id, 1, participants)
        if room not in self.position:
            self.position[room] = len(self.live)
            self.live.append(room)
        return True

    def end(self, room: int) -> None:
        node_id, participants = self.rooms.pop(room)
        self._load(node_id, -1, -participants)
        self._forget(room)

    def _forget(self, room: int) -> None:
        at = self.position.pop(room, None)
        if at is None:
            return
        last = self.live.pop()
        if last != room:
            self.live[at] = last
            self.position[last] = at

    def fail(self, node_id: str) -> int:
        """The node dies: its rooms go to the others (each placed again); returns how many moved."""
        orphans = [(room, p) for room, (n, p) in self.rooms.items() if n == node_id]
        del self.records[node_id]
        for room, participants in orphans:
            del self.rooms[room]
            self.place(room, participants)
        return len(orphans)

    def loads(self) -> list[int]:
        return [n.load.rooms for n in self.records.values()]


def by_load(cluster: Cluster, room: int) -> str | None:
    chosen = choose_node(cluster.records.values(), NOW)
    return chosen.id if chosen is not None else None


def by_hash(cluster: Cluster, room: int) -> str | None:
    """Baseline: a uniform hash of the room over the live nodes, blind to load and capacity."""
    ids = sorted(cluster.records)
    return ids[random.Random(room).randrange(len(ids))] if ids else None


def spread(loads: list[int]) -> dict[str, float]:
    mean = statistics.fmean(loads)
    return {
        "min": min(loads),
        "max": max(loads),
        "mean": round(mean, 1),
        "max_over_mean": round(max(loads) / mean, 3),
    }


def simulate(args: argparse.Namespace, choose: Callable[[Cluster, int], str | None]) -> dict[str, object]:
    rng = random.Random(args.seed)
    cluster = Cluster(args.capacity, choose)
    for i in range(args.nodes):
        cluster.add_node(f"node-{i:03d}")
    next_room = 0
    started = time.perf_counter()
    for _ in range(args.rooms):
        cluster.place(next_room, rng.randint(2, 13))
        next_room += 1
    placed_in = time.perf_counter() - started
    initial = spread(cluster.loads())
    worst = initial
    moved: list[int] = []
    down: dict[str, int] = {}  # failed node -> the step it comes back at
    every = max(1, args.events // max(1, args.failures))
    for step in range(1, args.events + 1):
        for node_id, back_at in list(down.items()):
            if step >= back_at:
                cluster.add_node(node_id)
                del down[node_id]
        cluster.end(rng.choice(cluster.live))
        cluster.place(next_room, rng.randint(2, 13))
        next_room += 1
        failing = step % every == 0 and len(moved) < args.failures
        if failing:
            victim = rng.choice(sorted(cluster.records))
            moved.append(cluster.fail(victim))
            down[victim] = step + args.down_events
        if failing or step % 100 == 0:  # right after each failure, and every 100 steps
            now = spread(cluster.loads())
            if now["max_over_mean"] > worst["max_over_mean"]:
                worst = now
    return {
        "initial": initial,
        "worst_during_churn": worst,
        "end": spread(cluster.loads()),
        "rooms_moved_per_failure": {
            "mean": round(statistics.fmean(moved), 1) if moved else 0,
            "max": max(moved, default=0),
            "failures": len(moved),
        },
        "refused": cluster.refused,
        "placement_us": round(placed_in / args.rooms * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--capacity", type=int, default=150, help="rooms per node")
    parser.add_argument("--events", type=int, default=40_000, help="churn steps (a room ends, one starts)")
    parser.add_argument("--failures", type=int, default=20)
    parser.add_argument("--down-events", type=int, default=500, help="steps a failed node stays away")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {"load-based (choose_node)": simulate(args, by_load), "hash (baseline)": simulate(args, by_hash)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{args.rooms} rooms, {args.nodes} nodes of {args.capacity} rooms, {args.events} churn steps, "
        f"{args.failures} node failures (each back after {args.down_events} steps), seed {args.seed}"
    )
    for name, figures in report.items():
        print(f"\n{name}")
        for key, value in figures.items():
            print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
