//! `warden operator`: initialize, unseal, seal and show the seal status of
//! the vault (the `sys/*` routes).

use std::io::IsTerminal;

use anyhow::bail;
use clap::Subcommand;
use serde_json::json;
use warden_api::{InitResponse, SysStatus};

use crate::ctx::Ctx;
use crate::input::read_hidden;
use crate::output;

/// `warden operator`.
#[derive(Debug, Subcommand)]
pub(crate) enum OperatorCmd {
    /// Create the root key. Passphrase (asked twice on a terminal, or read
    /// from stdin) unless --shares/--threshold are given.
    Init {
        /// Deal this many Shamir shares.
        #[arg(long, requires = "threshold")]
        shares: Option<u8>,
        /// Shares needed to unseal.
        #[arg(long, requires = "shares")]
        threshold: Option<u8>,
    },
    /// Submit the passphrase, or one Shamir share (run once per operator).
    /// The first share starts an attempt and prints its nonce; the other
    /// operators pass it with `--nonce`, so nobody else's shares can join
    /// or reset the attempt.
    Unseal {
        /// The Shamir attempt to add this share to (printed for the first
        /// share).
        #[arg(long, value_name = "NONCE")]
        nonce: Option<String>,
    },
    /// Drop all key material from the server's memory.
    Seal,
    /// Show seal status.
    Status,
}

/// Runs an operator command.
pub(crate) async fn run(ctx: &Ctx, op: OperatorCmd) -> anyhow::Result<()> {
    use hyper::Method as M;
    match op {
        OperatorCmd::Init { shares, threshold } => {
            let body = match (shares, threshold) {
                (Some(n), Some(k)) => json!({"method": "shamir", "shares": n, "threshold": k}),
                _ => {
                    let p = read_hidden("New unseal passphrase (12+ characters): ")?;
                    if std::io::stdin().is_terminal() {
                        let again = read_hidden("Repeat the passphrase: ")?;
                        if *again != *p {
                            bail!("the passphrases differ");
                        }
                    }
                    json!({"method": "passphrase", "passphrase": p.as_str()})
                }
            };
            let (out, raw): (InitResponse, _) =
                ctx.call(M::POST, "/api/v1/sys/init", Some(body)).await?;
            ctx.print(&raw, || {
                println!("Vault initialized. It is sealed: run `warden operator unseal`.");
                println!("Root token (shown once): {}", out.root_token.0.expose());
                for (i, s) in out.shares.iter().enumerate() {
                    println!("Unseal share {}: {}", i + 1, s.0.expose());
                }
                if !out.shares.is_empty() {
                    println!(
                        "Give each share to a different operator; they are not stored anywhere."
                    );
                }
            })
        }
        OperatorCmd::Unseal { nonce } => {
            let (status, _): (SysStatus, _) = ctx.call(M::GET, "/api/v1/sys/status", None).await?;
            if !status.sealed {
                println!("already unsealed");
                return Ok(());
            }
            let body = match status.method.as_deref() {
                Some("shamir") => {
                    let share = read_hidden(&format!(
                        "Unseal share ({} of the {} needed for the attempt{}): ",
                        if nonce.is_some() {
                            "adding one"
                        } else {
                            "the first"
                        },
                        status.threshold,
                        nonce
                            .as_deref()
                            .map(|n| format!(" {n}"))
                            .unwrap_or_default(),
                    ))?;
                    json!({"share": share.as_str(), "nonce": nonce})
                }
                Some("passphrase") => {
                    json!({"passphrase": read_hidden("Unseal passphrase: ")?.as_str()})
                }
                Some(other) => {
                    bail!("this vault unseals with {other}, which the server does itself")
                }
                None => bail!("the vault is not initialized: run `warden operator init`"),
            };
            let (s, raw): (SysStatus, _) =
                ctx.call(M::POST, "/api/v1/sys/unseal", Some(body)).await?;
            ctx.print(&raw, || {
                output::seal_status(&s);
                if let Some(n) = &s.nonce {
                    println!(
                        "attempt nonce: {n}\nthe next operator runs `warden operator unseal --nonce {n}`"
                    );
                }
            })
        }
        OperatorCmd::Seal => {
            let (s, raw): (SysStatus, _) = ctx.call(M::POST, "/api/v1/sys/seal", None).await?;
            ctx.print(&raw, || output::seal_status(&s))
        }
        OperatorCmd::Status => {
            let (s, raw): (SysStatus, _) = ctx.call(M::GET, "/api/v1/sys/status", None).await?;
            ctx.print(&raw, || output::seal_status(&s))
        }
    }
}
