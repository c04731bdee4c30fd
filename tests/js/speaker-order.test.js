// Active speaker in the grid (vIOP/web/static/js/speaker-order.js): message checks, when to reorder, the order.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SMALL_SCREEN_PX, SPEAKERS_FIRST, isConstrained, speakerState, tileOrder } from "../../vIOP/web/static/js/speaker-order.js";

test("an active_speaker message is reduced to checked participant ids", () => {
  assert.deepEqual(speakerState({ type: "active_speaker", speaker: "pt_b", recent: ["pt_b", "pt_a"] }), {
    speaker: "pt_b",
    recent: ["pt_b", "pt_a"],
  });
  assert.deepEqual(speakerState({ speaker: null, recent: [] }), { speaker: null, recent: [] });
  assert.deepEqual(speakerState({ speaker: 7, recent: ["pt_a", 3, "pt_a", null] }), { speaker: null, recent: ["pt_a"] });
  assert.deepEqual(speakerState({}), { speaker: null, recent: [] });
});

test("a small screen, a slow link, save-data or audio only constrain the grid", () => {
  assert.equal(isConstrained({ width: 1280 }), false);
  assert.equal(isConstrained({ width: 1280, effectiveType: "4g" }), false);
  assert.equal(isConstrained({ width: SMALL_SCREEN_PX - 1 }), true);
  assert.equal(isConstrained({ width: SMALL_SCREEN_PX }), false);
  for (const slow of ["slow-2g", "2g", "3g"]) assert.equal(isConstrained({ width: 1280, effectiveType: slow }), true);
  assert.equal(isConstrained({ width: 1280, saveData: true }), true);
  assert.equal(isConstrained({ width: 1280, audioOnly: true }), true);
});

test("unconstrained, the order never moves", () => {
  const current = ["pt_me", "pt_a", "pt_b", "pt_c"];
  assert.deepEqual(tileOrder(current, { recent: ["pt_c", "pt_b"], self: "pt_me", constrained: false }), current);
});

test("constrained, the last speakers present come first, newest first, then the rest as they were", () => {
  const current = ["pt_me", "pt_a", "pt_b", "pt_c", "pt_d"];
  const order = tileOrder(current, { recent: ["pt_c", "pt_gone", "pt_me", "pt_a"], self: "pt_me", constrained: true });
  assert.deepEqual(order, ["pt_c", "pt_a", "pt_me", "pt_b", "pt_d"]); // nobody who left, never ourselves first
  assert.deepEqual(tileOrder(order, { recent: ["pt_c", "pt_a"], self: "pt_me", constrained: true }), order); // stable
});

test("only the last N speakers are promoted", () => {
  const current = ["pt_1", "pt_2", "pt_3", "pt_4", "pt_5", "pt_6"];
  const recent = ["pt_6", "pt_5", "pt_4", "pt_3", "pt_2"];
  const order = tileOrder(current, { recent, constrained: true });
  assert.deepEqual(order.slice(0, SPEAKERS_FIRST), recent.slice(0, SPEAKERS_FIRST));
  assert.deepEqual(order.slice(SPEAKERS_FIRST), ["pt_1", "pt_2"]);
  assert.deepEqual(tileOrder(current, { recent, constrained: true, first: 1 }), ["pt_6", "pt_1", "pt_2", "pt_3", "pt_4", "pt_5"]);
});
