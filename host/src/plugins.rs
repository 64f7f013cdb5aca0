//! The first-party plugins built into the binary, so a fresh node has example
//! plugins ready to deploy without a separate build step.

use std::path::PathBuf;

/// Directory holding every plugin and fixture `.wasm` built by `build.rs`.
pub const PLUGIN_DIR: &str = env!("CAIRN_PLUGIN_DIR");

/// The example plugins embedded in this binary: `(name, component bytes)`.
pub const EXAMPLES: &[(&str, &[u8])] = &[
    (
        "counter",
        include_bytes!(concat!(env!("CAIRN_PLUGIN_DIR"), "/counter.wasm")),
    ),
    (
        "kv",
        include_bytes!(concat!(env!("CAIRN_PLUGIN_DIR"), "/kv.wasm")),
    ),
    (
        "bank",
        include_bytes!(concat!(env!("CAIRN_PLUGIN_DIR"), "/bank.wasm")),
    ),
];

/// The embedded example plugin called `name`.
pub fn example(name: &str) -> Option<&'static [u8]> {
    EXAMPLES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Path of a built plugin or fixture (`misbehave`, `nondet`, `wrong-world`, …)
/// in the build tree; for tests and benchmarks.
pub fn built_path(crate_name: &str) -> PathBuf {
    PathBuf::from(PLUGIN_DIR).join(format!("{}.wasm", crate_name.replace('-', "_")))
}

/// Reads a built plugin or fixture; panics with a clear message if missing
/// (it is produced by `build.rs`, so missing means a broken build).
pub fn built(crate_name: &str) -> Vec<u8> {
    let path = built_path(crate_name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
