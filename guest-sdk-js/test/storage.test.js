// Item/Map use the Rust SDK's key layout and order, and MockHost follows the real host's rules.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Item, Key, Map, PluginError, definePlugin, oneOf, optional, string, u64, usize, withDefault } from "../src/index.js";
import { MockHost } from "../src/mock.js";

const text = (b) => Buffer.from(b).toString("latin1");

test("Item and Map keys are laid out as in the Rust SDK", () => {
  const m = new MockHost();
  const ctx = m.ctx();
  new Item("owner").save(ctx, "alice");
  new Map("bal").save(ctx, "bob", 5);
  new Map("n", Key.u32).save(ctx, 258, 1);
  new Map("s", Key.i64).save(ctx, -1, 1);
  assert.deepEqual(m.dump().map(([k, v]) => [text(k), text(v)]), [
    ["bal\0bob", "5"],
    ["n\0\0\0\x01\x02", "1"],
    ["owner", '"alice"'],
    ["s\0\x7f\xff\xff\xff\xff\xff\xff\xff", "1"],
  ]);
});

test("Map iterates in key order across pages, with bounds and prefixes", () => {
  const m = new MockHost({ scanCap: 2 });
  const ctx = m.ctx();
  const nums = new Map("n", Key.i64);
  for (const k of [5, -3, 300, 0, -70000]) nums.save(ctx, k, k * 2);
  assert.deepEqual(nums.range(ctx).map(([k]) => Number(k)), [-70000, -3, 0, 5, 300]);
  assert.deepEqual(nums.range(ctx, -3, 5).map(([k]) => Number(k)), [-3, 0]);
  const words = new Map("w");
  for (const k of ["user/2", "user/1", "userx", "\u00e9", "a"]) words.save(ctx, k, 1);
  new Item("w").save(ctx, 0); // an item with the map's name does not collide
  assert.deepEqual(words.prefix(ctx, "user/").map(([k]) => k), ["user/1", "user/2"]);
  assert.deepEqual(words.range(ctx, null, null, 3).map(([k]) => k), ["a", "user/1", "user/2"]);
  assert.deepEqual(words.range(ctx).map(([k]) => k).at(-1), "\u00e9");
  m.insert("w\0bad", "{");
  assert.throws(() => words.range(ctx), (e) => e.code === "corrupt-state");
});

const Cmd = oneOf("Cmd", { set: { value: string }, fail: { value: string }, big: { n: u64 } });
const Q = oneOf("Q", { last: { n: withDefault(usize, 0), s: optional(string) } });
const LAST = new Item("last");
const echo = definePlugin({
  commands: Cmd,
  queries: Q,
  apply(ctx, c) {
    if (c.type === "big") return { n: c.n };
    LAST.save(ctx, c.value);
    ctx.emit("set", c.value);
    if (c.type === "fail") throw new PluginError("failed", "on purpose");
    return { index: ctx.index(), value: c.value, r: ctx.randomBytes(3).length, t: ctx.timestampMs() };
  },
  query(ctx, q) {
    if (q.n > 0) ctx.set("x", "y"); // refused: queries are read-only
    return LAST.load(ctx);
  },
});

test("apply is a transaction at the next index; errors roll back but use the index", () => {
  const m = new MockHost({ timestampMs: 42 });
  assert.deepEqual(m.apply(echo, '{"set":{"value":"a"}}'), { index: 1, value: "a", r: 3, t: 42 });
  assert.throws(() => m.apply(echo, '{"fail":{"value":"b"}}'), (e) => e instanceof PluginError && e.code === "failed");
  assert.equal(m.query(echo, '{"last":{}}'), "a");
  assert.equal(m.index, 2);
  assert.deepEqual(m.takeEvents().map((e) => [e.index, e.topic]), [[1, "set"]]);
  assert.deepEqual(m.apply(echo, '{"big":{"n":18446744073709551615}}'), { n: 18446744073709551615n });
});

test("queries cannot write", () => {
  const m = new MockHost();
  assert.throws(() => m.query(echo, '{"last":{"n":1}}'), (e) => e.code === "read-only");
  assert.equal(m.get("x"), null);
});

test("malformed input is bad-input, as serde would decide", () => {
  const m = new MockHost();
  const bad = ["{", "", '{"sett":{}}', '"set"', '{"set":{}}', '{"set":{"value":1}}', '{"set":{"value":"a","value":"b"}}',
    '{"set":{"value":"a"},"fail":{"value":"b"}}', '{"big":{"n":-1}}', '{"big":{"n":1.0}}', '{"big":{"n":18446744073709551616}}',
    '{"set":["a","b"]}', "[]", "null"];
  for (const b of bad) assert.throws(() => m.apply(echo, b), (e) => e.code === "bad-input", b);
  assert.throws(() => m.query(echo, '{"last":{"n":4294967296}}'), (e) => e.code === "bad-input");
  assert.throws(() => m.query(echo, '{"last":{"s":5}}'), (e) => e.code === "bad-input");
  // serde accepts a struct as an array too, and ignores unknown fields.
  assert.equal(m.apply(echo, '{"set":["v"]}').value, "v");
  assert.equal(m.apply(echo, '{"set":{"value":"w","other":[1]}}').value, "w");
  assert.equal(m.get("last") && text(m.get("last")), '"w"');
});

test("random bytes are deterministic per index and seed", () => {
  const a = new MockHost({ seed: 7 }).transaction((ctx) => Array.from(ctx.randomBytes(16)));
  const b = new MockHost({ seed: 7 }).transaction((ctx) => Array.from(ctx.randomBytes(16)));
  const c = new MockHost({ seed: 8 }).transaction((ctx) => Array.from(ctx.randomBytes(16)));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

test("key and value limits refuse writes with the Rust SDK's codes", () => {
  const m = new MockHost({ maxKeyBytes: 4, maxValueBytes: 4 });
  assert.throws(() => m.transaction((ctx) => ctx.set("toolong", "v")), (e) => e.code === "key-too-large");
  assert.throws(() => m.transaction((ctx) => ctx.set("k", "12345")), (e) => e.code === "value-too-large");
});
