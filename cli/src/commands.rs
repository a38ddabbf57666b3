//! Command-line grammar and what each command does.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use warden_api::*;
use warden_types::{ScopeKind, ScopePath, SecretName};
use zeroize::Zeroizing;

use crate::client_config::{self, ClientConfig};
use crate::{audit, identity, output};

/// Warden: secrets vault and remote-access gateway.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Server address, https://HOST:PORT.
    #[arg(long, global = true, env = "WARDEN_ADDR")]
    server: Option<String>,
    /// API token.
    #[arg(long, global = true, env = "WARDEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) to trust for the server.
    #[arg(long, global = true, env = "WARDEN_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Output format for commands that print data.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a development server on embedded defaults (SQLite, generated TLS,
    /// auto-unsealed). Not for production.
    Dev {
        /// Data directory (created if new, reused if not).
        #[arg(long, env = "WARDEN_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Run a production server from a TOML configuration file. Starts sealed.
    Server {
        /// Configuration file; every key can be overridden by `WARDEN_<KEY>`.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The tamper-evident audit log: tail, query, checkpoints, inclusion
    /// proofs, export bundles and their verification (`audit verify BUNDLE`
    /// works offline, without a server).
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Every command that talks to a running server.
    #[command(flatten)]
    Client(ClientCmd),
}

/// The client commands: each is an HTTPS call (or a few) to the API.
#[derive(Debug, Subcommand)]
enum ClientCmd {
    /// Initialize, unseal and seal the vault.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Organizations.
    #[command(subcommand)]
    Org(ScopeCmd),
    /// Projects (ORG/PROJECT).
    #[command(subcommand)]
    Project(ScopeCmd),
    /// Environments (ORG/PROJECT/ENV).
    #[command(subcommand)]
    Env(EnvCmd),
    /// Services (ORG/PROJECT/ENV/SERVICE).
    #[command(subcommand)]
    Service(ScopeCmd),
    /// Secrets.
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Organization key terms: rotate, rewrap, status.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Identity: login, users, tokens, SSH keys, roles, bindings, policy.
    #[command(flatten)]
    Identity(identity::IdentityCmd),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum OperatorCmd {
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
    Unseal,
    /// Drop all key material from the server's memory.
    Seal,
    /// Show seal status.
    Status,
}

#[derive(Debug, Subcommand)]
enum ScopeCmd {
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

#[derive(Debug, Subcommand)]
enum EnvCmd {
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
    },
    /// List the environments of ORG/PROJECT.
    List {
        /// ORG/PROJECT.
        parent: String,
    },
}

#[derive(Debug, Subcommand)]
enum SecretCmd {
    /// Write secrets: KEY=VALUE, KEY=@FILE, or KEY with --stdin.
    Set {
        /// ORG/PROJECT[/ENV[/SERVICE]].
        scope: String,
        /// KEY=VALUE, KEY=@FILE (value read from the file), or a bare KEY with --stdin.
        #[arg(required = true)]
        pairs: Vec<String>,
        /// Read the value of the single KEY from standard input.
        #[arg(long)]
        stdin: bool,
        /// Check-and-set: write only if the current version is N (0 = new).
        #[arg(long)]
        cas: Option<i64>,
    },
    /// Print a secret's value.
    Get {
        /// Scope path.
        scope: String,
        /// Secret name.
        key: String,
        /// A specific version.
        #[arg(long)]
        version: Option<i64>,
    },
    /// List names, versions and update times (never values).
    List {
        /// Scope path.
        scope: String,
    },
    /// List a secret's versions.
    History {
        /// Scope path.
        scope: String,
        /// Secret name.
        key: String,
    },
    /// Soft-delete versions (the latest by default).
    Delete(VersionArgs),
    /// Undelete versions (the latest by default).
    Undelete(VersionArgs),
    /// Erase versions for good.
    Destroy {
        /// Scope path.
        scope: String,
        /// Secret name.
        key: String,
        /// Versions to destroy (required, repeatable).
        #[arg(long = "version", required = true)]
        versions: Vec<i64>,
    },
    /// Print a service's effective secrets (inheritance + ${REF} resolved).
    Resolve {
        /// ORG/PROJECT/ENV/SERVICE.
        service: String,
        /// env (shell `export`), dotenv, or json.
        #[arg(long, value_enum, default_value_t = ResolveFormat::Env)]
        format: ResolveFormat,
    },
}

#[derive(Debug, Args)]
struct VersionArgs {
    /// Scope path.
    scope: String,
    /// Secret name.
    key: String,
    /// Versions (repeatable; default: latest).
    #[arg(long = "version")]
    versions: Vec<i64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ResolveFormat {
    Env,
    Dotenv,
    Json,
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
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

/// Bad command-line input caught before any request (exit code 2).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `warden policy check` answered "deny" (exit code 4, like a refused
/// request); the message is the server's explanation.
#[derive(Debug)]
pub(crate) struct PolicyDenied(pub(crate) String);

impl std::fmt::Display for PolicyDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyDenied {}

/// Something the command would create exists already (exit code 6, like a
/// conflict answered by the server).
#[derive(Debug)]
pub(crate) struct Conflict(pub(crate) String);

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Conflict {}

/// Maps an error to the documented exit code.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<warden_types::NameError>().is_some()
        || e.downcast_ref::<UsageError>().is_some()
    {
        return 2;
    }
    if e.downcast_ref::<PolicyDenied>().is_some() {
        return 4;
    }
    if e.downcast_ref::<Conflict>().is_some() {
        return 6;
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Api { status, code, .. }) => match (*status, code.as_str()) {
            (404, _) | (410, _) => 3,
            (401, _) | (403, _) => 4,
            (503, _) => 5,
            (409, _) => 6,
            _ => 1,
        },
        Some(ClientError::Connect { .. }) => 5,
        _ => 1,
    }
}

/// What a client command runs with: the API client and how to print.
pub(crate) struct Ctx {
    client: Client,
    output: Output,
    /// The server address in use.
    pub(crate) server: String,
    /// The CA certificate file in use.
    pub(crate) ca_cert: PathBuf,
    /// A token was given by `--token` or `WARDEN_TOKEN` (it outranks the
    /// saved one).
    pub(crate) token_given: bool,
}

impl Ctx {
    /// One request; returns the typed answer and the raw JSON.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(T, Value)> {
        let raw: Value = self.client.call(method, path, body.as_ref()).await?;
        let typed =
            serde_json::from_value(raw.clone()).context("unexpected answer from the server")?;
        Ok((typed, raw))
    }

    /// One request whose success answer has no body (204).
    pub(crate) async fn call_empty(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<()> {
        self.call_bytes(method, path, body).await.map(drop)
    }

    /// One request whose success answer is returned as raw bytes (the
    /// client reads the whole body); error answers become
    /// [`ClientError::Api`].
    pub(crate) async fn call_bytes(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<hyper::body::Bytes> {
        self.call_bytes_with_progress(method, path, body, |_, _| {})
            .await
    }

    /// [`Ctx::call_bytes`], reporting `(received, total)` as the body
    /// arrives.
    pub(crate) async fn call_bytes_with_progress(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Value>,
        progress: impl FnMut(u64, Option<u64>),
    ) -> anyhow::Result<hyper::body::Bytes> {
        let body = body.map(|b| serde_json::to_vec(&b)).transpose()?;
        let (status, bytes) = self
            .client
            .connect()
            .await?
            .send_with_progress(method, path, body, progress)
            .await?;
        if status.is_success() {
            return Ok(bytes);
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => (e.error.code, e.error.message),
            Err(_) => (
                "http_error".to_owned(),
                String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            ),
        };
        Err(ClientError::Api {
            status: status.as_u16(),
            code,
            message,
        }
        .into())
    }

    /// The output format asked for.
    pub(crate) fn output(&self) -> Output {
        self.output
    }

    /// Prints `raw` as JSON in JSON mode, else runs `text`.
    pub(crate) fn print(&self, raw: &Value, text: impl FnOnce()) -> anyhow::Result<()> {
        match self.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(raw)?),
            Output::Text => text(),
        }
        Ok(())
    }
}

/// Builds the client from flags, environment and the saved configuration;
/// without `with_token` it sends no token (for `warden login`).
fn connect(global: &Global, with_token: bool) -> anyhow::Result<Ctx> {
    let saved = client_config::load()?;
    let server = global.server.clone().or(saved.server).ok_or_else(|| {
        anyhow!("no server address: pass --server or set WARDEN_ADDR (or run `warden dev`)")
    })?;
    let ca = global
        .ca_cert
        .clone()
        .or(saved.ca_cert)
        .ok_or_else(|| anyhow!("no CA certificate: pass --ca-cert or set WARDEN_CA_CERT"))?;
    let token = if with_token {
        global.token.clone().or(saved.token)
    } else {
        None
    };
    let client = Client::new(&server, &client_config::read_ca(&ca)?, token)?;
    Ok(Ctx {
        client,
        output: global.output,
        server,
        ca_cert: ca,
        token_given: global.token.is_some(),
    })
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev {
            data_dir,
            listen,
            log_format,
        } => dev(data_dir, listen, log_format).await,
        Command::Server { config } => server(config).await,
        Command::Audit(command) => {
            init_logging("warn", false);
            // `audit verify BUNDLE` is offline: it reads no configuration
            // and never connects.
            match command.into_offline() {
                Ok(offline) => audit::verify_offline(cli.global.output, offline),
                Err(command) => {
                    let ctx = connect(&cli.global, !command.anonymous())?;
                    audit::run(&ctx, *command).await
                }
            }
        }
        Command::Client(command) => {
            init_logging("warn", false);
            let anonymous = matches!(&command, ClientCmd::Identity(c) if c.anonymous());
            let ctx = connect(&cli.global, !anonymous)?;
            client_command(&ctx, command).await
        }
    }
}

fn init_logging(default: &str, json: bool) {
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

fn default_data_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .ok_or_else(|| anyhow!("pass --data-dir (no HOME to put it in)"))?;
    Ok(base.join("warden").join("dev"))
}

async fn dev(data_dir: Option<PathBuf>, listen: SocketAddr, log: LogFormat) -> anyhow::Result<()> {
    init_logging("info", matches!(log, LogFormat::Json));
    warden_server::hardening::harden_process();
    warden_store::files::restrict_umask();
    let data_dir = match data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    let dev = warden_server::dev::start_dev(&data_dir, listen)
        .await
        .with_context(|| format!("starting the dev server in {}", data_dir.display()))?;
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
    println!(
        "  CLI config written to {} (the next `warden` command needs no flags)",
        saved.display()
    );
    shutdown_signal().await;
    eprintln!("shutting down: finishing in-flight requests");
    dev.running.shutdown().await;
    Ok(())
}

async fn server(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = warden_server::config::Config::load(config.as_deref(), |k| std::env::var(k).ok())?;
    init_logging("info", config.log_json);
    warden_server::hardening::harden_process();
    warden_store::files::restrict_umask();
    warn_if_shared(&config.tls_key);
    let tls = warden_server::tls::server_config(&config.tls_cert, &config.tls_key)?;
    let running = warden_server::start(warden_server::ServerOptions {
        listen: config.listen,
        database_url: config.database_url.clone(),
        tls,
        node_id: config.node_id.clone(),
        request_timeout: config.request_timeout,
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

/// Reads a secret: a hidden prompt on a terminal, else one line of stdin.
pub(crate) fn read_hidden(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        Ok(Zeroizing::new(
            rpassword::prompt_password(prompt).context("reading from the terminal")?,
        ))
    } else {
        let mut s = Zeroizing::new(String::new());
        std::io::stdin()
            .read_line(&mut s)
            .context("reading standard input")?;
        let trimmed = Zeroizing::new(s.trim_end_matches(['\n', '\r']).to_owned());
        Ok(trimmed)
    }
}

/// Validates a scope path (of `kind`, if given).
pub(crate) fn scope_path(s: &str, kind: Option<ScopeKind>) -> anyhow::Result<ScopePath> {
    Ok(match kind {
        Some(k) => ScopePath::parse_kind(s, k)?,
        None => ScopePath::parse(s)?,
    })
}

fn key_name(s: &str) -> anyhow::Result<SecretName> {
    Ok(SecretName::parse(s)?)
}

async fn client_command(ctx: &Ctx, command: ClientCmd) -> anyhow::Result<()> {
    use hyper::Method as M;
    match command {
        ClientCmd::Operator(op) => operator(ctx, op).await,
        ClientCmd::Org(c) => scope_cmd(ctx, ScopeKind::Organization, c).await,
        ClientCmd::Project(c) => scope_cmd(ctx, ScopeKind::Project, c).await,
        ClientCmd::Service(c) => scope_cmd(ctx, ScopeKind::Service, c).await,
        ClientCmd::Env(EnvCmd::Create {
            path,
            mode,
            max_versions,
        }) => {
            scope_path(&path, Some(ScopeKind::Environment))?;
            let body = json!({"kind": "environment", "path": path, "mode": mode, "max_versions": max_versions});
            let (s, raw): (Scope, _) = ctx.call(M::POST, "/api/v1/scopes", Some(body)).await?;
            ctx.print(&raw, || {
                println!(
                    "created environment {} ({})",
                    s.path,
                    s.mode.unwrap_or_default()
                )
            })
        }
        ClientCmd::Env(EnvCmd::List { parent }) => {
            scope_cmd(
                ctx,
                ScopeKind::Environment,
                ScopeCmd::List {
                    parent: Some(parent),
                },
            )
            .await
        }
        ClientCmd::Secret(c) => secret(ctx, c).await,
        ClientCmd::Keys(c) => keys(ctx, c).await,
        ClientCmd::Identity(c) => identity::run(ctx, c).await,
    }
}

async fn operator(ctx: &Ctx, op: OperatorCmd) -> anyhow::Result<()> {
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
        OperatorCmd::Unseal => {
            let (status, _): (SysStatus, _) = ctx.call(M::GET, "/api/v1/sys/status", None).await?;
            if !status.sealed {
                println!("already unsealed");
                return Ok(());
            }
            let body = match status.method.as_deref() {
                Some("shamir") => {
                    json!({"share": read_hidden(&format!("Unseal share ({}/{} given): ", status.progress, status.threshold))?.as_str()})
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
            ctx.print(&raw, || output::seal_status(&s))
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

async fn scope_cmd(ctx: &Ctx, kind: ScopeKind, c: ScopeCmd) -> anyhow::Result<()> {
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

fn read_value(spec: &str) -> anyhow::Result<Zeroizing<String>> {
    match spec.strip_prefix('@') {
        Some(file) => Ok(Zeroizing::new(
            std::fs::read_to_string(file)
                .with_context(|| format!("reading value file {file} (must be UTF-8)"))?,
        )),
        None => Ok(Zeroizing::new(spec.to_owned())),
    }
}

async fn secret(ctx: &Ctx, c: SecretCmd) -> anyhow::Result<()> {
    use hyper::Method as M;
    match c {
        SecretCmd::Set {
            scope,
            pairs,
            stdin,
            cas,
        } => {
            let scope = scope_path(&scope, None)?;
            let mut values: BTreeMap<String, Zeroizing<String>> = BTreeMap::new();
            if stdin {
                let [key] = pairs.as_slice() else {
                    bail!("with --stdin give exactly one KEY");
                };
                key_name(key)?;
                let mut v = Zeroizing::new(String::new());
                std::io::stdin()
                    .read_to_string(&mut v)
                    .context("reading the value from stdin (must be UTF-8)")?;
                if v.ends_with('\n') {
                    v.pop();
                }
                values.insert(key.clone(), v);
            } else {
                for pair in &pairs {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        anyhow!(
                            "{:?} is not KEY=VALUE (use --stdin to pass a value on standard input)",
                            pair.split('=').next().unwrap_or_default()
                        )
                    })?;
                    key_name(k)?;
                    values.insert(k.to_owned(), read_value(v)?);
                }
            }
            let body = json!({
                "values": values.iter().map(|(k, v)| (k.clone(), Value::String(v.to_string()))).collect::<serde_json::Map<_, _>>(),
                "cas": cas,
            });
            let (out, raw): (PutResponse, _) = ctx
                .call(M::PUT, &format!("/api/v1/secrets/{scope}"), Some(body))
                .await?;
            ctx.print(&raw, || {
                for w in &out.written {
                    println!("{} = version {}", w.name, w.version);
                }
            })
        }
        SecretCmd::Get {
            scope,
            key,
            version,
        } => {
            let scope = scope_path(&scope, None)?;
            let key = key_name(&key)?;
            let mut url = format!("/api/v1/secret/{scope}?key={key}");
            if let Some(v) = version {
                url.push_str(&format!("&version={v}"));
            }
            let (s, raw): (SecretResponse, _) = ctx.call(M::GET, &url, None).await?;
            ctx.print(&raw, || println!("{}", s.value.0.expose()))
        }
        SecretCmd::List { scope } => {
            let scope = scope_path(&scope, None)?;
            let (list, raw): (SecretList, _) = ctx
                .call(M::GET, &format!("/api/v1/secrets/{scope}"), None)
                .await?;
            ctx.print(&raw, || output::secrets(&list))
        }
        SecretCmd::History { scope, key } => {
            let scope = scope_path(&scope, None)?;
            let key = key_name(&key)?;
            let (h, raw): (History, _) = ctx
                .call(
                    M::GET,
                    &format!("/api/v1/secret-history/{scope}?key={key}"),
                    None,
                )
                .await?;
            ctx.print(&raw, || output::history(&h))
        }
        SecretCmd::Delete(a) => {
            change(ctx, "secret-delete", "deleted", a.scope, a.key, a.versions).await
        }
        SecretCmd::Undelete(a) => {
            change(
                ctx,
                "secret-undelete",
                "undeleted",
                a.scope,
                a.key,
                a.versions,
            )
            .await
        }
        SecretCmd::Destroy {
            scope,
            key,
            versions,
        } => change(ctx, "secret-destroy", "destroyed", scope, key, versions).await,
        SecretCmd::Resolve { service, format } => {
            let service = scope_path(&service, Some(ScopeKind::Service))?;
            let (r, raw): (Resolved, _) = ctx
                .call(M::GET, &format!("/api/v1/resolve/{service}"), None)
                .await?;
            match (ctx.output, format) {
                (Output::Json, _) | (_, ResolveFormat::Json) => {
                    println!("{}", serde_json::to_string_pretty(&raw["values"])?)
                }
                (_, ResolveFormat::Env) => r.values.iter().for_each(|(k, v)| {
                    println!("export {k}={}", output::shell_quote(v.0.expose()))
                }),
                (_, ResolveFormat::Dotenv) => r
                    .values
                    .iter()
                    .for_each(|(k, v)| println!("{k}={}", output::dotenv_quote(v.0.expose()))),
            }
            Ok(())
        }
    }
}

async fn change(
    ctx: &Ctx,
    route: &str,
    verb: &str,
    scope: String,
    key: String,
    versions: Vec<i64>,
) -> anyhow::Result<()> {
    let scope = scope_path(&scope, None)?;
    let key = key_name(&key)?;
    let body = json!({"key": key.as_str(), "versions": versions});
    let (out, raw): (VersionsChanged, _) = ctx
        .call(
            hyper::Method::POST,
            &format!("/api/v1/{route}/{scope}"),
            Some(body),
        )
        .await?;
    ctx.print(&raw, || {
        if out.changed.is_empty() {
            println!("nothing {verb} (already in that state)");
        } else {
            println!("{verb} {key} version(s) {:?}", out.changed);
        }
    })
}

async fn keys(ctx: &Ctx, c: KeysCmd) -> anyhow::Result<()> {
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
            let bar = (ctx.output == Output::Text).then(|| output::progress(total));
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_follow_the_documented_table() {
        let api = |status: u16| {
            anyhow::Error::new(ClientError::Api {
                status,
                code: String::new(),
                message: String::new(),
            })
        };
        assert_eq!(exit_code(&api(404)), 3);
        assert_eq!(exit_code(&api(410)), 3);
        assert_eq!(exit_code(&api(401)), 4);
        assert_eq!(exit_code(&api(403)), 4);
        assert_eq!(exit_code(&api(503)), 5);
        assert_eq!(exit_code(&api(409)), 6);
        assert_eq!(exit_code(&api(400)), 1);
        assert_eq!(exit_code(&anyhow!("other")), 1);
        let bad_name = ScopePath::parse("../x").unwrap_err();
        assert_eq!(exit_code(&anyhow::Error::new(bad_name)), 2);
        assert_eq!(exit_code(&anyhow::Error::new(UsageError("x".into()))), 2);
        let denied = anyhow::Error::new(PolicyDenied("no binding at acme".into()));
        assert_eq!(denied.to_string(), "no binding at acme");
        assert_eq!(exit_code(&denied), 4);
        assert_eq!(exit_code(&denied.context("policy check")), 4);
    }
}
