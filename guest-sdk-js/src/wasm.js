// The component side: binds `Ctx` to the `cairn:plugin` WIT imports and turns a plugin into the world's `apply`/`query` exports. Only the generated build entry imports this (node has no `cairn:plugin` modules).

import kv from "cairn:plugin/kv@0.1.0";
import context from "cairn:plugin/context@0.1.0";
import { Ctx } from "./ctx.js";
import { PluginError } from "./error.js";
import { runApply, runQuery } from "./index.js";

/** A refused write throws an `Error` whose `payload` is the WIT `kv-error` case name. */
function refusal(f) {
  try {
    f();
    return null;
  } catch (e) {
    if (e && typeof e.payload === "string") return e.payload;
    throw e;
  }
}

const host = {
  get: (key) => kv.get(key) ?? null,
  set: (key, value) => refusal(() => kv.set(key, value)),
  delete: (key) => refusal(() => kv.delete(key)),
  scan: (start, end, limit) => kv.scan(start, end ?? null, limit).map((e) => [e.key, e.value]),
  logIndex: () => context.logIndex(),
  timestampMs: () => context.timestampMs(),
  randomBytes: (len) => context.randomBytes(len),
  emit: (topic, payload) => context.emit(topic, payload),
};

function call(run, plugin, input) {
  try {
    return run(plugin, new Ctx(host), input);
  } catch (e) {
    // The WIT `plugin-error` record; anything else traps, like a Rust panic.
    if (e instanceof PluginError) throw { code: e.code, message: e.message };
    throw e;
  }
}

/** The `apply` and `query` exports of the `plugin` world for `plugin`. */
export function exportPlugin(plugin) {
  return {
    apply: (input) => call(runApply, plugin, input),
    query: (input) => call(runQuery, plugin, input),
  };
}
