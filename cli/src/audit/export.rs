//! `audit export`: download a log's bundle without clobbering a file or
//! leaving a partial one behind.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::ValueEnum;
use hyper::Method as M;
use serde_json::json;
use warden_tlog::bundle::Bundle;

use super::args::TimeArgs;
use super::verify::MAX_BUNDLE_BYTES;
use crate::ctx::{Ctx, Output};
use crate::error::{Conflict, usage};
use crate::output;

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
    /// The `format` query parameter.
    fn as_str(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Ocsf => "ocsf",
        }
    }
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

/// `audit export`: downloads the bundle to `out`, then reads it back to
/// report what it holds.
pub(super) async fn export(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

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
            "warden-cli-audit-export-{}-{}",
            std::process::id(),
            output::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
