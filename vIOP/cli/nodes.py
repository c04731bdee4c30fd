"""``python -m vIOP nodes list|drain``: the cluster's serving processes (docs/SCALING.md).

Wiring for ``vIOP/cli/main.py``: ``(nodes, "add_parsers", "run")`` in ``_GROUPS``. Exit status: 0 done,
1 no such live node or Redis unreachable, 2 usage error. Reads and writes the Redis the servers use
(``VIOP_REDIS_URL``, else the embedded one). Prints ids, states, addresses and counts only (no PHI).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from vIOP.cluster.nodes import Node, NodeState, valid_node_id
from vIOP.errors import BadRequest, NotFound, Unavailable
from vIOP.settings import Settings
from vIOP.storage.audit_outbox import AuditOutbox
from vIOP.storage.bootstrap import open_storage
from vIOP.storage.redis_client import RedisError, operator_redis
from vIOP.storage.redis_cluster import RedisNodeRegistry

Subparsers = Any  # argparse's _SubParsersAction is private

DRAIN_AUDIT_EVENT = "node.drain"
_DRAIN_HELP = (
    "put a node in 'draining': it takes no new rooms and keeps the ones it carries. Moving its live rooms "
    "to other nodes is not built yet (a later step, docs/SCALING.md): they stay until they end"
)


def add_parsers(sub: Subparsers) -> str:
    nodes = sub.add_parser("nodes", help="the cluster's serving processes (nodes)")
    nodes_sub = nodes.add_subparsers(dest="nodes_command", required=True)
    nodes_sub.add_parser("list", help="live nodes: id, state, load, media address")
    drain = nodes_sub.add_parser("drain", help=_DRAIN_HELP, description=_DRAIN_HELP)
    drain.add_argument("node", help="the node's id (see `nodes list`)")
    return "nodes"


def table(nodes: list[Node], now: float) -> list[str]:
    header = ("NODE", "STATE", "ROOMS", "PARTICIPANTS", "STREAMS", "CPU", "MEDIA ADDRESS", "EXPIRES IN")
    rows = [header] + [
        (
            n.id,
            n.state.value,
            f"{n.load.rooms}/{n.capacity}",
            str(n.load.participants),
            str(n.load.streams),
            f"{n.load.cpu:.2f}",
            n.media_address,
            f"{max(0.0, n.expires_at - now):.0f}s",  # unless its next heartbeat comes
        )
        for n in nodes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


async def _list(settings: Settings) -> int:
    async with operator_redis(settings) as redis:
        now = time.time()
        nodes = await RedisNodeRegistry(redis).nodes(now)
    if not nodes:
        print("no live nodes (is a server running on this Redis?)")
        return 0
    for line in table(nodes, now):
        print(line)
    return 0


async def _drain(settings: Settings, node_id: str) -> int:
    if not valid_node_id(node_id):
        raise BadRequest(f"{node_id!r} is not a node id (see `python -m vIOP nodes list`)")
    async with operator_redis(settings) as redis:
        drained = await RedisNodeRegistry(redis).set_state(node_id, NodeState.DRAINING, time.time())
    if not drained:
        raise NotFound(f"no live node {node_id} (see `python -m vIOP nodes list`)")
    storage = await open_storage(settings)
    try:
        await AuditOutbox(storage.audit).record_operator(DRAIN_AUDIT_EVENT, "node", node_id)
    finally:
        await storage.close()
    print(
        f"node {node_id} is draining: it takes no new rooms and keeps its live ones until they end "
        "(moving them to another node is not built yet)"
    )
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.nodes_command == "list":
            return asyncio.run(_list(settings))
        return asyncio.run(_drain(settings, args.node))
    except (RedisError, OSError) as exc:
        raise Unavailable(f"Redis is unreachable ({type(exc).__name__}): check VIOP_REDIS_URL") from None
