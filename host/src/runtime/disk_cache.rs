//! On-disk cache of compiled components, so a restarted node does not
//! recompile every plugin.
//!
//! Loading precompiled code is `unsafe` in wasmtime: a forged file is native
//! code. So the node only loads files it wrote itself: each artifact carries an
//! HMAC-SHA256 under a random key created by this node (mode 0600) and bound
//! to the component's sha256. Anything that fails the check is ignored and
//! recompiled. wasmtime additionally refuses artifacts from another engine
//! version or configuration.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"CAIRNCW1";
const KEY_FILE: &str = "node.key";

/// A directory of `<sha256>.cwasm` artifacts authenticated by a node-local key.
pub(crate) struct DiskCache {
    dir: PathBuf,
    key: [u8; 32],
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn load_or_create_key(dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    let mut key = [0u8; 32];
    match std::fs::File::open(&path) {
        Ok(mut f) => {
            f.read_exact(&mut key)?;
            return Ok(key);
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    let tmp = dir.join("node.key.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(&key)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(key)
}

impl DiskCache {
    /// Opens (creating if needed) the cache directory and its key.
    pub(crate) fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let key = load_or_create_key(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
        })
    }

    fn path(&self, sha: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.cwasm", hex::encode(sha)))
    }

    /// The cached component for `sha`, if a valid artifact written by this node exists.
    pub(crate) fn load(&self, engine: &Engine, sha: &[u8; 32]) -> Option<Component> {
        let bytes = std::fs::read(self.path(sha)).ok()?;
        if bytes.len() < 40 || &bytes[..8] != MAGIC {
            return None;
        }
        let (mac, body) = bytes[8..].split_at(32);
        // Constant time, so the check does not tell a forger how close a tag is.
        if !bool::from(hmac(&self.key, &[sha, body]).ct_eq(mac)) {
            tracing::warn!(sha = %hex::encode(sha), "ignoring a compiled artifact this node did not write");
            return None;
        }
        // SAFETY: the artifact's HMAC proves this node serialized it from the
        // component with this sha256, and wasmtime checks engine compatibility.
        match unsafe { Component::deserialize(engine, body) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::info!(sha = %hex::encode(sha), error = %e, "recompiling: cached artifact unusable");
                None
            }
        }
    }

    /// Stores `component` for `sha`; failures only cost a recompile later.
    pub(crate) fn store(&self, sha: &[u8; 32], component: &Component) {
        let result = (|| -> std::io::Result<()> {
            let body = component.serialize().map_err(std::io::Error::other)?;
            let mac = hmac(&self.key, &[sha, &body]);
            let tmp = self.dir.join(format!("{}.tmp", hex::encode(sha)));
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&mac)?;
            f.write_all(&body)?;
            drop(f);
            std::fs::rename(&tmp, self.path(sha))
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not cache a compiled component");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        // Key "Jefe" zero-padded is the same HMAC key as "Jefe" itself.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let tag = hmac(&key, &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
