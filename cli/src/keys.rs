//! `warden keys`: an organization's key terms (rotate, rewrap, status).

use anyhow::bail;
use clap::Subcommand;
use serde_json::json;
use warden_api::{KeyStatus, RewrapStep, Rotated};
use warden_types::ScopeKind;

use crate::ctx::{Ctx, Output};
use crate::input::scope_path;
use crate::output;

/// `warden keys`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCmd {
    /// Start a new key term for ORG (new writes use it at once).
    Rotate {
        /// Organization.
        org: String,
    },
    /// Re-encrypt every version of ORG under the newest term (resumable).
    Rewrap {
        /// Organization.
        org: String,
        /// Versions per request.
        #[arg(long, default_value_t = 200)]
        batch: i64,
    },
    /// Show ORG's key terms and their usage.
    Status {
        /// Organization.
        org: String,
    },
}

/// Runs a key command.
pub(crate) async fn run(ctx: &Ctx, c: KeysCmd) -> anyhow::Result<()> {
    use hyper::Method as M;
    match c {
        KeysCmd::Rotate { org } => {
            let org = scope_path(&org, Some(ScopeKind::Organization))?;
            let (r, raw): (Rotated, _) = ctx
                .call(M::POST, &format!("/api/v1/keys/{org}/rotate"), None)
                .await?;
            ctx.print(&raw, || {
                println!(
                    "{org}: new key term {} (run `warden keys rewrap {org}` to move old versions)",
                    r.term
                )
            })
        }
        KeysCmd::Rewrap { org, batch } => {
            let org = scope_path(&org, Some(ScopeKind::Organization))?;
            let url = format!("/api/v1/keys/{org}/rewrap?limit={batch}");
            let (first, _): (RewrapStep, _) = ctx.call(M::POST, &url, None).await?;
            let total = first.rewrapped + first.remaining.max(0) as u64;
            let bar = (ctx.output() == Output::Text).then(|| output::progress(total));
            let mut step = first;
            let mut done = step.rewrapped;
            loop {
                if let Some(b) = &bar {
                    b.set_position(done);
                }
                if step.remaining <= 0 {
                    break;
                }
                (step, _) = ctx.call(M::POST, &url, None).await?;
                if step.rewrapped == 0 && step.remaining > 0 {
                    bail!(
                        "rewrap made no progress with {} versions remaining",
                        step.remaining
                    );
                }
                done += step.rewrapped;
            }
            if let Some(b) = bar {
                b.finish();
            }
            let raw = json!({"org": org.as_str(), "target_term": step.target_term, "rewrapped": done, "remaining": 0});
            ctx.print(&raw, || {
                println!(
                    "{org}: {done} version(s) rewrapped; everything is under term {}",
                    step.target_term
                )
            })
        }
        KeysCmd::Status { org } => {
            let org = scope_path(&org, Some(ScopeKind::Organization))?;
            let (k, raw): (KeyStatus, _) = ctx
                .call(M::GET, &format!("/api/v1/keys/{org}"), None)
                .await?;
            ctx.print(&raw, || output::key_status(&k))
        }
    }
}
