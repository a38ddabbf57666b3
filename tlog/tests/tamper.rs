//! Every kind of tampering with a real, signed bundle is detected and the
//! first bad entry is named.

// Tests (and their helpers) fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{make_bundle, make_log, signer};
use warden_tlog::bundle::{Bundle, CSV_VIEW, OCSF_VIEW};
use warden_tlog::export::{to_csv, to_ocsf};
use warden_tlog::merkle::{Frontier, leaf_hash};
use warden_tlog::note::{NoteSigner, NoteVerifier};
use warden_tlog::verify::{Transcript, Trust, Verdict, verify_bundle};

const N: u64 = 50;
const FIRST: u64 = 10;

struct Fixture {
    signer: NoteSigner,
    bundle: Bundle,
    other_lines: Vec<String>,
}

fn fixture() -> Fixture {
    let signer = signer();
    let (lines, leaves) = make_log("acme", N);
    let bundle = make_bundle(&signer, "acme", &lines, &leaves, FIRST, N, 10);
    let (other_lines, _) = make_log("globex", N);
    Fixture {
        signer,
        bundle,
        other_lines,
    }
}

fn trust(f: &Fixture) -> Trust {
    Trust::Key(f.signer.verifier())
}

/// Verifies after a write/read round trip, so that the manifest hashes are
/// refreshed as a careful forger would.
fn check(f: &Fixture, b: &Bundle) -> Transcript {
    let bytes = b.to_bytes().unwrap();
    let read = Bundle::read_from(bytes.as_slice(), 1 << 30).unwrap();
    verify_bundle(&read, &trust(f))
}

/// [`check`] with the entries fed a line at a time to a
/// `StreamVerification` (as live verification does); `None` for bundles it
/// does not apply to (derived views, or a last line without a newline).
fn stream_check(f: &Fixture, b: &Bundle) -> Option<Transcript> {
    let bytes = b.to_bytes().unwrap();
    let read = Bundle::read_from(bytes.as_slice(), 1 << 30).unwrap();
    if !read.views.is_empty() || !(read.entries.is_empty() || read.entries.ends_with(b"\n")) {
        return None;
    }
    let mut v = match warden_tlog::verify::StreamVerification::start(
        &read.manifest,
        &read.keys,
        &read.checkpoints,
        &read.frontier,
        &trust(f),
    ) {
        Ok(v) => v,
        Err(t) => return Some(*t),
    };
    for line in read.entries.split_inclusive(|b| *b == b'\n') {
        if !v.push_line(line.strip_suffix(b"\n").unwrap()) {
            break;
        }
    }
    Some(v.finish())
}

fn lines_of(b: &Bundle) -> Vec<String> {
    String::from_utf8(b.entries.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn with_lines(b: &Bundle, lines: &[String]) -> Bundle {
    let mut out = b.clone();
    out.entries = lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();
    out
}

/// Index in the bundle's lines of entry `seq`.
fn at(seq: u64) -> usize {
    (seq - FIRST) as usize
}

#[test]
fn untouched_bundle_verifies() {
    let f = fixture();
    let t = check(&f, &f.bundle);
    assert_eq!(t.verdict, Verdict::Ok, "{t:#?}");
    assert_eq!(t.entries_checked, N - FIRST);
    assert_eq!(t.checkpoints_verified, vec![10, 20, 30, 40, 50]);
    assert_eq!(t.first_bad_seq, None);
    assert_eq!(t.key_fingerprint, Some(f.signer.fingerprint()));
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["verdict"], "ok");

    // Trust by fingerprint or key id, from keys.txt.
    for fp in [
        f.signer.fingerprint(),
        format!("sha256:{}", f.signer.fingerprint().to_uppercase()),
        hex::encode(f.signer.key_id()),
    ] {
        let t = verify_bundle(&f.bundle, &Trust::Fingerprint(fp.clone()));
        assert_eq!(t.verdict, Verdict::Ok, "{fp}: {t:#?}");
    }
    // From the very first entry (seq 0, prev all zeros).
    let (lines, leaves) = make_log("acme", 7);
    let b = make_bundle(&f.signer, "acme", &lines, &leaves, 0, 7, 3);
    let t = check(&f, &b);
    assert_eq!(t.verdict, Verdict::Ok, "{t:#?}");
    assert_eq!(t.checkpoints_verified, vec![3, 6, 7]);
}

struct Case {
    name: &'static str,
    bundle: Bundle,
    first_bad: Option<u64>,
    reason_has: &'static str,
}

#[test]
fn tamper_table() {
    let f = fixture();
    let base = lines_of(&f.bundle);
    let mut cases = Vec::new();

    // Edit a leaf: one byte inside a string value.
    for seq in [23u64, 10, 29, 49] {
        let mut l = base.clone();
        l[at(seq)] = l[at(seq)].replacen("user:alice", "user:alicE", 1);
        assert_ne!(l, base);
        cases.push(Case {
            name: "edit a byte in a string value",
            bundle: with_lines(&f.bundle, &l),
            first_bad: Some(seq),
            reason_has: "",
        });
    }
    // Delete a line.
    let mut l = base.clone();
    l.remove(at(23));
    cases.push(Case {
        name: "delete a line",
        bundle: with_lines(&f.bundle, &l),
        first_bad: Some(23),
        reason_has: "entry 23 is missing",
    });
    // Swap two lines.
    let mut l = base.clone();
    l.swap(at(23), at(24));
    cases.push(Case {
        name: "swap two lines",
        bundle: with_lines(&f.bundle, &l),
        first_bad: Some(23),
        reason_has: "entry 23 is missing",
    });
    // Duplicate a line.
    let mut l = base.clone();
    l.insert(at(23), l[at(23)].clone());
    cases.push(Case {
        name: "duplicate a line",
        bundle: with_lines(&f.bundle, &l),
        first_bad: Some(24),
        reason_has: "repeats seq 23",
    });
    // Truncate the tail.
    let mut l = base.clone();
    l.truncate(at(45));
    cases.push(Case {
        name: "truncate the tail",
        bundle: with_lines(&f.bundle, &l),
        first_bad: Some(45),
        reason_has: "truncated",
    });
    // Cut the last line in the middle (no final newline).
    let mut b = f.bundle.clone();
    b.entries.truncate(b.entries.len() - 10);
    cases.push(Case {
        name: "cut the file mid-line",
        bundle: b,
        first_bad: Some(49),
        reason_has: "newline",
    });
    // An extra line past the newest checkpoint.
    let mut l = base.clone();
    let extra = common::entry("acme", N, &leaf_hash(base.last().unwrap().as_bytes()));
    l.push(extra);
    cases.push(Case {
        name: "append an unsigned line",
        bundle: with_lines(&f.bundle, &l),
        first_bad: Some(N),
        reason_has: "past the newest checkpoint",
    });
    // Replace a checkpoint signature.
    let mut b = f.bundle.clone();
    let (other, _) = NoteSigner::generate(f.signer.name()).unwrap();
    let note = &mut b.checkpoints[2].1;
    let body = note.split_once("\n\n").unwrap().0.to_owned() + "\n";
    *note = other.sign(&body).unwrap();
    cases.push(Case {
        name: "replace a checkpoint signature (other key)",
        bundle: b,
        first_bad: None,
        reason_has: "checkpoint 30",
    });
    let mut b = f.bundle.clone();
    let note = &mut b.checkpoints[2].1;
    let (body, sig) = note.rsplit_once(' ').unwrap();
    let mut blob = base64_decode(sig.trim_end());
    blob[20] ^= 0x01;
    *note = format!("{body} {}\n", base64_encode(&blob));
    cases.push(Case {
        name: "replace a checkpoint signature (bit flip)",
        bundle: b,
        first_bad: None,
        reason_has: "invalid signature",
    });
    // Change a checkpoint's root and re-sign with another key: unknown key.
    // Remove the newest checkpoint: end_seq no longer matches.
    let mut b = f.bundle.clone();
    b.checkpoints.pop();
    cases.push(Case {
        name: "drop the newest checkpoint",
        bundle: b,
        first_bad: None,
        reason_has: "newest checkpoint",
    });
    // Splice a line from another log's bundle.
    let mut l = base.clone();
    l[at(23)] = f.other_lines[23].clone();
    cases.push(Case {
        name: "splice a line from another log",
        bundle: with_lines(&f.bundle, &l),
        first_bad: Some(23),
        reason_has: "spliced",
    });
    // Non-canonical re-serialization (same value, keys reordered / spaced).
    let mut l = base.clone();
    let v: serde_json::Value = serde_json::from_str(&l[at(23)]).unwrap();
    l[at(23)] = serde_json::to_string_pretty(&v).unwrap().replace('\n', "");
    cases.push(Case {
        name: "re-serialize a line non-canonically",
        bundle: with_lines(&f.bundle, &l),
        first_bad: Some(23),
        reason_has: "not canonical",
    });
    let mut l = base.clone();
    l[at(23)] = l[at(23)].replacen("{\"action\"", "{ \"action\"", 1);
    cases.push(Case {
        name: "add whitespace to a line",
        bundle: with_lines(&f.bundle, &l),
        first_bad: Some(23),
        reason_has: "not canonical",
    });
    // Edit a line and rewrite the chain after it: only the root shows it.
    let mut l = base.clone();
    l[at(23)] = l[at(23)].replacen("user:alice", "user:mallo", 1);
    assert_ne!(l[at(23)], base[at(23)]);
    for seq in 24..N {
        let prev = leaf_hash(l[at(seq - 1)].as_bytes());
        let old: serde_json::Value = serde_json::from_str(&l[at(seq)]).unwrap();
        let old_prev = old["prev"].as_str().unwrap().to_owned();
        l[at(seq)] = l[at(seq)].replace(&old_prev, &hex::encode(prev));
    }
    cases.push(Case {
        name: "edit a line and rewrite the hash chain",
        bundle: with_lines(&f.bundle, &l),
        first_bad: Some(29),
        reason_has: "hash chain is intact",
    });
    // Edit the prev field of the first exported entry.
    let mut l = base.clone();
    let old: serde_json::Value = serde_json::from_str(&l[0]).unwrap();
    l[0] = l[0].replace(old["prev"].as_str().unwrap(), &"ab".repeat(32));
    cases.push(Case {
        name: "edit the first entry's prev",
        bundle: with_lines(&f.bundle, &l),
        first_bad: Some(FIRST),
        reason_has: "frontier",
    });
    // Frontier replaced.
    let mut b = f.bundle.clone();
    let mut fr = Frontier::new();
    for s in 0..FIRST {
        fr.push(leaf_hash(format!("{s}").as_bytes()));
    }
    let last = b.frontier.last_leaf().unwrap();
    b.frontier = Frontier::from_parts_with_last(FIRST, fr.hashes().to_vec(), last).unwrap();
    cases.push(Case {
        name: "replace frontier.bin",
        bundle: b,
        first_bad: None,
        reason_has: "frontier.bin does not hash",
    });
    // Manifest edits.
    let mut b = f.bundle.clone();
    b.manifest.log = "globex".into();
    cases.push(Case {
        name: "manifest names another log",
        bundle: b,
        first_bad: Some(FIRST),
        reason_has: "spliced",
    });
    let mut b = f.bundle.clone();
    b.manifest.origin = "evil.example/audit/acme".into();
    cases.push(Case {
        name: "manifest names another origin",
        bundle: b,
        first_bad: None,
        reason_has: "origin",
    });
    let mut b = f.bundle.clone();
    b.manifest.format = "warden-audit-bundle/2".into();
    cases.push(Case {
        name: "unknown format",
        bundle: b,
        first_bad: None,
        reason_has: "format",
    });
    let mut b = f.bundle.clone();
    b.manifest.first_seq = 11;
    cases.push(Case {
        name: "first_seq off by one",
        bundle: b,
        first_bad: None,
        reason_has: "outside the bundle's range",
    });
    // A derived view that lies.
    let mut b = f.bundle.clone();
    let mut csv = to_csv(&b.entries).unwrap();
    let pos = csv.len() / 2;
    csv[pos] ^= 1;
    b.views.insert(CSV_VIEW.into(), csv);
    cases.push(Case {
        name: "edit entries.csv",
        bundle: b,
        first_bad: None,
        reason_has: "entries.csv differs",
    });

    let mut failures = Vec::new();
    let mut streamed = 0;
    for c in &cases {
        let t = check(&f, &c.bundle);
        if let Some(s) = stream_check(&f, &c.bundle) {
            assert_eq!(s, t, "{}: streaming verification differs", c.name);
            streamed += 1;
        }
        let ok = t.verdict == Verdict::Failed
            && t.first_bad_seq == c.first_bad
            && t.reason.as_deref().unwrap_or("").contains(c.reason_has);
        if !ok {
            failures.push(format!(
                "{}: got {:?} first_bad {:?} reason {:?}",
                c.name, t.verdict, t.first_bad_seq, t.reason
            ));
        }
        if t.verdict == Verdict::Failed {
            assert!(t.checks.last().unwrap().starts_with("FAILED"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(streamed > 10, "only {streamed} cases streamed");
    assert_eq!(stream_check(&f, &f.bundle), Some(check(&f, &f.bundle)));
}

#[test]
fn wrong_or_unknown_keys_fail() {
    let f = fixture();
    let (other, _) = NoteSigner::generate(f.signer.name()).unwrap();
    let t = verify_bundle(&f.bundle, &Trust::Key(other.verifier()));
    assert_eq!(t.verdict, Verdict::Failed);
    assert!(
        t.reason
            .unwrap()
            .contains("no signature from a trusted key")
    );
    for fp in [other.fingerprint(), "zz".into(), "abc".into()] {
        let t = verify_bundle(&f.bundle, &Trust::Fingerprint(fp));
        assert_eq!(t.verdict, Verdict::Failed);
        assert_eq!(t.key_fingerprint, None);
    }
    let mut b = f.bundle.clone();
    b.keys.push("not a key".into());
    let t = verify_bundle(&b, &Trust::Fingerprint(f.signer.fingerprint()));
    assert!(t.reason.unwrap().contains("keys.txt line 2"));
    let v = NoteVerifier::from_vkey(&f.signer.verifier_key()).unwrap();
    assert_eq!(
        verify_bundle(&f.bundle, &Trust::Key(v)).verdict,
        Verdict::Ok
    );
}

#[test]
fn views_verify_and_round_trip() {
    let f = fixture();
    let mut b = f.bundle.clone();
    b.views.insert(CSV_VIEW.into(), to_csv(&b.entries).unwrap());
    b.views
        .insert(OCSF_VIEW.into(), to_ocsf(&b.entries).unwrap());
    let bytes = b.to_bytes().unwrap();
    assert_eq!(bytes, b.to_bytes().unwrap(), "deterministic");
    let read = Bundle::read_from(bytes.as_slice(), 1 << 30).unwrap();
    assert_eq!(read.entries, b.entries);
    assert_eq!(read.views, b.views);
    assert_eq!(read.checkpoints, b.checkpoints);
    assert_eq!(read.keys, b.keys);
    assert_eq!(read.frontier, b.frontier);
    assert_eq!(read.manifest.files.len(), 2 + 5 + 1 + 2);
    let t = verify_bundle(&read, &trust(&f));
    assert_eq!(t.verdict, Verdict::Ok, "{t:#?}");
    assert!(
        t.checks
            .iter()
            .any(|c| c.contains("entries.ocsf.json matches"))
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The pieces the server reuses for `verify --live`.
#[test]
fn live_verification_api() {
    use warden_tlog::note::{Checkpoint, open};
    use warden_tlog::verify::{EntryChecker, verify_entries_against};

    let f = fixture();
    let checkpoints: Vec<Checkpoint> = f
        .bundle
        .checkpoints
        .iter()
        .map(|(_, n)| {
            let (body, _) = open(n, &[f.signer.verifier()]).unwrap();
            Checkpoint::parse_body(&body).unwrap()
        })
        .collect();
    let r = verify_entries_against(
        "acme",
        f.bundle.frontier.clone(),
        &f.bundle.entries,
        &checkpoints,
    );
    assert_eq!(r.fault, None);
    assert_eq!(r.entries_checked, N - FIRST);
    assert_eq!(r.roots_matched, vec![10, 20, 30, 40, 50]);
    assert_eq!(r.frontier.root(), checkpoints.last().unwrap().root);

    // Only part of the entries: later checkpoints are left unchecked.
    let half: Vec<u8> = lines_of(&f.bundle)[..15]
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();
    let r = verify_entries_against("acme", f.bundle.frontier.clone(), &half, &checkpoints);
    assert_eq!(r.fault, None);
    assert_eq!(r.roots_matched, vec![10, 20]);
    assert_eq!(r.frontier.size(), 25);

    // Line by line, from the empty log.
    let (lines, leaves) = make_log("acme", 5);
    let mut c = EntryChecker::new("acme", Frontier::new()).unwrap();
    for (l, h) in lines.iter().zip(&leaves) {
        assert_eq!(c.push_line(l.as_bytes()).unwrap(), *h);
    }
    assert_eq!(c.next_seq(), 5);
    let err = c.push_line(lines[0].as_bytes()).unwrap_err();
    assert_eq!(err.seq, Some(5));
    // A frontier without its last leaf cannot start a chain check.
    let even = Frontier::from_parts(4, vec![leaves[0]]).unwrap();
    assert!(EntryChecker::new("acme", even).is_err());
}
