//! The replicated token table: which bearer tokens exist, with which role and
//! plugin scope. Every node applies the same create and revoke commands, so
//! every node decides alike whether a token is valid, and a revocation holds
//! everywhere once applied.
//!
//! Only the sha256 of a token's secret is stored (in the log, snapshots and
//! state); the secret itself is drawn from the OS on the node that proposes
//! the token and shown to the client once. A plain sha256 is enough here: the
//! secret is 32 uniformly random bytes, so there is no dictionary to try and a
//! deliberately slow hash (bcrypt, argon2) would add nothing but latency to
//! every request.
//!
//! Token ids are `t<log index>` of the create command: deterministic on every
//! node without the proposer choosing anything, unique by construction (no
//! collision path to handle at apply), and they sort by creation.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{CommandResult, ErrorBody, validate_plugin_name};

/// Most tokens the table holds; a create beyond it fails. A constant, not a
/// setting: it shapes replicated state, so every node must agree on it.
pub const MAX_TOKENS: usize = 10_000;
/// Longest token name (a label for humans).
pub const MAX_TOKEN_NAME_BYTES: usize = 128;
/// Most plugins one token may be limited to.
pub const MAX_TOKEN_PLUGINS: usize = 256;
/// Bytes of randomness in a token secret.
pub const TOKEN_SECRET_BYTES: usize = 32;
/// What every token string starts with: `cairn_<id>_<64 hex digits>`.
pub const TOKEN_PREFIX: &str = "cairn_";

/// Code of a malformed create request (role, plugins, name).
pub const INVALID_TOKEN_REQUEST: &str = "invalid-token-request";
/// Code of a revoke naming no token.
pub const TOKEN_NOT_FOUND: &str = "token-not-found";
/// Code of a revoke that would leave the cluster without an admin token.
pub const LAST_ADMIN_TOKEN: &str = "last-admin-token";
/// Code of a bootstrap create refused because the cluster already has tokens.
pub const TOKENS_EXIST: &str = "tokens-exist";
/// Code of a create refused because the table is full.
pub const TOO_MANY_TOKENS: &str = "too-many-tokens";

/// What a token may do (see `api::auth::permits` for the exact rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: tokens, members, settings, plus all a deployer may do.
    Admin,
    /// Deploy, upgrade and remove plugins, plus all a writer may do.
    Deployer,
    /// Apply and query (on its plugins), plus all a reader may do.
    Writer,
    /// Query (on its plugins), read cluster status, metrics, plugin list, state hash.
    Reader,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Deployer, Role::Writer, Role::Reader];

    /// The role's name on the wire and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Deployer => "deployer",
            Role::Writer => "writer",
            Role::Reader => "reader",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so width and alignment work in tables.
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (admin, deployer, writer, reader)"))
    }
}

/// A token as everyone may see it: never the secret nor its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// `t<log index of its creation>`.
    pub id: String,
    /// A label chosen at creation.
    pub name: Option<String>,
    /// What it may do.
    pub role: Role,
    /// The plugins it is limited to, sorted; `None`: every plugin.
    pub plugins: Option<Vec<String>>,
    /// Log index of its creation.
    pub created_index: u64,
}

/// The fields of a create command, borrowed from it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewToken<'a> {
    pub(crate) name: Option<&'a str>,
    pub(crate) role: Role,
    pub(crate) plugins: Option<&'a [String]>,
    pub(crate) secret_sha256: &'a [u8; 32],
}

/// One stored token: its public part and the hash of its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    pub(crate) info: TokenInfo,
    pub(crate) secret_sha256: [u8; 32],
}

/// The token table (persistent map: cloning it for a snapshot is O(1)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    by_id: imbl::OrdMap<String, TokenRecord>,
}

/// Checks a create request and puts its plugin list in canonical order.
/// The API checks the same before proposing, for a prompt `400`.
pub fn validate_new_token(
    role: Role,
    name: Option<&str>,
    plugins: Option<&[String]>,
) -> Result<Option<Vec<String>>, ErrorBody> {
    let bad = |m: String| ErrorBody::new(INVALID_TOKEN_REQUEST, m);
    if let Some(name) = name
        && (name.is_empty()
            || name.len() > MAX_TOKEN_NAME_BYTES
            || name.chars().any(char::is_control))
    {
        return Err(bad(format!(
            "a token name is 1-{MAX_TOKEN_NAME_BYTES} bytes without control characters"
        )));
    }
    let Some(plugins) = plugins else {
        return Ok(None);
    };
    if role == Role::Admin {
        return Err(bad(
            "an admin token cannot be limited to plugins (admin may do everything)".into(),
        ));
    }
    if plugins.is_empty() || plugins.len() > MAX_TOKEN_PLUGINS {
        return Err(bad(format!(
            "plugins lists 1-{MAX_TOKEN_PLUGINS} plugin names; leave it out for every plugin"
        )));
    }
    for p in plugins {
        validate_plugin_name(p).map_err(|e| bad(e.message))?;
    }
    let mut sorted = plugins.to_vec();
    sorted.sort();
    sorted.dedup();
    Ok(Some(sorted))
}

/// The string a client presents: `cairn_<id>_<hex secret>`.
pub fn format_token(id: &str, secret: &[u8]) -> String {
    format!("{TOKEN_PREFIX}{id}_{}", hex::encode(secret))
}

/// Splits a presented token into id and secret bytes; `None` if malformed.
pub fn parse_token(token: &str) -> Option<(&str, [u8; TOKEN_SECRET_BYTES])> {
    let (id, secret_hex) = token.strip_prefix(TOKEN_PREFIX)?.split_once('_')?;
    let mut secret = [0u8; TOKEN_SECRET_BYTES];
    hex::decode_to_slice(secret_hex, &mut secret).ok()?;
    Some((id, secret))
}

/// sha256 of a secret, as stored.
pub fn secret_sha256(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

impl Tokens {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every token, in id order.
    pub fn list(&self) -> Vec<TokenInfo> {
        self.by_id.values().map(|r| r.info.clone()).collect()
    }

    /// The token `presented` stands for, if it is well-formed, exists and its
    /// secret matches. The hash comparison takes the same time wherever the
    /// hashes differ; the id lookup may leak whether an id exists, and ids
    /// are not secret.
    pub fn verify(&self, presented: &str) -> Option<TokenInfo> {
        let (id, secret) = parse_token(presented)?;
        let record = self.by_id.get(id)?;
        let presented_hash = secret_sha256(&secret);
        bool::from(presented_hash.ct_eq(&record.secret_sha256)).then(|| record.info.clone())
    }

    pub(crate) fn records(&self) -> impl ExactSizeIterator<Item = &TokenRecord> {
        self.by_id.values()
    }

    pub(crate) fn from_records(records: Vec<TokenRecord>) -> Self {
        Self {
            by_id: records
                .into_iter()
                .map(|r| (r.info.id.clone(), r))
                .collect(),
        }
    }

    /// Applies a create at log `index`. With `bootstrap`, only while the table
    /// is empty (or already holds this very secret hash, so a retried bootstrap
    /// answers like the first): the initialising node's admin token, written
    /// at most once per cluster however often that node retries.
    pub(crate) fn create(
        &mut self,
        index: u64,
        new: NewToken<'_>,
        bootstrap: bool,
    ) -> CommandResult {
        if bootstrap {
            if let Some(existing) = self
                .by_id
                .values()
                .find(|r| r.secret_sha256 == *new.secret_sha256)
            {
                return CommandResult::TokenCreated(existing.info.clone());
            }
            if !self.by_id.is_empty() {
                return CommandResult::Failed(ErrorBody::new(
                    TOKENS_EXIST,
                    "the cluster already has tokens; no bootstrap token is created",
                ));
            }
        }
        let plugins = match validate_new_token(new.role, new.name, new.plugins) {
            Ok(p) => p,
            Err(e) => return CommandResult::Failed(e),
        };
        if self.by_id.len() >= MAX_TOKENS {
            return CommandResult::Failed(ErrorBody::new(
                TOO_MANY_TOKENS,
                format!("the cluster holds {MAX_TOKENS} tokens; revoke some first"),
            ));
        }
        let info = TokenInfo {
            id: format!("t{index}"),
            name: new.name.map(str::to_string),
            role: new.role,
            plugins,
            created_index: index,
        };
        self.by_id.insert(
            info.id.clone(),
            TokenRecord {
                info: info.clone(),
                secret_sha256: *new.secret_sha256,
            },
        );
        CommandResult::TokenCreated(info)
    }

    /// Applies a revoke. The last admin token cannot be revoked: nobody could
    /// then manage tokens, members or settings ever again.
    pub(crate) fn revoke(&mut self, id: &str) -> CommandResult {
        let Some(record) = self.by_id.get(id) else {
            return CommandResult::Failed(ErrorBody::new(
                TOKEN_NOT_FOUND,
                format!("no token with id {id:?}"),
            ));
        };
        if record.info.role == Role::Admin
            && self
                .by_id
                .values()
                .filter(|r| r.info.role == Role::Admin)
                .count()
                == 1
        {
            return CommandResult::Failed(ErrorBody::new(
                LAST_ADMIN_TOKEN,
                format!(
                    "{id} is the last admin token; create another admin token before revoking it"
                ),
            ));
        }
        self.by_id.remove(id);
        CommandResult::TokenRevoked { id: id.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Creates a token at `index` through the same path a command takes.
    fn create(
        t: &mut Tokens,
        index: u64,
        role: Role,
        plugins: Option<&[&str]>,
        secret: &[u8],
        bootstrap: bool,
    ) -> CommandResult {
        create_named(t, index, None, role, plugins, secret, bootstrap)
    }

    fn create_named(
        t: &mut Tokens,
        index: u64,
        name: Option<&str>,
        role: Role,
        plugins: Option<&[&str]>,
        secret: &[u8],
        bootstrap: bool,
    ) -> CommandResult {
        let plugins: Option<Vec<String>> =
            plugins.map(|p| p.iter().map(|s| s.to_string()).collect());
        let sha = secret_sha256(secret);
        let new = NewToken {
            name,
            role,
            plugins: plugins.as_deref(),
            secret_sha256: &sha,
        };
        t.create(index, new, bootstrap)
    }

    fn created(r: CommandResult) -> TokenInfo {
        match r {
            CommandResult::TokenCreated(info) => info,
            other => panic!("expected a created token, got {other}"),
        }
    }

    fn failed(r: CommandResult) -> String {
        match r {
            CommandResult::Failed(e) => e.code,
            other => panic!("expected a failure, got {other}"),
        }
    }

    #[test]
    fn tokens_verify_by_secret_and_ids_follow_the_log_index() {
        let mut t = Tokens::default();
        let secret = [7u8; TOKEN_SECRET_BYTES];
        let info = created(create(
            &mut t,
            5,
            Role::Writer,
            Some(&["kv", "bank", "kv"]),
            &secret,
            false,
        ));
        assert_eq!(info.id, "t5");
        assert_eq!(info.created_index, 5);
        assert_eq!(
            info.plugins,
            Some(vec!["bank".to_string(), "kv".to_string()])
        );
        let token = format_token(&info.id, &secret);
        assert!(token.starts_with("cairn_t5_"));
        assert_eq!(t.verify(&token), Some(info.clone()));
        // One bit off in the secret, another id, garbage: refused.
        let mut wrong = secret;
        wrong[31] ^= 1;
        assert_eq!(t.verify(&format_token("t5", &wrong)), None);
        assert_eq!(t.verify(&format_token("t6", &secret)), None);
        for bad in [
            "",
            "cairn_",
            "cairn_t5",
            "cairn_t5_zz",
            "Bearer x",
            &token[..token.len() - 2],
        ] {
            assert_eq!(t.verify(bad), None, "{bad}");
        }
    }

    #[test]
    fn creates_are_validated_deterministically() {
        let mut t = Tokens::default();
        let s = [1u8; 32];
        assert_eq!(
            failed(create(&mut t, 1, Role::Admin, Some(&["kv"]), &s, false)),
            INVALID_TOKEN_REQUEST
        );
        assert_eq!(
            failed(create(&mut t, 2, Role::Reader, Some(&[]), &s, false)),
            INVALID_TOKEN_REQUEST
        );
        assert_eq!(
            failed(create(
                &mut t,
                3,
                Role::Reader,
                Some(&["Bad Name"]),
                &s,
                false
            )),
            INVALID_TOKEN_REQUEST
        );
        let long = "x".repeat(MAX_TOKEN_NAME_BYTES + 1);
        let r = create_named(&mut t, 4, Some(&long), Role::Reader, None, &s, false);
        assert_eq!(failed(r), INVALID_TOKEN_REQUEST);
        let r = create_named(&mut t, 5, Some("a\nb"), Role::Reader, None, &s, false);
        assert_eq!(failed(r), INVALID_TOKEN_REQUEST);
        assert!(t.is_empty());
    }

    #[test]
    fn bootstrap_creates_once_and_answers_a_retry_alike() {
        let mut t = Tokens::default();
        let s = [2u8; 32];
        let first = created(create(&mut t, 3, Role::Admin, None, &s, true));
        // The same secret again (a retried bootstrap): the same token, no second one.
        assert_eq!(
            created(create(&mut t, 9, Role::Admin, None, &s, true)),
            first
        );
        assert_eq!(t.len(), 1);
        // Another secret once the table is not empty: refused.
        assert_eq!(
            failed(create(&mut t, 10, Role::Admin, None, &[3u8; 32], true)),
            TOKENS_EXIST
        );
        // An ordinary create is not affected.
        created(create(&mut t, 11, Role::Admin, None, &[4u8; 32], false));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn revoking_keeps_at_least_one_admin() {
        let mut t = Tokens::default();
        let admin = created(create(&mut t, 1, Role::Admin, None, &[1u8; 32], false));
        let reader = created(create(&mut t, 2, Role::Reader, None, &[2u8; 32], false));
        assert_eq!(failed(t.revoke(&admin.id)), LAST_ADMIN_TOKEN);
        assert_eq!(failed(t.revoke("t99")), TOKEN_NOT_FOUND);
        assert!(matches!(
            t.revoke(&reader.id),
            CommandResult::TokenRevoked { .. }
        ));
        assert_eq!(t.verify(&format_token(&reader.id, &[2u8; 32])), None);
        let second = created(create(&mut t, 3, Role::Admin, None, &[3u8; 32], false));
        assert!(matches!(
            t.revoke(&admin.id),
            CommandResult::TokenRevoked { .. }
        ));
        assert_eq!(t.list(), vec![second]);
    }

    #[test]
    fn tokens_travel_in_snapshots_and_change_the_hash() {
        use crate::runtime::{Runtime, RuntimeConfig};
        use crate::state::{Command, State, snapshot};
        let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
        let create = |role, plugins: Option<Vec<String>>, secret: &[u8]| Command::CreateToken {
            name: Some("ci".into()),
            role,
            plugins,
            secret_sha256: secret_sha256(secret),
            bootstrap: false,
        };
        let mut a = State::new();
        a.apply_ok(&rt, 1, &create(Role::Admin, None, &[1u8; 32]));
        let writer = created(a.apply_ok(
            &rt,
            2,
            &create(Role::Writer, Some(vec!["kv".into()]), &[2u8; 32]),
        ));
        let mut b = a.clone();
        // The same index reached without the revocation: the hashes differ.
        assert!(matches!(
            a.apply_ok(
                &rt,
                3,
                &Command::RevokeToken {
                    id: writer.id.clone()
                }
            ),
            CommandResult::TokenRevoked { .. }
        ));
        b.advance(3);
        assert_ne!(a.hash(), b.hash(), "tokens are part of the state hash");
        let (back, _) = snapshot::decode(&snapshot::encode(&b, b"")).expect("decodes");
        assert_eq!(back.tokens(), b.tokens());
        assert_eq!(back.hash(), b.hash());
        assert_eq!(
            back.tokens().verify(&format_token(&writer.id, &[2u8; 32])),
            Some(writer)
        );
    }

    #[test]
    fn roles_parse_from_their_names() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert!("root".parse::<Role>().is_err());
        assert_eq!(
            format!("[{:<7}]", Role::Reader),
            "[reader ]",
            "pads in tables"
        );
    }
}
