//! Puts the cluster's first settings record in the log and tells the operator
//! when this node's flags differ from the settings the cluster follows.

use std::time::Duration;

use tokio::sync::watch;

use crate::raft::state_machine::StateMachine;
use crate::raft::types::Raft;
use crate::state::{ClusterSettings, Command, CommandResult};

/// How often the keeper looks at the applied state until it is done.
const SETTINGS_POLL_INTERVAL_MS: u64 = 200;

/// How long a freshly initialised node waits to lead its own one-node
/// cluster before leaving the initial settings to [`keep`].
const INIT_LEADER_WAIT_MS: u64 = 10_000;

/// Writes `flags` as the first settings record of a cluster this node just
/// initialised, before the node takes client requests, so the first deploy
/// already runs under them. Failing here is not fatal: [`keep`] retries.
pub(super) async fn write_initial(raft: &Raft, flags: &ClusterSettings) {
    let led = raft
        .wait(Some(Duration::from_millis(INIT_LEADER_WAIT_MS)))
        .metrics(
            |m| m.state == openraft::ServerState::Leader,
            "this node leads the cluster it initialised",
        )
        .await;
    if led.is_ok() {
        propose(raft, flags).await;
    }
}

async fn propose(raft: &Raft, flags: &ClusterSettings) {
    let cmd = Command::UpdateSettings {
        settings: flags.clone(),
        expected_index: 0,
    };
    match raft.client_write(cmd).await {
        Ok(resp) => match resp.data {
            CommandResult::SettingsUpdated(_) => {
                tracing::info!(
                    index = resp.log_id.index,
                    "wrote the initial cluster settings"
                )
            }
            other => tracing::debug!(result = %other, "initial settings not written"),
        },
        Err(e) => tracing::debug!(error = %e, "proposing the initial settings failed; retrying"),
    }
}

/// Runs until the cluster has a settings record and it was compared with
/// `flags` (or until shutdown). While the cluster has none and this node
/// leads, it proposes `flags` (compare-and-set on "no record yet", so two
/// leaders in a row cannot both write one).
pub(super) async fn keep(
    raft: Raft,
    sm: StateMachine,
    flags: ClusterSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(SETTINGS_POLL_INTERVAL_MS));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let state = sm.applied().state;
        if state.settings_index() > 0 {
            let differences = flags.differences(state.settings());
            if !differences.is_empty() {
                let list: Vec<String> = differences
                    .iter()
                    .map(|(field, ours, cluster)| {
                        format!("{field}: flag {ours}, cluster {cluster}")
                    })
                    .collect();
                tracing::warn!(
                    settings_index = state.settings_index(),
                    "this node's flags differ from the cluster settings; following the cluster ({})",
                    list.join("; ")
                );
            }
            return;
        }
        let leads = {
            use openraft::async_runtime::WatchReceiver;
            raft.metrics().borrow_watched().state == openraft::ServerState::Leader
        };
        if !leads {
            continue;
        }
        propose(&raft, &flags).await;
    }
}
