//! The bundle reader refuses bad archives and names the member at fault.

// Tests (and their helpers) fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{make_bundle, make_log, signer};
use warden_tlog::bundle::{Bundle, BundleError, ENTRIES, FRONTIER, KEYS, MANIFEST};

fn good() -> Bundle {
    let s = signer();
    let (lines, leaves) = make_log("acme", 20);
    make_bundle(&s, "acme", &lines, &leaves, 5, 20, 5)
}

/// Rebuilds a tar from (name, data, entry type) triples, writing the name
/// bytes raw so that unsafe paths can be expressed.
fn raw_tar(members: &[(&[u8], Vec<u8>, tar::EntryType)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, kind) in members {
        let mut h = tar::Header::new_ustar();
        {
            let u = h.as_ustar_mut().unwrap();
            u.name[..name.len()].copy_from_slice(name);
        }
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(*kind);
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// The members of a good bundle, as written.
fn members(b: &Bundle) -> Vec<(String, Vec<u8>)> {
    let bytes = b.to_bytes().unwrap();
    let mut a = tar::Archive::new(bytes.as_slice());
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.push((name, data));
    }
    out
}

fn rebuild(ms: &[(String, Vec<u8>)]) -> Vec<u8> {
    let triples: Vec<(&[u8], Vec<u8>, tar::EntryType)> = ms
        .iter()
        .map(|(n, d)| (n.as_bytes(), d.clone(), tar::EntryType::Regular))
        .collect();
    raw_tar(&triples)
}

fn read(bytes: &[u8]) -> Result<Bundle, BundleError> {
    Bundle::read_from(bytes, 1 << 24)
}

#[test]
fn header_fields_are_deterministic() {
    let bytes = good().to_bytes().unwrap();
    let mut a = tar::Archive::new(bytes.as_slice());
    let mut names = Vec::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(h.mode().unwrap(), 0o644);
        assert_eq!(h.uid().unwrap(), 0);
        assert_eq!(h.gid().unwrap(), 0);
        assert_eq!(h.mtime().unwrap(), 0);
        names.push(String::from_utf8(e.path_bytes().into_owned()).unwrap());
    }
    assert_eq!(
        names,
        [
            MANIFEST,
            KEYS,
            FRONTIER,
            "checkpoints/5.note",
            "checkpoints/10.note",
            "checkpoints/15.note",
            "checkpoints/20.note",
            ENTRIES
        ]
    );
}

#[test]
fn bad_archives_are_refused_naming_the_member() {
    let g = good();
    let ms = members(&g);
    assert!(read(&rebuild(&ms)).is_ok());

    // Path traversal.
    for bad in [
        &b"../entries.jsonl"[..],
        b"/etc/passwd",
        b"checkpoints/../x",
    ] {
        let mut t: Vec<(&[u8], Vec<u8>, tar::EntryType)> = ms
            .iter()
            .map(|(n, d)| (n.as_bytes(), d.clone(), tar::EntryType::Regular))
            .collect();
        t.push((bad, b"x".to_vec(), tar::EntryType::Regular));
        match read(&raw_tar(&t)) {
            Err(BundleError::PathTraversal(p)) => assert_eq!(p.as_bytes(), bad),
            other => panic!("{other:?}"),
        }
    }
    // A symlink member.
    let mut t: Vec<(&[u8], Vec<u8>, tar::EntryType)> = ms
        .iter()
        .map(|(n, d)| (n.as_bytes(), d.clone(), tar::EntryType::Regular))
        .collect();
    t.insert(1, (b"keys.txt", vec![], tar::EntryType::Symlink));
    assert!(matches!(read(&raw_tar(&t)), Err(BundleError::NotRegularFile(n)) if n == KEYS));

    // Unknown member.
    let mut m2 = ms.clone();
    m2.push(("notes.txt".into(), b"hi".to_vec()));
    assert!(matches!(read(&rebuild(&m2)), Err(BundleError::UnknownMember(n)) if n == "notes.txt"));
    let mut m2 = ms.clone();
    m2.push(("checkpoints/007.note".into(), b"hi".to_vec()));
    assert!(matches!(
        read(&rebuild(&m2)),
        Err(BundleError::UnknownMember(_))
    ));

    // Duplicate member.
    let mut m2 = ms.clone();
    m2.push(ms[1].clone());
    assert!(matches!(read(&rebuild(&m2)), Err(BundleError::DuplicateMember(n)) if n == KEYS));

    // Missing members.
    for missing in [MANIFEST, KEYS, FRONTIER, ENTRIES, "checkpoints/10.note"] {
        let m2: Vec<_> = ms.iter().filter(|(n, _)| n != missing).cloned().collect();
        match read(&rebuild(&m2)) {
            Err(BundleError::MissingMember(n)) => assert_eq!(n, missing),
            other => panic!("{missing}: {other:?}"),
        }
    }

    // A member whose bytes changed after the manifest was written.
    for target in [ENTRIES, KEYS, FRONTIER, "checkpoints/15.note"] {
        let mut m2 = ms.clone();
        let slot = m2.iter_mut().find(|(n, _)| n == target).unwrap();
        slot.1[0] ^= 1;
        match read(&rebuild(&m2)) {
            Err(BundleError::HashMismatch(n)) => assert_eq!(n, target),
            other => panic!("{target}: {other:?}"),
        }
    }

    // Over the limit: whole archive, and a member declared too big.
    let bytes = g.to_bytes().unwrap();
    assert!(matches!(
        Bundle::read_from(bytes.as_slice(), 4096),
        Err(BundleError::TooLarge(..))
    ));
    assert!(Bundle::read_from(bytes.as_slice(), bytes.len() as u64).is_ok());

    // Malformed manifest.
    let mut m2 = ms.clone();
    m2[0].1 = b"{\"format\":1}".to_vec();
    assert!(
        matches!(read(&rebuild(&m2)), Err(BundleError::Malformed { member, .. }) if member == MANIFEST)
    );

    // Garbage and empty input.
    assert!(read(b"").is_err());
    assert!(read(&[0u8; 1024]).is_err());
    assert!(read(b"hello world").is_err());
}

/// The bundle writer (member by member, so the server can stream it) gives
/// exactly the bytes the tar crate's builder gives for the same members,
/// views included.
#[test]
fn writing_member_by_member_equals_the_tar_builder() {
    let mut b = good();
    b.views.insert(
        warden_tlog::bundle::CSV_VIEW.to_owned(),
        warden_tlog::export::to_csv(&b.entries).unwrap(),
    );
    b.views.insert(
        warden_tlog::bundle::OCSF_VIEW.to_owned(),
        warden_tlog::export::to_ocsf(&b.entries).unwrap(),
    );
    let written = b.to_bytes().unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in members(&b) {
        let mut h = tar::Header::new_ustar();
        h.set_path(&name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        builder.append(&h, data.as_slice()).unwrap();
    }
    assert_eq!(written, builder.into_inner().unwrap());
    let total: u64 = members(&b)
        .iter()
        .map(|(_, d)| warden_tlog::bundle::member_len(d.len() as u64))
        .sum::<u64>()
        + warden_tlog::bundle::ARCHIVE_END.len() as u64;
    assert_eq!(written.len() as u64, total);
}
