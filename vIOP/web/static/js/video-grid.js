// @ts-check
// The session's video grid: one tile per participant with their name and state badges.
// A tile's <video> plays one MediaStream holding that participant's audio and video tracks.
// The active speaker's tile is highlighted; on a small screen or a slow link the last speakers go first.
// A screen share (issue 15) plays large on a stage before the tiles, which move beside it; the sharer's tile
// says so.

import { Role } from "./protocol.js";
import { isConstrained, tileOrder } from "./speaker-order.js";
import { el } from "./ui.js";

/**
 * A participant as roster messages list them (messages.RosterEntry; fields the client reads).
 * @typedef {object} RosterEntry
 * @property {string} participant_id
 * @property {string} display_name
 * @property {string} role
 * @property {boolean} [audio]
 * @property {boolean} [video]
 * @property {boolean} [muted_by_host]
 * @property {boolean} [hand]
 * @property {boolean} [reconnecting]
 * @property {boolean} [audio_only] receives no video (their link, or their own "save data" choice)
 * @property {boolean} [talk_requested] issue 15: asked to talk (hosts' rosters only)
 * @property {boolean} [stepped_out] issue 15: in a private breakout the reader is not part of
 * @property {string | null} [breakout_with] issue 15: the other side of their breakout (hosts' rosters only)
 */

/**
 * A tile on screen as `set_subscriptions` names it (messages.Tile): size in device pixels.
 * @typedef {{participant: string, width: number, height: number}} VisibleTile
 */

const MAX_TILE_PIXELS = 8192;
const SUBSCRIPTIONS_DEBOUNCE_MS = 250;

/**
 * @typedef {object} Tile
 * @property {HTMLElement} item
 * @property {HTMLVideoElement} video
 * @property {HTMLElement} name
 * @property {HTMLElement} badges
 * @property {MediaStream} stream
 * @property {boolean} self
 */

export class VideoGrid {
  /** @param {HTMLElement} list a <ul class="grid"> */
  constructor(list) {
    this.list = list;
    /** @type {Map<string, Tile>} */
    this.tiles = new Map();
    /** @type {string | null} who holds the floor (the server's `active_speaker`) */
    this.speaker = null;
    /** @type {string[]} recent speakers, newest first */
    this.recent = [];
    /** @type {boolean} the person chose audio only, or the server switched them to it */
    this.audioOnly = false;
    this.constrained = false;
    /** @type {((tiles: VisibleTile[]) => void) | null} hears the visible tiles when they change */
    this.onSubscriptions = null;
    /** @type {Set<string>} tiles at least partly in the viewport */
    this.visible = new Set();
    /** @type {string} the last list handed to onSubscriptions (JSON) */
    this.lastSubscriptions = "";
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.subscriptionsTimer = null;
    this.intersections =
      typeof IntersectionObserver === "undefined"
        ? null
        : new IntersectionObserver((entries) => {
            for (const entry of entries) {
              const id = /** @type {HTMLElement} */ (entry.target).dataset.participant ?? "";
              if (entry.isIntersecting) this.visible.add(id);
              else this.visible.delete(id);
            }
            this.subscriptionsChanged();
          });
    this.resizes = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(() => this.subscriptionsChanged());
    /** @type {string | null} who shares their screen now (share_state) */
    this.sharer = null;
    /** @type {Map<string, MediaStreamTrack>} the share track of each sharer it arrived from */
    this.shareTracks = new Map();
    this.stageVideo = /** @type {HTMLVideoElement} */ (el("video", { autoplay: true, playsinline: true, muted: true }));
    this.stageVideo.muted = true;
    this.stageCaption = el("figcaption", { class: "name" });
    this.stage = el("figure", { class: "share-stage", "aria-label": "Shared screen" }, this.stageVideo, this.stageCaption);
    this.stage.hidden = true;
    // The stage and the tiles share a wrapper, side by side while someone shares.
    this.wrap = el("div", { class: "stage-wrap" });
    this.list.before(this.wrap);
    this.wrap.append(this.stage, this.list);
    window.addEventListener("resize", () => this.arrange());
  }

  /**
   * The other participants' tiles on screen now, with their size in device pixels (off-screen ones are absent:
   * the relay pauses their video for us; small ones get the low layer).
   * @returns {VisibleTile[]}
   */
  visibleTiles() {
    const ratio = window.devicePixelRatio || 1;
    /** @type {VisibleTile[]} */
    const tiles = [];
    for (const [id, tile] of this.tiles) {
      if (tile.self || (this.intersections && !this.visible.has(id))) continue;
      const box = tile.video.getBoundingClientRect();
      if (box.width < 1 || box.height < 1) continue;
      const clamp = (/** @type {number} */ n) => Math.min(MAX_TILE_PIXELS, Math.max(1, Math.round(n * ratio)));
      tiles.push({ participant: id, width: clamp(box.width), height: clamp(box.height) });
    }
    return tiles.sort((a, b) => (a.participant < b.participant ? -1 : 1));
  }

  // Coalesce layout changes (scrolling, resizing, tiles coming and going) into one message.
  subscriptionsChanged() {
    if (this.subscriptionsTimer !== null) return;
    this.subscriptionsTimer = setTimeout(() => {
      this.subscriptionsTimer = null;
      this.publishSubscriptions(false);
    }, SUBSCRIPTIONS_DEBOUNCE_MS);
  }

  /** @param {boolean} force send even if unchanged (a new peer connection starts from the default) */
  publishSubscriptions(force) {
    const tiles = this.visibleTiles();
    const key = JSON.stringify(tiles);
    if ((!force && key === this.lastSubscriptions) || !this.onSubscriptions) return;
    this.lastSubscriptions = key;
    this.onSubscriptions(tiles);
  }

  /**
   * The room's dominant speaker changed: move the highlight, and the order when the grid is constrained.
   * @param {{speaker: string | null, recent: string[]}} state
   */
  setSpeakers({ speaker, recent }) {
    this.speaker = speaker;
    this.recent = recent;
    for (const [id, tile] of this.tiles) {
      const speaking = id === speaker;
      tile.item.classList.toggle("speaking", speaking);
      if (speaking) tile.item.dataset.speaking = "true";
      else delete tile.item.dataset.speaking;
    }
    this.arrange();
  }

  // Small screen, slow link or audio only: the last speakers' tiles first (else the order stays put).
  arrange() {
    const connection = /** @type {{effectiveType?: string, saveData?: boolean} | undefined} */ (
      /** @type {any} */ (navigator).connection
    );
    this.constrained = isConstrained({
      width: window.innerWidth,
      effectiveType: connection?.effectiveType ?? null,
      saveData: Boolean(connection?.saveData),
      audioOnly: this.audioOnly,
    });
    this.list.classList.toggle("compact", this.constrained);
    const self = [...this.tiles].find(([, tile]) => tile.self)?.[0] ?? null;
    const current = [...this.list.children].map((item) => /** @type {HTMLElement} */ (item).dataset.participant ?? "");
    const order = tileOrder(current, { recent: this.recent, self, constrained: this.constrained });
    if (order.every((id, i) => id === current[i])) return;
    for (const id of order) {
      const tile = this.tiles.get(id);
      if (tile) this.list.append(tile.item); // moving a <video> keeps its stream playing
    }
  }

  /**
   * @param {string} participantId
   * @returns {Tile}
   */
  tile(participantId) {
    let tile = this.tiles.get(participantId);
    if (tile) return tile;
    const video = /** @type {HTMLVideoElement} */ (el("video", { autoplay: true, playsinline: true, "aria-hidden": "true" }));
    const name = el("span", { class: "name" });
    const badges = el("span", { class: "badges" });
    const item = el("li", { class: "tile", dataset: { participant: participantId } }, video, name, badges);
    const stream = new MediaStream();
    video.srcObject = stream;
    tile = { item, video, name, badges, stream, self: false };
    this.tiles.set(participantId, tile);
    this.list.append(item);
    this.intersections?.observe(item);
    this.resizes?.observe(video);
    this.subscriptionsChanged();
    if (participantId === this.speaker) item.classList.add("speaking");
    if (this.recent.includes(participantId)) this.arrange();
    return tile;
  }

  // Our own camera: muted playback so we never hear ourselves.
  /**
   * @param {string} participantId
   * @param {MediaStream | null} stream
   * @param {string | null} displayName
   */
  setLocal(participantId, stream, displayName) {
    const tile = this.tile(participantId);
    tile.self = true;
    tile.video.muted = true;
    tile.video.srcObject = stream || new MediaStream();
    tile.item.classList.add("self");
    this.label(tile, displayName ? `${displayName} (you)` : "You");
  }

  /**
   * @param {string} participantId
   * @param {MediaStreamTrack} track
   */
  attach(participantId, track) {
    // The relay recycles receive slots: a track may move from a departed publisher to a new one.
    for (const [id, other] of this.tiles) {
      if (id !== participantId && other.stream.getTracks().includes(track)) other.stream.removeTrack(track);
    }
    const tile = this.tile(participantId);
    for (const old of tile.stream.getTracks()) {
      if (old.kind === track.kind && old !== track) tile.stream.removeTrack(old);
    }
    if (!tile.stream.getTracks().includes(track)) tile.stream.addTrack(track);
    // A fresh srcObject assignment makes the element pick up tracks added after it started playing.
    tile.video.srcObject = tile.stream;
    tile.video.play().catch(() => undefined);
  }

  /**
   * A screen share's track (a remote sharer's, or our own capture).
   * @param {string} sharer
   * @param {MediaStreamTrack} track
   */
  attachShare(sharer, track) {
    this.shareTracks.set(sharer, track);
    if (sharer === this.sharer) this.showStage();
  }

  /** Who shares now (null: nobody): their share plays on the stage, their tile says so. @param {string | null} sharer */
  setSharer(sharer) {
    this.sharer = sharer;
    for (const id of [...this.shareTracks.keys()]) if (id !== sharer) this.shareTracks.delete(id);
    for (const [id, tile] of this.tiles) {
      if (id === sharer) tile.item.dataset.sharing = "true";
      else delete tile.item.dataset.sharing;
    }
    this.showStage();
  }

  showStage() {
    const track = this.sharer ? this.shareTracks.get(this.sharer) : undefined;
    const on = Boolean(this.sharer && track);
    if (on && track) {
      this.stage.dataset.sharer = /** @type {string} */ (this.sharer);
      const name = this.tiles.get(/** @type {string} */ (this.sharer))?.name.textContent ?? "";
      this.stageCaption.textContent = name ? `${name}: shared screen` : "Shared screen";
      if (!(this.stageVideo.srcObject instanceof MediaStream) || this.stageVideo.srcObject.getTracks()[0] !== track) {
        this.stageVideo.srcObject = new MediaStream([track]);
        this.stageVideo.play().catch(() => undefined);
      }
    } else {
      delete this.stage.dataset.sharer;
      this.stageVideo.srcObject = null;
    }
    this.stage.hidden = !on;
    this.list.classList.toggle("beside-share", on);
    this.wrap.classList.toggle("sharing", on);
  }

  /** @param {MediaStreamTrack} track */
  detach(track) {
    for (const tile of this.tiles.values()) {
      if (tile.stream.getTracks().includes(track)) tile.stream.removeTrack(track);
    }
  }

  /**
   * @param {RosterEntry} entry
   * @param {{reconnecting?: boolean}} [state]
   */
  update(entry, { reconnecting = false } = {}) {
    const tile = this.tile(entry.participant_id);
    if (!tile.self) this.label(tile, entry.role === Role.HOST ? `${entry.display_name} (clinician)` : entry.display_name);
    /** @type {[string, string][]} */
    const badges = [];
    if (entry.muted_by_host) badges.push(["Muted by clinician", "warn"]);
    else if (entry.audio === false) badges.push(["Mic off", ""]);
    if (entry.video === false) badges.push(["Camera off", ""]);
    if (entry.hand) badges.push(["✋ Hand raised", "warn"]);
    if (entry.audio_only) badges.push(["Audio only", ""]);
    if (reconnecting) badges.push(["Reconnecting…", "warn"]);
    // In a private breakout the reader is not part of: their media to this group has stopped, so the tile
    // says so instead of showing a frozen last frame.
    const steppedOut = Boolean(entry.stepped_out) && !tile.self;
    if (steppedOut) badges.push(["Stepped out", "info"]);
    if (entry.participant_id === this.sharer) badges.push(["Sharing screen", "info"]);
    tile.badges.replaceChildren(...badges.map(([text, cls]) => el("span", { class: `badge ${cls}`.trim() }, text)));
    tile.item.classList.toggle("reconnecting", reconnecting);
    tile.item.classList.toggle("stepped-out", steppedOut);
    tile.item.dataset.state = reconnecting ? "reconnecting" : steppedOut ? "stepped_out" : "live";
    if (entry.participant_id === this.sharer) tile.item.dataset.sharing = "true";
    else delete tile.item.dataset.sharing;
  }

  /**
   * @param {Tile} tile
   * @param {string} text
   */
  label(tile, text) {
    tile.name.textContent = text;
    tile.item.setAttribute("aria-label", text);
  }

  /** @param {string} participantId */
  remove(participantId) {
    const tile = this.tiles.get(participantId);
    if (!tile) return;
    tile.video.srcObject = null;
    this.intersections?.unobserve(tile.item);
    this.resizes?.unobserve(tile.video);
    tile.item.remove();
    this.tiles.delete(participantId);
    this.visible.delete(participantId);
    this.subscriptionsChanged();
  }

  clearRemote() {
    for (const [id, tile] of [...this.tiles]) if (!tile.self) this.remove(id);
  }
}
