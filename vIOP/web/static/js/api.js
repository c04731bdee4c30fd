// @ts-check
// The HTTP API as the pages use it (docs/API.md). Every path and body shape lives here, nowhere else.
// Errors come back as {error: {code, message}} and surface as ApiError; a network failure as NetworkError.

const ACCESS_KEY = "viop.access_token";
const ROLE_KEY = "viop.role";
const IDLE_KEY = "viop.idle_timeout";
const DEFAULT_IDLE_SECONDS = 15 * 60;

export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string | null} code
   * @param {string | null} message
   */
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code || "error";
  }
}

export class NetworkError extends Error {
  /** @param {unknown} cause */
  constructor(cause) {
    super("The server could not be reached.");
    this.name = "NetworkError";
    this.cause = cause;
  }
}

/**
 * @typedef {object} RequestOptions
 * @property {string} [method]
 * @property {string | null} [bearer] an access token, sent as `Authorization: Bearer`
 * @property {unknown} [body] sent as JSON
 * @property {"json" | "csv"} [expect]
 */

/**
 * One API call: the parsed JSON (null for 204), or a Blob for CSV; throws ApiError or NetworkError.
 * @param {string} path
 * @param {RequestOptions} [options]
 * @returns {Promise<any>}
 */
async function request(path, { method = "GET", bearer, body, expect = "json" } = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: expect === "csv" ? "text/csv" : "application/json" };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  /** @type {RequestInit} */
  const init = { method, headers, credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (cause) {
    throw new NetworkError(cause);
  }
  if (!response.ok) {
    let code = null;
    let message = null;
    try {
      const payload = await response.json();
      code = payload?.error?.code ?? null;
      message = payload?.error?.message ?? null;
    } catch {
      // Not JSON (a proxy's error page): keep the status only.
    }
    throw new ApiError(response.status, code, message);
  }
  if (response.status === 204) return null;
  if (expect === "csv") return response.blob();
  return response.json();
}

// --- access tokens (clinicians, staff, admins) ------------------------------------------------------------
// sessionStorage: gone when the tab closes, never sent anywhere by the browser on its own.

export function accessToken() {
  return sessionStorage.getItem(ACCESS_KEY);
}

export function forgetAccessToken() {
  sessionStorage.removeItem(ACCESS_KEY);
  sessionStorage.removeItem(ROLE_KEY);
  sessionStorage.removeItem(IDLE_KEY);
}

// The signed-in account's role, for navigation only: the server decides every permission itself.
export function accountRole() {
  return sessionStorage.getItem(ROLE_KEY);
}

// Seconds without activity after which the server ends the sign-in (the login response's idle_timeout).
export function idleTimeoutSeconds() {
  const seconds = Number(sessionStorage.getItem(IDLE_KEY));
  return Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_IDLE_SECONDS;
}

/**
 * @param {string} username
 * @param {string} password
 * @param {string} [totp]
 */
export async function login(username, password, totp) {
  /** @type {Record<string, string>} */
  const body = { username, password };
  if (totp) body.totp = totp;
  const result = await request("/api/v1/auth/login", { method: "POST", body });
  sessionStorage.setItem(ACCESS_KEY, result.access_token);
  if (result.user?.role) sessionStorage.setItem(ROLE_KEY, result.user.role);
  if (result.idle_timeout) sessionStorage.setItem(IDLE_KEY, String(result.idle_timeout));
  return result;
}

export async function logout() {
  const token = accessToken();
  forgetAccessToken();
  if (token) {
    try {
      await request("/api/v1/auth/logout", { method: "POST", bearer: token });
    } catch {
      // Already expired or unreachable: the local copy is gone either way.
    }
  }
}

// --- rooms and invites -------------------------------------------------------------------------------------

/** @param {string | null} bearer */
export function listRooms(bearer) {
  return request("/api/v1/rooms", { bearer });
}

/**
 * @param {string | null} bearer
 * @param {string} roomId
 */
export function getRoom(bearer, roomId) {
  return request(`/api/v1/rooms/${encodeURIComponent(roomId)}`, { bearer });
}

/**
 * @param {string | null} bearer
 * @param {{kind: string, title: string, capacity?: number}} room
 */
export function createRoom(bearer, { kind, title, capacity }) {
  /** @type {Record<string, string | number>} */
  const body = { kind, title };
  if (capacity) body.capacity = capacity;
  return request("/api/v1/rooms", { method: "POST", bearer, body });
}

/**
 * @param {string | null} bearer
 * @param {string} roomId
 * @param {{displayName: string, expiresIn?: number}} invite
 */
export function createInvite(bearer, roomId, { displayName, expiresIn }) {
  /** @type {Record<string, string | number>} */
  const body = { display_name: displayName };
  if (expiresIn) body.expires_in = expiresIn;
  return request(`/api/v1/rooms/${encodeURIComponent(roomId)}/invites`, { method: "POST", bearer, body });
}

// Issue 15: another clinician (named by their username) becomes a co-host with every host control.
/**
 * @param {string | null} bearer
 * @param {string} roomId
 * @param {string} username
 */
export function addCohost(bearer, roomId, username) {
  return request(`/api/v1/rooms/${encodeURIComponent(roomId)}/cohosts`, { method: "POST", bearer, body: { username } });
}

// An invite link's token, once, for this device's client credential (the link is spent by it). The token
// goes in the body: never in a URL, which a browser's history would keep.
/** @param {string} inviteToken */
export function exchangeInvite(inviteToken) {
  return request("/api/v1/invites/exchange", { method: "POST", body: { invite_token: inviteToken } });
}

// --- tracks (issue 16) --------------------------------------------------------------------------------------

/** @param {string | null} bearer */
export function listTracks(bearer) {
  return request("/api/v1/tracks", { bearer });
}

/**
 * @param {string | null} bearer
 * @param {Record<string, unknown>} track
 */
export function createTrack(bearer, track) {
  return request("/api/v1/tracks", { method: "POST", bearer, body: track });
}

/**
 * @param {string | null} bearer
 * @param {string} trackId
 * @param {string} displayName
 */
export function enrollClient(bearer, trackId, displayName) {
  return request(`/api/v1/tracks/${encodeURIComponent(trackId)}/enrollments`, { method: "POST", bearer, body: { display_name: displayName } });
}

// --- enrollment links (issue 16): one link for every session of a track ------------------------------------

/** @param {string} enrollmentToken */
export function nextSession(enrollmentToken) {
  return request("/api/v1/enrollments/next", { method: "POST", body: { enrollment_token: enrollmentToken } });
}

/** @param {string} enrollmentToken */
export function knockWithEnrollment(enrollmentToken) {
  return request("/api/v1/enrollments/knock", { method: "POST", body: { enrollment_token: enrollmentToken } });
}

// --- tickets: the short-lived, single-use credential that opens a WebSocket --------------------------------

// Always this page's own origin (CSP connect-src 'self'); the server's ws_url gives the path and ticket.
/**
 * @param {string} path
 * @param {string} ticket
 * @param {string | null | undefined} given the server's ws_url
 */
function socketUrl(path, ticket, given) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = new URL(`${scheme}//${location.host}${path}`);
  if (given) {
    const server = new URL(given, location.href);
    url.pathname = server.pathname;
    url.search = server.search;
  }
  if (!url.searchParams.has("ticket")) url.searchParams.set("ticket", ticket);
  return url.toString();
}

// bearer: an access token (clinician) or an invite token (client). With an invite whose link did not name
// the room, roomId is null and the server takes the room from the invite.
/**
 * @param {string | null} bearer
 * @param {string | null | undefined} roomId
 * @returns {Promise<{ticket: string, url: string}>}
 */
export async function signalTicket(bearer, roomId) {
  const body = { purpose: "signal", room_id: roomId ?? null };
  const result = await request("/api/v1/signal-tickets", { method: "POST", bearer, body });
  return { ticket: result.ticket, url: socketUrl("/ws/signal", result.ticket, result.ws_url) };
}

/**
 * @param {string | null} bearer
 * @returns {Promise<{ticket: string, url: string}>}
 */
export async function presenceTicket(bearer) {
  const body = { purpose: "presence" };
  const result = await request("/api/v1/signal-tickets", { method: "POST", bearer, body });
  return { ticket: result.ticket, url: socketUrl("/ws/presence", result.ticket, result.ws_url) };
}

// --- monitoring and records -------------------------------------------------------------------------------

/**
 * @typedef {object} AttendanceFilters
 * @property {string} [roomId]
 * @property {string} [client]
 * @property {string} [from]
 * @property {string} [to]
 * @property {string} [table] for CSV: which table
 * @property {string} [tz] the program's IANA time zone (days and weeks)
 * @property {string} [weekStart] the first day of each billing week ("monday" ... "sunday")
 */

/**
 * @param {AttendanceFilters} filters
 * @param {"json" | "csv"} format
 */
function attendanceQuery({ roomId, client, from, to, table, tz, weekStart }, format) {
  const query = new URLSearchParams({ format });
  if (tz) query.set("tz", tz);
  if (weekStart) query.set("week_start", weekStart);
  if (format === "csv" && table) query.set("table", table);
  if (roomId) query.set("room_id", roomId);
  if (client) query.set("client", client);
  if (from) query.set("from", from);
  if (to) query.set("to", to);
  return `/api/v1/attendance?${query}`;
}

/**
 * @param {string | null} bearer
 * @param {AttendanceFilters} filters
 */
export function attendance(bearer, filters) {
  return request(attendanceQuery(filters, "json"), { bearer });
}

/**
 * @param {string | null} bearer
 * @param {AttendanceFilters} filters
 */
export function attendanceCsv(bearer, filters) {
  return request(attendanceQuery(filters, "csv"), { bearer, expect: "csv" });
}

// A readable sentence for an error, without echoing anything the user typed.
/** @param {unknown} error */
export function describeError(error) {
  if (error instanceof NetworkError) return "The server could not be reached. Check your connection and try again.";
  if (error instanceof ApiError) {
    if (error.status === 401) return error.message || "Please sign in again.";
    if (error.status === 429) return "Too many attempts. Please wait a moment and try again.";
    return error.message || `The request failed (${error.status}).`;
  }
  return "Something went wrong. Please try again.";
}
