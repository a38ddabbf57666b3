//! Kubernetes workload identity: `warden cluster issuer set|show` (a
//! cluster's service-account issuer and keys) and `warden workload
//! sa-bind|sa-unbind|sa-bindings` (which of its service accounts may
//! exchange their tokens for which service's workload token).

use std::path::PathBuf;

use clap::Subcommand;
use hyper::Method as M;
use serde_json::json;
use warden_api::{IssuerInfo, SaBindingInfo, SaBindingList};
use warden_types::ScopeKind;

use crate::ctx::Ctx;
use crate::error::usage;
use crate::input::{read_text, scope_path};
use crate::output;

/// Largest JWKS file read (the server takes at most 64 KiB once
/// re-serialized; a pretty-printed file may be larger).
const JWKS_FILE_LIMIT: u64 = 128 * 1024;

/// `warden cluster issuer`.
#[derive(Debug, Subcommand)]
pub(crate) enum IssuerCmd {
    /// Set the service-account issuer of a Kubernetes cluster: the tokens of
    /// its pods verify against these keys.
    Set {
        /// The cluster.
        cluster: String,
        /// The API server's --service-account-issuer (the tokens' `iss`),
        /// e.g. `https://kubernetes.default.svc.cluster.local`.
        #[arg(long)]
        issuer: String,
        /// The cluster's JWKS (`kubectl get --raw /openid/v1/jwks`); `-`
        /// reads standard input.
        #[arg(long, value_name = "FILE")]
        jwks_file: PathBuf,
        /// The audience a token must include (the projected volume's
        /// `audience`).
        #[arg(long, default_value = "warden")]
        audience: String,
    },
    /// Show a cluster's service-account issuer and its keys.
    Show {
        /// The cluster.
        cluster: String,
    },
}

/// `warden workload`.
#[derive(Debug, Subcommand)]
pub(crate) enum WorkloadCmd {
    /// Let a Kubernetes service account of a cluster exchange its pods'
    /// tokens for SERVICE's workload token (while SERVICE's environment is
    /// placed on that cluster).
    #[command(name = "sa-bind")]
    Bind {
        /// ORG/PROJECT/ENV/SERVICE.
        service: String,
        /// The cluster the pods run on.
        #[arg(long)]
        cluster: String,
        /// NAMESPACE/NAME.
        #[arg(long, value_name = "NS/NAME")]
        service_account: String,
    },
    /// Remove such a binding: the service account's next exchange is
    /// refused.
    #[command(name = "sa-unbind")]
    Unbind {
        /// ORG/PROJECT/ENV/SERVICE.
        service: String,
        /// The cluster.
        #[arg(long)]
        cluster: String,
        /// NAMESPACE/NAME.
        #[arg(long, value_name = "NS/NAME")]
        service_account: String,
    },
    /// The service-account bindings of the services at or under a scope.
    #[command(name = "sa-bindings")]
    Bindings {
        /// ORG, ORG/PROJECT, ORG/PROJECT/ENV or ORG/PROJECT/ENV/SERVICE.
        scope: String,
    },
}

/// Whether `s` is a DNS-1123 label.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A cluster's name, checked before it goes into a URL.
fn cluster_arg(s: &str) -> anyhow::Result<&str> {
    if dns_label(s) {
        Ok(s)
    } else {
        Err(usage(
            "cluster names are 1-63 lowercase letters, digits and inner hyphens",
        ))
    }
}

/// `NS/NAME` as the API's body members.
fn service_account(s: &str) -> anyhow::Result<(String, String)> {
    let (ns, name) = s
        .split_once('/')
        .ok_or_else(|| usage("--service-account is NAMESPACE/NAME, e.g. shop/api"))?;
    if !dns_label(ns) {
        return Err(usage(
            "a namespace is 1-63 lowercase letters, digits and inner hyphens",
        ));
    }
    if name.len() > 253 || !name.split('.').all(dns_label) {
        return Err(usage(
            "a service account's name is lowercase letters, digits, '-' and '.' (a DNS subdomain)",
        ));
    }
    Ok((ns.to_owned(), name.to_owned()))
}

fn print_issuer(i: &IssuerInfo) {
    println!("cluster   {}", i.cluster);
    println!("issuer    {}", output::printable(&i.issuer));
    println!("audience  {}", output::printable(&i.audience));
    println!(
        "updated   {} by {}",
        output::rfc3339(i.updated_at),
        i.updated_by
    );
    for k in &i.keys {
        println!(
            "key       {} {} ({} bits)",
            k.algorithm,
            output::printable(&k.kid),
            k.bits
        );
    }
}

fn print_bindings(list: &[SaBindingInfo]) {
    if list.is_empty() {
        println!("no service-account bindings");
        return;
    }
    println!("SERVICE\tCLUSTER\tSERVICE ACCOUNT\tBOUND BY");
    for b in list {
        println!(
            "{}\t{}\t{}/{}\t{}",
            b.service, b.cluster, b.namespace, b.service_account, b.created_by
        );
    }
}

/// Runs `warden cluster issuer`.
pub(crate) async fn issuer(ctx: &Ctx, c: IssuerCmd) -> anyhow::Result<()> {
    match c {
        IssuerCmd::Set {
            cluster,
            issuer,
            jwks_file,
            audience,
        } => {
            let cluster = cluster_arg(&cluster)?;
            let text = read_text(&jwks_file, JWKS_FILE_LIMIT, "JWKS file")?;
            let jwks: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
                usage(format!(
                    "JWKS file {} is not JSON (expected what `kubectl get --raw /openid/v1/jwks` prints)",
                    jwks_file.display()
                ))
            })?;
            let (i, raw): (IssuerInfo, _) = ctx
                .call(
                    M::PUT,
                    &format!("/api/v1/clusters/{cluster}/issuer"),
                    Some(json!({ "issuer": issuer, "audience": audience, "jwks": jwks })),
                )
                .await?;
            ctx.print(&raw, || print_issuer(&i))
        }
        IssuerCmd::Show { cluster } => {
            let cluster = cluster_arg(&cluster)?;
            let (i, raw): (IssuerInfo, _) = ctx
                .call(M::GET, &format!("/api/v1/clusters/{cluster}/issuer"), None)
                .await?;
            ctx.print(&raw, || print_issuer(&i))
        }
    }
}

/// Runs `warden workload`.
pub(crate) async fn run(ctx: &Ctx, c: WorkloadCmd) -> anyhow::Result<()> {
    match c {
        WorkloadCmd::Bind {
            service,
            cluster,
            service_account: sa,
        } => {
            let path = scope_path(&service, Some(ScopeKind::Service))?;
            let cluster = cluster_arg(&cluster)?;
            let (namespace, name) = service_account(&sa)?;
            let (b, raw): (SaBindingInfo, _) = ctx
                .call(
                    M::PUT,
                    &format!("/api/v1/sa-bindings/{path}"),
                    Some(json!({
                        "cluster": cluster, "namespace": namespace, "service_account": name,
                    })),
                )
                .await?;
            ctx.print(&raw, || {
                println!(
                    "service account {}/{} of cluster {} may obtain {}'s workload token",
                    b.namespace, b.service_account, b.cluster, b.service
                )
            })
        }
        WorkloadCmd::Unbind {
            service,
            cluster,
            service_account: sa,
        } => {
            let path = scope_path(&service, Some(ScopeKind::Service))?;
            let cluster = cluster_arg(&cluster)?;
            let (namespace, name) = service_account(&sa)?;
            ctx.call_empty(
                M::POST,
                &format!("/api/v1/sa-binding-revoke/{path}"),
                Some(json!({
                    "cluster": cluster, "namespace": namespace, "service_account": name,
                })),
            )
            .await?;
            let done = json!({
                "service": path.as_str(), "cluster": cluster,
                "namespace": namespace, "service_account": name, "removed": true,
            });
            ctx.print(&done, || {
                println!("service account {sa} of cluster {cluster} is no longer bound to {path}")
            })
        }
        WorkloadCmd::Bindings { scope } => {
            let path = scope_path(&scope, None)?;
            let (list, raw): (SaBindingList, _) = ctx
                .call(M::GET, &format!("/api/v1/sa-bindings?scope={path}"), None)
                .await?;
            ctx.print(&raw, || print_bindings(&list.bindings))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_accounts_are_checked_before_any_call() {
        assert_eq!(
            service_account("shop/api.v2").unwrap(),
            ("shop".to_owned(), "api.v2".to_owned())
        );
        assert!(cluster_arg("../x").is_err() && cluster_arg("prod-eu").is_ok());
        for bad in [
            "shop", "Shop/api", "shop/", "/api", "shop/a/b", "shop/a_b", "-s/api",
        ] {
            assert!(service_account(bad).is_err(), "{bad}");
        }
    }
}
