//! What the fuzz targets do, as property tests that run on stable: the
//! reader and verifier never panic on arbitrary or mutated input, and no
//! change to a signed bundle's entries or frontier goes unnoticed.

// Tests (and their helpers) fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::OnceLock;

use common::{make_bundle, make_log, signer};
use proptest::prelude::*;
use warden_tlog::bundle::Bundle;
use warden_tlog::canonical::parse_entry;
use warden_tlog::merkle::Frontier;
use warden_tlog::note::{Checkpoint, NoteVerifier, open, open_bytes};
use warden_tlog::verify::{Trust, Verdict, verify_bundle};

struct Fixture {
    bundle: Bundle,
    bytes: Vec<u8>,
    verifier: NoteVerifier,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let s = signer();
        let (lines, leaves) = make_log("acme", 24);
        let bundle = make_bundle(&s, "acme", &lines, &leaves, 3, 24, 8);
        let bytes = bundle.to_bytes().unwrap();
        Fixture {
            bundle,
            bytes,
            verifier: s.verifier(),
        }
    })
}

fn trusts(f: &Fixture) -> [Trust; 2] {
    [
        Trust::Key(f.verifier.clone()),
        Trust::Fingerprint(f.verifier.fingerprint()),
    ]
}

/// The fuzz target's body.
fn read_and_verify(bytes: &[u8]) {
    let f = fixture();
    if let Ok(b) = Bundle::read_from(bytes, 1 << 20) {
        for t in trusts(f) {
            let _ = verify_bundle(&b, &t);
        }
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Truncate(prop::sample::Index),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, x)| Edit::Flip(i, x)),
        2 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, x)| Edit::Insert(i, x)),
        2 => any::<prop::sample::Index>().prop_map(Edit::Delete),
        1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(data: &mut Vec<u8>, e: &Edit) {
    match e {
        Edit::Flip(i, x) if !data.is_empty() => {
            let i = i.index(data.len());
            data[i] ^= x;
        }
        Edit::Insert(i, x) => {
            let i = i.index(data.len() + 1);
            data.insert(i, *x);
        }
        Edit::Delete(i) if !data.is_empty() => {
            let i = i.index(data.len());
            data.remove(i);
        }
        Edit::Truncate(i) => {
            let i = i.index(data.len() + 1);
            data.truncate(i);
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        read_and_verify(&bytes);
        let s = String::from_utf8_lossy(&bytes);
        let f = fixture();
        let _ = open(&s, std::slice::from_ref(&f.verifier));
        let _ = open_bytes(&bytes, std::slice::from_ref(&f.verifier));
        let _ = Checkpoint::parse_body(&s);
        let _ = NoteVerifier::from_vkey(&s);
        let _ = Frontier::from_bytes(&bytes);
        let _ = parse_entry(&bytes);
        let _ = warden_tlog::export::to_csv(&bytes);
        let _ = warden_tlog::export::to_ocsf(&bytes);
    }

    #[test]
    fn mutated_archives_never_panic(edits in prop::collection::vec(arb_edit(), 1..6)) {
        let mut bytes = fixture().bytes.clone();
        for e in &edits {
            apply(&mut bytes, e);
        }
        read_and_verify(&bytes);
    }

    /// Any change to entries.jsonl is caught, even with the manifest
    /// refreshed, and verification never panics.
    #[test]
    fn any_entries_change_is_detected(edits in prop::collection::vec(arb_edit(), 1..4)) {
        let f = fixture();
        let mut b = f.bundle.clone();
        for e in &edits {
            apply(&mut b.entries, e);
        }
        prop_assume!(b.entries != f.bundle.entries);
        let bytes = b.to_bytes().unwrap();
        let read = Bundle::read_from(bytes.as_slice(), 1 << 20).unwrap();
        for t in trusts(f) {
            let out = verify_bundle(&read, &t);
            prop_assert_eq!(out.verdict, Verdict::Failed);
            prop_assert!(out.reason.is_some());
        }
    }

    #[test]
    fn any_frontier_change_is_detected(edits in prop::collection::vec(arb_edit(), 1..4)) {
        let f = fixture();
        let mut fb = f.bundle.frontier.to_bytes();
        for e in &edits {
            apply(&mut fb, e);
        }
        prop_assume!(fb != f.bundle.frontier.to_bytes());
        // (For an odd size the trailing last-leaf hash is redundant: bytes
        // without it parse to the same frontier, which must still verify.)
        if let Ok(fr) = Frontier::from_bytes(&fb) {
            prop_assume!(fr != f.bundle.frontier);
            let mut b = f.bundle.clone();
            b.frontier = fr;
            let out = verify_bundle(&b, &Trust::Key(f.verifier.clone()));
            prop_assert_eq!(out.verdict, Verdict::Failed);
        }
    }

    #[test]
    fn any_checkpoint_change_is_detected(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(arb_edit(), 1..4),
    ) {
        let f = fixture();
        let mut b = f.bundle.clone();
        let i = which.index(b.checkpoints.len());
        let mut note = b.checkpoints[i].1.clone().into_bytes();
        for e in &edits {
            apply(&mut note, e);
        }
        let note = String::from_utf8_lossy(&note).into_owned();
        prop_assume!(note != b.checkpoints[i].1);
        b.checkpoints[i].1 = note;
        let out = verify_bundle(&b, &Trust::Key(f.verifier.clone()));
        prop_assert_eq!(out.verdict, Verdict::Failed);
    }

    #[test]
    fn mutated_fields_never_panic(
        edits in prop::collection::vec(arb_edit(), 0..4),
        first in any::<u64>(),
        end in any::<u64>(),
        key_edit in prop::collection::vec(arb_edit(), 0..3),
    ) {
        let f = fixture();
        let mut b = f.bundle.clone();
        b.manifest.first_seq = first % 40;
        b.manifest.end_seq = end % 40;
        for e in &edits {
            apply(&mut b.entries, e);
        }
        let mut k = b.keys[0].clone().into_bytes();
        for e in &key_edit {
            apply(&mut k, e);
        }
        b.keys.push(String::from_utf8_lossy(&k).into_owned());
        for t in trusts(f) {
            let _ = verify_bundle(&b, &t);
        }
        if let Ok(bytes) = b.to_bytes() {
            read_and_verify(&bytes);
        }
    }
}
