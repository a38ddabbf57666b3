//! Warden's HTTP API as data: the wire types every endpoint speaks, and a
//! small HTTPS client (hyper over rustls with the ring provider) that the CLI,
//! the tests and the load tool share.
//!
//! Architecture invariant: no server code, no storage, no crypto beyond TLS.
//! Secret values cross the wire only inside [`WireValue`], which moves them
//! straight into a `SecretValue` on the way in.

mod client;
mod wire;

pub use client::{Client, ClientError, Connection, WebSocket};
pub use wire::*;
