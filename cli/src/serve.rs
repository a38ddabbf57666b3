//! Everything that starts a server: `warden dev`, `warden server` and
//! `warden injector webhook`, their flags, logging, process hardening, the dev data directory and the
//! shutdown signal. This is the only module that names `warden_server`
//! (tests/integration/architecture.rs checks it): every other command is a
//! client of the HTTPS API.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand, ValueEnum};

use crate::client_config::{self, ClientConfig};

/// The flags of `warden dev`.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Data directory (created if new, reused if not).
    #[arg(long, env = "WARDEN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Where the SSH gateway listens (`none` to not serve SSH).
    #[arg(long, default_value = "127.0.0.1:2222", value_parser = parse_ssh_listen)]
    ssh_listen: SshListen,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Run pods even where namespaces are unavailable (not root): they then
    /// run as this user, with no isolation, and can read this data
    /// directory (the unseal key, the root token). Single-user laptops only.
    #[arg(long)]
    unisolated_pods: bool,
}

/// `--ssh-listen`: an address, or `none`.
#[derive(Debug, Clone, Copy)]
struct SshListen(Option<SocketAddr>);

fn parse_ssh_listen(s: &str) -> Result<SshListen, String> {
    if s == "none" {
        return Ok(SshListen(None));
    }
    s.parse()
        .map(|a| SshListen(Some(a)))
        .map_err(|_| format!("{s:?} is not IP:PORT or `none`"))
}

/// The flags of `warden server`.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Configuration file; every key can be overridden by `WARDEN_<KEY>`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Once, after upgrading from a version before row MACs: give the
    /// database's authorization rows their MACs at the next unseal.
    /// Without it such rows are refused, since the database alone cannot
    /// tell an old database from one whose MACs were removed.
    #[arg(long)]
    adopt_unprotected_rows: bool,
}

/// How a server logs.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr at `default` level unless `RUST_LOG` says otherwise.
/// Client commands call it too, quietly (`warn`).
pub(crate) fn init_logging(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Waits for Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// `$XDG_DATA_HOME/warden/dev`, else `~/.local/share/warden/dev`.
fn default_data_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .ok_or_else(|| anyhow!("pass --data-dir (no HOME to put it in)"))?;
    Ok(base.join("warden").join("dev"))
}

/// The first argument that makes this binary a pod helper.
pub(crate) const RUNTIME_HELPER_ARG: &str = "__runtime";

/// Runs a pod helper (never returns); see [`RUNTIME_HELPER_ARG`].
pub(crate) fn runtime_helper(args: Vec<std::ffi::OsString>) -> ! {
    warden_runtime::helper_main(args)
}

/// How the local runtime runs this binary for its pod helpers (`main`
/// dispatches [`RUNTIME_HELPER_ARG`] to [`runtime_helper`]).
pub(crate) fn pod_helper() -> anyhow::Result<warden_runtime::HelperCommand> {
    Ok(warden_runtime::HelperCommand {
        program: std::env::current_exe()
            .context("locating the warden binary for the pod runtime")?,
        args: vec![RUNTIME_HELPER_ARG.into()],
    })
}

/// How the local runtime starts pods under `warden-injector`: the binary
/// next to this one (the same build; `scripts/dev.sh` builds both), the
/// API's address and its CA. Why not, if it cannot.
fn pod_injection(
    url: &str,
    ca_cert: &std::path::Path,
) -> Result<warden_runtime::Injection, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating this binary: {e}"))?;
    let binary = exe.with_file_name("warden-injector");
    if !binary.is_file() {
        return Err(format!(
            "{} not found (build it: cargo build -p warden-injector, or run scripts/dev.sh)",
            binary.display()
        ));
    }
    let ca_pem = std::fs::read_to_string(ca_cert)
        .map_err(|e| format!("reading {}: {e}", ca_cert.display()))?;
    Ok(warden_runtime::Injection {
        binary,
        server: url.to_owned(),
        ca_pem,
    })
}

/// `warden dev`: runs until Ctrl-C or SIGTERM.
pub(crate) async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let DevArgs {
        data_dir,
        listen,
        ssh_listen,
        log_format: log,
        unisolated_pods,
    } = args;
    init_logging("info", matches!(log, LogFormat::Json));
    warden_server::hardening::harden_process();
    let data_dir = match data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    let dev = warden_server::dev::start_dev(&data_dir, listen, ssh_listen.0)
        .await
        .with_context(|| format!("starting the dev server in {}", data_dir.display()))?;
    // Masked by its real path too: a data directory given through a
    // symbolic link must not stay visible to pods.
    let mut masked_paths = vec![data_dir.clone()];
    masked_paths.extend(data_dir.canonicalize().ok().filter(|p| *p != data_dir));
    let injection = pod_injection(&dev.url, &dev.pki.ca_cert);
    let pods = warden_server::clusters::start_local_agent(
        &dev.running.app,
        warden_server::clusters::LocalAgent {
            state_dir: data_dir.join("runtime"),
            helper: pod_helper()?,
            masked_paths,
            allow_unisolated: unisolated_pods,
            injection: injection.as_ref().ok().cloned(),
        },
    )
    .await;
    let saved = client_config::save(&ClientConfig {
        server: Some(dev.url.clone()),
        ca_cert: Some(dev.pki.ca_cert.clone()),
        token: Some(dev.token.to_string()),
    })?;
    eprintln!(
        "\n  WARNING: development mode. The unseal key and the root token are stored in\n  \
         {dir} next to the data: anyone who can read that directory can read\n  \
         every secret. Never use `warden dev` for real secrets.\n",
        dir = data_dir.display()
    );
    println!(
        "Warden dev server {}",
        if dev.created {
            "created and running"
        } else {
            "running"
        }
    );
    println!("  URL:      {}", dev.url);
    println!("  CA:       {}", dev.pki.ca_cert.display());
    println!("  Token:    {}", dev.token.as_str());
    println!("  Data:     {}", data_dir.display());
    if let Some(agents) = dev.running.agent_addr {
        println!(
            "  Agents:   {agents} (mutual TLS; enroll one with `warden cluster join-token NAME`)"
        );
    }
    if let Some(ssh) = dev.running.ssh_addr {
        match warden_server::gateway::host_key_fingerprint(&dev.running.app).await {
            Ok(fingerprint) => println!(
                "  SSH:      {ssh} (host key {fingerprint}; `ssh -p {} USER@{} ORG/PROJECT/ENV/SERVICE`)",
                ssh.port(),
                ssh.ip()
            ),
            Err(e) => println!("  SSH:      {ssh} (host key unavailable: {e:?})"),
        }
    }
    match &pods {
        Ok((agent, isolation)) => {
            println!(
                "  Pods:     cluster {} ({} runtime), {isolation}",
                warden_server::clusters::LOCAL_CLUSTER,
                agent.runtime
            );
            if !matches!(
                isolation,
                warden_server::clusters::Isolation::NamespacesAndCgroup { .. }
            ) {
                eprintln!(
                    "  WARNING: pods run with reduced isolation here ({isolation}); see `warden pod list`.\n"
                );
            }
        }
        Err(e) => println!("  Pods:     disabled: {e}"),
    }
    match &injection {
        Ok(i) => println!(
            "  Secrets:  every pod runs under {} (its service's secrets in its environment, \
             kept current)",
            i.binary.display()
        ),
        Err(why) => println!("  Secrets:  not injected into pods: {why}"),
    }
    println!(
        "  CLI config written to {} (the next `warden` command needs no flags)",
        saved.display()
    );
    shutdown_signal().await;
    eprintln!("shutting down: finishing in-flight requests");
    dev.running.shutdown().await;
    Ok(())
}

/// `warden server`: runs until Ctrl-C or SIGTERM.
pub(crate) async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let ServerArgs {
        config,
        adopt_unprotected_rows,
    } = args;
    let config = warden_server::config::Config::load(config.as_deref(), |k| std::env::var(k).ok())?;
    init_logging("info", config.log_json);
    warden_server::hardening::harden_process();
    warn_if_shared(&config.tls_key);
    let tls = warden_server::tls::server_config(&config.tls_cert, &config.tls_key)?;
    let running = warden_server::start(warden_server::ServerOptions {
        listen: config.listen,
        database_url: config.database_url.clone(),
        tls,
        node_id: config.node_id.clone(),
        request_timeout: config.request_timeout,
        max_token_ttl: config.max_token_ttl,
        adopt_unprotected_rows,
        agent_listen: config.agent_listen,
        agent_advertise: config.agent_advertise.clone(),
        ssh_listen: config.ssh_listen,
    })
    .await?;
    tracing::info!(addr = %running.addr, "warden server started (sealed until `warden operator unseal`)");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.shutdown().await;
    Ok(())
}

/// Warns when the TLS private key `warden server` was given is readable by
/// group or others. It is the operator's file (often shared with a group on
/// purpose), so this warns rather than refuses.
fn warn_if_shared(key: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(key)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %key.display(),
            mode = format!("{:04o}", m.permissions().mode() & 0o7777),
            "the TLS private key is readable by other users; `chmod 600` it unless that is intended"
        );
    }
}

/// `warden injector ...`: the secret injector's Kubernetes side.
#[derive(Debug, Subcommand)]
pub(crate) enum InjectorCmd {
    /// Serve the mutating admission webhook (AdmissionReview v1 over HTTPS,
    /// `POST /mutate`, `GET /healthz`) that adds `warden-injector` to pods
    /// annotated `warden.dev/inject: "true"` (docs/injector.md).
    Webhook(WebhookArgs),
}

/// The flags of `warden injector webhook`.
#[derive(Debug, Args)]
pub(crate) struct WebhookArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The webhook's certificate chain (PEM); the API server must trust its
    /// CA (the configuration's `caBundle`).
    #[arg(long, value_name = "FILE")]
    tls_cert: PathBuf,
    /// The webhook's private key (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: PathBuf,
    /// The image the init container copies `warden-injector` from.
    #[arg(long, value_name = "IMAGE")]
    injector_image: String,
    /// Where `warden-injector` is in that image (copied with `cp`, which the
    /// image must have).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/usr/local/bin/warden-injector"
    )]
    injector_binary: String,
    /// The Warden server pods fetch their secrets from
    /// (`$WARDEN_SERVER` in wrapped containers).
    #[arg(long, value_name = "https://HOST:PORT")]
    warden_server: String,
    /// The CA certificate (PEM) pods trust for that server; its text goes
    /// into wrapped containers as `$WARDEN_CA_PEM` (a CA is public).
    #[arg(long, value_name = "FILE")]
    warden_ca: PathBuf,
    /// The name Warden knows this cluster by (`$WARDEN_CLUSTER` in wrapped
    /// containers, for the service-account token exchange).
    #[arg(long, value_name = "NAME")]
    cluster: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `warden injector webhook`: serves until Ctrl-C or SIGTERM.
pub(crate) async fn injector(cmd: InjectorCmd) -> anyhow::Result<()> {
    let InjectorCmd::Webhook(args) = cmd;
    init_logging("info", matches!(args.log_format, LogFormat::Json));
    warden_server::hardening::harden_process();
    let ca = read_bounded(&args.warden_ca, warden_kubernetes::admission::MAX_CA_BYTES)
        .with_context(|| format!("--warden-ca {}", args.warden_ca.display()))?;
    let ca = String::from_utf8(ca)
        .map_err(|_| anyhow!("--warden-ca {}: not PEM text", args.warden_ca.display()))?;
    let injection = warden_kubernetes::admission::Injection::new(
        &args.injector_image,
        &args.injector_binary,
        &args.warden_server,
        &ca,
        &args.cluster,
    )?;
    warn_if_shared(&args.tls_key);
    let tls = warden_server::tls::server_config(&args.tls_cert, &args.tls_key)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "warden injector webhook started");
    // One line on stdout with the bound address (`--listen 127.0.0.1:0`).
    println!("warden injector webhook listening on https://{addr}");
    let router = warden_kubernetes::webhook::router(std::sync::Arc::new(injection));
    warden_server::serve_tls(listener, tls, router, shutdown_signal()).await;
    Ok(())
}

/// Reads a file of at most `limit` bytes.
fn read_bounded(path: &std::path::Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(limit as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(anyhow!("larger than {limit} bytes"));
    }
    Ok(out)
}
