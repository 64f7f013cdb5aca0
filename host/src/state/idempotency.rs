//! The idempotency table: each key is bound to a fingerprint of the request
//! that first used it, so a retry gets the first answer and a different
//! request under the same key is refused instead of answered with someone
//! else's result.
//!
//! Keys are scoped by plugin (`plugin \0 key`): removing a plugin drops all of
//! its keys, and the table keeps at most [`IDEMPOTENCY_KEYS_RETAINED`] keys,
//! forgetting the oldest first. Both rules act at apply, so every node keeps
//! exactly the same table.

use sha2::{Digest, Sha256};

use super::HostFault;
use super::{CommandResult, ErrorBody, State};

/// How many idempotency keys are remembered across the cluster; the oldest
/// (by the log index of their first use) are forgotten first. A constant, not
/// a setting: it shapes replicated state, so every node must agree on it.
pub const IDEMPOTENCY_KEYS_RETAINED: usize = 100_000;

/// Code of a request that reuses an idempotency key with a different request.
pub const IDEMPOTENCY_KEY_REUSED: &str = "idempotency-key-reused";

/// sha256 over what a request asks for; equal for a retry, different for any
/// other request under the same key.
pub type Fingerprint = [u8; 32];

/// A stored idempotency record: what the first attempt asked and got.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdempotencyRecord {
    /// Index the command was first applied at.
    pub index: u64,
    /// Fingerprint of the first attempt's request.
    pub fingerprint: Fingerprint,
    /// Its result, returned again to every retry.
    pub result: CommandResult,
}

/// What the table says about a keyed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prior {
    /// The key is unused: run the request.
    Fresh,
    /// The same request ran before: answer this.
    Same(Box<IdempotencyRecord>),
    /// A different request holds the key: refuse.
    Reused,
}

/// Length-prefixed fields, so no two field lists hash alike.
fn fingerprint(kind: &[u8], fields: &[&[u8]]) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(b"cairn-idempotency-v1");
    for f in std::iter::once(kind).chain(fields.iter().copied()) {
        h.update((f.len() as u64).to_be_bytes());
        h.update(f);
    }
    h.finalize().into()
}

/// Fingerprint of `apply` to `plugin` with body `input`.
pub fn apply_fingerprint(plugin: &str, input: &[u8]) -> Fingerprint {
    fingerprint(b"apply", &[plugin.as_bytes(), input])
}

/// Fingerprint of a deploy of code `sha256` as `name` with these limits (as
/// resolved against the cluster's defaults).
pub fn deploy_fingerprint(
    name: &str,
    sha256: &str,
    fuel_per_call: u64,
    memory_limit_bytes: u64,
) -> Fingerprint {
    fingerprint(
        b"deploy",
        &[
            name.as_bytes(),
            sha256.as_bytes(),
            &fuel_per_call.to_be_bytes(),
            &memory_limit_bytes.to_be_bytes(),
        ],
    )
}

/// The error recorded (and answered `409`) for a reused key.
pub fn key_reused(key: &str) -> ErrorBody {
    ErrorBody::new(
        IDEMPOTENCY_KEY_REUSED,
        format!(
            "Idempotency-Key {key:?} was already used for a different request; \
             use a new key for a new request"
        ),
    )
}

fn table_key(plugin: &str, key: &str) -> String {
    format!("{plugin}\0{key}")
}

impl State {
    /// What the table holds for `key` of `plugin`, judged against the
    /// fingerprint of the request at hand.
    pub fn idempotency_prior(&self, plugin: &str, key: &str, fingerprint: &Fingerprint) -> Prior {
        match self.idempotency.get(&table_key(plugin, key)) {
            None => Prior::Fresh,
            Some(rec) if &rec.fingerprint == fingerprint => Prior::Same(Box::new(rec.clone())),
            Some(_) => Prior::Reused,
        }
    }

    /// The stored record for an idempotency key, whatever request it was.
    pub fn idempotent_result(&self, plugin: &str, key: &str) -> Option<IdempotencyRecord> {
        self.idempotency.get(&table_key(plugin, key)).cloned()
    }

    /// Runs `run` under `key` unless the table already answers it: a retry
    /// gets [`CommandResult::Duplicate`], a reused key a failure that changes
    /// nothing. A result `run` marks as "changed nothing" is not remembered.
    pub(super) fn keyed(
        &mut self,
        index: u64,
        plugin: &str,
        key: Option<&str>,
        fingerprint: impl FnOnce() -> Fingerprint,
        run: impl FnOnce(&mut Self) -> Result<CommandResult, HostFault>,
    ) -> Result<CommandResult, HostFault> {
        let Some(key) = key else {
            return run(self);
        };
        let fingerprint = fingerprint();
        Ok(match self.idempotency_prior(plugin, key, &fingerprint) {
            Prior::Same(rec) => CommandResult::Duplicate {
                index: rec.index,
                result: Box::new(rec.result),
            },
            Prior::Reused => CommandResult::Failed(key_reused(key)),
            Prior::Fresh => {
                // A host fault records nothing: the node stops before going on.
                let result = run(self)?;
                if !super::changed_nothing(&result) {
                    self.remember(index, table_key(plugin, key), fingerprint, result.clone());
                }
                result
            }
        })
    }

    fn remember(
        &mut self,
        index: u64,
        full_key: String,
        fingerprint: Fingerprint,
        result: CommandResult,
    ) {
        self.idempotency.insert(
            full_key.clone(),
            IdempotencyRecord {
                index,
                fingerprint,
                result,
            },
        );
        self.idempotency_by_index.insert(index, full_key);
        while self.idempotency_by_index.len() > IDEMPOTENCY_KEYS_RETAINED {
            let Some(&(index, _)) = self.idempotency_by_index.get_min() else {
                break;
            };
            if let Some(oldest) = self.idempotency_by_index.remove(&index) {
                self.idempotency.remove(&oldest);
            }
        }
    }

    /// Drops every key of `plugin` (it was removed: a later plugin of the same
    /// name starts with a clean table).
    pub(super) fn forget_keys_of(&mut self, plugin: &str) {
        let prefix = table_key(plugin, "");
        let doomed: Vec<(String, u64)> = self
            .idempotency
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, rec)| (k.clone(), rec.index))
            .collect();
        for (key, index) in doomed {
            self.idempotency.remove(&key);
            self.idempotency_by_index.remove(&index);
        }
    }
}
