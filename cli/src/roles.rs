//! `warden role`: an organization's custom roles (apply, show, delete)
//! and the built-in ones (list).

use std::path::PathBuf;

use clap::Subcommand;
use hyper::Method as M;
use serde_json::json;
use warden_api::{RoleInfo, RoleList};
use warden_types::ScopeKind;

use crate::ctx::Ctx;
use crate::input::{name_arg, read_text, scope_path};
use crate::output;

/// Largest role file `role apply` sends (the server's limit too).
const MAX_ROLE_BYTES: u64 = 64 * 1024;

/// `warden role`.
#[derive(Debug, Subcommand)]
pub(crate) enum RoleCmd {
    /// Create or replace a custom role from a YAML file.
    Apply {
        /// Organization.
        org: String,
        /// The role file (`-` reads stdin).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List the built-in roles and ORG's custom roles.
    List {
        /// Organization.
        org: String,
    },
    /// Print a role's YAML.
    Show {
        /// Organization.
        org: String,
        /// Role name.
        name: String,
    },
    /// Delete a custom role.
    Delete {
        /// Organization.
        org: String,
        /// Role name.
        name: String,
    },
}

/// Runs a role command.
pub(crate) async fn run(ctx: &Ctx, c: RoleCmd) -> anyhow::Result<()> {
    match c {
        RoleCmd::Apply { org, file } => {
            let org = scope_path(&org, Some(ScopeKind::Organization))?;
            let source = read_text(&file, MAX_ROLE_BYTES, "role file")?;
            let (r, raw): (RoleInfo, _) = ctx
                .call(
                    M::PUT,
                    &format!("/api/v1/roles/{org}"),
                    Some(json!({"source": source})),
                )
                .await?;
            ctx.print(&raw, || println!("applied role {} in {org}", r.name))
        }
        RoleCmd::List { org } => {
            let org = scope_path(&org, Some(ScopeKind::Organization))?;
            let (list, raw): (RoleList, _) = ctx
                .call(M::GET, &format!("/api/v1/roles/{org}"), None)
                .await?;
            ctx.print(&raw, || output::roles(&list))
        }
        RoleCmd::Show { org, name } => {
            let org = scope_path(&org, Some(ScopeKind::Organization))?;
            name_arg(&name)?;
            let (r, raw): (RoleInfo, _) = ctx
                .call(M::GET, &format!("/api/v1/roles/{org}/{name}"), None)
                .await?;
            ctx.print(&raw, || {
                print!("{}", r.source);
                if !r.source.ends_with('\n') {
                    println!();
                }
            })
        }
        RoleCmd::Delete { org, name } => {
            let org = scope_path(&org, Some(ScopeKind::Organization))?;
            name_arg(&name)?;
            ctx.call_empty(M::DELETE, &format!("/api/v1/roles/{org}/{name}"), None)
                .await?;
            ctx.print(
                &json!({"deleted": {"org": org.as_str(), "name": name}}),
                || println!("deleted role {name} from {org}"),
            )
        }
    }
}
