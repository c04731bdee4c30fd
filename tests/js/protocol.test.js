// The generated protocol module: frozen, complete, and consistent with itself (its Python side is checked
// by tests/signaling/test_js_protocol.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import * as protocol from "../../vIOP/web/static/js/protocol.js";

test("enums are frozen", () => {
  for (const name of ["ClientType", "ServerType", "CloseCode", "Role", "MediaKind", "LeaveReason", "HOST_ONLY_TYPES"]) {
    assert.ok(Object.isFrozen(protocol[name]), name);
  }
  assert.throws(() => {
    "use strict";
    protocol.CloseCode.NORMAL = 1;
  }, TypeError);
});

test("close codes are the RFC 6455 values the client branches on", () => {
  assert.equal(protocol.CloseCode.NORMAL, 1000);
  assert.equal(protocol.CloseCode.POLICY_VIOLATION, 1008);
  assert.equal(protocol.CloseCode.UNSUPPORTED_DATA, 1003);
  assert.equal(protocol.CloseCode.MESSAGE_TOO_BIG, 1009);
});

test("every key names its own wire value and type names are unique", () => {
  for (const types of [protocol.ClientType, protocol.ServerType]) {
    const values = Object.values(types);
    assert.equal(new Set(values).size, values.length);
    for (const [key, value] of Object.entries(types)) assert.equal(key, value.toUpperCase());
  }
});

test("host-only types are client types", () => {
  const client = new Set(Object.values(protocol.ClientType));
  assert.ok(protocol.HOST_ONLY_TYPES.length > 0);
  for (const type of protocol.HOST_ONLY_TYPES) assert.ok(client.has(type), type);
  assert.ok(!protocol.HOST_ONLY_TYPES.includes(protocol.ClientType.JOIN));
});

test("limits are positive integers", () => {
  const limits = Object.entries(protocol).filter(([name]) => name.startsWith("MAX_"));
  assert.ok(limits.length >= 5);
  for (const [name, value] of limits) assert.ok(Number.isInteger(value) && value > 0, name);
  assert.ok(protocol.PROTOCOL_VERSION >= 1);
});
