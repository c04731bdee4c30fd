// The signaling socket (docs/PROTOCOL.md, vIOP/signaling/messages.py).
//
// Each connection attempt fetches a NEW single-use ticket, opens /ws/signal?ticket=..., and sends `join`.
// After the first `welcome` every later attempt carries the resume token, so a dropped socket comes back as
// the same participant without a new knock. Drops are retried with exponential backoff and jitter until
// the server's grace window is over. A ping every heartbeat keeps the socket (and the resume token) alive;
// a socket silent for too long is treated as dropped. A page with a sign-in sets `isActive` (a function):
// each ping then says whether someone is using the page, and only those pings renew the sign-in's idle
// timer, so an unattended console is signed out like any other idle page (docs/PROTOCOL.md, `ping`).
//
// Events (EventTarget): "state" {detail: state}, "message" {detail: msg}, "ended" {detail: {reason, code}}.

import { ApiError } from "./api.js";

export const State = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting",
  OPEN: "open",
  RECONNECTING: "reconnecting",
  CLOSED: "closed",
});

// Close codes after which reconnecting cannot help (messages.CloseCode).
const CLOSE_NORMAL = 1000;
const CLOSE_POLICY = 1008;
const CLOSE_UNSUPPORTED = 1003;
const CLOSE_TOO_BIG = 1009;
// Our own close when the socket went silent: application range, so it is never confused with the server's.
const CLOSE_SILENT = 4000;

const CLOSE_REASONS = { "room ended": "room_ended", removed: "removed", denied: "denied", "signed out": "unauthorized" };

// Server messages after which the participant is done in this room.
const TERMINAL = new Set(["denied", "removed", "room_ended"]);

const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 5000;
const DEFAULT_GRACE_SECONDS = 60;
const MAX_ATTEMPTS = 40; // a bound on top of the grace window, whatever the clock does

export class SignalingClient extends EventTarget {
  // getTicket: async () => ({ticket, url}); join: {audio, video} sent in every `join`.
  constructor({ getTicket, join = {} }) {
    super();
    this.getTicket = getTicket;
    this.joinFields = { audio: true, video: true, ...join };
    this.state = State.IDLE;
    this.ws = null;
    this.welcome = null;
    this.resumeToken = null;
    this.attempt = 0;
    this.lostAt = null;
    this.terminal = null;
    this.nextId = 1;
    this.recentTypes = []; // the last message types received, for diagnostics (no content)
    this.timers = { ping: null, silence: null, retry: null };
    this.isActive = null; // () => boolean, set by pages with a sign-in (the console)
  }

  get participantId() {
    return this.welcome ? this.welcome.participant_id : null;
  }

  start() {
    if (this.state !== State.IDLE) return;
    this.connect();
  }

  // Leave on purpose: tell the server, close normally, never reconnect.
  leave() {
    this.terminal = "left";
    this.send({ type: "leave" });
    this.finish("left", CLOSE_NORMAL);
  }

  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    const framed = message.id === undefined ? { ...message, id: this.nextId++ } : message;
    this.ws.send(JSON.stringify(framed));
    return true;
  }

  setJoinMedia({ audio, video }) {
    if (audio !== undefined) this.joinFields.audio = audio;
    if (video !== undefined) this.joinFields.video = video;
  }

  // --- connection lifecycle ------------------------------------------------------------------------------

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  async connect() {
    this.setState(this.welcome ? State.RECONNECTING : State.CONNECTING);
    let ticket;
    try {
      ticket = await this.getTicket();
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403 || error.status === 404)) {
        this.finish("unauthorized", null, error);
        return;
      }
      this.scheduleRetry();
      return;
    }
    if (this.state === State.CLOSED) return;
    let ws;
    try {
      ws = new WebSocket(ticket.url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      const join = { type: "join", protocol_version: 1, ...this.joinFields };
      if (this.resumeToken) join.resume_token = this.resumeToken;
      this.send(join);
      this.armSilenceTimer();
    });
    ws.addEventListener("message", (event) => this.onFrame(event.data));
    ws.addEventListener("close", (event) => this.onClose(ws, event.code, event.reason));
  }

  onFrame(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (!message || typeof message.type !== "string") return;
    this.armSilenceTimer();
    this.recentTypes.push(message.type);
    if (this.recentTypes.length > 20) this.recentTypes.shift();
    if (message.type === "welcome") {
      this.welcome = message;
      this.resumeToken = message.resume_token;
      this.attempt = 0;
      this.lostAt = null;
      this.startPing(message.heartbeat_seconds);
      this.setState(State.OPEN);
    }
    if (TERMINAL.has(message.type)) this.terminal = message.type;
    this.dispatchEvent(new CustomEvent("message", { detail: message }));
  }

  onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.stopTimers();
    this.lastClose = { code, reason };
    if (this.state === State.CLOSED) return;
    // The close reason says why when the last message did not arrive first (docs/API.md close codes).
    if (!this.terminal && code === CLOSE_NORMAL) this.terminal = CLOSE_REASONS[reason] ?? null;
    if (this.terminal) {
      this.finish(this.terminal, code);
      return;
    }
    if (code === CLOSE_POLICY) {
      // A refused ticket or resume token: a retry would be refused the same way.
      this.finish(this.resumeToken ? "resume_rejected" : "unauthorized", code);
      return;
    }
    if (code === CLOSE_NORMAL || code === CLOSE_UNSUPPORTED || code === CLOSE_TOO_BIG) {
      this.finish("closed", code);
      return;
    }
    if (this.lostAt === null) this.lostAt = Date.now();
    this.scheduleRetry();
  }

  scheduleRetry() {
    if (this.state === State.CLOSED) return;
    this.setState(this.welcome ? State.RECONNECTING : State.CONNECTING);
    const graceSeconds = this.welcome?.resume_grace_seconds ?? DEFAULT_GRACE_SECONDS;
    const lostFor = this.lostAt === null ? 0 : Date.now() - this.lostAt;
    if (this.attempt >= MAX_ATTEMPTS || lostFor > graceSeconds * 1000) {
      this.finish("lost", null);
      return;
    }
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  finish(reason, code, error = null) {
    this.stopTimers();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      try {
        ws.close(CLOSE_NORMAL);
      } catch {
        // already closing
      }
    }
    if (this.state === State.CLOSED) return;
    this.setState(State.CLOSED);
    this.dispatchEvent(new CustomEvent("ended", { detail: { reason, code, error } }));
  }

  // --- heartbeat ---------------------------------------------------------------------------------------------

  startPing(heartbeatSeconds) {
    clearInterval(this.timers.ping);
    this.heartbeatMs = Math.max(1, heartbeatSeconds || 10) * 1000;
    this.timers.ping = setInterval(() => this.send(this.pingMessage()), this.heartbeatMs);
    this.armSilenceTimer();
  }

  pingMessage() {
    if (typeof this.isActive !== "function") return { type: "ping" };
    return { type: "ping", active: Boolean(this.isActive()) };
  }

  armSilenceTimer() {
    clearTimeout(this.timers.silence);
    // The server answers every ping: three missed heartbeats means the path is gone even if TCP says not.
    const limit = (this.heartbeatMs || 10000) * 3;
    const ws = this.ws;
    this.timers.silence = setTimeout(() => {
      if (ws && ws === this.ws) ws.close(CLOSE_SILENT);
    }, limit);
  }

  stopTimers() {
    clearInterval(this.timers.ping);
    clearTimeout(this.timers.silence);
    clearTimeout(this.timers.retry);
    this.timers = { ping: null, silence: null, retry: null };
  }
}
