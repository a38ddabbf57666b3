//! What you do to your own identity: `warden whoami`, `login`, `passwd`
//! and `mfa` (the `auth/*` routes).

use clap::Subcommand;
use hyper::Method as M;
use serde_json::json;
use warden_api::{MfaEnrollment, TokenCreated, UserInfo, WhoAmI};

use crate::client_config::{self, ClientConfig};
use crate::ctx::Ctx;
use crate::error::usage;
use crate::input::{new_password, principal_arg, read_hidden};
use crate::output;

/// Your own identity (flattened into the top-level grammar).
#[derive(Debug, Subcommand)]
pub(crate) enum AuthCmd {
    /// Show who the current token belongs to and its role bindings.
    Whoami,
    /// Log in with a password; saves a 12-hour session token to the client
    /// configuration.
    Login {
        /// User name (without `user:`): NAME, or NAME@ORG for a member of
        /// an organization.
        user: String,
        /// Current TOTP code (required once MFA is enrolled).
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
    },
    /// Change your password: asks for the current one (empty if you have
    /// none), then the new one twice on a terminal (else one line of stdin
    /// each). Your other login sessions end.
    Passwd,
    /// Two-factor authentication (TOTP).
    #[command(subcommand)]
    Mfa(MfaCmd),
}

impl AuthCmd {
    /// Whether the command runs without a token (login).
    pub(crate) fn anonymous(&self) -> bool {
        matches!(self, Self::Login { .. })
    }
}

/// `warden mfa`.
#[derive(Debug, Subcommand)]
pub(crate) enum MfaCmd {
    /// Start TOTP enrollment: asks for your current password (empty if you
    /// have none), then prints the secret for your authenticator app.
    Enroll,
    /// Finish enrollment with the app's current code.
    Confirm {
        /// The current six-digit code.
        code: String,
    },
}

/// Checks a TOTP code (spaces are dropped) and returns its digits.
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

/// Runs a command about your own identity.
pub(crate) async fn run(ctx: &Ctx, command: AuthCmd) -> anyhow::Result<()> {
    match command {
        AuthCmd::Whoami => {
            let (w, raw): (WhoAmI, _) = ctx.call(M::GET, "/api/v1/auth/whoami", None).await?;
            ctx.print(&raw, || output::whoami(&w))
        }
        AuthCmd::Login { user, totp } => login(ctx, &user, totp.as_deref()).await,
        AuthCmd::Passwd => {
            let current = read_hidden("Current password (empty if you have none): ")?;
            let p = new_password("New password (12+ characters): ")?;
            let mut body = json!({"password": p.as_str()});
            if !current.is_empty() {
                body["current_password"] = json!(current.as_str());
            }
            ctx.call_empty(M::PUT, "/api/v1/auth/password", Some(body))
                .await?;
            ctx.print(&json!({"password_changed": true}), || {
                println!("password changed")
            })
        }
        AuthCmd::Mfa(c) => mfa(ctx, c).await,
    }
}

async fn login(ctx: &Ctx, user: &str, totp: Option<&str>) -> anyhow::Result<()> {
    let user = user.strip_prefix("user:").unwrap_or(user);
    principal_arg(&format!("user:{user}")).map_err(usage)?;
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
            let current = read_hidden("Current password (empty if you have none): ")?;
            let body = if current.is_empty() {
                json!({})
            } else {
                json!({"current_password": current.as_str()})
            };
            let (e, raw): (MfaEnrollment, _) = ctx
                .call(M::POST, "/api/v1/auth/mfa/enroll", Some(body))
                .await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    #[test]
    fn bad_totp_codes_are_usage_errors() {
        let code = |r: anyhow::Result<()>| r.err().map(|e| exit_code(&e));
        assert_eq!(code(totp_arg("123 456").map(drop)), None);
        assert_eq!(code(totp_arg("12a456").map(drop)), Some(2));
    }
}
