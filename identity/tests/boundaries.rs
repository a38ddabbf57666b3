//! The crate's place in the dependency graph, from `cargo metadata`: it stays
//! pure (no storage, server, async runtime or HTTP) and links no crypto
//! backend but ring.

// Test code fails by panicking; the workspace's production-code lints do
// not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Every package warden-identity links, transitively, through normal
/// (non-dev, non-build) dependencies.
fn normal_dependencies() -> BTreeSet<String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut direct: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
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
            .map(|d| names[d["pkg"].as_str().unwrap()])
            .collect();
        direct.insert(names[node["id"].as_str().unwrap()], deps);
    }
    let mut seen = BTreeSet::new();
    let mut stack = vec!["warden-identity"];
    while let Some(n) = stack.pop() {
        for d in direct.get(n).into_iter().flatten() {
            if seen.insert(d.to_string()) {
                stack.push(d);
            }
        }
    }
    seen
}

#[test]
fn identity_stays_pure_and_on_ring() {
    let deps = normal_dependencies();
    assert!(deps.contains("ring"), "{deps:?}");
    assert!(deps.contains("warden-types"), "{deps:?}");
    for banned in [
        "warden-store",
        "warden-vault",
        "warden-server",
        "warden-audit",
        "warden-api",
        "warden-policies",
        "tokio",
        "sqlx",
        "hyper",
        "axum",
        "reqwest",
        "aws-lc-rs",
        "aws-lc-sys",
        "openssl",
        "openssl-sys",
    ] {
        assert!(
            !deps.contains(banned),
            "warden-identity must not depend on {banned}"
        );
    }
    let warden: Vec<&String> = deps.iter().filter(|d| d.starts_with("warden-")).collect();
    assert_eq!(warden, ["warden-types"]);
}
