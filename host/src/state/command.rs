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
    /// Install (or upgrade) plugin `name` with the given component bytes.
    Deploy {
        /// Plugin name (validated by [`crate::state::validate_plugin_name`]).
        name: String,
        /// The component bytes; content-addressed by sha256 on apply.
        wasm: Vec<u8>,
        /// Fuel budget for each call of this plugin, fixed at deploy time so
        /// every node meters identically.
        fuel_per_call: u64,
        /// Linear-memory cap of each instance, fixed at deploy time.
        memory_limit_bytes: u64,
        /// Leader's wall clock when proposed (ms since the Unix epoch).
        timestamp_ms: u64,
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
        input: Vec<u8>,
        /// Leader's wall clock when proposed (ms since the Unix epoch); the
        /// only clock the plugin ever sees.
        timestamp_ms: u64,
        /// Client-chosen key that makes retries of this command safe.
        idempotency_key: Option<String>,
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

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Deploy { name, wasm, .. } => write!(f, "deploy({name}, {} bytes)", wasm.len()),
            Command::Remove { name } => write!(f, "remove({name})"),
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
    /// Starts at 1 and grows by one on every redeploy of the same name.
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

/// A failure with a stable machine-readable code and a human message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code, e.g. `plugin-not-found`, `out-of-fuel`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// An event emitted by a successful `apply`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Topic chosen by the plugin.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// The successful output of a plugin call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Bytes returned by the plugin.
    pub output: Vec<u8>,
    /// Events emitted during the call (always empty for queries).
    pub events: Vec<Event>,
}

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
            CommandResult::TokenCreated(info) => write!(f, "token-created({})", info.id),
            CommandResult::TokenRevoked { id } => write!(f, "token-revoked({id})"),
        }
    }
}
