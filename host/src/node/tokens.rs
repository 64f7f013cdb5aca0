//! The node's side of authentication: finds the token behind a bearer string
//! in the applied token table, and creates and revokes tokens through the log.
//!
//! A token's secret is drawn from the OS here, on the node that proposes it,
//! and only its sha256 goes into the command: the secret is never in the log,
//! a snapshot or another node's memory. A follower does not propose: the
//! request is forwarded and the leader draws the secret.

use crate::api::auth::{AuthService, CreateTokenRequest, CreatedToken, Principal, RevokedToken};
use crate::api::error::ApiError;
use crate::api::service::Deadline;
use crate::state::tokens::{
    self, INVALID_TOKEN_REQUEST, LAST_ADMIN_TOKEN, TOKEN_NOT_FOUND, TOKEN_SECRET_BYTES,
    TOO_MANY_TOKENS,
};
use crate::state::{Command, CommandResult, TokenInfo};

use super::NodeService;

/// A fresh token secret from the OS.
pub(super) fn new_secret() -> Result<[u8; TOKEN_SECRET_BYTES], getrandom::Error> {
    let mut secret = [0u8; TOKEN_SECRET_BYTES];
    getrandom::fill(&mut secret)?;
    Ok(secret)
}

impl AuthService for NodeService {
    fn authenticate(&self, bearer: &str) -> Option<Principal> {
        self.inner
            .sm
            .applied()
            .state
            .tokens()
            .verify(bearer)
            .map(Principal::from)
    }

    async fn create_token(
        &self,
        request: CreateTokenRequest,
        deadline: Deadline,
    ) -> Result<CreatedToken, ApiError> {
        // Checked here for a prompt 400; the state machine checks again on apply.
        let plugins = tokens::validate_new_token(
            request.role,
            request.name.as_deref(),
            request.plugins.as_deref(),
        )
        .map_err(|e| ApiError::bad_request(e.code, e.message))?;
        let secret = new_secret()
            .map_err(|e| ApiError::Internal(format!("no randomness from the OS: {e}")))?;
        let cmd = Command::CreateToken {
            name: request.name,
            role: request.role,
            plugins,
            secret_sha256: tokens::secret_sha256(&secret),
            bootstrap: false,
        };
        match self.propose(cmd, deadline).await? {
            (log_index, CommandResult::TokenCreated(info)) => Ok(CreatedToken {
                token: tokens::format_token(&info.id, &secret),
                id: info.id,
                role: info.role,
                plugins: info.plugins,
                log_index,
            }),
            (_, CommandResult::Failed(e)) if e.code == INVALID_TOKEN_REQUEST => {
                Err(ApiError::bad_request(e.code, e.message))
            }
            (_, CommandResult::Failed(e)) if e.code == TOO_MANY_TOKENS => Err(ApiError::Conflict {
                code: e.code,
                message: e.message,
            }),
            (_, other) => Err(ApiError::Internal(format!(
                "unexpected create-token result {other}"
            ))),
        }
    }

    async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ApiError> {
        Ok(self.state().tokens().list())
    }

    async fn revoke_token(&self, id: String, deadline: Deadline) -> Result<RevokedToken, ApiError> {
        match self.propose(Command::RevokeToken { id }, deadline).await? {
            (log_index, CommandResult::TokenRevoked { id }) => Ok(RevokedToken { id, log_index }),
            (_, CommandResult::Failed(e)) if e.code == TOKEN_NOT_FOUND => {
                Err(ApiError::TokenNotFound(e.message))
            }
            (_, CommandResult::Failed(e)) if e.code == LAST_ADMIN_TOKEN => {
                Err(ApiError::Conflict {
                    code: e.code,
                    message: e.message,
                })
            }
            (_, other) => Err(ApiError::Internal(format!(
                "unexpected revoke-token result {other}"
            ))),
        }
    }
}
