//! Arbitrary bytes as a bundle archive: reading and verifying must never
//! panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_tlog::bundle::Bundle;
use warden_tlog::note::NoteVerifier;
use warden_tlog::verify::{Trust, verify_bundle};

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = Bundle::read_from(data, 1 << 20) else {
        return;
    };
    // Trust the bundle's own first key, to reach the entry checks; and by
    // fingerprint and key id, to exercise key selection.
    if let Some(Ok(v)) = bundle.keys.first().map(|k| NoteVerifier::from_vkey(k)) {
        let _ = verify_bundle(&bundle, &Trust::Fingerprint(v.fingerprint()));
        let _ = verify_bundle(&bundle, &Trust::Fingerprint(v.key_id_hex()));
        let _ = verify_bundle(&bundle, &Trust::Key(v));
    }
    let _ = verify_bundle(&bundle, &Trust::Fingerprint("00".repeat(32)));
    let _ = bundle.to_bytes();
});
