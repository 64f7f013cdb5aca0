// Decoders that accept exactly the JSON a Rust plugin's `#[derive(Deserialize)]` command and query types accept (externally tagged enums of struct variants, defaults, options, integer ranges), so malformed input is `bad-input` in both.

import { Float, duplicateKeys } from "./json.js";

const SCHEMA_BRAND = Symbol.for("cairn.SchemaError");

/** Why a JSON value does not fit a schema (becomes a `bad-input` error). */
export class SchemaError extends Error {
  constructor(message) {
    super(message);
    this[SCHEMA_BRAND] = true;
  }
  static [Symbol.hasInstance](x) {
    return x != null && x[SCHEMA_BRAND] === true;
  }
}

function kindOf(v) {
  if (v === null) return "null";
  if (v instanceof Float || (typeof v === "number" && !Number.isInteger(v))) return `floating point \`${Number(v)}\``;
  if (typeof v === "number" || typeof v === "bigint") return `integer \`${v}\``;
  if (typeof v === "string") return `string ${JSON.stringify(v)}`;
  if (typeof v === "boolean") return `boolean \`${v}\``;
  if (Array.isArray(v)) return "sequence";
  return "map";
}

function invalidType(v, expected) {
  return new SchemaError(`invalid type: ${kindOf(v)}, expected ${expected}`);
}

/** Any JSON value (serde_json `Value`); required unless wrapped in `withDefault`. */
export const json = { name: "any JSON value", decode: (v) => v };

/** A string (`String`). */
export const string = {
  name: "a string",
  decode(v) {
    if (typeof v !== "string") throw invalidType(v, "a string");
    return v;
  },
};

/** A boolean (`bool`). */
export const bool = {
  name: "a boolean",
  decode(v) {
    if (typeof v !== "boolean") throw invalidType(v, "a boolean");
    return v;
  },
};

function integer(name, min, max) {
  return {
    name,
    decode(v) {
      // serde refuses floats for integer fields, even integral ones (`5.0`).
      const isInt = typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v) && !Object.is(v, -0));
      if (!isInt) throw invalidType(v, name);
      const b = BigInt(v);
      if (b < min || b > max) throw new SchemaError(`invalid value: integer \`${v}\`, expected ${name}`);
      return max > BigInt(Number.MAX_SAFE_INTEGER) || min < -BigInt(Number.MAX_SAFE_INTEGER) ? b : Number(b);
    },
  };
}

/** Unsigned integers; `usize` is 32 bits, as in a `wasm32` Rust plugin. 64-bit ones decode as `bigint`. */
export const u32 = integer("u32", 0n, 0xffffffffn);
export const usize = integer("usize", 0n, 0xffffffffn);
export const u64 = integer("u64", 0n, (1n << 64n) - 1n);
export const i64 = integer("i64", -(1n << 63n), (1n << 63n) - 1n);

/** `Option<T>`: `null` or absent (in object form) is `null`. */
export function optional(type) {
  return { name: `option of ${type.name}`, optional: true, decode: (v) => (v === null ? null : type.decode(v)) };
}

/** `#[serde(default)]`: absent is `fallback`; present must fit `type` (`null` too, unless the type accepts it). */
export function withDefault(type, fallback) {
  return { name: type.name, hasDefault: true, fallback, decode: (v) => type.decode(v) };
}

/**
 * A struct: `{"field": ...}` (unknown fields ignored, a field given twice is an
 * error) or, as serde also accepts, `[field1, field2, ...]` in declaration order.
 */
export function struct(name, fields) {
  const names = Object.keys(fields);
  return {
    name,
    decode(v) {
      const out = {};
      if (Array.isArray(v)) {
        if (v.length > names.length) throw new SchemaError(`invalid length ${v.length}, expected fewer elements in array`);
        names.forEach((f, i) => {
          const t = fields[f];
          if (i < v.length) out[f] = t.decode(v[i]);
          else if (t.hasDefault) out[f] = t.fallback;
          else throw new SchemaError(`invalid length ${v.length}, expected ${name} with ${names.length} elements`);
        });
        return out;
      }
      if (v === null || typeof v !== "object" || v instanceof Float) throw invalidType(v, name);
      const dups = duplicateKeys(v);
      for (const f of names) {
        const t = fields[f];
        if (dups.has(f)) throw new SchemaError(`duplicate field \`${f}\``);
        if (Object.prototype.hasOwnProperty.call(v, f)) out[f] = t.decode(v[f]);
        else if (t.hasDefault) out[f] = t.fallback;
        else if (t.optional) out[f] = null;
        else throw new SchemaError(`missing field \`${f}\``);
      }
      return out;
    },
  };
}

/**
 * An externally tagged enum of struct variants, serde's default:
 * `{"variant": {...fields}}`. Decodes to `{ type: "variant", ...fields }`.
 */
export function oneOf(name, variants) {
  const tags = Object.keys(variants);
  const structs = Object.fromEntries(tags.map((t) => [t, struct(`struct variant ${name}::${t}`, variants[t])]));
  const expected = tags.map((t) => `\`${t}\``).join(", ");
  return {
    name,
    decode(v) {
      if (typeof v === "string") {
        if (!tags.includes(v)) throw new SchemaError(`unknown variant \`${v}\`, expected one of ${expected}`);
        throw new SchemaError("invalid type: unit variant, expected struct variant");
      }
      if (v === null || typeof v !== "object" || Array.isArray(v) || v instanceof Float) {
        throw invalidType(v, `value of enum ${name}`);
      }
      const keys = Object.keys(v);
      if (keys.length !== 1 || duplicateKeys(v).size > 0) throw new SchemaError("expected an object with exactly one key (the variant)");
      const tag = keys[0];
      if (!tags.includes(tag)) throw new SchemaError(`unknown variant \`${tag}\`, expected one of ${expected}`);
      return { type: tag, ...structs[tag].decode(v[tag]) };
    },
  };
}
