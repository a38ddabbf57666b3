//! The shell gateway: RBAC-gated, audited shells and commands in pods for
//! the tools engineers already use.
//!
//! It owns the transport-neutral session core ([`Gateway`]: authorize
//! `shell.exec` once as a session-long grant, pick the pod, start the
//! process through the runtime, record the outcome with what the session
//! did), target parsing ([`ShellTarget`]), and the protocols over it: SSH
//! ([`SshGateway`], russh) and Kubernetes' WebSocket channel protocol
//! ([`websocket`], v5 and v4), whose socket the HTTP front-end (the server)
//! owns and feeds it. Every session is recorded ([`recording`]:
//! asciicast v2, sealed in chunks under the organization's key, secret
//! values masked, digests rolled into the audit outcome).
//!
//! Architecture invariants (checked by the architecture test): the gateway
//! depends on the pipeline and the runtime trait, never on the vault or the
//! server; every session runs through the pipeline (authenticate →
//! authorize `shell.exec` → durable intent → execute → outcome); it reaches
//! pods only through [`warden_runtime::Runtime`], on the runtime a
//! [`Placement`] names; a session whose authority ends is stopped, with the
//! reason shown to the user.

mod gateway;
pub mod recording;
mod ssh;
mod target;
pub mod websocket;

pub use gateway::{
    Command, Gateway, Placement, Session, SessionEnd, ShellRequest, Stop, end_lost_sessions,
};
/// The SSH host key type.
pub use russh::keys::PrivateKey as HostKey;
pub use ssh::{SecondFactor, SshGateway, SshOptions, host_key_fingerprint, host_key_from_seed};
pub use target::{MAX_TARGET_BYTES, ShellTarget, split_command};
