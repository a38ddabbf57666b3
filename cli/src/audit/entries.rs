//! Reading a log's entries: `audit tail` (optionally following) and
//! `audit query`, page by page.

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use hyper::Method as M;
use serde_json::{Value, json};
use warden_api::{AuditCheckpoint, AuditEntries, ClientError, WhoAmI};

use super::args::FilterArgs;
use crate::ctx::{Ctx, Output};
use crate::output;

/// Entries asked for per request (the server's largest page).
const PAGE: u64 = 1000;

/// Entries the server scans per request at most; a page that scanned fewer
/// (and filled less than its limit) reached the end of the log.
const SERVER_MAX_SCAN: u64 = 10_000;

/// How often `audit tail -f` polls.
const POLL: Duration = Duration::from_secs(1);

/// Whether the server answered 404.
fn is_not_found(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ClientError>(),
        Some(ClientError::Api { status: 404, .. })
    )
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

/// `audit tail`: the newest `lines` entries, then (with `follow`) new
/// ones until Ctrl-C.
pub(super) async fn tail(ctx: &Ctx, log: &str, lines: u64, follow: bool) -> anyhow::Result<()> {
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
    // are recognised by principal, action and target: audit.entries of this
    // log by the caller is left out (and the user is told).
    let me = ctx
        .call::<WhoAmI>(M::GET, "/api/v1/auth/whoami", None)
        .await
        .ok()
        .map(|(w, _)| w.principal);
    match &me {
        Some(me) => eprintln!(
            "(following {log} until Ctrl-C; audit.entries entries of {log} by {}, such as this command's own polls, are not shown)",
            output::printable(me)
        ),
        None => eprintln!("(following {log} until Ctrl-C)"),
    }
    let own = |e: &Value| {
        me.as_deref().is_some_and(|me| {
            e["actor"]["principal"].as_str() == Some(me)
                && e["action"].as_str() == Some("audit.entries")
                && e["target"]["name"].as_str() == Some(log)
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

/// `audit query`: up to `limit` entries from `from` that match `filter`.
pub(super) async fn query(
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
