//! Deploys and limit changes: the leader answers a deploy that changes
//! nothing without an entry, sends code the cluster holds by sha256 only,
//! and honours idempotency keys before proposing.

use bytes::Bytes;

use super::{NodeService, now_ms};
use crate::api::error::{ApiError, PLUGIN_NOT_FOUND};
use crate::api::service::{Deadline, DeployOptions, DeployResponse};
use crate::runtime::ValidateError;
use crate::state::{
    CODE_MISSING, ClusterSettings, Command, CommandResult, DeployCode, ErrorBody,
    IDEMPOTENCY_KEY_REUSED, PluginInfo, Prior, deploy_fingerprint, key_reused, sha256_hex,
    validate_plugin_name,
};

/// How a recorded refusal (or one found before proposing) reaches the client.
pub(super) fn refusal(e: ErrorBody) -> ApiError {
    match e.code.as_str() {
        IDEMPOTENCY_KEY_REUSED | CODE_MISSING => ApiError::Conflict {
            code: e.code,
            message: e.message,
        },
        // `ApiError::Plugin` keeps the recorded message and answers 404.
        PLUGIN_NOT_FOUND => ApiError::Plugin(e),
        _ => ApiError::bad_request(e.code, e.message),
    }
}

/// The limits a deploy asks for, the cluster's defaults where it names none,
/// refused if they exceed the cluster's maximums.
fn deploy_limits(
    settings: &ClusterSettings,
    options: &DeployOptions,
) -> Result<(u64, u64), ApiError> {
    let fuel_per_call = options
        .fuel_per_call
        .unwrap_or(settings.default_fuel_per_call);
    let memory_limit_bytes = options
        .memory_limit_bytes
        .unwrap_or(settings.default_memory_limit_bytes);
    settings
        .check_plugin_limits(fuel_per_call, memory_limit_bytes)
        .map_err(refusal)?;
    Ok((fuel_per_call, memory_limit_bytes))
}

/// The answer naming `info`, the version in force.
fn deploy_response(info: PluginInfo, changed: bool) -> DeployResponse {
    DeployResponse {
        name: info.name,
        version: info.version,
        sha256: info.sha256,
        log_index: info.deployed_at_index,
        changed,
    }
}

/// The answer to a deploy or limit change whose entry applied at `index`: it
/// made the version it names exactly when that version took effect there. A
/// retry answers as its first attempt did.
fn deploy_answer(index: u64, result: CommandResult) -> Result<DeployResponse, ApiError> {
    match result {
        CommandResult::Duplicate { index, result } => deploy_answer(index, *result),
        CommandResult::Deployed(info) => {
            let changed = info.deployed_at_index == index;
            Ok(deploy_response(info, changed))
        }
        CommandResult::Failed(e) => Err(refusal(e)),
        other => Err(ApiError::Internal(format!(
            "unexpected deploy result {other}"
        ))),
    }
}

impl NodeService {
    /// Compiles `wasm` against `settings` (CPU work, off the async workers):
    /// only a valid component goes into the log.
    async fn validate_code(
        &self,
        wasm: &Bytes,
        settings: &ClusterSettings,
    ) -> Result<(), ApiError> {
        let runtime = self.inner.runtime.clone();
        let (wasm, params, max_bytes) = (
            wasm.clone(),
            settings.engine_params(),
            settings.max_plugin_bytes as usize,
        );
        tokio::task::spawn_blocking(move || runtime.validate(&wasm, params, max_bytes))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map(|_| ())
            .map_err(|e| match e {
                ValidateError::TooLarge { max_bytes, .. } => ApiError::BodyTooLarge {
                    limit_bytes: max_bytes as u64,
                },
                ValidateError::Host(m) => ApiError::Unavailable(m),
                e => ApiError::bad_request(e.code(), e.to_string()),
            })
    }

    /// [`ClusterService::dry_run`]: validated like a deploy, then applied to a
    /// copy of this node's state as its next entry would be; nothing is
    /// proposed. Counts as a query for admission (it holds instance slots).
    pub(super) async fn dry_run_deploy(
        &self,
        name: String,
        wasm: Bytes,
        options: DeployOptions,
        queries: Vec<serde_json::Value>,
    ) -> Result<crate::state::DryRunReport, ApiError> {
        validate_plugin_name(&name).map_err(|e| ApiError::bad_request(e.code, e.message))?;
        let state = self.state();
        let settings = state.settings().clone();
        let (fuel_per_call, memory_limit_bytes) = deploy_limits(&settings, &options)?;
        self.validate_code(&wasm, &settings).await?;
        let Ok(slot) = self.inner.query_slots.clone().try_acquire_owned() else {
            return Err(ApiError::Overloaded {
                what: "all query slots are busy".into(),
                retry_after_secs: self.inner.config.overload_retry_after_secs,
            });
        };
        let deploy = Command::Deploy {
            name,
            code: DeployCode::Inline(wasm.to_vec()),
            fuel_per_call,
            memory_limit_bytes,
            timestamp_ms: now_ms(),
            idempotency_key: None,
        };
        let runtime = self.inner.runtime.clone();
        let now = now_ms();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            state.dry_run(&runtime, &deploy, &queries, now)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|fault| ApiError::Unavailable(fault.to_string()))
    }

    /// [`ClusterService::deploy`].
    pub(super) async fn deploy_plugin(
        &self,
        name: String,
        wasm: Bytes,
        options: DeployOptions,
        idempotency_key: Option<String>,
        deadline: Deadline,
    ) -> Result<DeployResponse, ApiError> {
        validate_plugin_name(&name).map_err(|e| ApiError::bad_request(e.code, e.message))?;
        // Refuse before compiling; `propose` checks again right before proposing.
        self.admit_write()?;
        // Whether this code, this exact deploy or this key is already in the
        // cluster is only known from state holding every committed entry: the
        // leader's after a read index. A follower forwards the request here.
        self.linearize(deadline).await?;
        let state = self.state();
        let settings = state.settings().clone();
        let (fuel_per_call, memory_limit_bytes) = deploy_limits(&settings, &options)?;
        let sha = {
            let wasm = wasm.clone();
            tokio::task::spawn_blocking(move || sha256_hex(&wasm))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
        };
        match &idempotency_key {
            Some(key) => {
                let fp = deploy_fingerprint(&name, &sha, fuel_per_call, memory_limit_bytes);
                match state.idempotency_prior(&name, key, &fp) {
                    Prior::Same(rec) => return deploy_answer(rec.index, rec.result),
                    Prior::Reused => return Err(refusal(key_reused(key))),
                    Prior::Fresh => {}
                }
            }
            // Without a key, the same deploy again is answered without an
            // entry. (With one it goes through the log, so the key records it.)
            None => {
                if let Some(info) = state.plugin(&name)
                    && info.sha256 == sha
                    && info.fuel_per_call == fuel_per_call
                    && info.memory_limit_bytes == memory_limit_bytes
                {
                    return Ok(deploy_response(info, false));
                }
            }
        }
        let deploy = |code: DeployCode| Command::Deploy {
            name: name.clone(),
            code,
            fuel_per_call,
            memory_limit_bytes,
            timestamp_ms: now_ms(),
            idempotency_key: idempotency_key.clone(),
        };
        if state.has_code(&sha) {
            let (index, result) = self
                .propose(deploy(DeployCode::Stored { sha256: sha }), deadline)
                .await?;
            match result {
                // The plugin holding the blob was removed after we looked.
                CommandResult::Failed(e) if e.code == CODE_MISSING => {}
                result => return deploy_answer(index, result),
            }
        }
        self.validate_code(&wasm, &settings).await?;
        let (index, result) = self
            .propose(deploy(DeployCode::Inline(wasm.to_vec())), deadline)
            .await?;
        deploy_answer(index, result)
    }

    /// [`ClusterService::set_limits`].
    pub(super) async fn set_plugin_limits(
        &self,
        name: String,
        options: DeployOptions,
        deadline: Deadline,
    ) -> Result<DeployResponse, ApiError> {
        self.linearize(deadline).await?;
        let state = self.state();
        let Some(info) = state.plugin(&name) else {
            return Err(ApiError::PluginNotFound { name });
        };
        let fuel_per_call = options.fuel_per_call.unwrap_or(info.fuel_per_call);
        let memory_limit_bytes = options
            .memory_limit_bytes
            .unwrap_or(info.memory_limit_bytes);
        state
            .settings()
            .check_plugin_limits(fuel_per_call, memory_limit_bytes)
            .map_err(refusal)?;
        if fuel_per_call == info.fuel_per_call && memory_limit_bytes == info.memory_limit_bytes {
            return Ok(deploy_response(info, false));
        }
        let cmd = Command::SetLimits {
            name,
            fuel_per_call: options.fuel_per_call,
            memory_limit_bytes: options.memory_limit_bytes,
        };
        let (index, result) = self.propose(cmd, deadline).await?;
        deploy_answer(index, result)
    }
}
