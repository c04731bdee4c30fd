// The reconnect logic shared by the signaling client and the staff page
// (vIOP/web/static/js/reconnecting-socket.js). Node 20 has no WebSocket: a minimal stand-in for the
// browser's WebSocket (not for our code) records what the class does; timers are Node's mock timers.
import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";

import { CloseCode } from "../../vIOP/web/static/js/protocol.js";
import { CLOSE_SILENT, ReconnectingSocket, backoffDelay, parse } from "../../vIOP/web/static/js/reconnecting-socket.js";

class BrowserSocket extends EventTarget {
  static OPEN = 1;
  /** @type {BrowserSocket[]} */
  static made = [];
  constructor(url) {
    super();
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    BrowserSocket.made.push(this);
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close(code) {
    this.closedWith = code;
  }
  // what the server side does
  opened() {
    this.readyState = BrowserSocket.OPEN;
    this.dispatchEvent(new Event("open"));
  }
  receive(data) {
    this.dispatchEvent(Object.assign(new Event("message"), { data }));
  }
  dropped(code, reason = "") {
    this.readyState = 3;
    this.dispatchEvent(Object.assign(new Event("close"), { code, reason }));
  }
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

beforeEach(() => {
  BrowserSocket.made = [];
  globalThis.WebSocket = /** @type {any} */ (BrowserSocket);
  mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
});

afterEach(() => {
  mock.timers.reset();
  delete globalThis.WebSocket;
});

test("backoff doubles from the first step to the cap, with up to half of it as jitter", () => {
  const backoff = { firstMs: 250, maxMs: 5000 };
  assert.equal(backoffDelay(0, backoff, () => 0), 125);
  assert.equal(backoffDelay(0, backoff, () => 0.999999), 125 + 0.999999 * 125);
  assert.equal(backoffDelay(3, backoff, () => 0), 1000);
  assert.equal(backoffDelay(5, backoff, () => 0), 2500); // 250 * 32 = 8000, capped at 5000
  assert.equal(backoffDelay(50, backoff, () => 0.5), 3750);
  for (let attempt = 0; attempt < 12; attempt += 1) {
    const delay = backoffDelay(attempt, backoff);
    const ceiling = Math.min(5000, 250 * 2 ** attempt);
    assert.ok(delay >= ceiling / 2 && delay < ceiling, `${attempt}: ${delay}`);
  }
});

test("parse keeps JSON objects with a string type only", () => {
  assert.deepEqual(parse('{"type":"pong","id":3}'), { type: "pong", id: 3 });
  for (const frame of ["not json", "5", "null", '{"type":7}', "[]", '"welcome"']) assert.equal(parse(frame), null, frame);
  assert.equal(parse(new Uint8Array([123, 125])), null);
});

/** @param {Partial<import("../../vIOP/web/static/js/reconnecting-socket.js").SocketHooks>} hooks */
function socketWith(hooks = {}, backoff = { firstMs: 100, maxMs: 1000, maxAttempts: 3 }, watchSilence = false) {
  const seen = [];
  let ticket = 0;
  const socket = new ReconnectingSocket({
    backoff,
    watchSilence,
    hooks: {
      url: async () => `ws://test/${++ticket}`,
      open: () => seen.push("open"),
      message: (message) => seen.push(message.type),
      retryScheduled: (delay) => seen.push(`retry ${delay >= 0}`),
      gaveUp: () => seen.push("gave up"),
      ...hooks,
    },
  });
  return { socket, seen };
}

test("a dropped socket comes back on a new url after the backoff delay", async () => {
  const { socket, seen } = socketWith();
  await socket.connect();
  const first = BrowserSocket.made[0];
  assert.equal(first.url, "ws://test/1");
  first.opened();
  first.receive('{"type":"welcome"}');
  first.receive("garbage");
  assert.ok(socket.send({ type: "ping" }));
  assert.deepEqual(first.sent, [{ type: "ping" }]);
  first.dropped(CloseCode.GOING_AWAY);
  assert.equal(socket.ws, null);
  assert.equal(socket.send({ type: "ping" }), false);
  assert.equal(BrowserSocket.made.length, 1);
  mock.timers.tick(49); // the first delay is in [50, 100): not yet
  await flush();
  assert.equal(BrowserSocket.made.length, 1);
  mock.timers.tick(51);
  await flush();
  assert.equal(BrowserSocket.made.length, 2);
  assert.equal(BrowserSocket.made[1].url, "ws://test/2");
  assert.deepEqual(seen, ["open", "welcome", "retry true"]);
});

test("attempts run out, then the owner is told once", async () => {
  const { socket, seen } = socketWith();
  await socket.connect();
  for (let i = 0; i < 4; i += 1) {
    BrowserSocket.made.at(-1).dropped(CloseCode.INTERNAL_ERROR);
    mock.timers.tick(1000);
    await flush();
  }
  assert.equal(BrowserSocket.made.length, 4); // the first socket and three retries
  assert.deepEqual(seen, ["retry true", "retry true", "retry true", "gave up"]);
  assert.equal(socket.attempt, 3);
});

test("resetBackoff starts the count again", async () => {
  const { socket } = socketWith();
  await socket.connect();
  BrowserSocket.made[0].dropped(CloseCode.GOING_AWAY);
  assert.equal(socket.attempt, 1);
  socket.resetBackoff();
  assert.equal(socket.attempt, 0);
});

test("the owner's close hook decides: false means no retry", async () => {
  const codes = [];
  const { socket, seen } = socketWith({
    closed: (code) => {
      codes.push(code);
      return code !== CloseCode.POLICY_VIOLATION;
    },
  });
  await socket.connect();
  BrowserSocket.made[0].dropped(CloseCode.POLICY_VIOLATION);
  mock.timers.tick(5000);
  await flush();
  assert.deepEqual(codes, [CloseCode.POLICY_VIOLATION]);
  assert.equal(BrowserSocket.made.length, 1);
  assert.deepEqual(seen, []);
});

test("mayRetry false gives up even with attempts left; beforeRetry runs first", async () => {
  const order = [];
  const { socket } = socketWith({
    beforeRetry: () => order.push("before"),
    mayRetry: () => false,
    gaveUp: () => order.push("gave up"),
  });
  await socket.connect();
  BrowserSocket.made[0].dropped(CloseCode.GOING_AWAY);
  assert.deepEqual(order, ["before", "gave up"]);
});

test("a failed url: retried unless the owner says stop", async () => {
  let fail = true;
  const { socket, seen } = socketWith({
    url: async () => {
      if (fail) throw new Error("offline");
      return "ws://test/ok";
    },
    urlFailed: () => true,
  });
  await socket.connect();
  assert.equal(BrowserSocket.made.length, 0);
  assert.deepEqual(seen, ["retry true"]);
  fail = false;
  mock.timers.tick(100);
  await flush();
  assert.equal(BrowserSocket.made.length, 1);

  const stopped = socketWith({
    url: async () => {
      throw new Error("401");
    },
    urlFailed: () => false,
  });
  await stopped.socket.connect();
  assert.deepEqual(stopped.seen, []);
});

test("stop closes normally and nothing comes back", async () => {
  const { socket, seen } = socketWith();
  await socket.connect();
  const ws = BrowserSocket.made[0];
  ws.opened();
  socket.stop();
  assert.equal(ws.closedWith, CloseCode.NORMAL);
  ws.dropped(CloseCode.NORMAL); // the browser's close event after our close
  mock.timers.tick(5000);
  await flush();
  assert.equal(BrowserSocket.made.length, 1);
  await socket.connect();
  assert.equal(BrowserSocket.made.length, 1);
  assert.deepEqual(seen, ["open"]);
});

test("heartbeat ticks on its interval; a silent socket is closed after three heartbeats", async () => {
  const { socket } = socketWith({}, undefined, true);
  await socket.connect();
  const ws = BrowserSocket.made[0];
  ws.opened();
  let ticks = 0;
  socket.startHeartbeat(2, () => (ticks += 1));
  mock.timers.tick(4000);
  assert.equal(ticks, 2);
  ws.receive('{"type":"pong"}'); // any message re-arms the silence timer
  mock.timers.tick(5999);
  assert.equal(ws.closedWith, null);
  mock.timers.tick(1);
  assert.equal(ws.closedWith, CLOSE_SILENT);
});

test("without watchSilence a quiet socket stays open", async () => {
  const { socket } = socketWith();
  await socket.connect();
  const ws = BrowserSocket.made[0];
  ws.opened();
  mock.timers.tick(60000);
  assert.equal(ws.closedWith, null);
  assert.ok(socket.isOpen);
});
