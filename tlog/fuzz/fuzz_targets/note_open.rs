//! Arbitrary bytes as a signed note, a checkpoint body and a verifier key:
//! parsing and opening must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_tlog::note::{Checkpoint, NoteVerifier, open_bytes};

// The published example key of golang.org/x/mod/sumdb/note.
const PETER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

fuzz_target!(|data: &[u8]| {
    let Ok(peter) = NoteVerifier::from_vkey(PETER) else {
        return;
    };
    let mut verifiers = vec![peter];
    // A first line that is a verifier key is trusted too.
    if let Some(line) = data.split(|&b| b == b'\n').next()
        && let Ok(s) = std::str::from_utf8(line)
        && let Ok(v) = NoteVerifier::from_vkey(s)
    {
        verifiers.push(v);
    }
    if let Ok((body, _)) = open_bytes(data, &verifiers) {
        let _ = Checkpoint::parse_body(&body);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Checkpoint::parse_body(s);
    }
});
