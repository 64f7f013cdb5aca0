// `PluginError`: a failure a plugin reports on purpose (code + message), and the codes the SDK itself uses — the same as the Rust SDK's.

/** A failure a plugin reports on purpose; the host discards the call's writes and events and returns it to the client. */
// A registry symbol, so `instanceof PluginError` holds even when a bundler or
// loader ends up with two copies of this module.
const BRAND = Symbol.for("cairn.PluginError");

export class PluginError extends Error {
  static [Symbol.hasInstance](x) {
    return x != null && x[BRAND] === true;
  }

  /**
   * @param {string} code stable, machine-readable, kebab-case (e.g. `insufficient-funds`)
   * @param {string} message for humans
   */
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "PluginError";
    this.code = String(code);
    this.message = String(message);
    this[BRAND] = true;
  }

  /** Input that is not valid JSON for the plugin's command or query. */
  static badInput(message) {
    return new PluginError(PluginError.BAD_INPUT, message);
  }

  /** Stored bytes that no longer decode. */
  static corruptState(message) {
    return new PluginError(PluginError.CORRUPT_STATE, message);
  }

  toString() {
    return `${this.code}: ${this.message}`;
  }
}

PluginError.BAD_INPUT = "bad-input";
PluginError.BAD_OUTPUT = "bad-output";
PluginError.CORRUPT_STATE = "corrupt-state";
PluginError.READ_ONLY = "read-only";
PluginError.KEY_TOO_LARGE = "key-too-large";
PluginError.VALUE_TOO_LARGE = "value-too-large";

/** Messages of refused KV writes, word for word as the Rust SDK's `KvError` displays them. */
export const KV_ERROR_MESSAGES = {
  "read-only": "write refused: the store is read-only during query",
  "key-too-large": "write refused: key exceeds the host's size limit",
  "value-too-large": "write refused: value exceeds the host's size limit",
};

/** A refused KV write (`read-only`, `key-too-large`, `value-too-large`) as a `PluginError`. */
export function kvError(code) {
  return new PluginError(code, KV_ERROR_MESSAGES[code] ?? `write refused: ${code}`);
}
