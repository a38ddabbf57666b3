//! `warden audit`: tail and query a log, fetch its signed checkpoint, fetch
//! and check an inclusion proof, export a bundle, verify a bundle offline
//! (or a log live, on the server), and print the checkpoint verifier key.
//!
//! `audit verify BUNDLE` is dispatched before any connection is made: it
//! reads no client configuration, needs no server address, token or CA,
//! and trusts only the key given on its command line.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use hyper::Method as M;
use serde::Deserialize;
use serde_json::{Value, json};
use warden_api::{AuditCheckpoint, AuditEntries, AuditProof, ClientError, WhoAmI};
use warden_tlog::bundle::Bundle;
use warden_tlog::canonical::parse_entry;
use warden_tlog::merkle::{Hash, leaf_hash, verify_inclusion};
use warden_tlog::note::{Checkpoint, NoteVerifier, open};
use warden_tlog::verify::{Trust, verify_bundle};
use warden_types::{ScopeKind, ScopePath};

use crate::ctx::{Ctx, Output};
use crate::error::{Conflict, usage};
use crate::input::parse_duration;
use crate::output;

/// The installation-wide log.
const SYSTEM_LOG: &str = "system";
/// Entries asked for per request (the server's largest page).
const PAGE: u64 = 1000;
/// Entries the server scans per request at most; a page that scanned fewer
/// (and filled less than its limit) reached the end of the log.
const SERVER_MAX_SCAN: u64 = 10_000;
/// The largest bundle `audit verify` reads (and any one member of it).
const MAX_BUNDLE_BYTES: u64 = 4 << 30;
/// How often `audit tail -f` polls.
const POLL: Duration = Duration::from_secs(1);

/// Why the trusted key has to be given on the command line.
const TRUST_HELP: &str = "give the key you trust with --key VKEY or --fingerprint HEX (exactly one). \
     The bundle carries its own keys.txt, but whoever could alter the bundle could alter that \
     too, so the trusted key must come from somewhere else: `warden audit key` run against the \
     server by someone you trust, or the fingerprint the operator published";

/// The audit commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCmd {
    /// Print the newest entries of a log (one line each); with -f, keep
    /// printing new ones until interrupted.
    Tail {
        /// `system` or an organization.
        #[arg(default_value = SYSTEM_LOG, value_parser = log_arg)]
        log: String,
        /// Keep polling every second and print new entries until Ctrl-C
        /// (your own reads of the log, such as these polls, are not shown).
        #[arg(short, long)]
        follow: bool,
        /// How many of the newest entries to print.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 20)]
        lines: u64,
    },
    /// Search a log: entries matching every filter given, oldest first.
    Query {
        /// `system` or an organization.
        #[arg(value_parser = log_arg)]
        log: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Stop after this many matches.
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
        /// Start at this sequence number.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        from: u64,
    },
    /// Print the log's newest signed checkpoint (a C2SP signed note): the
    /// text an auditor pins.
    Checkpoint {
        /// `system` or an organization.
        #[arg(value_parser = log_arg)]
        log: String,
    },
    /// Fetch an entry's inclusion proof and check it here: the checkpoint's
    /// signature, the entry's leaf hash and the Merkle audit path. Exit
    /// code 1 when anything does not verify.
    Proof {
        /// `system` or an organization.
        #[arg(value_parser = log_arg)]
        log: String,
        /// The entry's sequence number.
        #[arg(long, value_name = "N")]
        seq: u64,
        #[command(flatten)]
        pin: TrustArgs,
    },
    /// Download a verifiable export bundle (a tar archive) of a log.
    Export {
        /// `system` or an organization.
        #[arg(value_parser = log_arg)]
        log: String,
        #[command(flatten)]
        range: TimeArgs,
        /// Derived view to include next to the entries.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// The file to write (written as FILE.partial, then renamed).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Overwrite FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Verify an export bundle offline against a key you trust (no server,
    /// token or configuration needed), or with --live ask the server to
    /// verify a log as stored. Exit code 1 when it does not verify.
    Verify(VerifyArgs),
    /// Print the server's checkpoint verifier key and its fingerprint (no
    /// token needed).
    Key,
}

/// Entry filters of `audit query`.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Only entries by this principal (exactly, e.g. user:alice, sa:ci).
    #[arg(long, value_name = "PRINCIPAL")]
    actor: Option<String>,
    /// Only actions starting with PREFIX (e.g. `secret.` or `secret.read`).
    #[arg(long, value_name = "PREFIX")]
    action: Option<String>,
    /// Only targets starting with PREFIX (e.g. `acme/web/prod`).
    #[arg(long, value_name = "PREFIX")]
    target: Option<String>,
    #[command(flatten)]
    range: TimeArgs,
}

/// A time range.
#[derive(Debug, Args)]
pub(crate) struct TimeArgs {
    /// From this time on: RFC 3339 (2026-11-22T10:00:00Z) or how long ago
    /// (30s, 15m, 2h, 7d).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    since: Option<i64>,
    /// Up to this time: RFC 3339 or how long ago.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    until: Option<i64>,
}

impl TimeArgs {
    /// `since_ms=..&until_ms=..` (each with a leading `&`).
    fn query(&self) -> anyhow::Result<String> {
        if let (Some(s), Some(u)) = (self.since, self.until)
            && s > u
        {
            return Err(usage("--since is later than --until"));
        }
        let mut q = String::new();
        if let Some(s) = self.since {
            let _ = write!(q, "&since_ms={s}");
        }
        if let Some(u) = self.until {
            let _ = write!(q, "&until_ms={u}");
        }
        Ok(q)
    }
}

impl FilterArgs {
    /// The filters as query parameters (each with a leading `&`).
    fn query(&self) -> anyhow::Result<String> {
        let mut q = String::new();
        for (name, value) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
        ] {
            if let Some(v) = value {
                let _ = write!(q, "&{name}={}", url_encode(v));
            }
        }
        q.push_str(&self.range.query()?);
        Ok(q)
    }
}

/// The key a check trusts.
#[derive(Debug, Args)]
pub(crate) struct TrustArgs {
    /// The verifier key you trust, `name+keyid+base64` (from `warden audit
    /// key`, obtained by someone you trust).
    #[arg(long, value_name = "VKEY", conflicts_with = "fingerprint")]
    key: Option<String>,
    /// The SHA-256 fingerprint (64 hex digits) of the key you trust, e.g.
    /// the one the operator published.
    #[arg(long, value_name = "HEX")]
    fingerprint: Option<String>,
}

/// `audit verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The bundle file (from `warden audit export`).
    #[arg(
        value_name = "BUNDLE",
        required_unless_present = "live",
        conflicts_with = "live"
    )]
    bundle: Option<PathBuf>,
    /// Instead, ask the server to verify LOG as stored (needs audit.read;
    /// trusts the server's own key).
    #[arg(long, value_name = "LOG", value_parser = log_arg, conflicts_with_all = ["key", "fingerprint"])]
    live: Option<String>,
    #[command(flatten)]
    trust: TrustArgs,
    /// Also write the JSON transcript of the checks to FILE.
    #[arg(long, value_name = "FILE")]
    transcript: Option<PathBuf>,
}

/// The derived view in an export bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    /// Entries only (`entries.jsonl`).
    Jsonl,
    /// Plus `entries.csv`.
    Csv,
    /// Plus `entries.ocsf.json` (OCSF 1.3.0).
    Ocsf,
}

impl ExportFormat {
    fn as_str(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Ocsf => "ocsf",
        }
    }
}

impl AuditCmd {
    /// `audit verify BUNDLE` (it runs without a connection), or the command
    /// back.
    pub(crate) fn into_offline(self) -> Result<VerifyArgs, Box<AuditCmd>> {
        match self {
            Self::Verify(v) if v.live.is_none() => Ok(v),
            other => Err(Box::new(other)),
        }
    }

    /// Whether the command runs without a token.
    pub(crate) fn anonymous(&self) -> bool {
        matches!(self, Self::Key)
    }
}

/// A log name: `system` or an organization.
fn log_arg(s: &str) -> Result<String, String> {
    if s == SYSTEM_LOG {
        return Ok(s.to_owned());
    }
    ScopePath::parse_kind(s, ScopeKind::Organization)
        .map(|p| p.to_string())
        .map_err(|_| {
            format!(
                "invalid log {:?}: give `system` or an organization name",
                s.chars().take(64).collect::<String>()
            )
        })
}

fn time_arg(s: &str) -> Result<i64, String> {
    parse_time(s, output::now_ms())
}

/// Parses a time into ms since the epoch: RFC 3339
/// (`2026-11-22T10:00:00Z`, `2026-11-22T12:00:00.5+02:00`, or a bare date
/// for its midnight UTC) or a duration ago (`30s`, `15m`, `2h`, `7d`).
pub(crate) fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let shown: String = s.chars().take(40).collect();
    let bad = || {
        format!(
            "invalid time {shown:?}: give an RFC 3339 time (e.g. 2026-11-22T10:00:00Z) \
             or how long ago (e.g. 30s, 15m, 2h, 7d)"
        )
    };
    let relative = s.len() > 1
        && s.ends_with(['s', 'm', 'h', 'd'])
        && s[..s.len() - 1].bytes().all(|b| b.is_ascii_digit());
    let ms = if relative {
        let secs = parse_duration(s).map_err(|_| bad())?;
        let ago = i64::try_from(secs)
            .ok()
            .and_then(|x| x.checked_mul(1000))
            .ok_or_else(bad)?;
        now_ms.checked_sub(ago).ok_or_else(bad)?
    } else {
        rfc3339_ms(s).ok_or_else(bad)?
    };
    if ms < 0 {
        return Err(format!("invalid time {shown:?}: it is before 1970"));
    }
    Ok(ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// RFC 3339 (`T`, `t` or a space between date and time; `Z` or a numeric
/// offset; up to nine fraction digits, kept to the millisecond), or a bare
/// `YYYY-MM-DD`.
fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let d = b.get(from..to)?;
        if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(d).ok()?.parse().ok()
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return days.checked_mul(86_400_000);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start || i - start > 9 {
            return None;
        }
        let digits = (i - start).min(3);
        frac_ms = num(start, start + digits)? * 10_i64.pow(3 - digits as u32);
    }
    let offset_min = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            if *sign == b'-' {
                -(oh * 60 + om)
            } else {
                oh * 60 + om
            }
        }
        _ => return None,
    };
    // A leap second counts as the last millisecond of its minute's 59th.
    let (sec, frac_ms) = if sec == 60 { (59, 999) } else { (sec, frac_ms) };
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    secs.checked_mul(1000)?.checked_add(frac_ms)
}

/// Percent-encodes a query parameter value (everything but RFC 3986
/// unreserved characters).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The trust a bundle is verified against: exactly one of --key and
/// --fingerprint.
fn trust_of(a: &TrustArgs) -> anyhow::Result<Trust> {
    match (&a.key, &a.fingerprint) {
        (Some(k), None) => Ok(Trust::Key(vkey_arg(k)?)),
        (None, Some(f)) => Ok(Trust::Fingerprint(fingerprint_arg(f)?)),
        (None, None) => Err(usage(TRUST_HELP)),
        (Some(_), Some(_)) => Err(usage("give --key or --fingerprint, not both (exactly one)")),
    }
}

fn vkey_arg(k: &str) -> anyhow::Result<NoteVerifier> {
    NoteVerifier::from_vkey(k.trim()).map_err(|e| {
        usage(format!(
            "--key: {e} (a verifier key is name+keyid+base64, as `warden audit key` prints it)"
        ))
    })
}

/// A key fingerprint: 64 hex digits, optionally prefixed `sha256:`;
/// returned in lowercase without the prefix.
fn fingerprint_arg(f: &str) -> anyhow::Result<String> {
    let lower = f.trim().to_ascii_lowercase();
    let hex = lower.strip_prefix("sha256:").unwrap_or(&lower);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_owned())
    } else {
        Err(usage(format!(
            "--fingerprint {:?} is not a key fingerprint: give the 64 hex digits `warden audit key` prints",
            f.chars().take(80).collect::<String>()
        )))
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ClientError>(),
        Some(ClientError::Api { status: 404, .. })
    )
}

/// Runs an audit command that talks to the server.
pub(crate) async fn run(ctx: &Ctx, c: AuditCmd) -> anyhow::Result<()> {
    match c {
        AuditCmd::Tail { log, follow, lines } => tail(ctx, &log, lines, follow).await,
        AuditCmd::Query {
            log,
            filter,
            limit,
            from,
        } => query(ctx, &log, &filter, limit, from).await,
        AuditCmd::Checkpoint { log } => checkpoint(ctx, &log).await,
        AuditCmd::Proof { log, seq, pin } => proof(ctx, &log, seq, &pin).await,
        AuditCmd::Export {
            log,
            range,
            format,
            out,
            force,
        } => export(ctx, &log, &range, format, &out, force).await,
        AuditCmd::Verify(v) => verify_live(ctx, v).await,
        AuditCmd::Key => key(ctx).await,
    }
}

/// One page of entries from `from`: the entries, where the next page
/// starts, and whether the end of the log was reached.
async fn page(
    ctx: &Ctx,
    log: &str,
    from: u64,
    limit: u64,
    filters: &str,
) -> anyhow::Result<(Vec<Value>, u64, bool)> {
    let url = format!("/api/v1/audit/{log}/entries?from={from}&limit={limit}{filters}");
    let (p, _): (AuditEntries, _) = ctx.call(M::GET, &url, None).await?;
    let next = u64::try_from(p.next_seq).unwrap_or(from).max(from);
    let at_end = (p.entries.len() as u64) < limit && next - from < SERVER_MAX_SCAN;
    Ok((p.entries, next, at_end))
}

/// Prints entries: one line each, or one compact JSON object per line.
fn emit<'a>(output: Output, entries: impl IntoIterator<Item = &'a Value>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for e in entries {
        match output {
            Output::Json => writeln!(out, "{e}")?,
            Output::Text => writeln!(out, "{}", output::audit_entry(e))?,
        }
    }
    out.flush()
}

/// Stops quietly when the reader went away (`warden audit tail | head`).
fn emitted(r: std::io::Result<()>) -> anyhow::Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to standard output"),
    }
}

async fn tail(ctx: &Ctx, log: &str, lines: u64, follow: bool) -> anyhow::Result<()> {
    // The newest checkpoint (signed on request) gives the log's size, so
    // only the last pages are read.
    let size = match ctx
        .call::<AuditCheckpoint>(M::GET, &format!("/api/v1/audit/{log}/checkpoint"), None)
        .await
    {
        Ok((c, _)) => u64::try_from(c.size).unwrap_or(0),
        Err(e) if is_not_found(&e) => 0,
        Err(e) => return Err(e),
    };
    let mut cursor = size.saturating_sub(lines);
    let mut last: VecDeque<Value> = VecDeque::new();
    loop {
        let (entries, next, end) = page(ctx, log, cursor, PAGE, "").await?;
        for e in entries {
            last.push_back(e);
            if last.len() as u64 > lines {
                last.pop_front();
            }
        }
        cursor = next;
        if end {
            break;
        }
    }
    if !emitted(emit(ctx.output(), &last))? || !follow {
        return Ok(());
    }
    // Polling the log is itself audited in it, twice a second. Entries
    // record the token only as a per-log MAC, so this command's own polls
    // are recognised by principal, action and target: audit.read of this
    // log by the caller is left out (and the user is told).
    let me = ctx
        .call::<WhoAmI>(M::GET, "/api/v1/auth/whoami", None)
        .await
        .ok()
        .map(|(w, _)| w.principal);
    match &me {
        Some(me) => eprintln!(
            "(following {log} until Ctrl-C; audit.read entries of {log} by {}, such as this command's own polls, are not shown)",
            output::printable(me)
        ),
        None => eprintln!("(following {log} until Ctrl-C)"),
    }
    let own = |e: &Value| {
        me.as_deref().is_some_and(|me| {
            e["actor"]["principal"].as_str() == Some(me)
                && e["action"].as_str() == Some("audit.read")
                && e["target"].as_str() == Some(log)
        })
    };
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the Ctrl-C handler")?;
    loop {
        let step = async {
            tokio::time::sleep(POLL).await;
            loop {
                let (entries, next, end) = page(ctx, log, cursor, PAGE, "").await?;
                cursor = next;
                if !emitted(emit(ctx.output(), entries.iter().filter(|e| !own(e))))? {
                    return Ok::<_, anyhow::Error>(false);
                }
                if end {
                    return Ok(true);
                }
            }
        };
        tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            more = step => if !more? { return Ok(()) },
        }
    }
}

async fn query(
    ctx: &Ctx,
    log: &str,
    filter: &FilterArgs,
    limit: u64,
    from: u64,
) -> anyhow::Result<()> {
    let filters = filter.query()?;
    let mut found: Vec<Value> = Vec::new();
    let mut cursor = from;
    let mut complete = false;
    while (found.len() as u64) < limit {
        let want = (limit - found.len() as u64).min(PAGE);
        let (entries, next, end) = page(ctx, log, cursor, want, &filters).await?;
        found.extend(entries);
        cursor = next;
        if end {
            complete = true;
            break;
        }
    }
    if ctx.output() == Output::Json {
        let raw = json!({"log": log, "entries": found, "next_seq": cursor, "complete": complete});
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(());
    }
    if found.is_empty() {
        println!("(no matching entries in {log})");
    }
    emitted(emit(Output::Text, &found))?;
    if !complete {
        eprintln!("(stopped at --limit {limit}; continue with --from {cursor})");
    }
    Ok(())
}

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

fn served_key(c: &AuditCheckpoint) -> anyhow::Result<NoteVerifier> {
    NoteVerifier::from_vkey(&c.key)
        .map_err(|e| anyhow!("the server's verifier key does not parse: {e}"))
}

async fn checkpoint(ctx: &Ctx, log: &str) -> anyhow::Result<()> {
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
struct ProofReport {
    tree_size: u64,
    root: Hash,
    leaf: Hash,
    path_len: usize,
}

fn hash_arg(what: &str, s: &str) -> Result<Hash, String> {
    hex::decode(s)
        .ok()
        .and_then(|b| Hash::try_from(b.as_slice()).ok())
        .ok_or_else(|| format!("{what} is not a 32-byte hex hash"))
}

/// Checks a served inclusion proof of entry `seq` of `log` under `key`:
/// the note's signature, the entry (its seq, its log, its leaf hash) and
/// the audit path to the signed root.
fn check_proof(
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

async fn proof(ctx: &Ctx, log: &str, seq: u64, pin: &TrustArgs) -> anyhow::Result<()> {
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

fn pinned_key_or_fp(pin: &TrustArgs) -> bool {
    pin.key.is_some() || pin.fingerprint.is_some()
}

/// `FILE.partial` next to `FILE`.
fn partial_path(out: &Path) -> anyhow::Result<PathBuf> {
    let mut name = out
        .file_name()
        .ok_or_else(|| usage("--out must name a file"))?
        .to_os_string();
    name.push(".partial");
    Ok(out.with_file_name(name))
}

/// Refuses an existing `out` unless `force`.
fn check_out(out: &Path, force: bool) -> anyhow::Result<()> {
    if out.is_dir() {
        return Err(usage(format!("--out {} is a directory", out.display())));
    }
    if !force && out.symlink_metadata().is_ok() {
        return Err(Conflict(format!(
            "{} exists already: pass --force to overwrite it",
            out.display()
        ))
        .into());
    }
    Ok(())
}

/// Writes `bytes` to `FILE.partial`, syncs it, and renames it to `out`.
fn write_file(out: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let partial = partial_path(out)?;
    let written = (|| {
        let mut f = std::fs::File::create(&partial)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    let done = written
        .with_context(|| format!("writing {}", partial.display()))
        .and_then(|()| check_out(out, force))
        .and_then(|()| {
            std::fs::rename(&partial, out)
                .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))
        });
    if done.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    done
}

async fn export(
    ctx: &Ctx,
    log: &str,
    range: &TimeArgs,
    format: ExportFormat,
    out: &Path,
    force: bool,
) -> anyhow::Result<()> {
    let times = range.query()?;
    partial_path(out)?;
    check_out(out, force)?;
    let url = format!(
        "/api/v1/audit/{log}/export?format={}{times}",
        format.as_str()
    );
    // A spinner while the server assembles the bundle, then a byte bar as
    // it arrives.
    let bar = (ctx.output() == Output::Text && std::io::stderr().is_terminal())
        .then(|| output::spinner(&format!("preparing the audit bundle of {log}")));
    let body = ctx
        .call_bytes_with_progress(M::GET, &url, None, |received, total| {
            if let Some(b) = &bar {
                if let (Some(total), None) = (total, b.length()) {
                    output::download_bar(b, total);
                }
                b.set_position(received);
            }
        })
        .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let body = body?;
    write_file(out, &body, force)?;
    let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &body));
    let manifest = Bundle::read_from(&body[..], MAX_BUNDLE_BYTES)
        .map(|b| b.manifest)
        .map_err(|e| {
            anyhow!(
                "wrote {} (SHA-256 {sha256}), but it does not read as an audit bundle: {e}",
                out.display()
            )
        })?;
    let raw = json!({
        "path": out.display().to_string(),
        "bytes": body.len(),
        "sha256": sha256,
        "log": manifest.log,
        "format": format.as_str(),
        "first_seq": manifest.first_seq,
        "end_seq": manifest.end_seq,
        "entries": manifest.end_seq.saturating_sub(manifest.first_seq),
    });
    ctx.print(&raw, || {
        println!("wrote {}", out.display());
        println!("  size:    {} bytes", body.len());
        println!(
            "  entries: {}..{} of log {} ({} entries)",
            manifest.first_seq,
            manifest.end_seq,
            output::printable(&manifest.log),
            manifest.end_seq.saturating_sub(manifest.first_seq)
        );
        println!("  sha256:  {sha256}");
    })
}

/// The fields of a verification transcript (the server's, or ours
/// serialized) that the verdict line needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TranscriptView {
    verdict: String,
    log: String,
    first_seq: u64,
    end_seq: u64,
    checkpoints_verified: Vec<u64>,
    key_fingerprint: Option<String>,
    first_bad_seq: Option<u64>,
    reason: Option<String>,
}

/// `VERIFIED: log acme, entries 0..1234, 17 checkpoints, key <fp>` or
/// `FAILED at seq N: reason`.
fn verdict_line(t: &TranscriptView) -> String {
    if t.verdict == "ok" {
        let n = t.checkpoints_verified.len();
        return format!(
            "VERIFIED: log {}, entries {}..{}, {n} checkpoint{}, key {}",
            output::printable(&t.log),
            t.first_seq,
            t.end_seq,
            if n == 1 { "" } else { "s" },
            output::printable(t.key_fingerprint.as_deref().unwrap_or("(unknown)"))
        );
    }
    let reason = output::printable(t.reason.as_deref().unwrap_or("no reason given"));
    match t.first_bad_seq {
        Some(seq) => format!("FAILED at seq {seq}: {reason}"),
        None => format!("FAILED: {reason}"),
    }
}

/// Writes the transcript where asked, prints the verdict, and fails (exit
/// code 1) unless it is `ok`.
fn report_verdict(output: Output, raw: &Value, transcript: Option<&Path>) -> anyhow::Result<()> {
    let t: TranscriptView = serde_json::from_value(raw.clone())
        .context("the verification transcript is not what the API documents")?;
    if let Some(path) = transcript {
        let mut text = serde_json::to_string_pretty(raw)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(raw)?),
        Output::Text => println!("{}", verdict_line(&t)),
    }
    if t.verdict == "ok" {
        return Ok(());
    }
    Err(match t.first_bad_seq {
        Some(seq) => anyhow!("the audit log did not verify: the first bad entry is seq {seq}"),
        None => anyhow!("the audit log did not verify"),
    })
}

/// `audit verify BUNDLE`: offline, against the key given.
pub(crate) fn verify_offline(output: Output, v: VerifyArgs) -> anyhow::Result<()> {
    let trust = trust_of(&v.trust)?;
    let path = v
        .bundle
        .ok_or_else(|| usage("give the BUNDLE file to verify (or --live LOG)"))?;
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let raw = match Bundle::read_from(BufReader::new(file), MAX_BUNDLE_BYTES) {
        Ok(bundle) => serde_json::to_value(verify_bundle(&bundle, &trust))?,
        // A truncated or garbled archive is a failed verification too.
        Err(e) => {
            let reason = format!("{} is not a sound bundle: {e}", path.display());
            json!({
                "verdict": "failed",
                "first_bad_seq": null,
                "reason": reason,
                "checks": [format!("FAILED: {reason}")],
            })
        }
    };
    report_verdict(output, &raw, v.transcript.as_deref())
}

async fn verify_live(ctx: &Ctx, v: VerifyArgs) -> anyhow::Result<()> {
    let log = v
        .live
        .ok_or_else(|| usage("give the BUNDLE file to verify (or --live LOG)"))?;
    let (raw, _): (Value, _) = ctx
        .call(M::POST, &format!("/api/v1/audit/{log}/verify"), None)
        .await?;
    report_verdict(ctx.output(), &raw, v.transcript.as_deref())
}

async fn key(ctx: &Ctx) -> anyhow::Result<()> {
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
    use clap::Parser;
    use warden_tlog::merkle::inclusion_proof;
    use warden_tlog::note::NoteSigner;

    use super::*;
    use crate::cli::Cli;
    use crate::error::exit_code;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        let t = |s: &str| parse_time(s, NOW);
        assert_eq!(t("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(t("2026-11-22T10:00:00Z"), Ok(1_795_341_600_000));
        assert_eq!(
            output::time_or(t("2026-11-22T10:00:00Z").ok(), ""),
            "2026-11-22 10:00:00Z"
        );
        assert_eq!(t("2026-11-22t10:00:00.5z"), Ok(1_795_341_600_500));
        assert_eq!(
            t("2026-11-22 12:00:00.123456789+02:00"),
            Ok(1_795_341_600_123)
        );
        assert_eq!(t("2026-11-22T05:30:00-04:30"), Ok(1_795_341_600_000));
        assert_eq!(t("2026-11-22"), Ok(1_795_305_600_000));
        assert_eq!(t("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        assert_eq!(t("2016-12-31T23:59:60Z"), Ok(1_483_228_799_999));
        assert_eq!(t("15m"), Ok(NOW - 15 * 60_000));
        assert_eq!(t("2h"), Ok(NOW - 2 * 3_600_000));
        assert_eq!(t("7d"), Ok(NOW - 7 * 86_400_000));
        assert_eq!(t("30s"), Ok(NOW - 30_000));
        for bad in [
            "",
            "m",
            "0m",
            "15",
            "15x",
            "-15m",
            "1.5h",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T10:00:00",
            "2026-11-22T10:00Z",
            "2026-11-22T10:00:00.Z",
            "2026-11-22T10:00:00.1234567890Z",
            "2026-11-22T10:00:00+0200",
            "2026-11-22T10:00:00Zjunk",
            "2026-1-22",
            "1969-12-31T23:59:59Z",
            "99999999999999d",
        ] {
            assert!(t(bad).is_err(), "{bad:?} was accepted: {:?}", t(bad));
        }
    }

    #[test]
    fn bad_times_and_logs_are_usage_errors() {
        for args in [
            &["warden", "audit", "query", "acme", "--since", "soon"][..],
            &["warden", "audit", "tail", "Acme"],
            &["warden", "audit", "tail", "../x"],
            &[
                "warden", "audit", "export", "acme", "--out", "x", "--format", "xml",
            ],
            &["warden", "audit", "verify"],
            &["warden", "audit", "verify", "b.tar", "--live", "acme"],
            &[
                "warden",
                "audit",
                "verify",
                "--live",
                "acme",
                "--fingerprint",
                "ab",
            ],
            &[
                "warden",
                "audit",
                "verify",
                "b.tar",
                "--key",
                "k",
                "--fingerprint",
                "f",
            ],
            &["warden", "audit", "query", "acme", "--limit", "0"],
        ] {
            let r = Cli::try_parse_from(args);
            assert!(
                r.as_ref().is_err_and(|e| e.exit_code() == 2),
                "{args:?}: {r:?}"
            );
        }
        for args in [
            &["warden", "audit", "tail"][..],
            &["warden", "audit", "tail", "acme", "-f", "-n", "5"],
            &[
                "warden",
                "audit",
                "query",
                "acme",
                "--since",
                "2h",
                "--action",
                "secret.read",
            ],
            &["warden", "audit", "verify", "b.tar", "--fingerprint", "ab"],
            &["warden", "audit", "verify", "--live", "system"],
            &["warden", "audit", "proof", "acme", "--seq", "0"],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
        let t = TimeArgs {
            since: Some(2),
            until: Some(1),
        };
        assert_eq!(t.query().map_err(|e| exit_code(&e)), Err(2));
    }

    #[test]
    fn the_trusted_key_is_required_and_checked() {
        let none = TrustArgs {
            key: None,
            fingerprint: None,
        };
        let err = trust_of(&none).unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert!(err.to_string().contains("warden audit key"), "{err}");
        let fp = "AB".repeat(32);
        assert_eq!(
            fingerprint_arg(&format!("sha256:{fp}")).unwrap(),
            "ab".repeat(32)
        );
        for bad in ["", "abcd1234", &"g".repeat(64), &"a".repeat(63)] {
            assert_eq!(exit_code(&fingerprint_arg(bad).unwrap_err()), 2, "{bad}");
        }
        assert_eq!(exit_code(&vkey_arg("nope").unwrap_err()), 2);
        let (signer, _) = NoteSigner::generate("warden-audit").unwrap();
        assert!(vkey_arg(&signer.verifier_key()).is_ok());
    }

    #[test]
    fn query_parameters_are_encoded() {
        assert_eq!(
            url_encode("acme/web#K@v2 x+y"),
            "acme%2Fweb%23K%40v2%20x%2By"
        );
        assert_eq!(url_encode("secret.read"), "secret.read");
        let f = FilterArgs {
            actor: Some("user:root".into()),
            action: None,
            target: Some("acme/web".into()),
            range: TimeArgs {
                since: Some(5),
                until: None,
            },
        };
        assert_eq!(
            f.query().unwrap(),
            "&actor=user%3Aroot&target=acme%2Fweb&since_ms=5"
        );
    }

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

    #[test]
    fn verdicts_read_alike_from_either_side() {
        let ok = TranscriptView {
            verdict: "ok".into(),
            log: "acme".into(),
            first_seq: 0,
            end_seq: 1234,
            checkpoints_verified: (1..=17).collect(),
            key_fingerprint: Some("ab12".into()),
            ..TranscriptView::default()
        };
        assert_eq!(
            verdict_line(&ok),
            "VERIFIED: log acme, entries 0..1234, 17 checkpoints, key ab12"
        );
        let failed = TranscriptView {
            verdict: "failed".into(),
            first_bad_seq: Some(41),
            reason: Some("entry 42's prev is not the hash of entry 41".into()),
            ..TranscriptView::default()
        };
        assert_eq!(
            verdict_line(&failed),
            "FAILED at seq 41: entry 42's prev is not the hash of entry 41"
        );
        let err = report_verdict(
            Output::Text,
            &json!({"verdict": "failed", "first_bad_seq": 41, "reason": "x"}),
            None,
        )
        .unwrap_err();
        assert_eq!(exit_code(&err), 1);
        assert!(err.to_string().contains("seq 41"));
        assert!(report_verdict(Output::Text, &json!({"verdict": "ok"}), None).is_ok());
    }

    #[test]
    fn exports_never_clobber_and_leave_no_partial_file() {
        let dir = tempdir();
        let out = dir.join("audit.tar");
        write_file(&out, b"one", false).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"one");
        assert!(!dir.join("audit.tar.partial").exists());
        let err = check_out(&out, false).unwrap_err();
        assert_eq!(exit_code(&err), 6);
        let err = write_file(&out, b"two", false).unwrap_err();
        assert_eq!(exit_code(&err), 6);
        assert_eq!(std::fs::read(&out).unwrap(), b"one");
        assert!(!dir.join("audit.tar.partial").exists());
        write_file(&out, b"three", true).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"three");
        assert_eq!(exit_code(&check_out(&dir, true).unwrap_err()), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "warden-cli-audit-{}-{}",
            std::process::id(),
            output::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn offline_verification_reads_a_bundle_and_names_the_bad_entry() {
        let dir = tempdir();
        let missing = VerifyArgs {
            bundle: Some(dir.join("nope.tar")),
            live: None,
            trust: TrustArgs {
                key: None,
                fingerprint: Some("ab".repeat(32)),
            },
            transcript: None,
        };
        let err = verify_offline(Output::Text, missing).unwrap_err();
        assert!(format!("{err:#}").contains("nope.tar"), "{err:#}");
        let junk = dir.join("junk.tar");
        std::fs::write(&junk, b"not a tar at all").unwrap();
        let transcript = dir.join("t.json");
        let err = verify_offline(
            Output::Text,
            VerifyArgs {
                bundle: Some(junk),
                live: None,
                trust: TrustArgs {
                    key: None,
                    fingerprint: Some("ab".repeat(32)),
                },
                transcript: Some(transcript.clone()),
            },
        )
        .unwrap_err();
        assert_eq!(exit_code(&err), 1);
        let t: Value = serde_json::from_slice(&std::fs::read(&transcript).unwrap()).unwrap();
        assert_eq!(t["verdict"], "failed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
