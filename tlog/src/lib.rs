//! Warden's tamper-evident audit log formats and their offline verification.
//!
//! (Work in progress: merkle, note and canonical modules.)

pub mod canonical;
pub mod merkle;
pub mod note;
