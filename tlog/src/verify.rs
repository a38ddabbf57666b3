//! Offline verification of a bundle, and the reusable entry checks behind
//! it (for the server's live verification).
//!
//! [`verify_bundle`] runs these checks in order and stops at the first
//! failure:
//!
//! 1. the manifest's format is [`FORMAT`] and its range is sane;
//! 2. the trusted key is resolved ([`Trust`]);
//! 3. every checkpoint note opens under the trusted key, is a checkpoint
//!    body, names the manifest's origin and the size in its member name,
//!    and lies in `first_seq..=end_seq`; the newest is `end_seq`;
//! 4. the frontier's size is `first_seq` and it knows its last leaf hash;
//! 5. each entry line, in order ([`EntryChecker`]): UTF-8, a JSON object
//!    whose `seq` is the next one (a missing, duplicate or reordered row
//!    names the seq expected there), whose `log` is the manifest's (a line
//!    spliced from another log is named), whose `prev` is the leaf hash of
//!    the line before (for the first line, the frontier's last leaf hash),
//!    and which is canonical JSON;
//! 6. the leaf hashes appended to the frontier give, at each checkpoint's
//!    size, that checkpoint's root (which also proves every checkpoint
//!    consistent with the ones before);
//! 7. the entries end exactly at `end_seq` (a truncated tail names the
//!    first missing seq; lines past the newest checkpoint are refused);
//! 8. derived views, if present, equal the ones recomputed from the
//!    entries.
//!
//! `first_bad_seq` names the first bad entry. When a `prev` does not match,
//! the entry *before* it is named (it no longer hashes to what its
//! successor recorded: it was altered, or the successor's `prev` was). When
//! the hash chain is intact but a root differs, the last entry of the
//! failing checkpoint's range is named, and the reason says why.

use serde::Serialize;

use crate::bundle::{Bundle, CSV_VIEW, FORMAT, Manifest, OCSF_VIEW};
use crate::canonical::parse_entry;
use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{Checkpoint, NoteVerifier, open};

/// Which key the auditor trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// This exact key.
    Key(NoteVerifier),
    /// The key in the bundle's `keys.txt` with this fingerprint: the
    /// lowercase hex SHA-256 of the public key (64 digits, optionally
    /// prefixed `sha256:`), or the 8-hex-digit key id. A key id is only 32
    /// bits and anyone can make a key with a given id: prefer the full
    /// fingerprint, or the key itself.
    Fingerprint(String),
}

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check passed.
    Ok,
    /// A check failed; see `reason`.
    Failed,
}

/// What [`verify_bundle`] did and found, for people (`checks`) and
/// programs (the other fields). Serializes to JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Transcript {
    /// Ok or Failed.
    pub verdict: Verdict,
    /// The manifest's log.
    pub log: String,
    /// The manifest's origin.
    pub origin: String,
    /// The manifest's first seq.
    pub first_seq: u64,
    /// The manifest's end seq (exclusive).
    pub end_seq: u64,
    /// How many entry lines passed every check.
    pub entries_checked: u64,
    /// Sizes of the checkpoints whose signature and root both verified.
    pub checkpoints_verified: Vec<u64>,
    /// Fingerprint of the key used.
    pub key_fingerprint: Option<String>,
    /// The first bad entry, when the failure is an entry's.
    pub first_bad_seq: Option<u64>,
    /// Why it failed.
    pub reason: Option<String>,
    /// The steps, in order, in plain words.
    pub checks: Vec<String>,
}

/// A failed entry check: the entry at fault (when one is) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Fault {
    /// The first bad entry's seq.
    pub seq: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

impl Fault {
    fn at(seq: u64, reason: String) -> Fault {
        Fault {
            seq: Some(seq),
            reason,
        }
    }
    fn general(reason: String) -> Fault {
        Fault { seq: None, reason }
    }
}

/// Checks entry lines one at a time against the hash chain and appends
/// their leaf hashes to a frontier: the per-entry half of verification,
/// shared by [`verify_bundle`] and live verification.
#[derive(Debug, Clone)]
pub struct EntryChecker {
    log: String,
    frontier: Frontier,
    prev: Hash,
    start: u64,
}

impl EntryChecker {
    /// Starts after the entries summarized by `frontier` (which must know
    /// its last leaf hash), for the log `log`.
    pub fn new(log: &str, frontier: Frontier) -> Result<EntryChecker, Fault> {
        let prev = frontier.last_leaf().ok_or_else(|| {
            Fault::general(
                "the frontier does not carry the last leaf hash, so the first entry's prev cannot be checked"
                    .into(),
            )
        })?;
        Ok(EntryChecker {
            log: log.to_owned(),
            start: frontier.size(),
            frontier,
            prev,
        })
    }

    /// The seq the next line must have.
    pub fn next_seq(&self) -> u64 {
        self.frontier.size()
    }

    /// The frontier so far.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Checks one line (without its newline) and appends its leaf hash,
    /// which it returns.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Hash, Fault> {
        let expected = self.frontier.size();
        let head =
            parse_entry(line).map_err(|e| Fault::at(expected, format!("entry {expected}: {e}")))?;
        if head.seq != expected {
            let what = if head.seq > expected {
                format!(
                    "entry {expected} is missing: the line in its place has seq {}",
                    head.seq
                )
            } else {
                format!(
                    "entry {expected} is missing: the line in its place repeats seq {} (a duplicated or reordered line)",
                    head.seq
                )
            };
            return Err(Fault::at(expected, what));
        }
        if head.log != self.log {
            return Err(Fault::at(
                expected,
                format!(
                    "entry {expected} belongs to log {:?}, not {:?}: it was spliced in from another log",
                    head.log, self.log
                ),
            ));
        }
        if head.prev != self.prev {
            return Err(if expected == self.start {
                Fault::at(
                    expected,
                    format!(
                        "entry {expected}'s prev ({}) is not the last leaf hash of the frontier ({}): entry {expected} or frontier.bin was altered",
                        hex::encode(head.prev),
                        hex::encode(self.prev)
                    ),
                )
            } else {
                let before = expected - 1;
                Fault::at(
                    before,
                    format!(
                        "entry {expected}'s prev ({}) is not the hash of entry {before} ({}): entry {before} was altered (or entry {expected}'s prev field was)",
                        hex::encode(head.prev),
                        hex::encode(self.prev)
                    ),
                )
            });
        }
        if let Some(why) = head.non_canonical {
            return Err(Fault::at(
                expected,
                format!(
                    "entry {expected} is not canonical JSON ({why}): it was re-serialized or edited"
                ),
            ));
        }
        let h = leaf_hash(line);
        self.frontier
            .try_push(h)
            .map_err(|e| Fault::at(expected, e.to_string()))?;
        self.prev = h;
        Ok(h)
    }
}

/// What [`verify_entries_against`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntriesReport {
    /// Lines that passed every check.
    pub entries_checked: u64,
    /// Checkpoint sizes whose root matched.
    pub roots_matched: Vec<u64>,
    /// The frontier after the last line that passed.
    pub frontier: Frontier,
    /// The first failure, if any (checking stops there).
    pub fault: Option<Fault>,
}

/// Splits `entries.jsonl` into lines without their newlines; a last line
/// without a newline is returned as `Err(line)`.
fn lines(entries: &[u8]) -> impl Iterator<Item = Result<&[u8], &[u8]>> {
    entries
        .split_inclusive(|&b| b == b'\n')
        .map(|chunk| chunk.strip_suffix(b"\n").ok_or(chunk))
}

/// Checks JSON-lines `entries` following `frontier` for log `log`, and
/// that at each of `checkpoints`' sizes the root equals the checkpoint's
/// (checkpoints must already be authenticated, and are taken in size
/// order). Each line must end with a newline. Checkpoints whose size is
/// beyond the last line are not checked (the caller decides whether that
/// is a truncation); checkpoints below the frontier's size fail.
pub fn verify_entries_against(
    log: &str,
    frontier: Frontier,
    entries: &[u8],
    checkpoints: &[Checkpoint],
) -> EntriesReport {
    let mut v = EntriesVerifier::new(log, frontier, checkpoints);
    for line in lines(entries) {
        if !v.push(line) {
            break;
        }
    }
    v.report()
}

/// [`verify_entries_against`], a line at a time: for entries read from
/// storage page by page, never all in memory.
#[derive(Debug, Clone)]
pub struct EntriesVerifier {
    cps: Vec<Checkpoint>,
    next_cp: usize,
    matched: Vec<u64>,
    start: u64,
    /// The checker, or the frontier given when it could not be made.
    checker: Result<EntryChecker, Frontier>,
    checked: u64,
    fault: Option<Fault>,
}

impl EntriesVerifier {
    /// Starts after `frontier`, for log `log`, checking roots at
    /// `checkpoints`' sizes (authenticated already).
    pub fn new(log: &str, frontier: Frontier, checkpoints: &[Checkpoint]) -> Self {
        let mut cps = checkpoints.to_vec();
        cps.sort_by_key(|c| c.size);
        let start = frontier.size();
        let mut v = Self {
            cps,
            next_cp: 0,
            matched: Vec::new(),
            start,
            checker: Err(frontier.clone()),
            checked: 0,
            fault: None,
        };
        if let Some(c) = v.cps.first()
            && c.size < start
        {
            v.fault = Some(Fault::general(format!(
                "checkpoint {} is older than the first entry checked ({start})",
                c.size
            )));
            return v;
        }
        match EntryChecker::new(log, frontier) {
            Ok(c) => v.checker = Ok(c),
            Err(f) => {
                v.fault = Some(f);
                return v;
            }
        }
        if let Err(f) = v.check_roots() {
            v.fault = Some(f);
        }
        v
    }

    /// Checks the roots of the checkpoints whose size has been reached.
    fn check_roots(&mut self) -> Result<(), Fault> {
        let Ok(checker) = &self.checker else {
            return Ok(());
        };
        while let Some(c) = self.cps.get(self.next_cp) {
            if c.size != checker.next_seq() {
                break;
            }
            if checker.frontier().root() != c.root {
                if c.size == self.start {
                    return Err(Fault::general(format!(
                        "frontier.bin does not hash to checkpoint {}'s signed root: the entries before the bundle were altered, or frontier.bin was",
                        c.size
                    )));
                }
                let last = c.size.checked_sub(1);
                let from = self.matched.last().copied().unwrap_or(self.start);
                return Err(Fault {
                    seq: last,
                    reason: format!(
                        "the entries up to seq {} do not hash to checkpoint {}'s signed root; the hash chain is intact, so an entry in {from}..{} was altered and the chain rewritten after it, or frontier.bin is wrong (the last entry of the range is named)",
                        c.size.saturating_sub(1),
                        c.size,
                        c.size
                    ),
                });
            }
            self.matched.push(c.size);
            self.next_cp += 1;
        }
        Ok(())
    }

    /// Checks the next line (without its newline); `Err(line)` is a last
    /// line that had no newline. Returns false once a check has failed
    /// (later lines are ignored).
    pub fn push(&mut self, line: Result<&[u8], &[u8]>) -> bool {
        if self.fault.is_some() {
            return false;
        }
        let Ok(checker) = &mut self.checker else {
            return false;
        };
        let seq = checker.next_seq();
        let line = match line {
            Ok(l) => l,
            Err(_) => {
                self.fault = Some(Fault::at(
                    seq,
                    format!("entry {seq} does not end with a newline: the file was cut short"),
                ));
                return false;
            }
        };
        if let Err(f) = checker.push_line(line) {
            self.fault = Some(f);
            return false;
        }
        self.checked += 1;
        if let Err(f) = self.check_roots() {
            self.fault = Some(f);
            return false;
        }
        true
    }

    /// What was established.
    pub fn report(self) -> EntriesReport {
        EntriesReport {
            entries_checked: self.checked,
            roots_matched: self.matched,
            frontier: match self.checker {
                Ok(c) => c.frontier().clone(),
                Err(f) => f,
            },
            fault: self.fault,
        }
    }
}

struct Run {
    t: Transcript,
}

impl Run {
    fn check(&mut self, s: String) {
        self.t.checks.push(s);
    }
    fn failed(self, seq: Option<u64>, reason: String) -> Box<Transcript> {
        Box::new(self.fail(seq, reason))
    }
    fn fail(mut self, seq: Option<u64>, reason: String) -> Transcript {
        self.t.checks.push(format!("FAILED: {reason}"));
        self.t.verdict = Verdict::Failed;
        self.t.first_bad_seq = seq;
        self.t.reason = Some(reason);
        self.t
    }
}

fn resolve_trust(keys: &[String], trusted: &Trust) -> Result<(NoteVerifier, String), String> {
    match trusted {
        Trust::Key(v) => {
            let listed = keys.iter().any(|k| *k == v.vkey());
            Ok((
                v.clone(),
                format!(
                    "trusted key {} (fingerprint {}), {} keys.txt",
                    v.vkey(),
                    v.fingerprint(),
                    if listed { "listed in" } else { "not listed in" }
                ),
            ))
        }
        Trust::Fingerprint(fp) => {
            let want = fp.trim().to_ascii_lowercase();
            let want = want.strip_prefix("sha256:").unwrap_or(&want).to_owned();
            let is_hex = want.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_hex || !(want.len() == 64 || want.len() == 8) {
                return Err(format!(
                    "{fp:?} is neither a 64-hex-digit key fingerprint nor an 8-hex-digit key id"
                ));
            }
            let mut found: Vec<NoteVerifier> = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                let v = NoteVerifier::from_vkey(k)
                    .map_err(|e| format!("keys.txt line {}: {e}", i + 1))?;
                let hit = if want.len() == 64 {
                    v.fingerprint() == want
                } else {
                    v.key_id_hex() == want
                };
                if hit && !found.contains(&v) {
                    found.push(v);
                }
            }
            match found.as_slice() {
                [] => Err(format!("no key in keys.txt has fingerprint {want}")),
                [v] => Ok((
                    v.clone(),
                    format!(
                        "trusted key {} from keys.txt, chosen by {} {want}",
                        v.vkey(),
                        if want.len() == 64 {
                            "fingerprint"
                        } else {
                            "32-bit key id (weak: prefer the full fingerprint)"
                        }
                    ),
                )),
                _ => Err(format!("several keys in keys.txt match {want}: ambiguous")),
            }
        }
    }
}

/// Verifies a bundle against a trusted key; never panics. See the module
/// docs for the checks.
pub fn verify_bundle(bundle: &Bundle, trusted: &Trust) -> Transcript {
    let mut v = match StreamVerification::start(
        &bundle.manifest,
        &bundle.keys,
        &bundle.checkpoints,
        &bundle.frontier,
        trusted,
    ) {
        Ok(v) => v,
        Err(t) => return *t,
    };
    for line in lines(&bundle.entries) {
        if !v.entries.push(line) {
            break;
        }
    }
    let mut run = match v.conclude() {
        Ok(run) => run,
        Err(t) => return *t,
    };
    // 8. Derived views.
    for (name, data) in &bundle.views {
        let fresh = match name.as_str() {
            CSV_VIEW => crate::export::to_csv(&bundle.entries),
            OCSF_VIEW => crate::export::to_ocsf(&bundle.entries),
            other => return run.fail(None, format!("unknown view {other:?}")),
        };
        match fresh {
            Ok(v) if v == *data => run.check(format!("{name} matches the entries")),
            Ok(_) => {
                return run.fail(
                    None,
                    format!("{name} differs from the view recomputed from entries.jsonl"),
                );
            }
            Err(e) => return run.fail(None, format!("{name}: cannot recompute: {e}")),
        }
    }
    run.check("verdict: OK".into());
    run.t
}

/// [`verify_bundle`] with the entries given a line at a time, for a log too
/// large to hold (the server's live verification reads them page by page):
/// the same checks in the same order, and the same transcript, as for a
/// bundle of those members without derived views.
pub struct StreamVerification {
    run: Run,
    entries: EntriesVerifier,
    end_seq: u64,
    log: String,
}

impl StreamVerification {
    /// Checks the manifest, the trusted key, the checkpoints and the
    /// frontier (steps 1–4); `Err` is the failed transcript.
    pub fn start(
        m: &Manifest,
        keys: &[String],
        checkpoints_in: &[(u64, String)],
        frontier: &Frontier,
        trusted: &Trust,
    ) -> Result<StreamVerification, Box<Transcript>> {
        let mut run = Run {
            t: Transcript {
                verdict: Verdict::Ok,
                log: m.log.clone(),
                origin: m.origin.clone(),
                first_seq: m.first_seq,
                end_seq: m.end_seq,
                entries_checked: 0,
                checkpoints_verified: Vec::new(),
                key_fingerprint: None,
                first_bad_seq: None,
                reason: None,
                checks: Vec::new(),
            },
        };

        // 1. Manifest.
        if m.format != FORMAT {
            return Err(run.failed(
                None,
                format!("manifest format is {:?}, expected {FORMAT:?}", m.format),
            ));
        }
        if m.first_seq > m.end_seq {
            return Err(run.failed(
                None,
                format!(
                    "manifest range is empty backwards: first_seq {} > end_seq {}",
                    m.first_seq, m.end_seq
                ),
            ));
        }
        run.check(format!(
            "manifest: format {FORMAT}, log {:?}, origin {:?}, entries {}..{}",
            m.log, m.origin, m.first_seq, m.end_seq
        ));

        // 2. Trust.
        let verifier = match resolve_trust(keys, trusted) {
            Ok((v, how)) => {
                run.check(how);
                v
            }
            Err(reason) => return Err(run.failed(None, reason)),
        };
        run.t.key_fingerprint = Some(verifier.fingerprint());

        // 3. Checkpoints.
        if checkpoints_in.is_empty() {
            return Err(run.failed(
                None,
                "the bundle has no checkpoint: nothing in it is signed".into(),
            ));
        }
        let mut checkpoints: Vec<Checkpoint> = Vec::with_capacity(checkpoints_in.len());
        let verifiers = [verifier];
        for (size, note) in checkpoints_in {
            let body = match open(note, &verifiers) {
                Ok((body, _)) => body,
                Err(e) => return Err(run.failed(None, format!("checkpoint {size}: {e}"))),
            };
            let cp = match Checkpoint::parse_body(&body) {
                Ok(c) => c,
                Err(e) => return Err(run.failed(None, format!("checkpoint {size}: {e}"))),
            };
            if cp.origin != m.origin {
                return Err(run.failed(
                    None,
                    format!(
                        "checkpoint {size} is for origin {:?}, not the manifest's {:?}",
                        cp.origin, m.origin
                    ),
                ));
            }
            if cp.size != *size {
                return Err(run.failed(
                    None,
                    format!(
                        "checkpoints/{size}.note holds a checkpoint of size {}",
                        cp.size
                    ),
                ));
            }
            if cp.size < m.first_seq || cp.size > m.end_seq {
                return Err(run.failed(
                    None,
                    format!(
                        "checkpoint {size} lies outside the bundle's range {}..={}",
                        m.first_seq, m.end_seq
                    ),
                ));
            }
            if checkpoints.last().is_some_and(|p| p.size >= cp.size) {
                return Err(run.failed(
                    None,
                    format!("checkpoint {size} is duplicated or out of order"),
                ));
            }
            checkpoints.push(cp);
        }
        let newest = checkpoints.last().map(|c| c.size).unwrap_or(0);
        if newest != m.end_seq {
            return Err(run.failed(
                None,
                format!(
                    "manifest end_seq is {} but the newest checkpoint has size {newest}",
                    m.end_seq
                ),
            ));
        }
        run.check(format!(
            "{} checkpoint signature(s) verified, origin {:?}, sizes {}..={}",
            checkpoints.len(),
            m.origin,
            checkpoints.first().map(|c| c.size).unwrap_or(0),
            newest
        ));

        // 4. Frontier.
        if frontier.size() != m.first_seq {
            return Err(run.failed(
                None,
                format!(
                    "frontier.bin summarizes {} entries, but the bundle starts at seq {}",
                    frontier.size(),
                    m.first_seq
                ),
            ));
        }
        if frontier.last_leaf().is_none() {
            return Err(run.failed(
                None,
                "frontier.bin lacks the last leaf hash needed to check the first entry's prev"
                    .into(),
            ));
        }
        run.check(format!(
            "frontier: {} earlier entries in {} subtree hash(es)",
            m.first_seq,
            frontier.hashes().len()
        ));

        Ok(StreamVerification {
            run,
            entries: EntriesVerifier::new(&m.log, frontier.clone(), &checkpoints),
            end_seq: m.end_seq,
            log: m.log.clone(),
        })
    }

    /// Checks the next entry line (without its newline); false once a check
    /// has failed (later lines are ignored).
    pub fn push_line(&mut self, line: &[u8]) -> bool {
        self.entries.push(Ok(line))
    }

    /// Steps 5–7 once every line is in: the entries' faults, the tail.
    fn conclude(self) -> Result<Run, Box<Transcript>> {
        let (mut run, end_seq, log) = (self.run, self.end_seq, self.log);
        // 5–6. Entries and roots.
        let report = self.entries.report();
        run.t.entries_checked = report.entries_checked;
        run.t.checkpoints_verified = report.roots_matched.clone();
        if let Some(f) = report.fault {
            return Err(run.failed(f.seq, f.reason));
        }
        let end = report.frontier.size();
        // 7. The tail.
        if end < end_seq {
            return Err(run.failed(
            Some(end),
            format!(
                "the entries stop at seq {end} but checkpoint {} covers up to seq {}: entry {end} and after are missing (truncated)",
                end_seq,
                end_seq.saturating_sub(1)
            ),
        ));
        }
        if end > end_seq {
            return Err(run.failed(
            Some(end_seq),
            format!(
                "entries from seq {} on are past the newest checkpoint ({}), so no signature covers them",
                end_seq, end_seq
            ),
        ));
        }
        run.check(format!(
            "{} entries: seq contiguous, log {:?}, hash chain intact, canonical JSON",
            report.entries_checked, log
        ));
        run.check(format!(
        "roots recomputed from frontier.bin and the entries match {} checkpoint(s), which are therefore consistent with each other",
        report.roots_matched.len()
    ));

        Ok(run)
    }

    /// The transcript.
    pub fn finish(self) -> Transcript {
        match self.conclude() {
            Ok(mut run) => {
                run.check("verdict: OK".into());
                run.t
            }
            Err(t) => *t,
        }
    }
}
