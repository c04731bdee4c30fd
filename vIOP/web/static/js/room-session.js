// @ts-check
// One participant's life in a room, shared by the client's join page and the clinician's console:
// signaling + media + roster + video grid. Pages listen to its events and draw their own panels.
//
// Phases: connecting -> waiting (clients) -> in_room -> ended; "reconnecting" while the socket is down.
// Events: "phase" {detail: phase}, "waiting" {detail: {position, message}}, "lobby" {detail: entries},
// "roster" {detail: {participants, locked}}, "self" {detail: rosterEntry}, "notice" {detail: text},
// "speaker" {detail: {speaker, recent}} (the room's active speaker, participant ids),
// "ended" {detail: {reason, message}}, "error" {detail: {code, message}},
// "chat" {detail: chat line} and "chat-policy" {detail: clients_may_chat} (issue 15; drawn by chat.js),
// "share" {detail: {sharer, allowed, mine}} (issue 15: who shares their screen, who may).

import { ClientType, LeaveReason, MediaKind, MediaMoveReason, Role, SCREEN_STREAM_SUFFIX, ServerType } from "./protocol.js";
import { EndReason, SignalingClient, State } from "./signaling.js";
import { MediaLink, participantOf } from "./webrtc.js";
import { detailOf } from "./events.js";
import { speakerState } from "./speaker-order.js";

/** @typedef {import("./reconnecting-socket.js").WireMessage} WireMessage */
/** @typedef {import("./webrtc.js").RemoteTrack} RemoteTrack */
/** @typedef {import("./video-grid.js").VideoGrid} VideoGrid */
/** @typedef {import("./video-grid.js").RosterEntry} RosterEntry */

/** Where the participant is: connecting -> waiting (clients) -> in_room -> ended; reconnecting while down. */
export const Phase = Object.freeze({
  CONNECTING: "connecting",
  WAITING: "waiting",
  IN_ROOM: "in_room",
  RECONNECTING: "reconnecting",
  ENDED: "ended",
});
/** @typedef {(typeof Phase)[keyof typeof Phase]} PhaseValue */

/** @type {Readonly<Record<string, string>>} */
const ENDINGS = Object.freeze({
  [EndReason.ROOM_ENDED]: "The session has ended.",
  [EndReason.REMOVED]: "The clinician removed you from the session.",
  [EndReason.DENIED]: "The clinician could not admit you to this session.",
  [EndReason.LEFT]: "You left the session.",
  [EndReason.LOST]: "The connection was lost and could not be restored. Open your link again to rejoin.",
  [EndReason.RESUME_REJECTED]: "The connection was lost for too long. Open your link again to rejoin.",
  [EndReason.UNAUTHORIZED]: "This link or sign-in is no longer valid.",
  [EndReason.CLOSED]: "The connection was closed.",
});

/** @type {Readonly<Record<string, string>>} */
const LEFT_REASONS = Object.freeze({
  [LeaveReason.LEFT]: "left the session",
  [LeaveReason.REMOVED]: "was removed",
  [LeaveReason.RETURNED_TO_LOBBY]: "was moved to the waiting room",
  [LeaveReason.TIMEOUT]: "lost their connection",
});

/** Error codes that refuse a share we started: our capture stops. */
// After an offer refused `unavailable` (the room's media server is being replaced, docs/SCALING.md), try again.
const MEDIA_RETRY_MS = 500;
// A drain's move (make-before-break): the old connection closes this long after the new one carries a track
// of everyone the old one did (frames start flowing, and those still receiving us through the old server
// switch too), at the latest after MEDIA_SWITCH_BOUND_MS.
const MEDIA_SWITCH_SETTLE_MS = 2000;
const MEDIA_SWITCH_BOUND_MS = 5000;

const SHARE_REFUSALS = new Set(["share_not_allowed", "share_in_progress", "no_screen_track", "not_in_room"]);

export class RoomSession extends EventTarget {
  /**
   * @param {object} options
   * @param {() => Promise<{ticket: string, url: string}>} options.getTicket a new signaling ticket per attempt
   * @param {MediaStream | null} options.localStream
   * @param {VideoGrid} options.grid
   * @param {string | null} [options.displayName]
   * @param {{audio: boolean, video: boolean}} [options.media] what the participant sends when joining
   */
  constructor({ getTicket, localStream, grid, displayName = null, media = { audio: true, video: true } }) {
    super();
    this.localStream = localStream;
    this.grid = grid;
    this.displayName = displayName;
    this.media = { ...media };
    /** @type {PhaseValue} */
    this.phase = Phase.CONNECTING;
    /** @type {PhaseValue[]} */
    this.phaseHistory = [Phase.CONNECTING];
    /** @type {Map<string, number>} hosts: participant id -> times they newly appeared in the lobby */
    this.lobbyKnocks = new Map();
    /** @type {Set<string>} */
    this.lobbyNow = new Set();
    /** @type {Map<string, RosterEntry>} */
    this.roster = new Map();
    /** @type {Set<string>} */
    this.reconnecting = new Set();
    this.locked = false;
    /** @type {MediaLink | null} */
    this.link = null;
    /** @type {WebSocket | null | undefined} the socket the current link was negotiated on */
    this.linkSocket = undefined;
    /** @type {boolean | undefined} */
    this.wasInRoom = undefined;
    /** @type {boolean | undefined} */
    this.ending = undefined;
    /** @type {Map<string, string>} remote track id -> participant id */
    this.trackOwner = new Map();
    /** @type {RemoteTrack[]} tracks that arrived before the roster named their owner */
    this.unmatched = [];
    /** @type {boolean} the relay answered our offer: layer choices can be sent */
    this.mediaAnswered = false;
    /** How many times the room's media moved to another server while we were in it (diagnostics, tests). */
    this.mediaMoves = 0;
    /** @type {{old: MediaLink, watched: Set<string>, bound: ReturnType<typeof setTimeout>, settle: ReturnType<typeof setTimeout> | null} | null} a drain's move under way */
    this.moving = null;
    /** @type {{sharer: string | null, allowed: string[]}} the room's screen share (share_state) */
    this.share = { sharer: null, allowed: [] };
    /** @type {MediaStreamTrack | null} our own screen capture while we share */
    this.shareTrack = null;
    /** When (Date.now()) our own capture last ended, and the last share_state arrived (diagnostics). */
    this.shareEndedAt = 0;
    this.shareStateAt = 0;
    this.grid.onSubscriptions = (tiles) => {
      if (this.mediaAnswered) this.send({ type: ClientType.SET_SUBSCRIPTIONS, tiles });
    };
    this.signaling = new SignalingClient({ getTicket, join: this.media });
    this.signaling.addEventListener("message", (event) => this.onMessage(detailOf(event)));
    this.signaling.addEventListener("state", (event) => this.onSocketState(detailOf(event)));
    this.signaling.addEventListener("ended", (event) => this.end(detailOf(event).reason, null));
  }

  get participantId() {
    return this.signaling.participantId;
  }

  get role() {
    return this.signaling.welcome?.role ?? null;
  }

  start() {
    this.signaling.start();
  }

  leave() {
    this.signaling.leave();
  }

  /** @param {{type: string} & Record<string, unknown>} message */
  send(message) {
    return this.signaling.send(message);
  }

  // --- own controls -----------------------------------------------------------------------------------------

  /** @param {boolean} on */
  setMicrophone(on) {
    this.media.audio = on;
    for (const track of this.localStream?.getAudioTracks() ?? []) track.enabled = on;
    this.signaling.setJoinMedia({ audio: on });
    this.send({ type: ClientType.SET_MEDIA, audio: on });
  }

  /** @param {boolean} on */
  setCamera(on) {
    this.media.video = on;
    for (const track of this.localStream?.getVideoTracks() ?? []) track.enabled = on;
    this.signaling.setJoinMedia({ video: on });
    this.send({ type: ClientType.SET_MEDIA, video: on });
  }

  /** @param {boolean} up */
  raiseHand(up) {
    this.send({ type: ClientType.RAISE_HAND, up });
  }

  /** Receive audio only (the person's own choice, e.g. on mobile data), or video again. @param {boolean} on */
  setSaveData(on) {
    this.send({ type: ClientType.SAVE_DATA, on });
  }

  // --- screen share (issue 15) ------------------------------------------------------------------------------

  /** Whether we may share now: a host always, a client while a host allows it. */
  get mayShare() {
    return this.role === Role.HOST || this.share.allowed.includes(/** @type {string} */ (this.participantId));
  }

  // Capture a screen, window or tab (the browser asks which) and send it to the room.
  async startShare() {
    const link = this.link;
    if (!link || this.shareTrack) return;
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 15 } }, audio: false });
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    track.contentHint = "detail"; // slides and text: sharpness over motion
    // The browser's own "Stop sharing" button ends the track: the share ends for everyone.
    track.addEventListener("ended", () => this.stopShare());
    this.shareTrack = track;
    await link.setScreen(track);
    this.grid.attachShare(/** @type {string} */ (this.participantId), track);
    this.send({ type: ClientType.START_SHARE });
  }

  stopShare() {
    if (!this.shareTrack) return;
    this.endLocalShare();
    this.send({ type: ClientType.STOP_SHARE });
  }

  // Our capture stops (we stopped, a host revoked, the server refused it); the server is told by the caller.
  endLocalShare() {
    const track = this.shareTrack;
    if (!track) return;
    this.shareTrack = null;
    this.shareEndedAt = Date.now();
    track.stop();
    this.link?.setScreen(null).catch(() => undefined);
    if (this.share.sharer !== this.participantId) this.grid.setSharer(this.share.sharer);
    this.emitShare();
  }

  /** @param {string} participantId @param {boolean} allowed */
  setShareAllowed(participantId, allowed) {
    this.send({ type: allowed ? ClientType.ALLOW_SHARE : ClientType.REVOKE_SHARE, participant_id: participantId });
  }

  emitShare() {
    this.emit("share", { ...this.share, mine: Boolean(this.shareTrack), mayShare: this.mayShare });
  }

  // For the page's diagnostics hook and the browser tests: inbound stats joined with their participant.
  async inboundStats() {
    if (!this.link) return [];
    const rows = await this.link.inboundStats();
    return rows.map((row) => ({ ...row, participantId: this.trackOwner.get(/** @type {string} */ (row.trackId)) ?? null }));
  }

  // For the diagnostics hook: what this browser's camera sends, per simulcast layer.
  async outboundStats() {
    return this.link ? this.link.outboundStats() : [];
  }

  // --- protocol ---------------------------------------------------------------------------------------------

  /** @param {PhaseValue} phase */
  setPhase(phase) {
    if (this.phase === phase) return;
    this.phase = phase;
    this.phaseHistory.push(phase);
    this.dispatchEvent(new CustomEvent("phase", { detail: phase }));
  }

  /**
   * @param {string} type
   * @param {unknown} detail
   */
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @param {import("./signaling.js").StateValue} state */
  onSocketState(state) {
    if (this.phase === Phase.ENDED) return;
    if (state === State.RECONNECTING) {
      this.emit("notice", "Connection lost. Reconnecting…");
      this.setPhase(Phase.RECONNECTING);
    }
  }

  /** @param {WireMessage} message */
  onMessage(message) {
    const handler = this.handlers[message.type];
    if (handler) handler.call(this, message);
  }

  // One handler per server message type (the rest are ignored).
  /** @type {Record<string, (this: RoomSession, message: WireMessage) => void>} */
  handlers = {
    [ServerType.WELCOME](message) {
      this.grid.setLocal(message.participant_id, this.localStream, this.displayName);
      if (message.role === Role.HOST || (message.resumed && this.wasInRoom)) this.enterRoom();
      else if (!message.resumed) this.setPhase(Phase.CONNECTING);
      if (message.resumed) this.emit("notice", "Reconnected.");
    },
    [ServerType.WAITING](message) {
      this.endLocalShare();
      this.finishMove();
      this.leaveMedia();
      this.setPhase(Phase.WAITING);
      this.emit("waiting", { position: message.position, message: message.message ?? null });
    },
    [ServerType.LOBBY](message) {
      /** @type {Set<string>} */
      const now = new Set(message.waiting.map((/** @type {{participant_id: string}} */ entry) => entry.participant_id));
      for (const id of now) if (!this.lobbyNow.has(id)) this.lobbyKnocks.set(id, (this.lobbyKnocks.get(id) ?? 0) + 1);
      this.lobbyNow = now;
      this.emit("lobby", message.waiting);
    },
    [ServerType.ADMITTED]() {
      this.enterRoom();
    },
    [ServerType.ROSTER](message) {
      this.onRoster(message);
    },
    [ServerType.PARTICIPANT_JOINED](message) {
      const entry = message.participant;
      const back = this.reconnecting.delete(entry.participant_id);
      const known = this.roster.has(entry.participant_id);
      this.roster.set(entry.participant_id, entry);
      this.refreshRoster();
      if (!known) this.emit("notice", `${entry.display_name} joined.`);
      else if (back) this.emit("notice", `${entry.display_name} is back.`);
    },
    [ServerType.PARTICIPANT_LEFT](message) {
      const entry = this.roster.get(message.participant_id);
      this.roster.delete(message.participant_id);
      this.reconnecting.delete(message.participant_id);
      this.grid.remove(message.participant_id);
      this.refreshRoster();
      if (entry) this.emit("notice", `${entry.display_name} ${LEFT_REASONS[message.reason] ?? "left"}.`);
    },
    [ServerType.RECONNECTING](message) {
      this.reconnecting.add(message.participant_id);
      this.refreshRoster();
      const entry = this.roster.get(message.participant_id);
      if (entry) this.emit("notice", `${entry.display_name} is reconnecting.`);
    },
    [ServerType.OFFER](message) {
      this.link?.handleOffer(message.sdp).catch((error) => this.mediaFailed(error));
    },
    [ServerType.ANSWER](message) {
      const link = this.link;
      link
        ?.handleAnswer(message.sdp)
        .then(() => {
          if (this.link !== link) return;
          this.mediaAnswered = true;
          this.grid.publishSubscriptions(true); // what this screen shows, for the new peer connection
        })
        .catch((error) => this.mediaFailed(error));
    },
    [ServerType.CANDIDATE](message) {
      this.link?.handleCandidate(message).catch(() => undefined);
    },
    [ServerType.MEDIA_MOVED](message) {
      // The room's media moved to another server: a new peer connection on the same socket; admission and the
      // seat go on. Its server died (node_lost): at once. Its server drains: make-before-break, the old
      // connection flows (we publish on both) until the new one carries everyone it did.
      if (this.phase !== Phase.IN_ROOM) return;
      this.mediaMoves += 1;
      if (message.reason === MediaMoveReason.DRAIN && this.link) this.moveMedia();
      else this.restartMedia();
    },
    [ServerType.MEDIA_CHANGED](message) {
      const entry = this.roster.get(message.participant_id);
      if (!entry) return;
      this.roster.set(message.participant_id, { ...entry, audio: message.audio, video: message.video });
      this.refreshRoster();
    },
    [ServerType.AUDIO_ONLY](message) {
      const entry = this.roster.get(message.participant_id);
      if (entry) {
        this.roster.set(message.participant_id, { ...entry, audio_only: message.on });
        this.refreshRoster();
      }
      if (message.participant_id === this.participantId) {
        // Audio only: the grid goes compact with the last speakers first (their voices are what arrives).
        this.grid.audioOnly = message.on;
        this.grid.arrange();
        this.emit("audio-only", { on: message.on, reason: message.reason });
      }
    },
    [ServerType.MUTED](message) {
      const entry = this.roster.get(message.participant_id);
      if (entry && message.kind === MediaKind.AUDIO) {
        this.roster.set(message.participant_id, { ...entry, muted_by_host: message.muted !== false });
        this.refreshRoster();
      }
      if (message.participant_id === this.participantId) {
        const on = message.muted === false;
        this.emit("notice", on ? "The clinician unmuted you." : `The clinician muted your ${message.kind === MediaKind.VIDEO ? "camera" : "microphone"}.`);
        this.emit("host-muted", { kind: message.kind, muted: !on });
      }
    },
    [ServerType.HAND_RAISED](message) {
      const entry = this.roster.get(message.participant_id);
      if (!entry) return;
      this.roster.set(message.participant_id, { ...entry, hand: message.up });
      this.refreshRoster();
      if (message.up) this.emit("notice", `${entry.display_name} raised their hand.`);
    },
    [ServerType.ACTIVE_SPEAKER](message) {
      const state = speakerState(message);
      this.grid.setSpeakers(state);
      this.emit("speaker", state);
    },
    [ServerType.RETURNED_TO_LOBBY]() {
      this.wasInRoom = false;
      this.endLocalShare();
      this.finishMove();
      this.leaveMedia();
      this.grid.clearRemote();
      this.setPhase(Phase.WAITING);
      this.emit("notice", "The clinician moved you to the waiting room.");
    },
    [ServerType.ROOM_LOCKED]() {
      this.locked = true;
      this.refreshRoster();
      this.emit("notice", "The room is locked.");
    },
    [ServerType.ROOM_UNLOCKED]() {
      this.locked = false;
      this.refreshRoster();
      this.emit("notice", "The room is unlocked.");
    },
    [ServerType.DENIED](message) {
      this.end(EndReason.DENIED, message.message ?? null);
    },
    [ServerType.REMOVED](message) {
      this.end(EndReason.REMOVED, message.message ?? null);
    },
    [ServerType.ROOM_ENDED]() {
      this.end(EndReason.ROOM_ENDED, null);
    },
    // Issue 15: "I need to talk". Hosts hear of every client's request, a client only of their own.
    [ServerType.TALK_REQUEST](message) {
      this.emit("talk-request", { participant_id: message.participant_id, pending: Boolean(message.pending) });
    },
    // Issue 15: a private breakout started or ended. To its client, its clinician and the hosts only.
    [ServerType.BREAKOUT](message) {
      this.emit("breakout", {
        participant_id: message.participant_id,
        clinician_id: message.clinician_id,
        clinician_name: message.clinician_name,
        active: Boolean(message.active),
      });
    },
    [ServerType.ERROR](message) {
      // A share the server refused (not allowed, someone else shares, no screen section) stops here too.
      if (SHARE_REFUSALS.has(message.code) && this.share.sharer !== this.participantId) this.endLocalShare();
      if (message.code === "unavailable" && this.link && !this.mediaAnswered) {
        // Our offer found no media server yet (a takeover under way): try again shortly, not an error.
        const link = this.link;
        setTimeout(() => {
          if (this.link === link && !this.mediaAnswered && this.phase === Phase.IN_ROOM) this.restartMedia();
        }, MEDIA_RETRY_MS);
        return;
      }
      this.emit("error", { code: message.code, message: message.message });
    },
    // --- screen share (issue 15) ---
    [ServerType.SHARE_STATE](message) {
      this.shareStateAt = Date.now();
      this.share = { sharer: message.sharer ?? null, allowed: [...(message.allowed ?? [])] };
      if (this.shareTrack && this.share.sharer !== this.participantId && this.share.sharer !== null) this.endLocalShare();
      if (this.shareTrack && this.share.sharer === null && !this.mayShare) this.endLocalShare(); // revoked
      this.grid.setSharer(this.share.sharer);
      this.refreshRoster();
      this.emitShare();
    },
    // --- chat (issue 15) ---
    [ServerType.CHAT](message) {
      this.emit("chat", message);
    },
    [ServerType.CHAT_POLICY](message) {
      this.emit("chat-policy", message.clients_may_chat);
    },
  };

  // A roster replaces what we knew (a class method: the handler table's own `this.x =` would declare x on it).
  /** @param {WireMessage} message */
  onRoster(message) {
    /** @type {RosterEntry[]} */
    const participants = message.participants;
    this.roster = new Map(participants.map((p) => [p.participant_id, p]));
    this.locked = Boolean(message.locked);
    for (const id of [...this.grid.tiles.keys()]) {
      if (!this.roster.has(id) && id !== this.participantId) this.grid.remove(id);
    }
    // A roster is the room as it is now: it follows a resume, so whoever it lists is back, unless the
    // server flags them (RosterEntry.reconnecting, when present).
    const back = [...this.reconnecting].filter((id) => this.roster.has(id) && !this.roster.get(id)?.reconnecting);
    this.reconnecting = new Set(participants.filter((p) => p.reconnecting).map((p) => p.participant_id));
    for (const id of back) this.emit("notice", `${this.roster.get(id)?.display_name} is back.`);
    this.refreshRoster();
    if (this.phase === Phase.CONNECTING || this.phase === Phase.RECONNECTING) {
      if (this.wasInRoom || this.role === Role.HOST) this.enterRoom();
    }
  }

  // --- media ------------------------------------------------------------------------------------------------

  enterRoom() {
    this.wasInRoom = true;
    this.setPhase(Phase.IN_ROOM);
    if (this.link && !this.link.closed && this.signaling.state === State.OPEN && this.linkSocket === this.signaling.ws) return;
    // A new socket means a new peer connection: the server replaces the old one when our offer arrives.
    this.leaveMedia();
    const link = new MediaLink({
      send: (m) => this.signaling.send(m),
      iceServers: this.signaling.welcome?.ice_servers ?? [],
      localStream: this.localStream,
    });
    this.link = link;
    this.linkSocket = this.signaling.ws;
    link.addEventListener("track", (event) => this.onRemoteTrack(detailOf(event)));
    link.addEventListener("trackended", (event) => this.grid.detach(detailOf(event)));
    link
      .start()
      // A share outlives a reconnect (the server keeps it): the new connection's screen section carries it.
      .then(() => (this.shareTrack && this.link === link ? link.setScreen(this.shareTrack) : undefined))
      .catch((error) => this.mediaFailed(error));
  }

  restartMedia() {
    this.finishMove();
    this.leaveMedia();
    this.enterRoom();
  }

  moveMedia() {
    this.finishMove();
    const old = /** @type {MediaLink} */ (this.link);
    const watched = new Set(this.trackOwner.values());
    this.link = null; // enterRoom opens the new connection; the old one keeps flowing meanwhile
    this.enterRoom();
    const bound = setTimeout(() => this.finishMove(), MEDIA_SWITCH_BOUND_MS);
    this.moving = { old, watched, bound, settle: /** @type {ReturnType<typeof setTimeout> | null} */ (null) };
  }

  /** The new connection carries a track of everyone the old one did: close the old one once frames flow. */
  checkMove() {
    const moving = this.moving;
    if (!moving || moving.settle) return;
    const carried = new Set(this.trackOwner.values());
    if ([...moving.watched].every((id) => carried.has(id))) {
      moving.settle = setTimeout(() => this.finishMove(), MEDIA_SWITCH_SETTLE_MS);
    }
  }

  finishMove() {
    const moving = this.moving;
    if (!moving) return;
    this.moving = null;
    clearTimeout(moving.bound);
    if (moving.settle) clearTimeout(moving.settle);
    moving.old.close();
  }

  leaveMedia() {
    if (this.link) this.link.close();
    this.link = null;
    this.mediaAnswered = false;
    this.trackOwner.clear();
    this.unmatched = [];
  }

  /** @param {RemoteTrack} detail */
  onRemoteTrack(detail) {
    // A screen share arrives as the sharer's id plus SCREEN_STREAM_SUFFIX (their camera: the id alone).
    const shared = detail.streams.map((s) => s.id).find((id) => id.endsWith(SCREEN_STREAM_SUFFIX));
    if (shared) {
      const sharer = shared.slice(0, -SCREEN_STREAM_SUFFIX.length);
      this.trackOwner.set(detail.track.id, shared);
      this.grid.attachShare(sharer, detail.track);
      return;
    }
    const owner = participantOf(detail, new Set(this.roster.keys()));
    if (owner && this.roster.has(owner)) this.attach(owner, detail.track);
    else this.unmatched.push(detail);
  }

  /**
   * @param {string} participantId
   * @param {MediaStreamTrack} track
   */
  attach(participantId, track) {
    this.trackOwner.set(track.id, participantId);
    this.grid.attach(participantId, track);
    this.checkMove();
    const entry = this.roster.get(participantId);
    if (entry) this.grid.update(entry, { reconnecting: this.reconnecting.has(participantId) });
  }

  /** @param {any} error */
  mediaFailed(error) {
    this.emit("error", { code: "media", message: `Media negotiation failed: ${error?.message ?? error}` });
  }

  refreshRoster() {
    const known = new Set(this.roster.keys());
    /** @type {RemoteTrack[]} */
    const still = [];
    for (const detail of this.unmatched) {
      const owner = participantOf(detail, known);
      if (owner && known.has(owner)) this.attach(owner, detail.track);
      else still.push(detail);
    }
    this.unmatched = still;
    for (const entry of this.roster.values()) {
      if (entry.participant_id === this.participantId) {
        this.grid.update(entry);
        this.emit("self", entry);
      } else if (this.phase === Phase.IN_ROOM || this.phase === Phase.RECONNECTING) {
        this.grid.update(entry, { reconnecting: this.reconnecting.has(entry.participant_id) });
      }
    }
    this.emit("roster", { participants: [...this.roster.values()], locked: this.locked, reconnecting: this.reconnecting });
  }

  /**
   * @param {import("./signaling.js").EndReasonValue} reason
   * @param {string | null} message the clinician's message, when there is one
   */
  end(reason, message) {
    if (this.ending) return;
    this.ending = true;
    this.endLocalShare();
    this.finishMove();
    this.leaveMedia();
    if (this.signaling.state !== State.CLOSED) this.signaling.finish(reason, null);
    this.setPhase(Phase.ENDED);
    this.emit("ended", { reason, text: ENDINGS[reason] ?? ENDINGS.closed, message });
  }
}
