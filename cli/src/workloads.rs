//! Services' workloads and pods: `warden service apply|status|stop|start|
//! restart` (next to `service create|list`) and `warden pod list|logs`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use hyper::Method as M;
use serde_json::json;
use warden_api::PodList;
use warden_types::ScopeKind;

use crate::ctx::Ctx;
use crate::error::usage;
use crate::input::{read_text, scope_path};
use crate::output;
use crate::scopes::{self, ScopeCmd};

/// Largest workload spec file `service apply` reads (the server's limit).
const MAX_SPEC_BYTES: u64 = 64 * 1024;

/// `warden service`.
#[derive(Debug, Subcommand)]
pub(crate) enum ServiceCmd {
    /// Create or list services.
    #[command(flatten)]
    Scope(ScopeCmd),
    /// Declare the service's workload from a YAML file (`-` reads stdin);
    /// the cluster makes it so and keeps it so.
    Apply {
        /// ORG/PROJECT/ENV/SERVICE.
        service: String,
        /// The workload spec (docs/workloads.md).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// The service's pods.
    Status {
        /// ORG/PROJECT/ENV/SERVICE.
        service: String,
    },
    /// Scale to zero, keeping the spec.
    Stop {
        /// ORG/PROJECT/ENV/SERVICE.
        service: String,
    },
    /// Undo `stop`.
    Start {
        /// ORG/PROJECT/ENV/SERVICE.
        service: String,
    },
    /// Rolling restart: one pod at a time, each replacement running first.
    Restart {
        /// ORG/PROJECT/ENV/SERVICE.
        service: String,
    },
    /// Change the number of pods, keeping the rest of the spec.
    Scale {
        /// ORG/PROJECT/ENV/SERVICE.
        service: String,
        /// Pods wanted (0 to 64).
        replicas: u32,
    },
}

/// `warden pod`.
#[derive(Debug, Subcommand)]
pub(crate) enum PodCmd {
    /// The pods of an environment or a service.
    List {
        /// ORG/PROJECT/ENV or ORG/PROJECT/ENV/SERVICE.
        scope: String,
    },
    /// A pod's output.
    Logs {
        /// ORG/PROJECT/ENV/SERVICE/POD (see `warden pod list`).
        pod: String,
        /// Keep printing new output until the pod is gone.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Start with only the last N lines.
        #[arg(long)]
        tail: Option<u32>,
    },
}

/// Runs a service command.
pub(crate) async fn service(ctx: &Ctx, c: ServiceCmd) -> anyhow::Result<()> {
    let control = |service: String, action: &'static str| async move {
        scope_path(&service, Some(ScopeKind::Service))?;
        ctx.call_empty(
            M::POST,
            &format!("/api/v1/workload-control/{service}"),
            Some(json!({ "action": action })),
        )
        .await?;
        ctx.print(&json!({ "service": service, "action": action }), || {
            println!("{service}: {action} done")
        })
    };
    match c {
        ServiceCmd::Scope(c) => scopes::run(ctx, ScopeKind::Service, c).await,
        ServiceCmd::Apply { service, file } => {
            scope_path(&service, Some(ScopeKind::Service))?;
            let spec = read_text(&file, MAX_SPEC_BYTES, "workload spec")
                .with_context(|| format!("reading {}", file.display()))?;
            let (list, raw): (PodList, _) = ctx
                .call(
                    M::PUT,
                    &format!("/api/v1/workloads/{service}"),
                    Some(json!({ "spec": spec })),
                )
                .await?;
            ctx.print(&raw, || {
                println!("applied {service} on cluster {}", list.cluster);
                output::pods(&list);
            })
        }
        ServiceCmd::Status { service } => {
            scope_path(&service, Some(ScopeKind::Service))?;
            let (list, raw): (PodList, _) = ctx
                .call(M::GET, &format!("/api/v1/workloads/{service}"), None)
                .await?;
            ctx.print(&raw, || output::pods(&list))
        }
        ServiceCmd::Stop { service } => control(service, "stop").await,
        ServiceCmd::Start { service } => control(service, "start").await,
        ServiceCmd::Restart { service } => control(service, "restart").await,
        ServiceCmd::Scale { service, replicas } => {
            scope_path(&service, Some(ScopeKind::Service))?;
            ctx.call_empty(
                M::POST,
                &format!("/api/v1/workload-scale/{service}"),
                Some(json!({ "replicas": replicas })),
            )
            .await?;
            ctx.print(&json!({ "service": service, "replicas": replicas }), || {
                println!("{service}: scaled to {replicas}")
            })
        }
    }
}

/// Runs a pod command.
pub(crate) async fn pod(ctx: &Ctx, c: PodCmd) -> anyhow::Result<()> {
    match c {
        PodCmd::List { scope } => {
            let path = scope_path(&scope, None)?;
            if !matches!(path.kind(), ScopeKind::Environment | ScopeKind::Service) {
                return Err(usage(
                    "list pods of ORG/PROJECT/ENV or ORG/PROJECT/ENV/SERVICE",
                ));
            }
            let (list, raw): (PodList, _) = ctx
                .call(M::GET, &format!("/api/v1/pods/{path}"), None)
                .await?;
            ctx.print(&raw, || output::pods(&list))
        }
        PodCmd::Logs { pod, follow, tail } => {
            let (service, name) = pod
                .rsplit_once('/')
                .ok_or_else(|| usage("name the pod as ORG/PROJECT/ENV/SERVICE/POD"))?;
            scope_path(service, Some(ScopeKind::Service))?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(usage("name the pod as ORG/PROJECT/ENV/SERVICE/POD"));
            }
            let mut path = format!("/api/v1/pod-logs/{service}?pod={name}&follow={follow}");
            if let Some(t) = tail {
                path.push_str(&format!("&tail={t}"));
            }
            // A reader that stops (`| head`) ends the command quietly, as
            // for `cat`.
            let mut out = std::io::stdout().lock();
            let mut reader_gone = false;
            let streamed = ctx
                .stream(&path, |data| {
                    let written = out.write_all(data).and_then(|()| out.flush());
                    reader_gone =
                        matches!(&written, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe);
                    written
                })
                .await;
            if reader_gone {
                Ok(())
            } else {
                // A follow cut off (the agent or the server went away) is
                // an error, never a clean end.
                streamed.context("the log stream was cut off")
            }
        }
    }
}
