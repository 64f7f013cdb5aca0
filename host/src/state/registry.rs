//! The plugin registry's commands: deploy (inline or stored code), limit
//! changes and removal. Code blobs are keyed by sha256 and kept once, however
//! many plugins or versions use them; a blob no plugin references is dropped.

use super::{
    CODE_MISSING, CommandResult, DeployCode, ErrorBody, MIGRATE_FAILED, PluginInfo, State,
    not_found, retry_host_faults, validate_plugin_name,
};
use crate::runtime::{Code, HostFault, Runtime, ValidateError, check_shape};

impl State {
    /// Whether the state holds the component with this hex sha256.
    pub fn has_code(&self, sha256: &str) -> bool {
        self.code.contains_key(sha256)
    }

    pub(super) fn deploy(
        &mut self,
        runtime: &Runtime,
        index: u64,
        name: &str,
        code: &DeployCode,
        fuel_per_call: u64,
        memory_limit_bytes: u64,
    ) -> Result<CommandResult, HostFault> {
        if let Err(e) = validate_plugin_name(name) {
            return Ok(CommandResult::Failed(e));
        }
        if let Err(e) = self
            .settings
            .check_plugin_limits(fuel_per_call, memory_limit_bytes)
        {
            return Ok(CommandResult::Failed(e));
        }
        let (sha, blob) = match code {
            DeployCode::Stored { sha256 } => match self.code.get(sha256) {
                // Validated when it was stored; only the size ceiling may
                // have dropped since.
                Some(blob) if blob.bytes().len() > self.settings.max_plugin_bytes as usize => {
                    let e = ValidateError::TooLarge {
                        size_bytes: blob.bytes().len(),
                        max_bytes: self.settings.max_plugin_bytes as usize,
                    };
                    return Ok(CommandResult::Failed(e.to_record()));
                }
                Some(blob) => (sha256.clone(), blob.clone()),
                // Removed between the leader's look and this entry: the
                // proposer still has the bytes and can send them inline.
                None => {
                    return Ok(CommandResult::Failed(ErrorBody::new(
                        CODE_MISSING,
                        format!("the cluster no longer holds code {sha256}; deploy the bytes"),
                    )));
                }
            },
            DeployCode::Inline(wasm) => {
                // Only checks that need no compile decide the outcome here, so
                // they are cheap and identical everywhere. The leader compiled
                // the code before proposing it; every node compiles it in the
                // background from here on, and only calls of this plugin wait
                // for that (a big component would otherwise hold every other
                // plugin's entries behind it for seconds). A compile failure
                // of such leader-validated code is this node's fault, met by
                // the first call (DESIGN.md rule 9), never a recorded result.
                let s = &self.settings;
                if let Err(e) = check_shape(wasm, s.max_plugin_bytes as usize) {
                    return Ok(CommandResult::Failed(e.to_record()));
                }
                let fresh = Code::new(wasm.clone());
                let sha = fresh.sha256_hex();
                let blob = self.code.get(&sha).cloned().unwrap_or(fresh);
                (sha, blob)
            }
        };
        // Stored code may not be compiled for today's engine on this node yet.
        runtime.compile_in_background(&blob, self.settings.engine_params());
        let current = self.plugins.get(name).cloned();
        if let Some(info) = &current
            && info.sha256 == sha
            && info.fuel_per_call == fuel_per_call
            && info.memory_limit_bytes == memory_limit_bytes
        {
            // Exactly what is in force: no new version.
            return Ok(CommandResult::Deployed(info.clone()));
        }
        let info = PluginInfo {
            name: name.to_string(),
            version: current.as_ref().map_or(1, |p| p.version + 1),
            sha256: sha.clone(),
            fuel_per_call,
            memory_limit_bytes,
            deployed_at_index: index,
            size_bytes: blob.bytes().len() as u64,
        };
        if let Some(old) = &current
            && old.sha256 != sha
            && let Err(e) = self.migrate(runtime, index, &info, &blob, old.version)?
        {
            return Ok(CommandResult::Failed(e));
        }
        self.code.entry(sha).or_insert(blob);
        self.plugins.insert(name.to_string(), info.clone());
        self.kv.entry(name.to_string()).or_default();
        if let Some(old) = current {
            self.drop_unreferenced_code(&old.sha256);
        }
        Ok(CommandResult::Deployed(info))
    }

    /// Runs the new code's `migrate(from_version)` inside this upgrade's log
    /// entry (new limits, the entry's index and stamp) and commits its writes;
    /// `Err`: it failed, so the upgrade is rejected and nothing changed. A
    /// component without `migrate` (0.1.0) has nothing to run. This waits for
    /// the new code's compile (started when the entry was appended): the
    /// outcome of `migrate` is part of the entry's.
    fn migrate(
        &mut self,
        runtime: &Runtime,
        index: u64,
        new: &PluginInfo,
        code: &Code,
        from_version: u64,
    ) -> Result<Result<(), ErrorBody>, HostFault> {
        let name = new.name.as_str();
        let base = self.kv.get(name).cloned().unwrap_or_default();
        let ctx = self.call_context(name, new, index, self.last_timestamp_ms);
        let outcome = retry_host_faults(name, index, || {
            runtime.migrate(code, from_version, &ctx, &base)
        })?;
        let Some(outcome) = outcome else {
            return Ok(Ok(()));
        };
        match outcome.result {
            Ok(out) => {
                self.commit_writes(name, base, outcome.writes);
                // Events a migrate emits belong to its entry, like an apply's.
                self.record_events(name, index, &out.events);
                Ok(Ok(()))
            }
            Err(e) => {
                let e = e.to_body();
                Ok(Err(ErrorBody::new(
                    MIGRATE_FAILED,
                    format!(
                        "migrate from version {from_version} failed, the upgrade is rejected and version {from_version} keeps running: {}: {}",
                        e.code, e.message
                    ),
                )))
            }
        }
    }

    /// A new version of `name` with the same code and the given limits
    /// (`None` keeps the current one); the current version if nothing changes.
    pub(super) fn set_limits(
        &mut self,
        index: u64,
        name: &str,
        fuel_per_call: Option<u64>,
        memory_limit_bytes: Option<u64>,
    ) -> CommandResult {
        let Some(current) = self.plugins.get(name).cloned() else {
            return CommandResult::Failed(not_found(name));
        };
        let fuel = fuel_per_call.unwrap_or(current.fuel_per_call);
        let memory = memory_limit_bytes.unwrap_or(current.memory_limit_bytes);
        if let Err(e) = self.settings.check_plugin_limits(fuel, memory) {
            return CommandResult::Failed(e);
        }
        if fuel == current.fuel_per_call && memory == current.memory_limit_bytes {
            return CommandResult::Deployed(current);
        }
        let info = PluginInfo {
            version: current.version + 1,
            fuel_per_call: fuel,
            memory_limit_bytes: memory,
            deployed_at_index: index,
            ..current
        };
        self.plugins.insert(name.to_string(), info.clone());
        CommandResult::Deployed(info)
    }

    pub(super) fn remove(&mut self, name: &str) -> CommandResult {
        let Some(info) = self.plugins.remove(name) else {
            return CommandResult::Failed(not_found(name));
        };
        self.kv.remove(name);
        self.events.remove(name);
        self.forget_keys_of(name);
        self.drop_unreferenced_code(&info.sha256);
        CommandResult::Removed {
            name: name.to_string(),
        }
    }

    fn drop_unreferenced_code(&mut self, sha: &str) {
        if !self.plugins.values().any(|p| p.sha256 == sha) {
            self.code.remove(sha);
        }
    }
}
