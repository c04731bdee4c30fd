// The staff dashboard's view of the presence stream (vIOP/web/static/js/presence-model.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { normalizeOccurrence, normalizeRoom, normalizeSnapshot } from "../../vIOP/web/static/js/presence-model.js";

const room = {
  room_id: "rm_1",
  kind: "one_to_one",
  state: "open",
  waiting: [
    { participant_id: "pt_w1", display_name: "Ana", waited_seconds: 42, reconnecting: false },
    { participant_id: "pt_w2", display_name: "Ben", waited_seconds: "7", reconnecting: true },
  ],
  seated: [
    { participant_id: "pt_h", display_name: "Dr C", role: "host", state: "in_room", reconnecting_since: null },
    { participant_id: "pt_c", display_name: "Dee", role: "client", state: "admitted", reconnecting_since: 1700000000 },
  ],
};

test("a room is reduced to what the dashboard draws", () => {
  const view = normalizeRoom(room);
  assert.deepEqual(view, {
    id: "rm_1",
    kind: "one_to_one",
    state: "open",
    waiting: [
      { id: "pt_w1", name: "Ana", role: "client", reconnecting: false, waitedSeconds: 42, inRoomSeconds: 0, talkRequested: false, state: null },
      { id: "pt_w2", name: "Ben", role: "client", reconnecting: true, waitedSeconds: 7, inRoomSeconds: 0, talkRequested: false, state: null },
    ],
    seated: [
      { id: "pt_h", name: "Dr C", role: "host", reconnecting: false, waitedSeconds: 0, inRoomSeconds: 0, talkRequested: false, state: "in_room" },
      { id: "pt_c", name: "Dee", role: "client", reconnecting: true, waitedSeconds: 0, inRoomSeconds: 0, talkRequested: false, state: "admitted" },
    ],
    live: 1, // admitted seats have no media yet
    reconnecting: 2, // one waiting (boolean), one seated (reconnecting_since set)
  });
});

test("missing fields get defaults", () => {
  const view = normalizeRoom({ room_id: "rm_2", seated: [{}] });
  assert.equal(view?.kind, "group");
  assert.equal(view?.state, "open");
  assert.deepEqual(view?.waiting, []);
  assert.deepEqual(view?.seated, [{ id: "", name: "Participant", role: "client", reconnecting: false, waitedSeconds: 0, inRoomSeconds: 0, talkRequested: false, state: null }]);
  assert.equal(view?.live, 0);
});

test("an ended or absent room is dropped", () => {
  assert.equal(normalizeRoom({ ...room, state: "ended" }), null);
  assert.equal(normalizeRoom(null), null);
  assert.equal(normalizeRoom(undefined), null);
});

test("a snapshot keeps the stream's order and drops ended rooms", () => {
  const rooms = normalizeSnapshot({ rooms: [{ ...room, room_id: "rm_b" }, { room_id: "rm_x", state: "ended" }, { ...room, room_id: "rm_a" }] });
  assert.deepEqual(rooms.map((r) => r.id), ["rm_b", "rm_a"]);
  assert.deepEqual(normalizeSnapshot(null), []);
  assert.deepEqual(normalizeSnapshot({}), []);
});

// Issue 15: how long each seated person has been in the room (counted to the message's time), and who asked
// to talk.
test("a seat's time in the room and a pending request to talk", () => {
  const asked = {
    room_id: "rm_3",
    waiting: [{ participant_id: "pt_w", display_name: "Wes", waited_seconds: 5, reconnecting: false, talk_requested_since: 1700000100 }],
    seated: [{ participant_id: "pt_s", display_name: "Sue", role: "client", state: "in_room", since: 1700000000, reconnecting_since: null, talk_requested_since: null }],
  };
  const view = normalizeRoom(asked, 1700000600);
  assert.equal(view?.seated[0].inRoomSeconds, 600);
  assert.equal(view?.seated[0].talkRequested, false);
  assert.equal(view?.waiting[0].talkRequested, true);
  assert.equal(normalizeSnapshot({ at: 1700000060, rooms: [asked] })[0].seated[0].inRoomSeconds, 60);
});

test("a track occurrence's room carries who it expects and where each is (issue 16)", () => {
  const occurrence = normalizeOccurrence({
    ...room,
    occurrence: {
      track_id: "tr_1", occurrence_id: "tr_1.20260302T230000Z", starts_at: 1772492400, ends_at: 1772503200, no_show_at: 1772493000,
      expected: [
        { client_id: "cl_a", display_name: "Ana", status: "present", week_minutes: 240, week_minutes_missing: 300 },
        { client_id: "cl_c", display_name: "", status: "no_show" },
      ],
      today: "2026-03-04", week_start: "2026-03-02", week_end: "2026-03-08",
    },
  });
  assert.deepEqual(occurrence, {
    trackId: "tr_1",
    occurrenceId: "tr_1.20260302T230000Z",
    startsAt: 1772492400,
    noShowAt: 1772493000,
    expected: [
      { id: "cl_a", name: "Ana", status: "present", weekMinutes: 240, weekMissing: 300 },
      { id: "cl_c", name: "", status: "no_show", weekMinutes: null, weekMissing: null },
    ],
    today: "2026-03-04",
    weekStart: "2026-03-02",
    weekEnd: "2026-03-08",
  });
  assert.equal(normalizeOccurrence(room), null); // a room made by hand
  assert.equal(normalizeOccurrence({ ...room, occurrence: null }), null);
});
