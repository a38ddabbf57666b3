//! `warden secret`: write, read, list, history, delete/undelete/destroy
//! versions, and resolve a service's effective secrets.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use warden_api::{
    History, PutResponse, Resolved, SecretHolders, SecretList, SecretResponse, VersionsChanged,
};
use warden_types::{ScopeKind, SecretName};
use zeroize::Zeroizing;

use crate::ctx::{Ctx, Output};
use crate::input::scope_path;
use crate::output;

/// `warden secret`.
#[derive(Debug, Subcommand)]
pub(crate) enum SecretCmd {
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
    /// Which pods hold which version of a secret right now (pods whose
    /// wrapper watches its service: `warden-injector --watch`).
    Holders {
        /// Scope path (where the secret is set).
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

/// SCOPE KEY [--version N]...
#[derive(Debug, Args)]
pub(crate) struct VersionArgs {
    /// Scope path.
    scope: String,
    /// Secret name.
    key: String,
    /// Versions (repeatable; default: latest).
    #[arg(long = "version")]
    versions: Vec<i64>,
}

/// How `secret resolve` prints.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ResolveFormat {
    Env,
    Dotenv,
    Json,
}

fn key_name(s: &str) -> anyhow::Result<SecretName> {
    Ok(SecretName::parse(s)?)
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

/// Runs a secret command.
pub(crate) async fn run(ctx: &Ctx, c: SecretCmd) -> anyhow::Result<()> {
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
        SecretCmd::Holders { scope, key } => {
            let scope = scope_path(&scope, None)?;
            let key = key_name(&key)?;
            let (h, raw): (SecretHolders, _) = ctx
                .call(
                    M::GET,
                    &format!("/api/v1/secret-holders/{scope}?name={key}"),
                    None,
                )
                .await?;
            ctx.print(&raw, || output::holders(&h))
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
            match (ctx.output(), format) {
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
