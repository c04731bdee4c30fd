"""Random sequences of room actions on the pure domain, checking the invariants after every step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, event, settings, target
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from vIOP.errors import VIOPError
from vIOP.ids import ParticipantId, RoomId, SessionId, UserId
from vIOP.rooms import in_room, waiting_room
from vIOP.rooms.errors import RoomAlreadyEnded, RoomFull
from vIOP.rooms.events import Admitted, Knocked, MuteKind, ParticipantEvent, RoomEnded
from vIOP.rooms.participant import ACTIVE_STATES, ParticipantState, Role
from vIOP.rooms.room import PRUNABLE_STATES, Room, RoomKind, RoomState, Transition

HOSTS = (UserId("us_a"), UserId("us_b"))
NOT_A_HOST = UserId("us_x")
picks = st.integers(min_value=0, max_value=30)
KEEP_DEPARTED = 3  # small, so that sequences of 30 steps prune


class RoomMachine(RuleBasedStateMachine):
    room: Room

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.serial = 0
        self.refused = 0
        self.peak_fullness = 0.0
        self.removed: set[ParticipantId] = set()

    def teardown(self) -> None:
        target(self.peak_fullness, label="peak room fullness")  # steer generation towards full rooms

    @initialize(
        kind=st.sampled_from(RoomKind),
        capacity=st.integers(min_value=1, max_value=3),
        host_inside=st.integers(min_value=0, max_value=4),
    )
    def open_room(self, kind: RoomKind, capacity: int, host_inside: int) -> None:
        self.room = Room(
            id=RoomId("rm_prop"),
            session_id=SessionId("ss_prop"),
            kind=kind,
            capacity=capacity,
            host_ids=frozenset(HOSTS),
            opened_at=self.now,
        )
        if host_inside:  # most sequences start with a host in the room, so host actions get exercised
            entered = waiting_room.host_enter(
                self.room, participant_id=self.new_id(), user_id=HOSTS[0], display_name="Dr", at=self.now
            )
            assert entered.participant is not None
            self.room = in_room.join(entered.room, participant_id=entered.participant.id, at=self.now).room

    # --- helpers ---------------------------------------------------------------------------------

    def host(self, n: int) -> ParticipantId:
        """Mostly a host who can act (so host actions get past the host check), sometimes anyone."""
        hosts = [p.id for p in self.room.participants if p.role is Role.HOST and p.is_seated]
        return hosts[n % len(hosts)] if hosts and n % 4 else self.pick(n)

    def pick_in(self, n: int, *states: ParticipantState) -> ParticipantId:
        """Mostly a client in one of ``states`` (the ones the action is for), sometimes anyone."""
        fitting = [p.id for p in self.room.participants if p.state in states and p.role is Role.CLIENT]
        return fitting[n % len(fitting)] if fitting and n % 5 else self.pick(n)

    def pick(self, n: int) -> ParticipantId:
        """Any participant, or (one time in len+1) an id this room never saw."""
        ids = [p.id for p in self.room.participants]
        return ids[n % (len(ids) + 1)] if n % (len(ids) + 1) < len(ids) else ParticipantId("pt_stranger")

    def apply(self, step: Callable[..., Transition], **kwargs: Any) -> Transition | None:
        before = self.room
        self.now += 1
        pruned = before.without_old_departures(keep=KEEP_DEPARTED)  # as RoomService does before every step
        assert sum(p.state in PRUNABLE_STATES for p in pruned.participants) <= KEEP_DEPARTED
        if pruned is not before:
            event("pruned departed participants")
        try:
            t = step(pruned, at=self.now, **kwargs)
        except VIOPError as exc:
            self.refused += 1
            event(f"refused {step.__name__}: {exc.code}")
            return None
        event(f"done {step.__name__}")
        ids = {p.id for p in t.room.participants}
        for e in t.events:
            assert e.room_id == before.id
            if isinstance(e, ParticipantEvent):
                assert e.participant_id in ids
        assert before.state is not RoomState.ENDED or not t.events, "an ended room accepted something"
        self.room = t.room
        self.removed |= {p.id for p in t.room.participants if p.state is ParticipantState.REMOVED}
        return t

    def new_id(self) -> ParticipantId:
        self.serial += 1
        return ParticipantId(f"pt_{self.serial}")

    # --- rules -----------------------------------------------------------------------------------

    @rule(client=st.integers(min_value=0, max_value=15))
    def knock(self, client: int) -> None:
        was = self.room.state
        t = self.apply(
            waiting_room.knock,
            participant_id=self.new_id(),
            subject=f"cl_{client}",
            display_name=f"C{client}",
        )
        if was in (RoomState.LOCKED, RoomState.ENDED):
            assert t is None
        if t is not None:
            assert isinstance(t.events[0], Knocked)
            assert t.events[0].position == len(waiting_room.waiting_in_order(t.room))

    @rule(client=st.integers(min_value=0, max_value=15))
    def knock_without_the_seat(self, client: int) -> None:
        """A client comes back without their resume token (issue 11): a reconnecting seat is let go and
        they wait in the lobby; a live one still refuses the knock."""
        subject = f"cl_{client}"
        held = self.room.active_of(subject)
        t = self.apply(
            waiting_room.knock,
            participant_id=self.new_id(),
            subject=subject,
            display_name=f"C{client}",
            replace_reconnecting=True,
        )
        if t is None:
            return
        assert t.participant is not None and t.participant.state is ParticipantState.WAITING
        if held is not None:
            assert held.reconnecting_since is not None
            assert t.room.participant(held.id).state is ParticipantState.LEFT

    @rule(clients=st.lists(st.integers(min_value=0, max_value=15), min_size=1, max_size=5))
    def crowd_knocks(self, clients: list[int]) -> None:
        """Several knocks in a row, so lobbies fill and seats run out."""
        for client in clients:
            self.knock(client)

    @rule(who=picks)
    def join_if_admitted(self, who: int) -> None:
        self.apply(in_room.join, participant_id=self.pick_in(who, ParticipantState.ADMITTED))

    @rule(host=st.sampled_from((*HOSTS, NOT_A_HOST)))
    def host_enter(self, host: UserId) -> None:
        t = self.apply(waiting_room.host_enter, participant_id=self.new_id(), user_id=host, display_name="Dr")
        if host == NOT_A_HOST:
            assert t is None

    @rule(by=picks, who=picks)
    def admit(self, by: int, who: int) -> None:
        full = self.room.seats_free == 0
        try:
            t = waiting_room.admit(
                self.room,
                by=self.host(by),
                participant_id=self.pick_in(who, ParticipantState.WAITING),
                at=self.now,
            )
        except RoomFull:
            assert full
            return
        except VIOPError:
            return
        assert not full
        self.room = t.room
        assert t.participant is not None and t.participant.state is ParticipantState.ADMITTED

    @rule(by=picks)
    def admit_all(self, by: int) -> None:
        waiting = len(waiting_room.waiting_in_order(self.room))
        free = self.room.seats_free
        t = self.apply(waiting_room.admit_all, by=self.host(by))
        if t is not None and waiting and free:
            admitted = sum(isinstance(e, Admitted) for e in t.events)
            batch = free if self.room.kind is RoomKind.GROUP else 1
            assert admitted == min(waiting, batch)

    @rule(by=picks, who=picks, message=st.sampled_from([None, "not today", ""]))
    def deny(self, by: int, who: int, message: str | None) -> None:
        self.apply(
            waiting_room.deny,
            by=self.host(by),
            participant_id=self.pick_in(who, ParticipantState.WAITING),
            message=message,
        )

    @rule(by=picks, who=picks)
    def lobby_message(self, by: int, who: int) -> None:
        self.apply(
            waiting_room.lobby_message,
            by=self.host(by),
            participant_id=self.pick_in(who, ParticipantState.WAITING),
            message="hi",
        )

    @rule(by=picks, who=picks)
    def return_to_lobby(self, by: int, who: int) -> None:
        self.apply(
            waiting_room.return_to_lobby,
            by=self.host(by),
            participant_id=self.pick_in(who, ParticipantState.ADMITTED, ParticipantState.IN_ROOM),
        )

    @rule(who=picks)
    def join(self, who: int) -> None:
        self.apply(in_room.join, participant_id=self.pick_in(who, ParticipantState.ADMITTED))

    @rule(who=picks)
    def leave(self, who: int) -> None:
        self.apply(
            in_room.leave,
            participant_id=self.pick_in(
                who, ParticipantState.WAITING, ParticipantState.ADMITTED, ParticipantState.IN_ROOM
            ),
        )

    @rule(by=picks, who=picks)
    def remove(self, by: int, who: int) -> None:
        self.apply(
            in_room.remove,
            by=self.host(by),
            participant_id=self.pick_in(who, ParticipantState.ADMITTED, ParticipantState.IN_ROOM),
        )

    @rule(by=picks, who=picks, muted=st.booleans(), media=st.sampled_from(MuteKind))
    def mute(self, by: int, who: int, muted: bool, media: MuteKind) -> None:
        t = self.apply(
            in_room.mute,
            by=self.host(by),
            participant_id=self.pick_in(who, ParticipantState.ADMITTED, ParticipantState.IN_ROOM),
            muted=muted,
            media=media,
        )
        if t is not None and t.participant is not None:
            kept = t.participant.muted if media is MuteKind.AUDIO else t.participant.video_muted
            assert kept is muted

    @rule(by=picks)
    def lock(self, by: int) -> None:
        self.apply(in_room.lock, by=self.host(by))

    @rule(by=picks)
    def unlock(self, by: int) -> None:
        self.apply(in_room.unlock, by=self.host(by))

    @rule(by=picks, system=st.booleans(), now=st.integers(min_value=0, max_value=3))
    def end(self, by: int, system: bool, now: int) -> None:
        if now:  # ending is final: do it a quarter as often, so sequences have a life before it
            return
        t = self.apply(in_room.end, by=None if system else self.host(by))
        if t is not None:
            assert isinstance(t.events[-1], RoomEnded)

    @rule(who=picks)
    def mark_reconnecting(self, who: int) -> None:
        self.apply(
            in_room.mark_reconnecting,
            participant_id=self.pick_in(
                who, ParticipantState.WAITING, ParticipantState.ADMITTED, ParticipantState.IN_ROOM
            ),
        )

    @rule(who=picks)
    def resume(self, who: int) -> None:
        self.apply(
            in_room.resume,
            participant_id=self.pick_in(
                who, ParticipantState.WAITING, ParticipantState.ADMITTED, ParticipantState.IN_ROOM
            ),
        )

    @rule(who=picks, seconds=st.sampled_from([5.0, 61.0]))
    def time_passes_then_expire(self, who: int, seconds: float) -> None:
        self.now += seconds
        self.apply(
            in_room.expire,
            participant_id=self.pick_in(
                who, ParticipantState.WAITING, ParticipantState.ADMITTED, ParticipantState.IN_ROOM
            ),
            grace=60.0,
        )

    # --- invariants ------------------------------------------------------------------------------

    @invariant()
    def capacity_never_exceeded(self) -> None:
        seated = [p for p in self.room.participants if p.is_seated and p.role is Role.CLIENT]
        assert len(seated) <= self.room.capacity
        self.peak_fullness = max(self.peak_fullness, len(seated) / self.room.capacity)

    @invariant()
    def each_participant_once_in_one_state(self) -> None:
        ids = [p.id for p in self.room.participants]
        assert len(ids) == len(set(ids))
        assert all(isinstance(p.state, ParticipantState) for p in self.room.participants)
        active_subjects = [p.subject for p in self.room.participants if p.state in ACTIVE_STATES]
        assert len(active_subjects) == len(set(active_subjects))
        assert not any(p.state is ParticipantState.KNOCKING for p in self.room.participants)

    @invariant()
    def removed_participants_are_never_pruned(self) -> None:
        states = {p.id: p.state for p in self.room.participants}
        assert all(states.get(pid) is ParticipantState.REMOVED for pid in self.removed)

    @invariant()
    def ended_rooms_hold_nobody(self) -> None:
        if self.room.state is RoomState.ENDED:
            assert not any(p.is_active for p in self.room.participants)
            assert self.room.ended_at is not None
            try:
                waiting_room.knock(
                    self.room,
                    participant_id=ParticipantId("pt_late"),
                    subject="cl_late",
                    display_name="L",
                    at=0,
                )
            except RoomAlreadyEnded:
                pass
            else:
                raise AssertionError("an ended room accepted a knock")

    @invariant()
    def lobby_positions_are_fifo_and_dense(self) -> None:
        waiting = waiting_room.waiting_in_order(self.room)
        seqs = [p.knock_seq for p in waiting]
        assert seqs == sorted(set(seqs))
        assert sorted(waiting_room.positions(self.room).values()) == list(range(1, len(waiting) + 1))
        assert all(p.knock_seq < self.room.next_knock_seq for p in self.room.participants)

    @invariant()
    def hosts_are_hosts_and_live_rooms_started(self) -> None:
        for p in self.room.participants:
            assert (p.role is Role.HOST) == (p.subject in HOSTS)
            assert p.role is Role.HOST or p.state is not ParticipantState.IN_ROOM or p.admitted_at is not None
        if self.room.state in (RoomState.LIVE, RoomState.LOCKED):
            assert self.room.started_at is not None


RoomMachine.TestCase.settings = settings(
    max_examples=500,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRoomMachine = RoomMachine.TestCase
