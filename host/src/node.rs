//! Node wiring: builds the store, state machine, network, Raft and HTTP server; start and shutdown.

// PLACEHOLDER: lead replaces this whole module with the real wiring.

use tokio::sync::watch;

use crate::config::Config;

/// Runs a node until `shutdown` turns `true`.
pub async fn run(config: Config, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    tracing::warn!(
        node_id = config.node_id,
        "node::run is a placeholder; waiting for shutdown"
    );
    let _ = shutdown.wait_for(|stop| *stop).await;
    Ok(())
}
