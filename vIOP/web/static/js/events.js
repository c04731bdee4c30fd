// @ts-check
// The client's objects talk through EventTarget + CustomEvent; a listener receives a plain Event type.

/**
 * The `detail` a CustomEvent carries (listeners are typed with Event by the DOM library).
 * @param {Event} event
 * @returns {any}
 */
export function detailOf(event) {
  return /** @type {CustomEvent} */ (event).detail;
}
