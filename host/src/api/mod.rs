//! The HTTP API of the client port: hyper server, router, client API
//! handlers, error mapping. It knows only the [`ClusterService`] trait it
//! defines (which `node` implements), nothing of Raft.

mod client_api;
pub mod error;
mod forward;
pub mod server;
pub mod service;
#[cfg(test)]
pub(crate) mod test_support;

pub use client_api::{APPLIED_INDEX_HEADER, IDEMPOTENCY_KEY_HEADER, LOG_INDEX_HEADER};
pub use error::ApiError;
pub use forward::FORWARDED_BY_HEADER;
pub use server::{Api, ApiLimits, serve};
pub use service::ClusterService;

#[cfg(test)]
mod tests;
