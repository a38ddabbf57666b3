//! The audit export bundle: one tar archive an auditor verifies offline.
//!
//! Members, in the order [`Bundle::write_to`] writes them:
//!
//! | member | content |
//! |---|---|
//! | `manifest.json` | [`Manifest`]: format, log, origin, range, times, and the SHA-256 of every other member |
//! | `keys.txt` | the log's verifier keys (`name+keyid+base64`), one per line |
//! | `frontier.bin` | the [`Frontier`] of the entries before `first_seq`, with the last leaf hash ([`Frontier::to_bytes`]) |
//! | `checkpoints/<size>.note` | each signed checkpoint in the range, `<size>` in decimal |
//! | `entries.jsonl` | the entries `first_seq..end_seq`, one canonical JSON line each: the exact leaf bytes |
//! | `entries.csv` | optional derived view ([`crate::export::to_csv`]) |
//! | `entries.ocsf.json` | optional derived view ([`crate::export::to_ocsf`]) |
//!
//! Tar headers are deterministic (ustar, mode 0644, uid/gid 0, mtime 0, no
//! user or group names), so the same bundle always gives the same bytes.
//!
//! The manifest's hashes catch accidental damage and name the member at
//! fault; they are not what makes the bundle trustworthy. The signed
//! checkpoints are: [`crate::verify::verify_bundle`] recomputes every root
//! from `frontier.bin` and `entries.jsonl` and checks it against them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use ring::digest;
use serde::{Deserialize, Serialize};

use crate::merkle::Frontier;
use crate::note::parse_decimal;

/// The value of [`Manifest::format`] this crate writes and reads.
pub const FORMAT: &str = "warden-audit-bundle/1";
/// The manifest member.
pub const MANIFEST: &str = "manifest.json";
/// The entries member.
pub const ENTRIES: &str = "entries.jsonl";
/// The verifier keys member.
pub const KEYS: &str = "keys.txt";
/// The frontier member.
pub const FRONTIER: &str = "frontier.bin";
/// The CSV view member.
pub const CSV_VIEW: &str = "entries.csv";
/// The OCSF view member.
pub const OCSF_VIEW: &str = "entries.ocsf.json";
/// The names a derived view may have.
pub const VIEWS: [&str; 2] = [CSV_VIEW, OCSF_VIEW];

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The log's name (`system` or an organization).
    pub log: String,
    /// The checkpoint origin line of the log.
    pub origin: String,
    /// The first entry's `seq`.
    pub first_seq: u64,
    /// One past the last entry's `seq`: the size of the newest checkpoint
    /// included.
    pub end_seq: u64,
    /// When the bundle was made (ns since the Unix epoch; given by the
    /// caller).
    pub created_at_ns: u128,
    /// The lower time bound asked for, if any (informational).
    pub since_ns: Option<u128>,
    /// The upper time bound asked for, if any (informational).
    pub until_ns: Option<u128>,
    /// Lowercase hex SHA-256 of every other member, by member name.
    pub files: BTreeMap<String, String>,
}

/// A bundle in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The manifest ([`Bundle::write_to`] fills in `files`).
    pub manifest: Manifest,
    /// `entries.jsonl`: the entry lines, each ending in `\n`.
    pub entries: Vec<u8>,
    /// The signed checkpoint notes, by tree size.
    pub checkpoints: Vec<(u64, String)>,
    /// Verifier keys, one string each.
    pub keys: Vec<String>,
    /// The frontier at `first_seq`, with its last leaf hash.
    pub frontier: Frontier,
    /// Derived views by member name ([`VIEWS`]).
    pub views: BTreeMap<String, Vec<u8>>,
}

/// Why a bundle could not be written or read. Variants carrying a string
/// name the member at fault.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing the archive failed.
    #[error("bundle I/O: {0}")]
    Io(#[from] io::Error),
    /// The archive or one member is over the size limit.
    #[error("{0} is over the size limit of {1} bytes")]
    TooLarge(String, u64),
    /// A member path that is absolute or climbs out (`..`).
    #[error("member {0:?} has an unsafe path")]
    PathTraversal(String),
    /// A member this format does not have.
    #[error("unknown member {0:?}")]
    UnknownMember(String),
    /// A member present twice.
    #[error("duplicate member {0:?}")]
    DuplicateMember(String),
    /// A link, device, directory or other non-file member.
    #[error("member {0:?} is not a regular file")]
    NotRegularFile(String),
    /// A required member, or one listed in the manifest, is absent.
    #[error("missing member {0:?}")]
    MissingMember(String),
    /// A member present but not listed in the manifest.
    #[error("member {0:?} is not listed in manifest.json")]
    Unlisted(String),
    /// A member whose SHA-256 differs from the manifest's.
    #[error("member {0:?} does not match its SHA-256 in manifest.json")]
    HashMismatch(String),
    /// A member whose content does not parse.
    #[error("member {member:?} is malformed: {reason}")]
    Malformed {
        /// The member.
        member: String,
        /// What is wrong.
        reason: String,
    },
    /// A bundle that cannot be written as given.
    #[error("cannot write the bundle: {0}")]
    Invalid(String),
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// The member name of the checkpoint of tree size `size`.
pub fn checkpoint_member(size: u64) -> String {
    format!("checkpoints/{size}.note")
}

fn malformed(member: &str, reason: impl Into<String>) -> BundleError {
    BundleError::Malformed {
        member: member.to_owned(),
        reason: reason.into(),
    }
}

impl Bundle {
    /// The members other than the manifest, in archive order.
    fn members(&self) -> Result<Vec<(String, Vec<u8>)>, BundleError> {
        let mut out = Vec::new();
        let mut keys = Vec::new();
        for k in &self.keys {
            if k.is_empty() || k.contains('\n') {
                return Err(BundleError::Invalid("a key is empty or spans lines".into()));
            }
            keys.extend_from_slice(k.as_bytes());
            keys.push(b'\n');
        }
        out.push((KEYS.to_owned(), keys));
        out.push((FRONTIER.to_owned(), self.frontier.to_bytes()));
        let mut sizes = BTreeSet::new();
        let mut cps: Vec<&(u64, String)> = self.checkpoints.iter().collect();
        cps.sort_by_key(|(s, _)| *s);
        for (size, note) in cps {
            if !sizes.insert(*size) {
                return Err(BundleError::Invalid(format!(
                    "two checkpoints of size {size}"
                )));
            }
            out.push((checkpoint_member(*size), note.as_bytes().to_vec()));
        }
        out.push((ENTRIES.to_owned(), self.entries.clone()));
        for (name, data) in &self.views {
            if !VIEWS.contains(&name.as_str()) {
                return Err(BundleError::Invalid(format!("unknown view {name:?}")));
            }
            out.push((name.clone(), data.clone()));
        }
        Ok(out)
    }

    /// Writes the bundle as a tar archive and returns the manifest written
    /// (with `files` filled in). Deterministic: the same bundle gives the
    /// same bytes. (A bundle too large to hold is written member by member
    /// with [`member_header`], [`member_padding`] and [`ARCHIVE_END`], which
    /// give the same bytes.)
    pub fn write_to(&self, mut w: impl Write) -> Result<Manifest, BundleError> {
        let members = self.members()?;
        let mut manifest = self.manifest.clone();
        manifest.files = members
            .iter()
            .map(|(name, data)| (name.clone(), sha256_hex(data)))
            .collect();
        let manifest_bytes = manifest_bytes(&manifest)?;
        write_member(&mut w, MANIFEST, &manifest_bytes)?;
        for (name, data) in &members {
            write_member(&mut w, name, data)?;
        }
        w.write_all(&ARCHIVE_END)?;
        w.flush()?;
        Ok(manifest)
    }

    /// [`Bundle::write_to`] into a new buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, BundleError> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Reads a bundle, refusing: archives over `max_bytes` in total,
    /// members over `max_bytes`, unsafe paths, non-file members, unknown or
    /// duplicate members, members missing or unlisted in the manifest,
    /// members whose SHA-256 differs from the manifest's, and members that
    /// do not parse. Errors name the member at fault.
    pub fn read_from(r: impl Read, max_bytes: u64) -> Result<Bundle, BundleError> {
        let limited = Limit {
            inner: r,
            remaining: max_bytes,
        };
        let mut archive = tar::Archive::new(limited);
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut saw_dir = false;
        for entry in archive.entries().map_err(limit_error(max_bytes))? {
            let entry = entry.map_err(limit_error(max_bytes))?;
            let raw = entry.path_bytes();
            let name = String::from_utf8_lossy(&raw).into_owned();
            check_path(&name)?;
            let kind = entry.header().entry_type();
            if kind.is_dir() && name == "checkpoints/" && !saw_dir {
                saw_dir = true;
                continue;
            }
            if !kind.is_file() {
                return Err(BundleError::NotRegularFile(name));
            }
            if !known_member(&name) {
                return Err(BundleError::UnknownMember(name));
            }
            if files.contains_key(&name) {
                return Err(BundleError::DuplicateMember(name));
            }
            let declared = entry.header().entry_size().unwrap_or(u64::MAX);
            if declared > max_bytes {
                return Err(BundleError::TooLarge(name, max_bytes));
            }
            let mut data = Vec::new();
            entry
                .take(max_bytes.saturating_add(1))
                .read_to_end(&mut data)
                .map_err(limit_error(max_bytes))?;
            if data.len() as u64 > max_bytes {
                return Err(BundleError::TooLarge(name, max_bytes));
            }
            files.insert(name, data);
        }
        Self::from_members(files)
    }

    /// Builds a bundle from member contents (after the archive layer).
    fn from_members(mut files: BTreeMap<String, Vec<u8>>) -> Result<Bundle, BundleError> {
        let manifest_bytes = files
            .remove(MANIFEST)
            .ok_or_else(|| BundleError::MissingMember(MANIFEST.into()))?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| malformed(MANIFEST, e.to_string()))?;
        for (name, data) in &files {
            match manifest.files.get(name) {
                None => return Err(BundleError::Unlisted(name.clone())),
                Some(h) if *h != sha256_hex(data) => {
                    return Err(BundleError::HashMismatch(name.clone()));
                }
                Some(_) => {}
            }
        }
        for name in manifest.files.keys() {
            if !files.contains_key(name) {
                return Err(BundleError::MissingMember(name.clone()));
            }
        }
        for required in [KEYS, FRONTIER, ENTRIES] {
            if !files.contains_key(required) {
                return Err(BundleError::MissingMember(required.into()));
            }
        }
        let mut keys = Vec::new();
        let mut checkpoints = Vec::new();
        let mut views = BTreeMap::new();
        let mut frontier = None;
        let mut entries = Vec::new();
        for (name, data) in files {
            match name.as_str() {
                KEYS => {
                    let text = String::from_utf8(data).map_err(|_| malformed(KEYS, "not UTF-8"))?;
                    let body = text.strip_suffix('\n').unwrap_or(&text);
                    if !body.is_empty() {
                        for (i, line) in body.split('\n').enumerate() {
                            if line.is_empty() {
                                return Err(malformed(KEYS, format!("line {} is empty", i + 1)));
                            }
                            keys.push(line.to_owned());
                        }
                    }
                }
                FRONTIER => {
                    frontier = Some(
                        Frontier::from_bytes(&data)
                            .map_err(|e| malformed(FRONTIER, e.to_string()))?,
                    );
                }
                ENTRIES => entries = data,
                CSV_VIEW | OCSF_VIEW => {
                    views.insert(name, data);
                }
                _ => {
                    let size = checkpoint_size(&name)
                        .ok_or_else(|| BundleError::UnknownMember(name.clone()))?;
                    let note =
                        String::from_utf8(data).map_err(|_| malformed(&name, "not UTF-8"))?;
                    checkpoints.push((size, note));
                }
            }
        }
        checkpoints.sort_by_key(|(s, _)| *s);
        let frontier = frontier.ok_or_else(|| BundleError::MissingMember(FRONTIER.into()))?;
        Ok(Bundle {
            manifest,
            entries,
            checkpoints,
            keys,
            frontier,
            views,
        })
    }
}

/// Tar's block size.
const BLOCK: u64 = 512;
/// Two zero blocks: what ends a tar archive.
pub const ARCHIVE_END: [u8; 1024] = [0; 1024];

/// The tar header of a bundle member of `size` bytes: ustar, mode 0644,
/// uid/gid 0, mtime 0, no user or group names (deterministic).
pub fn member_header(name: &str, size: u64) -> Result<[u8; 512], BundleError> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(*h.as_bytes())
}

/// The zeros that follow a member of `size` bytes, up to a whole block.
pub fn member_padding(size: u64) -> &'static [u8] {
    static ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];
    let rest = (BLOCK - size % BLOCK) % BLOCK;
    &ZEROS[..rest as usize]
}

/// Bytes a member of `size` bytes takes in the archive (header, data,
/// padding).
pub fn member_len(size: u64) -> u64 {
    BLOCK + size.div_ceil(BLOCK) * BLOCK
}

/// The bytes of `manifest.json` for `manifest` (pretty JSON and a newline).
pub fn manifest_bytes(manifest: &Manifest) -> Result<Vec<u8>, BundleError> {
    let mut bytes =
        serde_json::to_vec_pretty(manifest).map_err(|e| BundleError::Invalid(e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The SHA-256 of a member as the manifest lists it, computed as the
/// member is produced.
pub struct MemberHash {
    ctx: digest::Context,
    len: u64,
}

impl Default for MemberHash {
    fn default() -> Self {
        Self {
            ctx: digest::Context::new(&digest::SHA256),
            len: 0,
        }
    }
}

impl MemberHash {
    /// Adds the next bytes of the member.
    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
        self.len += data.len() as u64;
    }

    /// The member's length and lowercase hex SHA-256.
    pub fn finish(self) -> (u64, String) {
        (self.len, hex::encode(self.ctx.finish()))
    }
}

fn write_member(w: &mut impl Write, name: &str, data: &[u8]) -> Result<(), BundleError> {
    w.write_all(&member_header(name, data.len() as u64)?)?;
    w.write_all(data)?;
    w.write_all(member_padding(data.len() as u64))?;
    Ok(())
}

/// `checkpoints/<decimal>.note` → the size.
fn checkpoint_size(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("checkpoints/")?.strip_suffix(".note")?;
    parse_decimal(digits)
}

fn known_member(name: &str) -> bool {
    matches!(
        name,
        MANIFEST | ENTRIES | KEYS | FRONTIER | CSV_VIEW | OCSF_VIEW
    ) || checkpoint_size(name).is_some()
}

fn check_path(name: &str) -> Result<(), BundleError> {
    let unsafe_path = name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name.split('/').any(|c| c == "..")
        || name.as_bytes().get(1) == Some(&b':');
    if unsafe_path {
        Err(BundleError::PathTraversal(name.to_owned()))
    } else {
        Ok(())
    }
}

/// The marker error the size limiter raises.
#[derive(Debug)]
struct OverLimit;

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the bundle is over the size limit")
    }
}

impl std::error::Error for OverLimit {}

fn limit_error(max: u64) -> impl Fn(io::Error) -> BundleError {
    move |e| {
        if e.get_ref().is_some_and(|inner| inner.is::<OverLimit>()) {
            BundleError::TooLarge("the archive".into(), max)
        } else {
            BundleError::Io(e)
        }
    }
}

/// Reads at most `remaining` bytes, then fails if more are offered.
struct Limit<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Limit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(OverLimit)),
            };
        }
        let cap = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..cap])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}
