//! Identity commands: who am I, login, passwords and MFA, users and service
//! accounts, tokens, SSH keys, roles, bindings and policy checks.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use hyper::Method as M;
use serde_json::{Value, json};
use warden_api::*;
use warden_types::{NameError, ScopeKind, ScopePath};

use crate::client_config::{self, ClientConfig};
use crate::ctx::Ctx;
use crate::error::{PolicyDenied, usage};
use crate::input::{
    name_arg, new_password, parse_duration, principal_arg, read_hidden, read_text, scope_path,
};
use crate::output;

/// Largest SSH public key file `ssh-key add` reads.
const MAX_SSH_KEY_BYTES: u64 = 16 * 1024;
/// Largest role file `role apply` sends (the server's limit too).
const MAX_ROLE_BYTES: u64 = 64 * 1024;

/// The identity commands (flattened into the top-level grammar).
#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCmd {
    /// Show who the current token belongs to and its role bindings.
    Whoami,
    /// Log in with a password; saves a 12-hour session token to the client
    /// configuration.
    Login {
        /// User name (without `user:`).
        user: String,
        /// Current TOTP code (required once MFA is enrolled).
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
    },
    /// Change your password (asked twice on a terminal, else one line of
    /// stdin).
    Passwd,
    /// Two-factor authentication (TOTP).
    #[command(subcommand)]
    Mfa(MfaCmd),
    /// Users and service accounts.
    #[command(subcommand)]
    User(UserCmd),
    /// API and workload tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Your SSH public keys.
    #[command(subcommand)]
    SshKey(SshKeyCmd),
    /// Custom roles of an organization (and the built-in ones).
    #[command(subcommand)]
    Role(RoleCmd),
    /// Bind a role to a principal at a scope.
    Grant(BindingArgs),
    /// Remove a role binding.
    Revoke(BindingArgs),
    /// Role bindings.
    #[command(subcommand)]
    Binding(BindingCmd),
    /// Ask the policy engine.
    #[command(subcommand)]
    Policy(PolicyCmd),
}

impl IdentityCmd {
    /// Whether the command runs without a token (login).
    pub(crate) fn anonymous(&self) -> bool {
        matches!(self, Self::Login { .. })
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum MfaCmd {
    /// Start TOTP enrollment: prints the secret for your authenticator app.
    Enroll,
    /// Finish enrollment with the app's current code.
    Confirm {
        /// The current six-digit code.
        code: String,
    },
}

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

#[derive(Debug, Subcommand)]
pub(crate) enum SshKeyCmd {
    /// Add a public key, e.g. ~/.ssh/id_ed25519.pub (`-` reads stdin).
    Add {
        /// The `.pub` file, or `-`.
        file: PathBuf,
    },
    /// List your keys.
    List,
    /// Remove a key.
    Remove {
        /// `SHA256:...` (see `warden ssh-key list`).
        fingerprint: String,
    },
}

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

/// PRINCIPAL ROLE SCOPE.
#[derive(Debug, Args)]
pub(crate) struct BindingArgs {
    /// `user:NAME`, `sa:NAME`, or a bare user name.
    #[arg(value_parser = principal_arg)]
    principal: String,
    /// Role name (built in: owner, admin, developer, viewer).
    role: String,
    /// `/`, ORG, ORG/PROJECT or ORG/PROJECT/ENV (and everything below).
    scope: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BindingCmd {
    /// List role bindings.
    List {
        /// Only those in this organization.
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCmd {
    /// Would PRINCIPAL be allowed ACTION on PATH? Exit code 0 allow, 4 deny.
    Check {
        /// `user:NAME`, `sa:NAME`, or a bare user name.
        #[arg(value_parser = principal_arg)]
        principal: String,
        /// `resource.verb`, e.g. secret.read.
        action: String,
        /// `/` or ORG[/PROJECT[/ENV[/SERVICE]]].
        path: String,
    },
}

/// Checks a binding scope: `/`, ORG, ORG/PROJECT or ORG/PROJECT/ENV.
fn binding_scope(s: &str) -> anyhow::Result<String> {
    if s == "/" {
        return Ok(s.to_owned());
    }
    let p = scope_path(s, None)?;
    if p.kind() == ScopeKind::Service {
        return Err(NameError::Depth {
            path: s.chars().take(64).collect(),
            expected: "/, ORG, ORG/PROJECT or ORG/PROJECT/ENV",
        }
        .into());
    }
    Ok(p.to_string())
}

/// Checks a policy-check path: `/` or a scope path.
fn resource_path(s: &str) -> anyhow::Result<String> {
    if s == "/" {
        return Ok(s.to_owned());
    }
    Ok(scope_path(s, None)?.to_string())
}

/// Checks the shape of an action, `resource.verb` (the server knows the
/// list).
fn action_arg(s: &str) -> anyhow::Result<&str> {
    let ok = s.len() <= 64
        && s.split_once('.')
            .is_some_and(|(r, v)| !r.is_empty() && !v.is_empty())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c));
    if ok {
        Ok(s)
    } else {
        Err(usage(format!(
            "invalid action {:?}: actions are resource.verb, e.g. secret.read",
            s.chars().take(64).collect::<String>()
        )))
    }
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

fn fingerprint_arg(s: &str) -> anyhow::Result<&str> {
    let ok = s.len() <= 64
        && s.strip_prefix("SHA256:").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
        });
    if ok {
        Ok(s)
    } else {
        Err(usage(
            "fingerprints look like SHA256:... (see `warden ssh-key list`)",
        ))
    }
}

fn totp_arg(s: &str) -> anyhow::Result<String> {
    let code: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if (6..=10).contains(&code.len()) && code.bytes().all(|c| c.is_ascii_digit()) {
        Ok(code)
    } else {
        Err(usage(
            "a TOTP code is the digits your authenticator app shows, e.g. 123456",
        ))
    }
}

/// The one public key line of an `authorized_keys`-style file.
fn ssh_key_line(text: &str) -> anyhow::Result<String> {
    if text.trim_start().starts_with("-----BEGIN") {
        return Err(usage(
            "that looks like a private key: give the public key (the .pub file)",
        ));
    }
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    match (lines.next(), lines.next()) {
        (Some(line), None) => Ok(line.to_owned()),
        (None, _) => Err(usage("no public key found")),
        (Some(_), Some(_)) => Err(usage("more than one key found: add them one at a time")),
    }
}

/// `Ok` for an allow; a [`PolicyDenied`] (exit code 4) for a deny.
fn decision_result(d: &PolicyDecision) -> anyhow::Result<()> {
    if d.allowed {
        Ok(())
    } else {
        Err(PolicyDenied(d.explanation.clone()).into())
    }
}

/// Runs an identity command.
pub(crate) async fn run(ctx: &Ctx, command: IdentityCmd) -> anyhow::Result<()> {
    match command {
        IdentityCmd::Whoami => {
            let (w, raw): (WhoAmI, _) = ctx.call(M::GET, "/api/v1/auth/whoami", None).await?;
            ctx.print(&raw, || output::whoami(&w))
        }
        IdentityCmd::Login { user, totp } => login(ctx, &user, totp.as_deref()).await,
        IdentityCmd::Passwd => {
            let p = new_password("New password (12+ characters): ")?;
            ctx.call_empty(
                M::PUT,
                "/api/v1/auth/password",
                Some(json!({"password": p.as_str()})),
            )
            .await?;
            ctx.print(&json!({"password_changed": true}), || {
                println!("password changed")
            })
        }
        IdentityCmd::Mfa(c) => mfa(ctx, c).await,
        IdentityCmd::User(c) => user(ctx, c).await,
        IdentityCmd::Token(c) => token(ctx, c).await,
        IdentityCmd::SshKey(c) => ssh_key(ctx, c).await,
        IdentityCmd::Role(c) => role(ctx, c).await,
        IdentityCmd::Grant(b) => {
            let body = binding_body(&b)?;
            let (g, raw): (BindingInfo, _) =
                ctx.call(M::POST, "/api/v1/bindings", Some(body)).await?;
            ctx.print(&raw, || {
                println!("granted {} to {} at {}", g.role, g.principal, g.scope)
            })
        }
        IdentityCmd::Revoke(b) => {
            let body = binding_body(&b)?;
            ctx.call_empty(M::POST, "/api/v1/bindings/revoke", Some(body.clone()))
                .await?;
            ctx.print(&json!({"revoked": body}), || {
                println!("revoked {} from {} at {}", b.role, b.principal, b.scope)
            })
        }
        IdentityCmd::Binding(BindingCmd::List { org }) => {
            let url = match org {
                Some(o) => format!(
                    "/api/v1/bindings?org={}",
                    scope_path(&o, Some(ScopeKind::Organization))?
                ),
                None => "/api/v1/bindings".to_owned(),
            };
            let (list, raw): (BindingList, _) = ctx.call(M::GET, &url, None).await?;
            ctx.print(&raw, || output::bindings(&list.bindings))
        }
        IdentityCmd::Policy(PolicyCmd::Check {
            principal,
            action,
            path,
        }) => {
            let body = json!({
                "principal": principal,
                "action": action_arg(&action)?,
                "path": resource_path(&path)?,
            });
            let (d, raw): (PolicyDecision, _) = ctx
                .call(M::POST, "/api/v1/policy/check", Some(body))
                .await?;
            ctx.print(&raw, || output::policy_decision(&d))?;
            decision_result(&d)
        }
    }
}

fn binding_body(b: &BindingArgs) -> anyhow::Result<Value> {
    name_arg(&b.role)?;
    let scope = binding_scope(&b.scope)?;
    Ok(json!({"principal": b.principal, "role": b.role, "scope": scope}))
}

async fn login(ctx: &Ctx, user: &str, totp: Option<&str>) -> anyhow::Result<()> {
    let user = user.strip_prefix("user:").unwrap_or(user);
    name_arg(user)?;
    let totp = totp.map(totp_arg).transpose()?;
    let password = read_hidden(&format!("Password for {user}: "))?;
    let body = json!({"user": user, "password": password.as_str(), "totp": totp});
    let (created, raw): (TokenCreated, _) =
        ctx.call(M::POST, "/api/v1/auth/login", Some(body)).await?;
    drop(password);

    // The token belongs to the server it came from: save it with that
    // server and CA, so it is never sent anywhere else.
    let moved = client_config::load()?
        .server
        .is_some_and(|saved| saved != ctx.server);
    let ca_cert = std::fs::canonicalize(&ctx.ca_cert).unwrap_or_else(|_| ctx.ca_cert.clone());
    let saved = client_config::save(&ClientConfig {
        server: Some(ctx.server.clone()),
        ca_cert: Some(ca_cert),
        token: Some(created.token.0.expose().to_owned()),
    })?;

    let mut shown = raw;
    if let Some(o) = shown.as_object_mut() {
        o.remove("token");
        o.insert("saved_to".into(), json!(saved.display().to_string()));
    }
    ctx.print(&shown, || {
        println!(
            "logged in as {}{}; session expires {}",
            created.info.principal,
            if created.info.mfa { " (with MFA)" } else { "" },
            output::time_or(created.info.expires_at, "never"),
        );
        println!("session token saved to {}", saved.display());
        if moved {
            println!("the client configuration now points at {}", ctx.server);
        }
    })?;
    if ctx.token_given {
        eprintln!(
            "note: --token or WARDEN_TOKEN is set and takes precedence over the saved session; unset it to use the session"
        );
    }
    Ok(())
}

async fn mfa(ctx: &Ctx, c: MfaCmd) -> anyhow::Result<()> {
    match c {
        MfaCmd::Enroll => {
            let (e, raw): (MfaEnrollment, _) =
                ctx.call(M::POST, "/api/v1/auth/mfa/enroll", None).await?;
            ctx.print(&raw, || {
                println!("TOTP secret (base32): {}", e.secret.0.expose());
                println!("otpauth URI:          {}", e.otpauth_uri.0.expose());
                println!(
                    "Add it to your authenticator app (type the secret, or turn the URI into a QR code),\n\
                     then run `warden mfa confirm CODE` with the code it shows to turn MFA on."
                );
            })
        }
        MfaCmd::Confirm { code } => {
            let code = totp_arg(&code)?;
            let (u, raw): (UserInfo, _) = ctx
                .call(
                    M::POST,
                    "/api/v1/auth/mfa/confirm",
                    Some(json!({"code": code})),
                )
                .await?;
            ctx.print(&raw, || {
                println!(
                    "MFA {} for {}; log in with `warden login {} --totp CODE` for an MFA session",
                    if u.mfa_enabled {
                        "enabled"
                    } else {
                        "not enabled"
                    },
                    u.id,
                    u.id.trim_start_matches("user:"),
                )
            })
        }
    }
}

async fn user(ctx: &Ctx, c: UserCmd) -> anyhow::Result<()> {
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

async fn token(ctx: &Ctx, c: TokenCmd) -> anyhow::Result<()> {
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

async fn ssh_key(ctx: &Ctx, c: SshKeyCmd) -> anyhow::Result<()> {
    match c {
        SshKeyCmd::Add { file } => {
            let line = ssh_key_line(&read_text(&file, MAX_SSH_KEY_BYTES, "key file")?)
                .with_context(|| format!("reading {}", file.display()))?;
            let (k, raw): (SshKeyInfo, _) = ctx
                .call(
                    M::POST,
                    "/api/v1/ssh-keys",
                    Some(json!({"public_key": line})),
                )
                .await?;
            ctx.print(&raw, || {
                println!("added {} key {} {}", k.algorithm, k.fingerprint, k.comment)
            })
        }
        SshKeyCmd::List => {
            let (list, raw): (SshKeyList, _) = ctx.call(M::GET, "/api/v1/ssh-keys", None).await?;
            ctx.print(&raw, || output::ssh_keys(&list))
        }
        SshKeyCmd::Remove { fingerprint } => {
            let fingerprint = fingerprint_arg(&fingerprint)?;
            ctx.call_empty(
                M::POST,
                "/api/v1/ssh-keys/remove",
                Some(json!({"fingerprint": fingerprint})),
            )
            .await?;
            ctx.print(&json!({"removed": fingerprint}), || {
                println!("removed SSH key {fingerprint}")
            })
        }
    }
}

async fn role(ctx: &Ctx, c: RoleCmd) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;
    use crate::error::exit_code;

    #[test]
    fn the_shorthand_and_durations_apply_on_the_command_line() {
        let Ok(cli) = Cli::try_parse_from(["warden", "grant", "bob", "viewer", "acme"]) else {
            panic!("grant did not parse");
        };
        assert!(format!("{cli:?}").contains("\"user:bob\""));
        let Ok(cli) =
            Cli::try_parse_from(["warden", "token", "create", "--name", "ci", "--ttl", "2h"])
        else {
            panic!("token create did not parse");
        };
        assert!(format!("{cli:?}").contains("ttl: Some(7200)"));
        let bad = Cli::try_parse_from(["warden", "token", "create", "--name", "ci", "--ttl", "2x"]);
        assert!(bad.is_err_and(|e| e.exit_code() == 2));
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        let code = |r: anyhow::Result<()>| r.err().map(|e| exit_code(&e));
        assert_eq!(code(binding_scope("/").map(drop)), None);
        assert_eq!(code(binding_scope("acme/web/prod").map(drop)), None);
        assert_eq!(code(binding_scope("acme/web/prod/api").map(drop)), Some(2));
        assert_eq!(code(binding_scope("Acme").map(drop)), Some(2));
        assert_eq!(code(resource_path("acme/web/prod/api").map(drop)), None);
        assert_eq!(code(name_arg("a/b").map_err(Into::into)), Some(2));
        assert_eq!(code(action_arg("secret.read").map(drop)), None);
        assert_eq!(code(action_arg("read").map(drop)), Some(2));
        assert_eq!(code(token_id("tok_0123abcd").map(drop)), None);
        assert_eq!(code(token_id("tok_../x").map(drop)), Some(2));
        assert_eq!(code(fingerprint_arg("SHA256:ab+/c").map(drop)), None);
        assert_eq!(code(fingerprint_arg("MD5:ab").map(drop)), Some(2));
        assert_eq!(code(totp_arg("123 456").map(drop)), None);
        assert_eq!(code(totp_arg("12a456").map(drop)), Some(2));
        assert_eq!(code(account_arg("workload:a/b/c/d").map(drop)), Some(2));
    }

    #[test]
    fn ssh_key_files_hold_one_public_key() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB alice@laptop";
        assert_eq!(
            ssh_key_line(&format!("# mine\n{key}\n\n")).ok().as_deref(),
            Some(key)
        );
        assert!(ssh_key_line("").is_err());
        assert!(ssh_key_line(&format!("{key}\n{key}\n")).is_err());
        assert!(ssh_key_line("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n").is_err());
    }

    #[test]
    fn a_deny_exits_with_4_and_the_explanation() {
        let mut d = PolicyDecision {
            allowed: true,
            principal: "user:bob".into(),
            action: "secret.read".into(),
            path: "acme/web/prod".into(),
            mode: Some("production".into()),
            role: Some("viewer".into()),
            binding: Some("acme".into()),
            rule: Some(1),
            explanation: "allowed by viewer at acme".into(),
        };
        assert!(decision_result(&d).is_ok());
        d.allowed = false;
        d.explanation = "user:bob holds no binding at acme/web/prod".into();
        let err = decision_result(&d).unwrap_err();
        assert_eq!(exit_code(&err), 4);
        assert_eq!(
            err.to_string(),
            "user:bob holds no binding at acme/web/prod"
        );
    }
}
