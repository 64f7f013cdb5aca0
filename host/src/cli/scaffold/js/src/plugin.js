// {{name}}: a Cairn plugin in JavaScript — a replicated counter. Replace it with your own state machine.
//
// Commands (apply): `{"add":{"n":5}}` -> `{"total":5}`, `{"reset":{}}` -> `{"total":0}`.
// Queries: `{"total":{}}` -> `{"total":5}`.
// Rules: keep all state in the store (Item/Map), use ctx.timestampMs() and
// ctx.randomBytes() instead of Date.now()/Math.random(), throw a PluginError to
// reject a command (its writes are discarded).

import { Item, PluginError, definePlugin, oneOf, u64 } from "@cairn/sdk";

const TOTAL = new Item("total");
const U64_MAX = (1n << 64n) - 1n;

export default definePlugin({
  commands: oneOf("Command", { add: { n: u64 }, reset: {} }),
  queries: oneOf("Query", { total: {} }),

  apply(ctx, cmd) {
    let total = 0n;
    if (cmd.type === "add") {
      total = BigInt(TOTAL.loadOr(ctx, 0)) + cmd.n;
      if (total > U64_MAX) throw new PluginError("overflow", "total would exceed u64");
    }
    TOTAL.save(ctx, total);
    ctx.emit("total", total.toString());
    return { total };
  },

  query(ctx) {
    return { total: TOTAL.loadOr(ctx, 0) };
  },
});
