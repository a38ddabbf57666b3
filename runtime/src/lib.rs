//! The layer that runs pods: the transport-neutral [`Runtime`] trait (apply,
//! stop, start, restart, delete, list pods, exec, logs, credential refresh),
//! the workload vocabulary ([`ServiceRef`], [`WorkloadSpec`], [`PodStatus`],
//! ...) and the local backend, [`LocalRuntime`], which runs each pod as a
//! supervised process tree in its own PID, mount, UTS and IPC namespaces and
//! cgroup on this machine. The gateway, the injector, the agent and deploy
//! orchestration use only the trait; the Kubernetes backend implements it in
//! `warden-kubernetes`, since this crate must not link kube.
//!
//! Architecture invariants:
//! - this crate does not depend on `warden-vault`, `warden-server`,
//!   `warden-store`, axum, hyper, russh or kube (only on `warden-types` among
//!   Warden's crates): it never sees a secret value, only the opaque workload
//!   credential a [`CredentialSource`] hands it for a pod;
//! - a credential never travels in a spec or on a command line and is never
//!   written to disk: it goes over a pipe to the pod's shim and into a tmpfs
//!   file inside the pod (`/run/warden/credential`, 0400, the pod's uid);
//! - the isolation a pod got is always reported ([`Isolation`]), never
//!   silently weaker;
//! - `unsafe` lives in one module, `sys`, and nowhere else (checked by a test
//!   below).

mod api;
mod error;
mod local;
mod spec;
mod sys;

pub use api::{
    CgroupVersion, CredentialSource, CredentialTarget, EXEC_ENV_ALLOWLIST, ExecControl,
    ExecControlMsg, ExecRequest, ExecSession, ExecStdin, ExitFuture, ExitReason, ExitStatus,
    FnCredentialSource, Isolation, LastExit, LogChunk, LogOptions, LogStream, LogStreamKind,
    MAX_CREDENTIAL_BYTES, MAX_EXEC_ARGS, MAX_EXEC_ARGV_BYTES, MAX_EXEC_ENV, PodName, PodPhase,
    PodRef, PodStatus, Runtime, Selector, Signal, TermSize, exec_env_allowed,
};
pub use error::RuntimeError;
pub use local::{
    HELPER_ROLES, HelperCommand, Injection, LocalConfig, LocalRuntime, NamespaceMode, helper_main,
};
pub use spec::{
    MAX_ARG_BYTES, MAX_ARGS, MAX_ARGV_BYTES, MAX_COMMAND_ELEMENTS, MAX_CPU_MILLIS, MAX_ENV_BYTES,
    MAX_ENV_VALUE_BYTES, MAX_ENV_VARS, MAX_IMAGE_BYTES, MAX_MEMORY_BYTES, MAX_MIN_READY_SECONDS,
    MAX_PIDS, MAX_REPLICAS, MAX_SPEC_BYTES, MIN_CPU_MILLIS, MIN_MEMORY_BYTES, MIN_PIDS, OnChange,
    Resources, RestartPolicy, RunAs, SecretsSpec, ServiceRef, WorkloadSpec,
};

#[cfg(test)]
mod tidy {
    use std::path::Path;

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// `unsafe` only in src/sys.rs, and every block there explained.
    #[test]
    fn unsafe_is_confined_to_sys_and_documented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for d in ["src", "tests", "benches"] {
            if root.join(d).exists() {
                sources(&root.join(d), &mut files);
            }
        }
        assert!(files.len() > 5);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let is_sys = f.ends_with("src/sys.rs");
            let lines: Vec<&str> = text.lines().collect();
            // Built at run time so that this test's own text does not match.
            let block = ["unsafe", "{"].join(" ");
            let func = ["unsafe", "fn"].join(" ");
            let allow = ["allow(", "unsafe_code)"].concat();
            for (i, line) in lines.iter().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let uses_unsafe = code.contains(&block) || code.contains(&func);
                let allows = code.contains(&allow);
                if !is_sys {
                    assert!(
                        !uses_unsafe && !allows,
                        "{}:{}: unsafe outside src/sys.rs",
                        f.display(),
                        i + 1
                    );
                } else if code.contains(&block) {
                    let before = lines[i.saturating_sub(12)..i].join("\n");
                    assert!(
                        before.contains("// SAFETY:"),
                        "{}:{}: unsafe block without a SAFETY comment",
                        f.display(),
                        i + 1
                    );
                }
            }
        }
    }
}
