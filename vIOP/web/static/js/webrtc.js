// @ts-check
// One RTCPeerConnection to the server's relay (docs/PROTOCOL.md, "Media negotiation").
//
// The client sends the first offer with its own audio and video; the server answers. When participants join
// or leave, the server sends a renegotiation `offer` and the client answers. Remote tracks are tagged with
// the participant they come from through their stream id (see participantOf). After a reconnect the page
// builds a new MediaLink: the server replaces the old peer connection when it receives the new offer.
//
// Events (EventTarget): "track" {detail: {participantId, track, streams}}, "trackended" {detail: track},
// "connection" {detail: connectionState}.

import { ClientType } from "./protocol.js";

// Two qualities of the camera (simulcast, docs/MEDIA.md): the relay sends each viewer the one its tile needs.
// Highest first: the relay takes the first as its default and, until it has seen both, as the higher one.
export const VIDEO_ENCODINGS = Object.freeze([
  { rid: "h", maxBitrate: 600_000 },
  { rid: "l", scaleResolutionDownBy: 2, maxBitrate: 150_000 },
]);

/**
 * A remote track as the "track" event carries it.
 * @typedef {object} RemoteTrack
 * @property {MediaStreamTrack} track
 * @property {readonly MediaStream[]} streams
 * @property {RTCRtpTransceiver} [transceiver]
 */

/**
 * An ICE server as `welcome.ice_servers` lists it (messages.IceServer).
 * @typedef {{urls: string[], username?: string, credential?: string}} IceServer
 */

/**
 * @typedef {object} InboundStat
 * @property {string | null} trackId
 * @property {string | null} mid
 * @property {string} kind
 * @property {number} framesDecoded
 * @property {number} frameHeight of the last decoded video frame (0 before one, and for audio)
 * @property {number} packetsReceived
 * @property {number} bytesReceived
 * @property {number} totalAudioEnergy
 */

/**
 * What this browser sends of its camera, per simulcast layer: whether the encoder is limited (and by what)
 * tells a layer the relay chose from one the publisher never sent.
 * @typedef {object} OutboundStat
 * @property {string | null} rid
 * @property {number} frameHeight of the last encoded frame (0 before one)
 * @property {number} framesEncoded
 * @property {number} bytesSent
 * @property {string | null} qualityLimitationReason "none", "cpu", "bandwidth" or "other"
 * @property {boolean | null} active
 */

export class MediaLink extends EventTarget {
  /**
   * @param {object} options
   * @param {(message: {type: string} & Record<string, unknown>) => boolean} options.send the signaling client's send
   * @param {IceServer[]} [options.iceServers]
   * @param {MediaStream | null} [options.localStream] may lack audio or video (or be null)
   */
  constructor({ send, iceServers = [], localStream = null }) {
    super();
    this.send = send;
    this.localStream = localStream;
    this.pc = new RTCPeerConnection({ iceServers: iceServers.map(toRtcIceServer), bundlePolicy: "max-bundle" });
    /** @type {Promise<unknown>} negotiation steps run one at a time, in arrival order */
    this.queue = Promise.resolve();
    /** @type {RTCIceCandidateInit[]} */
    this.pendingCandidates = [];
    this.closed = false;
    /** @type {Record<string, RTCRtpSender | null>} */
    this.senders = { audio: null, video: null, screen: null };
    this.pc.addEventListener("icecandidate", (event) => this.onLocalCandidate(event.candidate));
    this.pc.addEventListener("track", (event) => this.onTrack(event));
    this.pc.addEventListener("connectionstatechange", () =>
      this.dispatchEvent(new CustomEvent("connection", { detail: this.pc.connectionState })),
    );
  }

  // Add our media (or a receive-only slot when a device is missing) and send the first offer.
  start() {
    return this.enqueue(async () => {
      for (const kind of ["audio", "video"]) {
        const track = this.localStream?.getTracks().find((t) => t.kind === kind) ?? null;
        if (track) {
          /** @type {RTCRtpTransceiverInit} */
          const init = { direction: "sendrecv", streams: [/** @type {MediaStream} */ (this.localStream)] };
          if (kind === "video") init.sendEncodings = VIDEO_ENCODINGS.map((encoding) => ({ ...encoding }));
          const transceiver = this.pc.addTransceiver(track, init);
          this.senders[kind] = transceiver.sender;
        } else {
          this.pc.addTransceiver(kind, { direction: "recvonly" });
        }
      }
      // The screen share's section, sending nothing until a share starts (setScreen): starting and stopping
      // a share then needs no renegotiation (docs/PROTOCOL.md, "Screen share").
      this.senders.screen = this.pc.addTransceiver("video", { direction: "sendonly" }).sender;
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      this.send({ type: ClientType.OFFER, sdp: /** @type {RTCSessionDescription} */ (this.pc.localDescription).sdp });
    });
  }

  /** @param {string} sdp */
  handleAnswer(sdp) {
    return this.enqueue(async () => {
      await this.pc.setRemoteDescription({ type: "answer", sdp });
      await this.flushCandidates();
    });
  }

  /** @param {string} sdp */
  handleOffer(sdp) {
    return this.enqueue(async () => {
      if (this.pc.signalingState !== "stable") {
        // Our own offer is outstanding (the server offered at the same moment): the server's offer wins.
        await this.pc.setLocalDescription({ type: "rollback" });
      }
      await this.pc.setRemoteDescription({ type: "offer", sdp });
      await this.flushCandidates();
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
      this.send({ type: ClientType.ANSWER, sdp: /** @type {RTCSessionDescription} */ (this.pc.localDescription).sdp });
    });
  }

  /** @param {{candidate?: string, sdp_mid?: string | null, sdp_mline_index?: number | null} & Record<string, unknown>} message a `candidate` message */
  handleCandidate({ candidate, sdp_mid: sdpMid, sdp_mline_index: sdpMLineIndex }) {
    /** @type {RTCIceCandidateInit} */
    const init = { candidate: candidate || "", sdpMid: sdpMid ?? null, sdpMLineIndex: sdpMLineIndex ?? null };
    if (init.sdpMid === null && init.sdpMLineIndex === null) init.sdpMLineIndex = 0;
    return this.enqueue(async () => {
      if (!this.pc.remoteDescription) {
        this.pendingCandidates.push(init);
        return;
      }
      await this.addCandidate(init);
    });
  }

  // Swap the camera or microphone without renegotiating.
  /**
   * @param {string} kind "audio" or "video"
   * @param {MediaStreamTrack | null} track
   */
  async replaceTrack(kind, track) {
    const sender = this.senders[kind];
    if (sender) await sender.replaceTrack(track);
  }

  /**
   * Send this screen capture on the share's section (null: stop sending).
   * @param {MediaStreamTrack | null} track
   */
  async setScreen(track) {
    if (this.senders.screen && !this.closed) await this.senders.screen.replaceTrack(track);
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.pc.close();
  }

  // Inbound RTP statistics per remote track: {trackId, kind, framesDecoded, packetsReceived, ...}.
  /** @returns {Promise<InboundStat[]>} */
  async inboundStats() {
    if (this.closed) return [];
    const report = await this.pc.getStats();
    /** @type {InboundStat[]} */
    const rows = [];
    report.forEach((/** @type {Record<string, any>} */ stat) => {
      if (stat.type !== "inbound-rtp") return;
      rows.push({
        trackId: stat.trackIdentifier ?? null,
        mid: stat.mid ?? null,
        kind: stat.kind,
        framesDecoded: stat.framesDecoded ?? 0,
        frameHeight: stat.frameHeight ?? 0,
        packetsReceived: stat.packetsReceived ?? 0,
        bytesReceived: stat.bytesReceived ?? 0,
        totalAudioEnergy: stat.totalAudioEnergy ?? 0,
      });
    });
    return rows;
  }

  /** @returns {Promise<OutboundStat[]>} */
  async outboundStats() {
    if (this.closed) return [];
    const report = await this.pc.getStats();
    /** @type {OutboundStat[]} */
    const rows = [];
    report.forEach((/** @type {Record<string, any>} */ stat) => {
      if (stat.type !== "outbound-rtp" || stat.kind !== "video") return;
      rows.push({
        rid: stat.rid ?? null,
        frameHeight: stat.frameHeight ?? 0,
        framesEncoded: stat.framesEncoded ?? 0,
        bytesSent: stat.bytesSent ?? 0,
        qualityLimitationReason: stat.qualityLimitationReason ?? null,
        active: stat.active ?? null,
      });
    });
    return rows;
  }

  // --- internals --------------------------------------------------------------------------------------------

  /**
   * @template T
   * @param {() => Promise<T>} step
   * @returns {Promise<T | undefined>}
   */
  enqueue(step) {
    const run = this.queue.then(() => (this.closed ? undefined : step()));
    // Keep the chain alive after a failure; the caller still sees the error.
    this.queue = run.catch(() => undefined);
    return run;
  }

  async flushCandidates() {
    const pending = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const init of pending) await this.addCandidate(init);
  }

  /** @param {RTCIceCandidateInit} init */
  async addCandidate(init) {
    try {
      await this.pc.addIceCandidate(init.candidate ? init : null);
    } catch {
      // A candidate for a section the last renegotiation removed: harmless.
    }
  }

  /** @param {RTCIceCandidate | null} candidate */
  onLocalCandidate(candidate) {
    if (this.closed) return;
    if (!candidate) {
      this.send({ type: ClientType.CANDIDATE, candidate: "" });
      return;
    }
    /** @type {{type: string} & Record<string, unknown>} */
    const message = { type: ClientType.CANDIDATE, candidate: candidate.candidate };
    if (candidate.sdpMid !== null) message.sdp_mid = candidate.sdpMid;
    if (candidate.sdpMLineIndex !== null) message.sdp_mline_index = candidate.sdpMLineIndex;
    this.send(message);
  }

  /** @param {RTCTrackEvent} event */
  onTrack(event) {
    const { track, streams } = event;
    track.addEventListener("ended", () => this.dispatchEvent(new CustomEvent("trackended", { detail: track })));
    this.dispatchEvent(new CustomEvent("track", { detail: { track, streams: [...streams], transceiver: event.transceiver } }));
  }
}

/**
 * @param {IceServer} server
 * @returns {RTCIceServer}
 */
function toRtcIceServer(server) {
  /** @type {RTCIceServer} */
  const out = { urls: server.urls };
  if (server.username) out.username = server.username;
  if (server.credential) out.credential = server.credential;
  return out;
}

// The participant a remote track belongs to: the server names each forwarded stream after its source
// participant (the stream id is the participant id, or carries it). Falls back to the track id.
/**
 * @param {RemoteTrack} remote
 * @param {Set<string>} knownIds
 * @returns {string | null}
 */
export function participantOf({ track, streams }, knownIds) {
  const names = [...streams.map((s) => s.id), track.id];
  for (const name of names) {
    if (knownIds.has(name)) return name;
  }
  for (const name of names) {
    const match = /pt_[A-Za-z0-9_-]+/.exec(name);
    if (match) {
      for (const id of knownIds) if (name.includes(id)) return id;
      return match[0];
    }
  }
  return null;
}
