//! `cairn backup FILE`: the state streamed from a node into FILE, which is
//! either absent or complete afterwards.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Method;
use http_body_util::Limited;

use super::format::describe_failure;
use super::{CLI_MAX_RESPONSE_BYTES, Client};
use crate::api::{APPLIED_INDEX_HEADER, STATE_HASH_HEADER};
use crate::http_client;

/// Deadline for downloading a whole backup (a large state takes a while).
const CLI_BACKUP_TIMEOUT_MS: u64 = 30 * 60 * 1000;

/// What `cairn backup` saved.
struct SavedBackup {
    applied_index: u64,
    state_hash: String,
    size_bytes: u64,
}

/// `FILE.tmp` next to FILE (same filesystem, so the rename is atomic).
fn temp_path(file: &std::path::Path) -> std::path::PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    file.with_file_name(name)
}

/// A byte progress bar (a spinner with a byte count when the size is unknown).
fn progress_bar(total: Option<u64>, what: &str) -> indicatif::ProgressBar {
    let (bar, template) = match total {
        Some(n) => (
            indicatif::ProgressBar::new(n),
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "{msg} {spinner} {bytes} {bytes_per_sec}",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

impl Client {
    /// `cairn backup FILE`: streams `GET /v1/backup` into a temp file next to
    /// FILE (with a progress bar when stdout is a terminal), fsyncs it, and
    /// renames it into place, so FILE is either absent or complete.
    pub(super) async fn backup(&self, file: &std::path::Path) -> anyhow::Result<()> {
        let timeout = Duration::from_millis(CLI_BACKUP_TIMEOUT_MS);
        let saved = tokio::time::timeout(timeout, self.download_backup(file))
            .await
            .map_err(|_| anyhow::anyhow!("backup not finished within {timeout:?}"))??;
        let summary = serde_json::json!({
            "file": file.display().to_string(),
            "applied_index": saved.applied_index,
            "state_hash": saved.state_hash,
            "size_bytes": saved.size_bytes,
        });
        self.print(summary.to_string().as_bytes(), || {
            format!(
                "backup written to {} ({} bytes): applied index {}, state hash {}",
                file.display(),
                saved.size_bytes,
                saved.applied_index,
                saved.state_hash
            )
        })
    }

    async fn download_backup(&self, file: &std::path::Path) -> anyhow::Result<SavedBackup> {
        use http_body_util::BodyExt;
        use std::io::IsTerminal;
        use tokio::io::AsyncWriteExt;

        let uri = http_client::url(&self.base, "/v1/backup")?;
        let mut req = http_client::request(Method::GET, uri, None, Bytes::new());
        if let Some(token) = &self.token {
            http_client::set_bearer(&mut req, token)?;
        }
        let resp = self
            .http
            .request(req)
            .await
            .with_context(|| format!("requesting a backup from {}", self.base))?;
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (index, hash, length) = (
            header(APPLIED_INDEX_HEADER),
            header(STATE_HASH_HEADER),
            header(http::header::CONTENT_LENGTH.as_str()),
        );
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = Limited::new(body, CLI_MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            bail!("{}", describe_failure(status, &bytes));
        }
        let applied_index: u64 = index
            .and_then(|v| v.parse().ok())
            .context("the server sent no cairn-applied-index header")?;
        let state_hash = hash.context("the server sent no cairn-state-hash header")?;
        let bar = if std::io::stdout().is_terminal() {
            let total = length.and_then(|v| v.parse().ok());
            progress_bar(total, "backup")
        } else {
            indicatif::ProgressBar::hidden()
        };
        let tmp = temp_path(file);
        let mut out = tokio::fs::File::create(&tmp)
            .await
            .with_context(|| format!("creating {}", tmp.display()))?;
        let written = async {
            let mut size = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.context("reading the backup")?;
                if let Ok(data) = frame.into_data() {
                    out.write_all(&data).await?;
                    size += data.len() as u64;
                    bar.set_position(size);
                }
            }
            out.sync_all().await?;
            anyhow::Ok(size)
        }
        .await;
        bar.finish_and_clear();
        let size_bytes = match written {
            Ok(size) => size,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e.context(format!("writing {}", tmp.display())));
            }
        };
        drop(out);
        tokio::fs::rename(&tmp, file)
            .await
            .with_context(|| format!("renaming {} to {}", tmp.display(), file.display()))?;
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The rename is durable once the directory is synced.
            tokio::fs::File::open(dir).await?.sync_all().await?;
        }
        Ok(SavedBackup {
            applied_index,
            state_hash,
            size_bytes,
        })
    }
}
