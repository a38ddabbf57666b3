//! The shell gateway's client-side commands: `warden gateway status`
//! (where SSH listens, and the host key's fingerprint to check on the
//! first connection); `warden session list|show|kill`; and `warden
//! kubeconfig ORG/PROJECT/ENV`: a kubeconfig for stock `kubectl exec`
//! against Warden's Kubernetes API surface for that environment, and
//! `warden kube-credential`, the exec credential plugin it names
//! (client.authentication.k8s.io/v1 `ExecCredential`): each kubectl command
//! gets a token of its own that lives 15 minutes, so the kubeconfig holds
//! no long-lived secret.

use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use clap::Args;
use serde_json::{Value, json};
use warden_types::{ScopeKind, ScopePath};

use crate::ctx::Ctx;
use crate::output::rfc3339;

/// Lifetime of the token the plugin hands kubectl.
const KUBECTL_TOKEN_TTL_SECS: u64 = 15 * 60;

/// The flags of `warden kubeconfig`.
#[derive(Debug, Args)]
pub(crate) struct KubeconfigArgs {
    /// The environment: ORG/PROJECT/ENV (its namespace is ENV).
    environment: String,
    /// Write it here (mode 0600) instead of to stdout.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Its credentials are MFA sessions: the plugin asks for your TOTP
    /// code on the terminal (once per 15 minutes) and exchanges it for a
    /// 15-minute MFA token, for roles that allow shells only with MFA.
    #[arg(long)]
    mfa: bool,
}

/// The flags of `warden kube-credential` (run by kubectl, not by hand).
#[derive(Debug, Args)]
pub(crate) struct KubeCredentialArgs {
    /// Hand out an MFA session token (asking for the TOTP code when the
    /// cached one has run out).
    #[arg(long)]
    mfa: bool,
}

pub(crate) async fn kubeconfig(ctx: &Ctx, args: KubeconfigArgs) -> anyhow::Result<()> {
    let env = ScopePath::parse_kind(&args.environment, ScopeKind::Environment)?;
    let namespace = env.segments().last().unwrap_or_default().to_owned();
    let ca = std::fs::read(&ctx.ca_cert)
        .with_context(|| format!("reading the CA certificate {}", ctx.ca_cert.display()))?;
    let warden = std::env::current_exe().context("locating the warden binary")?;
    let name = format!("warden-{}", env.as_str().replace('/', "-"));
    let mut plugin_args = vec![
        "--server".to_owned(),
        ctx.server.clone(),
        "--ca-cert".to_owned(),
        ctx.ca_cert.display().to_string(),
        "kube-credential".to_owned(),
    ];
    if args.mfa {
        plugin_args.push("--mfa".to_owned());
    }
    let mut plugin = json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": warden.display().to_string(),
        "args": plugin_args,
        // With --mfa the plugin asks for a code on the terminal.
        "interactiveMode": if args.mfa { "IfAvailable" } else { "Never" },
        "provideClusterInfo": false,
    });
    if let Some(config) = std::env::var_os("WARDEN_CONFIG") {
        plugin["env"] = json!([{"name": "WARDEN_CONFIG", "value": config.to_string_lossy()}]);
    }
    // JSON is YAML: kubectl reads it as it is.
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": format!("{}/kubernetes/{}", ctx.server.trim_end_matches('/'), env.as_str()),
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(&ca),
        }}],
        "users": [{"name": name, "user": {"exec": plugin}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
        "current-context": name,
    });
    let text = serde_json::to_string_pretty(&config)? + "\n";
    match args.file {
        Some(path) => {
            crate::client_config::write_private(&path, text.as_bytes())?;
            eprintln!("wrote {} (use it with KUBECONFIG={0})", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// `warden kube-credential`: prints an `ExecCredential` holding a new
/// token of the caller's that expires in 15 minutes.
pub(crate) async fn credential(ctx: &Ctx, args: KubeCredentialArgs) -> anyhow::Result<()> {
    let (token, expires_at) = if args.mfa {
        mfa_token(ctx).await?
    } else {
        let (_, created): (Value, Value) = ctx
            .call(
                hyper::Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": "kubectl", "ttl_seconds": KUBECTL_TOKEN_TTL_SECS})),
            )
            .await?;
        token_of(&created)?
    };
    let mut status = json!({ "token": token.as_str() });
    if let Some(at) = expires_at {
        status["expirationTimestamp"] = json!(rfc3339(at));
    }
    println!(
        "{}",
        json!({
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "status": status,
        })
    );
    Ok(())
}

/// A new token and its expiry from a `TokenCreated` answer.
fn token_of(created: &Value) -> anyhow::Result<(zeroize::Zeroizing<String>, Option<i64>)> {
    let token = created["token"]
        .as_str()
        .context("the server's answer holds no token")?;
    Ok((
        zeroize::Zeroizing::new(token.to_owned()),
        created["info"]["expires_at"].as_i64(),
    ))
}

/// Longest life of a cached MFA token (the server's step-up lifetime).
const MFA_TOKEN_MS: i64 = 15 * 60 * 1000;

/// An MFA session token for kubectl: the cached one while it has more than
/// a minute left, else a new one for a TOTP code read from the terminal
/// (`POST /api/v1/auth/mfa/step-up`), cached for the next commands.
async fn mfa_token(ctx: &Ctx) -> anyhow::Result<(zeroize::Zeroizing<String>, Option<i64>)> {
    let cache = MfaCache::for_credential(&ctx.server, ctx.client().token().unwrap_or(""))?;
    if let Some(found) = cache.read() {
        return Ok(found);
    }
    // Never from a pipe: kubectl runs the plugin once per request, and
    // each empty or stale code would count against the account.
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        anyhow::bail!(
            "this kubeconfig asks for MFA sessions: run kubectl on a terminal, where the \
             credential plugin asks for your TOTP code (once per 15 minutes)"
        );
    }
    let code = crate::input::read_hidden("Warden TOTP code: ")?;
    if code.trim().is_empty() {
        anyhow::bail!("no TOTP code given");
    }
    let (_, created): (Value, Value) = ctx
        .call(
            hyper::Method::POST,
            "/api/v1/auth/mfa/step-up",
            Some(json!({ "code": code.trim() })),
        )
        .await?;
    let (token, at) = token_of(&created)?;
    cache.write(&token, at);
    Ok((token, at))
}

/// Where an MFA token is cached: `$XDG_CACHE_HOME/warden/` (0700, the
/// user's own), one file per server and source credential, so another
/// login on the same machine never gets this one's MFA session.
struct MfaCache(PathBuf);

impl MfaCache {
    fn for_credential(server: &str, token: &str) -> anyhow::Result<Self> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .context("no cache directory (set XDG_CACHE_HOME or HOME)")?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(server.as_bytes());
        ctx.update(b"\n");
        ctx.update(token.as_bytes());
        let name = format!(
            "kube-mfa-{}.json",
            hex::encode(&ctx.finish().as_ref()[..12])
        );
        Ok(Self(base.join("warden").join(name)))
    }

    /// Whether `path` is ours alone (owned by this user, no access for
    /// others), not a symbolic link.
    fn private(path: &std::path::Path) -> bool {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        std::fs::symlink_metadata(path).is_ok_and(|m| {
            !m.file_type().is_symlink()
                && m.uid() == rustix::process::geteuid().as_raw()
                && m.permissions().mode() & 0o077 == 0
        })
    }

    /// The cached token, if it is ours, unexpired for another minute, and
    /// no longer-lived than a step-up token can be.
    fn read(&self) -> Option<(zeroize::Zeroizing<String>, Option<i64>)> {
        let dir = self.0.parent()?;
        if !Self::private(dir) || !Self::private(&self.0) {
            return None;
        }
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(&self.0).ok()?);
        let cached: Value = serde_json::from_str(&text).ok()?;
        let (token, at) = (cached["token"].as_str()?, cached["expires_at"].as_i64()?);
        let now = crate::output::now_ms();
        (at > now + 60_000 && at <= now + MFA_TOKEN_MS + 60_000)
            .then(|| (zeroize::Zeroizing::new(token.to_owned()), Some(at)))
    }

    /// Caches a token, best effort: written aside, then renamed over the
    /// entry (a symbolic link there is replaced, never followed), in a
    /// directory that is the user's alone (else nothing is cached).
    fn write(&self, token: &str, expires_at: Option<i64>) {
        use std::os::unix::fs::PermissionsExt;
        let (Some(dir), Some(at)) = (self.0.parent(), expires_at) else {
            return;
        };
        if std::fs::create_dir_all(dir).is_err()
            || std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).is_err()
            || !Self::private(dir)
        {
            return;
        }
        let record = zeroize::Zeroizing::new(json!({"token": token, "expires_at": at}).to_string());
        let aside = self.0.with_extension(format!("{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&aside);
        if crate::client_config::write_private(&aside, record.as_bytes()).is_err()
            || std::fs::rename(&aside, &self.0).is_err()
        {
            let _ = std::fs::remove_file(&aside);
        }
    }
}

/// `warden gateway`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum GatewayCmd {
    /// Where the SSH gateway listens and its host key's fingerprint (check
    /// it against what `ssh` shows on the first connection).
    Status,
}

pub(crate) async fn gateway(ctx: &Ctx, cmd: GatewayCmd) -> anyhow::Result<()> {
    match cmd {
        GatewayCmd::Status => {
            let (status, raw): (warden_api::GatewayStatus, _) = ctx
                .call(hyper::Method::GET, "/api/v1/sys/gateway", None)
                .await?;
            ctx.print(&raw, || {
                println!(
                    "ssh:       {}",
                    status.ssh_address.as_deref().unwrap_or("not listening")
                );
                println!(
                    "host key:  {}",
                    status
                        .ssh_host_key_fingerprint
                        .as_deref()
                        .unwrap_or("unknown until the vault is unsealed")
                );
            })
        }
    }
}

/// `warden session`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SessionCmd {
    /// An organization's shell sessions, newest first (needs audit.read).
    List {
        /// The organization.
        org: String,
        /// Only those still running.
        #[arg(long)]
        live: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// One session.
    Show {
        /// Its id (from `session list`, or its audit entries).
        id: String,
    },
    /// End a live session; its user is told who ended it (needs
    /// session.manage on its service).
    Kill {
        /// Its id.
        id: String,
    },
    /// Replay an ended session's recording in this terminal, once it is
    /// checked against its audit outcome (needs session.watch).
    Play {
        /// Its id.
        id: String,
        /// Play this many times as fast.
        #[arg(long, default_value = "1", value_parser = crate::recording::speed_arg)]
        speed: f64,
        /// Cut pauses longer than this many seconds to it (0: keep them).
        #[arg(long, default_value = "2", value_parser = crate::recording::idle_arg)]
        idle_limit: f64,
    },
    /// Follow a session read-only, from its start, as it is recorded (a
    /// chunk, at most 2 s, behind its user), until it ends (needs
    /// session.watch).
    Join {
        /// Its id.
        id: String,
    },
    /// Write an ended session's recording as a plain asciicast v2 file
    /// (`asciinema play FILE`) and FILE.proof.json, which `warden audit
    /// verify --recording FILE` checks offline (needs session.watch, and
    /// audit.read for the proof).
    Export {
        /// Its id.
        id: String,
        /// The file (default ID.cast).
        #[arg(short, long, value_name = "FILE")]
        file: Option<std::path::PathBuf>,
    },
}

fn session_line(s: &warden_api::SessionInfo) {
    println!(
        "{:<24}  {:<7}  {:<16}  {:<28}  {:<24}  {}",
        s.id,
        if s.ended_at_ms.is_none() {
            "live"
        } else {
            "ended"
        },
        s.transport,
        crate::output::printable(&s.principal),
        crate::output::printable(&format!("{}/{}", s.service, s.pod)),
        crate::output::time_or(Some(s.started_at_ms), "-"),
    );
}

pub(crate) async fn session(ctx: &Ctx, cmd: SessionCmd) -> anyhow::Result<()> {
    use hyper::Method as M;
    match cmd {
        SessionCmd::List { org, live, limit } => {
            let org = ScopePath::parse_kind(&org, ScopeKind::Organization)?;
            let path = format!("/api/v1/sessions/{org}?live={live}&limit={limit}");
            let (list, raw): (warden_api::SessionList, _) = ctx.call(M::GET, &path, None).await?;
            ctx.print(&raw, || {
                println!(
                    "{:<24}  {:<7}  {:<16}  {:<28}  {:<24}  STARTED",
                    "ID", "STATE", "TRANSPORT", "WHO", "POD"
                );
                list.sessions.iter().for_each(session_line);
            })
        }
        SessionCmd::Show { id } => {
            let (s, raw): (warden_api::SessionInfo, _) = ctx
                .call(
                    M::GET,
                    &format!("/api/v1/session/{}", session_id(&id)?),
                    None,
                )
                .await?;
            ctx.print(&raw, || {
                session_line(&s);
                if let Some(end) = s.ended_at_ms {
                    println!(
                        "ended {} ({}{}){}",
                        crate::output::time_or(Some(end), "-"),
                        s.status.as_deref().unwrap_or("?"),
                        s.exit_status
                            .map(|c| format!(", exit {c}"))
                            .unwrap_or_default(),
                        s.killed_by
                            .as_deref()
                            .map(|b| format!(", ended by {}", crate::output::printable(b)))
                            .unwrap_or_default()
                    );
                }
            })
        }
        SessionCmd::Play {
            id,
            speed,
            idle_limit,
        } => crate::recording::play(ctx, session_id(&id)?, speed, idle_limit).await,
        SessionCmd::Join { id } => crate::recording::join(ctx, session_id(&id)?).await,
        SessionCmd::Export { id, file } => {
            crate::recording::export(ctx, session_id(&id)?, file).await
        }
        SessionCmd::Kill { id } => {
            ctx.call_empty(
                M::POST,
                &format!("/api/v1/session/{}/kill", session_id(&id)?),
                None,
            )
            .await?;
            println!("asked session {id} to end (its replica ends it within a second)");
            Ok(())
        }
    }
}

/// A session id as the server makes them.
fn session_id(id: &str) -> anyhow::Result<&str> {
    if id.len() == 24 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(id)
    } else {
        Err(crate::error::usage(
            "a session id is 24 lowercase hex digits",
        ))
    }
}
