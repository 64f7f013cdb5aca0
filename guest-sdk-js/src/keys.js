// Key codecs for `Map`: byte encodings whose bytewise order is the keys' natural order, identical to the Rust SDK's `Key` impls (guest-sdk/src/key.rs).

import { utf8Decode, utf8Encode } from "./json.js";

function unsigned(bits) {
  const bytes = bits / 8;
  const max = (1n << BigInt(bits)) - 1n;
  return {
    name: `u${bits}`,
    // Big-endian, so byte order is numeric order.
    encode(k) {
      let v = checkInt(k, 0n, max, `u${bits}`);
      const out = new Uint8Array(bytes);
      for (let i = bytes - 1; i >= 0; i--) {
        out[i] = Number(v & 0xffn);
        v >>= 8n;
      }
      return out;
    },
    decode(b) {
      if (b.length !== bytes) return undefined;
      let v = 0n;
      for (const x of b) v = (v << 8n) | BigInt(x);
      return bits <= 32 ? Number(v) : v;
    },
  };
}

function signed(bits) {
  const u = unsigned(bits);
  const half = 1n << BigInt(bits - 1);
  return {
    name: `i${bits}`,
    // Flip the sign bit, so negative numbers sort before positive ones.
    encode(k) {
      const v = checkInt(k, -half, half - 1n, `i${bits}`);
      return u.encode(v + half);
    },
    decode(b) {
      const v = u.decode(b);
      if (v === undefined) return undefined;
      const s = BigInt(v) - half;
      return bits <= 32 ? Number(s) : s;
    },
  };
}

function checkInt(k, min, max, name) {
  if (typeof k === "number" && !Number.isInteger(k)) throw new TypeError(`${name} key must be an integer, got ${k}`);
  const v = BigInt(k);
  if (v < min || v > max) throw new RangeError(`${name} key out of range: ${k}`);
  return v;
}

/** Key types for `Map`: strings (UTF-8), raw bytes, and integers that iterate numerically. 64-bit keys decode as `bigint`. */
export const Key = {
  /** Strings, lexicographic by UTF-8 bytes (= code point order). */
  str: {
    name: "string",
    encode: (k) => utf8Encode(String(k)),
    decode: (b) => utf8Decode(b) ?? undefined,
  },
  /** Raw bytes (`Uint8Array`), bytewise. */
  bytes: {
    name: "bytes",
    encode: (k) => Uint8Array.from(k),
    decode: (b) => Uint8Array.from(b),
  },
  u8: unsigned(8),
  u16: unsigned(16),
  u32: unsigned(32),
  u64: unsigned(64),
  i32: signed(32),
  i64: signed(64),
};
