// @ts-check
// Chat (issue 15), shared by the client's join page and the clinician's console: the room's chat to
// everyone, private chat between a client and the clinicians, and lobby chat with a waiting client.
// Every text from the wire goes in through textContent (el(..., text)), never innerHTML: it is other
// people's words. Lines are kept only on this page (nothing is stored on the server).

import { ClientType, MAX_CHAT_CHARS, Role } from "./protocol.js";
import { detailOf } from "./events.js";
import { el } from "./ui.js";

/** @typedef {import("./room-session.js").RoomSession} RoomSession */
/** @typedef {import("./video-grid.js").RosterEntry} RosterEntry */

/**
 * A chat line as the server sends it (messages.ChatMessage).
 * @typedef {object} ChatLine
 * @property {string} sender
 * @property {string} sender_name
 * @property {string} sender_role
 * @property {string} text
 * @property {boolean} private
 * @property {string | null} thread
 * @property {number} sent_at
 */

const EVERYONE = "";
const HOSTS = "hosts";
// Refusals of a chat line (a typed `error`), said next to the box that sent it.
const CHAT_ERRORS = new Set(["chat_off", "rate_limited", "invalid_chat", "invalid_message", "not_in_room", "participant_not_found"]);

export class ChatPanel {
  /**
   * @param {RoomSession} session
   * @param {HTMLElement} root an empty element the panel fills
   */
  constructor(session, root) {
    this.session = session;
    this.root = root;
    this.clientsMayChat = true;
    this.inRoom = false;
    /** @type {Map<string, string>} client participant id -> name (hosts: the waiting and seated clients) */
    this.waiting = new Map();
    /** @type {Map<string, string>} */
    this.seated = new Map();
    /** @type {Map<string, string>} participant id -> name, for naming a private thread's client */
    this.names = new Map();

    this.log = /** @type {HTMLOListElement} */ (el("ol", { id: "chat-log", class: "chat-log plain", "aria-label": "Chat messages", "aria-live": "polite", tabindex: "0" }));
    this.policy = /** @type {HTMLInputElement} */ (el("input", { id: "chat-policy", type: "checkbox", checked: true }));
    this.policyRow = el("div", { class: "field chat-policy", hidden: true }, el("label", { for: "chat-policy" }, this.policy, " Clients may chat to everyone"));
    this.offNote = el("p", { id: "chat-off-note", class: "hint", hidden: true }, "The clinician has turned chat to everyone off. You can still write to the clinicians.");
    this.to = /** @type {HTMLSelectElement} */ (el("select", { id: "chat-to" }));
    this.text = /** @type {HTMLTextAreaElement} */ (el("textarea", { id: "chat-text", maxlength: String(MAX_CHAT_CHARS), rows: "2", autocomplete: "off" }));
    this.error = el("p", { id: "chat-error", class: "banner error", role: "alert", hidden: true });
    this.form = /** @type {HTMLFormElement} */ (
      el(
        "form",
        { id: "chat-form", class: "stack", novalidate: true },
        el("div", { class: "field" }, el("label", { for: "chat-to" }, "To"), this.to),
        el("div", { class: "field" }, el("label", { for: "chat-text" }, "Message"), this.text),
        el("button", { id: "chat-send", type: "submit" }, "Send"),
      )
    );
    root.append(el("h2", { id: "chat-title" }, "Chat"), this.policyRow, this.offNote, this.log, this.error, this.form);
    root.setAttribute("aria-labelledby", "chat-title");

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendLine();
    });
    this.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        this.sendLine();
      }
    });
    /** the person picked an addressee (kept from then on while it exists) */
    this.userChose = false;
    this.to.addEventListener("change", () => {
      this.userChose = true;
    });
    this.policy.addEventListener("change", () => {
      this.session.send({ type: ClientType.SET_CHAT_POLICY, clients_may_chat: this.policy.checked });
    });
    session.addEventListener("chat", (event) => this.show(detailOf(event)));
    session.addEventListener("chat-policy", (event) => this.setPolicy(detailOf(event)));
    session.addEventListener("phase", (event) => {
      this.inRoom = detailOf(event) === "in_room";
      this.refreshTargets();
    });
    session.addEventListener("lobby", (event) => {
      this.waiting = new Map(detailOf(event).map((/** @type {{participant_id: string, display_name: string}} */ e) => [e.participant_id, e.display_name]));
      for (const [id, name] of this.waiting) this.names.set(id, name);
      this.refreshTargets();
    });
    session.addEventListener("roster", (event) => {
      /** @type {RosterEntry[]} */
      const people = detailOf(event).participants;
      this.seated = new Map(people.filter((p) => p.role === Role.CLIENT).map((p) => [p.participant_id, p.display_name]));
      for (const [id, name] of this.seated) this.names.set(id, name);
      this.refreshTargets();
    });
    session.addEventListener("error", (event) => {
      const { code, message } = detailOf(event);
      if (!CHAT_ERRORS.has(code)) return;
      this.error.textContent = message;
      this.error.hidden = false;
    });
    this.refreshTargets();
  }

  get isHost() {
    return this.session.role === Role.HOST;
  }

  /** Who this page may write to now: a client everyone (once in the room) or the clinicians; a clinician
   * everyone or one client (seated or waiting). While the clinicians have chat to everyone off, a client's
   * "Everyone" stays listed but disabled: a choice already made is never silently changed to someone else
   * (the server refuses such a line, and the panel says so). */
  refreshTargets() {
    const chosen = this.to.value;
    /** @type {{value: string, label: string, disabled?: boolean}[]} */
    const options = [];
    if (this.isHost) {
      options.push({ value: EVERYONE, label: "Everyone" });
      for (const [id, name] of this.seated) options.push({ value: id, label: `${name} (private)` });
      for (const [id, name] of this.waiting) options.push({ value: id, label: `${name} (waiting room, private)` });
    } else {
      if (this.inRoom) {
        const off = !this.clientsMayChat;
        options.push({ value: EVERYONE, label: off ? "Everyone (turned off by the clinician)" : "Everyone", disabled: off });
      }
      options.push({ value: HOSTS, label: "The clinicians (private)" });
    }
    this.to.replaceChildren(...options.map((o) => el("option", { value: o.value, disabled: o.disabled }, o.label)));
    const kept = this.userChose && options.find((o) => o.value === chosen);
    this.to.value = kept ? chosen : (options.find((o) => !o.disabled)?.value ?? "");
    this.policyRow.hidden = !this.isHost;
    this.offNote.hidden = this.isHost || this.clientsMayChat || !this.inRoom;
  }

  /** @param {boolean} clientsMayChat */
  setPolicy(clientsMayChat) {
    this.clientsMayChat = clientsMayChat;
    this.policy.checked = clientsMayChat;
    this.refreshTargets();
  }

  sendLine() {
    const text = this.text.value.trim();
    if (!text) return;
    const to = this.to.value;
    /** @type {{type: string} & Record<string, unknown>} */
    const message = { type: ClientType.CHAT, text };
    if (to === HOSTS) message.private = true;
    else if (to !== EVERYONE) Object.assign(message, { private: true, to });
    this.error.hidden = true;
    if (this.session.send(message) !== false) this.text.value = "";
  }

  /** @param {ChatLine} line */
  show(line) {
    const mine = line.sender === this.session.participantId;
    const who = mine ? "You" : line.sender_name;
    let scope = "to everyone";
    if (line.private) {
      if (!this.isHost) scope = "private, with the clinicians";
      else if (line.thread) scope = `private, with ${this.names.get(line.thread) ?? "a client"}${this.waiting.has(line.thread) ? " (waiting room)" : ""}`;
    }
    const time = new Date(line.sent_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    this.log.append(
      el(
        "li",
        { class: line.private ? "chat-line private" : "chat-line", dataset: { sender: line.sender, thread: line.thread ?? "", private: String(line.private) } },
        el("span", { class: "chat-meta" }, el("strong", { class: "chat-sender", text: who }), ` · ${scope} · ${time}`),
        el("span", { class: "chat-text", text: line.text }),
      ),
    );
    this.log.lastElementChild?.scrollIntoView({ block: "nearest" });
  }
}
