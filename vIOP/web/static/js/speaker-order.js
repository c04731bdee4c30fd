// @ts-check
// Active speaker in the video grid: who is highlighted, and in which order the tiles stand when space or
// bandwidth is short (the last few speakers' video first). Pure: no DOM, so Node's test runner imports it.
// The server decides who speaks (`active_speaker`, docs/PROTOCOL.md); this module only arranges.

/** How many recent speakers go first in a compact grid (the server names up to 8, newest first). */
export const SPEAKERS_FIRST = 4;

/** Narrower than this (CSS pixels), the grid is one column on a phone: speakers first. */
export const SMALL_SCREEN_PX = 768;

/** navigator.connection.effectiveType values that cannot carry every participant's video. */
const SLOW_TYPES = new Set(["slow-2g", "2g", "3g"]);

/**
 * The speaker state an `active_speaker` message carries, checked (unknown fields ignored; ids kept only
 * when they are strings; duplicates dropped).
 * @param {Record<string, unknown>} message
 * @returns {{speaker: string | null, recent: string[]}}
 */
export function speakerState(message) {
  const speaker = typeof message.speaker === "string" ? message.speaker : null;
  const recent = Array.isArray(message.recent) ? message.recent.filter((id) => typeof id === "string") : [];
  return { speaker, recent: [...new Set(recent)] };
}

/**
 * Whether the grid should put the last speakers first: a small screen, a slow link, or the person asked
 * to save data.
 * @param {{width: number, effectiveType?: string | null, saveData?: boolean, audioOnly?: boolean}} where
 */
export function isConstrained({ width, effectiveType = null, saveData = false, audioOnly = false }) {
  return width < SMALL_SCREEN_PX || saveData || audioOnly || (effectiveType !== null && SLOW_TYPES.has(effectiveType));
}

/**
 * The tiles' order: unconstrained, as they are (a grid that reshuffles on every speaker distracts); when
 * constrained, the last `first` remote speakers present (newest first), then everyone else in their
 * current order. Our own tile never jumps ahead: nobody needs to watch themselves talk.
 * @param {string[]} current tile ids in their current order
 * @param {{recent: string[], self?: string | null, constrained: boolean, first?: number}} options
 * @returns {string[]}
 */
export function tileOrder(current, { recent, self = null, constrained, first = SPEAKERS_FIRST }) {
  if (!constrained) return [...current];
  const present = new Set(current);
  const lead = recent.filter((id) => id !== self && present.has(id)).slice(0, first);
  const leading = new Set(lead);
  return [...lead, ...current.filter((id) => !leading.has(id))];
}
