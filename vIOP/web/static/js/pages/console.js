// @ts-check
// Clinician console: rooms list (GET /api/v1/rooms), create a room, invite links, and the live room (video,
// lobby, roster). /console shows the rooms; /console#room=<id> opens one (so a reload returns to the live room).
//
// The signaling socket's pings keep the seat; they renew the sign-in only while the console is in use: the
// page is visible and either someone touched it within the idle timeout or media is flowing in the room (a
// clinician watching a group without typing is not signed out mid-session; a hidden, idle tab is).

import { ClientType, MAX_DISPLAY_NAME_CHARS, MAX_ROOM_CAPACITY, MAX_ROOM_TITLE_CHARS } from "../protocol.js";
import * as api from "../api.js";
import { exposeDiagnostics } from "../diagnostics.js";
import { EndReason } from "../signaling.js";
import { openLocalMedia, stopStream } from "../devices.js";
import { ModerationPanels } from "../moderation.js";
import { Phase, RoomSession } from "../room-session.js";
import { ChatPanel } from "../chat.js";
import { wireShareButton } from "../share-button.js";
import { $, announce, copyText, el, setBusy, setPressed, showScreen } from "../ui.js";
import { VideoGrid } from "../video-grid.js";
import { detailOf } from "../events.js";

const page = {
  /** @type {string | null} */
  token: null,
  /** @type {RoomSession | null} */
  session: null,
  /** @type {ModerationPanels | null} */
  panels: null,
  /** @type {MediaStream | null} */
  stream: null,
  /** @type {Record<string, any> | null} the room being hosted, as GET /api/v1/rooms/{id} returns it */
  room: null,
  lastInput: Date.now(),
};

function mediaFlowing() {
  const session = page.session;
  return Boolean(session && session.phase === Phase.IN_ROOM && session.trackOwner.size > 0);
}

function inUse() {
  if (document.visibilityState !== "visible") return false;
  return Date.now() - page.lastInput < api.idleTimeoutSeconds() * 1000 || mediaFlowing();
}

function watchActivity() {
  const touched = () => {
    page.lastInput = Date.now();
  };
  for (const kind of ["pointerdown", "keydown", "wheel", "touchstart"]) {
    document.addEventListener(kind, touched, { capture: true, passive: true });
  }
}

/** @type {Readonly<Record<string, string>>} */
const STATE_LABELS = Object.freeze({ open: "open", live: "live now", locked: "live, locked" });

/** @param {unknown} error */
function handleAuthFailure(error) {
  if (error instanceof api.ApiError && error.status === 401) {
    api.forgetAccessToken();
    showScreen("signed-out");
    return true;
  }
  return false;
}

// The server lists the rooms this clinician hosts that have not ended, newest first.
async function loadRooms() {
  const error = $("#rooms-error");
  try {
    const listed = await api.listRooms(page.token);
    error.hidden = true;
    renderRooms(listed.rooms ?? []);
  } catch (failure) {
    if (handleAuthFailure(failure)) return;
    error.textContent = `Your rooms could not be loaded. ${api.describeError(failure)}`;
    error.hidden = false;
    announce(error.textContent, { assertive: true });
  }
}

/** @typedef {Record<string, any>} RoomRow a room as GET /api/v1/rooms lists it */
/** @typedef {import("../events.js").ClickEvent} ClickEvent */

/** @param {RoomRow} room */
function roomLabel(room) {
  return room.title || room.id;
}

/** @param {RoomRow[]} rooms */
function renderRooms(rooms) {
  const list = $("#room-list");
  list.replaceChildren(
    ...rooms
      .map((room) =>
        el(
          "li",
          { dataset: { room: room.id } },
          el("span", {}, el("span", { class: "who" }, roomLabel(room)), ` (${room.kind === "individual" ? "individual" : "group"}, ${STATE_LABELS[room.state] ?? room.state})`),
          el("button", { type: "button", "aria-label": `Open ${roomLabel(room)}`, onclick: () => openRoom(room.id) }, "Open room"),
        ),
      ),
  );
  $("#rooms-empty").hidden = list.children.length > 0;
}

// --- tracks (issue 16): the clinician's tracks, today's sessions, enrollment links ----------------------------

/** @typedef {Record<string, any>} TrackRow a track as GET /api/v1/tracks lists it */

async function loadTracks() {
  const error = $("#tracks-error");
  try {
    const listed = await api.listTracks(page.token);
    error.hidden = true;
    renderTracks(listed.tracks ?? []);
  } catch (failure) {
    if (handleAuthFailure(failure)) return;
    error.textContent = `Your tracks could not be loaded. ${api.describeError(failure)}`;
    error.hidden = false;
  }
}

/** @param {TrackRow[]} tracks */
function renderTracks(tracks) {
  const list = $("#track-list");
  list.replaceChildren(
    ...tracks.map((track) =>
      el(
        "li",
        { dataset: { track: track.id } },
        el("span", { class: "who" }, track.title),
        ` (${track.rrule}, ${track.time_zone})`,
        el("button", { type: "button", class: "secondary", "aria-label": `Enroll a client in ${track.title}`, onclick: () => startEnroll(track) }, "Enroll client"),
      ),
    ),
  );
  $("#tracks-empty").hidden = tracks.length > 0;
  // "Today" as the server's clock and each track's time zone say (TrackView.today).
  const today = tracks.flatMap((track) => track.today ?? []);
  today.sort((a, b) => a.starts_at.localeCompare(b.starts_at));
  /** @param {string} iso @param {string} timeZone */
  const at = (iso, timeZone) => new Intl.DateTimeFormat(navigator.language, { hour: "numeric", minute: "2-digit", timeZone }).format(new Date(iso));
  const zones = Object.fromEntries(tracks.map((track) => [track.id, track.time_zone]));
  $("#today-list").replaceChildren(
    ...today.map((o) =>
      el(
        "li",
        { dataset: { occurrence: o.key, room: o.room_id || "" } },
        el("span", { class: "who" }, o.title),
        ` ${at(o.starts_at, zones[o.track_id])}–${at(o.ends_at, zones[o.track_id])}`,
        o.room_id
          ? el("button", { type: "button", "aria-label": `Open ${o.title} session`, onclick: () => openRoom(o.room_id) }, "Open room")
          : el("span", { class: "hint" }, ` (room opens ${at(o.lobby_opens_at, zones[o.track_id])})`),
      ),
    ),
  );
  $("#today-empty").hidden = today.length > 0;
}

/** @param {TrackRow} track */
function startEnroll(track) {
  const form = $("#enroll-form");
  form.dataset.track = track.id;
  $("#enroll-track-title").textContent = track.title;
  form.hidden = false;
  $("#enroll-result").hidden = true;
  $("#enroll-name").focus();
}

/** @param {import("../events.js").FormSubmitEvent} event */
async function onEnroll(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const name = form.display_name.value.trim();
  if (!name) return;
  try {
    const created = await api.enrollClient(page.token, form.dataset.track, name);
    form.reset();
    /** @type {HTMLInputElement} */ ($("#enroll-link")).value = created.join_url;
    $("#enroll-result").hidden = false;
    announce("Enrollment link created. Copy it now: it is shown once.");
  } catch (failure) {
    if (handleAuthFailure(failure)) return;
    announce(api.describeError(failure), { assertive: true });
  }
}

/** @param {import("../events.js").FormSubmitEvent} event */
async function onCreateTrack(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $("#create-track-error");
  const submit = $("#create-track-submit");
  setBusy(submit, true);
  try {
    await api.createTrack(page.token, {
      title: form.title.value.trim(),
      time_zone: form.time_zone.value.trim(),
      first_start: String(form.first_start.value).slice(0, 16),
      rrule: form.rrule.value.trim(),
      duration_minutes: Number(form.duration_minutes.value || 0),
    });
    error.hidden = true;
    announce("Track created.");
    await loadTracks();
  } catch (failure) {
    if (handleAuthFailure(failure)) return;
    error.textContent = api.describeError(failure);
    error.hidden = false;
    announce(error.textContent, { assertive: true });
  } finally {
    setBusy(submit, false);
  }
}

/** @param {import("../events.js").FormSubmitEvent} event */
async function onCreateRoom(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $("#create-room-error");
  const title = form.title.value.trim();
  if (!title) {
    error.textContent = "Enter a name for the room.";
    error.hidden = false;
    form.title.focus();
    return;
  }
  error.hidden = true;
  const submit = $("#create-room-submit");
  setBusy(submit, true);
  try {
    const capacity = form.capacity.value ? Number(form.capacity.value) : undefined;
    const room = await api.createRoom(page.token, { kind: form.kind.value, title, capacity });
    form.reset();
    announce(`Room ${roomLabel(room)} created.`);
    await loadRooms();
  } catch (failure) {
    if (handleAuthFailure(failure)) return;
    error.textContent = api.describeError(failure);
    error.hidden = false;
    announce(error.textContent, { assertive: true });
  } finally {
    setBusy(submit, false);
  }
}

/** @param {import("../events.js").FormSubmitEvent} event */
async function onCreateInvite(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $("#invite-error");
  const name = form.display_name.value.trim();
  if (!name) {
    error.textContent = "Enter the client's display name.";
    error.hidden = false;
    form.display_name.focus();
    return;
  }
  error.hidden = true;
  const submit = $("#invite-submit");
  setBusy(submit, true);
  try {
    const invite = await api.createInvite(page.token, /** @type {Record<string, any>} */ (page.room).id, { displayName: name, expiresIn: Number(form.expires_in.value) });
    // The room id rides along in the fragment so the join page can ask for a ticket for that room.
    const fragment = new URLSearchParams({ invite: invite.invite_token, room: invite.room_id ?? /** @type {Record<string, any>} */ (page.room).id });
    $("#invite-link").value = `${location.origin}/join#${fragment}`;
    $("#invite-result").hidden = false;
    form.display_name.value = "";
    announce("Invite link created. Copy it and send it to the client privately.");
  } catch (failure) {
    if (handleAuthFailure(failure)) return;
    error.textContent = api.describeError(failure);
    error.hidden = false;
    announce(error.textContent, { assertive: true });
  } finally {
    setBusy(submit, false);
  }
}

// Issue 15: a colleague becomes co-host of this room (every host control; they enter without knocking).
/** @param {import("../events.js").FormSubmitEvent} event */
async function onAddCohost(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $("#cohost-error");
  const username = form.username.value.trim();
  if (!username) {
    error.textContent = "Enter your colleague's username.";
    error.hidden = false;
    form.username.focus();
    return;
  }
  error.hidden = true;
  const submit = $("#cohost-submit");
  setBusy(submit, true);
  try {
    const added = await api.addCohost(page.token, /** @type {Record<string, any>} */ (page.room).id, username);
    form.username.value = "";
    announce(`${added.display_name} is now a co-host of this room.`);
  } catch (failure) {
    if (handleAuthFailure(failure)) return;
    error.textContent = api.describeError(failure);
    error.hidden = false;
    announce(error.textContent, { assertive: true });
  } finally {
    setBusy(submit, false);
  }
}

/** @param {string} roomId */
async function openRoom(roomId) {
  history.replaceState(null, "", `/console#room=${encodeURIComponent(roomId)}`);
  try {
    page.room = await api.getRoom(page.token, roomId);
  } catch (error) {
    if (handleAuthFailure(error)) return;
    announce(api.describeError(error), { assertive: true });
    history.replaceState(null, "", "/console");
    showScreen("rooms");
    return;
  }
  const room = /** @type {RoomRow} */ (page.room);
  $("#room-heading").textContent = roomLabel(room);
  document.title = `${roomLabel(room)} · vIOP`;
  showScreen("room");
  try {
    page.stream = await openLocalMedia();
  } catch (error) {
    page.stream = null;
    announce(`${/** @type {Error} */ (error).message} You can still host without them.`, { assertive: true });
  }
  startSession();
}

function startSession() {
  const grid = new VideoGrid($("#grid"));
  const session = new RoomSession({
    getTicket: () => api.signalTicket(page.token, /** @type {Record<string, any>} */ (page.room).id),
    localStream: page.stream,
    grid,
    media: { audio: Boolean(page.stream?.getAudioTracks().length), video: Boolean(page.stream?.getVideoTracks().length) },
  });
  page.session = session;
  session.signaling.isActive = inUse;
  page.panels = new ModerationPanels(session);
  $("#chat-panel").replaceChildren();
  new ChatPanel(session, $("#chat-panel"));
  exposeDiagnostics(session);
  // Read-only, for the browser tests: what the next heartbeat will say about this page being in use.
  window.viopConsole = Object.freeze({ nextPing: () => session.signaling.pingMessage() });
  session.addEventListener("phase", (event) => {
    const phase = detailOf(event);
    document.body.dataset.phase = phase;
    $("#reconnect-banner").hidden = phase !== Phase.RECONNECTING;
  });
  session.addEventListener("notice", (event) => announce(detailOf(event)));
  session.addEventListener("error", (event) => announce(detailOf(event).message, { assertive: true }));
  session.addEventListener("ended", (event) => {
    /** @type {ModerationPanels} */ (page.panels).stop();
    stopStream(page.stream);
    const ended = detailOf(event);
    $("#ended-text").textContent = ended.reason === EndReason.LEFT ? "You left the room. It stays open for the others." : ended.text;
    document.body.dataset.phase = Phase.ENDED;
    showScreen("ended");
    announce($("#ended-text").textContent);
  });
  $("#mic-toggle").disabled = !page.stream?.getAudioTracks().length;
  $("#camera-toggle").disabled = !page.stream?.getVideoTracks().length;
  wireShareButton($("#share-toggle"), session);
  session.start();
}

function wireRoomControls() {
  $("#mic-toggle").addEventListener("click", (/** @type {ClickEvent} */ event) => {
    const off = event.currentTarget.getAttribute("aria-pressed") !== "true";
    page.session?.setMicrophone(!off);
    setPressed(event.currentTarget, off, ["Mute microphone", "Unmute microphone"]);
    announce(off ? "Your microphone is off." : "Your microphone is on.");
  });
  $("#camera-toggle").addEventListener("click", (/** @type {ClickEvent} */ event) => {
    const off = event.currentTarget.getAttribute("aria-pressed") !== "true";
    page.session?.setCamera(!off);
    setPressed(event.currentTarget, off, ["Turn camera off", "Turn camera on"]);
    announce(off ? "Your camera is off." : "Your camera is on.");
  });
  $("#lock-toggle").addEventListener("click", (/** @type {ClickEvent} */ event) => {
    const locked = event.currentTarget.getAttribute("aria-pressed") === "true";
    page.session?.send({ type: locked ? "unlock" : "lock" });
  });
  $("#leave-room").addEventListener("click", () => page.session?.leave());
  $("#end-all").addEventListener("click", (/** @type {ClickEvent} */ event) => {
    const button = event.currentTarget;
    if (button.dataset.confirm !== "yes") {
      button.dataset.confirm = "yes";
      button.textContent = "Confirm: end for everyone";
      announce("Press End for all again to end the session for everyone.");
      return;
    }
    page.session?.send({ type: ClientType.END });
  });
  $("#invite-form").addEventListener("submit", onCreateInvite);
  $("#cohost-form").addEventListener("submit", onAddCohost);
  $("#invite-copy").addEventListener("click", async () => {
    const copied = await copyText($("#invite-link").value, $("#invite-link"));
    announce(copied ? "Invite link copied." : "Select the link and copy it.");
  });
}

async function main() {
  // The forms' limits are the server's (protocol.js, generated from vIOP/rooms/limits.py via messages.py).
  /** @type {HTMLInputElement} */ ($("#invite-name")).maxLength = MAX_DISPLAY_NAME_CHARS;
  /** @type {HTMLInputElement} */ ($("#room-title")).maxLength = MAX_ROOM_TITLE_CHARS;
  /** @type {HTMLInputElement} */ ($("#room-capacity")).max = String(MAX_ROOM_CAPACITY);
  watchActivity();
  wireRoomControls();
  $("#create-room-form").addEventListener("submit", onCreateRoom);
  $("#create-track-form").addEventListener("submit", onCreateTrack);
  $("#enroll-form").addEventListener("submit", onEnroll);
  /** @type {HTMLInputElement} */ ($("#track-zone")).value = Intl.DateTimeFormat().resolvedOptions().timeZone;
  $("#sign-out-link").addEventListener("click", async (/** @type {Event} */ event) => {
    event.preventDefault();
    page.session?.leave();
    await api.logout();
    location.assign("/");
  });
  page.token = api.accessToken();
  if (!page.token) {
    showScreen("signed-out");
    return;
  }
  const roomId = new URLSearchParams(location.hash.slice(1)).get("room");
  if (roomId) {
    await openRoom(roomId);
    return;
  }
  showScreen("rooms");
  await Promise.all([loadRooms(), loadTracks()]);
}

main();
