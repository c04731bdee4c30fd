// @ts-check
// The "Share screen" button of the console and the join page (issue 15): starts a share (the browser asks
// which screen, window or tab), stops it, and follows the room's share state. On the join page it shows only
// while a clinician allows this client to share.

import { detailOf } from "./events.js";
import { announce, setPressed } from "./ui.js";

/** @typedef {import("./room-session.js").RoomSession} RoomSession */

const LABELS = /** @type {[string, string]} */ (["Share screen", "Stop sharing"]);

/**
 * @param {HTMLButtonElement} button
 * @param {RoomSession} session
 * @param {{onlyWhenAllowed?: boolean}} [options] hide the button unless the participant may share
 */
export function wireShareButton(button, session, { onlyWhenAllowed = false } = {}) {
  const render = () => {
    const mine = Boolean(session.shareTrack);
    setPressed(button, mine, LABELS);
    button.hidden = onlyWhenAllowed && !mine && !session.mayShare;
    button.disabled = !mine && session.share.sharer !== null; // one share at a time
  };
  session.addEventListener("share", (event) => {
    const { sharer, mine } = detailOf(event);
    render();
    if (mine) announce("You are sharing your screen.");
    else if (sharer === null) announce("Nobody is sharing their screen.");
  });
  button.addEventListener("click", () => {
    if (session.shareTrack) {
      session.stopShare();
      render();
      return;
    }
    session
      .startShare()
      .then(render)
      .catch((/** @type {any} */ error) => {
        render();
        // The person closed the browser's picker: not an error worth shouting.
        if (error?.name !== "NotAllowedError") announce(`Could not share your screen: ${error?.message ?? error}`, { assertive: true });
      });
  });
  render();
}
