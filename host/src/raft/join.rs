//! Joining a cluster: join tokens, and the sending half of the two join RPCs
//! (the receiving half is in `peer_listener`).
//!
//! A join token is made by any member (`POST /v1/cluster/join-token`,
//! `cairn join-token`) and reads
//! `cairn-join-1.<expires unix secs>.<id>.<key>.<peer addresses, comma-separated>`.
//! It does not contain the cluster secret: its key is an HMAC of the secret
//! over the token's id and expiry, which any member can recompute, so tokens
//! are stored nowhere and a leaked token is worthless once it expires. The
//! holder of a token joins in two steps, both on a member's peer port:
//!
//! 1. `POST /raft/join-secret`, signed with the token's key: any member
//!    checks the expiry and the MAC and answers with the cluster secret,
//!    XORed with a pad only the key's holder can compute (HMAC of the key
//!    over the request's nonce), in a reply signed with the key. The new node
//!    stores the secret before it serves anything.
//! 2. `POST /raft/join`, signed with the cluster secret like every Raft RPC:
//!    the leader adds the node as a learner, waits until it has caught up and
//!    promotes it. A member that is not the leader answers `409 not-leader`
//!    naming the leader's peer address (signed), and the node asks there.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::http_client::{self, ClientError, HttpClient};
use crate::raft::peer_auth::{
    self, AuthError, ClusterSecret, MacKey, NONCE_BYTES, SECRET_BYTES, sign_request, verify_reply,
};
use crate::raft::types::NodeId;

/// First field of every join token (and its format version).
pub const JOIN_TOKEN_PREFIX: &str = "cairn-join-1";
/// Carries the token's id on `/raft/join-secret`.
pub const JOIN_TOKEN_ID_HEADER: &str = "cairn-join-token-id";
/// Carries the token's expiry (unix seconds) on `/raft/join-secret`.
pub const JOIN_TOKEN_EXPIRES_HEADER: &str = "cairn-join-token-expires";
/// Step 1: the cluster secret for a join token.
pub const JOIN_SECRET_PATH: &str = "/raft/join-secret";
/// Step 2: add the (authenticated) node to the membership.
pub const JOIN_PATH: &str = "/raft/join";
/// Largest body of either join request (a small JSON object).
pub const JOIN_MAX_BODY_BYTES: u64 = 64 * 1024;
/// Largest reply the joining node reads.
const JOIN_MAX_REPLY_BYTES: usize = 64 * 1024;
/// Bytes of a token id.
const TOKEN_ID_BYTES: usize = 8;

/// A parsed join token.
#[derive(Clone)]
pub struct JoinToken {
    /// Random id; with the expiry it determines the key.
    pub id: String,
    /// The token is refused after this time (unix seconds).
    pub expires_unix_secs: u64,
    /// The key that signs the secret request.
    pub key: MacKey,
    /// Peer addresses of the members when the token was made, leader first.
    pub peers: Vec<String>,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("id", &self.id)
            .field("expires_unix_secs", &self.expires_unix_secs)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl JoinToken {
    /// A new token of the cluster with `secret`, valid until `expires_unix_secs`,
    /// naming `peers` as the members to ask.
    pub fn issue(
        secret: &ClusterSecret,
        peers: Vec<String>,
        expires_unix_secs: u64,
    ) -> Result<Self, AuthError> {
        let mut id = [0u8; TOKEN_ID_BYTES];
        getrandom::fill(&mut id).map_err(|e| AuthError::Random(e.to_string()))?;
        let id = hex::encode(id);
        Ok(Self {
            key: secret.join_key(&id, expires_unix_secs),
            id,
            expires_unix_secs,
            peers,
        })
    }

    /// The token as text (what `cairn join-token` prints).
    pub fn encode(&self) -> String {
        format!(
            "{JOIN_TOKEN_PREFIX}.{}.{}.{}.{}",
            self.expires_unix_secs,
            self.id,
            hex::encode(self.key.bytes()),
            self.peers.join(",")
        )
    }

    /// Parses [`JoinToken::encode`]'s text.
    pub fn parse(text: &str) -> Result<Self, JoinError> {
        let bad = |why: &str| JoinError::BadToken(why.to_string());
        // Addresses contain dots, so they are the last field and keep theirs.
        let mut fields = text.trim().splitn(5, '.');
        if fields.next() != Some(JOIN_TOKEN_PREFIX) {
            return Err(bad(&format!("it does not start with {JOIN_TOKEN_PREFIX}.")));
        }
        let expires_unix_secs = fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad("no expiry"))?;
        let id = fields
            .next()
            .filter(|f| f.len() == TOKEN_ID_BYTES * 2 && hex::decode(f).is_ok())
            .ok_or_else(|| bad("no token id"))?
            .to_string();
        let mut key = [0u8; 32];
        fields
            .next()
            .and_then(|f| hex::decode_to_slice(f, &mut key).ok())
            .ok_or_else(|| bad("no key"))?;
        let peers = fields
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Self {
            id,
            expires_unix_secs,
            key: MacKey::from_bytes(key),
            peers,
        })
    }
}

/// Body of `POST /raft/join`: the node to add and its two addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The new node's id.
    pub id: NodeId,
    /// Its client API address.
    pub addr: String,
    /// Its peer listener address.
    pub peer_addr: String,
}

/// Body of a `200` to `POST /raft/join-secret`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecretReply {
    /// The cluster secret XOR the pad, hex.
    pub wrapped_secret: String,
}

/// Body of a `409 not-leader` to `POST /raft/join` (beside the usual `error`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NotLeaderReply {
    /// The leader's peer address, if this member knows it.
    pub leader_peer_addr: Option<String>,
}

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The token text is not a join token.
    #[error("malformed join token: {0}")]
    BadToken(String),
    /// A member refused the credentials (wrong, forged or expired token, or a
    /// secret of another cluster). Retrying cannot help.
    #[error("{addr} refused the join ({code}): {message}")]
    Refused {
        /// The member that refused.
        addr: String,
        /// Its error code (`unauthenticated`, `join-token-expired`, …).
        code: String,
        /// Its message.
        message: String,
    },
    /// A member's reply did not verify (not signed with the cluster's key).
    #[error("{addr} sent a reply that does not verify: {reason}")]
    BadReply {
        /// The member.
        addr: String,
        /// Why.
        reason: String,
    },
    /// No member could be reached, or none succeeded, within the attempts.
    #[error("no member accepted the join after {attempts} attempts; last: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The request could not be signed.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// How often and how patiently to ask.
#[derive(Clone, Copy, Debug)]
pub struct JoinPolicy {
    /// Rounds over all addresses.
    pub attempts: u32,
    /// Pause between rounds.
    pub retry_interval: Duration,
    /// Deadline of one request (the membership step waits for catch-up).
    pub request_timeout: Duration,
}

/// One reply; a `2xx`/`409` one verified against the key that signed the request.
struct Reply {
    status: StatusCode,
    body: Bytes,
    /// The nonce of the request it answers.
    nonce: [u8; NONCE_BYTES],
}

/// `{"error":{"code","message"}}` of a refusal, or the body as text.
fn describe(body: &[u8]) -> (String, String) {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v["error"][name].as_str())
            .map(str::to_string)
    };
    match (field("code"), field("message")) {
        (Some(code), Some(message)) => (code, message),
        _ => (
            "http".to_string(),
            String::from_utf8_lossy(body).chars().take(200).collect(),
        ),
    }
}

/// One signed request to one member.
struct Call<'a> {
    client: &'a HttpClient,
    key: &'a MacKey,
    from: NodeId,
    path: &'static str,
    body: &'a [u8],
    extra: &'a [(&'static str, String)],
    timeout: Duration,
}

impl Call<'_> {
    /// POSTs the request to `base`; a `2xx` or `409` reply must be signed with
    /// the same key (other statuses come before authentication and are not).
    /// The outer error is a transport failure, worth trying elsewhere.
    async fn send(&self, base: &str) -> Result<Result<Reply, JoinError>, ClientError> {
        let uri = http_client::url(base, self.path)?;
        let signed = match sign_request(
            self.key,
            "POST",
            self.path,
            &self.from.to_string(),
            self.body,
            peer_auth::now_ms(),
        ) {
            Ok(signed) => signed,
            Err(e) => return Ok(Err(e.into())),
        };
        let mut req = http_client::request(
            Method::POST,
            uri,
            Some("application/json"),
            Bytes::copy_from_slice(self.body),
        );
        for (name, value) in signed.headers.iter().chain(self.extra) {
            if let Ok(v) = value.parse() {
                req.headers_mut().insert(*name, v);
            }
        }
        let resp = http_client::send(self.client, req, self.timeout, JOIN_MAX_REPLY_BYTES).await?;
        let (parts, body) = resp.into_parts();
        if parts.status.is_success() || parts.status == StatusCode::CONFLICT {
            let status = parts.status.as_u16();
            if let Err(e) = verify_reply(self.key, &signed.nonce, status, &parts.headers, &body) {
                return Ok(Err(JoinError::BadReply {
                    addr: base.to_string(),
                    reason: e.to_string(),
                }));
            }
        }
        Ok(Ok(Reply {
            status: parts.status,
            body,
            nonce: signed.nonce,
        }))
    }
}

/// What one answer means for the joining node.
enum Step<T> {
    Done(T),
    /// Try this address next (a leader named by a member).
    Redirect(String),
    /// Try the next address (or round); the reason, for the log.
    Next(String),
}

/// A failed reply: a refusal of the credentials is final (every member holds
/// the same secret); anything else is worth asking elsewhere or again.
fn refusal<T>(addr: &str, reply: &Reply) -> Result<Step<T>, JoinError> {
    let (code, message) = describe(&reply.body);
    match reply.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(JoinError::Refused {
            addr: addr.to_string(),
            code,
            message,
        }),
        StatusCode::NOT_FOUND => Ok(Step::Next(format!(
            "{addr} answered 404: is it a member's peer address (--peer-advertise)?"
        ))),
        status => Ok(Step::Next(format!(
            "{addr} answered {status}: {code}: {message}"
        ))),
    }
}

/// Sends `call` to each address in turn, for up to `policy.attempts` rounds,
/// and lets `answer` read each reply; an address that cannot be reached is
/// passed over for the next.
async fn ask_around<T>(
    call: &Call<'_>,
    addrs: &[String],
    policy: JoinPolicy,
    mut answer: impl FnMut(&str, Reply) -> Result<Step<T>, JoinError>,
) -> Result<T, JoinError> {
    let mut last = String::from("no member address to ask (the token names none; give --join)");
    for attempt in 1..=policy.attempts {
        let mut queue: Vec<String> = addrs.to_vec();
        let mut redirects = 0;
        while !queue.is_empty() {
            let addr = queue.remove(0);
            let step = match call.send(&addr).await {
                Ok(reply) => answer(&addr, reply?)?,
                Err(e) => Step::Next(e.to_string()),
            };
            match step {
                Step::Done(v) => return Ok(v),
                // A member named the leader: ask it next, a bounded number of times.
                Step::Redirect(leader) if redirects <= addrs.len() => {
                    redirects += 1;
                    queue.insert(0, leader);
                }
                Step::Redirect(leader) => last = format!("redirected to {leader} again"),
                Step::Next(why) => last = why,
            }
        }
        if attempt < policy.attempts {
            tracing::warn!(attempt, error = %last, "join attempt failed; retrying");
            tokio::time::sleep(policy.retry_interval).await;
        }
    }
    Err(JoinError::GaveUp {
        attempts: policy.attempts,
        last,
    })
}

/// Step 1: obtains the cluster secret with `token` from the first member at
/// `addrs` that answers.
pub async fn fetch_secret(
    client: &HttpClient,
    from: NodeId,
    token: &JoinToken,
    addrs: &[String],
    policy: JoinPolicy,
) -> Result<ClusterSecret, JoinError> {
    let extra = [
        (JOIN_TOKEN_ID_HEADER, token.id.clone()),
        (
            JOIN_TOKEN_EXPIRES_HEADER,
            token.expires_unix_secs.to_string(),
        ),
    ];
    let body = serde_json::json!({ "id": from }).to_string().into_bytes();
    let call = Call {
        client,
        key: &token.key,
        from,
        path: JOIN_SECRET_PATH,
        body: &body,
        extra: &extra,
        timeout: policy.request_timeout,
    };
    ask_around(&call, addrs, policy, |addr, reply| {
        if reply.status != StatusCode::OK {
            return refusal(addr, &reply);
        }
        let bad = |reason: String| JoinError::BadReply {
            addr: addr.to_string(),
            reason,
        };
        let parsed: SecretReply =
            serde_json::from_slice(&reply.body).map_err(|e| bad(e.to_string()))?;
        let mut wrapped = [0u8; SECRET_BYTES];
        hex::decode_to_slice(&parsed.wrapped_secret, &mut wrapped)
            .map_err(|e| bad(e.to_string()))?;
        // The pad is the same operation: XOR again with the key over our nonce.
        let secret = token.key.wrap_secret(&reply.nonce, &wrapped);
        tracing::info!(member = %addr, "received the cluster secret");
        Ok(Step::Done(ClusterSecret::from_bytes(secret)))
    })
    .await
}

/// Step 2: asks the cluster (its leader, found through `addrs`) to add this
/// node as `request` says, authenticated with the cluster `secret`. Returns
/// once the node is a voter.
pub async fn request_membership(
    client: &HttpClient,
    secret: &ClusterSecret,
    request: &JoinRequest,
    addrs: &[String],
    policy: JoinPolicy,
) -> Result<(), JoinError> {
    let body = serde_json::to_vec(request).map_err(|e| JoinError::BadToken(e.to_string()))?;
    let key = secret.peer_key();
    let call = Call {
        client,
        key: &key,
        from: request.id,
        path: JOIN_PATH,
        body: &body,
        extra: &[],
        timeout: policy.request_timeout,
    };
    ask_around(&call, addrs, policy, |addr, reply| {
        if reply.status.is_success() {
            tracing::info!(member = %addr, "joined the cluster");
            return Ok(Step::Done(()));
        }
        if reply.status == StatusCode::CONFLICT
            && let Ok(NotLeaderReply {
                leader_peer_addr: Some(leader),
            }) = serde_json::from_slice(&reply.body)
            && leader != addr
        {
            return Ok(Step::Redirect(leader));
        }
        refusal(addr, &reply)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_keeps_its_key_hidden_in_debug() {
        let secret = ClusterSecret::generate().unwrap();
        let peers = vec![
            "127.0.0.1:7071".to_string(),
            "https://n2.example:7171".into(),
        ];
        let token = JoinToken::issue(&secret, peers.clone(), 1_900_000_000).unwrap();
        let text = token.encode();
        assert!(text.starts_with("cairn-join-1.1900000000."), "{text}");
        let back = JoinToken::parse(&text).unwrap();
        assert_eq!(back.id, token.id);
        assert_eq!(back.peers, peers);
        assert_eq!(back.expires_unix_secs, 1_900_000_000);
        // The key is the one the cluster recomputes, and not the secret itself.
        assert_eq!(
            back.key.bytes(),
            secret.join_key(&token.id, 1_900_000_000).bytes()
        );
        assert!(!text.contains(&hex::encode(secret.bytes())));
        assert!(!format!("{token:?}").contains(&hex::encode(token.key.bytes())));
    }

    #[test]
    fn malformed_tokens_are_refused_with_a_reason() {
        for bad in [
            "",
            "hello",
            "cairn-join-1",
            "cairn-join-1.soon.0011223344556677.00.x",
            "cairn-join-1.5.xyz.00.x",
            "cairn-join-1.5.0011223344556677.zz.x",
            "cairn-join-2.5.0011223344556677.00.x",
        ] {
            assert!(
                matches!(JoinToken::parse(bad), Err(JoinError::BadToken(_))),
                "{bad:?}"
            );
        }
        // No addresses is allowed (the node is then given --join).
        let key = "00".repeat(32);
        let t = JoinToken::parse(&format!("cairn-join-1.5.0011223344556677.{key}.")).unwrap();
        assert!(t.peers.is_empty());
    }

    #[test]
    fn a_reply_body_describes_its_error() {
        let (code, message) = describe(br#"{"error":{"code":"unauthenticated","message":"no"}}"#);
        assert_eq!((code.as_str(), message.as_str()), ("unauthenticated", "no"));
        let (code, _) = describe(b"<html>");
        assert_eq!(code, "http");
    }
}
