//! Session recordings: what the user saw, as asciicast v2, sealed in
//! chunks under the organization's key, with the service's secret values
//! masked out, and each chunk's digest rolled into the session's audit
//! outcome.
//!
//! Format: asciicast v2 (<https://docs.asciinema.org/manual/asciicast/v2/>):
//! a header line (`version`, `width`, `height`, `timestamp`, `env`), then
//! one JSON array per event, `[seconds, code, data]`, where `code` is `o`
//! (output), `i` (input) or `r` (resize, data `COLSxROWS`). Output without
//! a terminal (stdout and stderr) is recorded as `o` too, with its line
//! feeds as a terminal shows them (`\r\n`, as the client's own terminal
//! did), so that it replays as the user saw it. Data is text:
//! bytes that are not UTF-8 are replaced by U+FFFD, a sequence split
//! across reads is kept whole, and NUL bytes (which a terminal does not
//! show) are left out.
//!
//! Chunks are whole lines, so the chunks' plaintexts concatenated are the
//! `.cast` file. Each chunk's SHA-256 is kept; the recording's digest, in
//! the session's audit outcome, is SHA-256 over those digests in order.
//! The last chunk is marked as such (sealed into its AAD), so dropping the
//! tail is noticed even before the digest is compared.
//!
//! Masking: every kept version of every secret the target service
//! inherits, and its resolved values (and, for values with newlines, the
//! same with a terminal's `\r\n`), 4 bytes or longer, are replaced by
//! [`MASK`] in the recording, never in the user's terminal; stdout and
//! stderr apart; where values overlap, their union. A value is
//! only recognised as the exact bytes: encoded (base64, quoted, escaped)
//! or cut by the terminal's line wrapping it is not. Up to the longest
//! value's length minus one byte of each stream is held back until more
//! comes or the session ends (the recording may show it a little late),
//! so a value split across reads is still found.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aho_corasick::AhoCorasick;
use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use warden_pipeline::{Error, Permit};
use warden_runtime::TermSize;
use warden_store::{RecordingChunkRow, Store};
use warden_types::{ScopePath, SecretValue};
use zeroize::Zeroizing;

/// What replaces a secret value in a recording.
pub const MASK: &[u8] = b"********";
/// A chunk is sealed and stored once its text reaches this size ...
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// ... or this long after its first event.
pub const CHUNK_EVERY: Duration = Duration::from_secs(2);
/// A session whose recording reaches this much text ends (a marker
/// event says so, and the last chunk is stored).
pub const MAX_RECORDING_BYTES: usize = 1 << 30;
/// Events queued for the recorder before the session waits for it: a
/// session is never ahead of its recording by more than this.
const QUEUE: usize = 256;

/// Seals one recording's chunks (the composition root holds the key).
pub trait ChunkSealer: Send + Sync {
    /// Seals chunk `seq`; `last` marks the recording's end.
    fn seal(&self, seq: u64, last: bool, plaintext: &[u8]) -> Result<Vec<u8>, Error>;
}

/// What recording a session needs: its sealer, and the values to mask.
pub struct RecordingKeys {
    /// Seals the session's chunks.
    pub sealer: Box<dyn ChunkSealer>,
    /// The values to mask: every kept version of every secret the
    /// service inherits, and the resolved values.
    pub masks: Vec<SecretValue>,
    /// The values to mask as they are again after each change of the
    /// service's secrets during the session (a rotation pushed into the
    /// pod mid-session): masked from then on, with those already masked.
    pub mask_updates: Option<mpsc::Receiver<Vec<SecretValue>>>,
}

/// Where sessions get their recording keys: the composition root answers
/// from the vault (the gateway never sees a key's bytes).
pub trait Recordings: Send + Sync {
    /// The keys for recording `session` on `service`, for the holder of
    /// its `shell.exec` `permit`.
    fn keys<'a>(
        &'a self,
        permit: &'a Permit,
        service: &'a ScopePath,
        session: &'a str,
    ) -> BoxFuture<'a, Result<RecordingKeys, Error>>;
}

enum Event {
    /// Output: stdout (false) or stderr (true), and the bytes.
    Output(Instant, bool, Bytes),
    Input(Instant, Bytes),
    Resize(Instant, TermSize),
    End,
}

/// A session's handle on its recording: the front-ends feed it what the
/// user sees (and types, when input is recorded). Cheap to clone. Feeding
/// waits when the recorder is behind, so nothing shown goes unrecorded.
#[derive(Clone)]
pub struct Tap {
    tx: mpsc::Sender<Event>,
    /// Whether input is recorded: as the latest authorization says (the
    /// session's supervisor sets it when the roles change mid-session).
    input: Arc<AtomicBool>,
    /// When the session started, and ms after it the last input or output
    /// came (for the idle timeout).
    start: Instant,
    active_ms: Arc<AtomicU64>,
}

impl Tap {
    /// Records output: stdout (or a terminal's), or stderr.
    /// Output that records nothing (empty, or only NULs) is not activity.
    pub async fn output(&self, stderr: bool, data: &Bytes) {
        if !recordable(data) {
            return;
        }
        let now = self.touch();
        let _ = self.tx.send(Event::Output(now, stderr, data.clone())).await;
    }

    /// Records input, if this session records input. Empty input (an
    /// empty WebSocket frame or SSH data message) is not activity.
    pub async fn input(&self, data: &Bytes) {
        if data.is_empty() {
            return;
        }
        let now = self.touch();
        if self.input.load(Ordering::Relaxed) {
            let _ = self.tx.send(Event::Input(now, data.clone())).await;
        }
    }

    /// Records input from now on, or stops.
    pub(crate) fn record_input(&self, on: bool) {
        self.input.store(on, Ordering::Relaxed);
    }

    fn touch(&self) -> Instant {
        let now = Instant::now();
        let ms = u64::try_from(now.duration_since(self.start).as_millis()).unwrap_or(u64::MAX);
        self.active_ms.fetch_max(ms, Ordering::Relaxed);
        now
    }

    /// When the last input or output came.
    pub(crate) fn last_activity(&self) -> tokio::time::Instant {
        let ms = self.active_ms.load(Ordering::Relaxed);
        tokio::time::Instant::from_std(self.start + Duration::from_millis(ms))
    }

    /// Records a terminal resize.
    pub async fn resize(&self, size: TermSize) {
        let _ = self.tx.send(Event::Resize(Instant::now(), size)).await;
    }
}

/// A recording in progress.
pub(crate) struct Recorder {
    tap: Tap,
    task: JoinHandle<Result<String, String>>,
}

/// Where a recording goes, and what it is of.
pub(crate) struct Setup {
    pub(crate) keys: RecordingKeys,
    pub(crate) store: Store,
    pub(crate) session: String,
    pub(crate) org: String,
    pub(crate) tty: Option<TermSize>,
    /// The command run (none for a login shell), recorded in the header.
    pub(crate) command: Option<String>,
    /// The variables the client set for the session (`LANG`, `LC_*`...),
    /// recorded in the header, their values masked: they are input too.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) record_input: bool,
    /// Told why, if the recording fails (the session then ends).
    pub(crate) failed: watch::Sender<Option<String>>,
}

impl Recorder {
    /// Starts recording.
    pub(crate) fn start(setup: Setup) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let tap = Tap {
            tx,
            input: Arc::new(AtomicBool::new(setup.record_input)),
            start: Instant::now(),
            active_ms: Arc::default(),
        };
        let task = tokio::spawn(record(setup, rx));
        Self { tap, task }
    }

    /// The handle the front-ends feed.
    pub(crate) fn tap(&self) -> Tap {
        self.tap.clone()
    }

    /// Ends the recording after what was fed so far: its digest, or why it
    /// failed.
    pub(crate) async fn finish(self) -> Result<String, String> {
        let _ = self.tap.tx.send(Event::End).await;
        self.task
            .await
            .unwrap_or_else(|e| Err(format!("the recorder stopped: {e}")))
    }
}

async fn record(setup: Setup, mut rx: mpsc::Receiver<Event>) -> Result<String, String> {
    let Setup {
        keys:
            RecordingKeys {
                sealer,
                masks,
                mask_updates,
            },
        store,
        session,
        org,
        tty,
        command,
        env,
        failed,
        ..
    } = setup;
    // Sealing and storing run beside the recording, a chunk or two behind.
    let (chunks_tx, chunks_rx) = mpsc::channel(2);
    let storer = tokio::spawn(store_chunks(sealer, store, session.clone(), org, chunks_rx));
    let masker = Masker::new(&masks);
    drop(masks);
    let recorded = Chunks::new(masker, tty, command.as_deref(), &env, chunks_tx, &failed)
        .run(&mut rx, mask_updates)
        .await;
    let stored = storer
        .await
        .unwrap_or_else(|e| Err(format!("the recording's store stopped: {e}")));
    let result = stored.and(recorded);
    if let Err(why) = &result {
        tracing::warn!(session = %session, error = %why, "a session's recording failed");
        failed.send_replace(Some(format!("the session could not be recorded: {why}")));
        // Let the session's senders finish rather than wait on a full queue.
        rx.close();
        while rx.recv().await.is_some() {}
    }
    result
}

/// A chunk's text on its way to be sealed and stored: number, last, text.
type Chunk = (u64, bool, Vec<u8>);

/// Seals and stores chunks in order, until the recorder is done or a
/// chunk cannot be stored.
async fn store_chunks(
    sealer: Box<dyn ChunkSealer>,
    store: Store,
    session: String,
    org: String,
    mut rx: mpsc::Receiver<Chunk>,
) -> Result<(), String> {
    while let Some((seq, last, text)) = rx.recv().await {
        let sealed = sealer
            .seal(seq, last, &text)
            .map_err(|e| e.message().to_owned())?;
        store
            .put_recording_chunk(RecordingChunkRow {
                session_id: session.clone(),
                seq: i64::try_from(seq).map_err(|_| "too many chunks".to_owned())?,
                org: org.clone(),
                last,
                sealed,
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The recording being written: the text of the current chunk, and the
/// digests of the chunks written.
struct Chunks<'a> {
    start: Instant,
    text: Vec<u8>,
    first_event: Option<Instant>,
    seq: u64,
    digests: Vec<u8>,
    /// Text written so far.
    stored: usize,
    /// Whether the limit was reached (the last chunk is written).
    full: bool,
    /// stdout (or the terminal), stderr: each masked on its own.
    output: [Stream; 2],
    input: Stream,
    /// To the storer.
    chunks: mpsc::Sender<Chunk>,
    /// Told when the limit is reached (the session then ends).
    failed: &'a watch::Sender<Option<String>>,
}

impl<'a> Chunks<'a> {
    fn new(
        masker: Masker,
        tty: Option<TermSize>,
        command: Option<&str>,
        env: &[(String, String)],
        chunks: mpsc::Sender<Chunk>,
        failed: &'a watch::Sender<Option<String>>,
    ) -> Self {
        Self {
            start: Instant::now(),
            text: header(tty, command, env, &masker),
            first_event: None,
            seq: 0,
            digests: Vec::new(),
            stored: 0,
            full: false,
            output: [
                Stream::new(masker.clone(), tty.is_none()),
                Stream::new(masker.clone(), tty.is_none()),
            ],
            input: Stream::new(masker, false),
            chunks,
            failed,
        }
    }

    async fn run(
        mut self,
        rx: &mut mpsc::Receiver<Event>,
        mut mask_updates: Option<mpsc::Receiver<Vec<SecretValue>>>,
    ) -> Result<String, String> {
        loop {
            let due = self.first_event.map(|t| t + CHUNK_EVERY);
            let event = tokio::select! {
                // Before what the session shows next: a value rotated in is
                // masked before it can be printed from the pod.
                biased;
                values = next_masks(&mut mask_updates) => {
                    match values {
                        Some(values) => self.mask_also(&values),
                        None => mask_updates = None,
                    }
                    continue;
                }
                e = rx.recv() => e.unwrap_or(Event::End),
                () = sleep_until(due) => {
                    self.store(false).await?;
                    continue;
                }
            };
            if self.full {
                // Past the limit: the session is ending; nothing more goes in.
                if matches!(event, Event::End) {
                    break;
                }
                continue;
            }
            match event {
                Event::Output(at, stderr, data) => {
                    self.first_event.get_or_insert(at);
                    let text = self.output[usize::from(stderr)].push(&data);
                    self.event(at, "o", &text);
                }
                Event::Input(at, data) => {
                    self.first_event.get_or_insert(at);
                    let text = self.input.push(&data);
                    self.event(at, "i", &text);
                }
                Event::Resize(at, size) => {
                    self.first_event.get_or_insert(at);
                    self.event(at, "r", &format!("{}x{}", size.cols, size.rows));
                }
                Event::End => break,
            }
            if self.text.len() >= CHUNK_BYTES {
                self.store(false).await?;
            }
            if self.stored >= MAX_RECORDING_BYTES {
                self.event(Instant::now(), "m", "recording limit reached");
                self.store(true).await?;
                self.full = true;
                self.failed.send_replace(Some(format!(
                    "the session's recording reached its limit ({} MiB)",
                    MAX_RECORDING_BYTES >> 20
                )));
            }
        }
        if !self.full {
            let now = Instant::now();
            let rest = [
                (self.output[0].finish(), "o"),
                (self.output[1].finish(), "o"),
                (self.input.finish(), "i"),
            ];
            for (text, code) in rest {
                self.event(now, code, &text);
            }
            self.store(true).await?;
        }
        Ok(hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            &self.digests,
        )))
    }

    /// Masks `values` from now on in every stream, with what each masks
    /// already (what a stream holds back is masked with both).
    fn mask_also(&mut self, values: &[SecretValue]) {
        let masker = self.input.masker.with(values);
        for stream in self.output.iter_mut().chain([&mut self.input]) {
            stream.masker.take_values(&masker);
        }
    }

    fn event(&mut self, at: Instant, code: &str, data: &str) {
        if data.is_empty() {
            return;
        }
        let t = at.saturating_duration_since(self.start).as_micros() as f64 / 1e6;
        // Serializing a tuple of a float and two strings cannot fail.
        let _ = serde_json::to_writer(&mut self.text, &(t, code, data));
        self.text.push(b'\n');
    }

    /// Hands the current chunk to the storer (an empty one only to mark
    /// the end), its digest kept.
    async fn store(&mut self, last: bool) -> Result<(), String> {
        self.first_event = None;
        if self.text.is_empty() && !last {
            return Ok(());
        }
        let text = std::mem::take(&mut self.text);
        self.digests
            .extend_from_slice(ring::digest::digest(&ring::digest::SHA256, &text).as_ref());
        self.stored += text.len();
        self.seq += 1;
        self.chunks
            .send((self.seq - 1, last, text))
            .await
            .map_err(|_| "the recording's store stopped".to_owned())
    }
}

/// The next mask update; never, without a feed.
async fn next_masks(
    updates: &mut Option<mpsc::Receiver<Vec<SecretValue>>>,
) -> Option<Vec<SecretValue>> {
    match updates {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// The asciicast v2 header line, with the command (masked) if one was
/// given and the client's variables (values masked) in `env`.
fn header(
    tty: Option<TermSize>,
    command: Option<&str>,
    env: &[(String, String)],
    masker: &Masker,
) -> Vec<u8> {
    let size = tty.unwrap_or(TermSize { cols: 80, rows: 24 });
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut line = serde_json::json!({
        "version": 2,
        "width": size.cols,
        "height": size.rows,
        "timestamp": timestamp,
        "env": { "TERM": if tty.is_some() { "xterm-256color" } else { "dumb" } },
    });
    let masked = |text: &str| {
        let mut m = masker.clone();
        let mut out = m.push(text.as_bytes());
        out.extend(m.finish());
        serde_json::Value::from(String::from_utf8_lossy(&out))
    };
    for (name, value) in env {
        if name != "TERM" {
            line["env"][name.as_str()] = masked(value);
        }
    }
    if let Some(command) = command {
        line["command"] = masked(command);
    }
    let mut line = line.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// One direction of a session: masked, then decoded as UTF-8.
struct Stream {
    masker: Masker,
    /// The incomplete UTF-8 sequence at the end of the last read.
    carry: Vec<u8>,
    /// Whether line feeds are shown as `\r\n` (output without a terminal).
    crlf: bool,
    /// The last byte seen (a `\r\n` may be split across reads).
    last: u8,
}

impl Stream {
    fn new(masker: Masker, crlf: bool) -> Self {
        Self {
            masker,
            carry: Vec::new(),
            crlf,
            last: 0,
        }
    }

    fn push(&mut self, data: &[u8]) -> String {
        // NULs go before masking: masking must see exactly the bytes that
        // are recorded, or `h\0unter2` would become `hunter2` after it.
        let data = without_nul(data);
        if self.masker.finder.is_none() {
            return self.decode(&data, false);
        }
        let masked = self.masker.push(&data);
        self.decode(&masked, false)
    }

    fn finish(&mut self) -> String {
        let rest = self.masker.finish();
        self.decode(&rest, true)
    }

    /// Decodes masked bytes (NULs already left out) as UTF-8, with `\r\n`
    /// line ends when `crlf`.
    fn decode(&mut self, data: &[u8], end: bool) -> String {
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.reserve(data.len() + data.len() / 16);
        let mut rest = data;
        while !rest.is_empty() {
            // Copied a run at a time, up to the next line feed that needs a
            // carriage return.
            let special = if self.crlf {
                memchr::memchr(b'\n', rest)
            } else {
                None
            };
            let run = special.unwrap_or(rest.len());
            if run > 0 {
                bytes.extend_from_slice(&rest[..run]);
                self.last = rest[run - 1];
            }
            if run == rest.len() {
                break;
            }
            if self.last != b'\r' {
                bytes.push(b'\r');
            }
            bytes.push(b'\n');
            self.last = b'\n';
            rest = &rest[run + 1..];
        }
        let cut = if end {
            bytes.len()
        } else {
            complete_utf8_prefix(&bytes)
        };
        self.carry = bytes.split_off(cut);
        match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

/// `data` without its NUL bytes. NUL shows nothing on a terminal, and would
/// take six bytes each in the recording (`\u0000`): it is left out, before
/// masking (masking sees exactly what is recorded).
fn without_nul(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memchr(0, data).is_none() {
        return std::borrow::Cow::Borrowed(data);
    }
    std::borrow::Cow::Owned(data.iter().copied().filter(|&b| b != 0).collect())
}

/// Whether `data` has anything that goes into a recording (not only NULs).
fn recordable(data: &[u8]) -> bool {
    data.iter().any(|&b| b != 0)
}

/// The length of `bytes` without an incomplete UTF-8 sequence at its end.
fn complete_utf8_prefix(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(3) {
        let b = bytes[len - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if needed > back { len - back } else { len };
    }
    len
}

/// Values shorter than this are not masked: masking every `e` or space
/// would make a recording unreadable (and show which letters are values).
pub const MIN_MASKED: usize = 4;
/// A stream's bytes held back while masking, at most (beyond the longest
/// value): reached only by a chain of overlapping values.
const MAX_PENDING: usize = 64 * 1024;

/// Replaces secret values in a stream split into arbitrary reads. Where
/// values overlap in the stream, their union is masked.
#[derive(Clone)]
struct Masker {
    /// What is masked (values, and their `\r\n` forms), shared by the
    /// streams of a session.
    patterns: Arc<Vec<Zeroizing<Vec<u8>>>>,
    /// `None` when there is nothing to mask.
    finder: Option<AhoCorasick>,
    /// The longest value's length minus one: what may be the start of a
    /// value that continues in the next read.
    keep: usize,
    pending: Vec<u8>,
}

impl Masker {
    fn new(values: &[SecretValue]) -> Self {
        Self::of(Vec::new(), values)
    }

    /// A masker of `known` patterns and `values` (each also in its `\r\n`
    /// form), nothing pending.
    fn of(mut patterns: Vec<Zeroizing<Vec<u8>>>, values: &[SecretValue]) -> Self {
        for v in values.iter().map(|v| v.expose().as_bytes()) {
            if v.contains(&b'\n') {
                patterns.push(Zeroizing::new(with_crlf(v)));
            }
            patterns.push(Zeroizing::new(v.to_vec()));
        }
        patterns.retain(|p| p.len() >= MIN_MASKED);
        patterns.sort_unstable_by(|a, b| a.as_slice().cmp(b.as_slice()));
        patterns.dedup_by(|a, b| a.as_slice() == b.as_slice());
        let keep = patterns.iter().map(|p| p.len()).max().unwrap_or(1) - 1;
        // Standard semantics: every match, overlapping ones included.
        let finder = if patterns.is_empty() {
            None
        } else {
            AhoCorasick::new(patterns.iter().map(|p| p.as_slice())).ok()
        };
        Self {
            patterns: Arc::new(patterns),
            finder,
            keep,
            pending: Vec::new(),
        }
    }

    /// A masker of what this one masks and `values`, nothing pending.
    fn with(&self, values: &[SecretValue]) -> Self {
        Self::of(self.patterns.to_vec(), values)
    }

    /// Masks from now on what `other` masks, keeping what is pending.
    fn take_values(&mut self, other: &Self) {
        self.patterns = other.patterns.clone();
        self.finder = other.finder.clone();
        self.keep = other.keep;
    }

    /// The spans of `pending` covered by values, merged where they overlap
    /// or touch, in order.
    fn spans(&self) -> Vec<(usize, usize)> {
        let Some(finder) = &self.finder else {
            return Vec::new();
        };
        let mut found: Vec<(usize, usize)> = finder
            .find_overlapping_iter(&self.pending)
            .map(|m| (m.start(), m.end()))
            .collect();
        found.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(found.len());
        for (start, end) in found {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    /// Takes `pending[..cut]` out, its spans masked.
    fn emit(&mut self, spans: &[(usize, usize)], cut: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(cut);
        let mut done = 0;
        for &(start, end) in spans.iter().take_while(|s| s.1 <= cut) {
            out.extend_from_slice(&self.pending[done..start]);
            out.extend_from_slice(MASK);
            done = end;
        }
        out.extend_from_slice(&self.pending[done..cut]);
        self.pending.drain(..cut);
        out
    }

    /// What of the stream so far can be recorded: everything except what
    /// may be the start of a value that continues in the next read.
    fn push(&mut self, data: &[u8]) -> Vec<u8> {
        if self.finder.is_none() {
            return data.to_vec();
        }
        self.pending.extend_from_slice(data);
        let spans = self.spans();
        // A match starting before `safe` is complete: every value that
        // could start there fits in what is pending. A span across it waits
        // whole for the next read, unless too much is held back already.
        let safe = self.pending.len().saturating_sub(self.keep);
        let mut cut = safe;
        if let Some(&(start, end)) = spans.iter().find(|s| s.0 < safe && s.1 > safe) {
            cut = if self.pending.len() > self.keep + MAX_PENDING {
                end
            } else {
                start
            };
        }
        self.emit(&spans, cut)
    }

    /// The rest of the stream, masked.
    fn finish(&mut self) -> Vec<u8> {
        let spans = self.spans();
        let cut = self.pending.len();
        self.emit(&spans, cut)
    }
}

impl Drop for Masker {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.pending);
    }
}

fn with_crlf(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + 8);
    for &b in v {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn masker(values: &[&str]) -> Masker {
        let v: Vec<_> = values
            .iter()
            .map(|s| SecretValue::new((*s).to_owned()).unwrap())
            .collect();
        Masker::new(&v)
    }

    /// Values added mid-stream are masked from then on, what was held
    /// back included, with the values masked before.
    #[test]
    fn values_added_mid_stream_mask_what_is_held_back_too() {
        let value = |v: &str| SecretValue::new(v.to_owned()).unwrap();
        let mut m = Masker::new(&[value("alpha-secret")]);
        let mut out = m.push(b"alpha-secret, then beta-sec");
        let update = m.with(&[value("beta-secret-2")]);
        m.take_values(&update);
        out.extend(m.push(b"ret-2 and alpha-secret"));
        out.extend(m.finish());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "********, then ******** and ********"
        );
    }

    /// Feeds `input` split at every pair of points and checks the
    /// recording reads `want` whole.
    fn masks_whatever_the_split(values: &[&str], input: &str, want: &str) {
        let input = input.as_bytes();
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let mut m = masker(values);
                let mut out = m.push(&input[..i]);
                out.extend(m.push(&input[i..j]));
                out.extend(m.push(&input[j..]));
                out.extend(m.finish());
                assert_eq!(String::from_utf8(out).unwrap(), want, "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn secret_values_are_masked_across_reads() {
        masks_whatever_the_split(
            &["hunter2", "s3cr3t-token"],
            "PASS=hunter2\nTOKEN=s3cr3t-token and hunter2.",
            "PASS=********\nTOKEN=******** and ********.",
        );
        // Of two values starting at one place, the longer goes whole.
        masks_whatever_the_split(
            &["abcd", "abcdefg"],
            "xabcdefgx abcdx",
            "x********x ********x",
        );
        // A value with a newline, as a terminal prints it.
        masks_whatever_the_split(&["line1\nline2"], "a line1\r\nline2 b", "a ******** b");
        // Overlapping values: their union.
        masks_whatever_the_split(
            &["XYZ-abc", "abc-123456789"],
            "<XYZ-abc-123456789>",
            "<********>",
        );
        // Values too short to mask are left alone.
        masks_whatever_the_split(&["e", "ab"], "remove tab", "remove tab");
        masks_whatever_the_split(&[], "nothing to mask", "nothing to mask");
    }

    #[test]
    fn the_header_holds_the_clients_variables_masked() {
        let env = [
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            (
                "LC_X".to_owned(),
                "echo hunter2secret; touch /tmp/x".to_owned(),
            ),
            ("TERM".to_owned(), "vt100".to_owned()),
        ];
        let line = header(None, Some("env"), &env, &masker(&["hunter2secret"]));
        let h: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(h["env"]["LANG"], "C.UTF-8");
        assert_eq!(h["env"]["LC_X"], "echo ********; touch /tmp/x");
        // TERM is the terminal's own, as before.
        assert_eq!(h["env"]["TERM"], "dumb");
        assert_eq!(h["command"], "env");
    }

    #[test]
    fn line_feeds_show_as_a_terminal_shows_them_and_nul_goes() {
        let input = b"a\nb\r\nc\0d\r\0\n\n";
        for i in 0..=input.len() {
            let mut s = Stream::new(masker(&[]), true);
            let mut text = s.push(&input[..i]);
            text.push_str(&s.push(&input[i..]));
            text.push_str(&s.finish());
            assert_eq!(text, "a\r\nb\r\ncd\r\n\r\n", "split at {i}");
        }
        let mut raw = Stream::new(masker(&[]), false);
        assert_eq!(raw.push(b"x\ny\0"), "x\ny");
    }

    /// Review 11, M2: NULs between a value's bytes (UTF-16LE output, or
    /// `printf 'h\0unter2'`) were dropped after masking, so the recording
    /// held the value whole.
    #[test]
    fn a_value_interleaved_with_nuls_is_masked() {
        let value = "hunter2secretvalue";
        let utf16: Vec<u8> = format!("PASS={value}\n")
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut one_nul = b"h\0".to_vec();
        one_nul.extend_from_slice(&value.as_bytes()[1..]);
        for (input, want) in [(utf16, "PASS=********\r\n"), (one_nul, "********")] {
            for i in 0..=input.len() {
                let mut s = Stream::new(masker(&[value]), true);
                let mut text = s.push(&input[..i]);
                text.push_str(&s.push(&input[i..]));
                text.push_str(&s.finish());
                assert_eq!(text, want, "split at {i}");
            }
        }
    }

    /// Review 11, L1: empty input frames and NUL-only output kept a
    /// session from ever being idle, while the recording showed nothing.
    #[tokio::test]
    async fn only_what_is_recorded_or_typed_counts_as_activity() {
        let (tx, mut rx) = mpsc::channel(16);
        let tap = Tap {
            tx,
            input: Arc::new(AtomicBool::new(true)),
            start: Instant::now(),
            active_ms: Arc::default(),
        };
        let idle_since = tap.last_activity();
        tokio::time::sleep(Duration::from_millis(20)).await;
        tap.input(&Bytes::new()).await;
        tap.output(false, &Bytes::new()).await;
        tap.output(true, &Bytes::from_static(b"\0\0\0")).await;
        assert_eq!(tap.last_activity(), idle_since);
        assert!(rx.try_recv().is_err(), "nothing to record was queued");
        tap.output(false, &Bytes::from_static(b"\0x")).await;
        assert!(tap.last_activity() > idle_since);
        let typed = tap.last_activity();
        tokio::time::sleep(Duration::from_millis(20)).await;
        tap.input(&Bytes::from_static(b"\n")).await;
        assert!(tap.last_activity() > typed);
    }

    #[test]
    fn text_is_whole_utf8_whatever_the_split() {
        let input = "héllo → 🦀 done".as_bytes();
        for i in 0..=input.len() {
            let mut s = Stream::new(masker(&[]), false);
            let mut text = s.push(&input[..i]);
            text.push_str(&s.push(&input[i..]));
            text.push_str(&s.finish());
            assert_eq!(text, "héllo → 🦀 done");
        }
        let mut s = Stream::new(masker(&[]), false);
        let mut text = s.push(b"bad \xff byte\0 \xe2\x82");
        text.push_str(&s.finish());
        assert_eq!(text, "bad \u{fffd} byte \u{fffd}");
    }
}
