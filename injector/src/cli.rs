//! The command line, parsed into a validated [`Exec`] before anything runs.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use warden_types::{ScopeKind, ScopePath};

use crate::Error;
use crate::credential::Source;
use crate::deliver::{Delivery, parse_template_spec};
use crate::fetch::RetryPolicy;
use crate::secrets::is_env_name;

/// Most `--template` flags accepted.
pub const MAX_TEMPLATES: usize = 64;
/// Smallest `--max-response-bytes` accepted (an error answer must fit).
pub const MIN_RESPONSE_BYTES: usize = 1024;

/// warden-injector: runs a command with its service's secrets, delivered in
/// memory only.
#[derive(Debug, Parser)]
#[command(name = "warden-injector", version, after_help = crate::error::EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Fetch the service's secrets with the workload credential, then exec
    /// the command with them (or, with --parent, run it as a child).
    #[command(after_help = crate::error::EXIT_CODES)]
    Exec(ExecArgs),
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// The service whose resolved secrets to fetch.
    #[arg(long, value_name = "ORG/PROJECT/ENV/SERVICE")]
    service: String,
    /// The Warden server.
    #[arg(long, env = "WARDEN_SERVER", value_name = "https://HOST:PORT")]
    server: String,
    /// The CA certificate (PEM) to trust for the server; no other is trusted.
    #[arg(long, env = "WARDEN_CA_FILE", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The CA certificate itself (PEM text), when no --ca file is given
    /// (what the Kubernetes admission webhook sets: a CA is public, so it
    /// needs no Secret). As a flag, write `--ca-pem="$(cat ca.pem)"`: the
    /// text starts with dashes.
    #[arg(
        long,
        env = "WARDEN_CA_PEM",
        value_name = "PEM",
        hide_env_values = true
    )]
    ca_pem: Option<String>,
    /// Read the credential from this file [default: $WARDEN_CREDENTIAL, then
    /// the file named by $WARDEN_CREDENTIAL_FILE].
    #[arg(long, value_name = "FILE")]
    credential_file: Option<PathBuf>,
    /// Read the credential from this inherited file descriptor (closed once
    /// read; the command does not inherit it).
    #[arg(long, value_name = "N")]
    credential_fd: Option<RawFd>,
    /// Exchange the pod's projected Kubernetes service-account token in
    /// this file for a workload token of the service, then fetch with it
    /// [default: the file named by $WARDEN_K8S_TOKEN_FILE, after the
    /// credentials above].
    #[arg(long, value_name = "FILE")]
    k8s_token_file: Option<PathBuf>,
    /// The Kubernetes cluster the pod runs on (for the exchange).
    #[arg(long, env = "WARDEN_CLUSTER", value_name = "NAME")]
    cluster: Option<String>,
    /// How the secrets reach the command: environment variables, or one
    /// JSON object in a sealed memfd whose number is in $WARDEN_SECRETS_FD,
    /// or neither (templates only).
    #[arg(long, value_enum, default_value = "env")]
    deliver: Delivery,
    /// Render template SRC ({{ NAME }} references) to DEST, which must be on
    /// tmpfs or ramfs; mode 0400. Repeatable.
    #[arg(long = "template", value_name = "SRC:DEST")]
    templates: Vec<String>,
    /// Let templates reference NAME even if the service has no such secret
    /// (it renders empty). Repeatable.
    #[arg(long = "allow-missing", value_name = "NAME")]
    allow_missing: Vec<String>,
    /// With --deliver env, deliver secret NAME even though it is on the list
    /// of names that change what programs load or run (PATH, LD_*, BASH_ENV,
    /// PYTHON*...; docs/injector.md). Exact names only. Repeatable.
    #[arg(long = "allow-env", value_name = "NAME")]
    allow_env: Vec<String>,
    /// Retries after the first attempt when the server is unreachable or
    /// answers 5xx.
    #[arg(long, default_value_t = 5, value_name = "N")]
    retries: u32,
    /// Delay before the first retry, in milliseconds; it doubles for each
    /// next retry (with jitter), up to --retry-max-delay-ms.
    #[arg(long, default_value_t = 250, value_name = "MS")]
    retry_delay_ms: u64,
    /// Longest delay between two attempts, in milliseconds.
    #[arg(long, default_value_t = 5_000, value_name = "MS")]
    retry_max_delay_ms: u64,
    /// Longest time one attempt may take, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    attempt_timeout_ms: u64,
    /// Largest answer accepted from the server, in bytes; a larger one is
    /// refused without reading it all.
    #[arg(long, default_value_t = crate::fetch::DEFAULT_MAX_RESPONSE_BYTES, value_name = "BYTES")]
    max_response_bytes: usize,
    /// Stay as the command's parent (PID 1 duty: reap zombies, forward
    /// signals, exit with the command's code) instead of exec'ing it.
    #[arg(long)]
    parent: bool,
    /// Keep the secrets current: watch the service over one long-lived
    /// connection and apply each change as --on-change says (implies
    /// --parent).
    #[arg(long)]
    watch: bool,
    /// With --watch, what a change does: `restart` the command in place
    /// (stop it with SIGTERM, then SIGKILL after --stop-timeout, and start
    /// it again with the new secrets), `signal:NAME` (re-render the
    /// templates, then send signal NAME, e.g. signal:HUP; templates-only
    /// delivery), `render` (re-render the templates only), or `none`
    /// (keep the secrets the command started with: a runtime that rolls the
    /// service's pods delivers new ones).
    #[arg(
        long,
        default_value = "restart",
        value_name = "restart|signal:NAME|render|none"
    )]
    on_change: String,
    /// With --on-change restart, seconds between SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    stop_timeout: u64,
    /// The pod this runs in, as reported to `warden secret holders`.
    #[arg(long, env = "WARDEN_POD", value_name = "NAME")]
    pod: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// A validated `exec` invocation.
#[derive(Debug)]
pub struct Exec {
    /// The service.
    pub service: ScopePath,
    /// `https://HOST:PORT`.
    pub server: String,
    /// The CA to trust.
    pub ca: Ca,
    /// Where the credential comes from.
    pub credential: Source,
    /// The delivery mode.
    pub delivery: Delivery,
    /// Templates, as (source, destination) paths.
    pub templates: Vec<(PathBuf, PathBuf)>,
    /// Names templates may reference though missing.
    pub allow_missing: BTreeSet<String>,
    /// Denylisted names `--deliver env` may deliver all the same.
    pub allow_env: BTreeSet<String>,
    /// Retries and timeouts.
    pub retry: RetryPolicy,
    /// Largest answer accepted from the server, in bytes.
    pub max_response_bytes: usize,
    /// `--parent` (or `--watch`).
    pub parent: bool,
    /// `--watch`: what a change does.
    pub watch: Option<OnChange>,
    /// The pod, for the watch.
    pub pod: Option<String>,
    /// The command (at least the program).
    pub command: Vec<OsString>,
}

/// What a change of the secrets does under `--watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    /// Stop the command (SIGTERM, then SIGKILL after the timeout) and start
    /// it again with the new secrets.
    Restart {
        /// Between SIGTERM and SIGKILL.
        stop_timeout: Duration,
    },
    /// Re-render the templates, then send this signal.
    Signal(rustix::process::Signal),
    /// Re-render the templates only.
    Render,
    /// Apply nothing: the command keeps the secrets it started with (the
    /// runtime replaces the pod to deliver new ones); the watch still says
    /// what the pod holds and ends with its authority.
    Keep,
}

impl OnChange {
    fn parse(s: &str, stop_timeout: u64) -> Result<Self, Error> {
        match s {
            "restart" => Ok(Self::Restart {
                stop_timeout: Duration::from_secs(stop_timeout),
            }),
            "render" => Ok(Self::Render),
            "none" => Ok(Self::Keep),
            _ => {
                let name = s.strip_prefix("signal:").ok_or_else(|| {
                    Error::Usage(format!(
                        "--on-change {s:?}: expected restart, signal:NAME, render or none"
                    ))
                })?;
                let upper = name.to_ascii_uppercase();
                let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
                RELOAD_SIGNALS
                    .iter()
                    .find(|(n, _)| *n == bare)
                    .map(|(_, sig)| Self::Signal(*sig))
                    .ok_or_else(|| {
                        Error::Usage(format!(
                            "--on-change {s:?}: the signal must be one a program reloads on \
                             (HUP, USR1, USR2, WINCH, ALRM); to stop and start the command, \
                             use --on-change restart"
                        ))
                    })
            }
        }
    }
}

/// The signals `--on-change signal:NAME` may send: those programs take as
/// "reload" (not the ones that stop them: that is `restart`'s job, done
/// with a grace period and a new start).
const RELOAD_SIGNALS: &[(&str, rustix::process::Signal)] = &[
    ("HUP", rustix::process::Signal::HUP),
    ("USR1", rustix::process::Signal::USR1),
    ("USR2", rustix::process::Signal::USR2),
    ("WINCH", rustix::process::Signal::WINCH),
    ("ALRM", rustix::process::Signal::ALARM),
];

/// Where the CA certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ca {
    /// `--ca FILE` or `$WARDEN_CA_FILE`.
    File(PathBuf),
    /// `--ca-pem PEM` or `$WARDEN_CA_PEM`: the PEM text itself.
    Pem(String),
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Run `exec`.
    Exec(Box<Exec>),
    /// Print this (help or version) on stdout and exit 0.
    Print(String),
}

/// Parses and validates the command line.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, Error> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => return Ok(Parsed::Print(e.render().to_string())),
        Err(e) => {
            // clap's message is several lines (usage, hint); keep the first.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            return Err(Error::Usage(format!("{first} (see --help)")));
        }
    };
    let Cmd::Exec(a) = cli.command;
    let service = ScopePath::parse_kind(&a.service, ScopeKind::Service)
        .map_err(|e| Error::Usage(format!("--service: {e}")))?;
    if a.templates.len() > MAX_TEMPLATES {
        return Err(Error::Usage(format!(
            "at most {MAX_TEMPLATES} --template flags are accepted"
        )));
    }
    let mut templates = Vec::with_capacity(a.templates.len());
    let mut dests = BTreeSet::new();
    for spec in &a.templates {
        let (src, dest) = parse_template_spec(spec)?;
        if !dests.insert(dest.clone()) {
            return Err(Error::Usage(format!(
                "two templates render to {}",
                dest.display()
            )));
        }
        templates.push((src, dest));
    }
    let mut allow_missing = BTreeSet::new();
    for name in a.allow_missing {
        if !is_env_name(&name) {
            return Err(Error::Usage(format!(
                "--allow-missing {name:?}: not a secret name ([A-Za-z_][A-Za-z0-9_]*)"
            )));
        }
        allow_missing.insert(name);
    }
    let mut allow_env = BTreeSet::new();
    for name in a.allow_env {
        if !is_env_name(&name) {
            return Err(Error::Usage(format!(
                "--allow-env {name:?}: not a secret name ([A-Za-z_][A-Za-z0-9_]*; no patterns)"
            )));
        }
        allow_env.insert(name);
    }
    if a.retry_delay_ms == 0 || a.retry_max_delay_ms < a.retry_delay_ms {
        return Err(Error::Usage(
            "--retry-delay-ms must be at least 1 and at most --retry-max-delay-ms".into(),
        ));
    }
    if a.attempt_timeout_ms == 0 {
        return Err(Error::Usage(
            "--attempt-timeout-ms must be at least 1".into(),
        ));
    }
    if a.max_response_bytes < MIN_RESPONSE_BYTES {
        return Err(Error::Usage(format!(
            "--max-response-bytes must be at least {MIN_RESPONSE_BYTES}"
        )));
    }
    if a.command.first().is_none_or(|p| p.is_empty()) {
        return Err(Error::Usage("no command given after --".into()));
    }
    let watch = if a.watch {
        let on_change = OnChange::parse(&a.on_change, a.stop_timeout)?;
        if matches!(on_change, OnChange::Signal(_) | OnChange::Render)
            && a.deliver != Delivery::None
        {
            return Err(Error::Usage(format!(
                "--on-change {}: a running command's environment or descriptor cannot \
                 change; use --deliver none with templates, or --on-change restart",
                a.on_change
            )));
        }
        if !(1..=3600).contains(&a.stop_timeout) {
            return Err(Error::Usage(
                "--stop-timeout must be 1 to 3600 seconds".into(),
            ));
        }
        Some(on_change)
    } else {
        None
    };
    if a.pod
        .as_deref()
        .is_some_and(|p| !warden_types::is_pod_name(p))
    {
        return Err(Error::Usage(
            "--pod: 1-253 characters of a-z, 0-9, '-' and '.', the first a letter or digit".into(),
        ));
    }
    // A file named explicitly wins over the text.
    let ca = match (a.ca, a.ca_pem) {
        (Some(file), _) => Ca::File(file),
        (None, Some(pem)) => Ca::Pem(pem),
        (None, None) => {
            return Err(Error::Config(
                "no CA certificate: give --ca FILE, $WARDEN_CA_FILE or $WARDEN_CA_PEM".into(),
            ));
        }
    };
    Ok(Parsed::Exec(Box::new(Exec {
        service,
        server: a.server,
        ca,
        credential: Source::choose(
            a.credential_file,
            a.credential_fd,
            a.k8s_token_file,
            a.cluster,
        )?,
        delivery: a.deliver,
        templates,
        allow_missing,
        allow_env,
        retry: RetryPolicy {
            retries: a.retries,
            initial_delay: Duration::from_millis(a.retry_delay_ms),
            max_delay: Duration::from_millis(a.retry_max_delay_ms),
            attempt_timeout: Duration::from_millis(a.attempt_timeout_ms),
        },
        max_response_bytes: a.max_response_bytes,
        parent: a.parent || watch.is_some(),
        watch,
        pod: a.pod,
        command: a.command,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Vec<OsString> {
        let mut v: Vec<OsString> = [
            "warden-injector",
            "exec",
            "--server",
            "https://127.0.0.1:1",
            "--ca",
            "/ca.pem",
            "--credential-file",
            "/c",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        v.extend(extra.iter().map(OsString::from));
        v
    }

    fn usage_error(extra: &[&str]) -> String {
        match parse(args(extra)) {
            Err(Error::Usage(m)) => m,
            other => panic!("{extra:?}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn a_full_invocation_parses() {
        let Parsed::Exec(e) = parse(args(&[
            "--service",
            "acme/shop/prod/api",
            "--deliver",
            "fd",
            "--template",
            "a.tpl:/dev/shm/a",
            "--allow-missing",
            "OPTIONAL",
            "--allow-env",
            "PATH",
            "--allow-env",
            "LD_PRELOAD",
            "--",
            "my-server",
            "--port",
            "8080",
        ]))
        .unwrap() else {
            panic!("not exec")
        };
        assert_eq!(e.service.as_str(), "acme/shop/prod/api");
        assert_eq!(e.delivery, Delivery::Fd);
        assert_eq!(e.command, ["my-server", "--port", "8080"]);
        assert_eq!(e.credential, Source::File("/c".into()));
        assert_eq!(e.ca, Ca::File("/ca.pem".into()));
        assert!(e.allow_missing.contains("OPTIONAL"));
        assert_eq!(
            e.allow_env.iter().collect::<Vec<_>>(),
            ["LD_PRELOAD", "PATH"]
        );
        assert_eq!(e.retry.retries, 5);
        assert_eq!(e.max_response_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn a_service_account_token_needs_a_valid_cluster() {
        let base = [
            "warden-injector",
            "exec",
            "--server",
            "https://127.0.0.1:1",
            "--ca",
            "/ca.pem",
            "--service",
            "acme/shop/prod/api",
            "--k8s-token-file",
            "/var/run/secrets/warden/token",
        ];
        let with = |extra: &[&str]| {
            let mut v: Vec<OsString> = base.iter().map(OsString::from).collect();
            v.extend(extra.iter().map(OsString::from));
            parse(v)
        };
        let Ok(Parsed::Exec(e)) = with(&["--cluster", "prod-eu", "--", "x"]) else {
            panic!("did not parse")
        };
        assert_eq!(
            e.credential,
            Source::Kubernetes {
                token_file: "/var/run/secrets/warden/token".into(),
                cluster: "prod-eu".into()
            }
        );
        for (extra, needle) in [
            (&["--cluster", "Prod", "--", "x"][..], "cluster names"),
            (&["--cluster", "../x", "--", "x"][..], "cluster names"),
        ] {
            match with(extra) {
                Err(Error::Usage(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{extra:?}: {other:?}"),
            }
        }
        // No --cluster: a usage error unless $WARDEN_CLUSTER names one.
        if std::env::var_os(crate::credential::CLUSTER_ENV).is_none() {
            match with(&["--", "x"]) {
                Err(Error::Usage(m)) => assert!(m.contains("--cluster"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn bad_invocations_are_one_line_usage_errors() {
        // Arguments split at spaces (none has one).
        for (extra, needle) in [
            ("--service acme/shop/prod -- x", "--service"),
            ("--service Acme/s/p/e -- x", "--service"),
            ("--service a/b/c/d", "required"),
            ("--service a/b/c/d --template ../t:/dev/shm/x -- x", "'..'"),
            ("--service a/b/c/d --allow-missing A-B -- x", "A-B"),
            (
                "--service a/b/c/d --allow-env LD_* -- x",
                "--allow-env \"LD_*\"",
            ),
            (
                "--service a/b/c/d --max-response-bytes 100 -- x",
                "at least 1024",
            ),
            ("--service a/b/c/d --deliver disk -- x", "disk"),
            ("--service a/b/c/d --retry-delay-ms 0 -- x", "retry"),
            ("--service a/b/c/d --credential-fd 3 -- x", "at most one"),
            (
                "--service a/b/c/d --k8s-token-file /t --cluster c -- x",
                "at most one",
            ),
            (
                "--service a/b/c/d --template a:/dev/shm/x --template b:/dev/shm/x -- x",
                "two templates",
            ),
        ] {
            let extra: Vec<&str> = extra.split(' ').collect();
            let m = usage_error(&extra);
            assert!(m.contains(needle), "{extra:?}: {m}");
            assert!(!m.contains('\n'), "{extra:?}: {m}");
        }
    }

    #[test]
    fn the_ca_is_a_file_or_its_text_and_the_file_wins() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let base = [
            "warden-injector",
            "exec",
            "--server",
            "https://127.0.0.1:1",
            "--credential-file",
            "/c",
            "--service",
            "a/b/c/d",
        ];
        let with = |extra: &[&str]| {
            let mut v: Vec<OsString> = base.iter().map(OsString::from).collect();
            v.extend(extra.iter().map(OsString::from));
            v.extend(["--", "x"].map(OsString::from));
            parse(v)
        };
        // `=`: the text starts with dashes.
        let flag = format!("--ca-pem={pem}");
        let Ok(Parsed::Exec(e)) = with(&[&flag]) else {
            panic!("not exec")
        };
        assert_eq!(e.ca, Ca::Pem(pem.into()));
        let Ok(Parsed::Exec(e)) = with(&[&flag, "--ca", "/f.pem"]) else {
            panic!("not exec")
        };
        assert_eq!(e.ca, Ca::File("/f.pem".into()));
        match with(&[]) {
            Err(Error::Config(m)) => assert!(m.contains("WARDEN_CA_PEM"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn on_change_takes_reload_signals_in_any_case_and_refuses_stop_signals() {
        let watch = |spec: &'static str| {
            [
                "--service",
                "a/b/c/d",
                "--deliver",
                "none",
                "--watch",
                "--on-change",
                spec,
                "--",
                "x",
            ]
        };
        for spec in [
            "signal:HUP",
            "signal:hup",
            "signal:SIGHUP",
            "signal:sigusr1",
        ] {
            let Parsed::Exec(e) = parse(args(&watch(spec))).unwrap() else {
                panic!("not exec")
            };
            assert!(matches!(e.watch, Some(OnChange::Signal(_))), "{spec}");
        }
        // Keeping what the command started with goes with any delivery.
        let Parsed::Exec(e) = parse(args(&[
            "--service",
            "a/b/c/d",
            "--watch",
            "--on-change",
            "none",
            "--",
            "x",
        ]))
        .unwrap() else {
            panic!("not exec")
        };
        assert_eq!(e.watch, Some(OnChange::Keep));
        for (spec, needle) in [
            ("signal:TERM", "restart"),
            ("signal:KILL", "restart"),
            ("bounce", "expected restart"),
        ] {
            let m = usage_error(&watch(spec));
            assert!(m.contains(needle), "{spec}: {m}");
        }
        // A running command's environment cannot change.
        let m = usage_error(&[
            "--service",
            "a/b/c/d",
            "--watch",
            "--on-change",
            "render",
            "--",
            "x",
        ]);
        assert!(m.contains("--deliver none"), "{m}");
    }

    #[test]
    fn help_lists_the_exit_codes() {
        let Parsed::Print(help) =
            parse(["warden-injector", "exec", "--help"].map(OsString::from)).unwrap()
        else {
            panic!("not help")
        };
        assert!(help.contains("77  credential refused"), "{help}");
    }
}
