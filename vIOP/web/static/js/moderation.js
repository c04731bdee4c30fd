// @ts-check
// The clinician's live panels: waiting room (admit, admit all, deny with a message, message one client),
// raised hands, and the roster (mute, remove, return to lobby). Every action is one signaling message.

import { ClientType, MAX_TEXT_CHARS, MediaKind, Role } from "./protocol.js";
import { detailOf } from "./events.js";
import { $, announce, el, formatDuration } from "./ui.js";

/** @typedef {import("./room-session.js").RoomSession} RoomSession */
/** @typedef {import("./video-grid.js").RosterEntry} RosterEntry */

/**
 * A waiting client as `lobby` lists them (messages.LobbyEntry; fields the console reads).
 * @typedef {object} LobbyEntry
 * @property {string} participant_id
 * @property {string} display_name
 * @property {number} waited_seconds
 * @property {boolean} [returning_after_removal]
 */

/** @typedef {{type: string} & Record<string, unknown>} OutgoingMessage */

const LONG_WAIT_SECONDS = 10 * 60;

// A small inline form under a list item: one text field and a submit button. Escape cancels.
/**
 * @param {HTMLElement} item
 * @param {{label: string, submitText: string, required: boolean}} prompt
 * @returns {Promise<string | null>} the trimmed text, or null when cancelled
 */
function inlinePrompt(item, { label, submitText, required }) {
  item.querySelector("form.inline-prompt")?.remove();
  const id = `prompt-${Math.random().toString(36).slice(2, 10)}`;
  const input = /** @type {HTMLInputElement} */ (el("input", { id, maxlength: String(MAX_TEXT_CHARS), autocomplete: "off", required }));
  const cancel = el("button", { type: "button", class: "secondary" }, "Cancel");
  const form = el(
    "form",
    { class: "inline-prompt inline", novalidate: true },
    el("div", { class: "field" }, el("label", { for: id }, label), input),
    el("button", { type: "submit" }, submitText),
    cancel,
  );
  item.append(form);
  input.focus();
  return new Promise((resolve) => {
    const done = (/** @type {string | null} */ value) => {
      form.remove();
      resolve(value);
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (required && !text) {
        input.focus();
        return;
      }
      done(text);
    });
    cancel.addEventListener("click", () => done(null));
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") done(null);
    });
  });
}

export class ModerationPanels {
  /** @param {RoomSession} session */
  constructor(session) {
    this.session = session;
    /** @type {LobbyEntry[]} */
    this.lobby = [];
    this.lobbyReceivedAt = Date.now();
    this.timer = setInterval(() => this.renderWaitTimes(), 1000);
    $("#admit-all").addEventListener("click", () => {
      session.send({ type: ClientType.ADMIT_ALL });
      announce("Admitting everyone who is waiting.");
    });
    session.addEventListener("lobby", (event) => this.renderLobby(detailOf(event)));
    session.addEventListener("roster", (event) => this.renderRoster(detailOf(event)));
    // Issue 15: clients' requests to talk, until acknowledged (participant id -> when it arrived, ms).
    /** @type {Map<string, number>} */
    this.talk = new Map();
    session.addEventListener("talk-request", (event) => this.onTalkRequest(detailOf(event)));
    session.addEventListener("breakout", (event) => this.onBreakout(detailOf(event)));
  }

  stop() {
    clearInterval(this.timer);
  }

  /** @param {LobbyEntry[]} entries */
  renderLobby(entries) {
    const before = new Set(this.lobby.map((e) => e.participant_id));
    this.lobby = entries;
    this.lobbyReceivedAt = Date.now();
    const list = $("#lobby-list");
    list.replaceChildren(...entries.map((entry) => this.lobbyItem(entry)));
    $("#lobby-count").textContent = `(${entries.length})`;
    $("#lobby-empty").hidden = entries.length > 0;
    $("#admit-all").disabled = entries.length === 0;
    const arrived = entries.filter((e) => !before.has(e.participant_id));
    if (arrived.length === 1) {
      const again = arrived[0].returning_after_removal ? ", after being removed earlier" : "";
      announce(`${arrived[0].display_name} is waiting${again}.`);
    }
    else if (arrived.length > 1) announce(`${arrived.length} people are waiting.`);
  }

  /** @param {LobbyEntry} entry */
  lobbyItem(entry) {
    const id = entry.participant_id;
    const name = entry.display_name;
    const wait = el("span", { class: "wait hint", dataset: { waited: String(entry.waited_seconds) } });
    // Removal is not a ban: a removed person may knock again, and the host decides knowing it.
    const returning = entry.returning_after_removal
      ? el("strong", { class: "returning", dataset: { returningAfterRemoval: "true" } }, "Removed earlier in this session")
      : null;
    /** @type {(HTMLElement | string)[]} */
    const who = [el("span", { class: "who" }, name), " ", wait];
    if (returning) who.push(" ", returning);
    const item = el(
      "li",
      { dataset: { participant: id } },
      el("span", {}, ...who),
      el(
        "span",
        { class: "row" },
        el("button", { type: "button", "aria-label": `Admit ${name}`, onclick: () => this.admit(entry) }, "Admit"),
        el("button", { type: "button", class: "secondary", "aria-label": `Message ${name}`, onclick: () => this.message(item, entry) }, "Message"),
        el("button", { type: "button", class: "danger", "aria-label": `Deny ${name}`, onclick: () => this.deny(item, entry) }, "Deny"),
      ),
    );
    this.updateWait(item, wait, entry.waited_seconds);
    return item;
  }

  renderWaitTimes() {
    const elapsed = (Date.now() - this.lobbyReceivedAt) / 1000;
    for (const item of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("#lobby-list > li"))) {
      const wait = /** @type {HTMLElement} */ (item.querySelector(".wait"));
      this.updateWait(item, wait, Number(wait.dataset.waited) + elapsed);
    }
  }

  /**
   * @param {HTMLElement} item
   * @param {HTMLElement} wait
   * @param {number} seconds
   */
  updateWait(item, wait, seconds) {
    wait.textContent = `waiting ${formatDuration(seconds)}`;
    item.classList.toggle("long-wait", seconds >= LONG_WAIT_SECONDS);
  }

  /** @param {LobbyEntry} entry */
  admit(entry) {
    this.session.send({ type: ClientType.ADMIT, participant_id: entry.participant_id });
    announce(`Admitting ${entry.display_name}.`);
  }

  /**
   * @param {HTMLElement} item
   * @param {LobbyEntry} entry
   */
  async message(item, entry) {
    const text = await inlinePrompt(item, { label: `Message to ${entry.display_name}`, submitText: "Send", required: true });
    if (!text) return;
    this.session.send({ type: ClientType.LOBBY_MESSAGE, participant_id: entry.participant_id, message: text });
    announce(`Message sent to ${entry.display_name}.`);
  }

  /**
   * @param {HTMLElement} item
   * @param {LobbyEntry} entry
   */
  async deny(item, entry) {
    const text = await inlinePrompt(item, { label: `Optional message to ${entry.display_name}`, submitText: "Deny", required: false });
    if (text === null) return;
    /** @type {OutgoingMessage} */
    const message = { type: ClientType.DENY, participant_id: entry.participant_id };
    if (text) message.message = text;
    this.session.send(message);
    announce(`${entry.display_name} was not admitted.`);
  }

  /** @param {{participants: RosterEntry[], locked: boolean, reconnecting: Set<string>}} roster */
  renderRoster({ participants, locked, reconnecting }) {
    const self = this.session.participantId;
    const others = participants.filter((p) => p.participant_id !== self);
    $("#roster-list").replaceChildren(...participants.map((p) => this.rosterItem(p, p.participant_id === self, reconnecting.has(p.participant_id))));
    $("#roster-count").textContent = `(${participants.length})`;
    const hands = others.filter((p) => p.hand);
    $("#hands-list").replaceChildren(
      ...hands.map((p) =>
        el(
          "li",
          { dataset: { participant: p.participant_id } },
          el("span", { class: "who" }, p.display_name),
          el("button", { type: "button", class: "secondary", "aria-label": `Acknowledge ${p.display_name}'s hand`, onclick: () => this.acknowledgeHand(p) }, "Acknowledge"),
        ),
      ),
    );
    $("#hands-empty").hidden = hands.length > 0;
    $("#locked-banner").hidden = !locked;
    const lock = $("#lock-toggle");
    lock.setAttribute("aria-pressed", locked ? "true" : "false");
    lock.textContent = locked ? "Unlock room" : "Lock room";
  }

  /**
   * @param {RosterEntry} entry
   * @param {boolean} isSelf
   * @param {boolean} reconnecting
   */
  rosterItem(entry, isSelf, reconnecting) {
    const name = entry.display_name;
    /** @type {string[]} */
    const state = [];
    if (isSelf) state.push("you");
    if (entry.role === Role.HOST) state.push("clinician");
    if (entry.muted_by_host) state.push("muted by you");
    else if (entry.audio === false) state.push("mic off");
    if (entry.video === false) state.push("camera off");
    if (entry.hand) state.push("hand raised");
    if (entry.audio_only) state.push("audio only");
    if (entry.breakout_with) state.push(`in a private conversation with ${this.nameOf(entry.breakout_with)}`);
    if (reconnecting) state.push("reconnecting");
    const item = el(
      "li",
      { dataset: { participant: entry.participant_id, state: reconnecting ? "reconnecting" : "live", breakout: entry.breakout_with ? "true" : "false" } },
      el("span", {}, el("span", { class: "who" }, name), state.length ? ` (${state.join(", ")})` : ""),
    );
    if (!isSelf && entry.role !== Role.HOST) {
      const muted = Boolean(entry.muted_by_host);
      item.append(
        el(
          "span",
          { class: "row" },
          el("button", { type: "button", class: "secondary", "aria-label": `${muted ? "Unmute" : "Mute"} ${name}`, onclick: () => this.mute(entry, !muted) }, muted ? "Unmute" : "Mute"),
          entry.breakout_with
            ? el("button", { type: "button", class: "secondary end-breakout", "aria-label": `Bring ${name} back to the group`, onclick: () => this.endBreakout(entry.participant_id) }, "Back to group")
            : el("button", { type: "button", class: "secondary start-breakout", "aria-label": `Talk privately with ${name}`, onclick: () => this.startBreakout(entry.participant_id) }, "Talk privately"),
          el("button", { type: "button", class: "secondary", "aria-label": `Return ${name} to the waiting room`, onclick: () => this.returnToLobby(entry) }, "To waiting room"),
          this.shareButton(entry),
          el("button", { type: "button", class: "danger", "aria-label": `Remove ${name}`, onclick: () => this.remove(item, entry) }, "Remove"),
        ),
      );
    }
    return item;
  }

  /**
   * @param {RosterEntry} entry
   * @param {boolean} muted
   */
  mute(entry, muted) {
    this.session.send({ type: ClientType.MUTE, participant_id: entry.participant_id, kind: MediaKind.AUDIO, muted });
    announce(`${muted ? "Muting" : "Unmuting"} ${entry.display_name}.`);
  }

  // Issue 15: let a client share their screen, or take it back (which stops their share for everyone).
  /** @param {RosterEntry} entry */
  shareButton(entry) {
    const name = entry.display_name;
    const allowed = this.session.share.allowed.includes(entry.participant_id);
    const label = allowed ? `Stop ${name} sharing their screen` : `Allow ${name} to share their screen`;
    const onclick = () => {
      this.session.setShareAllowed(entry.participant_id, !allowed);
      announce(allowed ? `${name} may no longer share their screen.` : `${name} may share their screen.`);
    };
    return el("button", { type: "button", class: "secondary", "aria-label": label, onclick }, allowed ? "Revoke share" : "Allow share");
  }

  /** @param {RosterEntry} entry */
  returnToLobby(entry) {
    this.session.send({ type: ClientType.RETURN_TO_LOBBY, participant_id: entry.participant_id });
    announce(`Moving ${entry.display_name} to the waiting room.`);
  }

  /**
   * @param {HTMLElement} item
   * @param {RosterEntry} entry
   */
  async remove(item, entry) {
    const text = await inlinePrompt(item, { label: `Optional message to ${entry.display_name}`, submitText: "Remove", required: false });
    if (text === null) return;
    /** @type {OutgoingMessage} */
    const message = { type: ClientType.REMOVE, participant_id: entry.participant_id };
    if (text) message.message = text;
    this.session.send(message);
    announce(`Removing ${entry.display_name}.`);
  }

  // --- "I need to talk" (issue 15) ---------------------------------------------------------------------

  /** @param {string} participantId */
  nameOf(participantId) {
    return this.session.roster.get(participantId)?.display_name ?? this.lobby.find((e) => e.participant_id === participantId)?.display_name ?? "A client";
  }

  /** @param {{participant_id: string, pending: boolean}} request */
  onTalkRequest({ participant_id: id, pending }) {
    if (pending && !this.talk.has(id)) {
      this.talk.set(id, Date.now());
      announce(`${this.nameOf(id)} asked to talk to a clinician.`, { assertive: true });
    } else if (!pending) this.talk.delete(id);
    this.renderTalk();
  }

  renderTalk() {
    $("#talk-list").replaceChildren(
      ...[...this.talk.keys()].map((id) => {
        const name = this.nameOf(id);
        return el(
          "li",
          { dataset: { participant: id, talkRequested: "true" } },
          el("strong", { class: "who" }, name),
          el("button", { type: "button", "aria-label": `Acknowledge ${name}'s request to talk`, onclick: () => this.acknowledgeTalk(id) }, "Acknowledge"),
          // One click: a private breakout with this client, which acknowledges the request (the server does).
          this.session.roster.has(id)
            ? el("button", { type: "button", class: "secondary talk-privately", "aria-label": `Talk privately with ${name}`, onclick: () => this.startBreakout(id) }, "Talk privately")
            : null,
        );
      }),
    );
    $("#talk-empty").hidden = this.talk.size > 0;
    $("#talk-count").textContent = `(${this.talk.size})`;
  }

  /** @param {string} participantId */
  acknowledgeTalk(participantId) {
    this.session.send({ type: ClientType.ACKNOWLEDGE_NEED, participant_id: participantId });
    announce(`Acknowledged ${this.nameOf(participantId)}'s request to talk.`);
  }

  // --- private breakout (issue 15) -------------------------------------------------------------------

  /** @param {string} participantId a seated client: into a private breakout with this clinician */
  startBreakout(participantId) {
    this.session.send({ type: ClientType.START_BREAKOUT, participant_id: participantId });
    announce(`Starting a private conversation with ${this.nameOf(participantId)}.`);
  }

  /** @param {string} participantId the breakout's client */
  endBreakout(participantId) {
    this.session.send({ type: ClientType.END_BREAKOUT, participant_id: participantId });
    announce(`Bringing ${this.nameOf(participantId)} back to the group.`);
  }

  /** @param {{participant_id: string, clinician_id: string, clinician_name: string, active: boolean}} breakout */
  onBreakout({ participant_id: id, clinician_name: clinician, active }) {
    announce(active ? `${this.nameOf(id)} is in a private conversation with ${clinician}.` : `${this.nameOf(id)} is back with the group.`);
  }

  /** @param {RosterEntry} entry */
  acknowledgeHand(entry) {
    // The protocol lets only the participant lower their own hand; the console hides it locally.
    const row = document.querySelector(`#hands-list > li[data-participant="${CSS.escape(entry.participant_id)}"]`);
    row?.remove();
    $("#hands-empty").hidden = document.querySelectorAll("#hands-list > li").length > 0;
    announce(`Acknowledged ${entry.display_name}.`);
  }
}
