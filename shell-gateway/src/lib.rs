//! The shell gateway (to be built by the gateway issue): SSH (stock OpenSSH
//! clients, via russh) and WebSocket entry points that give RBAC-gated,
//! recorded and audited interactive shells into pods.
//!
//! It will own: SSH and WebSocket protocol front-ends behind one trait with
//! documented failure semantics, session recording (asciicast v2, encrypted
//! at rest), and the mapping of SSH disconnect codes to pipeline errors.
//!
//! Architecture invariants: every session runs through the server's request
//! pipeline (authenticate → authorize `shell.exec` → audit → execute); it
//! reaches pods only through the runtime trait; it never links the vault's
//! key handling.
