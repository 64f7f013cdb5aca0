//! Node-local per-plugin call counters (calls, failures by code, fuel used)
//! for `/metrics`. Counted where every call passes; never part of replicated
//! state, so they may differ between nodes (queries, retried host faults).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{CallMode, CallOutcome};

/// What one plugin's calls of one mode used so far on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginCalls {
    /// Calls run.
    pub calls: u64,
    /// Fuel the calls consumed.
    pub fuel_consumed: u64,
    /// Failed calls by error code.
    pub failures: BTreeMap<String, u64>,
}

/// Counters keyed by plugin name, then by mode (`[apply, query]`): looked up
/// by `&str`, so counting a call allocates nothing once the plugin is known.
#[derive(Default)]
pub struct CallCounters {
    by_plugin: Mutex<BTreeMap<String, [PluginCalls; 2]>>,
}

/// The label of a call mode.
pub fn mode_label(mode: CallMode) -> &'static str {
    match mode {
        CallMode::Apply => "apply",
        CallMode::Query => "query",
    }
}

/// The slot of a mode in a plugin's `[apply, query]` pair.
fn mode_slot(mode: CallMode) -> usize {
    match mode {
        CallMode::Apply => 0,
        CallMode::Query => 1,
    }
}

const MODES: [CallMode; 2] = [CallMode::Apply, CallMode::Query];

impl CallCounters {
    /// Counts one call of `plugin`.
    pub(super) fn record(&self, plugin: &str, mode: CallMode, outcome: &CallOutcome) {
        let mut map = self.by_plugin.lock().unwrap_or_else(|p| p.into_inner());
        let modes = match map.get_mut(plugin) {
            Some(modes) => modes,
            None => map.entry(plugin.to_string()).or_default(),
        };
        let entry = &mut modes[mode_slot(mode)];
        entry.calls += 1;
        entry.fuel_consumed += outcome.stats.fuel_consumed;
        if let Err(e) = &outcome.result {
            *entry.failures.entry(e.to_body().code).or_default() += 1;
        }
    }

    /// A copy of every counter of a mode that ran at least once, ordered by
    /// plugin and mode.
    pub fn snapshot(&self) -> Vec<((String, &'static str), PluginCalls)> {
        let map = self.by_plugin.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .flat_map(|(plugin, modes)| {
                MODES
                    .iter()
                    .filter(|&&mode| modes[mode_slot(mode)].calls > 0)
                    .map(|&mode| {
                        (
                            (plugin.clone(), mode_label(mode)),
                            modes[mode_slot(mode)].clone(),
                        )
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{CallError, CallStats, Output};

    fn outcome(result: Result<Output, CallError>, fuel: u64) -> CallOutcome {
        CallOutcome {
            result,
            writes: Default::default(),
            stats: CallStats {
                fuel_consumed: fuel,
                ..CallStats::default()
            },
        }
    }

    #[test]
    fn counts_by_plugin_then_mode_and_lists_only_modes_that_ran() {
        let counters = CallCounters::default();
        let ok = || {
            Ok(Output {
                output: Vec::new(),
                events: Vec::new(),
            })
        };
        counters.record("kv", CallMode::Query, &outcome(ok(), 5));
        counters.record("counter", CallMode::Apply, &outcome(ok(), 10));
        counters.record(
            "counter",
            CallMode::Apply,
            &outcome(Err(CallError::WriteInQuery), 7),
        );
        counters.record("counter", CallMode::Query, &outcome(ok(), 1));

        let snapshot = counters.snapshot();
        let keys: Vec<_> = snapshot
            .iter()
            .map(|((p, m), _)| (p.as_str(), *m))
            .collect();
        assert_eq!(
            keys,
            [("counter", "apply"), ("counter", "query"), ("kv", "query")]
        );
        let apply = &snapshot[0].1;
        assert_eq!((apply.calls, apply.fuel_consumed), (2, 17));
        let code = CallError::WriteInQuery.to_body().code;
        assert_eq!(apply.failures.get(&code), Some(&1));
        assert_eq!(snapshot[1].1.calls, 1);
        assert!(snapshot[2].1.failures.is_empty());
    }
}
