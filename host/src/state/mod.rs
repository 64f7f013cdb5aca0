//! The replicated state: plugin registry, code blobs, per-plugin ordered KV,
//! per-plugin event logs and the idempotency table; applying one command; the
//! state hash.
//!
//! Everything here is a persistent (structurally shared) map, so cloning the
//! whole state for a snapshot is O(1) and never stalls applies.

mod command;
mod dry_run;
mod events;
mod hash;
mod idempotency;
mod registry;
mod settings;
pub mod snapshot;
pub mod tokens;

pub use command::*;
pub use dry_run::{Answer, DRY_RUN_LISTED_KEYS, DryRunReport, QueryComparison};
pub use events::{BadEventId, EventId, EventLog, EventRead, Gone, event_bytes};
pub use idempotency::{
    Fingerprint, IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEYS_RETAINED, IdempotencyRecord, Prior,
    apply_fingerprint, deploy_fingerprint, key_reused,
};
pub use settings::{ClusterSettings, ENTRY_OVERHEAD_BYTES, MAX_ENTRY_BYTES_CEILING, SettingsError};
pub use tokens::{Role, TokenInfo, Tokens};

pub use crate::runtime::HostFault;
use crate::runtime::{CallContext, CallError, CallMode, Code, Kv, Runtime};

/// Code of a settings change based on settings that changed meanwhile.
pub const SETTINGS_CONFLICT: &str = "settings-conflict";

/// Code of a deploy by sha256 whose blob the state no longer holds (the
/// plugin using it was removed meanwhile); it changed nothing.
pub const CODE_MISSING: &str = "code-missing";

/// Code of an upgrade rejected because the new code's `migrate` failed; the
/// old version keeps running with its data untouched.
pub const MIGRATE_FAILED: &str = "migrate-failed";

/// Longest plugin name.
pub const MAX_PLUGIN_NAME_BYTES: usize = 64;

/// How often an apply runs when the host itself fails (pool busy, engine or
/// compile failure) before the fault is handed up to stop the node.
pub const HOST_FAULT_ATTEMPTS: u32 = 4;

/// Pause before the second attempt; it doubles for each further one
/// (10 + 20 + 40 ms in all), enough for a busy pool slot to free up.
pub const HOST_FAULT_FIRST_BACKOFF_MS: u64 = 10;

/// Why a query has no output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The plugin (or its budgets) refused: a `4xx` for the client.
    #[error("{0}")]
    Failed(ErrorBody),
    /// This node could not run the query: a `503`, try again or elsewhere.
    #[error(transparent)]
    Host(#[from] HostFault),
}

/// Lowercase hex sha256 of `bytes`: how code is addressed.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Results that left the state untouched and must not be remembered under an
/// idempotency key: the same request may succeed when sent again.
fn changed_nothing(result: &CommandResult) -> bool {
    matches!(result, CommandResult::Failed(e) if e.code == CODE_MISSING)
}

/// Runs `call` (an apply or a migrate inside log entry `index`) until it
/// ends without a host fault, pausing between attempts; after
/// [`HOST_FAULT_ATTEMPTS`] the fault is handed up to stop the node (DESIGN.md
/// rule 9). `Ok(None)`: the call had nothing to run.
pub(crate) fn retry_host_faults(
    name: &str,
    index: u64,
    mut call: impl FnMut() -> Result<Option<crate::runtime::CallOutcome>, HostFault>,
) -> Result<Option<crate::runtime::CallOutcome>, HostFault> {
    let mut backoff_ms = HOST_FAULT_FIRST_BACKOFF_MS;
    let mut attempt = 1;
    loop {
        let fault = match call() {
            Ok(Some(outcome)) => match &outcome.result {
                Err(CallError::Host(fault)) => fault.clone(),
                _ => return Ok(Some(outcome)),
            },
            Ok(None) => return Ok(None),
            Err(HostFault(fault)) => fault,
        };
        if attempt == HOST_FAULT_ATTEMPTS {
            return Err(HostFault(format!(
                "running {name:?} at index {index} failed {attempt} times: {fault}"
            )));
        }
        tracing::warn!(plugin = name, index, attempt, %fault, "host fault inside a log entry; retrying");
        // A blocking thread (the state machine's apply runs on one).
        std::thread::sleep(std::time::Duration::from_millis(backoff_ms));
        backoff_ms *= 2;
        attempt += 1;
    }
}

/// The whole replicated state of one node.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub(crate) plugins: imbl::OrdMap<String, PluginInfo>,
    /// Component bytes by hex sha256; only versions in the registry are kept.
    pub(crate) code: imbl::OrdMap<String, Code>,
    pub(crate) kv: imbl::OrdMap<String, Kv>,
    /// Each plugin's retained events (a plugin appears once it emitted one).
    pub(crate) events: imbl::OrdMap<String, EventLog>,
    /// `plugin \0 key` → the first attempt's fingerprint and result.
    pub(crate) idempotency: imbl::OrdMap<String, IdempotencyRecord>,
    /// index → idempotency key, to forget the oldest deterministically.
    pub(crate) idempotency_by_index: imbl::OrdMap<u64, String>,
    pub(crate) applied_index: u64,
    /// Timestamp of the last applied command: the lowest time a query sees
    /// (queries see the serving node's clock, clamped to this). Never
    /// decreases: a command stamped earlier (a new leader whose clock is
    /// behind) runs at this time instead.
    pub(crate) last_timestamp_ms: u64,
    /// The limits every outcome is decided by.
    pub(crate) settings: ClusterSettings,
    /// Log index of the last settings record (0: none yet, the defaults apply).
    pub(crate) settings_index: u64,
    /// The bearer tokens clients authenticate with (hashes only).
    pub(crate) tokens: Tokens,
}

/// Checks a plugin name: 1–64 bytes of `[a-z0-9_-]`, starting with a letter or digit.
pub fn validate_plugin_name(name: &str) -> Result<(), ErrorBody> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    let ok_start = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.is_empty() || name.len() > MAX_PLUGIN_NAME_BYTES || !ok_chars || !ok_start {
        return Err(ErrorBody::new(
            "invalid-plugin-name",
            format!(
                "plugin names are 1-{MAX_PLUGIN_NAME_BYTES} characters of a-z, 0-9, '-' and '_', got {name:?}"
            ),
        ));
    }
    Ok(())
}

fn not_found(name: &str) -> ErrorBody {
    ErrorBody::new(
        "plugin-not-found",
        format!("no plugin named {name:?} is deployed"),
    )
}

impl State {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Index of the last entry applied (commands, membership and blanks).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The registry, in name order.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.plugins.values().cloned().collect()
    }

    /// One registry entry.
    pub fn plugin(&self, name: &str) -> Option<PluginInfo> {
        self.plugins.get(name).cloned()
    }

    /// The cluster settings in force.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// Log index of the last settings record; 0 while the cluster runs on defaults.
    pub fn settings_index(&self) -> u64 {
        self.settings_index
    }

    /// The token table.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// A plugin's committed KV (empty if unknown).
    pub fn kv(&self, name: &str) -> Kv {
        self.kv.get(name).cloned().unwrap_or_default()
    }

    /// Plugin `name`'s events from `from` on (at most about `max_bytes`, at
    /// least one): `None` when no such plugin is deployed, `Err` when
    /// retention dropped some of them.
    pub fn read_events(
        &self,
        name: &str,
        from: EventId,
        max_bytes: u64,
    ) -> Option<Result<EventRead, Gone>> {
        self.plugins.get(name)?;
        Some(match self.events.get(name) {
            Some(log) => log.read(from, max_bytes),
            None => Ok(EventRead::default()),
        })
    }

    /// Plugin `name`'s event log, if it emitted any.
    pub fn event_log(&self, name: &str) -> Option<&EventLog> {
        self.events.get(name)
    }

    /// Applies the retention in force to every event log (after it changed).
    fn trim_events(&mut self) {
        let (count, bytes) = (
            self.settings.event_retention_count,
            self.settings.event_retention_bytes,
        );
        let over: Vec<String> = self
            .events
            .iter()
            .filter(|(_, log)| log.over(count, bytes))
            .map(|(name, _)| name.clone())
            .collect();
        for name in over {
            if let Some(log) = self.events.get_mut(&name) {
                log.trim(count, bytes);
            }
        }
    }

    /// Records that a non-command entry (membership, blank) was applied.
    pub fn advance(&mut self, index: u64) {
        debug_assert!(
            index > self.applied_index || index == 0,
            "applied index must grow"
        );
        self.applied_index = self.applied_index.max(index);
    }

    /// Applies one committed command at log `index`. Deterministic: the same
    /// state, index and command give the same result and new state on every node.
    ///
    /// A [`HostFault`] means this node could not run the command (after
    /// retrying); nothing is recorded for it, the state may be half advanced
    /// and must be discarded, and the node must stop rather than go on without
    /// the command (DESIGN.md rule 9).
    pub fn apply(
        &mut self,
        runtime: &Runtime,
        index: u64,
        cmd: &Command,
    ) -> Result<CommandResult, HostFault> {
        self.advance(index);
        Ok(match cmd {
            Command::Deploy {
                name,
                code,
                fuel_per_call,
                memory_limit_bytes,
                timestamp_ms,
                idempotency_key,
            } => {
                self.observe_clock(*timestamp_ms);
                let (fuel, memory) = (*fuel_per_call, *memory_limit_bytes);
                self.keyed(
                    index,
                    name,
                    idempotency_key.as_deref(),
                    || deploy_fingerprint(name, &code.sha256(), fuel, memory),
                    |s| s.deploy(runtime, index, name, code, fuel, memory),
                )?
            }
            Command::SetLimits {
                name,
                fuel_per_call,
                memory_limit_bytes,
            } => self.set_limits(index, name, *fuel_per_call, *memory_limit_bytes),
            Command::Remove { name } => self.remove(name),
            Command::UpdateSettings { expected_index, .. }
                if *expected_index != self.settings_index =>
            {
                CommandResult::Failed(ErrorBody::new(
                    SETTINGS_CONFLICT,
                    format!(
                        "the settings changed at index {} since the change was made (based on index {expected_index}); read them again",
                        self.settings_index
                    ),
                ))
            }
            Command::UpdateSettings { settings, .. } => match settings.validate() {
                Ok(()) => {
                    self.settings = settings.clone();
                    self.settings_index = index;
                    self.trim_events();
                    CommandResult::SettingsUpdated(settings.clone())
                }
                Err(e) => CommandResult::Failed(e.to_body()),
            },
            Command::Apply {
                plugin,
                input,
                timestamp_ms,
                idempotency_key,
            } => {
                let now = self.observe_clock(*timestamp_ms);
                self.keyed(
                    index,
                    plugin,
                    idempotency_key.as_deref(),
                    || apply_fingerprint(plugin, input),
                    |s| s.apply_plugin(runtime, index, plugin, input, now),
                )?
            }
            Command::CreateToken {
                name,
                role,
                plugins,
                secret_sha256,
                bootstrap,
            } => {
                let new = tokens::NewToken {
                    name: name.as_deref(),
                    role: *role,
                    plugins: plugins.as_deref(),
                    secret_sha256,
                };
                self.tokens.create(index, new, *bootstrap)
            }
            Command::RevokeToken { id } => self.tokens.revoke(id),
        })
    }

    /// Advances the plugin clock to the command's stamp, never backwards
    /// (leaders' clocks differ); returns the time the command runs at.
    fn observe_clock(&mut self, stamped_ms: u64) -> u64 {
        self.last_timestamp_ms = self.last_timestamp_ms.max(stamped_ms);
        self.last_timestamp_ms
    }

    /// The time a query sees: the node's clock, never below the last applied
    /// stamp.
    pub fn query_time_ms(&self, now_ms: u64) -> u64 {
        now_ms.max(self.last_timestamp_ms)
    }

    /// The call context for `name` under the current settings: the plugin's
    /// recorded budgets, capped by today's ceilings.
    pub(crate) fn call_context<'a>(
        &'a self,
        name: &'a str,
        info: &PluginInfo,
        log_index: u64,
        timestamp_ms: u64,
    ) -> CallContext<'a> {
        let s = &self.settings;
        CallContext {
            plugin: name,
            log_index,
            timestamp_ms,
            fuel: info.fuel_per_call.min(s.max_fuel_per_call),
            memory_limit_bytes: info.memory_limit_bytes.min(s.max_memory_limit_bytes) as usize,
            limits: &s.limits,
            engine: s.engine_params(),
        }
    }

    fn apply_plugin(
        &mut self,
        runtime: &Runtime,
        index: u64,
        name: &str,
        input: &[u8],
        timestamp_ms: u64,
    ) -> Result<CommandResult, HostFault> {
        let Some(info) = self.plugins.get(name) else {
            return Ok(CommandResult::Failed(not_found(name)));
        };
        let Some(code) = self.code.get(&info.sha256).cloned() else {
            return Err(HostFault(format!(
                "code {} of {name:?} is missing from state",
                info.sha256
            )));
        };
        let ctx = self.call_context(name, info, index, timestamp_ms);
        let base = self.kv.get(name).cloned().unwrap_or_default();
        let outcome = retry_host_faults(name, index, || {
            Ok(Some(runtime.call(
                &code,
                CallMode::Apply,
                input,
                &ctx,
                &base,
            )))
        })?
        .expect("a call always has an outcome");
        Ok(match outcome.result {
            Ok(out) => {
                self.commit_writes(name, base, outcome.writes);
                self.record_events(name, index, &out.events);
                CommandResult::Applied(out)
            }
            Err(e) => CommandResult::Failed(e.to_body()),
        })
    }

    /// Commits a successful call's `writes` to plugin `name`'s KV, creating
    /// it (empty) if the plugin has none yet.
    ///
    /// `base` is the call's copy of that KV; it is dropped first, so the
    /// writes land in place in every node this state already owns alone (all
    /// the nodes earlier commands of the same batch copied). While a copy
    /// lives, each write would copy its whole path again, root to leaf.
    pub(crate) fn commit_writes(
        &mut self,
        name: &str,
        base: Kv,
        writes: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) {
        drop(base);
        if !self.kv.contains_key(name) {
            self.kv.insert(name.to_string(), Kv::new());
        }
        let kv = self.kv.get_mut(name).expect("inserted above");
        crate::runtime::commit(kv, writes);
    }

    /// Appends the events a successful call at log `index` emitted to plugin
    /// `name`'s event log, then applies the retention in force.
    pub(crate) fn record_events(&mut self, name: &str, index: u64, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let (count, bytes) = (
            self.settings.event_retention_count,
            self.settings.event_retention_bytes,
        );
        let log = self.events.entry(name.to_string()).or_default();
        log.append(index, events);
        log.trim(count, bytes);
    }

    /// Runs a plugin's `query` against the current state; never mutates.
    ///
    /// `now_ms` is the serving node's clock: a query changes no state, so it
    /// may see real time (a lease plugin can tell whether a lease expired
    /// without a write). It is clamped to the last applied stamp so time never
    /// runs backwards between an apply and a later query on the same state.
    pub fn query(
        &self,
        runtime: &Runtime,
        name: &str,
        input: &[u8],
        now_ms: u64,
    ) -> Result<Output, QueryError> {
        let info = self
            .plugins
            .get(name)
            .ok_or_else(|| QueryError::Failed(not_found(name)))?;
        let code = self.code.get(&info.sha256).ok_or_else(|| {
            HostFault(format!(
                "code {} of {name:?} is missing from state",
                info.sha256
            ))
        })?;
        let ctx = self.call_context(name, info, self.applied_index, self.query_time_ms(now_ms));
        let base = self.kv.get(name).cloned().unwrap_or_default();
        runtime
            .call(code, CallMode::Query, input, &ctx, &base)
            .result
            .map_err(|e| match e.host_fault() {
                Some(fault) => QueryError::Host(fault),
                None => QueryError::Failed(e.to_body()),
            })
    }

    /// The state hash: sha256 over the registry, code, every KV entry and the
    /// idempotency table, in a canonical order. Equal on every node at the same
    /// applied index.
    pub fn hash(&self) -> [u8; 32] {
        hash::state_hash(self)
    }

    /// [`State::hash`] as lowercase hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash())
    }
}

/// Tests apply commands that never meet a host fault.
#[cfg(test)]
impl State {
    pub(crate) fn apply_ok(
        &mut self,
        runtime: &Runtime,
        index: u64,
        cmd: &Command,
    ) -> CommandResult {
        self.apply(runtime, index, cmd)
            .expect("no host fault in a test")
    }
}

#[cfg(test)]
mod determinism_tests;
#[cfg(test)]
mod events_tests;
#[cfg(test)]
mod settings_tests;
#[cfg(test)]
mod snapshot_props;
#[cfg(test)]
mod tests;
