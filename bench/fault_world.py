"""A populated clinic for fault injection: rooms with a host, clients in the room and clients in the lobby,
all as real sockets (and, for those in the room, real peer connections) against a ``vIOP serve`` process;
plus what an operator can observe from outside: the presence snapshot and the attendance ledger over HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.harness import PASSWORD, ClinicApi, ServerProcess, gather_limited, percentile
from bench.participants import Participant
from vIOP.signaling import messages as m

CLINICIAN = "fault.host0"  # hosts the first rooms; each clinician hosts at most ROOMS_PER_CLINICIAN
OBSERVER = "fault.admin"  # reads presence and attendance of every room, as an operator would
ROOMS_PER_CLINICIAN = 5  # a clinician's tickets are rate limited (20 a minute): one per (re)connect


def clinician_of(room_index: int) -> str:
    return f"fault.host{room_index // ROOMS_PER_CLINICIAN}"


def accounts(shape: Shape) -> list[tuple[str, str]]:
    """(username, role) of every account a world of ``shape`` signs in with."""
    clinicians = {clinician_of(i) for i in range(max(1, shape.rooms))}
    return [(OBSERVER, "admin"), *((name, "clinician") for name in sorted(clinicians))]


@dataclass
class RoomPeople:
    room_id: str
    host: Participant
    seated: list[Participant] = field(default_factory=list)
    waiting: list[Participant] = field(default_factory=list)

    @property
    def everyone(self) -> list[Participant]:
        return [self.host, *self.seated, *self.waiting]


@dataclass(frozen=True, slots=True)
class Shape:
    rooms: int = 2
    seated: int = 3  # clients admitted into each room
    waiting: int = 2  # clients left in each lobby
    media: bool = True  # those in the room open a receive-only peer connection (the attendance interval)

    @property
    def clients(self) -> int:
        return self.rooms * (self.seated + self.waiting)


@dataclass
class World:
    server: ServerProcess
    api: ClinicApi
    bearers: dict[str, str]  # username -> access token
    rooms: list[RoomPeople] = field(default_factory=list)
    ping_seconds: float = 1.0
    hosts: dict[str, str] = field(default_factory=dict)  # room id -> its clinician's username

    @property
    def people(self) -> list[Participant]:
        return [p for room in self.rooms for p in room.everyone]

    @property
    def bearer(self) -> str:
        """The observer's (admin) access token."""
        return self.bearers[OBSERVER]

    def host_bearer(self, room_id: str) -> str:
        return self.bearers[self.hosts[room_id]]

    async def relogin(self) -> None:
        for name in self.bearers:
            self.bearers[name] = await self.api.login(name, PASSWORD)

    async def populate(self, shape: Shape) -> None:
        await gather_limited(8, [self._room(i, shape) for i in range(shape.rooms)])

    async def _room(self, index: int, shape: Shape) -> None:
        api = self.api
        clinician = clinician_of(index)
        room_id = await api.create_room(
            self.bearers[clinician],
            f"Fault room {index}",
            capacity=min(50, max(1, shape.seated + shape.waiting)),
        )
        self.hosts[room_id] = clinician
        host = Participant(
            f"host{index}",
            self._host_tickets(room_id),
            self.server.origin,
            media=shape.media,
            ping_seconds=self.ping_seconds,
        )
        room = RoomPeople(room_id, host)
        await host.join()
        await host.enter_room()
        people = []
        for c in range(shape.seated + shape.waiting):
            invite = await api.create_invite(self.bearers[clinician], room_id, f"Fault client {index}.{c}")
            people.append(
                Participant(
                    f"c{index}.{c}",
                    api.ticket_source(invite, room_id),
                    self.server.origin,
                    media=shape.media,
                    ping_seconds=self.ping_seconds,
                )
            )
        for person in people:  # one by one: the lobby order is the knock order
            await person.join()
            await person.client.wait_message(m.Waiting, within=30)
        room.seated, room.waiting = people[: shape.seated], people[shape.seated :]
        for person in room.seated:
            assert person.participant_id is not None
            await host.client.send(m.Admit(participant_id=person.participant_id))
        await asyncio.gather(*(p.enter_room() for p in room.seated))
        self.rooms.append(room)

    async def settle(self, shape: Shape, timeout: float = 30.0) -> None:
        """Until everyone admitted is in the room and has an open attendance interval (the server answers
        an offer before it records the entry, so a client can be ahead of both)."""
        per_room = shape.seated + 1 if shape.media else 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(await self.intervals()) == per_room * len(self.rooms):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("the attendance intervals of the admitted clients did not all open")

    def _host_tickets(self, room_id: str) -> Any:
        async def next_url() -> str:  # reads the bearer each time: a re-login takes effect at once
            return await self.api.signal_ticket(self.host_bearer(room_id), room_id)

        return next_url

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.people), return_exceptions=True)
        await self.api.close()

    # --- what an operator sees ---------------------------------------------------------------------

    async def presence(self) -> dict[str, Any]:
        """Per room: the lobby in order and the seats with their state; who is reconnecting."""
        response = await self.api.http.get(
            "/api/v1/presence", headers={"Authorization": f"Bearer {self.bearer}"}
        )
        response.raise_for_status()
        out: dict[str, Any] = {}
        for room in response.json()["rooms"]:
            out[room["room_id"]] = {
                "waiting": [w["participant_id"] for w in room["waiting"]],
                "seated": sorted((s["participant_id"], s["state"]) for s in room["seated"]),
                "reconnecting": sorted(
                    [s["participant_id"] for s in room["seated"] if s["reconnecting"]]
                    + [w["participant_id"] for w in room["waiting"] if w.get("reconnecting")]
                ),
            }
        return out

    async def intervals(self) -> list[tuple[str, str, str | None]]:
        """Every attendance interval of our rooms: (participant, joined_at, left_at)."""
        rows: list[tuple[str, str, str | None]] = []
        for room in self.rooms:
            response = await self.api.http.get(
                "/api/v1/attendance",
                params={"room_id": room.room_id},
                headers={"Authorization": f"Bearer {self.bearer}"},
            )
            response.raise_for_status()
            rows += [
                (i["participant_id"], i["joined_at"], i["left_at"]) for i in response.json()["intervals"]
            ]
        return sorted(rows)

    async def wait_presence(self, expected: dict[str, Any], timeout: float) -> float | None:
        """Seconds until the presence snapshot equals ``expected`` (None if it never did)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                if await self.presence() == expected:
                    return time.monotonic() - start
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 401:
                    await self.relogin()  # the sign-in lived in the Redis that was lost
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        return None


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """p50/p99/max in milliseconds (count too)."""
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1) if values else float("nan"),
        "p99_ms": round(percentile(values, 99) * 1000, 1) if values else float("nan"),
        "max_ms": round(max(values) * 1000, 1) if values else float("nan"),
    }


async def open_world(server: ServerProcess, shape: Shape, ping_seconds: float = 1.0) -> World:
    api = ClinicApi(server.base_url, timeout=30)
    bearers = {name: await api.login(name, PASSWORD) for name, _ in accounts(shape)}
    world = World(server, api, bearers, ping_seconds=ping_seconds)
    try:
        await world.populate(shape)
        await world.settle(shape)
    except BaseException:
        await world.stop()
        raise
    return world
