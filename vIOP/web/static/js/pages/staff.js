// @ts-check
// Staff dashboard: live presence across rooms from WS /ws/presence (no clinical content): rooms, who is
// waiting and for how long (long waits highlighted), who is in which room, who is reconnecting; for a track
// occurrence's room (issue 16), who it expects and whether each is waiting, in the room, still expected, or
// not arrived N minutes after the start (the no-show flag, decided and pushed by the server).
//
// Everything live comes over the socket: a presence_snapshot when it opens (and after any gap), then one
// presence_room per changed room and presence_room_gone when a room ends. Room titles are not on the
// stream; they come from GET /api/v1/rooms. While the page is in use (visible, and someone touched it
// within the sign-in's idle timeout) it pings, which keeps the sign-in alive; a page left alone stops
// pinging, the server ends the stream and the page clears every name from the screen.

import * as api from "../api.js";
import { weekFlag } from "../billing-flags.js";
import { CloseCode, ExpectedStatus, PresenceType, Role } from "../protocol.js";
import { ReconnectingSocket } from "../reconnecting-socket.js";
import { SeatState, normalizeOccurrence, normalizeRoom, normalizeSnapshot } from "../presence-model.js";
import { $, announce, el, formatDuration, showScreen } from "../ui.js";

const LONG_WAIT_SECONDS = 10 * 60;
// Retries: 500 ms doubling to 10 s, 30 of them (about 4 minutes of trying), then the page says so.
const PRESENCE_BACKOFF = Object.freeze({ firstMs: 500, maxMs: 10000, maxAttempts: 30 });
const PING_MAX_MS = 20000;
const TITLE_RELOAD_MIN_MS = 5000;
const SIGNED_OUT_TEXT = "Your sign-in has ended. Sign in again to see presence.";
const ACTIVITY_EVENTS = ["pointerdown", "pointermove", "keydown", "wheel", "touchstart"];

/** @typedef {import("../presence-model.js").RoomSummary} RoomSummary */
/** @typedef {import("../reconnecting-socket.js").WireMessage} WireMessage */

const page = {
  /** @type {string | null} */
  token: null,
  /** @type {ReconnectingSocket | null} */
  socket: null,
  /** @type {Map<string, RoomSummary>} room id -> normalized room, in the stream's order */
  rooms: new Map(),
  /** @type {Map<string, import("../presence-model.js").OccurrenceSummary>} issue 16: room id -> its track occurrence */
  occurrences: new Map(),
  /** @type {Map<string, string>} room id -> title, from GET /api/v1/rooms */
  titles: new Map(),
  titlesLoadedAt: 0,
  receivedAt: 0,
  stopped: false,
  lastActivity: Date.now(),
  /** @type {Record<string, number>} message type -> count, for the diagnostics handle (no content) */
  received: {},
  pings: 0,
};

/**
 * @param {string} text
 * @param {boolean} ok
 */
function setLive(text, ok) {
  const badge = $("#live-state");
  badge.textContent = text;
  badge.classList.toggle("warn", !ok);
}

/** @param {string} text */
function signedOut(text) {
  page.stopped = true;
  page.socket?.stop(CloseCode.NORMAL);
  api.forgetAccessToken();
  // Names leave the screen with the sign-in.
  page.rooms.clear();
  page.occurrences.clear();
  $("#rooms").replaceChildren();
  $("#signed-out-text").textContent = text;
  showScreen("signed-out");
  announce(text);
}

async function loadTitles() {
  page.titlesLoadedAt = Date.now();
  try {
    const listed = await api.listRooms(page.token);
    for (const room of listed.rooms ?? []) page.titles.set(room.id, room.title);
    render();
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 401) signedOut(SIGNED_OUT_TEXT);
    // Otherwise rooms show their ids until the next try.
  }
}

/** @param {string} roomId */
function titleOf(roomId) {
  const title = page.titles.get(roomId);
  if (title === undefined && Date.now() - page.titlesLoadedAt > TITLE_RELOAD_MIN_MS) loadTitles();
  return title || roomId;
}

// --- the stream -------------------------------------------------------------------------------------------

function presenceSocket() {
  return new ReconnectingSocket({
    backoff: PRESENCE_BACKOFF,
    hooks: {
      url: async () => (await api.presenceTicket(page.token)).url,
      urlFailed: (error) => {
        if (error instanceof api.ApiError && error.status === 401) {
          signedOut(SIGNED_OUT_TEXT);
          return false;
        }
        if (error instanceof api.ApiError && error.status === 403) {
          setLive("Not allowed", false);
          return false;
        }
        return true;
      },
      open: () => {
        page.socket?.resetBackoff();
        setLive("Live", true);
        ping(); // whoever opened the page is using it
      },
      message: (message) => onMessage(message),
      closed: (code) => {
        if (code === CloseCode.POLICY_VIOLATION) {
          // The sign-in ended (logout, idle, revoked): reconnecting cannot help.
          signedOut("You were signed out (no activity for a while, or signed out elsewhere). Sign in again to see presence.");
          return false;
        }
        return true;
      },
      gaveUp: () => {
        setLive("Live updates stopped: reload the page", false);
        announce("Live updates stopped. Reload the page to try again.", { assertive: true });
      },
      retryScheduled: () => setLive("Reconnecting…", false),
    },
  });
}

/** @param {WireMessage} message */
function onMessage(message) {
  page.received[message.type] = (page.received[message.type] ?? 0) + 1;
  if (message.type === PresenceType.PRESENCE_SNAPSHOT) {
    const before = page.rooms;
    const snapshot = /** @type {{rooms?: Record<string, any>[], at?: number}} */ (message);
    page.rooms = new Map(normalizeSnapshot(snapshot).map((room) => [room.id, room]));
    page.occurrences = new Map();
    for (const raw of snapshot.rooms ?? []) rememberOccurrence(raw);
    for (const room of page.rooms.values()) announceArrivals(before.get(room.id), room);
    render();
  } else if (message.type === PresenceType.PRESENCE_ROOM) {
    const room = normalizeRoom(message.room, message.at);
    const id = message.room?.room_id;
    if (!id) return;
    if (room) {
      announceArrivals(page.rooms.get(id), room);
      announceNoShows(page.occurrences.get(id), normalizeOccurrence(message.room), id);
      page.rooms.set(id, room);
      rememberOccurrence(message.room);
    } else {
      page.rooms.delete(id);
      page.occurrences.delete(id);
    }
    render();
  } else if (message.type === PresenceType.PRESENCE_ROOM_GONE) {
    page.occurrences.delete(message.room_id);
    if (page.rooms.delete(message.room_id)) {
      announce(`${titleOf(message.room_id)} has ended.`);
      render();
    }
  }
  // presence_event (ids and times) is always followed by its room's presence_room; pong needs nothing.
}

/** @param {Record<string, any>} raw a RoomView */
function rememberOccurrence(raw) {
  const occurrence = normalizeOccurrence(raw);
  if (occurrence && raw.room_id) page.occurrences.set(raw.room_id, occurrence);
  else if (raw.room_id) page.occurrences.delete(raw.room_id);
}

/**
 * Issue 16: a new no-show flag is said once (a count; the names stay on screen).
 * @param {import("../presence-model.js").OccurrenceSummary | undefined} before
 * @param {import("../presence-model.js").OccurrenceSummary | null} now
 * @param {string} roomId
 */
function announceNoShows(before, now, roomId) {
  if (!before || !now) return;
  const flagged = new Set(before.expected.filter((e) => e.status === ExpectedStatus.NO_SHOW).map((e) => e.id));
  const fresh = now.expected.filter((e) => e.status === ExpectedStatus.NO_SHOW && !flagged.has(e.id)).length;
  if (fresh) announce(`${fresh === 1 ? "One expected client has" : `${fresh} expected clients have`} not arrived in ${titleOf(roomId)}.`);
}

/**
 * @param {RoomSummary | undefined} before
 * @param {RoomSummary} room
 */
function announceArrivals(before, room) {
  // Issue 15: a new request to talk is said at once (the name stays on screen, not in the announcement).
  const asked = new Set([...(before?.waiting ?? []), ...(before?.seated ?? [])].filter((p) => p.talkRequested).map((p) => p.id));
  if ([...room.waiting, ...room.seated].some((p) => p.talkRequested && !asked.has(p.id))) {
    announce(`Someone in ${titleOf(room.id)} asked to talk to a clinician.`, { assertive: true });
  }
  const known = new Set((before?.waiting ?? []).map((w) => w.id));
  const arrived = room.waiting.filter((w) => !known.has(w.id)).length;
  if (before && arrived) announce(`${arrived === 1 ? "Someone is" : `${arrived} people are`} waiting in ${titleOf(room.id)}.`);
}

// --- keeping the sign-in alive while the page is in use ----------------------------------------------------

function inUse() {
  return document.visibilityState === "visible" && Date.now() - page.lastActivity < api.idleTimeoutSeconds() * 1000;
}

function ping() {
  if (!page.socket?.isOpen || !inUse()) return;
  page.socket.send({ type: PresenceType.PING });
  page.pings += 1;
}

function watchActivity() {
  const touched = () => {
    page.lastActivity = Date.now();
  };
  for (const type of ACTIVITY_EVENTS) window.addEventListener(type, touched, { passive: true, capture: true });
  // Well inside the idle timeout (at least 60 s), so a page in use never lapses between two pings.
  setInterval(ping, Math.min(PING_MAX_MS, (api.idleTimeoutSeconds() * 1000) / 3));
}

// --- drawing ----------------------------------------------------------------------------------------------

/**
 * @param {number} count
 * @param {string} one
 * @param {string} [many]
 */
function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

function render() {
  if (page.stopped) return;
  page.receivedAt = Date.now();
  const rooms = [...page.rooms.values()];
  $("#rooms").replaceChildren(...rooms.map(roomCard));
  $("#presence-empty").hidden = rooms.length > 0;
  const waiting = rooms.reduce((n, r) => n + r.waiting.length, 0);
  const live = rooms.reduce((n, r) => n + r.live, 0);
  $("#totals").textContent = `${plural(rooms.length, "open room")}, ${plural(live, "person", "people")} in rooms, ${waiting} waiting`;
  tickWaits();
}

/** @param {import("../presence-model.js").PresencePerson} person */
function reconnectingBadge(person) {
  return person.reconnecting ? el("span", { class: "badge warn" }, "Reconnecting") : null;
}

/** @param {import("../presence-model.js").PresencePerson} person */
function talkBadge(person) {
  // Issue 15: shown until a host of the room acknowledges it (hosts do that from the console).
  return person.talkRequested ? el("strong", { class: "badge alert talk-requested", dataset: { talkRequested: "true" } }, "Asked to talk") : null;
}

const EXPECTED_LABELS = Object.freeze({
  [ExpectedStatus.EXPECTED]: "Expected",
  [ExpectedStatus.WAITING]: "Waiting",
  [ExpectedStatus.PRESENT]: "In the room",
  [ExpectedStatus.LEFT]: "Left",
  [ExpectedStatus.NO_SHOW]: "Not arrived",
});

/**
 * Issue 16: who a track occurrence expects, and where each is now; the no-show flag from the server.
 * @param {import("../presence-model.js").OccurrenceSummary | undefined} occurrence
 */
function expectedList(occurrence) {
  if (!occurrence) return [];
  const limit = new Date(occurrence.noShowAt * 1000).toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
  return [
    el("h3", {}, "Expected"),
    occurrence.expected.length
      ? el(
          "ul",
          { class: "plain expected", dataset: { occurrence: occurrence.occurrenceId, noShowAt: String(occurrence.noShowAt) } },
          ...occurrence.expected.map((e) => {
            const label = EXPECTED_LABELS[/** @type {keyof typeof EXPECTED_LABELS} */ (e.status)] ?? e.status;
            const badge = e.status === ExpectedStatus.NO_SHOW ? el("strong", { class: "badge alert no-show" }, label) : el("span", { class: "badge" }, label);
            return el("li", { dataset: { client: e.id, status: e.status } }, el("span", { class: "who" }, e.name || "Client"), " ", badge, " ", weekHours(occurrence, e));
          }),
        )
      : el("p", { class: "hint" }, "Nobody is enrolled."),
    el("p", { class: "hint" }, `Not here by ${limit}: flagged as not arrived.`),
  ];
}

/**
 * Issue 16: a client's hours this program week against the 9 hours ("needs 3 h more by Sunday"), worded by
 * the attendance page's billing flags.
 * @param {import("../presence-model.js").OccurrenceSummary} occurrence
 * @param {import("../presence-model.js").ExpectedClient} client
 */
function weekHours(occurrence, client) {
  if (client.weekMinutes === null || client.weekMissing === null || !occurrence.weekStart || !occurrence.weekEnd || !occurrence.today) return null;
  const flag = weekFlag({ week_start: occurrence.weekStart, week_end: occurrence.weekEnd, minutes_missing: client.weekMissing }, occurrence.today);
  return el(
    "span",
    { class: "week-hours hint", dataset: { weekMinutes: String(client.weekMinutes), weekMissing: String(client.weekMissing) } },
    // Attended hours round down to a tenth (the shortfall in the flag rounds up): never more than was there.
    `${Math.floor(client.weekMinutes / 6 + 1e-9) / 10} h this week `,
    flag ? el("span", { class: "badge warn week-flag" }, flag) : " (9 h met)",
  );
}

/** @param {RoomSummary} room */
function roomCard(room) {
  const titleId = `room-${room.id}`;
  const occurrence = page.occurrences.get(room.id);
  const noShows = occurrence ? occurrence.expected.filter((e) => e.status === ExpectedStatus.NO_SHOW).length : 0;
  return el(
    "section",
    { class: "card", "aria-labelledby": titleId, dataset: { room: room.id, live: String(room.live), waiting: String(room.waiting.length), reconnecting: String(room.reconnecting), noShows: String(noShows) } },
    el("h2", { id: titleId }, `${titleOf(room.id)} `, el("span", { class: "hint" }, `${room.kind} · ${room.state}`)),
    el("p", { class: "room-counts" }, `${room.live} in the room · ${room.waiting.length} waiting · ${room.reconnecting} reconnecting`),
    el("h3", {}, "Waiting"),
    room.waiting.length
      ? el("ul", { class: "plain waiting" }, ...room.waiting.map((w) => el("li", { dataset: { since: String(w.waitedSeconds), participant: w.id, state: w.reconnecting ? "reconnecting" : "live" } }, el("span", { class: "who" }, w.name), " ", el("span", {}, el("span", { class: "wait" }), " ", reconnectingBadge(w), " ", talkBadge(w)))))
      : el("p", { class: "hint" }, "Nobody is waiting."),
    el("h3", {}, "In the room"),
    room.seated.length
      ? el("ul", { class: "plain in-room" }, ...room.seated.map((p) => el("li", { dataset: { participant: p.id, inRoom: String(p.inRoomSeconds), state: p.reconnecting ? "reconnecting" : p.state === SeatState.IN_ROOM ? "live" : "joining" } }, el("span", { class: "who" }, p.name), " ", el("span", {}, el("span", { class: "hint" }, p.role === Role.HOST ? "clinician" : "client", p.state === SeatState.IN_ROOM ? "" : ", joining"), " ", el("span", { class: "in-room-time hint" }), " ", reconnectingBadge(p), " ", talkBadge(p)))))
      : el("p", { class: "hint" }, "Nobody is in the room."),
    ...expectedList(occurrence),
  );
}

function tickWaits() {
  const elapsed = (Date.now() - page.receivedAt) / 1000;
  for (const item of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("ul.waiting > li"))) {
    const seconds = Number(item.dataset.since) + elapsed;
    /** @type {HTMLElement} */ (item.querySelector(".wait")).textContent = `waiting ${formatDuration(seconds)}`;
    item.classList.toggle("long-wait", seconds >= LONG_WAIT_SECONDS);
  }
  // Issue 15: how long each seated person has been in the room (counted from the stream's time).
  for (const item of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("ul.in-room > li"))) {
    const seconds = Number(item.dataset.inRoom) + elapsed;
    /** @type {HTMLElement} */ (item.querySelector(".in-room-time")).textContent = `in the room ${formatDuration(seconds)}`;
  }
}

// A read-only diagnostics handle for support staff and the browser tests: counts only, no names.
function exposeDiagnostics() {
  window.viopPresence = Object.freeze({
    socketOpen: () => Boolean(page.socket?.isOpen),
    received: () => ({ ...page.received }),
    pings: () => page.pings,
    rooms: () => [...page.rooms.keys()],
  });
}

function main() {
  $("#sign-out-link").addEventListener("click", async (/** @type {Event} */ event) => {
    event.preventDefault();
    page.stopped = true;
    page.socket?.stop(CloseCode.NORMAL);
    await api.logout();
    location.assign("/");
  });
  page.token = api.accessToken();
  if (!page.token) {
    showScreen("signed-out");
    return;
  }
  exposeDiagnostics();
  showScreen("presence");
  watchActivity();
  setInterval(tickWaits, 1000);
  loadTitles();
  page.socket = presenceSocket();
  page.socket.connect();
}

main();
