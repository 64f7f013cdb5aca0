// `MockHost`: an in-memory host for `node --test` with the real host's rules (ordered KV, transactional applies at the next log index, read-only queries, deterministic context) — the twin of the Rust SDK's `MockHost`.

import { Ctx, toBytes } from "./ctx.js";
import { PluginError } from "./error.js";
import { parse } from "./json.js";
import { runApply, runQuery } from "./index.js";

// Keys are held as "binary strings" (one char per byte): JS string order
// on them is bytewise order, as on the host.
const toKey = (bytes) => String.fromCharCode(...bytes);
const fromKey = (s) => Uint8Array.from(s, (c) => c.charCodeAt(0));

const GOLDEN = 0x9e3779b97f4a7c15n;
const MASK = (1n << 64n) - 1n;

/**
 * A stand-in for a Cairn node. `apply` runs a command as a transaction at the
 * next log index (a thrown error, of any kind, undoes its writes and events,
 * and still uses up the index); `query` is read-only (writes fail with
 * `read-only`, events are dropped); time and randomness are deterministic.
 */
export class MockHost {
  /** `opts`: `index` (0), `timestampMs` (0), `seed` (0), `scanCap` (0: none), `maxKeyBytes`, `maxValueBytes` (0: no limit). */
  constructor(opts = {}) {
    this.kv = new globalThis.Map();
    this.events = [];
    this.timestampMs = opts.timestampMs ?? 0;
    this.seed = BigInt(opts.seed ?? 0) & MASK;
    this.scanCap = opts.scanCap ?? 0; // 0: no cap
    this.maxKeyBytes = opts.maxKeyBytes ?? 0; // 0: no limit
    this.maxValueBytes = opts.maxValueBytes ?? 0;
    this.undo = null;
    this.setIndex(opts.index ?? 0);
  }

  /** The log index of the last applied command. */
  get index() {
    return this._index;
  }

  setIndex(index) {
    this._index = index;
    // Like the host: the random stream depends only on the seed and the index.
    this.rng = (this.seed ^ ((BigInt(index) * GOLDEN) & MASK)) & MASK;
  }

  nextRandom() {
    // splitmix64, as the Rust MockHost.
    this.rng = (this.rng + GOLDEN) & MASK;
    let z = this.rng;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
    return z ^ (z >> 31n);
  }

  write(key, value) {
    if (this.maxKeyBytes && key.length > this.maxKeyBytes) return "key-too-large";
    if (value && this.maxValueBytes && value.length > this.maxValueBytes) return "value-too-large";
    const k = toKey(key);
    if (this.undo) this.undo.push([k, this.kv.get(k)]);
    if (value) this.kv.set(k, Uint8Array.from(value));
    else this.kv.delete(k);
    return null;
  }

  view(readOnly) {
    const m = this;
    return {
      get: (key) => m.kv.get(toKey(key)) ?? null,
      set: (key, value) => (readOnly ? "read-only" : m.write(key, value)),
      delete: (key) => (readOnly ? "read-only" : m.write(key, null)),
      scan(start, end, limit) {
        const cap = m.scanCap ? Math.min(limit, m.scanCap) : limit;
        const s = toKey(start);
        const e = end == null ? null : toKey(end);
        return [...m.kv.keys()]
          .filter((k) => k >= s && (e === null || k < e))
          .sort()
          .slice(0, cap)
          .map((k) => [fromKey(k), m.kv.get(k)]);
      },
      logIndex: () => m._index,
      timestampMs: () => m.timestampMs,
      randomBytes(len) {
        const out = [];
        while (out.length < len) {
          let r = m.nextRandom();
          for (let i = 0; i < 8; i++, r >>= 8n) out.push(Number(r & 0xffn));
        }
        return Uint8Array.from(out.slice(0, len));
      },
      emit(topic, payload) {
        // The host drops events of queries.
        if (!readOnly) m.events.push({ index: m._index, topic, payload: Uint8Array.from(payload) });
      },
    };
  }

  /** A writable context at the current index, writes applied at once (no transaction). */
  ctx() {
    return new Ctx(this.view(false));
  }

  /** A read-only context, as a `query` gets. */
  queryCtx() {
    return new Ctx(this.view(true));
  }

  /** Runs `f(ctx)` as the host runs `apply`: at the next index; its writes and events stay only if it returns. */
  transaction(f) {
    if (this.undo) throw new Error("MockHost transactions do not nest");
    this.setIndex(this._index + 1);
    this.undo = [];
    const eventsBefore = this.events.length;
    let ok = false;
    try {
      const result = f(this.ctx());
      ok = true;
      return result;
    } finally {
      const undo = this.undo;
      this.undo = null;
      if (!ok) {
        for (const [k, previous] of undo.reverse()) {
          if (previous === undefined) this.kv.delete(k);
          else this.kv.set(k, previous);
        }
        this.events.length = eventsBefore;
      }
    }
  }

  /** Applies `input` (a JSON string or bytes, exactly what a client sends) through the wire path; returns the output parsed as JSON, throws the `PluginError`. */
  apply(plugin, input) {
    return parse(this.transaction((ctx) => runApply(plugin, ctx, toBytes(input))));
  }

  /** Runs a query through the wire path, read-only. */
  query(plugin, input) {
    return parse(runQuery(plugin, this.queryCtx(), toBytes(input)));
  }

  /** Reads a raw key (string or bytes), bypassing any plugin. */
  get(key) {
    return this.kv.get(toKey(toBytes(key))) ?? null;
  }

  /** Writes a raw key, bypassing plugins and limits (test setup). */
  insert(key, value) {
    this.kv.set(toKey(toBytes(key)), Uint8Array.from(toBytes(value)));
  }

  /** The whole store as `[key, value]` byte pairs in key order. */
  dump() {
    return [...this.kv.keys()].sort().map((k) => [fromKey(k), this.kv.get(k)]);
  }

  /** Removes and returns the committed events. */
  takeEvents() {
    return this.events.splice(0);
  }
}

export { PluginError };
