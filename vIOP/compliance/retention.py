"""How long each kind of record is kept (settings ``VIOP_RETENTION_*_DAYS``), as cut-off times. Pure.

Defaults: attendance and the audit log 6 years (HIPAA documentation, 45 CFR 164.316(b)(2)); room records
and invites 400 days. A client is shredded (their data key destroyed) once nothing of theirs is younger
than the attendance period. ``docs/HIPAA.md`` ("Retention") has the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DAY: Final = 86_400.0
RUN_EVERY: Final = DAY
"""The app runs the job when the last run is this old (each process checks hourly; the job is idempotent)."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    attendance_days: int = 2190
    audit_days: int = 2190
    room_days: int = 400
    invite_days: int = 400

    def cutoffs(self, now: float) -> Cutoffs:
        return Cutoffs(
            attendance=now - self.attendance_days * DAY,
            audit=now - self.audit_days * DAY,
            rooms=now - self.room_days * DAY,
            invites=now - self.invite_days * DAY,
        )


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Records older than these (epoch seconds) are past retention."""

    attendance: float
    audit: float
    rooms: float
    invites: float


def due(last_run: float | None, now: float) -> bool:
    """Whether the scheduled job should run now."""
    return last_run is None or now - last_run >= RUN_EVERY
