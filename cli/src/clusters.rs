//! `warden cluster`: clusters and their agents (join tokens, list, show,
//! remove, placing an environment, the service-account issuer).

use clap::Subcommand;
use hyper::Method as M;
use serde_json::json;
use warden_api::{ClusterInfo, ClusterList, JoinToken};

use crate::ctx::Ctx;
use crate::input::{parse_duration, scope_path};
use crate::output;

/// `warden cluster`.
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCmd {
    /// A single-use join token for an agent of cluster NAME (created if
    /// new; for an existing cluster the next enrollment replaces its agent).
    JoinToken {
        /// The cluster's name (lowercase letters, digits, hyphens).
        name: String,
        /// Lifetime, e.g. 15m (default), 1h; at most 24h.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<u64>,
    },
    /// Every cluster and its agent's state.
    List,
    /// One cluster.
    Show {
        /// Its name.
        name: String,
    },
    /// Remove a cluster: its agent's certificate is refused from now on and
    /// its link (and every stream on it) ends.
    Remove {
        /// Its name.
        name: String,
    },
    /// A Kubernetes cluster's service-account issuer: set, show.
    #[command(subcommand)]
    Issuer(crate::workload_identity::IssuerCmd),
    /// Run an environment's pods on a cluster (`local`: warden dev's own).
    Place {
        /// ORG/PROJECT/ENV.
        env: String,
        /// The cluster.
        cluster: String,
    },
}

/// Runs a cluster command.
pub(crate) async fn run(ctx: &Ctx, c: ClusterCmd) -> anyhow::Result<()> {
    match c {
        ClusterCmd::JoinToken { name, ttl } => {
            let (t, raw): (JoinToken, _) = ctx
                .call(
                    M::POST,
                    &format!("/api/v1/clusters/{name}/join-tokens"),
                    Some(json!({ "ttl_seconds": ttl })),
                )
                .await?;
            ctx.print(&raw, || {
                println!("{}", t.token);
                eprintln!(
                    "single use, expires {}; on the agent's machine (the token in the\n\
                     environment, not on the command line, where `ps` shows it):\n  \
                     WARDEN_JOIN_TOKEN=... warden agent --server {} --ca-cert CA.pem --state-dir DIR",
                    output::time_or(Some(t.expires_at), "-"),
                    ctx.server,
                );
            })
        }
        ClusterCmd::List => {
            let (list, raw): (ClusterList, _) = ctx.call(M::GET, "/api/v1/clusters", None).await?;
            ctx.print(&raw, || output::clusters(&list.clusters))
        }
        ClusterCmd::Show { name } => {
            let (c, raw): (ClusterInfo, _) = ctx
                .call(M::GET, &format!("/api/v1/clusters/{name}"), None)
                .await?;
            ctx.print(&raw, || output::clusters(std::slice::from_ref(&c)))
        }
        ClusterCmd::Remove { name } => {
            ctx.call_empty(M::DELETE, &format!("/api/v1/clusters/{name}"), None)
                .await?;
            ctx.print(&json!({ "removed": name }), || {
                println!("removed cluster {name}; its agent is cut off")
            })
        }
        ClusterCmd::Place { env, cluster } => place(ctx, &env, &cluster).await,
        ClusterCmd::Issuer(c) => crate::workload_identity::issuer(ctx, c).await,
    }
}

/// Places `env` on `cluster`.
pub(crate) async fn place(ctx: &Ctx, env: &str, cluster: &str) -> anyhow::Result<()> {
    let path = scope_path(env, Some(warden_types::ScopeKind::Environment))?;
    ctx.call_empty(
        M::PUT,
        &format!("/api/v1/placements/{path}"),
        Some(json!({ "cluster": cluster })),
    )
    .await?;
    ctx.print(&json!({ "env": env, "cluster": cluster }), || {
        println!("{env} runs its pods on cluster {cluster}")
    })
}
