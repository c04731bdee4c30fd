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

export function formatDuration(totalSeconds) {
  const seconds = Math.max(0, Math.floor(totalSeconds));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m > 0) return `${m} min ${String(s).padStart(2, "0")} s`;
  return `${s} s`;
}

export function formatTime(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export function setBusy(button, busy) {
  button.disabled = busy;
  if (busy) button.setAttribute("aria-busy", "true");
  else button.removeAttribute("aria-busy");
}

export function setPressed(button, pressed, labels) {
  button.setAttribute("aria-pressed", pressed ? "true" : "false");
  if (labels) button.textContent = pressed ? labels[1] : labels[0];
}

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
