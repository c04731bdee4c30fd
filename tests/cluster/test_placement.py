"""The placement decision (pure): least loaded live serving node with room left, ties by id."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vIOP.cluster.nodes import Node, NodeLoad, NodeState, choose_node, valid_node_id

NOW = 1_000.0


def node(node_id: str, rooms: int = 0, *, capacity: int = 10, participants: int = 0, **kw: object) -> Node:
    state = kw.get("state", NodeState.SERVING)
    expires = kw.get("expires_at", NOW + 5)
    assert isinstance(state, NodeState) and isinstance(expires, float)
    return Node(
        node_id, "10.0.0.1", state, capacity, expires, NodeLoad(rooms=rooms, participants=participants)
    )


def test_least_loaded_by_share_of_capacity() -> None:
    # b holds more rooms but is the emptier one for its size.
    chosen = choose_node([node("a", 5, capacity=10), node("b", 6, capacity=20)], NOW)
    assert chosen is not None and chosen.id == "b"


def test_participants_then_id_break_ties() -> None:
    chosen = choose_node([node("a", 2, participants=9), node("b", 2, participants=3)], NOW)
    assert chosen is not None and chosen.id == "b"
    same = [node("c", 1), node("a", 1), node("b", 1)]
    first = choose_node(same, NOW)
    assert first is not None and first.id == "a"
    again = choose_node(list(reversed(same)), NOW)
    assert again is not None and again.id == "a"


def test_full_draining_and_dead_nodes_take_nothing() -> None:
    nodes = [
        node("full", 10, capacity=10),
        node("draining", 0, state=NodeState.DRAINING),
        node("dead", 0, expires_at=NOW),
    ]
    assert choose_node(nodes, NOW) is None
    nodes.append(node("busy", 9, capacity=10))
    chosen = choose_node(nodes, NOW)
    assert chosen is not None and chosen.id == "busy"


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 20), st.booleans()), min_size=1, max_size=12))
def test_never_chooses_a_node_without_room(specs: list[tuple[int, int, bool]]) -> None:
    nodes = [
        node(f"n{i}", rooms, capacity=cap, state=NodeState.SERVING if serving else NodeState.DRAINING)
        for i, (rooms, cap, serving) in enumerate(specs)
    ]
    chosen = choose_node(nodes, NOW)
    open_nodes = [n for n in nodes if n.state is NodeState.SERVING and n.load.rooms < n.capacity]
    if not open_nodes:
        assert chosen is None
    else:
        assert chosen in open_nodes
        assert all(chosen.load.rooms / chosen.capacity <= n.load.rooms / n.capacity for n in open_nodes)


def test_node_ids() -> None:
    assert valid_node_id("node-1.eu_west")
    for bad in ("", "-x", "has space", "a{b}", "x" * 65, "ü"):
        assert not valid_node_id(bad)
