//! The runtime protocol over the agent link. An agent runs a
//! [`Runtime`](warden_runtime::Runtime) next to the workloads and serves it
//! ([`Agent`]); the control plane drives it through [`RemoteRuntime`], which
//! implements the same trait, so the gateway, the injector and the API use
//! one interface whether the pods are in this process or behind an agent
//! in another network. One link stream per operation (an exec or a log
//! follow holds its stream for its lifetime); the byte layout is in
//! [`wire`].
//!
//! Architecture invariants:
//! - this crate links only `warden-runtime` and `warden-link` among
//!   Warden's crates: no vault, store, pipeline or server. Authorization
//!   happens before a call reaches [`RemoteRuntime`]; the agent trusts the
//!   control plane it enrolled with and nothing else;
//! - an operation cut off by a broken link fails with
//!   [`RuntimeError::Unavailable`](warden_runtime::RuntimeError::Unavailable):
//!   an exec's exit status is only ever the process's own;
//! - every frame is length-checked against [`wire::MAX_FRAME`] before it is
//!   buffered, on both sides.

mod credentials;
mod dial;
mod remote;
mod serve;
pub mod wire;

pub use credentials::{
    CREDENTIAL_REFRESH, CredentialFeed, refresh_forever, refresh_once, serve_credentials,
};
pub use dial::dial_forever;
pub use remote::RemoteRuntime;
pub use serve::Agent;
pub use wire::AgentInfo;
