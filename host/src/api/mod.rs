//! The HTTP API of the client port: hyper server, router, client API
//! handlers, error mapping, status page. It knows only the [`ClusterService`]
//! trait it defines (which `node` implements), nothing of Raft.

pub mod auth;
mod client_api;
mod dashboard;
pub mod error;
pub mod events;
mod forward;
pub mod server;
pub mod service;
#[cfg(test)]
pub(crate) mod test_support;

pub use auth::AuthService;
pub use client_api::{
    APPLIED_INDEX_HEADER, IDEMPOTENCY_KEY_HEADER, LOG_INDEX_HEADER, SAMPLE_QUERIES_HEADER,
    STATE_HASH_HEADER,
};
pub use error::ApiError;
pub use events::LAST_EVENT_ID_HEADER;
pub use forward::FORWARDED_BY_HEADER;
pub use server::{Api, ApiLimits, ResponseBody, serve};
pub use service::ClusterService;

#[cfg(test)]
mod tests;
