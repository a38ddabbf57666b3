//! Results: the machine, one row per scenario, the targets, and their
//! rendering as a table and as JSON.

use std::process::Command;

use serde::Serialize;

use crate::cpu::Usage;
use crate::load::{Measurement, Plan};

/// Where the numbers were taken.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// Usable CPUs (what `nproc` prints).
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// `git rev-parse --short HEAD`, with `-dirty` if the tree has changes.
    pub commit: String,
    /// `release` or `debug` (debug numbers mean nothing).
    pub build: &'static str,
}

impl Machine {
    /// Looks at this machine and source tree.
    pub fn detect() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim() == "model name")
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let tree = env!("CARGO_MANIFEST_DIR");
        let commit = match git(tree, &["rev-parse", "--short", "HEAD"]) {
            Some(head) => match git(tree, &["status", "--porcelain"]) {
                Some(changes) if !changes.is_empty() => format!("{head}-dirty"),
                _ => head,
            },
            None => "unknown".to_owned(),
        };
        Self {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            commit,
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }

    /// Prints the machine header.
    pub fn print(&self) {
        println!("machine: nproc {}, {}", self.nproc, self.cpu);
        println!("commit:  {}", self.commit);
        println!("build:   {}", self.build);
        if self.build == "debug" {
            println!("WARNING: debug build; run with --release for meaningful numbers");
        }
    }
}

fn git(dir: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// How the run was configured.
#[derive(Debug, Serialize)]
pub struct Config {
    /// Concurrent connections.
    pub connections: usize,
    /// Warmup seconds per scenario.
    pub warmup_seconds: u64,
    /// Measured seconds per scenario.
    pub seconds: u64,
    /// Backends asked for.
    pub backend: String,
}

/// One scenario's results.
#[derive(Debug, Serialize)]
pub struct Row {
    /// `baseline`, `secret read` or `secret write`.
    pub scenario: &'static str,
    /// `sqlite`, `postgres` or `-`.
    pub backend: &'static str,
    /// Concurrent connections.
    pub connections: usize,
    /// Requests completed in the window.
    pub requests: u64,
    /// Of which answered 200.
    pub ok: u64,
    /// Of which not 200 (including `transport_errors`).
    pub errors: u64,
    /// Requests without an HTTP answer (connection error or timeout).
    pub transport_errors: u64,
    /// Errors during the warmup.
    pub warmup_errors: u64,
    /// Connections lost for good.
    pub lost_connections: u64,
    /// Length of the measured window.
    pub seconds: f64,
    /// 200 answers per second.
    pub rps: f64,
    /// Latency percentiles and mean, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Mean response body size.
    pub mean_response_bytes: f64,
    /// `rps` over the baseline's.
    pub vs_baseline: Option<f64>,
    /// The first error seen.
    pub first_error: Option<String>,
    /// CPU use during the window.
    pub cpu: Option<Usage>,
}

impl Row {
    /// Summarizes a measurement.
    pub fn new(
        scenario: &'static str,
        backend: &'static str,
        plan: Plan,
        m: &Measurement,
        baseline_rps: Option<f64>,
    ) -> Self {
        let requests = m.requests();
        Self {
            scenario,
            backend,
            connections: plan.connections,
            requests,
            ok: m.ok,
            errors: m.errors,
            transport_errors: m.transport_errors,
            warmup_errors: m.warmup_errors,
            lost_connections: m.lost_connections,
            seconds: m.window.as_secs_f64(),
            rps: m.rps(),
            p50_ms: m.percentile_ms(0.50),
            p90_ms: m.percentile_ms(0.90),
            p99_ms: m.percentile_ms(0.99),
            p999_ms: m.percentile_ms(0.999),
            max_ms: m.percentile_ms(1.0),
            mean_ms: m.mean_ms(),
            mean_response_bytes: if requests > 0 {
                m.response_bytes as f64 / requests as f64
            } else {
                0.0
            },
            vs_baseline: baseline_rps.filter(|&b| b > 0.0).map(|b| m.rps() / b),
            first_error: m.first_error.clone(),
            cpu: m.cpu,
        }
    }

    fn has_problems(&self) -> bool {
        self.errors > 0 || self.warmup_errors > 0 || self.lost_connections > 0 || self.ok == 0
    }
}

/// A target figure and whether the run met it.
#[derive(Debug, Serialize)]
pub struct Check {
    /// Scenario it applies to (on SQLite).
    pub scenario: &'static str,
    /// What is compared, e.g. `req/s >= 15000`.
    pub target: String,
    /// Measured value.
    pub value: f64,
    /// Whether the target was met.
    pub pass: bool,
}

/// CPU use outside this process (cores) above which a window is reported as
/// disturbed. Not zero: the kernel's own I/O threads (journal commits for
/// fsync) count as other processes and use a little during writes.
const DISTURBED_CORES: f64 = 0.3;

/// The reference targets, measured on SQLite at 64 connections.
const TARGET_CONNECTIONS: usize = 64;

enum Metric {
    Rps,
    P99Ms,
    VsBaseline,
}

/// (scenario, metric, limit, higher is better).
const GOALS: &[(&str, Metric, f64, bool)] = &[
    ("secret read", Metric::Rps, 15_000.0, true),
    ("secret read", Metric::P99Ms, 10.0, false),
    ("secret read", Metric::VsBaseline, 0.3, true),
    ("secret write", Metric::Rps, 4_000.0, true),
    ("secret write", Metric::P99Ms, 20.0, false),
];

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Where.
    pub machine: Machine,
    /// How.
    pub config: Config,
    /// One row per scenario, in run order.
    pub results: Vec<Row>,
    /// Targets (SQLite rows), filled by [`Report::finish`].
    pub targets: Vec<Check>,
    /// Backends or scenarios that could not run, with why.
    pub failures: Vec<String>,
}

impl Report {
    /// An empty report.
    pub fn new(config: Config, machine: Machine) -> Self {
        Self {
            machine,
            config,
            results: Vec::new(),
            targets: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Row) {
        self.results.push(row);
    }

    /// Records a backend's read and write measurements, or why it failed.
    pub fn record(
        &mut self,
        backend: &'static str,
        plan: Plan,
        baseline_rps: f64,
        outcome: anyhow::Result<[Measurement; 2]>,
    ) {
        match outcome {
            Ok([read, write]) => {
                self.push(Row::new(
                    "secret read",
                    backend,
                    plan,
                    &read,
                    Some(baseline_rps),
                ));
                self.push(Row::new(
                    "secret write",
                    backend,
                    plan,
                    &write,
                    Some(baseline_rps),
                ));
            }
            Err(e) => self.failures.push(format!("{backend}: {e:#}")),
        }
    }

    /// Scenarios that ran but never got a single 200: as good as failed.
    pub fn finish(&mut self) {
        for row in &self.results {
            if row.ok == 0 {
                self.failures.push(format!(
                    "{} ({}): no successful request",
                    row.scenario, row.backend
                ));
            }
        }
        self.targets = GOALS
            .iter()
            .filter_map(|(scenario, metric, limit, higher)| {
                let row = self
                    .results
                    .iter()
                    .find(|r| r.scenario == *scenario && r.backend == "sqlite")?;
                let (name, value) = match metric {
                    Metric::Rps => ("req/s", row.rps),
                    Metric::P99Ms => ("p99 ms", row.p99_ms),
                    Metric::VsBaseline => ("x baseline", row.vs_baseline?),
                };
                let (op, pass) = if *higher {
                    (">=", value >= *limit)
                } else {
                    ("<=", value <= *limit)
                };
                Some(Check {
                    scenario,
                    target: format!("{name} {op} {limit}"),
                    value,
                    pass,
                })
            })
            .collect();
    }

    /// Prints the table, the problems seen and the targets.
    pub fn print(&self) {
        println!(
            "{:<13} {:<9} {:>5} {:>9} {:>7} {:>10} {:>8} {:>8} {:>12}  CPU cores: own/postgres/other/iowait",
            "scenario",
            "backend",
            "conns",
            "requests",
            "errors",
            "req/s",
            "p50 ms",
            "p99 ms",
            "vs baseline"
        );
        for r in &self.results {
            let ratio = r
                .vs_baseline
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x"));
            let cpu = r.cpu.map_or_else(
                || "-".to_owned(),
                |c| {
                    format!(
                        "{:.2}/{:.2}/{:.2}/{:.2}",
                        c.own_cores, c.postgres_cores, c.other_cores, c.iowait_cores
                    )
                },
            );
            println!(
                "{:<13} {:<9} {:>5} {:>9} {:>7} {:>10.0} {:>8.2} {:>8.2} {:>12}  {}",
                r.scenario,
                r.backend,
                r.connections,
                r.requests,
                r.errors,
                r.rps,
                r.p50_ms,
                r.p99_ms,
                ratio,
                cpu
            );
        }
        for r in &self.results {
            if let Some(c) = r.cpu.filter(|c| c.other_cores > DISTURBED_CORES) {
                println!(
                    "WARNING: other processes used {:.2} of {} CPUs during {} ({}): \
                     its figures are likely depressed; rerun on a quiet machine",
                    c.other_cores, c.cpus, r.scenario, r.backend
                );
            }
        }
        let problems: Vec<&Row> = self.results.iter().filter(|r| r.has_problems()).collect();
        if !problems.is_empty() {
            println!();
            for r in problems {
                println!(
                    "{} ({}): {} errors ({} without an HTTP answer), {} during warmup, {} connections lost",
                    r.scenario,
                    r.backend,
                    r.errors,
                    r.transport_errors,
                    r.warmup_errors,
                    r.lost_connections
                );
                if let Some(e) = &r.first_error {
                    println!("  first error: {e}");
                }
            }
        }
        for f in &self.failures {
            println!("FAILED: {f}");
        }
        println!();
        println!("targets (SQLite, {TARGET_CONNECTIONS} connections):");
        if self.config.connections != TARGET_CONNECTIONS {
            println!(
                "  note: this run used {} connections; the targets are defined at {TARGET_CONNECTIONS}",
                self.config.connections
            );
        }
        if self.targets.is_empty() {
            println!("  not evaluated (no SQLite results)");
        }
        for c in &self.targets {
            println!(
                "  {:<13} {:<20} {:>10.2}  {}",
                c.scenario,
                c.target,
                c.value,
                if c.pass { "PASS" } else { "MISS" }
            );
        }
    }
}
