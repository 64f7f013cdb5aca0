//! The replicated commands (Raft log payloads) and their results.
//!
//! These types are what every node agrees on: a `Command` is proposed by the
//! leader, stored in the log, and applied by every node to produce the same
//! `CommandResult`. They are encoded with bincode inside versioned envelopes
//! (see `raft::codec`), so changing a variant is a format change.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One state-machine command, as stored in the Raft log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Install (or upgrade) plugin `name` with the given code and limits.
    /// Deploying exactly what is in force (same sha256 and limits) changes
    /// nothing and answers the current version.
    Deploy {
        /// Plugin name (validated by [`crate::state::validate_plugin_name`]).
        name: String,
        /// The component: its bytes, or only its sha256 when the cluster
        /// already holds that blob (so code is written to the log once).
        code: DeployCode,
        /// Fuel budget for each call of this plugin, fixed at deploy time so
        /// every node meters identically.
        fuel_per_call: u64,
        /// Linear-memory cap of each instance, fixed at deploy time.
        memory_limit_bytes: u64,
        /// Leader's wall clock when proposed (ms since the Unix epoch).
        timestamp_ms: u64,
        /// Client-chosen key that makes retries of this deploy safe.
        idempotency_key: Option<String>,
    },
    /// Remove plugin `name` and all of its KV data.
    Remove {
        /// Plugin name.
        name: String,
    },
    /// Replace the cluster settings (validated again on apply), if they are
    /// still the ones the proposer saw: a compare-and-set, so two concurrent
    /// changes cannot silently undo each other.
    UpdateSettings {
        /// The complete new settings.
        settings: super::ClusterSettings,
        /// The `settings_index` the change was based on (0: the cluster has
        /// no settings record yet).
        expected_index: u64,
    },
    /// Run the plugin's `apply` export with `input`.
    Apply {
        /// Plugin name.
        plugin: String,
        /// Opaque input bytes handed to the plugin.
        #[serde(with = "serde_bytes")]
        input: Vec<u8>,
        /// Leader's wall clock when proposed (ms since the Unix epoch); the
        /// only clock the plugin ever sees.
        timestamp_ms: u64,
        /// Client-chosen key that makes retries of this command safe.
        idempotency_key: Option<String>,
    },
    /// Change the limits of plugin `name`'s version in force when this
    /// applies (a new version with the same code); `None` keeps a limit.
    /// Applies to whatever code is current then, so it never undoes a deploy
    /// that committed between the request and its entry.
    SetLimits {
        /// Plugin name.
        name: String,
        /// New fuel budget per call.
        fuel_per_call: Option<u64>,
        /// New linear-memory cap per instance.
        memory_limit_bytes: Option<u64>,
    },
    /// Add a bearer token (`state/tokens.rs`); its id is `t<log index>`.
    /// The secret is not here: only its sha256.
    CreateToken {
        /// A label for humans.
        name: Option<String>,
        /// What the token may do.
        role: super::Role,
        /// The plugins it is limited to; `None`: every plugin.
        plugins: Option<Vec<String>>,
        /// sha256 of the secret the proposer drew and showed the client once.
        secret_sha256: [u8; 32],
        /// The initialising node's admin token: created only while the
        /// table is empty (or holds this very hash), so retrying is safe.
        bootstrap: bool,
    },
    /// Remove a token; requests bearing it are refused once this applied.
    RevokeToken {
        /// The token's id.
        id: String,
    },
}

/// The code of a deploy as the log carries it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeployCode {
    /// The component bytes (the first deploy of this code). (`serde_bytes`:
    /// one slice copy instead of a serde call per byte; same encoding.)
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A blob the state already holds, by hex sha256. Applying it after the
    /// blob was dropped fails with [`super::CODE_MISSING`] and changes nothing.
    Stored {
        /// Hex sha256 of the component.
        sha256: String,
    },
}

impl DeployCode {
    /// Hex sha256 of the component (hashes the bytes of an inline deploy).
    pub fn sha256(&self) -> String {
        match self {
            DeployCode::Inline(bytes) => super::sha256_hex(bytes),
            DeployCode::Stored { sha256 } => sha256.clone(),
        }
    }

    /// Bytes this code adds to a log entry.
    pub fn inline_len(&self) -> usize {
        match self {
            DeployCode::Inline(bytes) => bytes.len(),
            DeployCode::Stored { sha256 } => sha256.len(),
        }
    }
}

// Never dump component bytes into a log line or a panic message.
impl fmt::Debug for DeployCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployCode::Inline(bytes) => write!(f, "Inline({} bytes)", bytes.len()),
            DeployCode::Stored { sha256 } => write!(f, "Stored({sha256})"),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Deploy { name, code, .. } => write!(f, "deploy({name}, {code:?})"),
            Command::Remove { name } => write!(f, "remove({name})"),
            Command::SetLimits { name, .. } => write!(f, "set-limits({name})"),
            Command::UpdateSettings { .. } => write!(f, "update-settings"),
            Command::Apply { plugin, input, .. } => {
                write!(f, "apply({plugin}, {} bytes)", input.len())
            }
            Command::CreateToken { role, .. } => write!(f, "create-token({role})"),
            Command::RevokeToken { id } => write!(f, "revoke-token({id})"),
        }
    }
}

/// What a plugin looks like in the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Plugin name.
    pub name: String,
    /// Starts at 1 and grows by one on every change (new code or new
    /// limits) of the same name; a deploy that changes nothing keeps it.
    pub version: u64,
    /// Hex sha256 of the component bytes.
    pub sha256: String,
    /// Fuel budget per call.
    pub fuel_per_call: u64,
    /// Linear-memory cap per instance.
    pub memory_limit_bytes: u64,
    /// Log index at which this version took effect.
    pub deployed_at_index: u64,
    /// Size of the component in bytes.
    pub size_bytes: u64,
}

// The call's output and error types belong to the runtime that produces them;
// the replicated state stores them as they are.
pub use crate::runtime::{ErrorBody, Event, Output};

/// The result of applying one command; identical on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// A deploy took effect.
    Deployed(PluginInfo),
    /// A plugin was removed.
    Removed {
        /// Plugin name.
        name: String,
    },
    /// The cluster settings were replaced.
    SettingsUpdated(super::ClusterSettings),
    /// A plugin's `apply` returned `Ok`; its writes are committed.
    Applied(Output),
    /// The command failed (plugin error, trap, out of fuel, unknown plugin, …);
    /// nothing was written.
    Failed(ErrorBody),
    /// A membership change or blank entry; nothing for a client.
    Nothing,
    /// A retry of a command whose idempotency key was first applied at
    /// `index`: its first result, unchanged. Never stored itself.
    Duplicate {
        /// Log index of the first attempt.
        index: u64,
        /// The first attempt's result.
        result: Box<CommandResult>,
    },
    /// A token was created (or, for a retried bootstrap, already existed).
    TokenCreated(super::TokenInfo),
    /// A token was revoked.
    TokenRevoked {
        /// Its id.
        id: String,
    },
}

impl fmt::Display for CommandResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandResult::Deployed(info) => write!(f, "deployed({} v{})", info.name, info.version),
            CommandResult::Removed { name } => write!(f, "removed({name})"),
            CommandResult::SettingsUpdated(_) => write!(f, "settings-updated"),
            CommandResult::Applied(out) => write!(f, "applied({} bytes)", out.output.len()),
            CommandResult::Failed(err) => write!(f, "failed({err})"),
            CommandResult::Nothing => write!(f, "nothing"),
            CommandResult::Duplicate { index, result } => {
                write!(f, "duplicate(of {index}: {result})")
            }
            CommandResult::TokenCreated(info) => write!(f, "token-created({})", info.id),
            CommandResult::TokenRevoked { id } => write!(f, "token-revoked({id})"),
        }
    }
}
