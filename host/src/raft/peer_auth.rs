//! Authenticating peer traffic with the cluster secret.
//!
//! The secret is 32 random bytes made when a node initialises a cluster,
//! kept in `DATA_DIR/cluster.secret` (mode 0600, fsynced) and handed to a
//! joining node in exchange for a join token; it is never in the log or a
//! snapshot. Keys for each purpose are derived from it with HMAC-SHA256 under
//! a fixed label, so a MAC made for one purpose is useless for another.
//!
//! Every `/raft/…` request carries, in headers, the sender's id, a timestamp,
//! a random nonce, the sha256 of its body and an HMAC-SHA256 over all of
//! these plus method and path. The receiver checks the MAC from the headers
//! alone (constant-time), before it reads or decodes the body; then that the
//! timestamp is within `peer_auth_max_clock_skew_ms` of its own clock and the
//! `(timestamp, nonce)` pair is new ([`ReplayGuard`]); after reading the body,
//! that its sha256 is the signed one. Replies are signed over the request's
//! nonce, their status and their body's sha256, so a reply can neither be
//! forged nor moved to another request.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The secret's file name inside the data dir.
pub const SECRET_FILE: &str = "cluster.secret";
/// Bytes of the cluster secret.
pub const SECRET_BYTES: usize = 32;
/// Bytes of a request nonce.
pub const NONCE_BYTES: usize = 16;

/// The sender's timestamp, milliseconds since the Unix epoch.
pub const AUTH_TS_HEADER: &str = "cairn-auth-ts";
/// A fresh random nonce per request, hex.
pub const AUTH_NONCE_HEADER: &str = "cairn-auth-nonce";
/// The sha256 of the request body, hex.
pub const AUTH_BODY_HEADER: &str = "cairn-auth-body-sha256";
/// The HMAC-SHA256 of a request or reply, hex.
pub const AUTH_MAC_HEADER: &str = "cairn-auth-mac";
/// The sender's node id; signed, so logs and metrics can trust it once verified.
pub const AUTH_FROM_HEADER: &str = "cairn-raft-from";

/// Labels the derived keys and MAC inputs, so no MAC made for one purpose or
/// format version verifies as another.
const PEER_KEY_LABEL: &[u8] = b"cairn peer rpc key v1";
const JOIN_KEY_LABEL: &[u8] = b"cairn join token key v1";
const REQUEST_LABEL: &str = "cairn-request-v1";
const REPLY_LABEL: &str = "cairn-reply-v1";
const WRAP_LABEL: &[u8] = b"cairn join wrap v1";

type HmacSha256 = Hmac<Sha256>;

/// Why a peer request or reply is not accepted as authentic. Every variant is
/// a `401` on the peer port.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// An authentication header is absent or not in its format.
    #[error("missing or malformed {0} header")]
    Missing(&'static str),
    /// The MAC does not verify under the cluster's key.
    #[error("the request's MAC does not verify with this cluster's secret")]
    BadMac,
    /// The timestamp is too far from this node's clock.
    #[error(
        "timestamp {ts_ms} is more than {max_skew_ms} ms from this node's clock ({now_ms}); \
         are the nodes' clocks synchronised?"
    )]
    Stale {
        /// The signed timestamp.
        ts_ms: u64,
        /// This node's clock.
        now_ms: u64,
        /// The accepted distance.
        max_skew_ms: u64,
    },
    /// Older than every request the replay cache still remembers (it was full).
    #[error("the request is older than the replay cache remembers ({floor_ms})")]
    BeforeFloor {
        /// Requests at or before this timestamp are refused.
        floor_ms: u64,
    },
    /// The same timestamp and nonce were seen before.
    #[error("the request was already received once (replay)")]
    Replayed,
    /// The body is not the one the MAC covers.
    #[error("the body does not match its signed sha256")]
    BodyMismatch,
    /// A join token past its expiry.
    #[error("the join token expired at {expires_unix_secs} (unix seconds)")]
    TokenExpired {
        /// When it expired.
        expires_unix_secs: u64,
    },
    /// The OS gave no randomness for a nonce.
    #[error("no randomness for a nonce: {0}")]
    Random(String),
}

impl AuthError {
    /// The stable error code of the `401` (or, for [`AuthError::Random`], the `500`).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing(_) | AuthError::BadMac | AuthError::BodyMismatch => {
                "unauthenticated"
            }
            AuthError::Stale { .. } | AuthError::BeforeFloor { .. } => "stale-request",
            AuthError::Replayed => "replayed",
            AuthError::TokenExpired { .. } => "join-token-expired",
            AuthError::Random(_) => "internal",
        }
    }
}

/// Why the cluster secret could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// File system trouble.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not 64 hex digits.
    #[error("{} is not a cluster secret (expected {} hex digits)", path.display(), SECRET_BYTES * 2)]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The OS gave no randomness.
    #[error("no randomness for the cluster secret: {0}")]
    Random(String),
}

/// 32 bytes every member holds; authenticates all peer traffic.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret([u8; SECRET_BYTES]);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(redacted)")
    }
}

/// An HMAC-SHA256 key for one purpose, derived from the cluster secret.
#[derive(Clone)]
pub struct MacKey([u8; 32]);

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(redacted)")
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// `a == b` in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Milliseconds since the Unix epoch by this node's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl ClusterSecret {
    /// A fresh random secret.
    pub fn generate() -> Result<Self, SecretError> {
        random().map(Self).map_err(SecretError::Random)
    }

    /// The secret with these bytes (a joining node receives them).
    pub fn from_bytes(bytes: [u8; SECRET_BYTES]) -> Self {
        Self(bytes)
    }

    /// The raw bytes (to hand to a joining node, wrapped).
    pub(crate) fn bytes(&self) -> &[u8; SECRET_BYTES] {
        &self.0
    }

    /// Where the secret of the node with `data_dir` lives.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(SECRET_FILE)
    }

    /// Reads the secret from `data_dir`; `None` if there is none yet.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, SecretError> {
        let path = Self::path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SecretError::Io {
                    what: "reading",
                    path,
                    source,
                });
            }
        };
        let mut bytes = [0u8; SECRET_BYTES];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| SecretError::Malformed { path: path.clone() })?;
        warn_if_readable_by_others(&path);
        Ok(Some(Self(bytes)))
    }

    /// Writes the secret to `data_dir` durably: a temporary file created with
    /// mode 0600, fsynced, renamed into place, and the directory fsynced, so
    /// after a crash there is either the whole secret or none.
    pub fn store(&self, data_dir: &Path) -> Result<(), SecretError> {
        let path = Self::path(data_dir);
        let tmp = data_dir.join(format!("{SECRET_FILE}.tmp"));
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| SecretError::Io { what, path, source }
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io("creating", &tmp))?;
        file.write_all(format!("{}\n", hex::encode(self.0)).as_bytes())
            .map_err(io("writing", &tmp))?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io("renaming into", &path))?;
        std::fs::File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", data_dir))?;
        Ok(())
    }

    /// The key that signs and verifies Raft RPCs and their replies.
    pub fn peer_key(&self) -> MacKey {
        MacKey(hmac(&self.0, &[PEER_KEY_LABEL]))
    }

    /// The key a join token with this id and expiry carries. Tokens are not
    /// stored anywhere: any member recomputes the key from the secret.
    pub fn join_key(&self, token_id: &str, expires_unix_secs: u64) -> MacKey {
        MacKey(hmac(
            &self.0,
            &[
                JOIN_KEY_LABEL,
                b"\n",
                token_id.as_bytes(),
                b"\n",
                expires_unix_secs.to_string().as_bytes(),
            ],
        ))
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the cluster secret is readable by other users; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

impl MacKey {
    /// A key from raw bytes (a join token carries one).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes (to put in a join token).
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// One-time pad for handing the cluster secret to the holder of this (join)
    /// key in reply to the request with `nonce`: HMAC-SHA256 as a PRF, so the
    /// pad is unpredictable without the key and never repeats (nonces are
    /// random and a replayed request is refused).
    pub fn wrap_secret(&self, nonce: &[u8; NONCE_BYTES], secret: &[u8; SECRET_BYTES]) -> [u8; 32] {
        let pad = hmac(&self.0, &[WRAP_LABEL, nonce]);
        std::array::from_fn(|i| secret[i] ^ pad[i])
    }

    fn request_mac(&self, r: &RequestFields<'_>) -> [u8; 32] {
        let text = format!(
            "{REQUEST_LABEL}\n{}\n{}\n{}\n{}\n{}\n{}",
            r.method,
            r.path,
            r.from,
            r.ts_ms,
            hex::encode(r.nonce),
            hex::encode(r.body_sha256)
        );
        hmac(&self.0, &[text.as_bytes()])
    }

    fn reply_mac(&self, nonce: &[u8; NONCE_BYTES], status: u16, body: &[u8]) -> [u8; 32] {
        let digest: [u8; 32] = Sha256::digest(body).into();
        let text = format!(
            "{REPLY_LABEL}\n{}\n{status}\n{}",
            hex::encode(nonce),
            hex::encode(digest)
        );
        hmac(&self.0, &[text.as_bytes()])
    }
}

/// What a request MAC covers.
struct RequestFields<'a> {
    method: &'a str,
    path: &'a str,
    from: &'a str,
    ts_ms: u64,
    nonce: [u8; NONCE_BYTES],
    body_sha256: [u8; 32],
}

/// The headers to add to one signed request, and its nonce (to check the reply).
#[derive(Debug)]
pub struct SignedRequest {
    /// `(name, value)` pairs.
    pub headers: Vec<(&'static str, String)>,
    /// The request's nonce; the reply is signed over it.
    pub nonce: [u8; NONCE_BYTES],
}

/// Signs a request from node `from` of `method path` with `body` at `now_ms`.
pub fn sign_request(
    key: &MacKey,
    method: &str,
    path: &str,
    from: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<SignedRequest, AuthError> {
    let nonce = random().map_err(AuthError::Random)?;
    let fields = RequestFields {
        method,
        path,
        from,
        ts_ms: now_ms,
        nonce,
        body_sha256: Sha256::digest(body).into(),
    };
    let mac = key.request_mac(&fields);
    Ok(SignedRequest {
        headers: vec![
            (AUTH_FROM_HEADER, from.to_string()),
            (AUTH_TS_HEADER, now_ms.to_string()),
            (AUTH_NONCE_HEADER, hex::encode(nonce)),
            (AUTH_BODY_HEADER, hex::encode(fields.body_sha256)),
            (AUTH_MAC_HEADER, hex::encode(mac)),
        ],
        nonce,
    })
}

/// A request whose headers verified; its body is still to be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The signed timestamp.
    pub ts_ms: u64,
    /// The request's nonce (the reply is signed over it).
    pub nonce: [u8; NONCE_BYTES],
    body_sha256: [u8; 32],
}

impl Verified {
    /// Checks that `body` is the body the MAC covers.
    pub fn check_body(&self, body: &[u8]) -> Result<(), AuthError> {
        let digest: [u8; 32] = Sha256::digest(body).into();
        if same(&digest, &self.body_sha256) {
            Ok(())
        } else {
            Err(AuthError::BodyMismatch)
        }
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, AuthError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing(name))
}

fn hex_header<const N: usize>(
    headers: &HeaderMap,
    name: &'static str,
) -> Result<[u8; N], AuthError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(header(headers, name)?, &mut out).map_err(|_| AuthError::Missing(name))?;
    Ok(out)
}

/// Checks a request's MAC from its headers alone (the body is not needed yet).
pub fn verify_request(
    key: &MacKey,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> Result<Verified, AuthError> {
    let from = header(headers, AUTH_FROM_HEADER)?;
    let ts_ms = header(headers, AUTH_TS_HEADER)?
        .parse()
        .map_err(|_| AuthError::Missing(AUTH_TS_HEADER))?;
    let nonce = hex_header(headers, AUTH_NONCE_HEADER)?;
    let body_sha256 = hex_header(headers, AUTH_BODY_HEADER)?;
    let mac: [u8; 32] = hex_header(headers, AUTH_MAC_HEADER)?;
    let expected = key.request_mac(&RequestFields {
        method,
        path,
        from,
        ts_ms,
        nonce,
        body_sha256,
    });
    if !same(&expected, &mac) {
        return Err(AuthError::BadMac);
    }
    Ok(Verified {
        ts_ms,
        nonce,
        body_sha256,
    })
}

/// The MAC header value of a reply to the request with `nonce`.
pub fn sign_reply(key: &MacKey, nonce: &[u8; NONCE_BYTES], status: u16, body: &[u8]) -> String {
    hex::encode(key.reply_mac(nonce, status, body))
}

/// Checks that a reply was made by a holder of `key` for the request with `nonce`.
pub fn verify_reply(
    key: &MacKey,
    nonce: &[u8; NONCE_BYTES],
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), AuthError> {
    let mac: [u8; 32] = hex_header(headers, AUTH_MAC_HEADER)?;
    if same(&key.reply_mac(nonce, status, body), &mac) {
        Ok(())
    } else {
        Err(AuthError::BadMac)
    }
}

/// Remembers the `(timestamp, nonce)` of recently accepted requests, so a
/// captured request cannot be played again.
///
/// A request is accepted only if its timestamp is within `max_skew_ms` of
/// this node's clock, so a pair needs remembering only until the clock has
/// moved `max_skew_ms` past its timestamp. The set is bounded: when full, the
/// oldest pair is forgotten and the floor is raised to its timestamp, and a
/// request at or before the floor is refused as too old. So a pair is either
/// remembered or behind the floor, and a replay is refused either way; the
/// cost of a full cache is that a request delayed for longer than the cache
/// covers is refused too (openraft sends a fresh one).
pub struct ReplayGuard {
    max_skew_ms: u64,
    capacity: usize,
    state: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    pairs: BTreeSet<(u64, [u8; NONCE_BYTES])>,
    floor_ms: u64,
}

impl ReplayGuard {
    /// A guard accepting timestamps within `max_skew_ms` of the clock and
    /// remembering at most `capacity` pairs.
    pub fn new(max_skew_ms: u64, capacity: usize) -> Self {
        Self {
            max_skew_ms,
            capacity: capacity.max(1),
            state: Mutex::default(),
        }
    }

    /// Accepts `(ts_ms, nonce)` once, if fresh at `now_ms`.
    pub fn admit(
        &self,
        ts_ms: u64,
        nonce: [u8; NONCE_BYTES],
        now_ms: u64,
    ) -> Result<(), AuthError> {
        if ts_ms.abs_diff(now_ms) > self.max_skew_ms {
            return Err(AuthError::Stale {
                ts_ms,
                now_ms,
                max_skew_ms: self.max_skew_ms,
            });
        }
        let mut seen = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // Pairs the window check refuses anyway need not be remembered.
        let horizon = now_ms.saturating_sub(self.max_skew_ms);
        while seen.pairs.first().is_some_and(|(ts, _)| *ts < horizon) {
            seen.pairs.pop_first();
        }
        if ts_ms <= seen.floor_ms {
            return Err(AuthError::BeforeFloor {
                floor_ms: seen.floor_ms,
            });
        }
        if !seen.pairs.insert((ts_ms, nonce)) {
            return Err(AuthError::Replayed);
        }
        while seen.pairs.len() > self.capacity {
            if let Some((ts, _)) = seen.pairs.pop_first() {
                seen.floor_ms = seen.floor_ms.max(ts);
            }
        }
        Ok(())
    }

    /// Pairs remembered now.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pairs
            .len()
    }

    /// Whether no pair is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(signed: &SignedRequest) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in &signed.headers {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_is_refused() {
        let secret = ClusterSecret::generate().unwrap();
        let key = secret.peer_key();
        let body = b"frame bytes";
        let signed = sign_request(&key, "POST", "/raft/append", "2", body, 1_000).unwrap();
        let h = headers(&signed);
        let ok = verify_request(&key, "POST", "/raft/append", &h).unwrap();
        assert_eq!(ok.ts_ms, 1_000);
        ok.check_body(body).unwrap();
        assert_eq!(ok.check_body(b"other bytes"), Err(AuthError::BodyMismatch));

        // Another path, method, key or any changed header: refused.
        assert_eq!(
            verify_request(&key, "POST", "/raft/vote", &h),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            verify_request(&key, "PUT", "/raft/append", &h),
            Err(AuthError::BadMac)
        );
        let other = ClusterSecret::generate().unwrap().peer_key();
        assert_eq!(
            verify_request(&other, "POST", "/raft/append", &h),
            Err(AuthError::BadMac)
        );
        for (name, value) in [
            (AUTH_FROM_HEADER, "3"),
            (AUTH_TS_HEADER, "1001"),
            (AUTH_NONCE_HEADER, "00000000000000000000000000000000"),
            (AUTH_BODY_HEADER, &hex::encode(Sha256::digest(b"x"))),
        ] {
            let mut forged = h.clone();
            forged.insert(name, value.parse().unwrap());
            assert_eq!(
                verify_request(&key, "POST", "/raft/append", &forged),
                Err(AuthError::BadMac),
                "{name}"
            );
        }
        let mut missing = h.clone();
        missing.remove(AUTH_MAC_HEADER);
        assert_eq!(
            verify_request(&key, "POST", "/raft/append", &missing),
            Err(AuthError::Missing(AUTH_MAC_HEADER))
        );
        // The join key of a token is not the peer key.
        let join = secret.join_key("abc", 99);
        assert_eq!(
            verify_request(&join, "POST", "/raft/append", &h),
            Err(AuthError::BadMac)
        );
    }

    #[test]
    fn replies_are_bound_to_their_request() {
        let key = ClusterSecret::generate().unwrap().peer_key();
        let nonce = [7u8; NONCE_BYTES];
        let mut h = HeaderMap::new();
        h.insert(
            AUTH_MAC_HEADER,
            sign_reply(&key, &nonce, 200, b"ok").parse().unwrap(),
        );
        verify_reply(&key, &nonce, 200, &h, b"ok").unwrap();
        assert!(verify_reply(&key, &[8u8; NONCE_BYTES], 200, &h, b"ok").is_err());
        assert!(verify_reply(&key, &nonce, 500, &h, b"ok").is_err());
        assert!(verify_reply(&key, &nonce, 200, &h, b"ko").is_err());
        assert!(verify_reply(&key, &nonce, 200, &HeaderMap::new(), b"ok").is_err());
    }

    #[test]
    fn the_replay_guard_refuses_repeats_old_and_far_future_requests() {
        let guard = ReplayGuard::new(1_000, 100);
        let now = 50_000;
        guard.admit(now, [1; NONCE_BYTES], now).unwrap();
        assert_eq!(
            guard.admit(now, [1; NONCE_BYTES], now),
            Err(AuthError::Replayed)
        );
        // Still refused a little later, while the timestamp is in the window.
        assert_eq!(
            guard.admit(now, [1; NONCE_BYTES], now + 900),
            Err(AuthError::Replayed)
        );
        // Out of the window either way.
        assert!(matches!(
            guard.admit(now, [1; NONCE_BYTES], now + 1_001),
            Err(AuthError::Stale { .. })
        ));
        assert!(matches!(
            guard.admit(now + 1_002, [2; NONCE_BYTES], now),
            Err(AuthError::Stale { .. })
        ));
        // Forgotten once the window has passed it.
        guard
            .admit(now + 5_000, [3; NONCE_BYTES], now + 5_000)
            .unwrap();
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn a_full_replay_guard_raises_its_floor_instead_of_forgetting_silently() {
        let guard = ReplayGuard::new(60_000, 3);
        let now = 100_000;
        for (i, ts) in [10u64, 20, 30, 40].iter().enumerate() {
            guard.admit(now + ts, [i as u8; NONCE_BYTES], now).unwrap();
        }
        assert_eq!(guard.len(), 3);
        // The oldest pair was forgotten: a replay of it is below the floor.
        assert_eq!(
            guard.admit(now + 10, [0; NONCE_BYTES], now),
            Err(AuthError::BeforeFloor { floor_ms: now + 10 })
        );
        // The remembered ones are still replays; newer requests pass.
        assert_eq!(
            guard.admit(now + 20, [1; NONCE_BYTES], now),
            Err(AuthError::Replayed)
        );
        guard.admit(now + 50, [9; NONCE_BYTES], now).unwrap();
    }

    #[test]
    fn the_secret_is_stored_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ClusterSecret::load(dir.path()).unwrap().is_none());
        let secret = ClusterSecret::generate().unwrap();
        secret.store(dir.path()).unwrap();
        assert_eq!(
            ClusterSecret::load(dir.path()).unwrap(),
            Some(secret.clone())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(ClusterSecret::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(format!("{secret:?}"), "ClusterSecret(redacted)");
        std::fs::write(ClusterSecret::path(dir.path()), "nope").unwrap();
        assert!(matches!(
            ClusterSecret::load(dir.path()),
            Err(SecretError::Malformed { .. })
        ));
    }

    #[test]
    fn a_wrapped_secret_unwraps_only_with_the_join_key() {
        let secret = ClusterSecret::generate().unwrap();
        let key = secret.join_key("t1", 123);
        let nonce = [5u8; NONCE_BYTES];
        let wrapped = key.wrap_secret(&nonce, secret.bytes());
        assert_ne!(&wrapped, secret.bytes());
        assert_eq!(&key.wrap_secret(&nonce, &wrapped), secret.bytes());
        let other = secret.join_key("t2", 123);
        assert_ne!(&other.wrap_secret(&nonce, &wrapped), secret.bytes());
    }
}
