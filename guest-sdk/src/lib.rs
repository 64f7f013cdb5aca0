//! Cairn guest SDK: write a replicated, deterministic state machine as one trait impl plus one macro, and test it natively against `MockHost`.
//!
//! A Cairn *plugin* is a WebAssembly component (target `wasm32-wasip2`) that
//! every node of a cluster runs on the same committed commands in the same
//! order. You implement [`Plugin`]: `apply` handles a command and may write
//! to the key-value store; `query` answers a read-only question. Inputs and
//! outputs are serde types, carried as JSON. Then
//! [`export_plugin!`]`(YourType)` wires it to the host.
//!
//! Rules that keep every node identical (the host enforces most of them):
//! keep all state in the KV store (each call runs in a fresh instance); use
//! [`Ctx::timestamp_ms`] and [`Ctx::random_bytes`], never clocks or OS
//! randomness; return `Err` to reject a command, which discards all its writes.
//!
//! # Example
//!
//! ```
//! use cairn_sdk::{Ctx, Item, Plugin, PluginError, export_plugin};
//! use serde::{Deserialize, Serialize};
//!
//! /// Commands, as JSON: `{"add":{"n":5}}` or `{"reset":{}}`.
//! #[derive(Deserialize)]
//! #[serde(rename_all = "snake_case")]
//! pub enum Command {
//!     Add { n: u64 },
//!     Reset {},
//! }
//!
//! /// Queries, as JSON: `{"total":{}}`.
//! #[derive(Deserialize)]
//! #[serde(rename_all = "snake_case")]
//! pub enum Query {
//!     Total {},
//! }
//!
//! /// Every output: `{"total":N}`.
//! #[derive(Serialize, Debug, PartialEq)]
//! pub struct Total {
//!     pub total: u64,
//! }
//!
//! const TOTAL: Item<u64> = Item::new("total");
//!
//! pub struct Adder;
//!
//! impl Plugin for Adder {
//!     type Command = Command;
//!     type Output = Total;
//!     type Query = Query;
//!     type QueryOutput = Total;
//!
//!     fn apply(ctx: &mut Ctx, cmd: Command) -> Result<Total, PluginError> {
//!         let total = match cmd {
//!             Command::Add { n } => TOTAL.load_or_default(ctx)?
//!                 .checked_add(n)
//!                 .ok_or_else(|| PluginError::new("overflow", "total would exceed u64"))?,
//!             Command::Reset {} => 0,
//!         };
//!         TOTAL.save(ctx, &total)?;
//!         ctx.emit("total", total.to_string());
//!         Ok(Total { total })
//!     }
//!
//!     fn query(ctx: &Ctx, Query::Total {}: Query) -> Result<Total, PluginError> {
//!         Ok(Total { total: TOTAL.load_or_default(ctx)? })
//!     }
//! }
//!
//! export_plugin!(Adder);
//!
//! # fn main() {
//! // Native tests run against an in-memory host with the real host's rules.
//! use cairn_sdk::MockHost;
//! use serde_json::json;
//!
//! let mock = MockHost::new();
//! // Typed...
//! assert_eq!(mock.apply::<Adder>(Command::Add { n: 5 }), Ok(Total { total: 5 }));
//! // ...or exactly the bytes a client sends.
//! assert_eq!(mock.apply_json::<Adder>(r#"{"add":{"n":2}}"#), Ok(json!({"total": 7})));
//! assert_eq!(mock.query_json::<Adder>(r#"{"total":{}}"#), Ok(json!({"total": 7})));
//! assert_eq!(mock.events().len(), 2);
//!
//! // Malformed input is a `bad-input` error, and changes nothing.
//! let err = mock.apply_json::<Adder>(r#"{"add":{"n":-1}}"#).unwrap_err();
//! assert_eq!(err.code, "bad-input");
//! let err = mock.apply_json::<Adder>(r#"{"add":{"n":18446744073709551615}}"#).unwrap_err();
//! assert_eq!(err.code, "overflow");
//! assert_eq!(mock.query::<Adder>(Query::Total {}), Ok(Total { total: 7 }));
//! # }
//! ```
//!
//! Build the component with `cargo build --target wasm32-wasip2 --release`;
//! the `.wasm` in `target/wasm32-wasip2/release/` is what you deploy. The crate
//! needs `crate-type = ["cdylib", "rlib"]`: `cdylib` for the component,
//! `rlib` for native tests.
//!
//! # Storage
//!
//! [`Item`] and [`Map`] store serde values as JSON under namespaced keys;
//! [`Map`] iterates in key order (strings lexicographically, integers
//! numerically). [`Ctx::get`], [`Ctx::set`], [`Ctx::delete`], [`Ctx::scan`]
//! and [`Ctx::entries`] give raw byte access.

#![deny(missing_docs)]

mod ctx;
mod error;
mod key;
mod mock;
mod storage;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use ctx::{Ctx, Entries, Entry};
pub use error::{KvError, PluginError};
pub use key::Key;
pub use mock::{Event, MockHost};
pub use storage::{Item, Map};

/// Lets the generated code and `default_bindings_module` name this crate as
/// `cairn_sdk` from inside it, the same path user crates use.
extern crate self as cairn_sdk;

/// Bindings generated from `wit/cairn.wit` (world `plugin`). Implementation
/// detail of [`export_plugin!`]; use [`Ctx`] instead.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        default_bindings_module: "cairn_sdk::bindings",
    });
}

/// A Cairn plugin: a deterministic state machine over the host KV store.
///
/// Implement it on a unit struct and pass that to [`export_plugin!`]. Each
/// call gets a fresh instance, so keep no state in statics: read and write
/// through the [`Ctx`].
pub trait Plugin {
    /// A command, decoded from the JSON the client sent to `apply`.
    type Command: DeserializeOwned;
    /// What `apply` returns; encoded as JSON for the client.
    type Output: Serialize;
    /// A query, decoded from the JSON the client sent to `query`.
    type Query: DeserializeOwned;
    /// What `query` returns; encoded as JSON for the client.
    type QueryOutput: Serialize;

    /// Applies one committed command. Every node runs it with the same input,
    /// store and context, so it must depend on nothing else. Returning `Err`
    /// discards every write and event of this call.
    fn apply(ctx: &mut Ctx, command: Self::Command) -> Result<Self::Output, PluginError>;

    /// Answers a read-only query about the current state.
    fn query(ctx: &Ctx, query: Self::Query) -> Result<Self::QueryOutput, PluginError>;

    /// Transforms the data when this code replaces version `from_version` of
    /// the plugin: called once, inside the upgrade's log entry, before any
    /// `apply` of the new code. Returning `Err` (or panicking) rejects the
    /// upgrade on every node: the old version keeps running, its data
    /// untouched. Not called on a first deploy. The default migrates nothing.
    fn migrate(ctx: &mut Ctx, from_version: u64) -> Result<(), PluginError> {
        let _ = (ctx, from_version);
        Ok(())
    }
}

/// Decodes `input` as JSON for `T`, or explains why not as a `bad-input` error.
fn decode_input<T: DeserializeOwned>(input: &[u8], what: &str) -> Result<T, PluginError> {
    serde_json::from_slice(input).map_err(|e| {
        PluginError::bad_input(format!(
            "{what} is not valid JSON for {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

fn encode_output<T: Serialize>(output: &T) -> Result<Vec<u8>, PluginError> {
    serde_json::to_vec(output).map_err(|e| {
        PluginError::new(
            PluginError::BAD_OUTPUT,
            format!("cannot encode the output as JSON: {e}"),
        )
    })
}

/// The wire path of `apply`: JSON bytes in, JSON bytes out. Shared by the
/// wasm export and [`MockHost::apply_json`] so tests exercise the real thing.
pub(crate) fn run_apply<P: Plugin>(ctx: &mut Ctx, input: &[u8]) -> Result<Vec<u8>, PluginError> {
    let command = decode_input(input, "command")?;
    encode_output(&P::apply(ctx, command)?)
}

/// The wire path of `query` (see [`run_apply`]).
pub(crate) fn run_query<P: Plugin>(ctx: &Ctx, input: &[u8]) -> Result<Vec<u8>, PluginError> {
    let query = decode_input(input, "query")?;
    encode_output(&P::query(ctx, query)?)
}

/// Support for [`export_plugin!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    use std::rc::Rc;

    use crate::bindings::PluginError as WitError;
    use crate::{Ctx, Plugin, PluginError};

    pub use crate::bindings;

    fn to_wit(e: PluginError) -> WitError {
        WitError {
            code: e.code,
            message: e.message,
        }
    }

    fn host_ctx() -> Ctx {
        Ctx::from_host(Rc::new(crate::ctx::WasmHost))
    }

    /// The body of the exported `apply`.
    pub fn export_apply<P: Plugin>(input: Vec<u8>) -> Result<Vec<u8>, WitError> {
        crate::run_apply::<P>(&mut host_ctx(), &input).map_err(to_wit)
    }

    /// The body of the exported `query`.
    pub fn export_query<P: Plugin>(input: Vec<u8>) -> Result<Vec<u8>, WitError> {
        crate::run_query::<P>(&host_ctx(), &input).map_err(to_wit)
    }

    /// The body of the exported `migrate`.
    pub fn export_migrate<P: Plugin>(from_version: u64) -> Result<(), WitError> {
        P::migrate(&mut host_ctx(), from_version).map_err(to_wit)
    }
}

/// Exports a [`Plugin`] implementation as the component's `apply`, `query`
/// and `migrate` (world `cairn:plugin/plugin@0.2.0`).
///
/// Invoke it once, at the root of the plugin crate: `export_plugin!(MyPlugin);`.
/// On non-wasm targets it expands to nothing, so the same crate builds and
/// tests natively.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct CairnExport;

            impl $crate::__private::bindings::Guest for CairnExport {
                fn apply(
                    input: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<u8>,
                    $crate::__private::bindings::PluginError,
                > {
                    $crate::__private::export_apply::<$plugin>(input)
                }

                fn query(
                    input: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<u8>,
                    $crate::__private::bindings::PluginError,
                > {
                    $crate::__private::export_query::<$plugin>(input)
                }

                fn migrate(
                    from_version: u64,
                ) -> ::std::result::Result<(), $crate::__private::bindings::PluginError> {
                    $crate::__private::export_migrate::<$plugin>(from_version)
                }
            }

            $crate::__private::bindings::export!(
                CairnExport with_types_in $crate::__private::bindings
            );
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    const LAST: Item<String> = Item::new("last");

    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Cmd {
        Set { value: String },
        Fail { value: String },
    }

    struct Echo;

    impl Plugin for Echo {
        type Command = Cmd;
        type Output = serde_json::Value;
        type Query = serde_json::Value;
        type QueryOutput = Option<String>;

        fn apply(ctx: &mut Ctx, cmd: Cmd) -> Result<serde_json::Value, PluginError> {
            match cmd {
                Cmd::Set { value } => {
                    LAST.save(ctx, &value)?;
                    Ok(json!({ "index": ctx.index(), "value": value }))
                }
                Cmd::Fail { value } => {
                    LAST.save(ctx, &value)?;
                    Err(PluginError::new("failed", "on purpose"))
                }
            }
        }

        fn query(ctx: &Ctx, _: serde_json::Value) -> Result<Option<String>, PluginError> {
            LAST.load(ctx)
        }
    }

    #[test]
    fn wire_path_decodes_encodes_and_rolls_back() {
        let mock = MockHost::new();
        assert_eq!(
            mock.apply_json::<Echo>(r#"{"set":{"value":"a"}}"#),
            Ok(json!({"index": 1, "value": "a"}))
        );
        let err = mock
            .apply_json::<Echo>(r#"{"fail":{"value":"b"}}"#)
            .unwrap_err();
        assert_eq!(err.code, "failed");
        assert_eq!(mock.query_json::<Echo>("null"), Ok(json!("a")));
    }

    #[test]
    fn malformed_input_is_bad_input_with_a_useful_message() {
        let mock = MockHost::new();
        for input in [&b"{"[..], b"\xff", br#"{"sett":{}}"#, b""] {
            let err = mock.apply_json::<Echo>(input).unwrap_err();
            assert_eq!(err.code, PluginError::BAD_INPUT);
            assert!(
                err.message.starts_with("command is not valid JSON for"),
                "{err}"
            );
        }
        let err = mock.apply_json::<Echo>(r#"{"sett":{}}"#).unwrap_err();
        assert!(err.message.contains("unknown variant `sett`"), "{err}");
        let err = mock.query_json::<Echo>("nope").unwrap_err();
        assert_eq!(err.code, PluginError::BAD_INPUT);
        assert!(err.message.starts_with("query is not valid JSON"), "{err}");
        // Nothing was applied, but the failed commands still consumed indexes.
        assert_eq!(mock.get(b"last"), None);
    }
}
