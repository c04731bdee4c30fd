// One participant's life in a room, shared by the client's join page and the clinician's console:
// signaling + media + roster + video grid. Pages listen to its events and draw their own panels.
//
// Phases: connecting -> waiting (clients) -> in_room -> ended; "reconnecting" while the socket is down.
// Events: "phase" {detail: phase}, "waiting" {detail: {position, message}}, "lobby" {detail: entries},
// "roster" {detail: {participants, locked}}, "self" {detail: rosterEntry}, "notice" {detail: text},
// "ended" {detail: {reason, message}}, "error" {detail: {code, message}}.

import { SignalingClient, State } from "./signaling.js";
import { MediaLink, participantOf } from "./webrtc.js";

const ENDINGS = {
  room_ended: "The session has ended.",
  removed: "The clinician removed you from the session.",
  denied: "The clinician could not admit you to this session.",
  left: "You left the session.",
  lost: "The connection was lost and could not be restored. Open your link again to rejoin.",
  resume_rejected: "The connection was lost for too long. Open your link again to rejoin.",
  unauthorized: "This link or sign-in is no longer valid.",
  closed: "The connection was closed.",
};

const LEFT_REASONS = {
  left: "left the session",
  removed: "was removed",
  returned_to_lobby: "was moved to the waiting room",
  timeout: "lost their connection",
};

export class RoomSession extends EventTarget {
  constructor({ getTicket, localStream, grid, displayName = null, media = { audio: true, video: true } }) {
    super();
    this.localStream = localStream;
    this.grid = grid;
    this.displayName = displayName;
    this.media = { ...media };
    this.phase = "connecting";
    this.phaseHistory = ["connecting"];
    this.lobbyKnocks = new Map(); // hosts: participant id -> times they newly appeared in the lobby
    this.lobbyNow = new Set();
    this.roster = new Map();
    this.reconnecting = new Set();
    this.locked = false;
    this.link = null;
    this.trackOwner = new Map(); // remote track id -> participant id
    this.unmatched = []; // tracks that arrived before the roster named their owner
    this.signaling = new SignalingClient({ getTicket, join: this.media });
    this.signaling.addEventListener("message", (event) => this.onMessage(event.detail));
    this.signaling.addEventListener("state", (event) => this.onSocketState(event.detail));
    this.signaling.addEventListener("ended", (event) => this.end(event.detail.reason, null));
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

  send(message) {
    return this.signaling.send(message);
  }

  // --- own controls -----------------------------------------------------------------------------------------

  setMicrophone(on) {
    this.media.audio = on;
    for (const track of this.localStream?.getAudioTracks() ?? []) track.enabled = on;
    this.signaling.setJoinMedia({ audio: on });
    this.send({ type: "set_media", audio: on });
  }

  setCamera(on) {
    this.media.video = on;
    for (const track of this.localStream?.getVideoTracks() ?? []) track.enabled = on;
    this.signaling.setJoinMedia({ video: on });
    this.send({ type: "set_media", video: on });
  }

  raiseHand(up) {
    this.send({ type: "raise_hand", up });
  }

  // For the page's diagnostics hook and the browser tests: inbound stats joined with their participant.
  async inboundStats() {
    if (!this.link) return [];
    const rows = await this.link.inboundStats();
    return rows.map((row) => ({ ...row, participantId: this.trackOwner.get(row.trackId) ?? null }));
  }

  // --- protocol ---------------------------------------------------------------------------------------------

  setPhase(phase) {
    if (this.phase === phase) return;
    this.phase = phase;
    this.phaseHistory.push(phase);
    this.dispatchEvent(new CustomEvent("phase", { detail: phase }));
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  onSocketState(state) {
    if (this.phase === "ended") return;
    if (state === State.RECONNECTING) {
      this.emit("notice", "Connection lost. Reconnecting…");
      this.setPhase("reconnecting");
    }
  }

  onMessage(message) {
    const handler = this.handlers[message.type];
    if (handler) handler.call(this, message);
  }

  handlers = {
    welcome(message) {
      this.grid.setLocal(message.participant_id, this.localStream, this.displayName);
      if (message.role === "host" || (message.resumed && this.wasInRoom)) this.enterRoom();
      else if (!message.resumed) this.setPhase("connecting");
      if (message.resumed) this.emit("notice", "Reconnected.");
    },
    waiting(message) {
      this.leaveMedia();
      this.setPhase("waiting");
      this.emit("waiting", { position: message.position, message: message.message ?? null });
    },
    lobby(message) {
      const now = new Set(message.waiting.map((entry) => entry.participant_id));
      for (const id of now) if (!this.lobbyNow.has(id)) this.lobbyKnocks.set(id, (this.lobbyKnocks.get(id) ?? 0) + 1);
      this.lobbyNow = now;
      this.emit("lobby", message.waiting);
    },
    admitted() {
      this.enterRoom();
    },
    roster(message) {
      this.roster = new Map(message.participants.map((p) => [p.participant_id, p]));
      this.locked = Boolean(message.locked);
      for (const id of [...this.grid.tiles.keys()]) {
        if (!this.roster.has(id) && id !== this.participantId) this.grid.remove(id);
      }
      // A roster is the room as it is now: it follows a resume, so whoever it lists is back, unless the
      // server flags them (RosterEntry.reconnecting, when present).
      const back = [...this.reconnecting].filter((id) => this.roster.has(id) && !this.roster.get(id).reconnecting);
      this.reconnecting = new Set(message.participants.filter((p) => p.reconnecting).map((p) => p.participant_id));
      for (const id of back) this.emit("notice", `${this.roster.get(id).display_name} is back.`);
      this.refreshRoster();
      if (this.phase === "connecting" || this.phase === "reconnecting") {
        if (this.wasInRoom || this.role === "host") this.enterRoom();
      }
    },
    participant_joined(message) {
      const entry = message.participant;
      const back = this.reconnecting.delete(entry.participant_id);
      const known = this.roster.has(entry.participant_id);
      this.roster.set(entry.participant_id, entry);
      this.refreshRoster();
      if (!known) this.emit("notice", `${entry.display_name} joined.`);
      else if (back) this.emit("notice", `${entry.display_name} is back.`);
    },
    participant_left(message) {
      const entry = this.roster.get(message.participant_id);
      this.roster.delete(message.participant_id);
      this.reconnecting.delete(message.participant_id);
      this.grid.remove(message.participant_id);
      this.refreshRoster();
      if (entry) this.emit("notice", `${entry.display_name} ${LEFT_REASONS[message.reason] ?? "left"}.`);
    },
    reconnecting(message) {
      this.reconnecting.add(message.participant_id);
      this.refreshRoster();
      const entry = this.roster.get(message.participant_id);
      if (entry) this.emit("notice", `${entry.display_name} is reconnecting.`);
    },
    offer(message) {
      this.link?.handleOffer(message.sdp).catch((error) => this.mediaFailed(error));
    },
    answer(message) {
      this.link?.handleAnswer(message.sdp).catch((error) => this.mediaFailed(error));
    },
    candidate(message) {
      this.link?.handleCandidate(message).catch(() => undefined);
    },
    media_changed(message) {
      const entry = this.roster.get(message.participant_id);
      if (!entry) return;
      this.roster.set(message.participant_id, { ...entry, audio: message.audio, video: message.video });
      this.refreshRoster();
    },
    muted(message) {
      const entry = this.roster.get(message.participant_id);
      if (entry && message.kind === "audio") {
        this.roster.set(message.participant_id, { ...entry, muted_by_host: message.muted !== false });
        this.refreshRoster();
      }
      if (message.participant_id === this.participantId) {
        const on = message.muted === false;
        this.emit("notice", on ? "The clinician unmuted you." : `The clinician muted your ${message.kind === "video" ? "camera" : "microphone"}.`);
        this.emit("host-muted", { kind: message.kind, muted: !on });
      }
    },
    hand_raised(message) {
      const entry = this.roster.get(message.participant_id);
      if (!entry) return;
      this.roster.set(message.participant_id, { ...entry, hand: message.up });
      this.refreshRoster();
      if (message.up) this.emit("notice", `${entry.display_name} raised their hand.`);
    },
    returned_to_lobby() {
      this.wasInRoom = false;
      this.leaveMedia();
      this.grid.clearRemote();
      this.setPhase("waiting");
      this.emit("notice", "The clinician moved you to the waiting room.");
    },
    room_locked() {
      this.locked = true;
      this.refreshRoster();
      this.emit("notice", "The room is locked.");
    },
    room_unlocked() {
      this.locked = false;
      this.refreshRoster();
      this.emit("notice", "The room is unlocked.");
    },
    denied(message) {
      this.end("denied", message.message ?? null);
    },
    removed(message) {
      this.end("removed", message.message ?? null);
    },
    room_ended() {
      this.end("room_ended", null);
    },
    error(message) {
      this.emit("error", { code: message.code, message: message.message });
    },
  };

  // --- media ------------------------------------------------------------------------------------------------

  enterRoom() {
    this.wasInRoom = true;
    this.setPhase("in_room");
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
    link.addEventListener("track", (event) => this.onRemoteTrack(event.detail));
    link.addEventListener("trackended", (event) => this.grid.detach(event.detail));
    link.start().catch((error) => this.mediaFailed(error));
  }

  leaveMedia() {
    if (this.link) this.link.close();
    this.link = null;
    this.trackOwner.clear();
    this.unmatched = [];
  }

  onRemoteTrack(detail) {
    const owner = participantOf(detail, new Set(this.roster.keys()));
    if (owner && this.roster.has(owner)) this.attach(owner, detail.track);
    else this.unmatched.push(detail);
  }

  attach(participantId, track) {
    this.trackOwner.set(track.id, participantId);
    this.grid.attach(participantId, track);
    const entry = this.roster.get(participantId);
    if (entry) this.grid.update(entry, { reconnecting: this.reconnecting.has(participantId) });
  }

  mediaFailed(error) {
    this.emit("error", { code: "media", message: `Media negotiation failed: ${error?.message ?? error}` });
  }

  refreshRoster() {
    const known = new Set(this.roster.keys());
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
      } else if (this.phase === "in_room" || this.phase === "reconnecting") {
        this.grid.update(entry, { reconnecting: this.reconnecting.has(entry.participant_id) });
      }
    }
    this.emit("roster", { participants: [...this.roster.values()], locked: this.locked, reconnecting: this.reconnecting });
  }

  end(reason, message) {
    if (this.ending) return;
    this.ending = true;
    this.leaveMedia();
    if (this.signaling.state !== State.CLOSED) this.signaling.finish(reason, null);
    this.setPhase("ended");
    this.emit("ended", { reason, text: ENDINGS[reason] ?? ENDINGS.closed, message });
  }
}
