// @ts-check
// The presence stream's room views (WS /ws/presence: presence_snapshot, presence_room; docs/API.md) reduced
// to what the staff dashboard draws. The stream carries ids, names and times only: room titles come from
// GET /api/v1/rooms and are joined in by the page. Pure: no DOM, so Node's test runner imports it.

import { ExpectedStatus, Role } from "./protocol.js";

/** A room's lifecycle state as the presence stream reports it. */
export const RoomState = Object.freeze({ OPEN: "open", ENDED: "ended" });

/** A seat's state: "admitted" seats have no media yet, "in_room" ones are live. */
export const SeatState = Object.freeze({ ADMITTED: "admitted", IN_ROOM: "in_room" });

/**
 * @typedef {object} PresencePerson
 * @property {string} id
 * @property {string} name
 * @property {string} role
 * @property {boolean} reconnecting
 * @property {number} waitedSeconds
 * @property {number} inRoomSeconds how long a seated person has held their seat (0 for the lobby)
 * @property {boolean} talkRequested issue 15: asked to talk, not yet acknowledged by a host
 * @property {string | null} state
 */

/**
 * @typedef {object} RoomSummary
 * @property {string} id
 * @property {string} kind
 * @property {string} state
 * @property {PresencePerson[]} waiting
 * @property {PresencePerson[]} seated
 * @property {number} live people in the room with media
 * @property {number} reconnecting people waiting or seated whose socket is down
 */

/**
 * @param {Record<string, any>} raw a LobbyEntry or a seat from the stream
 * @param {number | undefined} at the message's time (Unix seconds): a seat's time in the room is counted to it
 * @returns {PresencePerson}
 */
function person(raw, at) {
  return {
    id: raw.participant_id ?? "",
    name: raw.display_name ?? "Participant",
    role: raw.role ?? Role.CLIENT,
    // Seats carry reconnecting_since (null while connected); lobby entries a boolean.
    reconnecting: Boolean(raw.reconnecting ?? raw.reconnecting_since),
    waitedSeconds: Number(raw.waited_seconds ?? 0),
    inRoomSeconds: typeof raw.since === "number" && typeof at === "number" ? Math.max(0, at - raw.since) : 0,
    talkRequested: raw.talk_requested_since != null,
    state: raw.state ?? null,
  };
}

/**
 * One RoomView; null for a room that has ended (the dashboard drops it).
 * @param {Record<string, any> | null | undefined} room
 * @param {number} [at] the message's time (Unix seconds)
 * @returns {RoomSummary | null}
 */
export function normalizeRoom(room, at) {
  if (!room || room.state === RoomState.ENDED) return null;
  /** @type {PresencePerson[]} */
  const waiting = (room.waiting ?? []).map((/** @type {Record<string, any>} */ raw) => person(raw, at));
  /** @type {PresencePerson[]} */
  const seated = (room.seated ?? []).map((/** @type {Record<string, any>} */ raw) => person(raw, at));
  return {
    id: room.room_id,
    kind: room.kind ?? "group",
    state: room.state ?? RoomState.OPEN,
    waiting,
    seated,
    // "admitted" seats have no media yet: they are on their way in, not live in the room.
    live: seated.filter((p) => p.state === SeatState.IN_ROOM).length,
    reconnecting: [...waiting, ...seated].filter((p) => p.reconnecting).length,
  };
}

/**
 * @typedef {object} ExpectedClient
 * @property {string} id the client's opaque id
 * @property {string} name "" when the client's name is gone (crypto-shredded)
 * @property {string} status an ExpectedStatus (protocol.js): expected, waiting, present, left or no_show
 * @property {number | null} weekMinutes attended this program week so far (null: not counted)
 * @property {number | null} weekMissing short of the week's 9 hours, in minutes (0 when met)
 */

/**
 * @typedef {object} OccurrenceSummary issue 16: the track occurrence a room was opened for
 * @property {string} trackId
 * @property {string} occurrenceId
 * @property {number} startsAt Unix seconds
 * @property {number} noShowAt Unix seconds: an absent expected client is a no-show from then (the server decides)
 * @property {ExpectedClient[]} expected
 * @property {string | null} today YYYY-MM-DD in the track's time zone
 * @property {string | null} weekStart YYYY-MM-DD
 * @property {string | null} weekEnd YYYY-MM-DD: the week's hours are due by then
 */

/**
 * A RoomView's occurrence (issue 16); null for a room made by hand.
 * @param {Record<string, any> | null | undefined} room
 * @returns {OccurrenceSummary | null}
 */
export function normalizeOccurrence(room) {
  const raw = room?.occurrence;
  if (!raw) return null;
  return {
    trackId: raw.track_id ?? "",
    occurrenceId: raw.occurrence_id ?? "",
    startsAt: Number(raw.starts_at ?? 0),
    noShowAt: Number(raw.no_show_at ?? 0),
    expected: (raw.expected ?? []).map((/** @type {Record<string, any>} */ e) => ({
      id: e.client_id ?? "",
      name: e.display_name ?? "",
      status: e.status ?? ExpectedStatus.EXPECTED,
      weekMinutes: typeof e.week_minutes === "number" ? e.week_minutes : null,
      weekMissing: typeof e.week_minutes_missing === "number" ? e.week_minutes_missing : null,
    })),
    today: raw.today ?? null,
    weekStart: raw.week_start ?? null,
    weekEnd: raw.week_end ?? null,
  };
}

/**
 * @param {{rooms?: Record<string, any>[], at?: number} | null | undefined} snapshot
 * @returns {RoomSummary[]}
 */
export function normalizeSnapshot(snapshot) {
  return (snapshot?.rooms ?? []).map((room) => normalizeRoom(room, snapshot?.at)).filter(/** @returns {r is RoomSummary} */ (r) => r !== null);
}
