"""One enum per concept: the wire and the API reuse the domain's enums instead of keeping copies."""

from __future__ import annotations

import msgspec

from vIOP.api.http_tickets import TicketBody
from vIOP.auth.tickets import TicketPurpose
from vIOP.rooms.participant import Role
from vIOP.signaling import messages


def test_the_wire_role_is_the_room_role() -> None:
    assert messages.Role is Role
    entry = msgspec.inspect.type_info(messages.RosterEntry)
    assert isinstance(entry, msgspec.inspect.StructType)
    (role,) = [f.type for f in entry.fields if f.name == "role"]
    assert isinstance(role, msgspec.inspect.EnumType) and role.cls is Role


def test_the_ticket_body_purpose_is_the_ticket_purpose() -> None:
    info = msgspec.inspect.type_info(TicketBody)
    assert isinstance(info, msgspec.inspect.StructType)
    (purpose,) = [f for f in info.fields if f.name == "purpose"]
    assert isinstance(purpose.type, msgspec.inspect.EnumType) and purpose.type.cls is TicketPurpose
    assert purpose.default is TicketPurpose.SIGNAL
