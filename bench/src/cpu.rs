//! CPU accounting over a measured window, from `/proc/stat` (the whole
//! machine), `/proc/self/stat` (this process: server and client) and
//! `/proc/PID/stat` of the PostgreSQL server's processes, so a run disturbed
//! by other processes, or one waiting on the disk, shows it.

use std::collections::HashMap;

use serde::Serialize;

/// Cumulative tick counters at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    /// All CPU time of the machine, every state.
    total: u64,
    /// Idle time (not counting I/O wait).
    idle: u64,
    /// Idle time with I/O outstanding.
    iowait: u64,
    /// This process's user + system time.
    own: u64,
    /// User + system time of each `postgres` process.
    postgres: HashMap<u32, u64>,
    cpus: usize,
}

/// CPU use over a window, in cores (0..=`cpus`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// Used by this process (the server under test and the load client).
    pub own_cores: f64,
    /// Used by the PostgreSQL server's processes.
    pub postgres_cores: f64,
    /// Used by every other process on the machine (including the kernel's
    /// I/O threads).
    pub other_cores: f64,
    /// Idle with I/O outstanding (e.g. waiting for fsync).
    pub iowait_cores: f64,
    /// CPUs of the machine.
    pub cpus: usize,
}

impl Sample {
    /// Reads the counters; `None` where /proc is unavailable.
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let mut cpus = 0;
        let mut line = None;
        for l in stat.lines() {
            if l.starts_with("cpu ") {
                line = Some(l);
            } else if l.starts_with("cpu") {
                cpus += 1;
            }
        }
        // user nice system idle iowait irq softirq steal [guest guest_nice]:
        // guest time is already counted in user and nice.
        let fields: Vec<u64> = line?
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let (_, own) = process_ticks("/proc/self/stat")?;
        let postgres = std::fs::read_dir("/proc")
            .ok()?
            .filter_map(|entry| {
                let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
                let (name, ticks) = process_ticks(&format!("/proc/{pid}/stat"))?;
                (name == "postgres").then_some((pid, ticks))
            })
            .collect();
        Some(Self {
            total: fields.iter().sum(),
            idle: *fields.get(3)?,
            iowait: *fields.get(4)?,
            own,
            postgres,
            cpus: cpus.max(1),
        })
    }

    /// Usage between `self` and a later sample.
    pub fn until(&self, later: &Self) -> Option<Usage> {
        let total = later.total.checked_sub(self.total)?;
        if total == 0 {
            return None;
        }
        let cores = |ticks: u64| ticks as f64 / total as f64 * self.cpus as f64;
        let idle = later.idle.saturating_sub(self.idle);
        let iowait = later.iowait.saturating_sub(self.iowait);
        let busy = total.saturating_sub(idle + iowait);
        let own = later.own.saturating_sub(self.own);
        // Processes started during the window count from zero; those that
        // ended during it are lost (and land in `other`).
        let postgres: u64 = later
            .postgres
            .iter()
            .map(|(pid, &t)| t.saturating_sub(self.postgres.get(pid).copied().unwrap_or(0)))
            .sum();
        Some(Usage {
            own_cores: cores(own),
            postgres_cores: cores(postgres),
            other_cores: cores(busy.saturating_sub(own + postgres)),
            iowait_cores: cores(iowait),
            cpus: self.cpus,
        })
    }
}

/// Command name and user + system ticks from a `/proc/PID/stat` file.
fn process_ticks(path: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    // Fields after the parenthesized command name start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, utime + stime))
}
