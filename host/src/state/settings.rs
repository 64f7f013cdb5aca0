//! The cluster settings: every limit that can change a command's outcome, kept
//! in the replicated state and changed only through the log (DESIGN.md rule 8).
//!
//! A node's flags only propose the settings a new cluster starts with; once the
//! cluster has a settings record, every node follows it.

use serde::{Deserialize, Serialize};

use super::ErrorBody;
use crate::runtime::{EngineParams, Limits};

/// The largest `max_entry_bytes` a cluster may choose. The peer RPC body limit
/// is derived from it, so no entry the cluster can commit is ever too large
/// for a follower to accept, whatever the settings are changed to later.
pub const MAX_ENTRY_BYTES_CEILING: u64 = 256 * 1024 * 1024;

/// Room a log entry needs beside its largest payload (plugin name, limits,
/// timestamps, idempotency key, encoding framing).
pub const ENTRY_OVERHEAD_BYTES: u64 = 64 * 1024;

/// Largest linear memory a wasm32 instance can address.
const WASM32_MEMORY_CEILING_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Bounds for the wasm stack: below this even a tiny plugin cannot start;
/// above it one deep recursion pins a lot of host memory.
const STACK_BYTES_RANGE: std::ops::RangeInclusive<u64> = 64 * 1024..=64 * 1024 * 1024;

/// The replicated limits. Defaults are what a new cluster starts with unless
/// the initialising node's flags say otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// Fuel per call for a plugin deployed without `fuel_per_call`.
    pub default_fuel_per_call: u64,
    /// Most fuel a plugin may ask for per call (a deploy above it is a `400`);
    /// also caps plugins deployed before the ceiling was lowered.
    pub max_fuel_per_call: u64,
    /// Memory cap per instance for a plugin deployed without `memory_limit_bytes`.
    pub default_memory_limit_bytes: u64,
    /// Most linear memory a plugin may ask for per instance.
    pub max_memory_limit_bytes: u64,
    /// Wasm stack per call; running past it traps.
    pub max_stack_bytes: u64,
    /// Largest plugin component accepted for deploy.
    pub max_plugin_bytes: u64,
    /// Largest log entry a client request may become (`413 entry-too-large`).
    pub max_entry_bytes: u64,
    /// Most events each plugin's event log keeps; the oldest commands' events
    /// go first. At least `limits.max_events_per_call`, so a command's events
    /// always fit.
    pub event_retention_count: u64,
    /// Most bytes (topics plus payloads) each plugin's event log keeps; at
    /// least `limits.max_event_bytes_per_call`.
    pub event_retention_bytes: u64,
    /// The limits each call runs under.
    pub limits: Limits,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        Self {
            default_fuel_per_call: 100_000_000,
            // Parsing a 1 MiB JSON value in a Rust plugin takes a few billion;
            // at roughly a nanosecond per unit this bounds a call to seconds.
            max_fuel_per_call: 10_000_000_000,
            default_memory_limit_bytes: 64 * MIB,
            max_memory_limit_bytes: 256 * MIB,
            max_stack_bytes: 512 * 1024,
            max_plugin_bytes: 64 * MIB,
            max_entry_bytes: 64 * MIB + ENTRY_OVERHEAD_BYTES,
            event_retention_count: 10_000,
            event_retention_bytes: 64 * MIB,
            limits: Limits::default(),
        }
    }
}

/// Why a settings record was refused; its message names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

impl SettingsError {
    /// The stable code of every refused settings change.
    pub const CODE: &'static str = "invalid-settings";

    /// As a wire error.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody::new(Self::CODE, self.0.clone())
    }
}

impl ClusterSettings {
    /// The engine these settings call for.
    pub fn engine_params(&self) -> EngineParams {
        EngineParams {
            max_stack_bytes: self.max_stack_bytes as usize,
            max_memory_bytes: self.max_memory_limit_bytes as usize,
        }
    }

    /// Refuses a plugin's per-call budgets above the ceilings (`fuel-too-large`,
    /// `memory-limit-too-large`): checked by the node for a prompt answer and
    /// again by the state machine against the settings in force at apply.
    pub fn check_plugin_limits(
        &self,
        fuel_per_call: u64,
        memory_limit_bytes: u64,
    ) -> Result<(), ErrorBody> {
        if fuel_per_call > self.max_fuel_per_call {
            return Err(ErrorBody::new(
                "fuel-too-large",
                format!(
                    "fuel_per_call may be at most {} (the cluster's max_fuel_per_call)",
                    self.max_fuel_per_call
                ),
            ));
        }
        if memory_limit_bytes > self.max_memory_limit_bytes {
            return Err(ErrorBody::new(
                "memory-limit-too-large",
                format!(
                    "memory_limit_bytes may be at most {} (the cluster's max_memory_limit_bytes)",
                    self.max_memory_limit_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Checks every field and the relations between them, so a record that
    /// reaches the log can never contradict itself.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let l = &self.limits;
        let positive: [(&str, u64); 19] = [
            ("default_fuel_per_call", self.default_fuel_per_call),
            ("max_fuel_per_call", self.max_fuel_per_call),
            (
                "default_memory_limit_bytes",
                self.default_memory_limit_bytes,
            ),
            ("max_memory_limit_bytes", self.max_memory_limit_bytes),
            ("max_plugin_bytes", self.max_plugin_bytes),
            ("max_entry_bytes", self.max_entry_bytes),
            ("event_retention_count", self.event_retention_count),
            ("event_retention_bytes", self.event_retention_bytes),
            ("limits.max_key_bytes", l.max_key_bytes as u64),
            ("limits.max_value_bytes", l.max_value_bytes as u64),
            ("limits.max_scan_entries", l.max_scan_entries as u64),
            ("limits.max_random_bytes", l.max_random_bytes as u64),
            ("limits.max_events_per_call", l.max_events_per_call as u64),
            (
                "limits.max_event_bytes_per_call",
                l.max_event_bytes_per_call as u64,
            ),
            ("limits.max_output_bytes", l.max_output_bytes as u64),
            ("limits.max_table_elements", l.max_table_elements as u64),
            (
                "limits.max_write_bytes_per_call",
                l.max_write_bytes_per_call as u64,
            ),
            (
                "limits.max_scan_bytes_per_call",
                l.max_scan_bytes_per_call as u64,
            ),
            ("limits.fuel_per_host_call", l.fuel_per_host_call),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(SettingsError(format!("{field} must be > 0")));
            }
        }
        let order = |small: &str, s: u64, large: &str, l: u64| {
            if s > l {
                Err(SettingsError(format!(
                    "{small} ({s}) must be <= {large} ({l})"
                )))
            } else {
                Ok(())
            }
        };
        order(
            "default_fuel_per_call",
            self.default_fuel_per_call,
            "max_fuel_per_call",
            self.max_fuel_per_call,
        )?;
        order(
            "default_memory_limit_bytes",
            self.default_memory_limit_bytes,
            "max_memory_limit_bytes",
            self.max_memory_limit_bytes,
        )?;
        order(
            "max_memory_limit_bytes",
            self.max_memory_limit_bytes,
            "the wasm32 address space",
            WASM32_MEMORY_CEILING_BYTES,
        )?;
        order(
            "max_plugin_bytes + entry overhead",
            self.max_plugin_bytes.saturating_add(ENTRY_OVERHEAD_BYTES),
            "max_entry_bytes",
            self.max_entry_bytes,
        )?;
        order(
            "max_entry_bytes",
            self.max_entry_bytes,
            "the ceiling",
            MAX_ENTRY_BYTES_CEILING,
        )?;
        order(
            "limits.max_key_bytes + limits.max_value_bytes",
            (l.max_key_bytes as u64).saturating_add(l.max_value_bytes as u64),
            "limits.max_write_bytes_per_call",
            l.max_write_bytes_per_call as u64,
        )?;
        // One command's events always fit the log, so retention never drops
        // the events of the command that just emitted them.
        order(
            "limits.max_events_per_call",
            l.max_events_per_call as u64,
            "event_retention_count",
            self.event_retention_count,
        )?;
        order(
            "limits.max_event_bytes_per_call",
            l.max_event_bytes_per_call as u64,
            "event_retention_bytes",
            self.event_retention_bytes,
        )?;
        if !STACK_BYTES_RANGE.contains(&self.max_stack_bytes) {
            return Err(SettingsError(format!(
                "max_stack_bytes ({}) must be within {}..={}",
                self.max_stack_bytes,
                STACK_BYTES_RANGE.start(),
                STACK_BYTES_RANGE.end()
            )));
        }
        Ok(())
    }

    /// The fields (dotted names) where `self` and `other` differ, with both values,
    /// for telling an operator that a node's flags are not what the cluster uses.
    pub fn differences(&self, other: &Self) -> Vec<(String, String, String)> {
        let ours = flatten(&serde_json::to_value(self).unwrap_or_default());
        let theirs = flatten(&serde_json::to_value(other).unwrap_or_default());
        ours.into_iter()
            .zip(theirs)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, b)| (a.0, a.1, b.1))
            .collect()
    }

    /// Applies a JSON object of changes (`{"max_fuel_per_call": N, "limits":
    /// {"max_value_bytes": M}}`) to a copy of these settings. Unknown fields are refused.
    pub fn merged(&self, changes: &serde_json::Value) -> Result<Self, SettingsError> {
        let mut value = serde_json::to_value(self).map_err(|e| SettingsError(e.to_string()))?;
        merge_known(&mut value, changes, "")?;
        serde_json::from_value(value).map_err(|e| SettingsError(e.to_string()))
    }
}

fn merge_known(
    into: &mut serde_json::Value,
    changes: &serde_json::Value,
    path: &str,
) -> Result<(), SettingsError> {
    let (Some(target), Some(changes)) = (into.as_object_mut(), changes.as_object()) else {
        return Err(SettingsError(format!(
            "expected a JSON object{}",
            if path.is_empty() {
                String::new()
            } else {
                format!(" for {path}")
            }
        )));
    };
    for (key, change) in changes {
        let name = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let Some(slot) = target.get_mut(key) else {
            return Err(SettingsError(format!("unknown setting {name:?}")));
        };
        if slot.is_object() {
            merge_known(slot, change, &name)?;
        } else if slot.is_u64() && change.is_u64() {
            *slot = change.clone();
        } else {
            return Err(SettingsError(format!(
                "{name} must be a non-negative integer"
            )));
        }
    }
    Ok(())
}

/// `(dotted.name, value)` for every leaf, in a stable order.
fn flatten(value: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(v: &serde_json::Value, prefix: &str, out: &mut Vec<(String, String)>) {
        match v.as_object() {
            Some(map) => {
                for (k, v) in map {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(v, &name, out);
                }
            }
            None => out.push((prefix.to_string(), v.to_string())),
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_fit_a_64_mib_plugin() {
        let s = ClusterSettings::default();
        s.validate().unwrap();
        assert!(s.max_plugin_bytes >= 64 * 1024 * 1024);
    }

    #[test]
    fn contradictions_are_refused() {
        let bad = [
            ClusterSettings {
                default_fuel_per_call: 10,
                max_fuel_per_call: 5,
                ..Default::default()
            },
            ClusterSettings {
                max_plugin_bytes: ClusterSettings::default().max_entry_bytes,
                ..Default::default()
            },
            ClusterSettings {
                max_entry_bytes: MAX_ENTRY_BYTES_CEILING + 1,
                max_plugin_bytes: MAX_ENTRY_BYTES_CEILING,
                ..Default::default()
            },
            ClusterSettings {
                max_stack_bytes: 1,
                ..Default::default()
            },
            ClusterSettings {
                event_retention_count: 0,
                ..Default::default()
            },
            ClusterSettings {
                event_retention_bytes: 0,
                ..Default::default()
            },
            ClusterSettings {
                event_retention_count: 10,
                ..Default::default()
            },
            ClusterSettings {
                max_memory_limit_bytes: 8 << 30,
                ..Default::default()
            },
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
    }

    #[test]
    fn merge_changes_known_fields_only() {
        let s = ClusterSettings::default();
        let m = s
            .merged(&serde_json::json!({"max_fuel_per_call": 7, "limits": {"max_value_bytes": 9}}))
            .unwrap();
        assert_eq!(m.max_fuel_per_call, 7);
        assert_eq!(m.limits.max_value_bytes, 9);
        assert_eq!(
            s.differences(&m)
                .into_iter()
                .map(|d| d.0)
                .collect::<Vec<_>>(),
            ["limits.max_value_bytes", "max_fuel_per_call"]
        );
        for bad in [
            serde_json::json!({"nope": 1}),
            serde_json::json!({"limits": {"nope": 1}}),
            serde_json::json!({"max_fuel_per_call": -1}),
            serde_json::json!({"limits": 3}),
            serde_json::json!([1]),
        ] {
            assert!(s.merged(&bad).is_err(), "{bad}");
        }
    }
}
