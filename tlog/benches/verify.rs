//! Offline verification throughput (target: at least 500,000 entries/s on
//! one core) of a bundle of 100,000 realistic entries (~450 bytes each)
//! with a signed checkpoint every 1,000 entries, next to a baseline that
//! only SHA-256 leaf-hashes the same lines.
//!
//! `cargo bench -p warden-tlog -- --warm-up-time 1 --measurement-time 5`

// A benchmark fails like a test: by panicking on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden_tlog::bundle::Bundle;
use warden_tlog::merkle::leaf_hash;
use warden_tlog::verify::{Trust, Verdict, verify_bundle};

const ENTRIES: u64 = 100_000;

fn bench(c: &mut Criterion) {
    let signer = common::signer();
    let (lines, leaves) = common::make_log("acme", ENTRIES);
    let bundle = common::make_bundle(&signer, "acme", &lines, &leaves, 0, ENTRIES, 1_000);
    // Through the archive once, as `warden audit verify` would read it.
    let bytes = bundle.to_bytes().unwrap();
    let bundle = Bundle::read_from(bytes.as_slice(), 1 << 30).unwrap();
    let trust = Trust::Key(signer.verifier());
    let t = verify_bundle(&bundle, &trust);
    assert_eq!(t.verdict, Verdict::Ok, "{t:#?}");
    assert_eq!(t.checkpoints_verified.len(), 100);
    eprintln!(
        "bundle: {} entries, {} bytes of JSON lines ({} bytes/entry on average), {} checkpoints, archive {} bytes",
        ENTRIES,
        bundle.entries.len(),
        bundle.entries.len() as u64 / ENTRIES,
        bundle.checkpoints.len(),
        bytes.len()
    );

    let mut g = c.benchmark_group("verify_100k");
    g.throughput(Throughput::Elements(ENTRIES));
    g.sample_size(10);
    g.bench_function("verify_bundle", |b| {
        b.iter(|| {
            let t = verify_bundle(black_box(&bundle), &trust);
            assert_eq!(t.verdict, Verdict::Ok);
            t.entries_checked
        })
    });
    g.bench_function("baseline_sha256_leaf_hashes", |b| {
        b.iter(|| {
            let mut acc = 0u8;
            for line in black_box(&bundle.entries).split(|&c| c == b'\n') {
                if !line.is_empty() {
                    acc ^= leaf_hash(line)[0];
                }
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
