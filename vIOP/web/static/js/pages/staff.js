// Staff dashboard: live presence across rooms from WS /ws/presence (no clinical content): rooms, who is
// waiting and for how long (long waits highlighted), who is in which room, who is reconnecting.
//
// Everything live comes over the socket: a presence_snapshot when it opens (and after any gap), then one
// presence_room per changed room and presence_room_gone when a room ends. Room titles are not on the
// stream; they come from GET /api/v1/rooms. While the page is in use (visible, and someone touched it
// within the sign-in's idle timeout) it pings, which keeps the sign-in alive; a page left alone stops
// pinging, the server ends the stream and the page clears every name from the screen.

import * as api from "../api.js";
import { normalizeRoom, normalizeSnapshot } from "../presence-model.js";
import { $, announce, el, formatDuration, showScreen } from "../ui.js";

const LONG_WAIT_SECONDS = 10 * 60;
const BACKOFF_MAX_MS = 10000;
const MAX_ATTEMPTS = 30; // about 4 minutes of trying, then the page says so
const PING_MAX_MS = 20000;
const TITLE_RELOAD_MIN_MS = 5000;
const CLOSE_POLICY = 1008; // the sign-in ended (logout, idle, revoked): reconnecting cannot help
const ACTIVITY_EVENTS = ["pointerdown", "pointermove", "keydown", "wheel", "touchstart"];

const page = {
  token: null,
  ws: null,
  attempt: 0,
  rooms: new Map(), // room id -> normalized room, in the stream's order
  titles: new Map(), // room id -> title, from GET /api/v1/rooms
  titlesLoadedAt: 0,
  receivedAt: 0,
  stopped: false,
  lastActivity: Date.now(),
  received: {}, // message type -> count, for the diagnostics handle (no content)
  pings: 0,
};

function setLive(text, ok) {
  const badge = $("#live-state");
  badge.textContent = text;
  badge.classList.toggle("warn", !ok);
}

function signedOut(text) {
  page.stopped = true;
  const ws = page.ws;
  page.ws = null;
  ws?.close(1000);
  api.forgetAccessToken();
  // Names leave the screen with the sign-in.
  page.rooms.clear();
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
    if (error instanceof api.ApiError && error.status === 401) signedOut("Your sign-in has ended. Sign in again to see presence.");
    // Otherwise rooms show their ids until the next try.
  }
}

function titleOf(roomId) {
  const title = page.titles.get(roomId);
  if (title === undefined && Date.now() - page.titlesLoadedAt > TITLE_RELOAD_MIN_MS) loadTitles();
  return title || roomId;
}

// --- the stream -------------------------------------------------------------------------------------------

async function connect() {
  if (page.stopped) return;
  let ticket;
  try {
    ticket = await api.presenceTicket(page.token);
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 401) {
      signedOut("Your sign-in has ended. Sign in again to see presence.");
      return;
    }
    if (error instanceof api.ApiError && error.status === 403) {
      setLive("Not allowed", false);
      return;
    }
    retry();
    return;
  }
  if (page.stopped) return;
  const ws = new WebSocket(ticket.url);
  page.ws = ws;
  ws.addEventListener("open", () => {
    page.attempt = 0;
    setLive("Live", true);
    ping(); // whoever opened the page is using it
  });
  ws.addEventListener("message", (event) => {
    if (ws !== page.ws) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (typeof message?.type === "string") onMessage(message);
  });
  ws.addEventListener("close", (event) => {
    if (ws !== page.ws || page.stopped) return;
    page.ws = null;
    if (event.code === CLOSE_POLICY) {
      signedOut("You were signed out (no activity for a while, or signed out elsewhere). Sign in again to see presence.");
      return;
    }
    retry();
  });
}

function onMessage(message) {
  page.received[message.type] = (page.received[message.type] ?? 0) + 1;
  if (message.type === "presence_snapshot") {
    const before = page.rooms;
    page.rooms = new Map(normalizeSnapshot(message).map((room) => [room.id, room]));
    for (const room of page.rooms.values()) announceArrivals(before.get(room.id), room);
    render();
  } else if (message.type === "presence_room") {
    const room = normalizeRoom(message.room);
    const id = message.room?.room_id;
    if (!id) return;
    if (room) {
      announceArrivals(page.rooms.get(id), room);
      page.rooms.set(id, room);
    } else page.rooms.delete(id);
    render();
  } else if (message.type === "presence_room_gone") {
    if (page.rooms.delete(message.room_id)) {
      announce(`${titleOf(message.room_id)} has ended.`);
      render();
    }
  }
  // presence_event (ids and times) is always followed by its room's presence_room; pong needs nothing.
}

function announceArrivals(before, room) {
  const known = new Set((before?.waiting ?? []).map((w) => w.id));
  const arrived = room.waiting.filter((w) => !known.has(w.id)).length;
  if (before && arrived) announce(`${arrived === 1 ? "Someone is" : `${arrived} people are`} waiting in ${titleOf(room.id)}.`);
}

function retry() {
  if (page.attempt >= MAX_ATTEMPTS) {
    setLive("Live updates stopped: reload the page", false);
    announce("Live updates stopped. Reload the page to try again.", { assertive: true });
    return;
  }
  setLive("Reconnecting…", false);
  const ceiling = Math.min(BACKOFF_MAX_MS, 500 * 2 ** page.attempt);
  page.attempt += 1;
  setTimeout(connect, ceiling / 2 + Math.random() * (ceiling / 2));
}

// --- keeping the sign-in alive while the page is in use ----------------------------------------------------

function inUse() {
  return document.visibilityState === "visible" && Date.now() - page.lastActivity < api.idleTimeoutSeconds() * 1000;
}

function ping() {
  if (!page.ws || page.ws.readyState !== WebSocket.OPEN || !inUse()) return;
  page.ws.send(JSON.stringify({ type: "ping" }));
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

function reconnectingBadge(person) {
  return person.reconnecting ? el("span", { class: "badge warn" }, "Reconnecting") : null;
}

function roomCard(room) {
  const titleId = `room-${room.id}`;
  return el(
    "section",
    { class: "card", "aria-labelledby": titleId, dataset: { room: room.id, live: String(room.live), waiting: String(room.waiting.length), reconnecting: String(room.reconnecting) } },
    el("h2", { id: titleId }, `${titleOf(room.id)} `, el("span", { class: "hint" }, `${room.kind} · ${room.state}`)),
    el("p", { class: "room-counts" }, `${room.live} in the room · ${room.waiting.length} waiting · ${room.reconnecting} reconnecting`),
    el("h3", {}, "Waiting"),
    room.waiting.length
      ? el("ul", { class: "plain waiting" }, ...room.waiting.map((w) => el("li", { dataset: { since: String(w.waitedSeconds), participant: w.id, state: w.reconnecting ? "reconnecting" : "live" } }, el("span", { class: "who" }, w.name), " ", el("span", {}, el("span", { class: "wait" }), " ", reconnectingBadge(w)))))
      : el("p", { class: "hint" }, "Nobody is waiting."),
    el("h3", {}, "In the room"),
    room.seated.length
      ? el("ul", { class: "plain in-room" }, ...room.seated.map((p) => el("li", { dataset: { participant: p.id, state: p.reconnecting ? "reconnecting" : p.state === "in_room" ? "live" : "joining" } }, el("span", { class: "who" }, p.name), " ", el("span", {}, el("span", { class: "hint" }, p.role === "host" ? "clinician" : "client", p.state === "in_room" ? "" : ", joining"), " ", reconnectingBadge(p)))))
      : el("p", { class: "hint" }, "Nobody is in the room."),
  );
}

function tickWaits() {
  const elapsed = (Date.now() - page.receivedAt) / 1000;
  for (const item of document.querySelectorAll("ul.waiting > li")) {
    const seconds = Number(item.dataset.since) + elapsed;
    item.querySelector(".wait").textContent = `waiting ${formatDuration(seconds)}`;
    item.classList.toggle("long-wait", seconds >= LONG_WAIT_SECONDS);
  }
}

// A read-only diagnostics handle for support staff and the browser tests: counts only, no names.
function exposeDiagnostics() {
  window.viopPresence = Object.freeze({
    socketOpen: () => page.ws?.readyState === WebSocket.OPEN,
    received: () => ({ ...page.received }),
    pings: () => page.pings,
    rooms: () => [...page.rooms.keys()],
  });
}

function main() {
  $("#sign-out-link").addEventListener("click", async (event) => {
    event.preventDefault();
    page.stopped = true;
    page.ws?.close(1000);
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
  connect();
}

main();
