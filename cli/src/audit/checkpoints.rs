//! Signed checkpoints: print the newest one, check an entry's inclusion
//! proof against one locally, and print the key they are signed with.

use anyhow::{anyhow, bail};
use hyper::Method as M;
use serde_json::{Value, json};
use warden_api::{AuditCheckpoint, AuditProof};
use warden_tlog::canonical::parse_entry;
use warden_tlog::merkle::{Hash, leaf_hash, verify_inclusion};
use warden_tlog::note::{Checkpoint, NoteVerifier, open};

use super::args::{TrustArgs, fingerprint_arg, vkey_arg};
use crate::ctx::Ctx;
use crate::output;

/// Opens a served checkpoint's note under `key` and checks that it says
/// what the answer's fields say.
fn open_checkpoint(c: &AuditCheckpoint, key: &NoteVerifier) -> Result<Checkpoint, String> {
    let (body, _) = open(&c.note, std::slice::from_ref(key)).map_err(|e| {
        format!(
            "the checkpoint's signature does not verify under key {}: {e}",
            key.vkey()
        )
    })?;
    let cp = Checkpoint::parse_body(&body).map_err(|e| format!("the signed note: {e}"))?;
    if i64::try_from(cp.size).ok() != Some(c.size)
        || !hex::encode(cp.root).eq_ignore_ascii_case(&c.root)
    {
        return Err(format!(
            "the signed note says size {} root {}, but the answer says size {} root {}",
            cp.size,
            hex::encode(cp.root),
            c.size,
            output::printable(&c.root)
        ));
    }
    Ok(cp)
}

/// The verifier key the server sent along with a checkpoint.
pub(super) fn served_key(c: &AuditCheckpoint) -> anyhow::Result<NoteVerifier> {
    NoteVerifier::from_vkey(&c.key)
        .map_err(|e| anyhow!("the server's verifier key does not parse: {e}"))
}

/// `audit checkpoint`: prints the newest signed checkpoint once it opens
/// under the served key.
pub(super) async fn checkpoint(ctx: &Ctx, log: &str) -> anyhow::Result<()> {
    let (c, raw): (AuditCheckpoint, _) = ctx
        .call(M::GET, &format!("/api/v1/audit/{log}/checkpoint"), None)
        .await?;
    // Only a note that opens is printed (it is also free of control
    // characters, then).
    open_checkpoint(&c, &served_key(&c)?).map_err(|e| anyhow!("{e}"))?;
    ctx.print(&raw, || print!("{}", c.note))
}

/// What a checked inclusion proof established.
#[derive(Debug)]
pub(super) struct ProofReport {
    pub(super) tree_size: u64,
    root: Hash,
    leaf: Hash,
    path_len: usize,
}

/// A hex SHA-256 hash from an answer.
fn hash_arg(what: &str, s: &str) -> Result<Hash, String> {
    hex::decode(s)
        .ok()
        .and_then(|b| Hash::try_from(b.as_slice()).ok())
        .ok_or_else(|| format!("{what} is not a 32-byte hex hash"))
}

/// Checks a served inclusion proof of entry `seq` of `log` under `key`:
/// the note's signature, the entry (its seq, its log, its leaf hash) and
/// the audit path to the signed root.
pub(super) fn check_proof(
    p: &AuditProof,
    log: &str,
    seq: u64,
    key: &NoteVerifier,
) -> Result<ProofReport, String> {
    if u64::try_from(p.seq).ok() != Some(seq) || p.log != log {
        return Err(format!(
            "asked for entry {seq} of {log}, the answer is for entry {} of {}",
            p.seq,
            output::printable(&p.log)
        ));
    }
    let cp = open_checkpoint(&p.checkpoint, key)?;
    let leaf = leaf_hash(p.entry.as_bytes());
    if hash_arg("the leaf hash", &p.leaf_hash)? != leaf {
        return Err(format!(
            "the entry does not hash to the leaf hash given ({}; it hashes to {})",
            output::printable(&p.leaf_hash),
            hex::encode(leaf)
        ));
    }
    let head = parse_entry(p.entry.as_bytes()).map_err(|e| format!("the entry: {e}"))?;
    if head.seq != seq || head.log != log {
        return Err(format!(
            "the entry is seq {} of log {}, not seq {seq} of {log}",
            head.seq,
            output::printable(&head.log)
        ));
    }
    let path = p
        .proof
        .iter()
        .enumerate()
        .map(|(i, h)| hash_arg(&format!("proof hash {i}"), h))
        .collect::<Result<Vec<Hash>, _>>()?;
    verify_inclusion(&leaf, seq, cp.size, &path, &cp.root).map_err(|e| {
        format!(
            "the audit path does not lead from entry {seq} to the signed root of size {}: {e}",
            cp.size
        )
    })?;
    Ok(ProofReport {
        tree_size: cp.size,
        root: cp.root,
        leaf,
        path_len: path.len(),
    })
}

/// `audit proof`: fetches an inclusion proof and checks it here.
pub(super) async fn proof(ctx: &Ctx, log: &str, seq: u64, pin: &TrustArgs) -> anyhow::Result<()> {
    // Check the pins before asking.
    let pinned_key = pin.key.as_deref().map(vkey_arg).transpose()?;
    let pinned_fp = pin
        .fingerprint
        .as_deref()
        .map(fingerprint_arg)
        .transpose()?;
    let (p, _): (AuditProof, _) = ctx
        .call(
            M::GET,
            &format!("/api/v1/audit/{log}/proof?seq={seq}"),
            None,
        )
        .await?;
    let key = match pinned_key {
        Some(k) => k,
        None => served_key(&p.checkpoint)?,
    };
    if let Some(fp) = &pinned_fp
        && key.fingerprint() != *fp
    {
        bail!(
            "NOT VERIFIED: the server signs with key {} (fingerprint {}), not the one with fingerprint {fp}",
            key.vkey(),
            key.fingerprint()
        );
    }
    let r = check_proof(&p, log, seq, &key).map_err(|e| anyhow!("NOT VERIFIED: {e}"))?;
    let entry: Value = serde_json::from_str(&p.entry).unwrap_or(Value::Null);
    let raw = json!({
        "verified": true,
        "log": log,
        "seq": seq,
        "tree_size": r.tree_size,
        "root": hex::encode(r.root),
        "leaf_hash": hex::encode(r.leaf),
        "proof_hashes": r.path_len,
        "key": key.vkey(),
        "key_fingerprint": key.fingerprint(),
        "pinned": pinned_key_or_fp(pin),
        "entry": entry,
    });
    ctx.print(&raw, || {
        println!(
            "OK: entry {seq} of {log} is in the signed checkpoint of size {}",
            r.tree_size
        );
        println!("  entry:     {}", output::audit_entry(&entry).trim_start());
        println!("  leaf hash: {}", hex::encode(r.leaf));
        println!(
            "  root:      {} (audit path of {} hashes)",
            hex::encode(r.root),
            r.path_len
        );
        println!(
            "  key:       {} (fingerprint {}{})",
            key.vkey(),
            key.fingerprint(),
            if pinned_key_or_fp(pin) {
                ", as pinned"
            } else {
                ", as served: pin it with --fingerprint"
            }
        );
    })
}

/// Whether the user pinned a key.
fn pinned_key_or_fp(pin: &TrustArgs) -> bool {
    pin.key.is_some() || pin.fingerprint.is_some()
}

/// `audit key`: the server's verifier key, checked against its
/// fingerprint.
pub(super) async fn key(ctx: &Ctx) -> anyhow::Result<()> {
    let (raw, _): (Value, _) = ctx.call(M::GET, "/api/v1/audit-key", None).await?;
    let vkey = raw["key"].as_str().unwrap_or_default();
    let fingerprint = raw["fingerprint"].as_str().unwrap_or_default();
    let v = NoteVerifier::from_vkey(vkey)
        .map_err(|e| anyhow!("the server's verifier key does not parse: {e}"))?;
    if v.fingerprint() != fingerprint {
        bail!(
            "the server's fingerprint {} is not that of its key ({})",
            output::printable(fingerprint),
            v.fingerprint()
        );
    }
    ctx.print(&raw, || {
        println!("key:         {vkey}");
        println!("fingerprint: {fingerprint}");
    })
}

#[cfg(test)]
mod tests {
    use warden_tlog::merkle::inclusion_proof;
    use warden_tlog::note::NoteSigner;

    use super::*;

    /// A served proof of entry `seq` among `n` entries of log `acme`.
    fn served_proof(seq: u64, n: u64) -> (AuditProof, NoteSigner) {
        let (signer, _) = NoteSigner::generate("warden-audit").unwrap();
        let mut prev = [0u8; 32];
        let mut entries = Vec::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let e = format!(
                "{{\"action\":\"secret.read\",\"log\":\"acme\",\"prev\":\"{}\",\"seq\":{i}}}",
                hex::encode(prev)
            );
            prev = leaf_hash(e.as_bytes());
            leaves.push(prev);
            entries.push(e);
        }
        let root = warden_tlog::merkle::root_of(&leaves);
        let body = Checkpoint {
            origin: "warden/audit/acme".into(),
            size: n,
            root,
        }
        .body();
        let proof = inclusion_proof(&leaves, seq, n).unwrap();
        let p = AuditProof {
            log: "acme".into(),
            seq: seq as i64,
            entry: entries[seq as usize].clone(),
            leaf_hash: hex::encode(leaves[seq as usize]),
            proof: proof.iter().map(hex::encode).collect(),
            checkpoint: AuditCheckpoint {
                log: "acme".into(),
                size: n as i64,
                root: hex::encode(root),
                note: signer.sign(&body).unwrap(),
                key: signer.verifier_key(),
            },
        };
        (p, signer)
    }

    #[test]
    fn proofs_are_checked_locally() {
        let (p, signer) = served_proof(3, 7);
        let key = signer.verifier();
        let r = check_proof(&p, "acme", 3, &key).unwrap();
        assert_eq!((r.tree_size, r.path_len), (7, 3));

        let (other, _) = NoteSigner::generate("warden-audit").unwrap();
        let err = check_proof(&p, "acme", 3, &other.verifier()).unwrap_err();
        assert!(err.contains("signature"), "{err}");
        assert!(
            check_proof(&p, "acme", 2, &key)
                .unwrap_err()
                .contains("asked for")
        );
        assert!(check_proof(&p, "globex", 3, &key).is_err());

        let mut bad = p.clone();
        bad.entry = bad.entry.replace("secret.read", "secret.reae");
        assert!(
            check_proof(&bad, "acme", 3, &key)
                .unwrap_err()
                .contains("leaf hash")
        );
        bad.leaf_hash = hex::encode(leaf_hash(bad.entry.as_bytes()));
        let err = check_proof(&bad, "acme", 3, &key).unwrap_err();
        assert!(err.contains("audit path"), "{err}");

        let mut bad = p.clone();
        bad.proof.swap(0, 1);
        assert!(
            check_proof(&bad, "acme", 3, &key)
                .unwrap_err()
                .contains("audit path")
        );
        let mut bad = p.clone();
        bad.proof.pop();
        assert!(check_proof(&bad, "acme", 3, &key).is_err());
        let mut bad = p.clone();
        bad.proof[0] = "zz".into();
        assert!(
            check_proof(&bad, "acme", 3, &key)
                .unwrap_err()
                .contains("proof hash 0")
        );
        let mut bad = p;
        bad.checkpoint.size = 8;
        assert!(
            check_proof(&bad, "acme", 3, &key)
                .unwrap_err()
                .contains("size 7")
        );
    }
}
