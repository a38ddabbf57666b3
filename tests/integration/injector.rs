//! The secret injector (`warden-injector`, issue 12), run as the real binary
//! against a real server: what the command sees in each delivery mode, what
//! it never sees (the credential, values in its environment in fd mode,
//! files on disk), and every failure's exit code.
//!
//! The binary must be built first (`scripts/test.sh` does:
//! `cargo build -p warden-cli -p warden-injector`).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::harness::{Db, TestServer, free_port};

const SERVICE: &str = "acme/shop/dev/api";
const DB_URL: &str = "postgres://injector-canary-db/app";
const API_KEY: &str = "injector-canary-key-7f3a";

/// The `warden-injector` binary in the same target directory.
fn injector_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("warden-injector");
    assert!(
        bin.exists(),
        "{} not found: run ./scripts/test.sh, or `cargo build -p warden-injector` before `cargo test`",
        bin.display()
    );
    bin
}

/// A server with `SERVICE` holding DB_URL and API_KEY, and a workload
/// credential for it in a file.
struct Setup {
    s: TestServer,
    dir: tempfile::TempDir,
    token: String,
    credential: PathBuf,
}

impl Setup {
    async fn new() -> Self {
        let s = TestServer::start(Db::Sqlite).await;
        s.scopes(SERVICE, "development").await;
        s.put(SERVICE, json!({"DB_URL": DB_URL, "API_KEY": API_KEY}))
            .await;
        let token = workload_token(&s, SERVICE).await;
        let dir = tempfile::tempdir().unwrap();
        let credential = dir.path().join("credential");
        std::fs::write(&credential, format!("{token}\n")).unwrap();
        Self {
            s,
            dir,
            token,
            credential,
        }
    }

    /// `warden-injector exec` with the server, CA and service set, and a
    /// clean environment (plus `env`).
    /// Starts the wrapper in `--parent` mode running `sh -c script`, and
    /// waits (at most 20 s) for the script's first line: the wrapper, its
    /// pid, the line.
    async fn parent(&self, cred: &str, script: &str) -> (tokio::process::Child, u32, String) {
        let mut child = self
            .injector(
                &["--credential-file", cred, "--parent"],
                &[],
                &["sh", "-c", script],
            )
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        (child, pid, first)
    }

    fn injector(
        &self,
        flags: &[&str],
        env: &[(&str, &str)],
        cmd: &[&str],
    ) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(injector_bin());
        c.arg("exec")
            .args(["--server", &self.s.url, "--service", SERVICE])
            .arg("--ca")
            .arg(self.s.ca_path())
            .args(flags)
            .arg("--")
            .args(cmd)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        c
    }

    /// The same with the credential file given by `--credential-file`.
    async fn run(&self, flags: &[&str], cmd: &[&str]) -> Output {
        let cred = self.credential.to_str().unwrap();
        let mut all = vec!["--credential-file", cred];
        all.extend_from_slice(flags);
        self.injector(&all, &[], cmd).output().await.unwrap()
    }
}

impl Setup {
    /// An API token of a service account allowed to read the service
    /// (developer at its environment), revocable: the token and its id.
    async fn service_account_token(&self) -> (String, String) {
        self.s
            .ok(
                Method::POST,
                "/api/v1/users",
                Some(json!({"name": "deployer", "kind": "service"})),
            )
            .await;
        self.s
            .ok(
                Method::POST,
                "/api/v1/bindings",
                Some(
                    json!({"principal": "sa:deployer", "role": "developer", "scope": "acme/shop/dev"}),
                ),
            )
            .await;
        let created = self
            .s
            .ok(
                Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": "injector", "principal": "sa:deployer"})),
            )
            .await;
        (
            created["token"].as_str().unwrap().to_owned(),
            created["info"]["id"].as_str().unwrap().to_owned(),
        )
    }
}

async fn workload_token(s: &TestServer, service: &str) -> String {
    let w = s
        .ok(
            Method::POST,
            &format!("/api/v1/workload-tokens/{service}"),
            Some(json!({"ttl_seconds": 300})),
        )
        .await;
    w["token"].as_str().unwrap().to_owned()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts the wrapper failed with `code`, one line on stderr containing
/// `needle`, and that the command never ran (it would print on stdout).
fn assert_refused(out: &Output, code: i32, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("warden-injector: "), "{err:?}");
    assert!(
        out.stdout.is_empty(),
        "the command ran: {}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_mode_gives_the_command_its_secrets_and_never_the_credential() {
    let t = Setup::new().await;
    let cred_path = t.credential.to_str().unwrap();
    let check = |out: Output| {
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(
            lines.contains(&format!("DB_URL={DB_URL}").as_str()),
            "{stdout}"
        );
        assert!(
            lines.contains(&format!("API_KEY={API_KEY}").as_str()),
            "{stdout}"
        );
        assert!(
            !stdout.contains(&t.token),
            "the credential reached the command"
        );
        assert!(!stdout.contains("WARDEN_CREDENTIAL"), "{stdout}");
        assert!(!stdout.contains(cred_path), "{stdout}");
    };
    // The local runtime's way: the file named by $WARDEN_CREDENTIAL_FILE.
    let out = t
        .injector(&[], &[("WARDEN_CREDENTIAL_FILE", cred_path)], &["env"])
        .output()
        .await
        .unwrap();
    check(out);
    // The credential itself in $WARDEN_CREDENTIAL.
    let out = t
        .injector(&[], &[("WARDEN_CREDENTIAL", &t.token)], &["env"])
        .output()
        .await
        .unwrap();
    check(out);
    // --credential-file.
    check(t.run(&[], &["env"]).await);
    // --credential-fd: an inherited descriptor (opened by sh), read and
    // closed, so the command does not inherit it.
    // (readlink fails for the directory descriptor the glob used.)
    let listing = "env; for f in /proc/$$/fd/*; do readlink \"$f\"; done; true";
    let inner = t.injector(&["--credential-fd", "7"], &[], &["sh", "-c", listing]);
    let inner = inner.as_std();
    let mut via_sh = tokio::process::Command::new("sh");
    via_sh
        .arg("-c")
        .arg("cred=$1; shift; exec \"$@\" 7<\"$cred\"")
        .arg("sh")
        .arg(cred_path)
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    let out = via_sh.output().await.unwrap();
    let stdout = text(&out.stdout);
    check(out);
    // The listing ran (stdout is a pipe) and named no credential file.
    assert!(stdout.contains("pipe:["), "no fd listing: {stdout}");
    t.s.stop().await;
}

/// The admission webhook gives pods the CA as text (`$WARDEN_CA_PEM`), not
/// as a file: it is trusted as `--ca` would be, and only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_given_as_text_in_warden_ca_pem_is_the_only_one_trusted() {
    let t = Setup::new().await;
    let run = |ca_pem: String| {
        let mut c = tokio::process::Command::new(injector_bin());
        c.arg("exec")
            .args(["--server", &t.s.url, "--service", SERVICE])
            .args(["--credential-file", t.credential.to_str().unwrap()])
            .args(["--retries", "0", "--", "env"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WARDEN_CA_PEM", ca_pem)
            .stdin(Stdio::null());
        c
    };
    let out = run(text(&t.s.ca_pem)).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("DB_URL={DB_URL}")),
        "{}",
        text(&out.stdout)
    );
    // Another CA's certificate: refused as a wrong --ca is (exit 78), and
    // the command never runs.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .unwrap()
        .cert
        .pem();
    let out = run(other).output().await.unwrap();
    assert_refused(&out, 78, "certificate");
    // No CA at all: a configuration error naming the variable.
    let mut none = run(String::new());
    none.env_remove("WARDEN_CA_PEM");
    let out = none.output().await.unwrap();
    assert_refused(&out, 78, "WARDEN_CA_PEM");
    t.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_mode_puts_the_values_in_a_sealed_memfd_and_not_in_the_environment() {
    let t = Setup::new().await;
    let script = r#"
        cat "/proc/self/fd/$WARDEN_SECRETS_FD"; echo
        echo ---
        tr '\0' '\n' < /proc/$$/environ
        echo ---
        readlink "/proc/$$/fd/$WARDEN_SECRETS_FD"
        if (echo x >> "/proc/self/fd/$WARDEN_SECRETS_FD") 2>/dev/null; then echo writable; else echo sealed; fi
    "#;
    let out = t.run(&["--deliver", "fd"], &["sh", "-c", script]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let parts: Vec<&str> = stdout.split("---\n").collect();
    assert_eq!(parts.len(), 3, "{stdout}");
    let secrets: Value = serde_json::from_str(parts[0].trim()).unwrap();
    assert_eq!(secrets, json!({"API_KEY": API_KEY, "DB_URL": DB_URL}));
    let environ = parts[1];
    assert!(environ.contains("WARDEN_SECRETS_FD="), "{environ}");
    for value in [DB_URL, API_KEY, &t.token] {
        assert!(!environ.contains(value), "{value} in /proc/PID/environ");
    }
    assert!(parts[2].contains("memfd:warden-secrets"), "{}", parts[2]);
    assert!(
        parts[2].contains("sealed"),
        "the memfd is writable: {}",
        parts[2]
    );
    t.s.stop().await;
}

/// A fresh directory on tmpfs (/dev/shm), removed on drop.
fn shm_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("warden-injector-test-")
        .tempdir_in("/dev/shm")
        .unwrap()
}

/// Sends `signal` to `pid` with kill(1), and waits (at most 10 s) for
/// `child` to exit: its status.
async fn signal_and_wait(
    child: &mut tokio::process::Child,
    pid: u32,
    signal: &str,
) -> std::process::ExitStatus {
    let sent = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap()
}

fn uid() -> String {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    text(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_render_onto_tmpfs_with_mode_0400_and_never_onto_disk() {
    let t = Setup::new().await;
    let src = t.dir.path().join("app.conf.tpl");
    std::fs::write(&src, "db = {{ DB_URL }}\nkey = {{API_KEY}}\n").unwrap();
    let shm = shm_dir();
    let dest = shm.path().join("app.conf");
    let spec = format!("{}:{}", src.display(), dest.display());
    let show = format!(
        "stat -c '%a %u' {0}; cat {0}; echo \"API_KEY=${{API_KEY:-unset}}\"",
        dest.display()
    );
    let out = t
        .run(
            &["--deliver", "none", "--template", &spec],
            &["sh", "-c", &show],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "400 {}\ndb = {DB_URL}\nkey = {API_KEY}\nAPI_KEY=unset\n",
            uid()
        )
    );
    // Rendering again (a restarted container) replaces the 0400 file.
    let out = t.run(&["--template", &spec], &["true"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let names: Vec<_> = std::fs::read_dir(shm.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "a temporary file was left behind");

    // A disk-backed destination is refused, and nothing is written there.
    let fs = std::process::Command::new("stat")
        .args(["-f", "-c", "%T", "/var/tmp"])
        .output()
        .unwrap();
    let fs = text(&fs.stdout);
    assert!(
        !fs.contains("tmpfs") && !fs.contains("ramfs"),
        "this test needs /var/tmp on a disk-backed filesystem, it is {fs}"
    );
    let disk = tempfile::Builder::new()
        .prefix("warden-injector-test-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let on_disk = disk.path().join("app.conf");
    let out = t
        .run(
            &[
                "--template",
                &format!("{}:{}", src.display(), on_disk.display()),
            ],
            &["echo", "ran"],
        )
        .await;
    assert_refused(&out, 73, "is not on tmpfs or ramfs");
    assert_eq!(std::fs::read_dir(disk.path()).unwrap().count(), 0);

    // A reference to a secret the service lacks: refused, nothing written,
    // unless --allow-missing names it.
    let missing = t.dir.path().join("missing.tpl");
    std::fs::write(&missing, "a={{ API_KEY }} b={{ NOT_THERE }}").unwrap();
    let dest2 = shm.path().join("missing.conf");
    let spec2 = format!("{}:{}", missing.display(), dest2.display());
    let out = t.run(&["--template", &spec2], &["echo", "ran"]).await;
    assert_refused(&out, 65, "references secret NOT_THERE");
    assert!(!dest2.exists());
    let out = t
        .run(
            &["--template", &spec2, "--allow-missing", "NOT_THERE"],
            &["cat", dest2.to_str().unwrap()],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("a={API_KEY} b="));
    t.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_exit_77_with_the_servers_reason() {
    let t = Setup::new().await;
    // An API token of a service account allowed to read the service works,
    // then is revoked.
    let (token, id) = t.service_account_token().await;
    let run = |token: String| {
        let t = &t;
        async move {
            t.injector(
                &[],
                &[("WARDEN_CREDENTIAL", &token)],
                &["sh", "-c", "echo $API_KEY"],
            )
            .output()
            .await
            .unwrap()
        }
    };
    let out = run(token.clone()).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{API_KEY}\n"));
    t.s.ok(Method::POST, &format!("/api/v1/tokens/{id}/revoke"), None)
        .await;
    let out = run(token).await;
    assert_refused(&out, 77, "credential refused by the server: token revoked");

    // A workload token that does not verify (its signature altered).
    let mut forged = t.token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let out = run(forged).await;
    assert_refused(
        &out,
        77,
        "credential refused by the server: invalid workload token",
    );

    // A valid workload credential for another service may not read this
    // one: a configuration error, not a refused credential.
    t.s.scopes("acme/shop/dev/web", "development").await;
    let web = workload_token(&t.s, "acme/shop/dev/web").await;
    let out = run(web).await;
    assert_refused(
        &out,
        78,
        "the server refused this service to the credential",
    );
    t.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_exits_69_after_bounded_retries() {
    let t = Setup::new().await;
    let dead = format!("https://127.0.0.1:{}", free_port());
    let cred = t.credential.to_str().unwrap();
    let started = Instant::now();
    let out = tokio::process::Command::new(injector_bin())
        .args(["exec", "--server", &dead, "--service", SERVICE])
        .arg("--ca")
        .arg(t.s.ca_path())
        .args(["--credential-file", cred, "--retries", "3"])
        .args(["--retry-delay-ms", "100", "--", "echo", "ran"])
        .output()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_refused(
        &out,
        69,
        "server unreachable after 4 attempts: cannot reach 127.0.0.1:",
    );
    // Three waits of at least 50, 100 and 200 ms (half of each backoff
    // step, the least jitter leaves).
    assert!(
        elapsed >= Duration::from_millis(350),
        "{elapsed:?}: no backoff"
    );

    // A server whose certificate the given CA did not sign is not retried:
    // it is the wrong server (or someone in the middle).
    let other = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .unwrap();
    warden_server::tls::ensure_dev_pki(other.path()).unwrap();
    let out = tokio::process::Command::new(injector_bin())
        .args(["exec", "--server", &t.s.url, "--service", SERVICE])
        .arg("--ca")
        .arg(other.path().join("ca.pem"))
        .args(["--credential-file", cred, "--", "echo", "ran"])
        .output()
        .await
        .unwrap();
    assert_refused(&out, 78, "is not the server the CA vouches for");
    t.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_usage_error() {
    let t = Setup::new().await;
    let shm = shm_dir();
    let dest = shm.path().join("out");
    let dest = dest.to_str().unwrap();
    let tpl = t.dir.path().join("ok.tpl");
    std::fs::write(&tpl, "{{ API_KEY }}").unwrap();
    let tpl = tpl.to_str().unwrap();

    let dotdot = format!("{tpl}:{}/../escape", shm.path().display());
    let out = t.run(&["--template", &dotdot], &["echo", "ran"]).await;
    assert_refused(&out, 64, "paths may not contain '..'");
    let out = t
        .run(
            &["--template", &format!("../{tpl}:{dest}")],
            &["echo", "ran"],
        )
        .await;
    assert_refused(&out, 64, "paths may not contain '..'");

    let huge = t.dir.path().join("huge.tpl");
    std::fs::write(&huge, vec![b'x'; 1024 * 1024 + 1]).unwrap();
    let out = t
        .run(
            &["--template", &format!("{}:{dest}", huge.display())],
            &["echo", "ran"],
        )
        .await;
    assert_refused(&out, 64, "larger than the limit of 1048576 bytes");

    let bad_ref = t.dir.path().join("bad.tpl");
    std::fs::write(&bad_ref, "ok\n{{ 1NOT-A-NAME }}").unwrap();
    let out = t
        .run(
            &["--template", &format!("{}:{dest}", bad_ref.display())],
            &["echo", "ran"],
        )
        .await;
    assert_refused(&out, 64, "line 2: \"1NOT-A-NAME\" is not a secret name");

    let out = t
        .run(&["--allow-missing", "NOT-AN-ENV-NAME"], &["echo", "ran"])
        .await;
    assert_refused(&out, 64, "\"NOT-AN-ENV-NAME\": not a secret name");

    let out = tokio::process::Command::new(injector_bin())
        .args(["exec", "--server", &t.s.url, "--service", "acme/shop/dev"])
        .arg("--ca")
        .arg(t.s.ca_path())
        .args(["--credential-file", t.credential.to_str().unwrap()])
        .args(["--", "echo", "ran"])
        .output()
        .await
        .unwrap();
    assert_refused(&out, 64, "--service");

    // No credential anywhere.
    let out = t
        .injector(&[], &[], &["echo", "ran"])
        .output()
        .await
        .unwrap();
    assert_refused(&out, 78, "no credential");

    // A command that does not exist: 127, after the fetch.
    let out = t.run(&[], &["/nonexistent/warden-test-command"]).await;
    assert_refused(&out, 127, "cannot execute /nonexistent/warden-test-command");
    t.s.stop().await;
}

/// Processes whose parent is `pid`, as (pid, state, command name).
fn children_of(pid: u32) -> Vec<(u32, char, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let mut rest = stat[close + 2..].split(' ');
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == pid {
            let me = stat[..open].trim().parse().unwrap_or(0);
            out.push((me, state, stat[open + 1..close].to_owned()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_mode_reaps_orphans_forwards_signals_and_keeps_the_exit_code() {
    let t = Setup::new().await;
    let cred = t.credential.to_str().unwrap();
    // The command orphans a `sleep 2` (its subshell exits at once), so the
    // wrapper, a child subreaper, inherits it and must reap it; then it
    // waits for SIGTERM, which it turns into exit code 42. (Bounded, so a
    // failing run leaves nothing behind holding the test's stderr.)
    let script = r#"
        trap 'exit 42' TERM
        (sleep 2 &)
        echo "ready $API_KEY"
        i=0; while [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
    "#;
    let (mut child, pid, ready) = t.parent(cred, script).await;
    assert_eq!(ready, format!("ready {API_KEY}"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kids = children_of(pid);
    assert!(
        kids.iter().any(|(_, _, comm)| comm == "sleep"),
        "the orphan was not re-parented to the wrapper: {kids:?}"
    );
    // The orphan exits after 2 s; the wrapper must reap it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let kids = children_of(pid);
    assert!(
        kids.iter().all(|(_, state, _)| *state != 'Z'),
        "zombies left: {kids:?}"
    );
    assert!(kids.iter().all(|(_, _, comm)| comm != "sleep"), "{kids:?}");
    let status = signal_and_wait(&mut child, pid, "TERM").await;
    assert_eq!(status.code(), Some(42));

    // A command killed by a forwarded signal: 128 + its number.
    let (mut child, pid, ready) = t.parent(cred, "echo ready; exec sleep 15").await;
    assert_eq!(ready, "ready");
    // Until the shell has exec'd sleep, SIGINT would hit the shell.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = signal_and_wait(&mut child, pid, "INT").await;
    assert_eq!(status.code(), Some(130));
    t.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bash_env_secret_is_refused_in_env_mode_unless_allowed() {
    let t = Setup::new().await;
    // Whoever may write a secret at an inherited scope must not get code
    // run in the command: bash expands BASH_ENV before running `-c`.
    let witness = t.dir.path().join("pwned");
    let value = format!("$(echo pwned > {})", witness.display());
    t.s.put(SERVICE, json!({"BASH_ENV": value})).await;
    let out = t.run(&[], &["bash", "-c", "echo ran"]).await;
    assert_refused(
        &out,
        65,
        "secret BASH_ENV is refused as an environment variable",
    );
    assert!(text(&out.stderr).contains("--allow-env BASH_ENV"));
    assert!(!text(&out.stderr).contains(&value), "the value was printed");
    assert!(!witness.exists(), "BASH_ENV ran");
    // An exact --allow-env lets it through (the command only prints it).
    let out = t
        .run(&["--allow-env", "BASH_ENV"], &["printenv", "BASH_ENV"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{value}\n"));
    // In fd mode it is no environment variable, so nothing is refused.
    let out = t
        .run(
            &["--deliver", "fd"],
            &["sh", "-c", "cat \"/proc/self/fd/$WARDEN_SECRETS_FD\""],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let secrets: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(secrets["BASH_ENV"], json!(value));
    assert!(!witness.exists());
    t.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_path_secret_does_not_choose_the_program() {
    let t = Setup::new().await;
    // A directory with its own `env`, named by a PATH secret.
    let evil = t.dir.path().join("evil");
    std::fs::create_dir(&evil).unwrap();
    let fake = evil.join("env");
    std::fs::write(&fake, "#!/bin/sh\necho hijacked\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let evil = evil.to_str().unwrap().to_owned();
    t.s.put(SERVICE, json!({"PATH": evil})).await;
    let out = t.run(&[], &["env"]).await;
    assert_refused(&out, 65, "secret PATH is refused");
    // Allowed, the command gets the PATH, but `env` is still the one the
    // wrapper's own PATH finds.
    let out = t.run(&["--allow-env", "PATH"], &["env"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("hijacked"), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&format!("PATH={evil}").as_str()), "{stdout}");
    assert!(
        lines.contains(&format!("API_KEY={API_KEY}").as_str()),
        "{stdout}"
    );
    t.s.stop().await;
}

/// A stand-in for the server (HTTPS with a development CA of its own) that
/// answers every request with the same raw bytes, then `filler` more bytes
/// of body before closing (or, with none, holds the connection until the
/// client closes it): the review's malformed, forged and oversized answers.
struct FakeServer {
    url: String,
    ca: PathBuf,
    credential: PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    async fn start(answer: Vec<u8>, filler: usize) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::Builder::new()
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .unwrap();
        let pki = warden_server::tls::ensure_dev_pki(dir.path()).unwrap();
        let config = warden_server::tls::server_config(&pki.cert, &pki.key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let credential = dir.path().join("credential");
        std::fs::write(&credential, "not-checked-by-the-stand-in\n").unwrap();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, answer) = (acceptor.clone(), answer.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    if tls.write_all(&answer).await.is_err() {
                        return;
                    }
                    if filler > 0 {
                        let chunk = vec![b'a'; 64 * 1024];
                        let mut sent = 0;
                        while sent < filler {
                            if tls.write_all(&chunk).await.is_err() {
                                return;
                            }
                            sent += chunk.len();
                        }
                        let _ = tls.shutdown().await;
                        return;
                    }
                    let _ = tls.flush().await;
                    while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        Self {
            url: format!("https://127.0.0.1:{port}"),
            ca: pki.ca_cert,
            credential,
            _dir: dir,
            task,
        }
    }

    /// An answer with `status`, a JSON body and its Content-Length.
    async fn json(status: &str, body: &str) -> Self {
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        Self::start(answer.into_bytes(), 0).await
    }

    /// `warden-injector exec` against it, without retries unless `flags`
    /// ask for some.
    async fn run(&self, flags: &[&str]) -> Output {
        let retries: &[&str] = if flags.contains(&"--retries") {
            &[]
        } else {
            &["--retries", "0"]
        };
        tokio::process::Command::new(injector_bin())
            .args(["exec", "--server", &self.url, "--service", SERVICE])
            .arg("--ca")
            .arg(&self.ca)
            .arg("--credential-file")
            .arg(&self.credential)
            .args(retries)
            .args(flags)
            .args(["--", "echo", "ran"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_forged_and_oversized_answers_are_refused_without_echoing_them() {
    // A 200 whose shape is wrong: serde_json's own message would quote the
    // value ("invalid type: string \"...\", expected a map").
    let canary = "SECRET-VALUE-injector-canary";
    let fake = FakeServer::json(
        "200 OK",
        &format!(r#"{{"service":"{SERVICE}","values":"{canary}"}}"#),
    )
    .await;
    let out = fake.run(&[]).await;
    assert_refused(
        &out,
        70,
        "the resolve answer is not what the API documents: JSON of another shape at line 1, column",
    );
    assert!(!text(&out.stderr).contains(canary), "{}", text(&out.stderr));
    drop(fake);

    // A 401 whose message forges a second line and drives the terminal:
    // printed with its control characters escaped, on one line.
    let fake = FakeServer::json(
        "401 Unauthorized",
        r#"{"error":{"code":"unauthorized","message":"token revoked\n\u001b[1Awarden-injector: all fine\u001b[0m"}}"#,
    )
    .await;
    let out = fake.run(&[]).await;
    assert_refused(
        &out,
        77,
        r"credential refused by the server: token revoked\u{a}\u{1b}[1Awarden-injector: all fine\u{1b}[0m",
    );
    assert!(!out.stderr.contains(&0x1b), "{:?}", text(&out.stderr));
    drop(fake);

    // A Content-Length past the limit (64 MiB by default): refused from
    // the head alone; the stand-in never sends the body (reading it would
    // wait for the attempt timeout instead).
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                content-length: 1073741824\r\n\r\n";
    let fake = FakeServer::start(head.as_bytes().to_vec(), 0).await;
    let started = Instant::now();
    let out = fake.run(&["--attempt-timeout-ms", "30000"]).await;
    assert_refused(
        &out,
        65,
        "the server's answer (HTTP 200) is larger than 67108864 bytes, the --max-response-bytes limit",
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // An error answer that large is no answer the API documents: 70, not
    // retried.
    let head = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 1073741824\r\n\r\n";
    let fake = FakeServer::start(head.as_bytes().to_vec(), 0).await;
    let out = fake.run(&["--retries", "3"]).await;
    assert_refused(&out, 70, "(HTTP 503) is larger than 67108864 bytes");

    // No Content-Length, the body running to the connection's end: refused
    // once it passes --max-response-bytes.
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
    let fake = FakeServer::start(head.as_bytes().to_vec(), 4 * 1024 * 1024).await;
    let out = fake.run(&["--max-response-bytes", "1048576"]).await;
    assert_refused(&out, 65, "is larger than 1048576 bytes");
    // Under the limit, the same answer is read and found malformed.
    let out = fake.run(&["--max-response-bytes", "8388608"]).await;
    assert_refused(&out, 70, "the resolve answer is not what the API documents");
}

/// `inner` run with its stack limit at 8 MiB, which fixes what `execve`
/// takes (a quarter of it).
fn with_8_mib_stack(inner: &tokio::process::Command) -> tokio::process::Command {
    let inner = inner.as_std();
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c")
        .arg("ulimit -S -s 8192 2>/dev/null; exec \"$@\"")
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_too_large_for_exec_is_exit_65_with_a_hint() {
    let t = Setup::new().await;
    // 40 values of 64 KiB (the largest a value may be): 2.5 MiB, past what
    // execve takes with an 8 MiB stack limit (a quarter of it), which the
    // wrapper is run with.
    let big = "x".repeat(64 * 1024);
    let values: serde_json::Map<String, Value> = (0..40)
        .map(|i| (format!("BIG_{i:02}"), json!(big)))
        .collect();
    t.s.put(SERVICE, Value::Object(values)).await;
    let cred = t.credential.to_str().unwrap();
    let run = |flags: &[&str], cmd: &[&str]| with_8_mib_stack(&t.injector(flags, &[], cmd));
    for parent in [&[][..], &["--parent"]] {
        let mut flags = vec!["--credential-file", cred];
        flags.extend_from_slice(parent);
        let out = run(&flags, &["echo", "ran"]).output().await.unwrap();
        assert_refused(
            &out,
            65,
            "cannot execute echo: its arguments and environment",
        );
        assert!(text(&out.stderr).contains("--deliver fd"), "{parent:?}");
        assert!(!text(&out.stderr).contains(&big[..64]));
    }
    // As the hint says, fd mode delivers the same secrets.
    let out = run(
        &["--credential-file", cred, "--deliver", "fd"],
        &["sh", "-c", "wc -c < \"/proc/self/fd/$WARDEN_SECRETS_FD\""],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let bytes: usize = text(&out.stdout).trim().parse().unwrap();
    assert!(bytes > 40 * 64 * 1024, "{bytes}");
    t.s.stop().await;
}

/// The state letter of process `pid` (`None` once it is gone).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    stat[close + 2..].chars().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_mode_takes_the_command_down_when_killed_by_sigkill() {
    let t = Setup::new().await;
    let cred = t.credential.to_str().unwrap();
    let (mut child, pid, ready) = t.parent(cred, "echo ready; exec sleep 30").await;
    assert_eq!(ready, "ready");
    let kids = children_of(pid);
    assert_eq!(kids.len(), 1, "{kids:?}");
    let command = kids[0].0;
    // SIGKILL cannot be caught, so it cannot be forwarded: the kernel's
    // parent-death signal takes the command down instead.
    let status = signal_and_wait(&mut child, pid, "KILL").await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Gone, or a zombie waiting for whoever inherited it.
        match process_state(command) {
            None | Some('Z') => break,
            Some(state) => assert!(
                Instant::now() < deadline,
                "the command ({command}, {state}) outlived its killed parent"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.s.stop().await;
}

/// The next line of a watching wrapper's command, within `secs`.
async fn line_within(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    secs: u64,
) -> String {
    tokio::time::timeout(Duration::from_secs(secs), lines.next_line())
        .await
        .expect("no line in time")
        .unwrap()
        .expect("the command's output ended")
}

/// Starts a watching wrapper (`cmd`, its output piped) and waits for its
/// command's first line and for its watch to hold the service's secrets:
/// the wrapper, its pid, its command's output lines, the first of them.
async fn start_watching(
    t: &Setup,
    mut cmd: tokio::process::Command,
) -> (
    tokio::process::Child,
    u32,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    String,
) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = line_within(&mut lines, 20).await;
    holders_when(t, "DB_URL", |h| h["holders"].as_array().unwrap().len() == 1).await;
    (child, pid, lines, first)
}

/// The holders of `key` set at `SERVICE`, once `ready` accepts them
/// (polled for at most 10 s).
async fn holders_when(t: &Setup, key: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/v1/secret-holders/{SERVICE}?name={key}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = t.s.ok(Method::GET, &path, None).await;
        if ready(&h) {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "holders never became as expected: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `--watch` (restart mode): a rotation reaches the running workload in a
/// second or two without anyone restarting it, the new value only in the
/// new command; `warden secret holders` follows which pod holds which
/// version; every applied update is audited with the versions served; the
/// watch ends with the wrapper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watching_wrapper_restarts_its_command_when_a_secret_rotates() {
    let t = Setup::new().await;
    let cred = t.credential.to_str().unwrap();
    let (mut child, pid, mut lines, first) = start_watching(
        &t,
        t.injector(
            &["--credential-file", cred, "--watch", "--pod", "web-1"],
            &[],
            &["sh", "-c", "echo \"start $DB_URL\"; exec sleep 600"],
        ),
    )
    .await;
    assert_eq!(first, format!("start {DB_URL}"));
    let h = holders_when(&t, "DB_URL", |h| {
        h["holders"].as_array().unwrap().len() == 1
    })
    .await;
    assert_eq!(h["latest"], 1, "{h}");
    let held = &h["holders"][0];
    assert_eq!(
        (
            &held["service"],
            &held["pod"],
            &held["version"],
            &held["current"]
        ),
        (&json!(SERVICE), &json!("web-1"), &json!(1), &json!(true)),
        "{h}"
    );

    let rotated = "postgres://rotated-db/app";
    let at = Instant::now();
    t.s.put(SERVICE, json!({"DB_URL": rotated})).await;
    assert_eq!(
        line_within(&mut lines, 10).await,
        format!("start {rotated}")
    );
    let took = at.elapsed();
    let h = holders_when(&t, "DB_URL", |h| h["holders"][0]["version"] == 2).await;
    assert_eq!(
        (&h["latest"], &h["holders"][0]["current"]),
        (&json!(2), &json!(true)),
        "{h}"
    );
    // API_KEY did not change: its holder still has version 1, current.
    let k = holders_when(&t, "API_KEY", |h| {
        h["holders"].as_array().unwrap().len() == 1
    })
    .await;
    assert_eq!(k["holders"][0]["version"], 1, "{k}");
    eprintln!("rotation delivered (command restarted) in {took:?}");

    let page =
        t.s.ok(Method::GET, "/api/v1/audit/acme/entries?limit=1000", None)
            .await;
    let applied: Vec<&Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "secret.watch.applied")
        .collect();
    assert_eq!(applied.len(), 2, "{page}");
    let last = &applied[1]["target"];
    assert_eq!(last["pod"], "web-1", "{last}");
    assert_eq!(
        last["names"],
        json!([
            format!("API_KEY:1@{SERVICE}"),
            format!("DB_URL:2@{SERVICE}")
        ]),
        "{last}"
    );
    assert!(!page.to_string().contains(rotated));

    // SIGTERM to the wrapper: forwarded, no restart, the code kept; the
    // watch ends and the pod no longer shows as a holder.
    let status = signal_and_wait(&mut child, pid, "TERM").await;
    assert_eq!(status.code(), Some(143));
    holders_when(&t, "DB_URL", |h| {
        h["holders"].as_array().unwrap().is_empty()
    })
    .await;
}

/// `--watch --on-change signal:HUP` with templates only: the file on tmpfs
/// is rendered again and the command told, without a restart; a change that
/// cannot be applied (a reference gone) is reported failed and the command
/// keeps what it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watching_wrapper_rerenders_templates_and_signals_its_command() {
    let t = Setup::new().await;
    let shm = shm_dir();
    let src = t.dir.path().join("db.tpl");
    std::fs::write(&src, "url={{ DB_URL }}\n").unwrap();
    let dest = shm.path().join("db.conf");
    let spec = format!("{}:{}", src.display(), dest.display());
    let cred = t.credential.to_str().unwrap();
    let script = format!(
        "trap 'echo \"reload $(cat {d})\"' HUP; echo \"start $(cat {d}) $$\"; \
         while :; do sleep 0.05; done",
        d = dest.display()
    );
    let (mut child, pid, mut lines, first) = start_watching(
        &t,
        t.injector(
            &[
                "--credential-file",
                cred,
                "--deliver",
                "none",
                "--template",
                &spec,
                "--watch",
                "--on-change",
                "signal:HUP",
            ],
            &[],
            &["sh", "-c", &script],
        ),
    )
    .await;
    assert!(
        first.starts_with(&format!("start url={DB_URL} ")),
        "{first}"
    );

    t.s.put(SERVICE, json!({"DB_URL": "postgres://second/app"}))
        .await;
    assert_eq!(
        line_within(&mut lines, 10).await,
        "reload url=postgres://second/app"
    );
    // Same command: no restart.
    let pid_line = first.rsplit(' ').next().unwrap().to_owned();
    assert!(
        children_of(pid)
            .iter()
            .any(|(p, _, _)| p.to_string() == pid_line)
    );

    // A template reference that stops resolving: refused, reported failed,
    // the file and the command unchanged.
    t.s.ok(
        Method::POST,
        &format!("/api/v1/secret-delete/{SERVICE}"),
        Some(json!({"key": "DB_URL"})),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        std::fs::read_to_string(&dest).unwrap(),
        "url=postgres://second/app\n"
    );
    let page =
        t.s.ok(Method::GET, "/api/v1/audit/acme/entries?limit=1000", None)
            .await;
    assert!(
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "secret.watch.failed"),
        "{page}"
    );
    let status = signal_and_wait(&mut child, pid, "TERM").await;
    assert_eq!(status.code(), Some(143));
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("update 3 not applied"), "{stderr}");
    assert!(stderr.contains("DB_URL"), "{stderr}");
    assert!(!stderr.contains("postgres://"), "{stderr}");
}

/// A watch is held by the credential's authority: revoking the token ends
/// it at once (the command keeps running, with what it has), and the
/// wrapper's attempts to watch again are refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_credential_ends_its_watch_and_refuses_the_next() {
    let t = Setup::new().await;
    let (token, id) = t.service_account_token().await;
    let (mut child, pid, _lines, first) = start_watching(
        &t,
        t.injector(
            &["--watch"],
            &[("WARDEN_CREDENTIAL", &token)],
            &["sh", "-c", "echo up; exec sleep 600"],
        ),
    )
    .await;
    assert_eq!(first, "up");
    t.s.ok(Method::POST, &format!("/api/v1/tokens/{id}/revoke"), None)
        .await;
    holders_when(&t, "DB_URL", |h| {
        h["holders"].as_array().unwrap().is_empty()
    })
    .await;
    let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("refused: token revoked"))
    {
        let l = tokio::time::timeout(Duration::from_secs(10), err.next_line())
            .await
            .expect("no refusal in time")
            .unwrap()
            .unwrap();
        seen.push(l);
    }
    assert!(seen[0].contains("watch ended"), "{seen:?}");
    // The command is untouched.
    assert_eq!(
        process_state(children_of(pid)[0].0).map(|s| s != 'Z'),
        Some(true)
    );
    let status = signal_and_wait(&mut child, pid, "TERM").await;
    assert_eq!(status.code(), Some(143));
}

/// A watch as a raw client sees it: one report per update counts (a second
/// ends the watch), a credential holds at most four watches on a server
/// (the fifth is refused 429 and audited), and a bad pod name is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_takes_one_report_per_update_and_few_watches_per_credential() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let t = Setup::new().await;
    let client = t.s.client_with(Some(&t.token));
    let path = format!("/api/v1/watch/{SERVICE}?pod=web-1");
    let open = || client.websocket(&path, &[warden_api::SECRET_WATCH_PROTOCOL]);
    let (mut ws, _) = open().await.unwrap();
    let first = match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => serde_json::from_str::<Value>(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(first["generation"], 1);
    assert_eq!(first["versions"]["DB_URL"]["version"], 1, "{first}");
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(open().await.unwrap().0);
    }
    match open().await {
        Err(warden_api::ClientError::Api {
            status, message, ..
        }) => {
            assert_eq!(status, 429, "{message}");
            assert!(message.contains("4 watches"), "{message}");
        }
        other => panic!("a fifth watch: {:?}", other.map(|_| ())),
    }
    let bad = client
        .websocket(
            &format!("/api/v1/watch/{SERVICE}?pod=Web_1"),
            &[warden_api::SECRET_WATCH_PROTOCOL],
        )
        .await;
    assert!(
        matches!(bad, Err(warden_api::ClientError::Api { status: 400, .. })),
        "{:?}",
        bad.map(|_| ())
    );

    let report = r#"{"report":"applied","generation":1}"#;
    ws.send(Message::Text(report.into())).await.unwrap();
    ws.send(Message::Text(report.into())).await.unwrap();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(frame))) => break frame.unwrap(),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(u16::from(closed.code), 1008);
    assert!(
        closed.reason.contains("reported already"),
        "{}",
        closed.reason
    );
    let page =
        t.s.ok(Method::GET, "/api/v1/audit/acme/entries?limit=1000", None)
            .await;
    let entries = page["entries"].as_array().unwrap();
    let count = |action: &str, status: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["status"] == status)
            .count()
    };
    assert_eq!(count("secret.watch.applied", "ok"), 1, "{page}");
    // Refusals before a decision are in the system log.
    let system =
        t.s.ok(Method::GET, "/api/v1/audit/system/entries?limit=1000", None)
            .await;
    let refused = system["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "secret.watch" && e["status"] == "rate_limited")
        .count();
    assert_eq!(refused, 1, "{system}");
}

/// A watch's frames are bounded before they are buffered: a frame header
/// declaring 16 MiB (the report limit is 4 KiB) ends the connection at
/// once, without the server waiting for (and holding) the payload (review
/// 13, F1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_refuses_an_oversized_frame_from_its_header() {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let t = Setup::new().await;
    let client = t.s.client_with(Some(&t.token));
    let path = format!("/api/v1/watch/{SERVICE}?pod=web-1");
    let (mut ws, _) = client
        .websocket(&path, &[warden_api::SECRET_WATCH_PROTOCOL])
        .await
        .unwrap();
    // A masked text frame of 16 MiB - 1 bytes: FIN|text, MASK|127, the
    // 64-bit length, the mask; then nothing.
    let mut header = vec![0x81, 0xff];
    header.extend_from_slice(&((16u64 << 20) - 1).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    ws.get_mut().write_all(&header).await.unwrap();
    ws.get_mut().flush().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))
                | Some(Err(_))
                | None => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server waited for a 16 MiB frame");
}

/// A watcher that stops reading does not keep its watch past its
/// authority: with its socket full of updates it never read, revoking its
/// token ends the watch (audited) and frees its place in `secret holders`
/// (review 13, F2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_stops_reading_loses_its_watch_when_revoked() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let t = Setup::new().await;
    let (token, id) = t.service_account_token().await;
    let client = t.s.client_with(Some(&token));
    // (A service account names no pod: only a workload may.)
    let path = format!("/api/v1/watch/{SERVICE}");
    let (mut ws, _) = client
        .websocket(&path, &[warden_api::SECRET_WATCH_PROTOCOL])
        .await
        .unwrap();
    let _first = ws.next().await.unwrap().unwrap();
    ws.send(Message::Text(
        r#"{"report":"applied","generation":1}"#.into(),
    ))
    .await
    .unwrap();
    holders_when(&t, "DB_URL", |h| {
        h["holders"].as_array().unwrap().len() == 1
    })
    .await;
    // About 1 MiB per update, 24 updates: far more than the sockets hold.
    let filler = "f".repeat(60 * 1024);
    for round in 0..24 {
        let values: serde_json::Map<String, Value> = (0..16)
            .map(|i| (format!("FILL_{i}"), json!(format!("{round}{filler}"))))
            .collect();
        t.s.put(SERVICE, Value::Object(values)).await;
    }
    t.s.ok(Method::POST, &format!("/api/v1/tokens/{id}/revoke"), None)
        .await;
    holders_when(&t, "DB_URL", |h| {
        h["holders"].as_array().unwrap().is_empty()
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page =
            t.s.ok(Method::GET, "/api/v1/audit/acme/entries?limit=1000", None)
                .await;
        let ended = page["entries"].as_array().unwrap().iter().any(|e| {
            e["action"] == "secret.watch"
                && e["phase"] == "outcome"
                && e["status"] == "authority_ended"
                && e["target"]["pod"] == "-"
        });
        if ended {
            break;
        }
        assert!(Instant::now() < deadline, "the watch did not end: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(ws);
}

/// Restart mode never stops a command it cannot start again: a rotation
/// that makes the environment too large for `execve` is reported failed
/// (audited), said on stderr without a value, and the running command goes
/// on (review 13, F4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_too_large_to_exec_leaves_the_command_running() {
    let t = Setup::new().await;
    let cred = t.credential.to_str().unwrap();
    let (mut child, pid, _lines, first) = start_watching(
        &t,
        with_8_mib_stack(&t.injector(
            &["--credential-file", cred, "--watch", "--pod", "web-1"],
            &[],
            &["sh", "-c", "echo start; exec sleep 600"],
        )),
    )
    .await;
    assert_eq!(first, "start");
    let command = children_of(pid)[0].0;

    let big = "x".repeat(64 * 1024);
    let values: serde_json::Map<String, Value> = (0..40)
        .map(|i| (format!("BIG_{i:02}"), json!(big)))
        .collect();
    t.s.put(SERVICE, Value::Object(values)).await;
    let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let said = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let l = err.next_line().await.unwrap().unwrap();
            if l.contains("not applied") {
                return l;
            }
        }
    })
    .await
    .expect("no failure said");
    assert!(said.contains("not restarted"), "{said}");
    assert!(!said.contains(&big[..64]), "{said}");
    // The same command runs on, never stopped.
    assert_eq!(children_of(pid)[0].0, command);
    assert_eq!(process_state(command).map(|s| s != 'Z'), Some(true));
    let page =
        t.s.ok(Method::GET, "/api/v1/audit/acme/entries?limit=1000", None)
            .await;
    let failed = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "secret.watch.failed")
        .count();
    assert_eq!(failed, 1, "{page}");
    let status = signal_and_wait(&mut child, pid, "TERM").await;
    assert_eq!(status.code(), Some(143));
}
