"""The port through which attendance learns which track occurrence a room was.

Tracks (recurring sessions) turn each occurrence into a room when its lobby opens; attendance is recorded
per room. The report asks this port, once per room in it, for the occurrence behind the room so its rows
carry the track id, title and scheduled start. A room made by hand has none and reports by room id alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vIOP.ids import RoomId


@dataclass(frozen=True, slots=True)
class OccurrenceRef:
    """One occurrence of a track, as the attendance report shows it."""

    track_id: str
    title: str  # the track's title: program data, the one text an export may carry beyond ids
    starts_at: float  # the scheduled start (Unix time), not when the first person came in


class OccurrenceLookup(Protocol):
    async def occurrence_of(self, room_id: RoomId) -> OccurrenceRef | None:
        """The occurrence ``room_id`` was opened for, or None for a room that belongs to no track."""
        ...
