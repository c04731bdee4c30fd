// @ts-check
// One WebSocket that comes back after a drop, shared by the signaling client (signaling.js) and the staff
// page's presence stream (pages/staff.js). Each attempt asks for a NEW url (a single-use ticket), opens it,
// and hands parsed JSON messages to its owner. Drops are retried with exponential backoff and jitter until
// the owner's hooks say stop or the attempts run out. A heartbeat (a ping on an interval) and a silence
// timer (close a socket that said nothing for three heartbeats) are there for owners that want them.
//
// The owner decides what a close or a failed ticket means (hooks below); this class only keeps one socket,
// its timers and the attempt count. Nothing touches the DOM or WebSocket at import time, so Node can load it.

import { CloseCode } from "./protocol.js";

// Our own close when the socket went silent: application range, so it is never confused with the server's.
export const CLOSE_SILENT = 4000;

const DEFAULT_HEARTBEAT_MS = 10000;
const SILENT_HEARTBEATS = 3;

/**
 * @typedef {object} Backoff
 * @property {number} firstMs the first retry's ceiling
 * @property {number} maxMs the largest ceiling
 * @property {number} maxAttempts retries before giving up (a bound whatever the clock does)
 */

/**
 * The delay before retry number `attempt` (0-based): uniform in [ceiling/2, ceiling), where the ceiling
 * doubles from `firstMs` up to `maxMs`. Half the ceiling is jitter, so many clients dropped at once do not
 * come back at once.
 * @param {number} attempt
 * @param {Pick<Backoff, "firstMs" | "maxMs">} backoff
 * @param {() => number} [random] a source in [0, 1)
 * @returns {number}
 */
export function backoffDelay(attempt, backoff, random = Math.random) {
  const ceiling = Math.min(backoff.maxMs, backoff.firstMs * 2 ** attempt);
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * @typedef {{type: string} & Record<string, any>} WireMessage
 */

/**
 * What the owner does at each step. Every hook is optional except `url`.
 * @typedef {object} SocketHooks
 * @property {() => Promise<string>} url a fresh URL (with a new ticket) for each attempt
 * @property {() => void} [connecting] an attempt starts
 * @property {(error: unknown) => boolean} [urlFailed] getting the URL threw: true to retry, false when the
 *   owner has stopped (or will stop) for good
 * @property {(ws: WebSocket) => void} [open] the socket opened
 * @property {(message: WireMessage) => void} [message] a JSON object with a string `type` arrived
 * @property {(code: number, reason: string) => boolean} [closed] the socket closed: true to retry
 * @property {() => void} [beforeRetry] a retry is about to be considered (before the limits)
 * @property {() => boolean} [mayRetry] false ends the retries (e.g. a grace window is over)
 * @property {() => void} [gaveUp] no more retries: attempts used up or `mayRetry` said no
 * @property {(delayMs: number) => void} [retryScheduled] a retry will start after `delayMs`
 */

export class ReconnectingSocket {
  /**
   * @param {object} options
   * @param {SocketHooks} options.hooks
   * @param {Backoff} options.backoff
   * @param {boolean} [options.watchSilence] close the socket (CLOSE_SILENT) after three silent heartbeats
   */
  constructor({ hooks, backoff, watchSilence = false }) {
    this.hooks = hooks;
    this.backoff = backoff;
    this.watchSilence = watchSilence;
    /** @type {WebSocket | null} */
    this.ws = null;
    this.attempt = 0;
    this.stopped = false;
    /** @type {number | null} */
    this.heartbeatMs = null;
    /** @type {{ping: ReturnType<typeof setInterval> | undefined, silence: ReturnType<typeof setTimeout> | undefined, retry: ReturnType<typeof setTimeout> | undefined}} */
    this.timers = { ping: undefined, silence: undefined, retry: undefined };
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Forget earlier failures: the next drop starts again from the first backoff step. */
  resetBackoff() {
    this.attempt = 0;
  }

  /**
   * Send one JSON message; false when there is no open socket.
   * @param {object} message
   */
  send(message) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  async connect() {
    if (this.stopped) return;
    this.hooks.connecting?.();
    let url;
    try {
      url = await this.hooks.url();
    } catch (error) {
      if (this.hooks.urlFailed ? this.hooks.urlFailed(error) : true) this.scheduleRetry();
      return;
    }
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.hooks.open?.(ws);
      this.armSilenceTimer();
    });
    ws.addEventListener("message", (event) => {
      if (ws !== this.ws) return;
      const message = parse(event.data);
      if (!message) return;
      this.armSilenceTimer();
      this.hooks.message?.(message);
    });
    ws.addEventListener("close", (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.stopTimers();
      if (this.stopped) return;
      if (this.hooks.closed ? this.hooks.closed(event.code, event.reason) : true) this.scheduleRetry();
    });
  }

  scheduleRetry() {
    if (this.stopped) return;
    this.hooks.beforeRetry?.();
    if (this.stopped) return;
    if (this.attempt >= this.backoff.maxAttempts || (this.hooks.mayRetry && !this.hooks.mayRetry())) {
      this.hooks.gaveUp?.();
      return;
    }
    const delay = backoffDelay(this.attempt, this.backoff);
    this.attempt += 1;
    this.hooks.retryScheduled?.(delay);
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  /**
   * Stop for good: no more retries, and the socket (if any) closes with `code`.
   * @param {number} [code]
   */
  stop(code = CloseCode.NORMAL) {
    this.stopped = true;
    this.stopTimers();
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    try {
      ws.close(code);
    } catch {
      // already closing
    }
  }

  // --- heartbeat ---------------------------------------------------------------------------------------------

  /**
   * Call `tick` (which sends a ping) every `heartbeatSeconds` (10 when not given) until the socket closes.
   * @param {number | null | undefined} heartbeatSeconds
   * @param {() => void} tick
   */
  startHeartbeat(heartbeatSeconds, tick) {
    clearInterval(this.timers.ping);
    this.heartbeatMs = Math.max(1, heartbeatSeconds || DEFAULT_HEARTBEAT_MS / 1000) * 1000;
    this.timers.ping = setInterval(tick, this.heartbeatMs);
    this.armSilenceTimer();
  }

  armSilenceTimer() {
    if (!this.watchSilence) return;
    clearTimeout(this.timers.silence);
    // The server answers every ping: three missed heartbeats means the path is gone even if TCP says not.
    const limit = (this.heartbeatMs || DEFAULT_HEARTBEAT_MS) * SILENT_HEARTBEATS;
    const ws = this.ws;
    this.timers.silence = setTimeout(() => {
      if (ws && ws === this.ws) ws.close(CLOSE_SILENT);
    }, limit);
  }

  stopTimers() {
    clearInterval(this.timers.ping);
    clearTimeout(this.timers.silence);
    clearTimeout(this.timers.retry);
    this.timers = { ping: undefined, silence: undefined, retry: undefined };
  }
}

/**
 * A frame as a message object, or null when it is not JSON or has no string `type`.
 * @param {unknown} data
 * @returns {WireMessage | null}
 */
export function parse(data) {
  if (typeof data !== "string") return null;
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    return null;
  }
  if (!message || typeof message !== "object" || typeof message.type !== "string") return null;
  return message;
}
