//! Export bundles and live verification, streamed from storage: memory
//! stays bounded by a page of entries whatever the log's size.
//!
//! An export is made in two passes over the entries, which never change
//! once written: the first hashes `entries.jsonl` (and the derived view)
//! for the manifest, which comes first in the archive; the second streams
//! the archive, member by member, with the same bytes
//! [`warden_tlog::Bundle::write_to`] would give. The frontier before the
//! first entry comes from the log's tiles ([`crate::tiles::frontier_at`]).
//! Live verification feeds the entries, page by page, to the offline
//! verifier's streaming form ([`StreamVerification`]), which gives the
//! transcript `verify_bundle` gives for the whole-log bundle.
//!
//! What stays in memory besides a page: the checkpoints of the range (their
//! notes and the manifest line of each), at most one per second of the
//! log's activity.

use std::collections::BTreeMap;

use futures::Stream;
use warden_store::{CheckpointRow, Store, StoreError};
use warden_tlog::bundle::{
    ARCHIVE_END, CSV_VIEW, ENTRIES, FORMAT, FRONTIER, KEYS, MANIFEST, Manifest, MemberHash,
    OCSF_VIEW, checkpoint_member, manifest_bytes, member_header, member_len, member_padding,
};
use warden_tlog::export::ViewWriter;
use warden_tlog::merkle::Frontier;
use warden_tlog::note::NoteVerifier;
use warden_tlog::verify::{StreamVerification, Transcript, Trust};

use crate::checkpoint::origin;
use crate::tiles::TileError;

/// Entries read per query.
const PAGE: i64 = 1000;
/// Chunks buffered between the reading task and the response.
const CHUNKS_IN_FLIGHT: usize = 2;

/// Why an export or a live verification failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The frontier could not be made from the log's tiles.
    #[error(transparent)]
    Tiles(#[from] TileError),
    /// Nothing to export (names what).
    #[error("{0}")]
    NotFound(String),
    /// A stored entry cannot be put in the bundle or its view (its log
    /// fails verification; the message says why).
    #[error("audit log {log}: {reason}")]
    Entry {
        /// The log.
        log: String,
        /// Why.
        reason: String,
    },
}

/// What part of a log to export.
#[derive(Debug, Clone, Default)]
pub struct Range {
    /// Entries at or after this time (ns).
    pub since_ns: Option<u128>,
    /// Entries at or before this time (ns).
    pub until_ns: Option<u128>,
    /// Include the CSV view.
    pub csv: bool,
    /// Include the OCSF view.
    pub ocsf: bool,
}

fn entry_time(line: &str) -> Option<u128> {
    #[derive(serde::Deserialize)]
    struct T {
        time_ns: u128,
    }
    serde_json::from_str::<T>(line).ok().map(|t| t.time_ns)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Calls `each` with every entry of `log` in `[from, to)`, a page at a time.
async fn for_each_page(
    store: &Store,
    log: &str,
    from: i64,
    to: i64,
    mut each: impl FnMut(Vec<warden_store::AuditRow>) -> Result<bool, ExportError>,
) -> Result<(), ExportError> {
    let mut at = from;
    while at < to {
        let rows = store.audit_entries(log, at, PAGE.min(to - at)).await?;
        let Some(next) = rows.last().map(|r| r.seq + 1) else {
            break;
        };
        if !each(rows)? {
            break;
        }
        at = next;
    }
    Ok(())
}

/// An export bundle ready to stream: its small members made, its large ones
/// hashed.
pub struct Export {
    store: Store,
    log: String,
    first: i64,
    end: i64,
    manifest: Manifest,
    /// Members before `entries.jsonl`, in archive order.
    small: Vec<(String, Vec<u8>)>,
    entries_len: u64,
    /// The view, its member name and length.
    view: Option<(&'static str, ViewWriter, u64)>,
}

/// Plans the export of `log` in `range`: from the first entry in it to the
/// smallest checkpoint covering the last one (`newest` is the newest
/// checkpoint; sign one first so the newest entries are covered). `key` is
/// the verifier key to include; `created_at_ns` the time to record.
pub async fn plan(
    store: &Store,
    log: &str,
    range: &Range,
    newest: &CheckpointRow,
    key: String,
    created_at_ns: u128,
) -> Result<Export, ExportError> {
    // The first entry at or after `since` and the last at or before
    // `until`.
    let whole = range.since_ns.is_none() && range.until_ns.is_none();
    let (mut first, mut last) = if whole {
        (Some(0), Some(newest.size - 1))
    } else {
        (None, None)
    };
    if !whole {
        for_each_page(store, log, 0, newest.size, |rows| {
            for r in &rows {
                let Some(t) = entry_time(&r.entry) else {
                    continue;
                };
                let after = range.since_ns.is_none_or(|s| t >= s);
                let before = range.until_ns.is_none_or(|u| t <= u);
                if after && before {
                    first.get_or_insert(r.seq);
                    last = Some(r.seq);
                }
            }
            Ok(true)
        })
        .await?;
    }
    let (Some(first), Some(last)) = (first, last) else {
        return Err(ExportError::NotFound(format!(
            "no entries of audit log {log} in that time range"
        )));
    };
    // End at the smallest checkpoint covering `last`.
    let cps = store.checkpoints(log, first + 1, newest.size).await?;
    let end = cps
        .iter()
        .map(|c| c.size)
        .find(|s| *s > last)
        .unwrap_or(newest.size);
    let frontier: Frontier = crate::tiles::frontier_at(store, log, u64_of(first)).await?;

    let mut small: Vec<(String, Vec<u8>)> = vec![
        (KEYS.to_owned(), format!("{key}\n").into_bytes()),
        (FRONTIER.to_owned(), frontier.to_bytes()),
    ];
    for c in cps.into_iter().filter(|c| c.size <= end) {
        small.push((checkpoint_member(u64_of(c.size)), c.note.into_bytes()));
    }
    let view = match (range.csv, range.ocsf) {
        (true, _) => Some((CSV_VIEW, ViewWriter::csv())),
        (false, true) => Some((OCSF_VIEW, ViewWriter::ocsf())),
        _ => None,
    };

    // First pass: hash what is too large to hold.
    let mut entries_hash = MemberHash::default();
    let mut view_hash = MemberHash::default();
    let mut writer = view.as_ref().map(|(_, w)| w.clone());
    let bad = |reason: String| ExportError::Entry {
        log: log.to_owned(),
        reason,
    };
    if let Some(w) = &writer {
        view_hash.update(&w.start().map_err(|e| bad(e.to_string()))?);
    }
    for_each_page(store, log, first, end, |rows| {
        for r in &rows {
            entries_hash.update(r.entry.as_bytes());
            entries_hash.update(b"\n");
            if let Some(w) = &mut writer {
                let line_no = usize::try_from(r.seq - first + 1).unwrap_or(0);
                view_hash.update(
                    &w.line(line_no, r.entry.as_bytes())
                        .map_err(|e| bad(e.to_string()))?,
                );
            }
        }
        Ok(true)
    })
    .await?;
    let mut files: BTreeMap<String, String> = small
        .iter()
        .map(|(name, data)| {
            let mut h = MemberHash::default();
            h.update(data);
            (name.clone(), h.finish().1)
        })
        .collect();
    let (entries_len, entries_sha) = entries_hash.finish();
    files.insert(ENTRIES.to_owned(), entries_sha);
    let view = match (view, writer) {
        (Some((name, fresh)), Some(done)) => {
            view_hash.update(&done.end());
            let (len, sha) = view_hash.finish();
            files.insert(name.to_owned(), sha);
            Some((name, fresh, len))
        }
        _ => None,
    };
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        log: log.to_owned(),
        origin: origin(log),
        first_seq: u64_of(first),
        end_seq: u64_of(end),
        created_at_ns,
        since_ns: range.since_ns,
        until_ns: range.until_ns,
        files,
    };
    Ok(Export {
        store: store.clone(),
        log: log.to_owned(),
        first,
        end,
        manifest,
        small,
        entries_len,
        view,
    })
}

impl Export {
    /// The manifest (with every member's SHA-256).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The archive's length in bytes.
    pub fn content_length(&self) -> Result<u64, ExportError> {
        let manifest = manifest_bytes(&self.manifest).map_err(|e| self.bad(e.to_string()))?;
        Ok(member_len(manifest.len() as u64)
            + self
                .small
                .iter()
                .map(|(_, d)| member_len(d.len() as u64))
                .sum::<u64>()
            + member_len(self.entries_len)
            + self.view.as_ref().map_or(0, |(_, _, len)| member_len(*len))
            + ARCHIVE_END.len() as u64)
    }

    fn bad(&self, reason: String) -> ExportError {
        ExportError::Entry {
            log: self.log.clone(),
            reason,
        }
    }

    /// The archive, in chunks (at most a page of entries each), read from
    /// storage as they are taken. Needs a Tokio runtime. If the entries read
    /// differ from the first pass (they cannot, short of tampering during
    /// the export), the archive fails its manifest check.
    pub fn stream(self) -> impl Stream<Item = Result<Vec<u8>, ExportError>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        tokio::spawn(async move {
            if let Err(e) = self.produce(&tx).await {
                tracing::error!(error = %e, "audit export stopped");
                let _ = tx.send(Err(e)).await;
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
    }

    async fn produce(
        self,
        tx: &tokio::sync::mpsc::Sender<Result<Vec<u8>, ExportError>>,
    ) -> Result<(), ExportError> {
        // A closed channel means the client went away: stop quietly.
        let send = |chunk: Vec<u8>| async move { tx.send(Ok(chunk)).await.is_ok() };
        let header =
            |name: &str, len: u64| member_header(name, len).map_err(|e| self.bad(e.to_string()));
        let manifest = manifest_bytes(&self.manifest).map_err(|e| self.bad(e.to_string()))?;
        let mut head = Vec::new();
        head.extend_from_slice(&header(MANIFEST, manifest.len() as u64)?);
        head.extend_from_slice(&manifest);
        head.extend_from_slice(member_padding(manifest.len() as u64));
        for (name, data) in &self.small {
            head.extend_from_slice(&header(name, data.len() as u64)?);
            head.extend_from_slice(data);
            head.extend_from_slice(member_padding(data.len() as u64));
        }
        head.extend_from_slice(&header(ENTRIES, self.entries_len)?);
        if !send(head).await {
            return Ok(());
        }
        if !self.pages(&send, None).await? {
            return Ok(());
        }
        let mut tail = member_padding(self.entries_len).to_vec();
        if let Some((name, writer, len)) = &self.view {
            tail.extend_from_slice(&header(name, *len)?);
            tail.extend_from_slice(&writer.start().map_err(|e| self.bad(e.to_string()))?);
            if !send(std::mem::take(&mut tail)).await {
                return Ok(());
            }
            let mut writer = writer.clone();
            if !self.pages(&send, Some(&mut writer)).await? {
                return Ok(());
            }
            tail.extend_from_slice(&writer.end());
            tail.extend_from_slice(member_padding(*len));
        }
        tail.extend_from_slice(&ARCHIVE_END);
        send(tail).await;
        Ok(())
    }

    /// Sends the entries (or, with a view writer, their view) a page at a
    /// time; false if the client went away.
    async fn pages<F, Fut>(
        &self,
        send: &F,
        mut view: Option<&mut ViewWriter>,
    ) -> Result<bool, ExportError>
    where
        F: Fn(Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut at = self.first;
        while at < self.end {
            let rows = self
                .store
                .audit_entries(&self.log, at, PAGE.min(self.end - at))
                .await?;
            let Some(next) = rows.last().map(|r| r.seq + 1) else {
                break;
            };
            let mut chunk = Vec::new();
            for r in &rows {
                match &mut view {
                    Some(w) => {
                        let line_no = usize::try_from(r.seq - self.first + 1).unwrap_or(0);
                        chunk.extend_from_slice(
                            &w.line(line_no, r.entry.as_bytes())
                                .map_err(|e| self.bad(e.to_string()))?,
                        );
                    }
                    None => {
                        chunk.extend_from_slice(r.entry.as_bytes());
                        chunk.push(b'\n');
                    }
                }
            }
            if !send(chunk).await {
                return Ok(false);
            }
            at = next;
        }
        Ok(true)
    }
}

/// Verifies `log` as stored, from its first entry to `newest` (its newest
/// checkpoint), against `verifier`, as the offline verifier checks the
/// whole-log bundle (`key` is the verifier key the bundle would list), with
/// the entries read a page at a time.
pub async fn verify_live(
    store: &Store,
    log: &str,
    newest: &CheckpointRow,
    verifier: NoteVerifier,
    key: String,
    created_at_ns: u128,
) -> Result<Transcript, ExportError> {
    let end = newest.size;
    let checkpoints: Vec<(u64, String)> = store
        .checkpoints(log, 1, end)
        .await?
        .into_iter()
        .map(|c| (u64_of(c.size), c.note))
        .collect();
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        log: log.to_owned(),
        origin: origin(log),
        first_seq: 0,
        end_seq: u64_of(end),
        created_at_ns,
        since_ns: None,
        until_ns: None,
        files: BTreeMap::new(),
    };
    let mut v = match StreamVerification::start(
        &manifest,
        &[key],
        &checkpoints,
        &Frontier::new(),
        &Trust::Key(verifier),
    ) {
        Ok(v) => v,
        Err(t) => return Ok(*t),
    };
    for_each_page(store, log, 0, end, |rows| {
        Ok(rows.iter().all(|r| v.push_line(r.entry.as_bytes())))
    })
    .await?;
    Ok(v.finish())
}
