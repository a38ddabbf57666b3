//! `warden ssh-key`: your SSH public keys (add, list, remove), which the
//! gateway authenticates with.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use hyper::Method as M;
use serde_json::json;
use warden_api::{SshKeyInfo, SshKeyList};

use crate::ctx::Ctx;
use crate::error::usage;
use crate::input::read_text;
use crate::output;

/// Largest SSH public key file `ssh-key add` reads.
const MAX_SSH_KEY_BYTES: u64 = 16 * 1024;

/// `warden ssh-key`.
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

/// Checks a key fingerprint, `SHA256:...`.
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

/// Runs an SSH key command.
pub(crate) async fn run(ctx: &Ctx, c: SshKeyCmd) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    #[test]
    fn bad_fingerprints_are_usage_errors() {
        let code = |r: anyhow::Result<()>| r.err().map(|e| exit_code(&e));
        assert_eq!(code(fingerprint_arg("SHA256:ab+/c").map(drop)), None);
        assert_eq!(code(fingerprint_arg("MD5:ab").map(drop)), Some(2));
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
}
