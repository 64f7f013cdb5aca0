// JSON exactly as the Rust SDK's `serde_json::Value` reads, compares and writes it, so a JS plugin stores the same bytes and answers the same outputs as its Rust twin.
//
// Why not `JSON.parse`/`JSON.stringify`: serde_json keeps integers and floats
// apart (`1` and `1.0` are different values and print differently), holds
// integers up to 2^64 exactly, sorts object keys (a `BTreeMap`), prints floats
// in zmij's style (`1e+30`, `100.0`, `-0.0`), refuses lone surrogates, invalid
// UTF-8 and nesting deeper than 128, and rounds decimal literals with its own
// (fast, not always correctly rounded) algorithm. Each of these changes the
// bytes a plugin writes to the replicated store, so every one is mirrored here.
//
// Representation in JS:
// - integers that fit a JS number exactly: `number`; larger ones (up to
//   u64/i64): `bigint`;
// - floats: `number` when not integral (`1.5`), otherwise a `Float` wrapper
//   (`1.0`, `1e20`, `-0.0`), so writing it back keeps the float;
// - strings, booleans, `null`, arrays and plain objects as usual.

import { PluginError } from "./error.js";

/** A JSON number that is a float although its value is integral (`1.0`, `-0.0`, `1e20`). */
export class Float {
  /** @param {number} value */
  constructor(value) {
    this.value = value;
  }
  valueOf() {
    return this.value;
  }
}

/** Marks `value` as a float (printed `2.0`, not `2`). */
export function float(value) {
  return new Float(value);
}

const U64_MAX = (1n << 64n) - 1n;
const EXACT_TIMES_10 = 900719925474099; // below this, sig * 10 + 9 is still exact in a double

/** `sig * 10 + d` for a u64 significand held as a number while exact, as a bigint beyond; `null` if it would exceed u64. */
function mulAdd(sig, d) {
  if (typeof sig === "number" && sig < EXACT_TIMES_10) return sig * 10 + d;
  const v = BigInt(sig) * 10n + BigInt(d);
  return v > U64_MAX ? null : v;
}
const I64_MIN = -(1n << 63n);
const MAX_DEPTH = 128; // serde_json's recursion limit
const POW10 = Array.from({ length: 309 }, (_, i) => Number(`1e${i}`));

// Objects that held the same key twice: a struct field given twice is an
// error for serde (see schema.js), a `Value` keeps the last one.
const duplicates = new WeakMap();

/** The keys `object` held more than once in its JSON text (empty if none). */
export function duplicateKeys(object) {
  return duplicates.get(object) ?? new Set();
}

// ---------------------------------------------------------------------------
// UTF-8 (QuickJS in the component has no TextEncoder/TextDecoder)

const ASCII = /^[\x00-\x7f]*$/;
const CHUNK = 4096; // code units per String.fromCharCode.apply call

function fromUnits(units, start, end) {
  let out = "";
  for (let i = start; i < end; i += CHUNK) {
    out += String.fromCharCode.apply(null, units.subarray ? units.subarray(i, Math.min(end, i + CHUNK)) : units.slice(i, Math.min(end, i + CHUNK)));
  }
  return out;
}

/** Encodes a string as UTF-8; lone surrogates are a `bad-output` error (Rust strings cannot hold them). */
export function utf8Encode(text) {
  if (ASCII.test(text)) {
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes;
  }
  const out = [];
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = text.charCodeAt(i + 1);
      if (c > 0xdbff || !(d >= 0xdc00 && d <= 0xdfff)) {
        throw new PluginError("bad-output", "a string holds a lone surrogate (not valid Unicode)");
      }
      c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
      i++;
    }
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(out);
}

/** Decodes UTF-8 strictly (as Rust's `str::from_utf8`); `null` if invalid. */
export function utf8Decode(bytes, start = 0, end = bytes.length) {
  // ASCII (the common case) is converted and checked by native code.
  const latin1 = fromUnits(bytes, start, end);
  if (ASCII.test(latin1)) return latin1;
  const units = [];
  let i = start;
  while (i < end) {
    const b = bytes[i];
    let cp;
    let n;
    if (b < 0x80) {
      cp = b;
      n = 0;
    } else if (b >= 0xc2 && b <= 0xdf) {
      cp = b & 0x1f;
      n = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
      cp = b & 0x0f;
      n = 2;
    } else if (b >= 0xf0 && b <= 0xf4) {
      cp = b & 0x07;
      n = 3;
    } else return null;
    for (let j = 1; j <= n; j++) {
      if (i + j >= end) return null;
      const c = bytes[i + j];
      if ((c & 0xc0) !== 0x80) return null;
      cp = (cp << 6) | (c & 0x3f);
    }
    // Overlong forms, surrogates and code points above U+10FFFF are invalid.
    if ((n === 2 && cp < 0x800) || (n === 3 && cp < 0x10000) || cp > 0x10ffff) return null;
    if (cp >= 0xd800 && cp <= 0xdfff) return null;
    if (cp >= 0x10000) units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
    else units.push(cp);
    i += n + 1;
  }
  return fromUnits(units, 0, units.length);
}

// ---------------------------------------------------------------------------
// Parsing

class ParseError extends Error {}

/**
 * Parses JSON text (bytes or string) as serde_json parses a `Value`.
 * Throws a `ParseError` (message like serde_json's) on anything it refuses.
 */
export function parse(input) {
  const bytes = typeof input === "string" ? utf8Encode(input) : input;
  const fast = parseFast(bytes);
  if (fast !== NOT_FAST) return fast;
  const p = new Parser(bytes);
  p.ws();
  const value = p.value();
  p.ws();
  if (p.i < bytes.length) p.fail("trailing characters");
  return value;
}

/** Whether `e` came from `parse` (malformed JSON). */
export function isParseError(e) {
  return e instanceof ParseError;
}

// The fast path. In the interpreter every JS operation costs hundreds of Wasm
// instructions (fuel), so a byte-by-byte parser in JS costs ~10k fuel per byte
// of input; the engine's own `JSON.parse` (C) costs next to nothing. Its
// result is exactly serde_json's whenever the text has no number that could
// be a float or beyond 15 digits, no `-0`, no surrogate escape, no key that
// appears twice anywhere (a struct field given twice is an error for serde)
// and fewer than 127 brackets (serde's nesting limit) — checked here with
// native regular expressions. Anything else, valid or not, takes `Parser`.
const NOT_FAST = Symbol("not fast");
const STRING = /"(?:[^"\\]|\\.)*"/g;
const KEY = /"(?:[^"\\]|\\.)*"(?=\s*:)/g;
const INEXACT_NUMBER = /[.eE]|\d{16}|-0(?!\d)/;
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
const OPENERS = /[^[{]+/g;

function parseFast(bytes) {
  const text = utf8Decode(bytes);
  if (text === null || SURROGATE_ESCAPE.test(text)) return NOT_FAST;
  const bare = text.replace(STRING, '""');
  if (INEXACT_NUMBER.test(bare) || bare.replace(OPENERS, "").length >= MAX_DEPTH - 1) return NOT_FAST;
  const keys = text.match(KEY);
  // Two spellings of one key (`"a"`, `"\u0061"`) would hide a duplicate: escaped keys go slow.
  if (keys !== null && keys.length > 1 && (new Set(keys).size !== keys.length || keys.join("").includes("\\"))) {
    return NOT_FAST;
  }
  try {
    return JSON.parse(text);
  } catch {
    return NOT_FAST; // let `Parser` explain the error in serde_json's terms
  }
}

class Parser {
  constructor(bytes) {
    this.b = bytes;
    this.i = 0;
    this.depth = MAX_DEPTH;
  }
  fail(what) {
    throw new ParseError(`${what} at byte ${this.i}`);
  }
  peek() {
    return this.i < this.b.length ? this.b[this.i] : -1;
  }
  ws() {
    for (;;) {
      const c = this.peek();
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i++;
      else return;
    }
  }
  literal(word, value) {
    for (let k = 0; k < word.length; k++) {
      if (this.b[this.i + k] !== word.charCodeAt(k)) {
        if (this.i + k >= this.b.length) this.fail("EOF while parsing a value");
        this.fail("expected ident");
      }
    }
    this.i += word.length;
    return value;
  }
  value() {
    const c = this.peek();
    switch (c) {
      case -1:
        return this.fail("EOF while parsing a value");
      case 0x6e:
        return this.literal("null", null);
      case 0x74:
        return this.literal("true", true);
      case 0x66:
        return this.literal("false", false);
      case 0x22:
        return this.string();
      case 0x5b:
        return this.nested(() => this.array());
      case 0x7b:
        return this.nested(() => this.object());
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
        return this.fail("expected value");
    }
  }
  nested(f) {
    if (--this.depth === 0) this.fail("recursion limit exceeded");
    const v = f();
    this.depth++;
    return v;
  }
  array() {
    this.i++; // [
    const out = [];
    this.ws();
    if (this.peek() === 0x5d) {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      out.push(this.value());
      this.ws();
      const c = this.peek();
      if (c === 0x2c) {
        this.i++;
        this.ws();
        if (this.peek() === 0x5d) this.fail("trailing comma");
      } else if (c === 0x5d) {
        this.i++;
        return out;
      } else if (c === -1) this.fail("EOF while parsing a list");
      else this.fail("expected `,` or `]`");
    }
  }
  object() {
    this.i++; // {
    const out = {};
    let dups = null;
    this.ws();
    if (this.peek() === 0x7d) {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      const c0 = this.peek();
      if (c0 === -1) this.fail("EOF while parsing an object");
      if (c0 !== 0x22) this.fail("key must be a string");
      const key = this.string();
      this.ws();
      if (this.peek() !== 0x3a) this.fail(this.peek() === -1 ? "EOF while parsing an object" : "expected `:`");
      this.i++;
      this.ws();
      const v = this.value();
      if (Object.prototype.hasOwnProperty.call(out, key)) (dups ??= new Set()).add(key);
      // defineProperty: a key named `__proto__` must become data, not a prototype.
      Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
      this.ws();
      const c = this.peek();
      if (c === 0x2c) {
        this.i++;
        this.ws();
        if (this.peek() === 0x7d) this.fail("trailing comma");
      } else if (c === 0x7d) {
        this.i++;
        if (dups) duplicates.set(out, dups);
        return out;
      } else if (c === -1) this.fail("EOF while parsing an object");
      else this.fail("expected `,` or `}`");
    }
  }
  string() {
    this.i++; // opening quote
    let out = "";
    let runStart = this.i;
    const flush = () => {
      if (runStart < this.i) {
        const s = utf8Decode(this.b, runStart, this.i);
        if (s === null) this.fail("invalid unicode code point");
        out += s;
      }
    };
    const b = this.b;
    for (;;) {
      // Skip the plain bytes of a run in one tight loop.
      let j = this.i;
      while (j < b.length) {
        const x = b[j];
        if (x === 0x22 || x === 0x5c || x < 0x20) break;
        j++;
      }
      this.i = j;
      const c = this.peek();
      if (c === -1) this.fail("EOF while parsing a string");
      if (c === 0x22) {
        flush();
        this.i++;
        return out;
      }
      if (c < 0x20) this.fail("control character (\\u0000-\\u001F) found while parsing a string");
      if (c !== 0x5c) {
        this.i++;
        continue;
      }
      flush();
      this.i++;
      const e = this.peek();
      this.i++;
      switch (e) {
        case 0x22: out += '"'; break;
        case 0x5c: out += "\\"; break;
        case 0x2f: out += "/"; break;
        case 0x62: out += "\b"; break;
        case 0x66: out += "\f"; break;
        case 0x6e: out += "\n"; break;
        case 0x72: out += "\r"; break;
        case 0x74: out += "\t"; break;
        case 0x75: {
          const u = this.hex4();
          if (u >= 0xdc00 && u <= 0xdfff) this.fail("lone leading surrogate in hex escape");
          if (u >= 0xd800 && u <= 0xdbff) {
            if (this.peek() !== 0x5c || this.b[this.i + 1] !== 0x75) this.fail("lone leading surrogate in hex escape");
            this.i += 2;
            const lo = this.hex4();
            if (!(lo >= 0xdc00 && lo <= 0xdfff)) this.fail("lone leading surrogate in hex escape");
            out += String.fromCharCode(u, lo);
          } else out += String.fromCharCode(u);
          break;
        }
        case -1:
          this.i--;
          this.fail("EOF while parsing a string");
          break;
        default:
          this.fail("invalid escape");
      }
      runStart = this.i;
    }
  }
  hex4() {
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = this.peek();
      let d;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else this.fail(c === -1 ? "EOF while parsing a string" : "invalid escape");
      v = v * 16 + d;
      this.i++;
    }
    return v;
  }
  digit() {
    const c = this.peek();
    return c >= 0x30 && c <= 0x39 ? c - 0x30 : -1;
  }
  // serde_json 1.0 `parse_integer` / `parse_number` / `parse_decimal` /
  // `parse_exponent` / `f64_from_parts` (without `float_roundtrip`), step by step.
  number() {
    let positive = true;
    if (this.peek() === 0x2d) {
      positive = false;
      this.i++;
    }
    const first = this.digit();
    if (first < 0) this.fail(this.peek() === -1 ? "EOF while parsing a value" : "invalid number");
    this.i++;
    let sig = first;
    if (first === 0) {
      if (this.digit() >= 0) this.fail("invalid number");
    } else {
      for (let d = this.digit(); d >= 0; d = this.digit()) {
        const next = mulAdd(sig, d);
        if (next === null) return this.float(positive, this.longInteger(positive, sig));
        this.i++;
        sig = next;
      }
    }
    const c = this.peek();
    if (c === 0x2e) return this.float(positive, this.decimal(positive, sig, 0));
    if (c === 0x65 || c === 0x45) return this.float(positive, this.exponent(positive, sig, 0));
    if (typeof sig === "number") return positive ? sig : sig === 0 ? new Float(-0) : -sig;
    if (sig <= BigInt(Number.MAX_SAFE_INTEGER)) return positive ? Number(sig) : -Number(sig);
    if (positive) return sig;
    return sig > -I64_MIN ? this.float(positive, -Number(sig)) : -sig;
  }
  float(_positive, f) {
    return Number.isInteger(f) || Object.is(f, -0) ? new Float(f) : f;
  }
  longInteger(positive, sig) {
    let exponent = 0;
    for (;;) {
      const c = this.peek();
      if (c >= 0x30 && c <= 0x39) {
        this.i++;
        exponent++;
      } else if (c === 0x2e) return this.decimal(positive, sig, exponent);
      else if (c === 0x65 || c === 0x45) return this.exponent(positive, sig, exponent);
      else return this.fromParts(positive, sig, exponent);
    }
  }
  decimal(positive, sig, before) {
    this.i++; // .
    let after = 0;
    for (let d = this.digit(); d >= 0; d = this.digit()) {
      const next = mulAdd(sig, d);
      if (next === null) {
        // Further digits are ignored (serde_json's `parse_decimal_overflow`).
        while (this.digit() >= 0) this.i++;
        const c = this.peek();
        if (c === 0x65 || c === 0x45) return this.exponent(positive, sig, before + after);
        return this.fromParts(positive, sig, before + after);
      }
      this.i++;
      sig = next;
      after--;
    }
    if (after === 0) this.fail(this.peek() === -1 ? "EOF while parsing a value" : "invalid number");
    const c = this.peek();
    if (c === 0x65 || c === 0x45) return this.exponent(positive, sig, before + after);
    return this.fromParts(positive, sig, before + after);
  }
  exponent(positive, sig, start) {
    this.i++; // e
    let positiveExp = true;
    if (this.peek() === 0x2b) this.i++;
    else if (this.peek() === 0x2d) {
      positiveExp = false;
      this.i++;
    }
    let exp = this.digit();
    if (exp < 0) this.fail(this.peek() === -1 ? "EOF while parsing a value" : "invalid number");
    this.i++;
    for (let d = this.digit(); d >= 0; d = this.digit()) {
      this.i++;
      if (exp * 10 + d > 2147483647) {
        if (Number(sig) !== 0 && positiveExp) this.fail("number out of range");
        while (this.digit() >= 0) this.i++;
        return positive ? 0 : -0;
      }
      exp = exp * 10 + d;
    }
    let final = positiveExp ? start + exp : start - exp;
    final = Math.max(-2147483648, Math.min(2147483647, final)); // saturating
    return this.fromParts(positive, sig, final);
  }
  fromParts(positive, sig, exponent) {
    let f = Number(sig); // u64 -> f64 (exact, or from a bigint rounded to nearest even like `as f64`)
    for (;;) {
      const pow = POW10[Math.abs(exponent)];
      if (pow !== undefined) {
        if (exponent >= 0) {
          f *= pow;
          if (!Number.isFinite(f)) this.fail("number out of range");
        } else f /= pow;
        break;
      }
      if (f === 0) break;
      if (exponent >= 0) this.fail("number out of range");
      f /= 1e308;
      exponent += 308;
    }
    return positive ? f : -f;
  }
}

// ---------------------------------------------------------------------------
// Writing

/** Whether a JS number is written as a JSON integer (serde_json would hold it as u64/i64). */
function isIntegerNumber(n) {
  return Number.isInteger(n) && !Object.is(n, -0) && n >= -9223372036854775808 && n < 18446744073709551616;
}

/** A finite f64 as serde_json 1.0.154 (zmij) writes it: `1.0`, `0.001`, `1e+30`, `1.5e-7`. */
export function formatFloat(f) {
  if (!Number.isFinite(f)) return "null";
  if (f === 0) return Object.is(f, -0) ? "-0.0" : "0.0";
  const sign = f < 0 ? "-" : "";
  const [mant, expText] = Math.abs(f).toExponential().split("e");
  const digits = mant.replace(".", "");
  const length = digits.length;
  const kk = Number(expText) + 1; // 10^(kk-1) <= |f| < 10^kk
  const k = kk - length;
  let body;
  if (k >= 0 && kk <= 16) body = digits + "0".repeat(k) + ".0";
  else if (kk > 0 && kk <= 16) body = `${digits.slice(0, kk)}.${digits.slice(kk)}`;
  else if (kk > -5 && kk <= 0) body = `0.${"0".repeat(-kk)}${digits}`;
  else {
    // Scientific: `1e+30`, `1.5e-7` (zmij always writes the exponent's sign).
    const exp = kk - 1 >= 0 ? `e+${kk - 1}` : `e${kk - 1}`;
    body = length === 1 ? digits + exp : `${digits[0]}.${digits.slice(1)}${exp}`;
  }
  return sign + body;
}

const ESCAPES = { 0x22: '\\"', 0x5c: "\\\\", 0x08: "\\b", 0x09: "\\t", 0x0a: "\\n", 0x0c: "\\f", 0x0d: "\\r" };

const PLAIN = /^[^"\\\x00-\x1f\ud800-\udfff]*$/;

function quote(s) {
  if (PLAIN.test(s)) return `"${s}"`;
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = s.charCodeAt(i + 1);
      if (c > 0xdbff || !(d >= 0xdc00 && d <= 0xdfff)) {
        throw new PluginError("bad-output", "a string holds a lone surrogate (not valid Unicode)");
      }
      out += s[i] + s[i + 1];
      i++;
    } else if (ESCAPES[c] !== undefined) out += ESCAPES[c];
    else if (c < 0x20) out += `\\u00${c.toString(16).padStart(2, "0")}`;
    else out += s[i];
  }
  return `${out}"`;
}

/** Compares strings by Unicode code point (= UTF-8 byte order, as Rust's `String` ordering). */
export function compareCodePoints(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // A surrogate (>= U+10000) sorts after every BMP unit above it in UTF-16.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** Writes `value` as serde_json writes the equivalent `Value` (compact, object keys sorted). */
export function stringify(value) {
  return write(value, 0);
}

function write(v, depth) {
  if (depth > MAX_DEPTH * 64) throw new PluginError("bad-output", "the value is nested too deeply to encode");
  if (v === null || v === undefined) return "null";
  switch (typeof v) {
    case "boolean":
      return v ? "true" : "false";
    case "number":
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) return String(v);
      return isIntegerNumber(v) ? BigInt(v).toString() : formatFloat(v);
    case "bigint":
      if (v < I64_MIN || v > U64_MAX) throw new PluginError("bad-output", `integer ${v} does not fit 64 bits`);
      return v.toString();
    case "string":
      return quote(v);
    case "object":
      break;
    default:
      throw new PluginError("bad-output", `cannot encode a ${typeof v} as JSON`);
  }
  if (v instanceof Float) return formatFloat(v.value);
  if (typeof v.toJSON === "function") return write(v.toJSON(), depth + 1);
  if (Array.isArray(v)) {
    let out = "[";
    for (let i = 0; i < v.length; i++) out += (i ? "," : "") + write(v[i], depth + 1);
    return `${out}]`;
  }
  const keys = Object.keys(v);
  if (keys.length > 1) keys.sort(compareCodePoints);
  let out = "{";
  for (const k of keys) {
    if (v[k] === undefined) continue;
    out += `${out.length > 1 ? "," : ""}${quote(k)}:${write(v[k], depth + 1)}`;
  }
  return `${out}}`;
}

/** `stringify` as UTF-8 bytes. */
export function encode(value) {
  return utf8Encode(stringify(value));
}

// ---------------------------------------------------------------------------
// Equality (serde_json `Value: PartialEq`)

/** `"int"`, `"float"` or `null` (not a number), as serde_json classifies numbers. */
function numberKind(v) {
  if (typeof v === "bigint") return "int";
  if (typeof v === "number") return isIntegerNumber(v) ? "int" : "float";
  if (v instanceof Float) return "float";
  return null;
}

/**
 * Whether two JSON values are equal as serde_json `Value`s: an integer never
 * equals a float (`1` vs `1.0`), floats compare as f64 (`0.0 == -0.0`), object
 * key order does not matter.
 */
export function equal(a, b) {
  const ka = numberKind(a);
  const kb = numberKind(b);
  if (ka || kb) {
    if (ka !== kb) return false;
    if (ka === "int") return BigInt(a) === BigInt(b);
    return Number(a) === Number(b);
  }
  if (a === null || a === undefined || b === null || b === undefined) return (a ?? null) === (b ?? null);
  if (typeof a !== "object" || typeof b !== "object") return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => equal(x, b[i]));
  const ak = Object.keys(a).filter((k) => a[k] !== undefined);
  const bk = Object.keys(b).filter((k) => b[k] !== undefined);
  return ak.length === bk.length && ak.every((k) => Object.prototype.hasOwnProperty.call(b, k) && equal(a[k], b[k]));
}
