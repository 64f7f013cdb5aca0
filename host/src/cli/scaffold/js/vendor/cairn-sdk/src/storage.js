// Typed storage over the raw KV store with the Rust SDK's exact layout: `Item` (one JSON value under a fixed key) and `Map` (JSON values under `namespace ++ 0x00 ++ encode(key)`, iterable in key order).

import { PluginError } from "./error.js";
import { isParseError, parse, stringify, utf8Encode } from "./json.js";
import { Key } from "./keys.js";

function checkName(name) {
  if (typeof name !== "string" || name.includes("\0")) throw new TypeError("storage names are strings without a NUL character");
}

/** A raw key for error messages, as Rust's `escape_ascii` shows it. */
export function showKey(bytes) {
  let s = "";
  for (const b of bytes) {
    if (b === 0x09) s += "\\t";
    else if (b === 0x0a) s += "\\n";
    else if (b === 0x0d) s += "\\r";
    else if (b === 0x22) s += '\\"';
    else if (b === 0x27) s += "\\'";
    else if (b === 0x5c) s += "\\\\";
    else if (b >= 0x20 && b < 0x7f) s += String.fromCharCode(b);
    else s += `\\x${b.toString(16).padStart(2, "0")}`;
  }
  return `"${s}"`;
}

function decodeValue(bytes, raw) {
  try {
    return parse(bytes);
  } catch (e) {
    if (!isParseError(e)) throw e;
    throw PluginError.corruptState(`the value at key ${showKey(raw)} does not decode as JSON: ${e.message}`);
  }
}

function encodeValue(value) {
  return utf8Encode(stringify(value));
}

function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** One JSON value under a fixed key (the key is the name's UTF-8 bytes). */
export class Item {
  constructor(key) {
    checkName(key);
    this.key = key;
    this.raw = utf8Encode(key);
  }
  /** The stored value, or `null` if absent. */
  load(ctx) {
    const b = ctx.get(this.raw);
    return b === null ? null : decodeValue(b, this.raw);
  }
  /** The stored value, or `fallback` if absent. */
  loadOr(ctx, fallback) {
    const v = this.load(ctx);
    return v === null ? fallback : v;
  }
  exists(ctx) {
    return ctx.get(this.raw) !== null;
  }
  save(ctx, value) {
    ctx.set(this.raw, encodeValue(value));
  }
  remove(ctx) {
    ctx.delete(this.raw);
  }
  /** Loads, passes the value (or `null`) to `f`, saves and returns what `f` returns; nothing is written if `f` throws. */
  update(ctx, f) {
    const v = f(this.load(ctx));
    this.save(ctx, v);
    return v;
  }
}

/**
 * JSON values under keys of one type (`Key.str` by default) in a namespace,
 * iterated in key order (bytewise on the encoded key). Entries are
 * `[key, value]` pairs.
 */
export class Map {
  constructor(namespace, keyType = Key.str) {
    checkName(namespace);
    this.namespace = namespace;
    this.keyType = keyType;
    this.prefixBytes = concat(utf8Encode(namespace), Uint8Array.of(0));
    this.endBytes = concat(utf8Encode(namespace), Uint8Array.of(1));
  }
  /** The raw KV key under which `key` is stored. */
  rawKey(key) {
    return concat(this.prefixBytes, this.keyType.encode(key));
  }
  load(ctx, key) {
    const raw = this.rawKey(key);
    const b = ctx.get(raw);
    return b === null ? null : decodeValue(b, raw);
  }
  has(ctx, key) {
    return ctx.get(this.rawKey(key)) !== null;
  }
  save(ctx, key, value) {
    ctx.set(this.rawKey(key), encodeValue(value));
  }
  remove(ctx, key) {
    ctx.delete(this.rawKey(key));
  }
  update(ctx, key, f) {
    const raw = this.rawKey(key);
    const b = ctx.get(raw);
    const v = f(b === null ? null : decodeValue(b, raw));
    ctx.set(raw, encodeValue(v));
    return v;
  }
  /** Iterates entries with `start <= key < end` (`null`: unbounded) in key order. */
  *iter(ctx, start = null, end = null, limit = Infinity) {
    const s = start == null ? this.prefixBytes : this.rawKey(start);
    const e = end == null ? this.endBytes : this.rawKey(end);
    yield* this.decodeEntries(ctx, s, e, limit);
  }
  /** Up to `limit` entries with `start <= key < end`, in key order. */
  range(ctx, start = null, end = null, limit = Infinity) {
    return [...this.iter(ctx, start, end, limit)];
  }
  /** Up to `limit` entries whose encoded key starts with the encoding of `prefix` (a string prefix for string keys). */
  prefix(ctx, prefix, limit = Infinity) {
    const s = this.rawKey(prefix);
    return [...this.decodeEntries(ctx, s, successor(s), limit)];
  }
  *decodeEntries(ctx, start, end, limit) {
    const skip = this.prefixBytes.length;
    for (const [raw, value] of ctx.entries(start, end, limit)) {
      const key = this.keyType.decode(raw.subarray(skip));
      if (key === undefined) {
        throw PluginError.corruptState(`the key ${showKey(raw)} does not decode as ${this.keyType.name}`);
      }
      yield [key, decodeValue(value, raw)];
    }
  }
}

/** The smallest byte string above every string starting with `prefix` (exists: map prefixes contain 0x00). */
function successor(prefix) {
  const out = Array.from(prefix);
  while (out.length > 0) {
    const last = out.pop();
    if (last !== 0xff) {
      out.push(last + 1);
      return Uint8Array.from(out);
    }
  }
  throw new Error("map prefixes always contain a non-0xFF byte");
}
