// Cairn guest SDK for JavaScript: write a replicated, deterministic state machine as an object with `apply` and `query` over JSON, test it under `node --test` with `MockHost`, build it into a component with `cairn-js-build`.
//
// The same rules as the Rust SDK (guest-sdk/), and the same bytes: storage
// layout (`Item`, `Map`), JSON encoding of stored values and outputs
// (serde_json's), error codes (`bad-input`, `corrupt-state`, `read-only`, ...).
// Keep all state in the store (each call runs in a fresh instance); use
// `ctx.timestampMs()` and `ctx.randomBytes()`, never `Date.now()` or
// `Math.random()`; throw a `PluginError` to reject a command, which discards
// all its writes and events. Any other exception traps (like a Rust panic).

import { PluginError } from "./error.js";
import { encode, isParseError, parse } from "./json.js";
import { SchemaError } from "./schema.js";

export { Ctx } from "./ctx.js";
export { PluginError, kvError } from "./error.js";
export { Float, float, parse, stringify, encode, equal, utf8Encode, utf8Decode, compareCodePoints } from "./json.js";
export { Key } from "./keys.js";
export { Item, Map } from "./storage.js";
export { SchemaError, json, string, bool, u32, usize, u64, i64, optional, withDefault, struct, oneOf } from "./schema.js";

/**
 * Declares a plugin. `spec`:
 * - `apply(ctx, command)`: handles a committed command, may write; returns the output (any JSON value);
 * - `query(ctx, query)`: answers a read-only query;
 * - `commands`, `queries` (optional): schemas (`oneOf(...)`) the JSON input must fit,
 *   else the call fails with `bad-input`; without them the parsed JSON is passed as is.
 */
export function definePlugin(spec) {
  for (const f of ["apply", "query"]) {
    if (typeof spec[f] !== "function") throw new TypeError(`a plugin needs an \`${f}(ctx, input)\` function`);
  }
  return spec;
}

function decodeInput(bytes, what, schema) {
  let value;
  try {
    value = parse(bytes);
  } catch (e) {
    if (isParseError(e)) throw PluginError.badInput(`${what} is not valid JSON: ${e.message}`);
    throw e;
  }
  if (!schema) return value;
  try {
    return schema.decode(value);
  } catch (e) {
    if (e instanceof SchemaError) throw PluginError.badInput(`${what} is not valid JSON for ${schema.name}: ${e.message}`);
    throw e;
  }
}

/** The wire path of `apply`: JSON bytes in, JSON bytes out (used by the component export and `MockHost`). */
export function runApply(plugin, ctx, input) {
  return encode(plugin.apply(ctx, decodeInput(input, "command", plugin.commands)));
}

/** The wire path of `query` (see `runApply`). */
export function runQuery(plugin, ctx, input) {
  return encode(plugin.query(ctx, decodeInput(input, "query", plugin.queries)));
}
