// @ts-check
// Client join page: /join#invite=<token>. The token travels in the URL fragment, which the browser never
// sends to the server. The browser's history keeps the URL as it was navigated to, fragment included,
// whatever a script does afterwards, so the link must be worth nothing there once used: "Continue" (a
// deliberate click, so a mail scanner that renders the page cannot spend it) exchanges it, one time only,
// for this device's credential (docs/API.md, "Invite links"). Only this tab keeps either, in
// sessionStorage; the resume token stays in memory (signaling.js).

import { AudioOnlyReason, ClientType, MediaKind } from "../protocol.js";
import * as api from "../api.js";
import { DeviceError, fillDevicePickers, openLocalMedia, stopStream } from "../devices.js";
import { Phase, RoomSession } from "../room-session.js";
import { ChatPanel } from "../chat.js";
import { wireShareButton } from "../share-button.js";
import { $, announce, setPressed, showScreen } from "../ui.js";
import { VideoGrid } from "../video-grid.js";
import { exposeDiagnostics } from "../diagnostics.js";
import { detailOf } from "../events.js";

const LINK_KEY = "viop.invite"; // the link's token until it is exchanged
const DEVICE_KEY = "viop.device"; // what it was exchanged for
const ENROLL_KEY = "viop.enroll"; // an enrollment link's token (issue 16): good for every session of a track

/** @typedef {import("../events.js").ClickEvent} ClickEvent */

/** @param {string} key */
function stored(key) {
  try {
    return JSON.parse(sessionStorage.getItem(key) || "null");
  } catch {
    return null;
  }
}

// Accepts "#invite=<token>&room=<room id>" (the console's links) and the bare "#<token>" of the API's join_url.
// Returns {token, room, exchanged}: this tab's device credential, or the link's token not yet exchanged.
function takeInvite() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const enroll = fragment.get("enroll");
  if (enroll) {
    history.replaceState(null, "", location.pathname);
    sessionStorage.setItem(ENROLL_KEY, JSON.stringify({ token: enroll }));
    sessionStorage.removeItem(DEVICE_KEY);
  }
  const bare = [...fragment.keys()].find((key) => key.startsWith("vinv_"));
  const link = fragment.get("invite") || bare;
  if (location.hash) history.replaceState(null, "", location.pathname);
  if (link) sessionStorage.setItem(LINK_KEY, JSON.stringify({ token: link, room: fragment.get("room") }));
  const pending = stored(LINK_KEY);
  if (pending?.token) return { ...pending, exchanged: false };
  const device = stored(DEVICE_KEY);
  return device?.token ? { ...device, exchanged: true } : null;
}

// Spend the link for this device's credential. If this very tab spent it before (its history entry was
// opened again), the credential it holds still stands.
async function exchangeInvite() {
  if (page.enrollment) {
    // The session whose waiting room is open: its own device credential, through the invite flow.
    const result = await api.knockWithEnrollment(page.enrollment);
    page.invite = { token: result.device_token, room: result.room_id, exchanged: true };
    sessionStorage.setItem(DEVICE_KEY, JSON.stringify({ token: page.invite.token, room: page.invite.room }));
    return;
  }
  if (/** @type {Invite} */ (page.invite).exchanged) return;
  const held = stored(DEVICE_KEY);
  try {
    const result = await api.exchangeInvite(/** @type {Invite} */ (page.invite).token);
    page.invite = { token: result.device_token, room: result.room_id, exchanged: true };
    sessionStorage.setItem(DEVICE_KEY, JSON.stringify({ token: page.invite.token, room: page.invite.room }));
  } catch (error) {
    if (!(held?.token && error instanceof api.ApiError && error.code === "invite_already_used")) throw error;
    page.invite = { ...held, exchanged: true };
  } finally {
    sessionStorage.removeItem(LINK_KEY);
  }
}

// The page's answer to a link the server refused; false for anything else (the caller decides).
/** @param {unknown} error */
function explainLinkProblem(error) {
  if (!(error instanceof api.ApiError)) return false;
  if (error.code === "invite_already_used") {
    document.body.dataset.linkProblem = "already_used";
    showLinkProblem(
      "This link was already used on another device",
      "For your privacy, an invite link works on one device only. Ask your clinician for a new link.",
    );
    return true;
  }
  if (error.code === "enrollment_invalid") {
    document.body.dataset.linkProblem = "enrollment_ended";
    showLinkProblem("This link no longer works", "Your enrollment may have ended or been withdrawn. Ask your clinician.");
    return true;
  }
  if (error.code === "lobby_not_open") {
    showNextSession();
    return true;
  }
  if (error.status === 401 || error.status === 403 || error.status === 404) {
    showLinkProblem("This invite link no longer works", "It may have expired or been replaced. Ask your clinician for a new link.");
    return true;
  }
  return false;
}

/**
 * @param {string} title
 * @param {string} text
 */
function showLinkProblem(title, text) {
  $("#no-invite-title").textContent = title;
  $("#no-invite-text").textContent = text;
  showScreen("no-invite");
}

/** @typedef {{token: string, room: string, exchanged: boolean}} Invite */

const page = {
  /** @type {Invite | null} */
  invite: null,
  /** @type {string | null} */
  enrollment: null,
  /** @type {MediaStream | null} */
  stream: null,
  /** @type {RoomSession | null} */
  session: null,
  media: { audio: true, video: true },
};

async function startPreview(devices = {}) {
  const error = $("#device-error");
  const retry = $("#device-retry");
  stopStream(page.stream);
  page.stream = null;
  try {
    page.stream = await openLocalMedia(devices);
    error.hidden = true;
    retry.hidden = true;
  } catch (failure) {
    const text = failure instanceof DeviceError ? failure.message : "Your camera or microphone could not be started.";
    error.textContent = text;
    error.hidden = false;
    retry.hidden = false;
    announce(text, { assertive: true });
  }
  $("#preview").srcObject = page.stream;
  page.media = { audio: Boolean(page.stream?.getAudioTracks().length), video: Boolean(page.stream?.getVideoTracks().length) };
  await fillDevicePickers($("#mic-select"), $("#camera-select"), page.stream);
  const join = $("#join-button");
  join.textContent = page.stream ? "Join the waiting room" : "Join without camera and microphone";
}

function onPickerChange() {
  startPreview({ audioDeviceId: $("#mic-select").value || undefined, videoDeviceId: $("#camera-select").value || undefined });
}

function joinSession() {
  $("#join-button").disabled = true;
  const grid = new VideoGrid($("#grid"));
  const session = new RoomSession({
    getTicket: () => api.signalTicket(/** @type {Invite} */ (page.invite).token, /** @type {Invite} */ (page.invite).room),
    localStream: page.stream,
    grid,
    media: page.media,
  });
  page.session = session;
  exposeDiagnostics(session);
  const chat = $("#chat-panel");
  chat.replaceChildren();
  new ChatPanel(session, chat);
  session.addEventListener("phase", (event) => {
    const phase = detailOf(event);
    chat.hidden = !(phase === Phase.WAITING || phase === Phase.IN_ROOM || phase === Phase.RECONNECTING);
  });
  session.addEventListener("phase", (event) => onPhase(detailOf(event)));
  session.addEventListener("waiting", (event) => onWaiting(detailOf(event)));
  session.addEventListener("notice", (event) => announce(detailOf(event)));
  session.addEventListener("error", (event) => announce(detailOf(event).message, { assertive: true }));
  session.addEventListener("host-muted", (event) => {
    if (detailOf(event).kind === MediaKind.AUDIO) setPressed($("#mic-toggle"), detailOf(event).muted, ["Mute microphone", "Unmute microphone"]);
  });
  session.addEventListener("self", (event) => setPressed($("#hand-toggle"), Boolean(detailOf(event).hand), ["Raise hand", "Lower hand"]));
  session.addEventListener("audio-only", (event) => onAudioOnly(detailOf(event)));
  session.addEventListener("ended", (event) => onEnded(detailOf(event)));
  session.addEventListener("talk-request", (event) => onTalkRequest(detailOf(event)));
  session.addEventListener("breakout", (event) => onBreakout(detailOf(event)));
  setPressed($("#mic-toggle"), !page.media.audio, ["Mute microphone", "Unmute microphone"]);
  setPressed($("#camera-toggle"), !page.media.video, ["Turn camera off", "Turn camera on"]);
  $("#mic-toggle").disabled = !page.stream?.getAudioTracks().length;
  $("#camera-toggle").disabled = !page.stream?.getVideoTracks().length;
  wireShareButton($("#share-toggle"), session, { onlyWhenAllowed: true });
  announce("Connecting…");
  session.start();
}

/** @param {import("../room-session.js").PhaseValue} phase */
function onPhase(phase) {
  document.body.dataset.phase = phase;
  $("#reconnect-banner").hidden = phase !== Phase.RECONNECTING;
  if (phase === Phase.WAITING) showScreen("waiting");
  if (phase === Phase.IN_ROOM) {
    if (document.body.dataset.screen !== "session") {
      showScreen("session");
      announce("You are in the session.");
    }
  }
}

/** @param {{position: number, message: string | null}} waiting */
function onWaiting({ position, message }) {
  $("#waiting-position").textContent =
    position === 1 ? "You are next. Your clinician will let you in soon." : `You are number ${position} in line. Your clinician will let you in soon.`;
  const box = $("#waiting-message");
  if (message) {
    box.textContent = `Message from your clinician: ${message}`;
    box.hidden = false;
  }
}

/** @param {{on: boolean, reason: string}} state */
function onAudioOnly({ on, reason }) {
  const banner = $("#audio-only-banner");
  const chosen = reason === AudioOnlyReason.SAVE_DATA;
  banner.hidden = !on;
  banner.textContent = chosen
    ? "Saving data: you hear everyone but do not receive video. Others still see you if your camera is on."
    : "Your connection is too slow for video right now: you hear everyone, and video comes back when it improves.";
  if (chosen || !on) setPressed($("#save-data-toggle"), on && chosen, ["Save data (audio only)", "Show video again"]);
  announce(on ? (chosen ? "Audio only: saving data." : "Your connection is slow: audio only for now.") : "Video is back.");
}

/** @param {{text: string, message: string | null}} ended */
function onEnded({ text, message }) {
  stopStream(page.stream);
  $("#ended-text").textContent = text;
  const box = $("#ended-message");
  box.hidden = !message;
  if (message) box.textContent = `Message from your clinician: ${message}`;
  document.body.dataset.phase = Phase.ENDED;
  showScreen("ended");
  announce(text);
}

function wireControls() {
  $("#confirm-continue").addEventListener("click", async () => {
    const button = $("#confirm-continue");
    button.disabled = true;
    try {
      await exchangeInvite();
    } catch (error) {
      if (!explainLinkProblem(error)) showLinkProblem("The server could not be reached", api.describeError(error));
      return;
    } finally {
      button.disabled = false;
    }
    showScreen("setup");
    await startPreview();
  });
  $("#device-retry").addEventListener("click", () => startPreview());
  $("#mic-select").addEventListener("change", onPickerChange);
  $("#camera-select").addEventListener("change", onPickerChange);
  $("#device-form").addEventListener("submit", (/** @type {Event} */ event) => event.preventDefault());
  $("#join-button").addEventListener("click", joinSession);
  $("#mic-toggle").addEventListener("click", (/** @type {ClickEvent} */ event) => {
    const off = event.currentTarget.getAttribute("aria-pressed") !== "true";
    /** @type {RoomSession} */ (page.session).setMicrophone(!off);
    setPressed(event.currentTarget, off, ["Mute microphone", "Unmute microphone"]);
    announce(off ? "Your microphone is off." : "Your microphone is on.");
  });
  $("#camera-toggle").addEventListener("click", (/** @type {ClickEvent} */ event) => {
    const off = event.currentTarget.getAttribute("aria-pressed") !== "true";
    /** @type {RoomSession} */ (page.session).setCamera(!off);
    setPressed(event.currentTarget, off, ["Turn camera off", "Turn camera on"]);
    announce(off ? "Your camera is off." : "Your camera is on.");
  });
  $("#hand-toggle").addEventListener("click", (/** @type {ClickEvent} */ event) => {
    const up = event.currentTarget.getAttribute("aria-pressed") !== "true";
    /** @type {RoomSession} */ (page.session).raiseHand(up);
    setPressed(event.currentTarget, up, ["Raise hand", "Lower hand"]);
    announce(up ? "Your hand is raised." : "Your hand is lowered.");
  });
  $("#save-data-toggle").addEventListener("click", (/** @type {ClickEvent} */ event) => {
    const on = event.currentTarget.getAttribute("aria-pressed") !== "true";
    /** @type {RoomSession} */ (page.session).setSaveData(on);
    setPressed(event.currentTarget, on, ["Save data (audio only)", "Show video again"]);
  });
  // Issue 15: a private request for a clinician; only the clinicians (and program staff) see it.
  for (const id of ["#waiting-talk", "#session-talk"]) {
    $(id).addEventListener("click", () => page.session?.send({ type: ClientType.NEED_TO_TALK }));
  }
  for (const id of ["#leave-button", "#waiting-leave"]) {
    $(id).addEventListener("click", () => page.session?.leave());
  }
}

/** @param {{participant_id: string, pending: boolean}} request about this client only */
function onTalkRequest({ pending }) {
  const text = pending
    ? "Your clinician has been told you would like to talk. Only the clinicians see this."
    : "A clinician has seen your request to talk.";
  for (const status of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll(".talk-status"))) {
    status.textContent = text;
    status.hidden = false;
  }
  for (const button of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll(".talk-button"))) {
    button.setAttribute("aria-pressed", pending ? "true" : "false");
  }
  announce(text);
}

/** @param {{participant_id: string, clinician_id: string, clinician_name: string, active: boolean}} breakout */
function onBreakout({ participant_id: id, clinician_name: name, active }) {
  // Issue 15: only this client's own breakout reaches this page (the group sees "stepped out" in its roster).
  if (id !== page.session?.participantId) return;
  const banner = $("#breakout-banner");
  banner.textContent = active ? `You are in a private conversation with ${name}.` : "";
  banner.hidden = !active;
  banner.dataset.breakout = active ? "true" : "false";
  announce(active ? `You are in a private conversation with ${name}. The group cannot see or hear you.` : "You are back with the group.");
}

// When the next session starts, in the reader's language and the program's time zone (named).
/**
 * @param {string} iso
 * @param {string} timeZone
 */
function sessionTime(iso, timeZone) {
  return new Intl.DateTimeFormat(navigator.language, {
    weekday: "long", month: "long", day: "numeric", hour: "numeric", minute: "2-digit", timeZone, timeZoneName: "short",
  }).format(new Date(iso));
}

// An enrollment link: before the waiting room opens, say when the next session starts; once it is open,
// the usual confirm -> setup -> waiting room, on that session's room.
async function showNextSession() {
  const token = /** @type {string} */ (page.enrollment);
  let next;
  try {
    next = await api.nextSession(token);
  } catch (error) {
    if (!explainLinkProblem(error)) showLinkProblem("The server could not be reached", api.describeError(error));
    return;
  }
  document.body.dataset.linkPhase = next.phase;
  document.body.dataset.nextStart = next.starts_at || "";
  if (next.phase === "open") {
    $("#confirm-room-line").textContent = `Your session “${next.track_title}” is about to start, with your care team.`;
    $("#confirm-no-name").hidden = false;
    showScreen("confirm");
    return;
  }
  $("#upcoming-text").textContent =
    next.phase === "upcoming"
      ? `“${next.track_title}” next meets on ${sessionTime(next.starts_at, next.time_zone)}.`
      : `“${next.track_title}” has no further sessions scheduled. Ask your clinician.`;
  showScreen("upcoming");
}

async function main() {
  wireControls();
  // Closing the tab (or navigating away) leaves the room at once rather than holding the seat as
  // "reconnecting" for the grace window. Not on a tab switch: that is visibilitychange, not pagehide.
  window.addEventListener("pagehide", () => page.session?.leave());
  page.invite = takeInvite();
  page.enrollment = stored(ENROLL_KEY)?.token || null;
  if (page.enrollment) {
    $("#upcoming-check").addEventListener("click", () => showNextSession());
    await showNextSession();
    return;
  }
  if (!page.invite?.token) {
    showScreen("no-invite");
    return;
  }
  if (/** @type {Invite} */ (page.invite).room) {
    try {
      const room = await api.getRoom(/** @type {Invite} */ (page.invite).token, /** @type {Invite} */ (page.invite).room);
      $("#confirm-room-line").textContent = `You are invited to “${room.title}”, an online session with your care team.`;
    } catch (error) {
      if (explainLinkProblem(error)) return;
    }
  }
  $("#confirm-no-name").hidden = false;
  showScreen("confirm");
}

main();
