//! Counter: the hello-world Cairn plugin — one replicated `u64`. JSON wire format:
//! - apply `{"increment":{"by":5}}` → `{"value":5}` (error `overflow` past `u64::MAX`)
//! - apply or query `{"get":{}}` → `{"value":5}` (as apply: a read through the log)

use cairn_sdk::{Ctx, Item, Plugin, PluginError, export_plugin};
use serde::{Deserialize, Serialize};

/// Commands for `apply`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Adds `by` to the counter.
    Increment { by: u64 },
    /// Returns the value unchanged.
    Get {},
}

/// Queries: only `{"get":{}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// Returns the value.
    Get {},
}

/// Every output: the counter's value after the call.
#[derive(Debug, PartialEq, Serialize)]
pub struct Value {
    pub value: u64,
}

const VALUE: Item<u64> = Item::new("value");

/// The plugin.
pub struct Counter;

impl Plugin for Counter {
    type Command = Command;
    type Output = Value;
    type Query = Query;
    type QueryOutput = Value;

    fn apply(ctx: &mut Ctx, command: Command) -> Result<Value, PluginError> {
        let Command::Increment { by } = command else {
            return Self::query(ctx, Query::Get {});
        };
        let overflow = || PluginError::new("overflow", "the counter would pass u64::MAX");
        let old = VALUE.load_or_default(ctx)?;
        let value = old.checked_add(by).ok_or_else(overflow)?;
        VALUE.save(ctx, &value)?;
        Ok(Value { value })
    }

    fn query(ctx: &Ctx, Query::Get {}: Query) -> Result<Value, PluginError> {
        VALUE.load_or_default(ctx).map(|value| Value { value })
    }
}

export_plugin!(Counter);
