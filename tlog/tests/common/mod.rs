//! Builds realistic logs and signed bundles for tests and the bench.
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;

use warden_tlog::bundle::{Bundle, FORMAT, Manifest};
use warden_tlog::merkle::{Frontier, Hash, leaf_hash};
use warden_tlog::note::{Checkpoint, NoteSigner};

const ACTIONS: [(&str, &str); 8] = [
    ("secret.read", "acme/shop/prod#DATABASE_URL"),
    ("secret.write", "acme/shop/staging#STRIPE_SECRET_KEY@v12"),
    ("secret.list", "acme/shop/staging"),
    ("shell.exec", "acme/shop/staging/api"),
    ("auth.login", "token"),
    ("token.create", "user:carol@example.com"),
    ("binding.create", "acme/shop"),
    ("deploy.run", "acme/shop/prod/api"),
];

/// One realistic entry line (440–470 bytes: the server's shape, with a
/// 64-hex `prev`), canonical by construction
/// (keys written in sorted order).
pub fn entry(log: &str, seq: u64, prev: &Hash) -> String {
    let (action, target) = ACTIONS[(seq % ACTIONS.len() as u64) as usize];
    let phase = if seq.is_multiple_of(2) {
        "intent"
    } else {
        "outcome"
    };
    let status = if seq.is_multiple_of(2) {
        "null".to_owned()
    } else if seq.is_multiple_of(7) {
        "\"forbidden\"".to_owned()
    } else {
        "\"ok\"".to_owned()
    };
    let effect = if seq.is_multiple_of(7) {
        "deny"
    } else {
        "allow"
    };
    format!(
        concat!(
            r#"{{"action":"{action}","actor":{{"method":"token","principal":"user:alice","#,
            r#""source_ip":"10.20.{a}.{b}","token_id":"tok_{seq_hex:06x}","#,
            r#""user_agent":"warden/0.1"}},"#,
            r#""decision":{{"effect":"{effect}","rule":"developer@acme/shop"}},"#,
            r#""log":"{log}","node":"n1","op_id":"n1-18f3a2b4-{op}","phase":"{phase}","#,
            r#""prev":"{prev}","schema":1,"seq":{seq},"status":{status},"target":"{target}","#,
            r#""time_ns":{time}}}"#
        ),
        action = action,
        a = (seq / 256) % 256,
        b = seq % 256,
        seq_hex = seq & 0xff_ffff,
        effect = effect,
        log = log,
        op = seq / 2,
        phase = phase,
        prev = hex::encode(prev),
        seq = seq,
        status = status,
        target = target,
        time = 1_790_000_000_123_456_789u64 + seq * 1_000_003,
    )
}

/// A log of `n` entries: the lines (without newlines) and their leaf hashes.
pub fn make_log(log: &str, n: u64) -> (Vec<String>, Vec<Hash>) {
    let mut lines = Vec::with_capacity(n as usize);
    let mut leaves = Vec::with_capacity(n as usize);
    let mut prev = [0u8; 32];
    for seq in 0..n {
        let line = entry(log, seq, &prev);
        prev = leaf_hash(line.as_bytes());
        leaves.push(prev);
        lines.push(line);
    }
    (lines, leaves)
}

pub fn origin(log: &str) -> String {
    format!("warden.example.com/audit/{log}")
}

/// A signed bundle of entries `first..end` of the log, with a checkpoint
/// at every multiple of `every` in `first..=end` and one at `end`.
pub fn make_bundle(
    signer: &NoteSigner,
    log: &str,
    lines: &[String],
    leaves: &[Hash],
    first: u64,
    end: u64,
    every: u64,
) -> Bundle {
    let origin = origin(log);
    let mut sizes: Vec<u64> = (first..=end).filter(|s| *s > 0 && s % every == 0).collect();
    if sizes.last() != Some(&end) {
        sizes.push(end);
    }
    let mut checkpoints = Vec::new();
    let mut f = Frontier::from_leaves(&leaves[..first as usize]);
    let frontier = f.clone();
    let mut at = first;
    for size in sizes {
        while at < size {
            f.push(leaves[at as usize]);
            at += 1;
        }
        let cp = Checkpoint {
            origin: origin.clone(),
            size,
            root: f.root(),
        };
        checkpoints.push((size, signer.sign(&cp.body()).unwrap()));
    }
    let mut entries = Vec::new();
    for l in &lines[first as usize..end as usize] {
        entries.extend_from_slice(l.as_bytes());
        entries.push(b'\n');
    }
    Bundle {
        manifest: Manifest {
            format: FORMAT.into(),
            log: log.into(),
            origin,
            first_seq: first,
            end_seq: end,
            created_at_ns: 1_790_000_000_000_000_000,
            since_ns: None,
            until_ns: None,
            files: BTreeMap::new(),
        },
        entries,
        checkpoints,
        keys: vec![signer.verifier_key()],
        frontier,
        views: BTreeMap::new(),
    }
}

pub fn signer() -> NoteSigner {
    NoteSigner::generate(&origin("acme")).unwrap().0
}
