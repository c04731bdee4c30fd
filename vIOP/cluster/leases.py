"""The room lease: which node holds a room's media, until when, under which fencing token.

Every grant of a room's lease gets a larger token than the one before it (a takeover included), so a node
that still believes in an older grant can be told apart from the holder: stores renew and release only for
the exact (node, token) they hold, never for an older token.
"""

from __future__ import annotations

from dataclasses import dataclass

from vIOP.errors import Unavailable
from vIOP.ids import RoomId


@dataclass(frozen=True, slots=True)
class RoomLease:
    room_id: RoomId
    node_id: str
    token: int  # the fencing token: strictly increasing per room over every grant
    expires_at: float  # epoch seconds

    def live(self, now: float) -> bool:
        return now < self.expires_at

    def held_by(self, node_id: str, now: float) -> bool:
        return self.node_id == node_id and self.live(now)


class RoomOnAnotherNode(Unavailable):
    """The room's media lease is held by another live node, so this node cannot carry its media (its
    socket node then relays to that node: ``vIOP.session.media_route``), or that node could not be
    reached. The client retries."""

    def __init__(self) -> None:
        super().__init__("this room's media is on another server; try again")


class NotTakingRooms(Unavailable):
    """This node is draining or at its room capacity: it takes no new room."""
