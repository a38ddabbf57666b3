//! The secret injector: `warden-injector exec --service ORG/P/E/S -- CMD`, a
//! small exec wrapper that authenticates with a workload credential (file,
//! inherited descriptor or environment; read, then kept from the command),
//! fetches the service's resolved secrets over TLS trusting only the given
//! CA, and delivers them to the command in memory only: as environment
//! variables, as a sealed memfd the command inherits (no value in
//! `/proc/PID/environ`), and/or as templates rendered onto tmpfs or ramfs.
//! Then it `exec`s the command (nothing of the wrapper stays), or with
//! `--parent` stays as its PID-1 parent. docs/injector.md is the user's
//! guide; [`error::EXIT_CODES`] the exit codes.
//!
//! It owns: the command line ([`cli`]), the credential sources
//! ([`credential`]), the fetch with retries ([`fetch`]), the delivery modes
//! and templates ([`deliver`], [`template`]) and the parent mode
//! ([`parent`]).
//!
//! Architecture invariants: it talks to Warden only through the public
//! HTTPS API (the `warden-api` client); its only Warden dependencies are
//! `warden-types` and `warden-api`, so it links neither the vault's crypto
//! and storage nor the server, pipeline, identity or audit crates (checked
//! by `tests/integration/architecture.rs`). Secrets never touch a
//! disk-backed file. `unsafe` lives in `sys` only (checked below).

pub mod cli;
pub mod credential;
pub mod deliver;
pub mod error;
pub mod fetch;
pub mod parent;
pub mod secrets;
mod sys;
pub mod template;
pub mod watch;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use error::Error;

use crate::cli::{Exec, Parsed};
use crate::credential::{
    CREDENTIAL_ENV, CREDENTIAL_FILE_ENV, Credential, K8S_TOKEN_FILE_ENV, Source,
};
use crate::deliver::{Delivery, SECRETS_FD_ENV, TemplateTarget};
use crate::secrets::Secrets;

/// Runs the wrapper with `args` (the program name first). Returns only when
/// it does not become the command: with its exit code, having printed any
/// error as one line on stderr.
pub fn main(args: impl IntoIterator<Item = OsString>) -> u8 {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            // Escaped once more as a whole: whatever text from elsewhere a
            // message holds, it prints as one line.
            eprintln!(
                "warden-injector: {}",
                error::escape_controls(&e.to_string())
            );
            e.exit_code()
        }
    }
}

fn run(args: impl IntoIterator<Item = OsString>) -> Result<u8, Error> {
    let exec = match cli::parse(args)? {
        Parsed::Print(text) => {
            print!("{text}");
            return Ok(0);
        }
        Parsed::Exec(exec) => exec,
    };
    // First: an inherited credential descriptor must be taken before this
    // process opens anything of its own (sys::take_inherited_fd).
    let credential = Credential::read(&exec.credential)?;
    // Other processes of the same user may not ptrace this one or read its
    // memory while it holds the credential and the values (exec resets it
    // for the command).
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    let ca_pem = match &exec.ca {
        cli::Ca::File(path) => std::fs::read(path).map_err(|e| {
            Error::Config(format!(
                "cannot read CA certificate {}: {e}",
                path.display()
            ))
        })?,
        cli::Ca::Pem(text) => text.as_bytes().to_vec(),
    };
    let targets = exec
        .templates
        .iter()
        .map(|(src, dest)| TemplateTarget::prepare(src.clone(), dest.clone()))
        .collect::<Result<Vec<_>, _>>()?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("starting the async runtime: {e}")))?;
    // A pod on Kubernetes proves itself with its service-account token,
    // which the server exchanges for a workload token of the service.
    let credential = match &exec.credential {
        Source::Kubernetes { cluster, .. } => runtime.block_on(fetch::exchange(
            &exec.server,
            &ca_pem,
            &credential,
            cluster,
            &exec.service,
            exec.retry,
        ))?,
        _ => credential,
    };
    let resolved = runtime.block_on(fetch::resolve(
        &exec.server,
        &ca_pem,
        &credential,
        &exec.service,
        exec.pod.as_deref(),
        exec.retry,
        exec.max_response_bytes,
    ))?;
    // A watch reads a credential file again for each connection (the
    // runtime replaces it before it expires; a service-account token is
    // exchanged again); one from the environment or a descriptor cannot be
    // read again, so the watching parent keeps it.
    let kept = match exec.credential {
        _ if exec.watch.is_none() => None,
        Source::File(_) | Source::EnvFile(_) | Source::Kubernetes { .. } => None,
        Source::Env | Source::Fd(_) => Some(credential),
    };
    let versions = resolved.versions.clone();
    let secrets = Secrets::from_resolved(resolved, exec.service.as_str())?;
    // Found with the wrapper's own PATH, before any secret is set: a PATH
    // secret (allowed with --allow-env) does not choose the binary.
    let program = resolve_program(&exec.command[0], std::env::var_os("PATH").as_deref())?;
    let launcher = Launcher {
        program,
        exec: &exec,
        targets,
    };
    launcher.render(&secrets)?;
    let ready = launcher.command(&secrets)?;
    // The wrapper's own copies are wiped here; the command's environment
    // block (built by std) holds the env-mode values until exec replaces
    // this address space.
    drop(secrets);
    if let Some(on_change) = exec.watch {
        let watcher = watch::Watcher::new(
            &exec.server,
            &ca_pem,
            exec.credential.clone(),
            kept,
            &exec.service,
            exec.pod.as_deref(),
        );
        let rotation = parent::Rotation {
            watcher,
            launcher,
            on_change,
            versions,
        };
        return parent::supervise(runtime, ready, Some(rotation));
    }
    if exec.parent {
        return parent::supervise(runtime, ready, None);
    }
    runtime.shutdown_background();
    let Ready {
        mut command,
        inherited,
        launch,
    } = ready;
    let err = command.exec();
    drop(inherited);
    Err(launch.error(&err))
}

/// Whether `execve` would take `cmd`'s arguments and environment, as
/// Linux's `bprm_stack_limits` (fs/exec.c) decides: each string at most
/// `MAX_ARG_STRLEN` (32 pages); all of them, with their pointers, within a
/// quarter of the stack limit, never more than 6 MiB (three quarters of
/// `_STK_LIM`) and never less than `ARG_MAX` (32 pages). A restart checks
/// before it renders anything or stops the command that runs, so a
/// rotation too large to start never takes that command down (reviews 13
/// and 14, F4 and F5).
pub(crate) fn fits_exec(cmd: &Command) -> Result<(), Error> {
    const MAX_ARG_STRLEN: usize = 32 * 4096;
    let pointer = std::mem::size_of::<usize>();
    let set: std::collections::HashSet<&OsStr> = cmd.get_envs().map(|(k, _)| k).collect();
    let inherited = std::env::vars_os()
        .filter(|(k, _)| !set.contains(k.as_os_str()))
        .map(|(k, v)| k.len() + v.len() + 2);
    let given = cmd
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| k.len() + v.len() + 2));
    // The program's path twice: as the file name the kernel copies and
    // (about) as `argv[0]` (review 15, 6).
    let args = [cmd.get_program(), cmd.get_program()]
        .into_iter()
        .chain(cmd.get_args())
        .map(|a| a.len() + 1);
    let (mut total, mut longest) = (0usize, 0usize);
    for len in inherited.chain(given).chain(args) {
        total = total.saturating_add(len + pointer);
        longest = longest.max(len);
    }
    let limit = exec_limit(rustix::process::getrlimit(rustix::process::Resource::Stack).current);
    if longest > MAX_ARG_STRLEN || total > limit {
        return Err(Error::Undeliverable(format!(
            "the command's arguments and environment with these secrets would be {total} bytes \
             (execve takes {limit}, each string at most {MAX_ARG_STRLEN}): not restarted; \
             deliver them with --deliver fd (or templates)"
        )));
    }
    Ok(())
}

/// What `execve` takes of arguments and environment together under a
/// stack limit of `stack` bytes (`None`: unlimited); see [`fits_exec`].
fn exec_limit(stack: Option<u64>) -> usize {
    const ARG_MAX: usize = 32 * 4096;
    const MOST: usize = 6 << 20;
    stack
        .map_or(MOST, |stack| usize::try_from(stack / 4).unwrap_or(MOST))
        .clamp(ARG_MAX, MOST)
}

/// Starts the command with a given set of secrets: the resolved program,
/// the invocation, the templates.
pub(crate) struct Launcher<'a> {
    program: PathBuf,
    exec: &'a Exec,
    targets: Vec<TemplateTarget>,
}

/// A command ready to start with its secrets delivered.
pub(crate) struct Ready {
    /// The command, its environment set.
    pub(crate) command: Command,
    /// The secrets memfd in fd mode, open until the command has it.
    pub(crate) inherited: Option<std::os::fd::OwnedFd>,
    /// How a failure to start it is reported.
    pub(crate) launch: Launch,
}

impl Launcher<'_> {
    /// The service this wrapper was started for.
    pub(crate) fn service(&self) -> &str {
        self.exec.service.as_str()
    }

    /// Checks `secrets` for the delivery mode and renders the templates
    /// with them (all rendered before any is written, so a missing
    /// reference leaves no file behind).
    pub(crate) fn render(&self, secrets: &Secrets) -> Result<(), Error> {
        let exec = self.exec;
        if exec.delivery == Delivery::Env {
            secrets.check_env_names(&exec.allow_env)?;
            secrets.check_env_values()?;
        }
        let rendered = self
            .targets
            .iter()
            .map(|t| {
                t.template()
                    .render(secrets.values(), &exec.allow_missing, &t.origin())
            })
            .collect::<Result<Vec<_>, _>>()?;
        deliver::write_templates(&self.targets, &rendered)
    }

    /// The command, given `secrets` as the delivery mode says: the
    /// resolved program, run with the command line's own first word as
    /// `argv[0]`, the credential's variables removed from its environment.
    pub(crate) fn command(&self, secrets: &Secrets) -> Result<Ready, Error> {
        let exec = self.exec;
        let launch = Launch {
            program: exec.command[0].to_string_lossy().into_owned(),
            env_secrets: exec.delivery == Delivery::Env && !secrets.is_empty(),
        };
        let mut cmd = Command::new(&self.program);
        cmd.arg0(&exec.command[0]);
        cmd.args(&exec.command[1..]);
        for var in [
            CREDENTIAL_ENV,
            CREDENTIAL_FILE_ENV,
            K8S_TOKEN_FILE_ENV,
            SECRETS_FD_ENV,
        ] {
            cmd.env_remove(var);
        }
        // Kept open until exec (or spawn): the command inherits it.
        let mut inherited = None;
        match exec.delivery {
            Delivery::Env => {
                for (name, value) in secrets.values() {
                    cmd.env(name, value.expose());
                }
            }
            Delivery::Fd => {
                let fd = deliver::secrets_memfd(secrets)?;
                cmd.env(
                    SECRETS_FD_ENV,
                    std::os::fd::AsRawFd::as_raw_fd(&fd).to_string(),
                );
                inherited = Some(fd);
            }
            Delivery::None => {}
        }
        Ok(Ready {
            command: cmd,
            inherited,
            launch,
        })
    }
}

/// The search path `execvp(3)` uses when `PATH` is not set.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The file to execute for the command's first word `name`, found the way
/// `execvp(3)` finds it (a name with a `/` as it is; otherwise the first
/// executable regular file in `path`'s directories, an empty entry being the
/// current directory), in `path`: the wrapper's own `PATH`, never the one
/// the command is given. std's `Command` would search the command's new
/// `PATH`, so a `PATH` secret would choose the binary.
///
/// A file found but not executable is returned (its exec fails: 126) when
/// no executable one is; nothing found is exit 127.
pub fn resolve_program(name: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, Error> {
    if name.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(name));
    }
    let search = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut not_executable = None;
    for dir in search.as_bytes().split(|b| *b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(name);
        if !std::fs::metadata(&candidate).is_ok_and(|m| m.is_file()) {
            continue;
        }
        if rustix::fs::access(&candidate, rustix::fs::Access::EXEC_OK).is_ok() {
            return Ok(candidate);
        }
        not_executable.get_or_insert(candidate);
    }
    not_executable.ok_or_else(|| Error::Exec {
        program: name.to_string_lossy().into_owned(),
        reason: "not found in PATH".into(),
        not_found: true,
    })
}

/// How a command that could not be started is reported.
#[derive(Debug)]
pub(crate) struct Launch {
    /// The program as given on the command line.
    program: String,
    /// Whether secrets are in the command's environment (`--deliver env`
    /// with at least one secret).
    env_secrets: bool,
}

impl Launch {
    /// The error for `e`, from `execve` (or `spawn`). Arguments and an
    /// environment too large for `execve` (`E2BIG`) with the secrets in it
    /// are exit 65 with a hint, not 126: the secrets cannot be delivered
    /// that way, and `--deliver fd` can.
    pub(crate) fn error(&self, e: &std::io::Error) -> Error {
        let program = self.program.clone();
        if self.env_secrets && e.raw_os_error() == Some(rustix::io::Errno::TOOBIG.raw_os_error()) {
            return Error::Undeliverable(format!(
                "cannot execute {program}: its arguments and environment, the secrets \
                 included, are larger than the system allows ({e}); deliver the secrets with \
                 --deliver fd (or templates)"
            ));
        }
        Error::Exec {
            program,
            reason: e.to_string(),
            not_found: e.kind() == std::io::ErrorKind::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// As Linux's `bprm_stack_limits`: a quarter of the stack limit,
    /// within 128 KiB and 6 MiB (review 14, F5).
    #[test]
    fn exec_takes_a_quarter_of_the_stack_within_128_kib_and_6_mib() {
        assert_eq!(exec_limit(Some(8 << 20)), 2 << 20);
        assert_eq!(exec_limit(Some(64 << 20)), 6 << 20);
        assert_eq!(exec_limit(None), 6 << 20);
        assert_eq!(exec_limit(Some(100 << 10)), 128 << 10);
    }

    /// A file `root/dir/name` with mode `mode`, its directory made.
    fn file(root: &Path, dir: &str, name: &str, mode: u32) -> PathBuf {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join(name);
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn an_environment_too_large_for_exec_is_undeliverable_with_secrets_in_it() {
        let e2big = std::io::Error::from_raw_os_error(rustix::io::Errno::TOOBIG.raw_os_error());
        let launch = |env_secrets| Launch {
            program: "app".into(),
            env_secrets,
        };
        let err = launch(true).error(&e2big);
        assert_eq!(err.exit_code(), error::code::UNDELIVERABLE);
        let msg = err.to_string();
        assert!(msg.contains("cannot execute app"), "{msg}");
        assert!(msg.contains("--deliver fd"), "{msg}");
        // Without secrets in the environment, the arguments are too large:
        // the command cannot be executed, as before.
        assert_eq!(
            launch(false).error(&e2big).exit_code(),
            error::code::CANNOT_EXECUTE
        );
    }

    #[test]
    fn the_program_is_found_in_the_given_path_as_execvp_would() {
        let t = tempfile::tempdir().unwrap();
        let plain = file(t.path(), "a", "prog", 0o644);
        let first = file(t.path(), "b", "prog", 0o755);
        file(t.path(), "c", "prog", 0o755);
        std::fs::create_dir_all(t.path().join("d/prog")).unwrap();
        let dir = |d: &str| t.path().join(d).into_os_string();
        let join = |ds: &[&str]| {
            let mut p = OsString::new();
            for (i, d) in ds.iter().enumerate() {
                if i > 0 {
                    p.push(":");
                }
                p.push(dir(d));
            }
            p
        };
        let prog = OsStr::new("prog");
        // A directory and a non-executable file are passed over for the
        // first executable file.
        let path = join(&["missing", "d", "a", "b", "c"]);
        assert_eq!(resolve_program(prog, Some(&path)).unwrap(), first);
        // Only a non-executable file: it is the one (its exec fails, 126).
        let path = join(&["d", "a"]);
        assert_eq!(resolve_program(prog, Some(&path)).unwrap(), plain);
        // Nothing: 127, naming the program.
        let err = resolve_program(OsStr::new("nope"), Some(&path)).unwrap_err();
        assert_eq!(err.exit_code(), error::code::NOT_FOUND);
        assert!(err.to_string().contains("cannot execute nope"), "{err}");
        // A name with a slash is not searched.
        assert_eq!(
            resolve_program(OsStr::new("./prog"), Some(&path)).unwrap(),
            PathBuf::from("./prog")
        );
        // Without PATH, execvp's default.
        assert_eq!(
            resolve_program(OsStr::new("sh"), None).unwrap(),
            PathBuf::from("/bin/sh")
        );
    }

    /// `unsafe` only in src/sys.rs, and every block there explained.
    #[test]
    fn unsafe_is_confined_to_sys_and_documented() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let block = ["unsafe", "{"].join(" ");
        let func = ["unsafe", "fn"].join(" ");
        let allow = ["allow(", "unsafe_code)"].concat();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let code = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let lines: Vec<&str> = code.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let uses = line.contains(&block) || line.contains(&func) || line.contains(&allow);
                if name != "sys.rs" {
                    assert!(!uses, "{name}:{}: unsafe outside src/sys.rs", i + 1);
                } else if line.contains(&block) {
                    let explained = lines[..i]
                        .iter()
                        .rev()
                        .take_while(|l| l.trim_start().starts_with("//"))
                        .any(|l| l.contains("SAFETY:"));
                    assert!(
                        explained,
                        "{name}:{}: unsafe block without a SAFETY comment",
                        i + 1
                    );
                }
            }
        }
    }
}
