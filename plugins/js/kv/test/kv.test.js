// The JS kv plugin against the mock host: the wire format and error codes of plugins/kv (Rust).
import { test } from "node:test";
import assert from "node:assert/strict";
import { MockHost } from "@cairn/sdk/mock";
import kv from "../src/plugin.js";

const raw = (m, key) => {
  const v = m.get(`kv\0${key}`);
  return v && Buffer.from(v).toString("utf8");
};

test("put, get, delete return what the key held", () => {
  const m = new MockHost();
  assert.deepEqual(m.apply(kv, '{"put":{"key":"a","value":1}}'), { previous: null });
  assert.deepEqual(m.apply(kv, '{"put":{"key":"a","value":{"y":2,"x":[1.0]}}}'), { previous: 1 });
  assert.equal(raw(m, "a"), '{"x":[1.0],"y":2}'); // stored exactly as serde_json writes it
  assert.deepEqual(m.query(kv, '{"get":{"key":"a"}}'), m.apply(kv, '{"get":{"key":"a"}}'));
  assert.deepEqual(m.apply(kv, '{"delete":{"key":"a"}}').previous.y, 2);
  assert.deepEqual(m.query(kv, '{"get":{"key":"a"}}'), { value: null });
  assert.deepEqual(m.apply(kv, '{"delete":{"key":"a"}}'), { previous: null });
});

test("cas compares JSON values and reports mismatches like the Rust plugin", () => {
  const m = new MockHost();
  assert.deepEqual(m.apply(kv, '{"cas":{"key":"n","new":1}}'), { previous: null });
  assert.throws(() => m.apply(kv, '{"cas":{"key":"n","expected":1.0,"new":2}}'),
    (e) => e.code === "cas-mismatch" && e.message === "expected 1.0, current 1");
  assert.throws(() => m.apply(kv, '{"cas":{"key":"n","new":2}}'),
    (e) => e.code === "cas-mismatch" && e.message === "expected null, current 1");
  assert.deepEqual(m.apply(kv, '{"cas":{"key":"n","expected":1,"new":2}}'), { previous: 1 });
  assert.deepEqual(m.apply(kv, '{"cas":{"key":"n","expected":2}}'), { previous: 2 });
  assert.equal(raw(m, "n"), null);
});

test("list and range in byte order with limits", () => {
  const m = new MockHost({ scanCap: 3 });
  for (const k of ["user/2", "user/1", "b", "a", "\u00e9", "user/10"]) m.apply(kv, `{"put":{"key":${JSON.stringify(k)},"value":1}}`);
  const keys = (out) => out.entries.map((e) => e.key);
  assert.deepEqual(keys(m.query(kv, '{"list":{"prefix":"user/"}}')), ["user/1", "user/10", "user/2"]);
  assert.deepEqual(keys(m.query(kv, '{"list":{}}')), ["a", "b", "user/1", "user/10", "user/2", "\u00e9"]);
  assert.deepEqual(keys(m.query(kv, '{"list":{"limit":2}}')), ["a", "b"]);
  assert.deepEqual(keys(m.query(kv, '{"range":{"start":"b","end":"user/2"}}')), ["b", "user/1", "user/10"]);
  assert.deepEqual(keys(m.query(kv, '{"range":{"start":"user/2","limit":null}}')), ["user/2", "\u00e9"]);
});

test("bad input is bad-input and changes nothing", () => {
  const m = new MockHost();
  for (const b of ['{"put":{"key":"a","value":null}}', '{"put":{"key":"a"}}', '{"put":{"key":1,"value":1}}', "{", '{"list":{}}']) {
    assert.throws(() => m.apply(kv, b), (e) => e.code === "bad-input", b);
  }
  for (const q of ['{"list":{"limit":-1}}', '{"list":{"limit":2.0}}', '{"list":{"prefix":null}}', '{"put":{"key":"a","value":1}}']) {
    assert.throws(() => m.query(kv, q), (e) => e.code === "bad-input", q);
  }
  assert.deepEqual(m.dump(), []);
  assert.equal(m.index, 5); // failed commands still used their log index
});
