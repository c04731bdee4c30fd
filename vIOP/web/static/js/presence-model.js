// The presence snapshot (GET /api/v1/presence, docs/API.md) reduced to what the staff dashboard draws.
// Times may come as seconds waited or as epoch timestamps; both become "seconds so far".

function secondsSince(value, now) {
  if (typeof value !== "number") return 0;
  return Math.max(0, now - value);
}

function person(raw, now) {
  return {
    id: raw.participant_id ?? raw.id ?? "",
    name: raw.display_name ?? raw.name ?? "Participant",
    role: raw.role ?? "client",
    reconnecting: Boolean(raw.reconnecting ?? raw.reconnecting_since),
    waitedSeconds: raw.waited_seconds ?? secondsSince(raw.knocked_at ?? raw.since, now),
    state: raw.state ?? null,
  };
}

export function normalizeSnapshot(snapshot) {
  const now = typeof snapshot?.now === "number" ? snapshot.now : Date.now() / 1000;
  const rooms = (snapshot?.rooms ?? []).map((room) => {
    const waiting = (room.waiting ?? []).map((w) => person(w, now));
    const seated = (room.in_room ?? room.seated ?? room.participants ?? []).map((p) => person(p, now));
    const inRoom = seated.filter((p) => p.state === null || p.state === "in_room");
    return {
      id: room.room_id ?? room.id,
      title: room.title ?? null,
      kind: room.kind ?? "group",
      state: room.state ?? "open",
      waiting,
      inRoom,
      reconnecting: [...waiting, ...seated].filter((p) => p.reconnecting).length,
    };
  });
  return { rooms: rooms.filter((r) => r.state !== "ended") };
}
