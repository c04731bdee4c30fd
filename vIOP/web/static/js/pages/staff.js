// Staff dashboard: live presence across rooms from WS /ws/presence (no clinical content): rooms, who is
// waiting and for how long (long waits highlighted), who is in which room, who is reconnecting.
// The socket carries snapshots or change events; on a change event the page reloads the snapshot from
// GET /api/v1/presence, so it never shows a half-applied state. A dropped socket is reopened with a new ticket.

import * as api from "../api.js";
import { normalizeSnapshot } from "../presence-model.js";
import { $, announce, el, formatDuration, showScreen } from "../ui.js";

const LONG_WAIT_SECONDS = 10 * 60;
const BACKOFF_MAX_MS = 10000;
const MAX_ATTEMPTS = 30; // about 4 minutes of trying, then the page says so

const page = { token: null, ws: null, attempt: 0, snapshot: null, receivedAt: 0, refreshTimer: null, stopped: false };

function setLive(text, ok) {
  const badge = $("#live-state");
  badge.textContent = text;
  badge.classList.toggle("warn", !ok);
}

async function refresh() {
  try {
    render(normalizeSnapshot(await api.presenceSnapshot(page.token)));
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 401) {
      page.stopped = true;
      page.ws?.close(1000);
      api.forgetAccessToken();
      showScreen("signed-out");
      return;
    }
    announce(api.describeError(error), { assertive: true });
  }
}

function scheduleRefresh() {
  clearTimeout(page.refreshTimer);
  // Events often come in bursts (admit all): one reload for the burst.
  page.refreshTimer = setTimeout(refresh, 50);
}

async function connect() {
  if (page.stopped) return;
  let ticket;
  try {
    ticket = await api.presenceTicket(page.token);
  } catch (error) {
    if (error instanceof api.ApiError && (error.status === 401 || error.status === 403)) {
      setLive("Not allowed", false);
      return;
    }
    retry();
    return;
  }
  const ws = new WebSocket(ticket.url);
  page.ws = ws;
  ws.addEventListener("open", () => {
    page.attempt = 0;
    setLive("Live", true);
    scheduleRefresh();
  });
  ws.addEventListener("message", (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (Array.isArray(message?.rooms)) render(normalizeSnapshot(message));
    else scheduleRefresh();
  });
  ws.addEventListener("close", (event) => {
    if (ws !== page.ws || page.stopped) return;
    page.ws = null;
    if (event.code === 1008) {
      setLive("Signed out", false);
      return;
    }
    retry();
  });
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

function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

function render(snapshot) {
  page.snapshot = snapshot;
  page.receivedAt = Date.now();
  const container = $("#rooms");
  container.replaceChildren(...snapshot.rooms.map(roomCard));
  $("#presence-empty").hidden = snapshot.rooms.length > 0;
  const waiting = snapshot.rooms.reduce((n, r) => n + r.waiting.length, 0);
  const live = snapshot.rooms.reduce((n, r) => n + r.inRoom.length, 0);
  $("#totals").textContent = `${plural(snapshot.rooms.length, "open room")}, ${plural(live, "person", "people")} in rooms, ${waiting} waiting`;
  tickWaits();
}

function roomCard(room) {
  const titleId = `room-${room.id}`;
  const live = room.inRoom.length;
  return el(
    "section",
    { class: "card", "aria-labelledby": titleId, dataset: { room: room.id, live: String(live), waiting: String(room.waiting.length) } },
    el("h2", { id: titleId }, `${room.title || room.id} `, el("span", { class: "hint" }, `${room.kind} · ${room.state}`)),
    el("p", { class: "room-counts" }, `${live} in the room · ${room.waiting.length} waiting · ${room.reconnecting} reconnecting`),
    el("h3", {}, "Waiting"),
    room.waiting.length
      ? el("ul", { class: "plain waiting" }, ...room.waiting.map((w) => el("li", { dataset: { since: String(w.waitedSeconds), participant: w.id } }, el("span", { class: "who" }, w.name), el("span", { class: "wait" }), w.reconnecting ? el("span", { class: "badge warn" }, "Reconnecting") : null)))
      : el("p", { class: "hint" }, "Nobody is waiting."),
    el("h3", {}, "In the room"),
    room.inRoom.length
      ? el("ul", { class: "plain in-room" }, ...room.inRoom.map((p) => el("li", { dataset: { participant: p.id, state: p.reconnecting ? "reconnecting" : "live" } }, el("span", { class: "who" }, p.name), el("span", { class: "hint" }, p.role === "host" ? "clinician" : "client"), p.reconnecting ? el("span", { class: "badge warn" }, "Reconnecting") : null)))
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
  showScreen("presence");
  setInterval(tickWaits, 1000);
  refresh();
  connect();
}

main();
