// `Ctx`: the plugin's handle to the host during one `apply` or `query` (KV store, log index, time, randomness, events), over the real WIT imports or the mock host.

import { PluginError, kvError } from "./error.js";
import { encode as encodeJson, utf8Encode } from "./json.js";

/** How many entries `entries()` asks the host for per `scan` call (as the Rust SDK). */
const SCAN_PAGE = 256;

/** A key or value argument: bytes as given, strings as UTF-8. */
export function toBytes(x) {
  if (x instanceof Uint8Array) return x;
  if (typeof x === "string") return utf8Encode(x);
  throw new TypeError("keys and values are Uint8Array or string");
}

/**
 * The plugin's view of the host during one call.
 *
 * Everything it returns is the same on every node: the log index, the
 * leader's timestamp for the command, randomness seeded from the log index.
 * During `query` the store is read-only: the host refuses writes.
 */
export class Ctx {
  /** @param {object} host a backend: the WIT imports (wasm.js) or a `MockHost` view */
  constructor(host) {
    this.host = host;
  }

  /** The log index of the command being applied; during `query`, that of the last applied command. */
  index() {
    return Number(this.host.logIndex());
  }

  /** Milliseconds since the Unix epoch, stamped by the leader when it proposed the command. Use it instead of `Date.now()`. */
  timestampMs() {
    return Number(this.host.timestampMs());
  }

  /** `len` deterministic pseudo-random bytes (seeded from the log index and plugin name; not secret). */
  randomBytes(len) {
    return Uint8Array.from(this.host.randomBytes(len));
  }

  /** A deterministic pseudo-random u64 as a `bigint` (little-endian of 8 random bytes, as the Rust SDK). */
  randomU64() {
    const b = this.randomBytes(8);
    let v = 0n;
    for (let i = 7; i >= 0; i--) v = (v << 8n) | BigInt(b[i] ?? 0);
    return v;
  }

  /** Emits an event (payload: bytes or a string); dropped if the call fails. */
  emit(topic, payload) {
    this.host.emit(String(topic), toBytes(payload));
  }

  /** Emits an event whose payload is `value` as JSON (serde_json's encoding). */
  emitJson(topic, value) {
    this.emit(topic, encodeJson(value));
  }

  /** The bytes stored under `key`, or `null`. */
  get(key) {
    return this.host.get(toBytes(key)) ?? null;
  }

  /** Stores `value` under `key`; committed only if `apply` succeeds. Throws a `PluginError` if the host refuses. */
  set(key, value) {
    const refused = this.host.set(toBytes(key), toBytes(value));
    if (refused) throw kvError(refused);
  }

  /** Removes `key` (no error if absent). */
  delete(key) {
    const refused = this.host.delete(toBytes(key));
    if (refused) throw kvError(refused);
  }

  /**
   * One host `scan`: `[key, value]` pairs with `start <= key < end` (`end`
   * null: to the end) in key order, at most `limit` — possibly fewer, since
   * the host may cap it. Use `entries` to read a whole range.
   */
  scan(start, end, limit) {
    return this.host.scan(toBytes(start), end == null ? null : toBytes(end), limit);
  }

  /** Iterates `[key, value]` with `start <= key < end`, at most `limit`, fetching pages lazily. */
  *entries(start, end = null, limit = Infinity) {
    let next = toBytes(start);
    const stop = end == null ? null : toBytes(end);
    let remaining = limit;
    while (remaining > 0) {
      const page = this.scan(next, stop, Math.min(remaining, SCAN_PAGE));
      // Only an empty page proves the end: the host may return fewer than asked.
      if (page.length === 0) return;
      for (const entry of page) {
        if (remaining <= 0) return;
        remaining--;
        yield entry;
      }
      const last = page[page.length - 1][0];
      next = new Uint8Array(last.length + 1);
      next.set(last);
    }
  }
}

export { PluginError };
