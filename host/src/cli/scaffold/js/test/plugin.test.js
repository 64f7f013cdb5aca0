// {{name}} under `node --test`, against the SDK's mock host (no Wasm needed).
import { test } from "node:test";
import assert from "node:assert/strict";
import { MockHost } from "@cairn/sdk/mock";
import plugin from "../src/plugin.js";

test("adds, resets, and rejects bad input without changing state", () => {
  const host = new MockHost();
  assert.deepEqual(host.apply(plugin, '{"add":{"n":5}}'), { total: 5 });
  assert.deepEqual(host.apply(plugin, '{"add":{"n":2}}'), { total: 7 });
  assert.deepEqual(host.query(plugin, '{"total":{}}'), { total: 7 });
  assert.throws(() => host.apply(plugin, '{"add":{"n":-1}}'), (e) => e.code === "bad-input");
  assert.throws(() => host.apply(plugin, '{"add":{"n":18446744073709551615}}'), (e) => e.code === "overflow");
  assert.deepEqual(host.query(plugin, '{"total":{}}'), { total: 7 });
  assert.deepEqual(host.apply(plugin, '{"reset":{}}'), { total: 0 });
  assert.equal(host.takeEvents().length, 3);
});
