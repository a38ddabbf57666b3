//! The audit event the audit harnesses append: a secret read as the server
//! records it (about 520 bytes once encoded and MACed), shared by
//! `audit-append` and `audit-proof` (`#[path]`-included; the harnesses are
//! separate binaries with no library between them).

use warden_audit::{Actor, DecisionRecord, Event, Target};

/// The `i`th event of log `log`.
pub fn event(log: &str, i: u64) -> Event {
    Event {
        op_id: format!("bench-18f2a9c3d4e5-{i}"),
        log: log.to_owned(),
        actor: Actor {
            method: "token",
            principal: "sa:deploy-bot".to_owned(),
            source_ip: Some("10.12.4.31".to_owned()),
            token_id: Some(
                "6f1c0e5b9a7d4c2e8f3b1a0d9c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e".to_owned(),
            ),
            user_agent: Some("warden-cli/0.1.0".to_owned()),
        },
        action: "secret.read".to_owned(),
        permission: Some("secret.read"),
        target: Target::secret(
            "acme/shop/prod/api",
            format!("DATABASE_URL_{}", i % 100),
            None,
        ),
        session: None,
        count: None,
        decision: Some(DecisionRecord {
            effect: "allow",
            rule: "developer@acme/shop rule 2 (secret.*)".to_owned(),
        }),
    }
}
