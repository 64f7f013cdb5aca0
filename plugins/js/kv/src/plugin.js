// Kv in JavaScript: the twin of plugins/kv (Rust) — same wire format, error codes and stored bytes — a replicated JSON key-value store with compare-and-swap and ordered listing.
//
// | call  | input | output |
// |-------|-------|--------|
// | apply | `{"put":{"key":"a","value":1}}` | `{"previous":null}` (the value replaced) |
// | apply | `{"delete":{"key":"a"}}` | `{"previous":1}` |
// | apply | `{"cas":{"key":"a","expected":null,"new":1}}` | `{"previous":null}` |
// | apply | `{"get":{"key":"a"}}` (a read through the log) | `{"value":1}` |
// | query | `{"get":{"key":"a"}}` | `{"value":1}` or `{"value":null}` |
// | query | `{"list":{"prefix":"user/","limit":10}}` | `{"entries":[{"key":"user/1","value":1}]}` |
// | query | `{"range":{"start":"a","end":"m","limit":10}}` | `{"entries":[...]}` |
//
// `cas`: `expected` null/omitted means "must not exist"; `new` null/omitted
// deletes. Mismatch: `cas-mismatch`, message `expected <json>, current <json>`.
// `put` of null is `bad-input`. `limit` defaults to 100, at most 10000.

import {
  Map,
  PluginError,
  definePlugin,
  equal,
  json,
  oneOf,
  optional,
  string,
  stringify,
  usize,
  withDefault,
} from "@cairn/sdk";

const DATA = new Map("kv");
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 10_000;

const Command = oneOf("Command", {
  put: { key: string, value: json },
  delete: { key: string },
  cas: { key: string, expected: withDefault(json, null), new: withDefault(json, null) },
  get: { key: string },
});

const Query = oneOf("Query", {
  get: { key: string },
  list: { prefix: withDefault(string, ""), limit: optional(usize) },
  range: { start: optional(string), end: optional(string), limit: optional(usize) },
});

const limitOf = (l) => Math.min(l ?? DEFAULT_LIMIT, MAX_LIMIT);
const entries = (pairs) => ({ entries: pairs.map(([key, value]) => ({ key, value })) });

export default definePlugin({
  commands: Command,
  queries: Query,

  apply(ctx, cmd) {
    if (cmd.type === "get") return { value: DATA.load(ctx, cmd.key) };
    if (cmd.type === "put" && cmd.value === null) throw PluginError.badInput("put of null; use delete");
    const next = cmd.type === "put" ? cmd.value : cmd.type === "delete" ? null : cmd.new;
    // One read serves both the CAS check and the returned previous value.
    const previous = DATA.load(ctx, cmd.key);
    if (cmd.type === "cas" && !equal(previous, cmd.expected)) {
      const msg = `expected ${stringify(cmd.expected)}, current ${stringify(previous)}`;
      throw new PluginError("cas-mismatch", msg);
    }
    if (next !== null) DATA.save(ctx, cmd.key, next);
    else if (previous !== null) DATA.remove(ctx, cmd.key); // nothing to delete: skip the host call
    return { previous };
  },

  query(ctx, q) {
    if (q.type === "get") return { value: DATA.load(ctx, q.key) };
    if (q.type === "list") return entries(DATA.prefix(ctx, q.prefix, limitOf(q.limit)));
    return entries(DATA.range(ctx, q.start, q.end, limitOf(q.limit)));
  },
});
