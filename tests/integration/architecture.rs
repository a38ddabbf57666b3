//! Tidy checks on the dependency graph, from `cargo metadata`: the crate
//! boundaries ARCHITECTURE.md promises, and no second crypto backend.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

fn metadata() -> Value {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Normal (non-dev) dependencies of each package: direct, and transitive.
fn graphs(meta: &Value) -> (Graph, Graph) {
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut direct: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let name = names[node["id"].as_str().unwrap()].to_owned();
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| names[d["pkg"].as_str().unwrap()].to_owned())
            .collect();
        direct.insert(name, deps);
    }
    let mut out = BTreeMap::new();
    for name in direct.keys() {
        let mut seen = BTreeSet::new();
        let mut stack = vec![name.clone()];
        while let Some(n) = stack.pop() {
            for d in direct.get(&n).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        out.insert(name.clone(), seen);
    }
    (direct, out)
}

#[test]
fn crate_boundaries_hold() {
    let (direct, transitive) = graphs(&metadata());
    let forbidden: &[(&str, &[&str])] = &[
        // The vocabulary crate does no I/O, async or crypto.
        ("warden-types", &["tokio", "sqlx", "ring", "hyper"]),
        // Authorization is a pure function over data.
        (
            "warden-policies",
            &[
                "tokio",
                "sqlx",
                "ring",
                "hyper",
                "warden-store",
                "warden-vault",
            ],
        ),
        // Credential checks are pure functions: no storage, async or HTTP.
        (
            "warden-identity",
            &[
                "tokio",
                "sqlx",
                "hyper",
                "warden-store",
                "warden-vault",
                "warden-server",
            ],
        ),
        // Audit log formats and offline verification: pure, and usable by
        // `warden audit verify` with nothing else (no Warden crate at all).
        (
            "warden-tlog",
            &[
                "tokio",
                "sqlx",
                "hyper",
                "axum",
                "warden-types",
                "warden-store",
                "warden-vault",
                "warden-audit",
                "warden-api",
                "warden-server",
            ],
        ),
        // Storage never holds keys or does crypto.
        ("warden-store", &["ring", "warden-vault", "argon2"]),
        // The audit log never receives plaintext, so it has no business with the vault.
        ("warden-audit", &["warden-vault"]),
        // The vault does no HTTP.
        ("warden-vault", &["hyper", "axum"]),
        // Wire types and the client know nothing of storage or keys.
        (
            "warden-api",
            &["sqlx", "warden-store", "warden-vault", "argon2"],
        ),
        // The injector will not link the vault's crypto or storage.
        (
            "warden-injector",
            &["warden-vault", "warden-store", "argon2", "sqlx"],
        ),
        ("warden-shell-gateway", &["warden-vault", "argon2"]),
        // The runtime runs pods; it never sees secrets or speaks the
        // front-ends' protocols, and knows Kubernetes only through its trait.
        (
            "warden-runtime",
            &[
                "warden-vault",
                "warden-server",
                "warden-store",
                "warden-audit",
                "axum",
                "hyper",
                "russh",
                "kube",
                "sqlx",
            ],
        ),
    ];
    // Workspace crates are banned transitively; third-party crates as
    // direct dependencies (sqlx's Postgres TLS legitimately links ring, but
    // the store itself must not call it).
    for (krate, banned) in forbidden {
        for b in *banned {
            let graph = if b.starts_with("warden-") {
                &transitive
            } else {
                &direct
            };
            assert!(
                !graph[*krate].contains(*b),
                "{krate} must not depend on {b}"
            );
        }
    }
}

#[test]
fn one_crypto_backend_only() {
    let meta = metadata();
    let all: BTreeSet<&str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for banned in ["aws-lc-rs", "aws-lc-sys", "openssl-sys", "openssl"] {
        assert!(
            !all.contains(banned),
            "{banned} is in the dependency graph; use ring"
        );
    }
}
