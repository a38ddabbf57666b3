//! A small cgroup driver, v1 and v2: create a pod's cgroup with memory,
//! CPU and pids limits, place processes, count OOM kills, kill and remove.
//!
//! Layout: v1 `ROOT/{memory,cpu,pids}/PARENT/POD`, v2 `ROOT/PARENT/POD`
//! (`PARENT` defaults to `warden`). On v2 the controllers are enabled in the
//! parents' `cgroup.subtree_control`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::api::CgroupVersion;
use crate::spec::Resources;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// CFS period for CPU limits (100 ms, the kernel default).
const CPU_PERIOD_US: u64 = 100_000;

/// The machine's cgroup setup, found once at runtime start.
#[derive(Debug, Clone)]
pub(crate) struct CgroupDriver {
    version: CgroupVersion,
    root: PathBuf,
    parent: String,
}

impl CgroupDriver {
    /// Detects the hierarchy under `root` and creates the `parent` cgroups.
    /// The error says why cgroups cannot be used (it ends up in the pods'
    /// isolation report).
    pub(crate) fn detect(root: &Path, parent: &str) -> Result<Self, String> {
        // f_type's width differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        let is_v2 = rustix::fs::statfs(root)
            .map(|s| s.f_type as i64 == CGROUP2_SUPER_MAGIC)
            .unwrap_or(false);
        if is_v2 {
            let controllers = fs::read_to_string(root.join("cgroup.controllers"))
                .map_err(|e| format!("{}: {e}", root.join("cgroup.controllers").display()))?;
            for c in V1_CONTROLLERS {
                if !controllers.split_whitespace().any(|x| x == c) {
                    return Err(format!("cgroup v2 controller {c} is not available"));
                }
            }
            // Enable the controllers from the root down to the parent.
            let mut dir = root.to_path_buf();
            enable_v2(&dir)?;
            for seg in parent.split('/').filter(|s| !s.is_empty()) {
                dir.push(seg);
                create_dir(&dir)?;
                enable_v2(&dir)?;
            }
            return Ok(Self {
                version: CgroupVersion::V2,
                root: root.to_path_buf(),
                parent: parent.to_owned(),
            });
        }
        for c in V1_CONTROLLERS {
            let base = root.join(c);
            if !base.join("cgroup.procs").exists() {
                return Err(format!(
                    "cgroup v1 controller {c} is not mounted at {}",
                    base.display()
                ));
            }
            create_dir(&base.join(parent))?;
        }
        Ok(Self {
            version: CgroupVersion::V1,
            root: root.to_path_buf(),
            parent: parent.to_owned(),
        })
    }

    pub(crate) fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The cgroup a pod of this name uses.
    pub(crate) fn pod(&self, pod: &str) -> PodCgroup {
        let dirs = match self.version {
            CgroupVersion::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| self.root.join(c).join(&self.parent).join(pod))
                .collect(),
            CgroupVersion::V2 => vec![self.root.join(&self.parent).join(pod)],
        };
        PodCgroup {
            version: self.version,
            dirs,
        }
    }
}

fn create_dir(dir: &Path) -> Result<(), String> {
    match fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(format!("cannot create cgroup {}: {e}", dir.display())),
    }
}

fn enable_v2(dir: &Path) -> Result<(), String> {
    let f = dir.join("cgroup.subtree_control");
    fs::write(&f, "+memory +cpu +pids").map_err(|e| format!("{}: {e}", f.display()))
}

/// One pod's cgroup (a directory per v1 controller, or one v2 directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PodCgroup {
    version: CgroupVersion,
    /// v1: memory, cpu, pids (in that order); v2: the one directory.
    dirs: Vec<PathBuf>,
}

impl PodCgroup {
    fn dir(&self, v1_controller: &str) -> &Path {
        match self.version {
            CgroupVersion::V2 => &self.dirs[0],
            CgroupVersion::V1 => {
                let i = V1_CONTROLLERS
                    .iter()
                    .position(|c| *c == v1_controller)
                    .unwrap_or(0);
                &self.dirs[i]
            }
        }
    }

    /// Creates the cgroup and writes the limits.
    pub(crate) fn create(&self, limits: Resources) -> io::Result<()> {
        for d in &self.dirs {
            match fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", d.display()))),
            }
        }
        let w = |ctrl: &str, file: &str, value: String| -> io::Result<()> {
            let p = self.dir(ctrl).join(file);
            fs::write(&p, value)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        };
        match self.version {
            CgroupVersion::V1 => {
                if let Some(m) = limits.memory {
                    w("memory", "memory.limit_in_bytes", m.to_string())?;
                    // No swapping past the limit; absent without swap accounting.
                    let _ = w("memory", "memory.memsw.limit_in_bytes", m.to_string());
                }
                if let Some(c) = limits.cpu {
                    w("cpu", "cpu.cfs_period_us", CPU_PERIOD_US.to_string())?;
                    w(
                        "cpu",
                        "cpu.cfs_quota_us",
                        (u64::from(c) * CPU_PERIOD_US / 1000).to_string(),
                    )?;
                }
                if let Some(p) = limits.pids {
                    w("pids", "pids.max", p.to_string())?;
                }
            }
            CgroupVersion::V2 => {
                if let Some(m) = limits.memory {
                    w("memory", "memory.max", m.to_string())?;
                    let _ = w("memory", "memory.swap.max", "0".into());
                }
                if let Some(c) = limits.cpu {
                    w(
                        "cpu",
                        "cpu.max",
                        format!("{} {CPU_PERIOD_US}", u64::from(c) * CPU_PERIOD_US / 1000),
                    )?;
                }
                if let Some(p) = limits.pids {
                    w("pids", "pids.max", p.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process writes itself into to join.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Moves process `pid` into the cgroup.
    pub(crate) fn add(&self, pid: i32) -> io::Result<()> {
        for f in self.procs_files() {
            fs::write(&f, pid.to_string())
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", f.display())))?;
        }
        Ok(())
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        let file = match self.version {
            CgroupVersion::V1 => self.dir("memory").join("memory.oom_control"),
            CgroupVersion::V2 => self.dir("memory").join("memory.events"),
        };
        fs::read_to_string(file)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// The PIDs in the cgroup.
    pub(crate) fn pids(&self) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .procs_files()
            .iter()
            .filter_map(|f| fs::read_to_string(f).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// SIGKILLs every process in the cgroup.
    pub(crate) fn kill_all(&self) {
        if self.version == CgroupVersion::V2
            && fs::write(self.dirs[0].join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        for pid in self.pids() {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
    }

    /// Kills what is left and removes the cgroup, waiting up to `wait` for
    /// dying processes to leave it.
    pub(crate) fn remove(&self, wait: Duration) -> io::Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            self.kill_all();
            let mut busy = None;
            for d in &self.dirs {
                match fs::remove_dir(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        busy = Some(io::Error::new(e.kind(), format!("{}: {e}", d.display())))
                    }
                }
            }
            match busy {
                None => return Ok(()),
                Some(e) if Instant::now() >= deadline => return Err(e),
                Some(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}
