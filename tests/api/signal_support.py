"""Building blocks for signaling tests against a live server: accounts, rooms, invites, tickets, clients.

The code lives in ``bench/scenarios/signaling.py`` so benchmarks can use it without importing ``tests/``.
"""

from __future__ import annotations

from bench.scenarios.signaling import (
    Clinician,
    clinician,
    invite,
    now,
    participant,
    room,
    services,
    ticket_source,
)

__all__ = ["Clinician", "clinician", "invite", "now", "participant", "room", "services", "ticket_source"]
