//! Organizations, projects, environments and services: `warden org`,
//! `project`, `env` and `service` (create and list).

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use warden_api::{Scope, ScopeList};
use warden_types::ScopeKind;

use crate::ctx::Ctx;
use crate::input::scope_path;
use crate::output;

/// `warden org`, `warden project` and `warden service`.
#[derive(Debug, Subcommand)]
pub(crate) enum ScopeCmd {
    /// Create it.
    Create {
        /// Path.
        path: String,
    },
    /// List (organizations: no argument; others: the parent path).
    List {
        /// Parent path.
        parent: Option<String>,
    },
}

/// `warden env` (environments also take a mode).
#[derive(Debug, Subcommand)]
pub(crate) enum EnvCmd {
    /// Create an environment.
    Create {
        /// ORG/PROJECT/ENV.
        path: String,
        /// production, staging or development.
        #[arg(long)]
        mode: String,
        /// Versions kept per secret (default 10).
        #[arg(long)]
        max_versions: Option<u32>,
        /// The cluster its pods run on (default `local`, warden dev's own;
        /// later: `warden cluster place`).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// List the environments of ORG/PROJECT.
    List {
        /// ORG/PROJECT.
        parent: String,
    },
}

/// Runs an org, project or service command (`kind` says which).
pub(crate) async fn run(ctx: &Ctx, kind: ScopeKind, c: ScopeCmd) -> anyhow::Result<()> {
    use hyper::Method as M;
    match c {
        ScopeCmd::Create { path } => {
            scope_path(&path, Some(kind))?;
            let body = json!({"kind": kind.as_str(), "path": path});
            let (s, raw): (Scope, _) = ctx.call(M::POST, "/api/v1/scopes", Some(body)).await?;
            ctx.print(&raw, || println!("created {} {}", s.kind, s.path))
        }
        ScopeCmd::List { parent } => {
            let url = match (kind, parent) {
                (ScopeKind::Organization, None) => "/api/v1/scopes".to_owned(),
                (ScopeKind::Organization, Some(_)) => bail!("`org list` takes no argument"),
                (_, None) => bail!("give the parent path, e.g. ORG for projects"),
                (_, Some(p)) => {
                    let parent = scope_path(&p, None)?;
                    let expected = match kind {
                        ScopeKind::Project => ScopeKind::Organization,
                        ScopeKind::Environment => ScopeKind::Project,
                        _ => ScopeKind::Environment,
                    };
                    if parent.kind() != expected {
                        bail!("give the parent as {}", expected.shape());
                    }
                    format!("/api/v1/scopes/{parent}")
                }
            };
            let (list, raw): (ScopeList, _) = ctx.call(M::GET, &url, None).await?;
            ctx.print(&raw, || output::scopes(&list))
        }
    }
}

/// Runs an environment command.
pub(crate) async fn env(ctx: &Ctx, c: EnvCmd) -> anyhow::Result<()> {
    use hyper::Method as M;
    match c {
        EnvCmd::Create {
            path,
            mode,
            max_versions,
            cluster,
        } => {
            scope_path(&path, Some(ScopeKind::Environment))?;
            let body = json!({"kind": "environment", "path": path, "mode": mode, "max_versions": max_versions});
            let (s, raw): (Scope, _) = ctx.call(M::POST, "/api/v1/scopes", Some(body)).await?;
            if let Some(cluster) = cluster {
                ctx.call_empty(
                    M::PUT,
                    &format!("/api/v1/placements/{path}"),
                    Some(json!({ "cluster": cluster })),
                )
                .await
                .with_context(|| {
                    format!("{path} was created, but placing it on cluster {cluster} failed")
                })?;
            }
            ctx.print(&raw, || {
                println!(
                    "created environment {} ({})",
                    s.path,
                    s.mode.unwrap_or_default()
                )
            })
        }
        EnvCmd::List { parent } => {
            run(
                ctx,
                ScopeKind::Environment,
                ScopeCmd::List {
                    parent: Some(parent),
                },
            )
            .await
        }
    }
}
