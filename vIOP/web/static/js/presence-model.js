// The presence stream's room views (WS /ws/presence: presence_snapshot, presence_room; docs/API.md) reduced
// to what the staff dashboard draws. The stream carries ids, names and times only: room titles come from
// GET /api/v1/rooms and are joined in by the page.

function person(raw) {
  return {
    id: raw.participant_id ?? "",
    name: raw.display_name ?? "Participant",
    role: raw.role ?? "client",
    // Seats carry reconnecting_since (null while connected); lobby entries a boolean.
    reconnecting: Boolean(raw.reconnecting ?? raw.reconnecting_since),
    waitedSeconds: Number(raw.waited_seconds ?? 0),
    state: raw.state ?? null,
  };
}

// One RoomView; null for a room that has ended (the dashboard drops it).
export function normalizeRoom(room) {
  if (!room || room.state === "ended") return null;
  const waiting = (room.waiting ?? []).map(person);
  const seated = (room.seated ?? []).map(person);
  return {
    id: room.room_id,
    kind: room.kind ?? "group",
    state: room.state ?? "open",
    waiting,
    seated,
    // "admitted" seats have no media yet: they are on their way in, not live in the room.
    live: seated.filter((p) => p.state === "in_room").length,
    reconnecting: [...waiting, ...seated].filter((p) => p.reconnecting).length,
  };
}

export function normalizeSnapshot(snapshot) {
  return (snapshot?.rooms ?? []).map(normalizeRoom).filter(Boolean);
}
