//! `warden agent`: runs pods next to the workloads for a cluster, dialing
//! out to the control plane. The first start enrolls with a join token
//! (`warden cluster join-token NAME`): it makes a key that never leaves the
//! state directory, sends a certificate request, and keeps the certificate
//! it gets back; later starts reuse them. Then it dials the agent link
//! (mutual TLS) and redials with jittered backoff whenever it ends; pods
//! keep running meanwhile.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use hyper::Method as M;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_agent::wire::Endpoint;
use warden_agent::{Agent, AgentInfo, CredentialFeed};
use warden_api::Enrolled;
use warden_kubernetes::{KubernetesConfig, KubernetesRuntime};
use warden_runtime::{HelperCommand, Isolation, LocalConfig, LocalRuntime, Runtime};

use crate::ctx::Ctx;
use crate::error::usage;

/// The flags of `warden agent` (the server and its CA come from the global
/// `--server` and `--ca-cert`).
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// The join token, for the first start (`warden cluster join-token`).
    #[arg(long, env = "WARDEN_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// The runtime that runs this cluster's pods.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Local)]
    runtime: RuntimeKind,
    /// Where the agent keeps its key, certificate and pods' state (0700).
    #[arg(long, env = "WARDEN_AGENT_DIR")]
    state_dir: PathBuf,
    /// Run pods even where namespaces are unavailable (not root): they then
    /// run as this user and can read the agent's key.
    #[arg(long)]
    unisolated_pods: bool,
    /// With `--runtime kubernetes`: the namespace the workloads run in.
    #[arg(long, env = "WARDEN_KUBE_NAMESPACE", default_value = warden_kubernetes::DEFAULT_NAMESPACE)]
    kube_namespace: String,
    /// With `--runtime kubernetes`: a kubeconfig file (default: in-cluster
    /// service account, else $KUBECONFIG, else ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

/// Which runtime an agent drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RuntimeKind {
    /// Pods as namespaced process trees on this machine.
    Local,
    /// A Kubernetes cluster: a Deployment per service in one namespace
    /// (`warden-kubernetes`; manifests in deploy/kubernetes/).
    Kubernetes,
}

/// What enrollment left in the state directory besides key and certificate.
#[derive(Debug, Serialize, Deserialize)]
struct Enrollment {
    cluster: String,
    /// Every control-plane replica's agent listener, as last told.
    links: Vec<Endpoint>,
}

/// Most listeners an agent dials (the control plane names at most 16).
const MAX_LINKS: usize = 32;

const KEY_FILE: &str = "agent-key.pem";
const CERT_FILE: &str = "agent.pem";
const ENROLLMENT_FILE: &str = "enrollment.json";

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Enrolls once: key, CSR, certificate. Returns what the agent needs to dial.
async fn enroll(ctx: &Ctx, dir: &Path, token: Option<&str>) -> anyhow::Result<Enrollment> {
    let enrollment = dir.join(ENROLLMENT_FILE);
    if enrollment.exists() {
        let text = std::fs::read_to_string(&enrollment)?;
        return serde_json::from_str(&text).context("reading the enrollment record");
    }
    let token = token.ok_or_else(|| {
        usage("this agent is not enrolled yet: pass --join-token (see `warden cluster join-token`)")
    })?;
    let key = rcgen::KeyPair::generate().context("generating the agent's key")?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)
        .context("making the certificate request")?;
    let (enrolled, _): (Enrolled, _) = ctx
        .call(
            M::POST,
            "/api/v1/agents/enroll",
            Some(json!({ "token": token, "csr": csr.pem()? })),
        )
        .await
        .context("enrolling")?;
    write_private(&dir.join(KEY_FILE), key.serialize_pem().as_bytes())?;
    write_private(&dir.join(CERT_FILE), enrolled.certificate.as_bytes())?;
    let record = Enrollment {
        cluster: enrolled.cluster,
        links: enrolled
            .links
            .into_iter()
            .map(|l| Endpoint {
                node: l.node,
                address: l.address,
            })
            .collect(),
    };
    write_private(&enrollment, &serde_json::to_vec_pretty(&record)?)?;
    Ok(record)
}

/// The agent's TLS: its certificate, and the server's CA for the link.
fn client_tls(dir: &Path, ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join(CERT_FILE))
        .context("reading the agent certificate")?
        .collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(dir.join(KEY_FILE)).context("reading the agent key")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).context("reading the CA certificate")? {
        roots.add(c?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// `warden agent`: runs until killed.
pub(crate) async fn run(ctx: &Ctx, args: AgentArgs, helper: HelperCommand) -> anyhow::Result<()> {
    let dir = &args.state_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:o}): `chmod 700 {}`",
            dir.display(),
            mode & 0o777,
            dir.display()
        );
    }
    let enrollment = enroll(ctx, dir, args.join_token.as_deref()).await?;
    let tls = client_tls(dir, &ctx.ca_cert)?;
    let host = ctx
        .server
        .trim_start_matches("https://")
        .rsplit_once(':')
        .map_or(ctx.server.as_str(), |(h, _)| h)
        .trim_matches(['[', ']'])
        .to_owned();
    let server_name =
        ServerName::try_from(host).map_err(|e| anyhow!("server name of {}: {e}", ctx.server))?;

    let feed = CredentialFeed::new();
    let (runtime, kind, node, pods) = match args.runtime {
        RuntimeKind::Local => {
            let (runtime, node) = local_runtime(dir, helper, &feed, args.unisolated_pods).await?;
            let pods = runtime.isolation().to_string();
            let runtime: Arc<dyn Runtime> = Arc::new(runtime);
            tokio::spawn(warden_agent::refresh_forever(
                feed.clone(),
                runtime.clone(),
                warden_agent::CREDENTIAL_REFRESH,
            ));
            (runtime, "local", node, pods)
        }
        RuntimeKind::Kubernetes => {
            // No credential refresh: this backend delivers none (pods'
            // identity will be projected service-account tokens).
            let runtime = KubernetesRuntime::connect(KubernetesConfig {
                namespace: args.kube_namespace.clone(),
                kubeconfig: args.kubeconfig.clone(),
                ..KubernetesConfig::default()
            })
            .await
            .context("configuring the Kubernetes client")?;
            let pods = format!(
                "Kubernetes Deployments in namespace {}",
                runtime.namespace()
            );
            let runtime: Arc<dyn Runtime> = Arc::new(runtime);
            (runtime, "kubernetes", hostname(), pods)
        }
    };
    eprintln!(
        "warden agent: cluster {}, links {}, pods: {pods}",
        enrollment.cluster,
        enrollment
            .links
            .iter()
            .map(|e| e.address.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
    let (told, mut endpoints) = tokio::sync::mpsc::unbounded_channel();
    let agent = Agent::new(
        runtime,
        AgentInfo {
            runtime: kind.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            node,
        },
        feed,
    )
    .with_endpoints(told);
    // One link per control-plane replica (by node id): replicas named later
    // get one too, a replica named at a new address is dialled there
    // instead, and the list is remembered for the next start.
    let mut dialing: std::collections::BTreeMap<String, (String, tokio::task::JoinHandle<()>)> =
        std::collections::BTreeMap::new();
    let mut told = enrollment.links;
    loop {
        let mut changed = false;
        for e in told {
            if dialing.get(&e.node).is_some_and(|(a, _)| *a == e.address) {
                continue;
            }
            if !dialing.contains_key(&e.node) && dialing.len() >= MAX_LINKS {
                continue;
            }
            let task = tokio::spawn(warden_agent::dial_forever(
                e.address.clone(),
                server_name.clone(),
                tls.clone(),
                agent.clone(),
            ));
            if let Some((_, old)) = dialing.insert(e.node, (e.address, task)) {
                old.abort();
            }
            changed = true;
        }
        if changed {
            let record = Enrollment {
                cluster: enrollment.cluster.clone(),
                links: dialing
                    .iter()
                    .map(|(node, (address, _))| Endpoint {
                        node: node.clone(),
                        address: address.clone(),
                    })
                    .collect(),
            };
            // Written aside and renamed (a crash leaves the old record); a
            // failure costs only the memory of new listeners.
            let aside = dir.join(format!("{ENROLLMENT_FILE}.new"));
            let saved = serde_json::to_vec_pretty(&record)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| write_private(&aside, &bytes))
                .and_then(|()| {
                    std::fs::rename(&aside, dir.join(ENROLLMENT_FILE)).map_err(Into::into)
                });
            if let Err(e) = saved {
                tracing::warn!(error = %e, "could not record the control plane's listeners");
            }
        }
        let Some(next) = endpoints.recv().await else {
            return Ok(());
        };
        told = next;
    }
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The local runtime, refusing unisolated pods unless allowed.
async fn local_runtime(
    dir: &Path,
    helper: HelperCommand,
    feed: &CredentialFeed,
    unisolated_pods: bool,
) -> anyhow::Result<(LocalRuntime, String)> {
    let mut cfg = LocalConfig::new(dir.join("runtime"), helper);
    // The agent's key and enrollment: no pod may see them.
    cfg.masked_paths = vec![dir.to_path_buf()];
    cfg.masked_paths
        .extend(dir.canonicalize().ok().filter(|p| p != dir));
    cfg.node = hostname();
    let node = cfg.node.clone();
    let runtime = LocalRuntime::start(cfg, Arc::new(feed.clone()))
        .await
        .context("starting the local runtime")?;
    if let Isolation::None { reason } = runtime.isolation()
        && !unisolated_pods
    {
        bail!(
            "{reason}; without namespaces pods would run as this user and could read the \
             agent's key (pass --unisolated-pods to accept that)"
        );
    }
    Ok((runtime, node))
}
