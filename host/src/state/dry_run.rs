//! Dry runs of a deploy: apply it (with `migrate`) to a copy of the state and
//! compare, committing nothing. Structural sharing makes the copy O(1).

use serde::Serialize;

use super::{Command, CommandResult, ErrorBody, PluginInfo, QueryError, State};
use crate::runtime::{HostFault, Runtime};

/// Most changed keys a report lists by name (the counts are always complete).
pub const DRY_RUN_LISTED_KEYS: usize = 100;

/// What a deploy would do, found on a copy of this node's applied state.
#[derive(Clone, Debug, Serialize)]
pub struct DryRunReport {
    /// The plugin.
    pub name: String,
    /// Applied index of the state the dry run started from.
    pub applied_index: u64,
    /// The version in force before (`None`: a first deploy).
    pub from_version: Option<u64>,
    /// `"deployed"` or `"failed"`.
    pub outcome: &'static str,
    /// The version the deploy would install (when `outcome` is `deployed`).
    pub deployed: Option<PluginInfo>,
    /// Why it would fail (when `outcome` is `failed`), e.g. `migrate-failed`.
    pub error: Option<ErrorBody>,
    /// Whether the new code has a `migrate` that ran (0.2.0 components on an upgrade).
    pub migrate_ran: bool,
    /// Keys of the plugin's KV the deploy would add, change and remove.
    pub keys_added: u64,
    /// See `keys_added`.
    pub keys_updated: u64,
    /// See `keys_added`.
    pub keys_removed: u64,
    /// The first [`DRY_RUN_LISTED_KEYS`] changed keys (UTF-8, lossy).
    pub keys_changed: Vec<String>,
    /// Each sample query's answer from the running version and from the new one.
    pub queries: Vec<QueryComparison>,
}

/// One sample query, answered by the old and the new version.
#[derive(Clone, Debug, Serialize)]
pub struct QueryComparison {
    /// The query as sent.
    pub query: serde_json::Value,
    /// The running version's answer (`None`: no version runs).
    pub old: Option<Answer>,
    /// The new version's answer (`None`: the deploy would fail).
    pub new: Option<Answer>,
}

/// A query's answer: its output (JSON if it parses, else text) or its error.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// The query's output.
    Ok(serde_json::Value),
    /// The plugin refused.
    Error(ErrorBody),
}

fn answer(
    state: &State,
    runtime: &Runtime,
    name: &str,
    input: &[u8],
    now_ms: u64,
) -> Result<Option<Answer>, HostFault> {
    if state.plugin(name).is_none() {
        return Ok(None);
    }
    Ok(Some(match state.query(runtime, name, input, now_ms) {
        Ok(out) => Answer::Ok(serde_json::from_slice(&out.output).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&out.output).into_owned())
        })),
        Err(QueryError::Failed(e)) => Answer::Error(e),
        Err(QueryError::Host(f)) => return Err(f),
    }))
}

impl State {
    /// Applies `deploy` (a [`Command::Deploy`]) to a copy of this state as the
    /// next log entry, then runs `queries` (JSON values sent as query input)
    /// against this state and the copy. Nothing here changes.
    pub fn dry_run(
        &self,
        runtime: &Runtime,
        deploy: &Command,
        queries: &[serde_json::Value],
        now_ms: u64,
    ) -> Result<DryRunReport, HostFault> {
        let Command::Deploy { name, .. } = deploy else {
            return Err(HostFault("a dry run takes a deploy".into()));
        };
        let before = self.plugin(name);
        let mut copy = self.clone();
        let result = copy.apply(runtime, self.applied_index + 1, deploy)?;
        let (deployed, error) = match result {
            CommandResult::Deployed(info) => (Some(info), None),
            CommandResult::Failed(e) => (None, Some(e)),
            other => return Err(HostFault(format!("a deploy produced {other}"))),
        };
        let (old_kv, new_kv) = (self.kv(name), copy.kv(name));
        let (mut added, mut updated, mut removed) = (0, 0, 0);
        let mut listed = Vec::new();
        for item in old_kv.diff(&new_kv) {
            let key = match item {
                imbl::ordmap::DiffItem::Add(k, _) => {
                    added += 1;
                    k
                }
                imbl::ordmap::DiffItem::Update { new: (k, _), .. } => {
                    updated += 1;
                    k
                }
                imbl::ordmap::DiffItem::Remove(k, _) => {
                    removed += 1;
                    k
                }
            };
            if listed.len() < DRY_RUN_LISTED_KEYS {
                listed.push(String::from_utf8_lossy(key).into_owned());
            }
        }
        let new_code = deployed
            .as_ref()
            .is_some_and(|d| before.as_ref().is_none_or(|b| b.sha256 != d.sha256));
        let migrate_ran = new_code
            && before.is_some()
            && copy
                .code
                .get(
                    &deployed
                        .as_ref()
                        .map(|d| d.sha256.clone())
                        .unwrap_or_default(),
                )
                .is_some_and(|code| runtime.exports_migrate(code));
        let mut compared = Vec::with_capacity(queries.len());
        for q in queries {
            let input = q.to_string().into_bytes();
            compared.push(QueryComparison {
                query: q.clone(),
                old: answer(self, runtime, name, &input, now_ms)?,
                new: match &deployed {
                    Some(_) => answer(&copy, runtime, name, &input, now_ms)?,
                    None => None,
                },
            });
        }
        Ok(DryRunReport {
            name: name.clone(),
            applied_index: self.applied_index,
            from_version: before.map(|b| b.version),
            outcome: if deployed.is_some() {
                "deployed"
            } else {
                "failed"
            },
            deployed,
            error,
            migrate_ran,
            keys_added: added,
            keys_updated: updated,
            keys_removed: removed,
            keys_changed: listed,
            queries: compared,
        })
    }
}
