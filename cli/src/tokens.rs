//! `warden token`: API tokens (yours or a service account's: create,
//! list, revoke) and short-lived workload tokens.

use clap::Subcommand;
use hyper::Method as M;
use serde_json::json;
use warden_api::{TokenCreated, TokenInfo, TokenList, WorkloadToken};
use warden_types::ScopeKind;

use crate::ctx::Ctx;
use crate::error::usage;
use crate::input::{parse_duration, principal_arg, scope_path};
use crate::output;

/// `warden token`.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCmd {
    /// Create an API token (shown once).
    Create {
        /// A name to recognise it by.
        #[arg(long)]
        name: String,
        /// Lifetime, e.g. 90s, 15m, 12h, 30d (default: until revoked).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        ttl: Option<u64>,
        /// For a service account (default: yourself).
        #[arg(long = "for", value_name = "sa:NAME", value_parser = principal_arg)]
        principal: Option<String>,
    },
    /// List tokens (metadata only, never the tokens).
    List {
        /// Whose tokens (default: yours).
        #[arg(long = "for", value_name = "PRINCIPAL", value_parser = principal_arg)]
        principal: Option<String>,
    },
    /// Revoke a token or session.
    Revoke {
        /// Token id, `tok_...` (see `warden token list`).
        id: String,
    },
    /// Issue a short-lived workload token (JWT) for a service.
    Workload {
        /// ORG/PROJECT/ENV/SERVICE.
        service: String,
        /// Lifetime, e.g. 15m (server default 15m, at most 1h).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        ttl: Option<u64>,
    },
}

/// Checks a token id, `tok_...`.
fn token_id(s: &str) -> anyhow::Result<&str> {
    let ok = s.len() <= 64
        && s.strip_prefix("tok_").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|c| c.is_ascii_alphanumeric())
        });
    if ok {
        Ok(s)
    } else {
        Err(usage(
            "token ids look like tok_... (see `warden token list`)",
        ))
    }
}

/// Runs a token command.
pub(crate) async fn run(ctx: &Ctx, c: TokenCmd) -> anyhow::Result<()> {
    match c {
        TokenCmd::Create {
            name,
            ttl,
            principal,
        } => {
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                return Err(usage("token names are 1-64 printable characters"));
            }
            let body = json!({"name": name, "ttl_seconds": ttl, "principal": principal});
            let (t, raw): (TokenCreated, _) =
                ctx.call(M::POST, "/api/v1/tokens", Some(body)).await?;
            ctx.print(&raw, || {
                println!(
                    "created token {} ({:?} for {}, expires {})",
                    t.info.id,
                    t.info.name,
                    t.info.principal,
                    output::time_or(t.info.expires_at, "never")
                );
                println!("{}", t.token.0.expose());
                println!("This token is shown only once: store it now.");
            })
        }
        TokenCmd::List { principal } => {
            let url = match principal {
                Some(p) => format!("/api/v1/tokens?principal={p}"),
                None => "/api/v1/tokens".to_owned(),
            };
            let (list, raw): (TokenList, _) = ctx.call(M::GET, &url, None).await?;
            ctx.print(&raw, || output::tokens(&list, output::now_ms()))
        }
        TokenCmd::Revoke { id } => {
            let id = token_id(&id)?;
            let (t, raw): (TokenInfo, _) = ctx
                .call(M::POST, &format!("/api/v1/tokens/{id}/revoke"), None)
                .await?;
            ctx.print(&raw, || {
                println!("revoked token {} ({:?} of {})", t.id, t.name, t.principal)
            })
        }
        TokenCmd::Workload { service, ttl } => {
            let service = scope_path(&service, Some(ScopeKind::Service))?;
            let (w, raw): (WorkloadToken, _) = ctx
                .call(
                    M::POST,
                    &format!("/api/v1/workload-tokens/{service}"),
                    Some(json!({"ttl_seconds": ttl})),
                )
                .await?;
            ctx.print(&raw, || {
                println!(
                    "workload token for {}, expires {}",
                    w.principal,
                    output::time_or(
                        i64::try_from(w.expires_at)
                            .ok()
                            .and_then(|s| s.checked_mul(1000)),
                        "?"
                    )
                );
                println!("{}", w.token.0.expose());
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    #[test]
    fn bad_token_ids_are_usage_errors() {
        let code = |r: anyhow::Result<()>| r.err().map(|e| exit_code(&e));
        assert_eq!(code(token_id("tok_0123abcd").map(drop)), None);
        assert_eq!(code(token_id("tok_../x").map(drop)), Some(2));
    }
}
