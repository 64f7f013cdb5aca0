//! Kv: a replicated JSON key-value store with compare-and-swap and ordered listing; the plugin benchmarks and linearizability tests drive.
//!
//! Keys are strings; values are any JSON value except `null` (which means
//! "absent" everywhere). Values compare as JSON values, so `1` and `1.0`
//! differ. Wire format (JSON):
//!
//! | call  | input | output |
//! |-------|-------|--------|
//! | apply | `{"put":{"key":"a","value":1}}` | `{"previous":null}` (the value replaced) |
//! | apply | `{"delete":{"key":"a"}}` | `{"previous":1}` |
//! | apply | `{"cas":{"key":"a","expected":null,"new":1}}` | `{"previous":null}` |
//! | apply | `{"get":{"key":"a"}}` (a read through the log) | `{"value":1}` |
//! | query | `{"get":{"key":"a"}}` | `{"value":1}` or `{"value":null}` |
//! | query | `{"list":{"prefix":"user/","limit":10}}` | `{"entries":[{"key":"user/1","value":1}]}` |
//! | query | `{"range":{"start":"a","end":"m","limit":10}}` | `{"entries":[...]}` |
//!
//! `cas`: `expected` `null` or omitted means "the key must not exist"; `new`
//! `null` or omitted deletes the key. On mismatch nothing changes and the call
//! fails with code `cas-mismatch` and message `expected <json>, current <json>`
//! (`null` for absent). `put` of `null` is `bad-input`. Listing: keys in
//! byte order; `start` inclusive, `end` exclusive, both optional; `prefix`
//! defaults to `""`, `limit` to 100 (at most 10000).

use cairn_sdk::{Ctx, Map, Plugin, PluginError, export_plugin};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Commands for `apply`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Stores `value` under `key`.
    Put { key: String, value: Value },
    /// Removes `key`.
    Delete { key: String },
    /// Sets `key` to `new` only if it currently holds `expected`.
    Cas {
        key: String,
        #[serde(default)]
        expected: Value,
        #[serde(default)]
        new: Value,
    },
    /// Reads `key` through the log (linearizable by construction).
    Get { key: String },
}

/// Queries for `query`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// Reads `key`.
    Get { key: String },
    /// Lists entries whose key starts with `prefix`.
    List {
        #[serde(default)]
        prefix: String,
        limit: Option<usize>,
    },
    /// Lists entries with `start <= key < end`.
    Range {
        start: Option<String>,
        end: Option<String>,
        limit: Option<usize>,
    },
}

/// Output of `apply` and `get`; serializes as `{"previous":…}` or `{"value":…}`.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// What the key held before a write (`null`: absent).
    Previous(Option<Value>),
    /// What the key holds (`null`: absent).
    Value(Option<Value>),
    /// Entries of a listing, in key order.
    Entries(Vec<Entry>),
}

/// One listed entry.
#[derive(Debug, PartialEq, Serialize)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: Value,
}

const DATA: Map<&str, Value> = Map::new("kv");
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

/// The plugin.
pub struct Kv;

impl Plugin for Kv {
    type Command = Command;
    type Output = Output;
    type Query = Query;
    type QueryOutput = Output;

    fn apply(ctx: &mut Ctx, command: Command) -> Result<Output, PluginError> {
        let (key, expected, new) = match command {
            Command::Get { key } => return Ok(Output::Value(DATA.load(ctx, &key)?)),
            Command::Put {
                value: Value::Null, ..
            } => {
                return Err(PluginError::bad_input("put of null; use delete"));
            }
            Command::Put { key, value } => (key, None, value),
            Command::Delete { key } => (key, None, Value::Null),
            Command::Cas { key, expected, new } => (key, Some(expected), new),
        };
        // One read serves both the CAS check and the returned previous value.
        let previous = DATA.load(ctx, &key)?;
        if let Some(expected) = expected {
            let current = previous.as_ref().unwrap_or(&Value::Null);
            if *current != expected {
                let msg = format!("expected {expected}, current {current}");
                return Err(PluginError::new("cas-mismatch", msg));
            }
        }
        match new {
            Value::Null if previous.is_none() => {} // nothing to delete: skip the host call
            Value::Null => DATA.remove(ctx, &key)?,
            value => DATA.save(ctx, &key, &value)?,
        }
        Ok(Output::Previous(previous))
    }

    fn query(ctx: &Ctx, query: Query) -> Result<Output, PluginError> {
        let limit = |l: Option<usize>| l.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
        let entries = match query {
            Query::Get { key } => return Ok(Output::Value(DATA.load(ctx, &key)?)),
            Query::List { prefix, limit: l } => DATA.prefix(ctx, &prefix, limit(l))?,
            Query::Range {
                start,
                end,
                limit: l,
            } => DATA.range(ctx, start.as_deref(), end.as_deref(), limit(l))?,
        };
        let entries = entries.into_iter().map(|(key, value)| Entry { key, value });
        Ok(Output::Entries(entries.collect()))
    }
}

export_plugin!(Kv);
