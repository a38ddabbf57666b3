//! Gateway harness: Warden's SSH gateway side by side with OpenSSH's sshd
//! (Debian's `openssh-server`, started here on a loopback port with key
//! authentication), in one run, with the same OpenSSH client:
//!
//! 1. setup: `ssh HOST true` until it exits, median (and p90) of N;
//! 2. throughput: `head -c SIZE /dev/zero`, then as much printable text,
//!    on the far side, read to the end here (Warden records every session:
//!    the text is masked, sealed and stored, the zeros left out);
//! 3. keystroke echo: one byte at a time into an interactive session
//!    (`ssh -tt ... cat`), until the terminal echoes it, p50 and p99;
//! 4. idle sessions: N interactive sessions (pty + shell), ten per
//!    connection, held open by one client (russh) in this process; the
//!    server's resident memory before and after (Warden: the `warden dev`
//!    process, which also holds the agent; sshd: its processes, not the
//!    shells). The sessions' shells and exec helpers are not counted on
//!    either side.
//!
//! Then setup and throughput through `warden shell` (WebSocket) and stock
//! `kubectl exec` (1.33) against the same pod, on their own; and the
//! exactness check: large outputs and an exit code through every entry
//! point, `--exact` times, failing the run on any difference.
//!
//! Warden's side is a `warden dev` process (release build, next to this
//! binary) whose in-process agent runs the pod in namespaces; commands run
//! in the pod. sshd runs them on the host, as the account `warden-bench`
//! (created if missing; `/bin/sh`, no startup files). Needs root
//! (namespaces, sshd).
//!
//! `cargo build --release -p warden-cli && cargo run --release -p warden-bench --bin gateway -- [--setups 30] [--mib 1024] [--keys 200] [--idle 1000]`

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Parser;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use warden_bench::{Guard, free_port, run_ok};

#[derive(Parser)]
#[command(about = "Warden's SSH gateway against OpenSSH's sshd, side by side")]
struct Args {
    /// `ssh HOST true` runs per server.
    #[arg(long, default_value_t = 30)]
    setups: usize,
    /// MiB read through each server.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Keystrokes echoed per server.
    #[arg(long, default_value_t = 200)]
    keys: usize,
    /// Idle interactive sessions held per server.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// The cipher both servers are asked for (`ssh -c`); default: the
    /// client's choice (chacha20-poly1305@openssh.com for OpenSSH 9).
    #[arg(long)]
    cipher: Option<String>,
    /// Runs of the exactness check per entry point (ssh, `warden shell`,
    /// `kubectl exec`): `seq 1 2000000 | tail -1` and a 64 MiB
    /// `head -c | sha256sum`, each output and exit code compared.
    #[arg(long, default_value_t = 1)]
    exact: usize,
}

const SERVICE: &str = "acme/shop/dev/api";

/// One side: how to reach it with OpenSSH.
struct Side {
    name: &'static str,
    port: u16,
    /// Login name.
    user: String,
    /// Arguments before the command (the target, for Warden).
    prefix: Vec<String>,
    /// The server's process.
    pid: u32,
    /// The host key fingerprint to expect.
    fingerprint: String,
}

struct Env {
    cipher: Option<String>,
    dir: PathBuf,
    key: PathBuf,
    warden: PathBuf,
}

impl Env {
    fn ssh(&self, side: &Side, tty: bool) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-p", &side.port.to_string(), "-i"])
            .arg(&self.key)
            // One key exchange for both servers (Debian's client would pick
            // sntrup761x25519 with sshd, which Warden does not offer).
            .args([
                "-o",
                "KexAlgorithms=curve25519-sha256",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
            ]);
        if let Some(c) = &self.cipher {
            cmd.args(["-c", c]);
        }
        if tty {
            cmd.arg("-tt");
        }
        cmd.arg(format!("{}@127.0.0.1", side.user))
            .args(&side.prefix);
        cmd
    }

    fn warden(&self) -> Command {
        let mut cmd = Command::new(&self.warden);
        cmd.env("WARDEN_CONFIG", self.dir.join("client.toml"));
        cmd
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn wait_for_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn keygen(path: &Path) -> Result<()> {
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(path),
    )
    .map(drop)
}

/// The Unix account sshd's sessions run as: `/bin/sh` as its shell and no
/// startup files, as the pod's `sh -c` on Warden's side (root's shell here
/// runs whatever its `.bashrc` holds, which would be measured instead).
const SSHD_USER: &str = "warden-bench";

/// A private sshd on a loopback port, key logins only.
fn start_sshd(env: &Env) -> Result<(Guard, Side)> {
    let sshd = Path::new("/usr/sbin/sshd");
    ensure!(
        sshd.exists(),
        "/usr/sbin/sshd is missing: run scripts/ensure-tools.sh (Debian's openssh-server)"
    );
    std::fs::create_dir_all("/run/sshd")?;
    if !Command::new("id").arg(SSHD_USER).output()?.status.success() {
        run_ok(Command::new("useradd").args([
            "--system",
            "--shell",
            "/bin/sh",
            "--home-dir",
            "/",
            "--no-create-home",
            // "*": no password, but not locked (sshd without PAM refuses
            // locked accounts, "!", even for key logins).
            "--password",
            "*",
            SSHD_USER,
        ]))?;
    }
    let host = env.dir.join("sshd_host_key");
    keygen(&host)?;
    std::fs::copy(
        env.key.with_extension("pub"),
        env.dir.join("authorized_keys"),
    )?;
    let port = free_port()?;
    let config = env.dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             PermitRootLogin no\nAllowUsers {SSHD_USER}\nMaxSessions 10\nMaxStartups 2000\n\
             LogLevel ERROR\n",
            host = host.display(),
            dir = env.dir.display()
        ),
    )?;
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting sshd")?;
    let pid = child.id();
    wait_for_port(port)?;
    let fingerprint = run_ok(
        Command::new("ssh-keygen")
            .arg("-lf")
            .arg(host.with_extension("pub")),
    )?
    .split_whitespace()
    .nth(1)
    .unwrap_or_default()
    .to_owned();
    Ok((
        Guard(child),
        Side {
            name: "OpenSSH sshd",
            port,
            user: SSHD_USER.into(),
            prefix: Vec::new(),
            pid,
            fingerprint,
        },
    ))
}

/// `warden dev` and its pod. Dropped, it stops the pod, then kills the
/// server: pods outlive a killed server by design (a restarted one adopts
/// them), so otherwise every run would leave one running.
struct WardenDev {
    stop_pods: Command,
    _server: Guard,
}

impl Drop for WardenDev {
    fn drop(&mut self) {
        let _ = self.stop_pods.output();
    }
}

/// `warden dev` with one running pod and the client's key registered.
fn start_warden(env: &Env) -> Result<(WardenDev, Side)> {
    let (api, ssh) = (free_port()?, free_port()?);
    let child = env
        .warden()
        .args(["dev", "--data-dir"])
        .arg(env.dir.join("data"))
        .args([
            "--listen",
            &format!("127.0.0.1:{api}"),
            "--ssh-listen",
            &format!("127.0.0.1:{ssh}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting warden dev")?;
    let pid = child.id();
    let guard = Guard(child);
    warden_bench::dev_with_service(|| env.warden(), SERVICE)?;
    wait_for_port(ssh)?;
    let spec = env.dir.join("spec.yaml");
    std::fs::write(&spec, "command: [/bin/sh, -c, 'exec sleep 1000000']\n")?;
    run_ok(
        env.warden()
            .args(["service", "apply", SERVICE, "-f"])
            .arg(&spec),
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run_ok(env.warden().args(["service", "status", SERVICE]))?.contains("Running") {
        ensure!(Instant::now() < deadline, "the pod did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    run_ok(
        env.warden()
            .args(["ssh-key", "add"])
            .arg(env.key.with_extension("pub")),
    )?;
    let status = run_ok(env.warden().args(["--output", "json", "whoami"]))?;
    ensure!(status.contains("user:root"), "{status}");
    let gateway: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new("curl")
            .args(["-s", "--cacert"])
            .arg(env.dir.join("data/tls/ca.pem"))
            .arg(format!("https://127.0.0.1:{api}/api/v1/sys/gateway")),
    )?)?;
    let fingerprint = gateway["ssh_host_key_fingerprint"]
        .as_str()
        .ok_or_else(|| anyhow!("no host key fingerprint: {gateway}"))?
        .to_owned();
    let mut stop_pods = env.warden();
    stop_pods.args(["service", "stop", SERVICE]);
    Ok((
        WardenDev {
            stop_pods,
            _server: guard,
        },
        Side {
            name: "Warden gateway",
            port: ssh,
            user: "root".into(),
            prefix: vec![SERVICE.into(), "--".into()],
            pid,
            fingerprint,
        },
    ))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Wall time of `cmd` run to completion, `n` times.
fn timed(n: usize, mut cmd: impl FnMut() -> Command) -> Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let out = cmd().stdin(Stdio::null()).output()?;
        samples.push(started.elapsed());
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    samples.sort();
    Ok(samples)
}

/// MiB/s of `cmd`'s stdout, which must be exactly `bytes` long.
fn throughput(mut cmd: Command, bytes: u64) -> Result<f64> {
    let started = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
    let mut out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = out.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let status = child.wait()?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        status.success() && got == bytes,
        "read {got} of {bytes} bytes ({status})"
    );
    Ok(bytes as f64 / (1024.0 * 1024.0) / secs)
}

/// Keystroke echo times through an interactive `cat` in a terminal.
fn echo_latency(env: &Env, side: &Side, keys: usize) -> Result<Vec<Duration>> {
    let mut child = env
        .ssh(side, true)
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    let mut stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut byte = [0u8; 1];
    let mut echo = |c: u8| -> Result<Duration> {
        let started = Instant::now();
        stdin.write_all(&[c])?;
        stdin.flush()?;
        loop {
            stdout.read_exact(&mut byte)?;
            if byte[0] == c {
                return Ok(started.elapsed());
            }
        }
    };
    // Until the terminal is up and echoing.
    echo(b'r')?;
    let mut samples = Vec::with_capacity(keys);
    for i in 0..keys {
        samples.push(echo(b'a' + (i % 26) as u8)?);
    }
    let _ = child.kill();
    let _ = child.wait();
    samples.sort();
    Ok(samples)
}

/// Proportional memory (PSS: private pages, plus shared ones divided among
/// their sharers, so N copies of one binary count once) of `pid`, and of
/// its descendants named like it (sshd's per-connection processes; Warden's
/// exec helpers), in MiB, with their number.
fn pss_mib(pid: u32) -> (f64, f64, usize) {
    let status = |p: u32| std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
    let pss = |p: u32| {
        std::fs::read_to_string(format!("/proc/{p}/smaps_rollup"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Pss:"))
            .and_then(|l| {
                l[4..]
                    .trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
            / 1024.0
    };
    let field = |s: &str, key: &str| -> Option<String> {
        s.lines()
            .find(|l| l.starts_with(key))
            .map(|l| l[key.len()..].trim().to_owned())
    };
    let root = status(pid);
    let name = field(&root, "Name:").unwrap_or_default();
    let procs: Vec<(u32, String)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .map(|p| (p, status(p)))
        .collect();
    let (mut tree, mut same, mut count) = (vec![pid], 0.0, 0);
    // Repeat to a fixpoint: a child may be listed before its parent.
    loop {
        let before = tree.len();
        for (p, s) in &procs {
            let parent = field(s, "PPid:").and_then(|v| v.parse::<u32>().ok());
            if !tree.contains(p) && parent.is_some_and(|pp| tree.contains(&pp)) {
                tree.push(*p);
                if field(s, "Name:").as_deref() == Some(name.as_str()) {
                    same += pss(*p);
                    count += 1;
                }
            }
        }
        if tree.len() == before {
            break;
        }
    }
    (pss(pid), same, count)
}

struct Client {
    fingerprint: String,
}

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.fingerprint(HashAlg::Sha256).to_string() == self.fingerprint
            }
            _ => false,
        })
    }
}

/// Opens `n` interactive sessions (ten per connection) and holds them.
async fn idle_sessions(
    env: &Env,
    side: &Side,
    n: usize,
) -> Result<Vec<russh::client::Handle<Client>>> {
    let key = Arc::new(russh::keys::load_secret_key(&env.key, None)?);
    let config = Arc::new(russh::client::Config::default());
    let login = if side.prefix.is_empty() {
        side.user.clone()
    } else {
        format!("{}:{SERVICE}", side.user)
    };
    let mut held = Vec::new();
    let mut channels = Vec::new();
    for start in (0..n).step_by(10) {
        let mut handle = russh::client::connect(
            config.clone(),
            ("127.0.0.1", side.port),
            Client {
                fingerprint: side.fingerprint.clone(),
            },
        )
        .await?;
        let auth = handle
            .authenticate_publickey(&login, PrivateKeyWithHashAlg::new(key.clone(), None))
            .await?;
        ensure!(auth.success(), "{}: authentication failed", side.name);
        for _ in start..(start + 10).min(n) {
            let channel = handle.channel_open_session().await?;
            channel
                .request_pty(true, "xterm", 80, 24, 0, 0, &[])
                .await?;
            channel.request_shell(true).await?;
            channels.push(channel);
        }
        held.push(handle);
    }
    // The shells are up once each has printed its prompt.
    for channel in &mut channels {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, channel.wait()).await {
                Ok(Some(russh::ChannelMsg::Data { .. })) => break,
                Ok(Some(_)) => continue,
                Ok(None) => bail!("{}: a session closed", side.name),
                Err(_) => bail!("{}: a shell printed nothing", side.name),
            }
        }
    }
    std::mem::forget(channels);
    Ok(held)
}

async fn run(args: Args) -> Result<()> {
    let exe = std::env::current_exe()?;
    let warden = exe
        .parent()
        .map(|d| d.join("warden"))
        .filter(|p| p.exists())
        .ok_or_else(|| {
            anyhow!("build the warden binary first: cargo build --release -p warden-cli")
        })?;
    let tmp = tempfile::Builder::new()
        .prefix("warden-gateway-bench")
        .tempdir_in("/var/tmp")?;
    let env = Env {
        cipher: args.cipher.clone(),
        dir: tmp.path().to_owned(),
        key: tmp.path().join("user_key"),
        warden,
    };
    keygen(&env.key)?;
    // sshd reads authorized_keys as the session's account: the directory
    // must be searchable (the private key stays 0600).
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let (_sshd, sshd) = start_sshd(&env)?;
    let (_warden, gateway) = start_warden(&env)?;
    let sides = [&sshd, &gateway];
    println!(
        "gateway harness: {} CPUs, client {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        Command::new("ssh")
            .arg("-V")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
            .unwrap_or_default()
    );

    println!(
        "\n1. setup: `ssh HOST true` until exit ({} each, alternating)",
        args.setups
    );
    let mut setups = [Vec::new(), Vec::new()];
    for _ in 0..args.setups {
        for (i, side) in sides.iter().enumerate() {
            setups[i].extend(timed(1, || {
                let mut c = env.ssh(side, false);
                c.arg("true");
                c
            })?);
        }
    }
    let mut medians = Vec::new();
    for (i, side) in sides.iter().enumerate() {
        setups[i].sort();
        let (p50, p90) = (percentile(&setups[i], 0.5), percentile(&setups[i], 0.9));
        println!(
            "  {:<16} median {:>7.2} ms   p90 {:>7.2} ms",
            side.name,
            ms(p50),
            ms(p90)
        );
        medians.push(p50);
    }
    println!(
        "  ratio Warden / sshd: {:.2} (target ≤ 1.2)",
        medians[1].as_secs_f64() / medians[0].as_secs_f64()
    );

    let bytes = args.mib * 1024 * 1024;
    // Zeros (the workload; NUL is left out of Warden's recordings)
    // and printable text (recorded in full: masked, sealed, stored).
    // Text at most 512 MiB: a recording stops (and its session ends) at
    // 1 GiB, JSON and line ends included.
    let text_bytes = bytes.min(512 << 20);
    for (what, size, source) in [
        ("/dev/zero", bytes, format!("head -c {bytes} /dev/zero")),
        (
            "printable text",
            text_bytes,
            format!(
                "yes 'the quick brown fox jumps over the lazy dog 0123456789' | head -c {text_bytes}"
            ),
        ),
    ] {
        println!(
            "\n2. throughput: {} MiB of {what} read through each (Warden records it)",
            size >> 20
        );
        let mut rates = Vec::new();
        for side in sides {
            let mut c = env.ssh(side, false);
            c.arg(&source);
            let rate = throughput(c, size)?;
            println!("  {:<16} {rate:>8.1} MiB/s", side.name);
            rates.push(rate);
        }
        println!(
            "  ratio Warden / sshd: {:.2} (target ≥ 1.0)",
            rates[1] / rates[0]
        );
    }

    println!(
        "\n3. keystroke echo through a terminal ({} keys)",
        args.keys
    );
    let mut p99s = Vec::new();
    for side in sides {
        let samples = echo_latency(&env, side, args.keys)?;
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        println!(
            "  {:<16} p50 {:>6.3} ms   p99 {:>6.3} ms",
            side.name,
            ms(p50),
            ms(p99)
        );
        p99s.push(p99);
    }
    println!(
        "  Warden p99 − sshd p99: {:+.3} ms (target ≤ +1 ms)",
        ms(p99s[1]) - ms(p99s[0])
    );

    println!(
        "\n4. {} idle interactive sessions (pty + shell), ten per connection",
        args.idle
    );
    for side in sides {
        let (before, _, _) = pss_mib(side.pid);
        let started = Instant::now();
        let held = idle_sessions(&env, side, args.idle).await?;
        let opened = started.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (after, helpers, n) = pss_mib(side.pid);
        println!(
            "  {:<16} main process PSS {before:>6.1} → {after:>6.1} MiB (+{:.1}); \
             {n} {} processes {helpers:.1} MiB; opened in {:.1} s",
            side.name,
            after - before,
            if side.prefix.is_empty() {
                "per-connection sshd"
            } else {
                "exec helper"
            },
            opened.as_secs_f64()
        );
        drop(held);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!(
        "  (target: Warden's process ≤ 200 MiB with the sessions held; the shells are not counted)"
    );

    println!("\n5. warden shell and kubectl exec (1.33), same pod");
    let kubeconfig = env.dir.join("kubeconfig.json");
    run_ok(
        env.warden()
            .args(["kubeconfig", "acme/shop/dev", "-f"])
            .arg(&kubeconfig),
    )?;
    let kubectl = |args: &[String]| {
        let mut c = Command::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33");
        c.env("KUBECONFIG", &kubeconfig)
            .env("KUBECACHEDIR", env.dir.join("kube-cache"))
            .env("WARDEN_CONFIG", env.dir.join("client.toml"))
            .args(["exec", "api", "--"])
            .args(args);
        c
    };
    let shell = |args: &[String]| {
        let mut c = env.warden();
        c.args(["shell", SERVICE, "--"]).args(args);
        c
    };
    let tru = vec!["true".to_owned()];
    let zero = vec![
        "head".to_owned(),
        "-c".to_owned(),
        bytes.to_string(),
        "/dev/zero".to_owned(),
    ];
    for (name, make) in [
        ("warden shell", &shell as &dyn Fn(&[String]) -> Command),
        ("kubectl exec", &kubectl),
    ] {
        let samples = timed(args.setups, || make(&tru))?;
        let rate = throughput(make(&zero), bytes)?;
        println!(
            "  {name:<16} setup median {:>7.2} ms   throughput {rate:>8.1} MiB/s",
            ms(percentile(&samples, 0.5))
        );
    }

    println!(
        "\n6. exact output and exit code, {} runs per entry point",
        args.exact
    );
    let checks: [(&str, &str); 2] = [
        ("seq 1 2000000 | tail -1; exit 3", "2000000\n"),
        (
            "head -c 67108864 /dev/zero | sha256sum | cut -c1-64; exit 3",
            "3b6a07d0d404fab4e23b6d34bc6696a6a312dd92821332385e5af7c01c421351\n",
        ),
    ];
    let sh = |script: &str| vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
    let ssh_cmd = |args: &[String]| {
        let mut c = env.ssh(&gateway, false);
        c.arg(args[2].clone());
        c
    };
    for (name, make) in [
        ("ssh", &ssh_cmd as &dyn Fn(&[String]) -> Command),
        ("warden shell", &shell),
        ("kubectl exec", &kubectl),
    ] {
        let mut wrong = 0;
        let started = Instant::now();
        for _ in 0..args.exact {
            for (script, expected) in checks {
                let out = make(&sh(script)).stdin(Stdio::null()).output()?;
                if out.stdout != expected.as_bytes() || out.status.code() != Some(3) {
                    wrong += 1;
                }
            }
        }
        println!(
            "  {name:<16} {} of {} exact ({:.1} s)",
            args.exact * checks.len() - wrong,
            args.exact * checks.len(),
            started.elapsed().as_secs_f64()
        );
        ensure!(
            wrong == 0,
            "{name}: {wrong} runs lost output or their exit code"
        );
    }
    Ok(())
}
