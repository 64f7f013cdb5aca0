//! The first admin token: the node that initialises a cluster creates one
//! through the log and writes it to `DATA_DIR/admin.token` (mode 0600), so a
//! new cluster is usable with two commands (`cairn serve`, `cairn deploy`).
//!
//! Crash safety: the secret is written to `admin.token.pending` before it is
//! proposed, and the create is a compare-and-set on "the table is empty or
//! already holds this secret's hash". So a node that crashes anywhere between
//! drawing the secret and writing `admin.token` finishes the job on restart,
//! and no cluster ever gets a second bootstrap token. The log names the file,
//! never the secret.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;

use crate::raft::state_machine::StateMachine;
use crate::raft::types::Raft;
use crate::state::tokens::{self, TOKEN_SECRET_BYTES, TOKENS_EXIST};
use crate::state::{Command, CommandResult, Role};

/// The admin token's file in the data dir of the node that initialised the cluster.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The secret of a bootstrap token proposed but not yet known committed.
const PENDING_FILE: &str = "admin.token.pending";
/// How often the keeper looks again while the token is not written.
const BOOTSTRAP_POLL_INTERVAL_MS: u64 = 200;
/// The name the bootstrap token is listed with.
const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap admin";

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// `admin.token` is there (written now or before).
    Written,
    /// The cluster already has tokens that are not ours: nothing to write.
    NotNeeded,
    /// Not now (not the leader, the write failed): try again later.
    Retry,
}

/// Writes `contents` to `path` durably: temp file (mode 0600), fsync, rename, fsync of the dir.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

fn read_pending(path: &Path) -> std::io::Result<Option<[u8; TOKEN_SECRET_BYTES]>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut secret = [0u8; TOKEN_SECRET_BYTES];
    // A torn pending file cannot be: it is renamed into place whole. Anything
    // unreadable was never proposed in that form; draw a new secret.
    Ok(hex::decode_to_slice(text.trim(), &mut secret)
        .ok()
        .map(|()| secret))
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn leads(raft: &Raft) -> bool {
    raft.metrics().borrow_watched().state == openraft::ServerState::Leader
}

/// One attempt to make sure `DATA_DIR/admin.token` exists.
async fn attempt(raft: &Raft, sm: &StateMachine, data_dir: &Path) -> std::io::Result<Outcome> {
    let token_path = data_dir.join(ADMIN_TOKEN_FILE);
    let pending_path = data_dir.join(PENDING_FILE);
    if token_path.exists() {
        remove_if_present(&pending_path)?;
        return Ok(Outcome::Written);
    }
    if !leads(raft) {
        return Ok(Outcome::Retry);
    }
    let pending = read_pending(&pending_path)?;
    // Once the table holds a token it never empties (the last admin token
    // cannot be revoked), so seeing one here is final. Without a pending
    // secret of ours in flight, the cluster's tokens are someone else's.
    if pending.is_none() && !sm.applied().state.tokens().is_empty() {
        return Ok(Outcome::NotNeeded);
    }
    let secret = match pending {
        Some(secret) => secret,
        None => {
            let secret =
                super::tokens::new_secret().map_err(|e| std::io::Error::other(e.to_string()))?;
            write_private(&pending_path, hex::encode(secret).as_bytes())?;
            secret
        }
    };
    let cmd = Command::CreateToken {
        name: Some(BOOTSTRAP_TOKEN_NAME.to_string()),
        role: Role::Admin,
        plugins: None,
        secret_sha256: tokens::secret_sha256(&secret),
        bootstrap: true,
    };
    // Straight to Raft, past the disk alarm: without this token nobody can
    // use the cluster at all.
    match raft.client_write(cmd).await {
        Ok(resp) => match resp.data {
            CommandResult::TokenCreated(info) => {
                let token = tokens::format_token(&info.id, &secret);
                write_private(&token_path, format!("{token}\n").as_bytes())?;
                remove_if_present(&pending_path)?;
                tracing::info!(
                    path = %token_path.display(),
                    id = %info.id,
                    "wrote the cluster's admin token; cairn client commands read it with --data-dir \
                     (CAIRN_DATA_DIR) naming this data dir, or take it with --token (CAIRN_TOKEN)"
                );
                Ok(Outcome::Written)
            }
            CommandResult::Failed(e) if e.code == TOKENS_EXIST => {
                remove_if_present(&pending_path)?;
                Ok(Outcome::NotNeeded)
            }
            other => {
                tracing::warn!(result = %other, "bootstrap admin token not created");
                Ok(Outcome::Retry)
            }
        },
        Err(e) => {
            tracing::debug!(error = %e, "proposing the bootstrap admin token failed; retrying");
            Ok(Outcome::Retry)
        }
    }
}

fn report(result: std::io::Result<Outcome>) -> Outcome {
    match result {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(error = %e, "writing the admin token file failed; retrying");
            Outcome::Retry
        }
    }
}

/// Right after this node initialised a cluster (and wrote its settings):
/// creates the admin token and writes its file before the node is reported
/// started. Not fatal when it cannot: [`keep`] retries.
pub(super) async fn write_initial(raft: &Raft, sm: &StateMachine, data_dir: &Path) {
    report(attempt(raft, sm, data_dir).await);
}

/// Runs until `DATA_DIR/admin.token` exists or the cluster turns out to have
/// other tokens (or until shutdown). Finishes a bootstrap a crash interrupted.
pub(super) async fn keep(
    raft: Raft,
    sm: StateMachine,
    data_dir: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(BOOTSTRAP_POLL_INTERVAL_MS));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        match report(attempt(&raft, &sm, &data_dir).await) {
            Outcome::Written | Outcome::NotNeeded => return,
            Outcome::Retry => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_mode_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ADMIN_TOKEN_FILE);
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!dir.path().join("admin.token.tmp").exists());
    }

    #[test]
    fn a_pending_secret_reads_back_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PENDING_FILE);
        assert_eq!(read_pending(&path).unwrap(), None);
        write_private(&path, hex::encode([9u8; 32]).as_bytes()).unwrap();
        assert_eq!(read_pending(&path).unwrap(), Some([9u8; 32]));
        write_private(&path, b"not hex").unwrap();
        assert_eq!(read_pending(&path).unwrap(), None);
    }
}
