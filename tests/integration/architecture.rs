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
    // What a crate must not link at all (anywhere in its dependency graph).
    let never: &[(&str, &[&str])] = &[
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
        // The pipeline is transport-neutral and reaches the vault only
        // through its `Keys` trait.
        (
            "warden-pipeline",
            &[
                "axum",
                "hyper",
                "russh",
                "kube",
                "warden-vault",
                "warden-server",
                "warden-api",
            ],
        ),
        // The audit log never receives plaintext, so it has no business with the vault.
        ("warden-audit", &["warden-vault", "axum", "hyper"]),
        // The vault does no HTTP.
        ("warden-vault", &["hyper", "axum", "warden-server"]),
        // Wire types and the client know nothing of storage or keys.
        (
            "warden-api",
            &["sqlx", "warden-store", "warden-vault", "argon2"],
        ),
        // The injector (a wrapper in every pod) does not link the vault's
        // crypto or storage, nor the server; it talks to Warden only
        // through the public API.
        (
            "warden-injector",
            &[
                "warden-pipeline",
                "warden-vault",
                "warden-store",
                "warden-server",
                "warden-identity",
                "warden-audit",
                "argon2",
                "sqlx",
                "axum",
                "russh",
                "kube",
            ],
        ),
        // The gateway stands on the pipeline and the runtime only.
        ("warden-shell-gateway", &["warden-vault", "warden-server"]),
        // The runtime runs pods; it never sees secrets and speaks none of
        // the front-ends' protocols. The Kubernetes backend (kube-rs)
        // implements its trait in warden-kubernetes (runtime/src/lib.rs).
        (
            "warden-runtime",
            &[
                "warden-vault",
                "warden-server",
                "warden-store",
                "warden-audit",
                "warden-pipeline",
                "axum",
                "hyper",
                "russh",
                "kube",
                "sqlx",
            ],
        ),
        // The Kubernetes backend: the runtime trait over kube-rs, nothing
        // of the vault, storage, server or SSH (kubernetes/src/lib.rs).
        (
            "warden-kubernetes",
            &[
                "warden-vault",
                "warden-server",
                "warden-store",
                "warden-audit",
                "warden-pipeline",
                "russh",
                "sqlx",
                "aws-lc-rs",
            ],
        ),
        // The agent link is transport only: no pods, policies, storage or
        // keys (the hub and the agent wire it to those).
        (
            "warden-link",
            &[
                "warden-vault",
                "warden-server",
                "warden-store",
                "warden-pipeline",
                "warden-runtime",
                "axum",
                "sqlx",
                "kube",
                "russh",
            ],
        ),
    ];
    // What a crate must not depend on directly (it may reach it through a
    // crate it depends on, but cannot name it in its own code).
    let not_directly: &[(&str, &[&str])] = &[
        // Storage never holds keys or does crypto (sqlx's Postgres TLS
        // legitimately links ring; the store itself must not call it).
        ("warden-store", &["ring", "argon2", "warden-vault"]),
        // The vault does no audit: the pipeline audits before calling in
        // (the vault links the pipeline for its `Permit` type only).
        ("warden-vault", &["warden-audit"]),
        // Client commands use the API; the binary reaches the server only to
        // run it (`warden server`, `warden dev`), see `cli_reaches_the_server_only_to_run_it`.
        (
            "warden-cli",
            &["warden-vault", "warden-store", "warden-audit"],
        ),
    ];
    // The Warden crates a crate may link at all (anywhere in its dependency
    // graph): the pure crates stand alone, or on the vocabulary only.
    let warden_only: &[(&str, &[&str])] = &[
        ("warden-types", &[]),
        ("warden-tlog", &[]),
        ("warden-policies", &["warden-types"]),
        ("warden-identity", &["warden-types"]),
        ("warden-api", &["warden-types"]),
        // The injector is an API client and nothing more.
        ("warden-injector", &["warden-types", "warden-api"]),
        ("warden-runtime", &["warden-types"]),
        ("warden-kubernetes", &["warden-types", "warden-runtime"]),
        ("warden-link", &[]),
        // The runtime protocol over the link: authorization happens before
        // it is called (agent/src/lib.rs).
        (
            "warden-agent",
            &["warden-types", "warden-runtime", "warden-link"],
        ),
    ];
    for (krate, banned) in never {
        for b in *banned {
            assert!(
                !transitive[*krate].contains(*b),
                "{krate} must not depend on {b}, even indirectly"
            );
        }
    }
    for (krate, allowed) in warden_only {
        for d in &transitive[*krate] {
            assert!(
                !d.starts_with("warden-") || allowed.contains(&d.as_str()),
                "{krate} must not depend on {d}: its only Warden dependencies may be {allowed:?}"
            );
        }
    }
    for (krate, banned) in not_directly {
        for b in *banned {
            assert!(
                !direct[*krate].contains(*b),
                "{krate} must not depend on {b} directly"
            );
        }
    }
}

/// The `warden` binary is the composition root: it links the server to run
/// it, and nothing but the module that starts servers may name it, so every
/// client command goes through the API.
#[test]
fn cli_reaches_the_server_only_to_run_it() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../cli/src");
    let mut naming = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(root)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && std::fs::read_to_string(&path)
                    .unwrap()
                    .contains("warden_server")
            {
                naming.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    naming.sort();
    assert_eq!(
        naming,
        ["serve.rs"],
        "only cli/src/serve.rs may use warden_server"
    );
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
