// @ts-check
// The client's objects talk through EventTarget + CustomEvent; a listener receives a plain Event type.

/**
 * A form's submit event: its currentTarget is the form, whose named controls are read by name.
 * @typedef {Event & {currentTarget: Omit<HTMLFormElement, "title"> & Record<string, any>}} FormSubmitEvent
 */

/**
 * A click on a button whose listener reads the button back.
 * @typedef {Event & {currentTarget: HTMLElement}} ClickEvent
 */

/**
 * The `detail` a CustomEvent carries (listeners are typed with Event by the DOM library).
 * @param {Event} event
 * @returns {any}
 */
export function detailOf(event) {
  return /** @type {CustomEvent} */ (event).detail;
}
