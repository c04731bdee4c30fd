// @ts-check
// Small DOM helpers shared by every page. Text always goes in through textContent, never innerHTML:
// names and messages come from other people.

/**
 * The one element `selector` names (throws when the page lacks it). Typed loosely: pages know which kind of
 * element each id is (an input's `value`, a form's named controls).
 * @param {string} selector
 * @param {ParentNode} [root]
 * @returns {any}
 */
export function $(selector, root = document) {
  const found = root.querySelector(selector);
  if (!found) throw new Error(`missing element ${selector}`);
  return found;
}

/**
 * A new element with attributes (`class`, `text`, `dataset`, `on<event>` handlers, or plain attributes;
 * null, undefined and false are left out) and children (nodes or text).
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...any} children
 * @returns {HTMLElement}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// The page's polite live region (#status): every state change is said here so screen readers hear it.
/**
 * @param {string} text
 * @param {{assertive?: boolean}} [options] assertive: the #alert region instead of #status
 */
export function announce(text, { assertive = false } = {}) {
  const region = document.getElementById(assertive ? "alert" : "status");
  if (!region) return;
  region.textContent = "";
  // A fresh text node on the next frame makes screen readers repeat an identical message.
  requestAnimationFrame(() => {
    region.textContent = text;
  });
}

// Show one section[data-screen] (body carries the current name in data-screen too), hide the others, and move focus to its heading for keyboard users.
/** @param {string} name */
export function showScreen(name) {
  /** @type {HTMLElement | null} */
  let shown = null;
  for (const section of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("section[data-screen]"))) {
    const match = section.dataset.screen === name;
    section.hidden = !match;
    if (match) shown = section;
  }
  if (!shown) throw new Error(`no screen ${name}`);
  document.body.dataset.screen = name;
  const heading = /** @type {HTMLElement | null} */ (shown.querySelector("h1, h2"));
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }
  return shown;
}

/** @param {number} totalSeconds */
export function formatDuration(totalSeconds) {
  const seconds = Math.max(0, Math.floor(totalSeconds));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m > 0) return `${m} min ${String(s).padStart(2, "0")} s`;
  return `${s} s`;
}

/**
 * @param {number | string | null | undefined} value epoch seconds or an ISO 8601 string
 * @param {string} [timeZone] an IANA zone to show it in (the program's); the browser's own by default
 */
export function formatTime(value, timeZone) {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  try {
    return date.toLocaleString([], { dateStyle: "medium", timeStyle: "short", timeZone });
  } catch {
    return date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" }); // an unknown zone
  }
}

/**
 * @param {HTMLButtonElement} button
 * @param {boolean} busy
 */
export function setBusy(button, busy) {
  button.disabled = busy;
  if (busy) button.setAttribute("aria-busy", "true");
  else button.removeAttribute("aria-busy");
}

/**
 * @param {Element} button
 * @param {boolean} pressed
 * @param {[string, string]} [labels] the text when not pressed, and when pressed
 */
export function setPressed(button, pressed, labels) {
  button.setAttribute("aria-pressed", pressed ? "true" : "false");
  if (labels) button.textContent = pressed ? labels[1] : labels[0];
}

/**
 * @param {string} text
 * @param {HTMLInputElement | null} [fallbackInput] selected for the user when the clipboard refuses
 */
export async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard permission (or an insecure context): select the text so the user can copy it.
    if (fallbackInput) {
      fallbackInput.focus();
      fallbackInput.select();
    }
    return false;
  }
}
