//! `warden user`: users and service accounts (create, list, show,
//! disable).

use clap::Subcommand;
use hyper::Method as M;
use serde_json::json;
use warden_api::{Disabled, UserInfo, UserList};
use warden_types::{ScopeKind, ScopePath};

use crate::ctx::Ctx;
use crate::error::usage;
use crate::input::{name_arg, new_password, principal_arg, scope_path};
use crate::output;

/// `warden user`.
#[derive(Debug, Subcommand)]
pub(crate) enum UserCmd {
    /// Create a user (or, with --service-account, a service account).
    Create {
        /// Name (lowercase letters, digits and '-').
        name: String,
        /// Home organization (default: installation-wide).
        #[arg(long)]
        org: Option<String>,
        /// Create a service account (`sa:NAME`; it uses tokens, not passwords).
        #[arg(long)]
        service_account: bool,
        /// Set a login password, read from stdin (hidden prompt on a terminal).
        #[arg(long, conflicts_with = "service_account")]
        password_stdin: bool,
    },
    /// List users and service accounts.
    List {
        /// Only those of this organization.
        #[arg(long)]
        org: Option<String>,
    },
    /// Show a user or service account.
    Show {
        /// `user:NAME`, `sa:NAME`, or a bare user name.
        #[arg(value_parser = principal_arg)]
        id: String,
    },
    /// Disable a user or service account and revoke its tokens and sessions.
    Disable {
        /// `user:NAME`, `sa:NAME`, or a bare user name.
        #[arg(value_parser = principal_arg)]
        id: String,
    },
}

/// A principal that has an account: a user or a service account.
fn account_arg(id: &str) -> anyhow::Result<&str> {
    if id.starts_with("workload:") {
        return Err(usage(
            "workloads have no account; give user:NAME or sa:NAME",
        ));
    }
    Ok(id)
}

/// Runs a user command.
pub(crate) async fn run(ctx: &Ctx, c: UserCmd) -> anyhow::Result<()> {
    match c {
        UserCmd::Create {
            name,
            org,
            service_account,
            password_stdin,
        } => {
            name_arg(&name)?;
            let org = org
                .map(|o| scope_path(&o, Some(ScopeKind::Organization)))
                .transpose()?;
            let password = if password_stdin {
                Some(new_password(&format!(
                    "Password for {name} (12+ characters): "
                ))?)
            } else {
                None
            };
            let body = json!({
                "name": name,
                "kind": if service_account { "service" } else { "user" },
                "org": org.as_ref().map(ScopePath::as_str),
                "password": password.as_ref().map(|p| p.as_str()),
            });
            let (u, raw): (UserInfo, _) = ctx.call(M::POST, "/api/v1/users", Some(body)).await?;
            drop(password);
            ctx.print(&raw, || {
                println!(
                    "created {} {}{}",
                    if u.kind == "service" {
                        "service account"
                    } else {
                        "user"
                    },
                    u.id,
                    u.org
                        .as_deref()
                        .map(|o| format!(" in {o}"))
                        .unwrap_or_default()
                );
                if u.kind == "service" {
                    println!(
                        "create its token with `warden token create --name NAME --for {}`",
                        u.id
                    );
                }
            })
        }
        UserCmd::List { org } => {
            let url = match org {
                Some(o) => format!(
                    "/api/v1/users?org={}",
                    scope_path(&o, Some(ScopeKind::Organization))?
                ),
                None => "/api/v1/users".to_owned(),
            };
            let (list, raw): (UserList, _) = ctx.call(M::GET, &url, None).await?;
            ctx.print(&raw, || output::users(&list))
        }
        UserCmd::Show { id } => {
            let id = account_arg(&id)?;
            let (u, raw): (UserInfo, _) = ctx
                .call(M::GET, &format!("/api/v1/users/{id}"), None)
                .await?;
            ctx.print(&raw, || output::user(&u))
        }
        UserCmd::Disable { id } => {
            let id = account_arg(&id)?;
            let (d, raw): (Disabled, _) = ctx
                .call(M::POST, &format!("/api/v1/users/{id}/disable"), None)
                .await?;
            ctx.print(&raw, || {
                println!(
                    "disabled {}; {} token(s) and session(s) revoked",
                    d.principal, d.tokens_revoked
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    #[test]
    fn a_workload_has_no_account() {
        let code = |r: anyhow::Result<()>| r.err().map(|e| exit_code(&e));
        assert_eq!(code(account_arg("workload:a/b/c/d").map(drop)), Some(2));
    }
}
