// @ts-check
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
import { ClientType, CloseCode, PROTOCOL_VERSION, ServerType } from "./protocol.js";
import { ReconnectingSocket } from "./reconnecting-socket.js";

/** @typedef {import("./reconnecting-socket.js").WireMessage} WireMessage */

/** The socket's state, as the "state" event reports it. */
export const State = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting",
  OPEN: "open",
  RECONNECTING: "reconnecting",
  CLOSED: "closed",
});
/** @typedef {(typeof State)[keyof typeof State]} StateValue */

/** Why the session ended, as the "ended" event reports it (room-session.js words each one). */
export const EndReason = Object.freeze({
  ROOM_ENDED: "room_ended",
  REMOVED: "removed",
  DENIED: "denied",
  LEFT: "left",
  LOST: "lost",
  RESUME_REJECTED: "resume_rejected",
  UNAUTHORIZED: "unauthorized",
  CLOSED: "closed",
});
/** @typedef {(typeof EndReason)[keyof typeof EndReason]} EndReasonValue */

// A normal close's reason text when the last message did not arrive first (docs/API.md close codes).
/** @type {Readonly<Record<string, EndReasonValue>>} */
const CLOSE_REASONS = Object.freeze({
  "room ended": EndReason.ROOM_ENDED,
  removed: EndReason.REMOVED,
  denied: EndReason.DENIED,
  "signed out": EndReason.UNAUTHORIZED,
});

// Server messages after which the participant is done in this room.
/** @type {ReadonlyMap<string, EndReasonValue>} */
const TERMINAL = new Map([
  [ServerType.DENIED, EndReason.DENIED],
  [ServerType.REMOVED, EndReason.REMOVED],
  [ServerType.ROOM_ENDED, EndReason.ROOM_ENDED],
]);

// Close codes after which a retry would end the same way.
/** @type {ReadonlySet<number>} */
const FINAL_CLOSE_CODES = new Set([CloseCode.NORMAL, CloseCode.UNSUPPORTED_DATA, CloseCode.MESSAGE_TOO_BIG]);

/** Retries: 250 ms doubling to 5 s, at most 40 (a bound on top of the grace window, whatever the clock does). */
export const SIGNALING_BACKOFF = Object.freeze({ firstMs: 250, maxMs: 5000, maxAttempts: 40 });
const DEFAULT_GRACE_SECONDS = 60;
const RECENT_TYPES_KEPT = 20;

/**
 * @typedef {object} JoinMedia
 * @property {boolean} audio
 * @property {boolean} video
 */

/**
 * @typedef {object} EndedDetail
 * @property {EndReasonValue} reason
 * @property {number | null} code the close code, when a close ended it
 * @property {unknown} error the ticket request's error, when that ended it
 */

export class SignalingClient extends EventTarget {
  /**
   * @param {object} options
   * @param {() => Promise<{ticket: string, url: string}>} options.getTicket a new single-use ticket per attempt
   * @param {Partial<JoinMedia>} [options.join] sent in every `join`
   */
  constructor({ getTicket, join = {} }) {
    super();
    this.getTicket = getTicket;
    /** @type {JoinMedia} */
    this.joinFields = { audio: true, video: true, ...join };
    /** @type {StateValue} */
    this.state = State.IDLE;
    /** @type {WireMessage | null} */
    this.welcome = null;
    /** @type {string | null} */
    this.resumeToken = null;
    /** @type {number | null} */
    this.lostAt = null;
    /** @type {EndReasonValue | null} */
    this.terminal = null;
    /** @type {{code: number, reason: string} | null} */
    this.lastClose = null;
    this.nextId = 1;
    /** @type {string[]} the last message types received, for diagnostics (no content) */
    this.recentTypes = [];
    /** @type {(() => boolean) | null} set by pages with a sign-in (the console) */
    this.isActive = null;
    this.socket = new ReconnectingSocket({
      backoff: SIGNALING_BACKOFF,
      watchSilence: true,
      hooks: {
        url: async () => (await this.getTicket()).url,
        connecting: () => this.setState(this.welcome ? State.RECONNECTING : State.CONNECTING),
        urlFailed: (error) => this.ticketFailed(error),
        open: () => this.sendJoin(),
        message: (message) => this.onMessage(message),
        closed: (code, reason) => this.onClose(code, reason),
        beforeRetry: () => this.setState(this.welcome ? State.RECONNECTING : State.CONNECTING),
        mayRetry: () => this.withinGrace(),
        gaveUp: () => this.finish(EndReason.LOST, null),
      },
    });
  }

  /** The open socket, if any (room-session.js ties a peer connection to one socket). */
  get ws() {
    return this.socket.ws;
  }

  get attempt() {
    return this.socket.attempt;
  }

  /** @returns {string | null} */
  get participantId() {
    return this.welcome ? this.welcome.participant_id : null;
  }

  start() {
    if (this.state !== State.IDLE) return;
    this.socket.connect();
  }

  // Leave on purpose: tell the server, close normally, never reconnect.
  leave() {
    this.terminal = EndReason.LEFT;
    this.send({ type: ClientType.LEAVE });
    this.finish(EndReason.LEFT, CloseCode.NORMAL);
  }

  /**
   * Send a message, numbered with an `id` unless it has one; false when the socket is not open.
   * @param {{type: string, id?: number | string} & Record<string, unknown>} message
   */
  send(message) {
    if (!this.socket.isOpen) return false;
    const framed = message.id === undefined ? { ...message, id: this.nextId++ } : message;
    return this.socket.send(framed);
  }

  /** @param {Partial<JoinMedia>} media */
  setJoinMedia({ audio, video }) {
    if (audio !== undefined) this.joinFields.audio = audio;
    if (video !== undefined) this.joinFields.video = video;
  }

  // --- connection lifecycle ------------------------------------------------------------------------------

  /** @param {StateValue} state */
  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  /** @param {unknown} error */
  ticketFailed(error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403 || error.status === 404)) {
      this.finish(EndReason.UNAUTHORIZED, null, error);
      return false;
    }
    return true;
  }

  sendJoin() {
    /** @type {{type: string} & Record<string, unknown>} */
    const join = { type: ClientType.JOIN, protocol_version: PROTOCOL_VERSION, ...this.joinFields };
    if (this.resumeToken) join.resume_token = this.resumeToken;
    this.send(join);
  }

  /** @param {WireMessage} message */
  onMessage(message) {
    this.recentTypes.push(message.type);
    if (this.recentTypes.length > RECENT_TYPES_KEPT) this.recentTypes.shift();
    if (message.type === ServerType.WELCOME) {
      this.welcome = message;
      this.resumeToken = message.resume_token;
      this.socket.resetBackoff();
      this.lostAt = null;
      this.socket.startHeartbeat(message.heartbeat_seconds, () => this.send(this.pingMessage()));
      this.setState(State.OPEN);
    }
    const terminal = TERMINAL.get(message.type);
    if (terminal) this.terminal = terminal;
    this.dispatchEvent(new CustomEvent("message", { detail: message }));
  }

  /**
   * The socket closed (not by us): true to try again.
   * @param {number} code
   * @param {string} reason
   */
  onClose(code, reason) {
    this.lastClose = { code, reason };
    if (!this.terminal && code === CloseCode.NORMAL) this.terminal = CLOSE_REASONS[reason] ?? null;
    if (this.terminal) {
      this.finish(this.terminal, code);
      return false;
    }
    if (code === CloseCode.POLICY_VIOLATION) {
      // A refused ticket or resume token: a retry would be refused the same way.
      this.finish(this.resumeToken ? EndReason.RESUME_REJECTED : EndReason.UNAUTHORIZED, code);
      return false;
    }
    if (FINAL_CLOSE_CODES.has(code)) {
      this.finish(EndReason.CLOSED, code);
      return false;
    }
    if (this.lostAt === null) this.lostAt = Date.now();
    return true;
  }

  // The server keeps a dropped participant's seat for its grace window: after that a resume cannot work.
  withinGrace() {
    const graceSeconds = this.welcome?.resume_grace_seconds ?? DEFAULT_GRACE_SECONDS;
    const lostFor = this.lostAt === null ? 0 : Date.now() - this.lostAt;
    return lostFor <= graceSeconds * 1000;
  }

  /**
   * End for good: close the socket normally, report "ended" once.
   * @param {EndReasonValue} reason
   * @param {number | null} code
   * @param {unknown} [error]
   */
  finish(reason, code, error = null) {
    this.socket.stop(CloseCode.NORMAL);
    if (this.state === State.CLOSED) return;
    this.setState(State.CLOSED);
    /** @type {EndedDetail} */
    const detail = { reason, code, error };
    this.dispatchEvent(new CustomEvent("ended", { detail }));
  }

  pingMessage() {
    if (typeof this.isActive !== "function") return { type: ClientType.PING };
    return { type: ClientType.PING, active: Boolean(this.isActive()) };
  }
}
