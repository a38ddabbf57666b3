//! `warden audit`: tail and query a log, fetch its signed checkpoint, fetch
//! and check an inclusion proof, export a bundle, verify a bundle offline
//! (or a log live, on the server), and print the checkpoint verifier key.
//!
//! `audit verify BUNDLE` is dispatched before any connection is made: it
//! reads no client configuration, needs no server address, token or CA,
//! and trusts only the key given on its command line.
//!
//! This module holds the grammar and the dispatch; each part lives in a
//! submodule, and none of them imports this one.

use std::path::PathBuf;

use clap::Subcommand;

use self::args::{FilterArgs, SYSTEM_LOG, TimeArgs, TrustArgs, log_arg};
use self::checkpoints::{checkpoint, key, proof};
use self::entries::{query, tail};
use self::export::{ExportFormat, export};
pub(crate) use self::verify::verify_offline;
use self::verify::{VerifyArgs, verify_live};
use crate::ctx::Ctx;

mod args;
mod checkpoints;
mod entries;
mod export;
pub(crate) mod recording;
mod time;
mod verify;

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
