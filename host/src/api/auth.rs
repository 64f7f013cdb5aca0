//! Who may do what: maps each request to the [`Action`] it needs, reads its
//! `Authorization: Bearer` token, asks the service who that is, and decides
//! with [`permits`]; also the token endpoints (`/v1/tokens`).
//!
//! Runs before a request body is read, so a client without a valid token
//! cannot make a node read (or forward) a large body. `/healthz` and `/readyz`
//! are open; `/raft/…` is not a client route and is not checked here.
//! A follower checks a request before forwarding it, and the leader checks it
//! again: both decide alike because the token table is replicated.

use std::future::Future;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

use crate::api::error::{ApiError, json_response};
use crate::api::server::{RequestHead, Route};
use crate::api::service::Deadline;
use crate::state::{Role, TokenInfo};

/// What a request does, as far as permissions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Read cluster-wide facts: `/v1/cluster`, `/metrics`, `/v1/state-hash`,
    /// the plugin list, the cluster settings.
    Inspect,
    /// Read one plugin's registry entry.
    ViewPlugin(&'a str),
    /// Run a plugin's `query`.
    Query(&'a str),
    /// Run a command through a plugin's `apply`.
    Apply(&'a str),
    /// Deploy, upgrade or remove a plugin.
    Deploy(&'a str),
    /// Manage tokens, members and settings.
    Admin,
}

impl std::fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Inspect => write!(f, "read the cluster's status"),
            Action::ViewPlugin(p) => write!(f, "read plugin {p:?}"),
            Action::Query(p) => write!(f, "query plugin {p:?}"),
            Action::Apply(p) => write!(f, "apply commands to plugin {p:?}"),
            Action::Deploy(p) => write!(f, "deploy or remove plugin {p:?}"),
            Action::Admin => write!(f, "manage tokens, members or settings"),
        }
    }
}

/// Whether a token with `role`, limited to `plugins` (`None`: every plugin),
/// may do `action`. An admin may do everything; the plugin list limits the
/// other roles on plugin-specific actions only.
pub fn permits(role: Role, plugins: Option<&[String]>, action: Action<'_>) -> bool {
    let in_scope = |p: &str| plugins.is_none_or(|list| list.iter().any(|x| x == p));
    match (role, action) {
        (Role::Admin, _) => true,
        (_, Action::Admin) => false,
        (_, Action::Inspect) => true,
        (_, Action::ViewPlugin(p) | Action::Query(p)) => in_scope(p),
        (Role::Deployer | Role::Writer, Action::Apply(p)) => in_scope(p),
        (Role::Reader, Action::Apply(_)) => false,
        (Role::Deployer, Action::Deploy(p)) => in_scope(p),
        (Role::Writer | Role::Reader, Action::Deploy(_)) => false,
    }
}

/// The action a route and method need; `None` for the routes anyone may call
/// (`/healthz`, `/readyz`, the status page `/`, which holds no data and sends
/// the token it is given on its own requests).
pub(crate) fn required_action<'a>(route: &Route<'a>, method: &Method) -> Option<Action<'a>> {
    let action = match *route {
        Route::Healthz | Route::Readyz | Route::Dashboard => return None,
        Route::Metrics | Route::Cluster | Route::StateHash | Route::Plugins => Action::Inspect,
        Route::Plugin(name) if *method == Method::GET => Action::ViewPlugin(name),
        // A dry run uploads a candidate and runs it against the live state:
        // the same right as the deploy it rehearses.
        Route::Plugin(name) | Route::PluginDryRun(name) => Action::Deploy(name),
        Route::PluginApply(name) => Action::Apply(name),
        Route::PluginQuery(name) | Route::PluginEvents(name) => Action::Query(name),
        Route::Settings if *method == Method::GET => Action::Inspect,
        Route::Settings
        | Route::Members
        | Route::Member(_)
        | Route::Tokens
        | Route::Token(_)
        | Route::Backup
        | Route::JoinToken => Action::Admin,
    };
    Some(action)
}

/// The token behind a request, as the service found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's id (`t<index>`).
    pub token_id: String,
    /// Its role.
    pub role: Role,
    /// The plugins it is limited to; `None`: every plugin.
    pub plugins: Option<Vec<String>>,
}

impl From<TokenInfo> for Principal {
    fn from(t: TokenInfo) -> Self {
        Self {
            token_id: t.id,
            role: t.role,
            plugins: t.plugins,
        }
    }
}

/// Body of `POST /v1/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// `admin`, `deployer`, `writer` or `reader`.
    pub role: Role,
    /// Plugins the token is limited to; absent: every plugin.
    #[serde(default)]
    pub plugins: Option<Vec<String>>,
    /// A label for humans.
    #[serde(default)]
    pub name: Option<String>,
}

/// `201` body of `POST /v1/tokens`: the only time the secret is shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The token's id, for listing and revoking.
    pub id: String,
    /// The bearer token, `cairn_<id>_<secret>`.
    pub token: String,
    /// Its role.
    pub role: Role,
    /// The plugins it is limited to; `null`: every plugin.
    pub plugins: Option<Vec<String>>,
    /// Log index of its creation: a node accepts the token once it applied this.
    pub log_index: u64,
}

impl std::fmt::Debug for CreatedToken {
    // Never print the secret, even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("plugins", &self.plugins)
            .field("log_index", &self.log_index)
            .finish_non_exhaustive()
    }
}

/// `200` body of `GET /v1/tokens`: ids, names, roles, plugins; never secrets or hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    /// Every token, in id order.
    pub tokens: Vec<TokenInfo>,
}

/// `200` body of `DELETE /v1/tokens/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedToken {
    /// The revoked token's id.
    pub id: String,
    /// Log index of the revocation: a node refuses the token once it applied this.
    pub log_index: u64,
}

/// What authentication needs from a node: find the token behind a bearer
/// string, and create, list and revoke tokens through the log.
pub trait AuthService: Send + Sync + 'static {
    /// The token `bearer` stands for in this node's applied state, if any.
    /// Must compare secrets in constant time.
    fn authenticate(&self, bearer: &str) -> Option<Principal>;

    /// Draws a secret, replicates the token (its hash only) and answers the secret once.
    fn create_token(
        &self,
        request: CreateTokenRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<CreatedToken, ApiError>> + Send;

    /// Every token in this node's applied state.
    fn list_tokens(&self) -> impl Future<Output = Result<Vec<TokenInfo>, ApiError>> + Send;

    /// Replicates the removal of token `id`.
    fn revoke_token(
        &self,
        id: String,
        deadline: Deadline,
    ) -> impl Future<Output = Result<RevokedToken, ApiError>> + Send;
}

/// The token of an `Authorization: Bearer <token>` header. `Ok(None)` when
/// there is no such header; an error when it is there but unusable.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed =
        || ApiError::Unauthenticated("the Authorization header is not \"Bearer <token>\"".into());
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(malformed());
    }
    Ok(Some(token.trim()))
}

/// Decides whether the request may proceed: `Ok(None)` for an open route,
/// `Ok(Some(principal))` when its token allows the action, `401` without a
/// valid token, `403` when the token's role does not allow it.
pub(crate) fn check<S: AuthService>(
    service: &S,
    route: &Route<'_>,
    head: &RequestHead,
) -> Result<Option<Principal>, ApiError> {
    let Some(action) = required_action(route, &head.method) else {
        return Ok(None);
    };
    let token = bearer(&head.headers)?.ok_or_else(|| {
        ApiError::Unauthenticated(
            "this endpoint needs an Authorization: Bearer token; a new cluster's admin token \
             is in DATA_DIR/admin.token on the node that initialised it"
                .into(),
        )
    })?;
    let principal = service.authenticate(token).ok_or_else(|| {
        ApiError::Unauthenticated("the bearer token is unknown, revoked or malformed".into())
    })?;
    if !permits(principal.role, principal.plugins.as_deref(), action) {
        return Err(ApiError::Forbidden(format!(
            "token {} ({}{}) may not {action}",
            principal.token_id,
            principal.role,
            principal
                .plugins
                .as_ref()
                .map_or(String::new(), |p| format!(", plugins {}", p.join(",")))
        )));
    }
    Ok(Some(principal))
}

/// Handles `/v1/tokens` and `/v1/tokens/{id}` (the router checked the method).
pub(crate) async fn handle<S: AuthService>(
    service: &S,
    route: Route<'_>,
    head: &RequestHead,
    body: Bytes,
    deadline: Deadline,
) -> Result<Response<Full<Bytes>>, ApiError> {
    match (route, &head.method) {
        (Route::Tokens, &Method::POST) => {
            let request: CreateTokenRequest = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(
                    "bad-json",
                    format!(
                        "expected {{\"role\":\"admin|deployer|writer|reader\",\"plugins\":[..]?,\"name\":\"..\"?}}: {e}"
                    ),
                )
            })?;
            let created = service.create_token(request, deadline).await?;
            let mut resp = json_response(StatusCode::CREATED, &created);
            resp.headers_mut().insert(
                crate::api::LOG_INDEX_HEADER,
                http::HeaderValue::from(created.log_index),
            );
            Ok(resp)
        }
        (Route::Tokens, _) => Ok(json_response(
            StatusCode::OK,
            &TokenList {
                tokens: service.list_tokens().await?,
            },
        )),
        (Route::Token(id), _) => {
            let revoked = service.revoke_token(id.to_string(), deadline).await?;
            let mut resp = json_response(StatusCode::OK, &revoked);
            resp.headers_mut().insert(
                crate::api::LOG_INDEX_HEADER,
                http::HeaderValue::from(revoked.log_index),
            );
            Ok(resp)
        }
        _ => Err(ApiError::Internal(
            "route dispatched to the token api".into(),
        )),
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
pub(crate) mod tests;
