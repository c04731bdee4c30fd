"""A node (one serving process) as the cluster sees it, and the placement decision among nodes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

NODE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class NodeState(StrEnum):
    SERVING = "serving"  # takes new rooms
    DRAINING = "draining"  # keeps its rooms, takes no new ones (moving them away: a later step)


@dataclass(frozen=True, slots=True)
class NodeLoad:
    rooms: int = 0  # rooms whose media lease this node holds
    participants: int = 0  # participants with media here
    streams: int = 0  # forwarded streams (relay legs)
    cpu: float = 0.0  # share of one core this process used over its last heartbeat interval


@dataclass(frozen=True, slots=True)
class Node:
    """One node's record in the registry: what it announced at its last heartbeat, valid until
    ``expires_at`` (epoch seconds); a node whose record has expired is dead."""

    id: str
    media_address: str
    state: NodeState
    capacity: int  # most rooms it takes
    expires_at: float
    load: NodeLoad = field(default_factory=NodeLoad)
    incarnation: str = ""
    """Random per process start: a drain (sticky) belongs to the process it was put on, so a node started
    again under the same id serves (its predecessor, drained and then killed, left its record behind)."""

    def alive(self, now: float) -> bool:
        return now < self.expires_at

    def accepts_rooms(self, now: float) -> bool:
        return self.alive(now) and self.state is NodeState.SERVING and self.load.rooms < self.capacity


def placement_order(node: Node) -> tuple[float, int, float, str]:
    """Least loaded first: rooms as a share of capacity, then participants, then CPU; the id breaks ties, so
    the same records always give the same choice."""
    return (node.load.rooms / node.capacity, node.load.participants, node.load.cpu, node.id)


def choose_node(nodes: Iterable[Node], now: float) -> Node | None:
    """The node a new room goes to: the least loaded live serving node with room left; None when none has."""
    candidates = [n for n in nodes if n.accepts_rooms(now)]
    return min(candidates, key=placement_order, default=None)


def valid_node_id(value: str) -> bool:
    return NODE_ID_PATTERN.fullmatch(value) is not None
