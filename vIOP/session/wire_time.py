"""Times on the wire: ISO 8601 UTC with a ``Z``, second precision (docs/API.md "Times").

Here, below the edge, so that the application's documents (the attendance export) and the edge's responses
write times one way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, overload

import msgspec

IsoTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]


@overload
def iso(ts: float | datetime) -> str: ...
@overload
def iso(ts: None) -> None: ...
@overload
def iso(ts: float | datetime | None) -> str | None: ...
def iso(ts: float | datetime | None) -> str | None:
    """ISO 8601 UTC with a ``Z``, second precision (docs/API.md "Times")."""
    if ts is None:
        return None
    moment = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
