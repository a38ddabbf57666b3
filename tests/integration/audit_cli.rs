//! `warden audit` through the real CLI binary, on SQLite and PostgreSQL:
//! tail (and follow), query, checkpoint, proof, key, live verification,
//! export bundles (their CSV and OCSF views checked with Python), offline
//! verification with an empty environment after the server is gone, a
//! tampered bundle named at its bad entry, and what a viewer may do.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::harness::{TestServer, warden_bin};

/// What a CLI run gave.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn finish(out: std::process::Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The CLI against the test server, with `token`.
fn client_cmd(s: &TestServer, token: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(warden_bin());
    cmd.args(["--server", &s.url, "--ca-cert"])
        .arg(s.ca_path())
        .args(args)
        .env("WARDEN_TOKEN", token)
        .env("WARDEN_CONFIG", s.ca_path().with_file_name("client.toml"))
        .env_remove("WARDEN_ADDR")
        .env_remove("WARDEN_CA_CERT");
    cmd
}

fn warden(s: &TestServer, token: &str, args: &[&str]) -> Run {
    finish(client_cmd(s, token, args).output().unwrap())
}

/// The CLI with nothing but PATH, and a client configuration that does not
/// exist: what an auditor's offline machine has.
fn offline(args: &[&str]) -> Run {
    finish(
        Command::new(warden_bin())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("WARDEN_CONFIG", "/nonexistent/warden/config.toml")
            .args(args)
            .output()
            .unwrap(),
    )
}

/// Runs a Python script with arguments; returns its trimmed stdout.
fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 is needed by this test");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const SHA256: &str =
    "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())";

/// `entries.csv` parses with Python's csv module: the documented header,
/// one row per entry, each row the entry's.
const CHECK_CSV: &str = r#"
import csv, io, json, sys, tarfile
t = tarfile.open(sys.argv[1])
entries = [json.loads(l) for l in t.extractfile('entries.jsonl').read().decode().splitlines()]
rows = list(csv.reader(io.TextIOWrapper(t.extractfile('entries.csv'), encoding='utf-8', newline='')))
header = ['seq', 'time_utc', 'log', 'node', 'op_id', 'phase', 'principal', 'method',
          'source_ip', 'action', 'target', 'effect', 'rule', 'status']
assert rows[0] == header, rows[0]
assert len(rows) - 1 == len(entries), (len(rows) - 1, len(entries))
def target_text(t):
    # The text form of a typed target, written independently of warden-tlog.
    if isinstance(t, str):
        return t
    k = t['kind']
    if k == 'secret':
        return t['scope'] + '#' + t['name'] + ('@v%d' % t['version'] if 'version' in t else '')
    if k == 'secrets':
        return t['scope'] + '#' + ','.join(t['names'])
    if k == 'principal':
        return t['principal']
    if k == 'binding':
        return '%s#%s@%s' % (t['scope'], t['role'], t['principal'])
    if k == 'log':
        return t['name'] + ('@%d' % t['version'] if 'version' in t else '')
    if k == 'credential':
        return 'credential:' + t['name']
    if 'scope' in t:
        return t['scope'] + ('#%s:%s' % (k, t['name']) if 'name' in t else '')
    return k
for row, e in zip(rows[1:], entries):
    assert len(row) == len(header), row
    assert row[0] == str(e['seq']), (row, e)
    assert row[2] == e['log'] and row[5] == e['phase'], (row, e)
    assert row[6] == e['actor']['principal'], (row, e)
    assert row[9] == e['action'] and row[10] == target_text(e['target']), (row, e)
    assert row[1].endswith('Z') and row[1][10] == 'T', row
print(len(entries))
"#;

/// Every OCSF event carries the required attributes.
const CHECK_OCSF: &str = r#"
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
n = len(t.extractfile('entries.jsonl').read().splitlines())
events = json.load(t.extractfile('entries.ocsf.json'))
assert isinstance(events, list) and len(events) == n, (len(events), n)
for ev in events:
    for k in ('class_uid', 'category_uid', 'activity_id', 'type_uid', 'severity_id', 'time'):
        assert isinstance(ev.get(k), int), (k, ev)
    assert ev['type_uid'] == ev['class_uid'] * 100 + ev['activity_id'], ev
    assert ev['metadata']['version'] == '1.3.0', ev
    assert ev['metadata']['product']['name'], ev
    assert ev['metadata']['product']['vendor_name'] == 'Warden', ev
print(n)
"#;

/// Copies a bundle with one byte of `entries.jsonl` changed (inside the
/// first `secret.read` action); with `rehash`, the manifest's hash of the
/// member is updated so the damage is left to the Merkle checks. Prints
/// the seq of the altered entry.
const CORRUPT: &str = r#"
import hashlib, io, json, sys, tarfile
src, dst, mode = sys.argv[1], sys.argv[2], sys.argv[3]
t = tarfile.open(src)
members = [(m.name, t.extractfile(m).read()) for m in t.getmembers()]
files = dict(members)
entries = files['entries.jsonl']
i = entries.index(b'"action":"secret.read"') + len(b'"action":"secret.rea')
entries = entries[:i] + b'X' + entries[i + 1:]
line = entries[entries.rfind(b'\n', 0, i) + 1:entries.index(b'\n', i)]
seq = json.loads(line)['seq']
files['entries.jsonl'] = entries
if mode == 'rehash':
    m = json.loads(files['manifest.json'])
    m['files']['entries.jsonl'] = hashlib.sha256(entries).hexdigest()
    files['manifest.json'] = (json.dumps(m, indent=2) + '\n').encode()
out = tarfile.open(dst, 'w', format=tarfile.USTAR_FORMAT)
for name, _ in members:
    data = files[name]
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    out.addfile(info, io.BytesIO(data))
out.close()
print(seq)
"#;

fn lines(r: &Run) -> Vec<&str> {
    r.stdout.lines().filter(|l| !l.trim().is_empty()).collect()
}

async fn audit_through_the_cli(s: TestServer) {
    s.scopes("acme/shop/dev/api", "development").await;
    s.put("acme/shop/dev", json!({"K": "v1", "L": "v2"})).await;
    for key in ["K", "L", "K"] {
        s.get("acme/shop/dev", key).await.unwrap();
    }
    let owner = s.token.clone();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    // tail: the newest entries, one line each.
    let r = warden(&s, &owner, &["audit", "tail", "acme"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("secret.read"), "{r}");
    assert!(r.stdout.contains("acme/shop/dev#K"), "{r}");
    assert!((5..=20).contains(&lines(&r).len()), "{r}");
    let r = warden(
        &s,
        &owner,
        &["audit", "tail", "acme", "-n", "3", "--output", "json"],
    );
    assert_eq!(r.code, 0, "{r}");
    let tail: Vec<Value> = lines(&r)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tail.len(), 3, "{r}");
    let seqs: Vec<u64> = tail.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let r = warden(&s, &owner, &["audit", "tail", "system", "-n", "2"]);
    assert_eq!((r.code, lines(&r).len()), (0, 2), "{r}");

    // query: filters are the server's, paging is the client's.
    let r = warden(
        &s,
        &owner,
        &["audit", "query", "acme", "--action", "secret.read"],
    );
    assert_eq!(r.code, 0, "{r}");
    assert!(lines(&r).len() >= 3, "{r}");
    assert!(lines(&r).iter().all(|l| l.contains("secret.read")), "{r}");
    let r = warden(
        &s,
        &owner,
        &[
            "audit",
            "query",
            "acme",
            "--action",
            "secret.read",
            "--target",
            "acme/shop/dev#L",
            "--actor",
            "user:root",
            "--since",
            "1h",
            "--output",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{r}");
    let q: Value = serde_json::from_str(&r.stdout).unwrap();
    let found = q["entries"].as_array().unwrap();
    assert!(!found.is_empty(), "{r}");
    assert!(
        found.iter().all(|e| e["action"] == "secret.read"
            && e["target"]["scope"] == "acme/shop/dev"
            && e["target"]["name"] == "L"),
        "{r}"
    );
    assert_eq!(q["complete"], true, "{r}");
    let r = warden(
        &s,
        &owner,
        &["audit", "query", "acme", "--limit", "2", "--output", "json"],
    );
    let q: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(q["entries"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(
        (q["complete"].clone(), q["next_seq"].clone()),
        (json!(false), json!(2))
    );
    let r = warden(
        &s,
        &owner,
        &["audit", "query", "acme", "--until", "2000-01-01T00:00:00Z"],
    );
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("no matching entries"), "{r}");
    for bad in ["yesterday", "2026-02-30T00:00:00Z", "-5m"] {
        let r = warden(&s, &owner, &["audit", "query", "acme", "--since", bad]);
        assert_eq!(r.code, 2, "{bad}: {r}");
    }
    assert_eq!(warden(&s, &owner, &["audit", "tail", "Not_A_Log"]).code, 2);

    // checkpoint: the signed note, verbatim.
    let r = warden(&s, &owner, &["audit", "checkpoint", "acme"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.starts_with("warden/audit/acme\n"), "{r}");
    assert!(r.stdout.contains("\n\n\u{2014} warden-audit "), "{r}");
    let r = warden(
        &s,
        &owner,
        &["audit", "checkpoint", "acme", "--output", "json"],
    );
    let cp: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(cp["size"].as_u64().unwrap() > 5, "{r}");

    // key: public, no token needed.
    let r = warden(&s, "not-a-token", &["audit", "key", "--output", "json"]);
    assert_eq!(r.code, 0, "{r}");
    let key: Value = serde_json::from_str(&r.stdout).unwrap();
    let fingerprint = key["fingerprint"].as_str().unwrap().to_owned();
    let vkey = key["key"].as_str().unwrap().to_owned();
    assert_eq!(fingerprint.len(), 64);
    assert_eq!(vkey, cp["key"].as_str().unwrap());
    let r = warden(&s, "not-a-token", &["audit", "key"]);
    assert!(
        r.stdout.contains(&format!("fingerprint: {fingerprint}")),
        "{r}"
    );

    // proof: fetched and checked locally.
    let r = warden(&s, &owner, &["audit", "proof", "acme", "--seq", "0"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.starts_with("OK: entry 0 of acme"), "{r}");
    let last = cp["size"].as_u64().unwrap() - 1;
    let r = warden(
        &s,
        &owner,
        &[
            "audit",
            "proof",
            "acme",
            "--seq",
            &last.to_string(),
            "--fingerprint",
            &fingerprint,
            "--output",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{r}");
    let p: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (p["verified"].clone(), p["pinned"].clone()),
        (json!(true), json!(true))
    );
    let other = "0".repeat(64);
    let r = warden(
        &s,
        &owner,
        &[
            "audit",
            "proof",
            "acme",
            "--seq",
            "0",
            "--fingerprint",
            &other,
        ],
    );
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("NOT VERIFIED"), "{r}");
    let r = warden(&s, &owner, &["audit", "proof", "acme", "--seq", "99999999"]);
    assert_eq!(r.code, 3, "{r}");

    // live verification.
    let r = warden(&s, &owner, &["audit", "verify", "--live", "acme"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.starts_with("VERIFIED: log acme, entries 0.."),
        "{r}"
    );

    // export: written whole or not at all, never over a file.
    let csv_bundle = path("acme-csv.tar");
    let r = warden(
        &s,
        &owner,
        &[
            "audit",
            "export",
            "acme",
            "--format",
            "csv",
            "--out",
            &csv_bundle,
        ],
    );
    assert_eq!(r.code, 0, "{r}");
    let sha = python(SHA256, &[&csv_bundle]);
    assert!(r.stdout.contains(&format!("sha256:  {sha}")), "{r}");
    assert!(r.stdout.contains(&csv_bundle), "{r}");
    assert!(r.stdout.contains("entries: 0.."), "{r}");
    assert!(!Path::new(&format!("{csv_bundle}.partial")).exists());
    let r = warden(
        &s,
        &owner,
        &[
            "audit",
            "export",
            "acme",
            "--format",
            "csv",
            "--out",
            &csv_bundle,
        ],
    );
    assert_eq!(r.code, 6, "{r}");
    assert_eq!(python(SHA256, &[&csv_bundle]), sha);
    let r = warden(
        &s,
        &owner,
        &[
            "audit",
            "export",
            "acme",
            "--format",
            "csv",
            "--out",
            &csv_bundle,
            "--force",
            "--output",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{r}");
    let exported: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        exported["sha256"].as_str().unwrap(),
        python(SHA256, &[&csv_bundle])
    );
    let entries = exported["entries"].as_u64().unwrap();
    assert_eq!(python(CHECK_CSV, &[&csv_bundle]), entries.to_string());
    let ocsf_bundle = path("acme-ocsf.tar");
    let r = warden(
        &s,
        &owner,
        &[
            "audit",
            "export",
            "acme",
            "--format",
            "ocsf",
            "--since",
            "1h",
            "--out",
            &ocsf_bundle,
        ],
    );
    assert_eq!(r.code, 0, "{r}");
    assert!(python(CHECK_OCSF, &[&ocsf_bundle]).parse::<u64>().unwrap() > 5);

    // A viewer reads the log but may not export it.
    let (viewer, _) = s.account("auditor").await;
    s.grant("sa:auditor", "viewer", "acme").await;
    let r = warden(&s, &viewer, &["audit", "tail", "acme"]);
    assert_eq!(r.code, 0, "{r}");
    let r = warden(
        &s,
        &viewer,
        &["audit", "export", "acme", "--out", &path("viewer.tar")],
    );
    assert_eq!(r.code, 4, "{r}");
    assert!(!dir.path().join("viewer.tar").exists());
    assert!(!dir.path().join("viewer.tar.partial").exists());

    // tail -f prints new entries (not its own polls) until interrupted.
    let mut child = client_cmd(
        &s,
        &owner,
        &["audit", "tail", "acme", "-f", "-n", "0", "--output", "json"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.get("acme/shop/dev", "L").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut followed: Vec<Value> = Vec::new();
    while !followed
        .iter()
        .any(|e| e["action"] == "secret.read" && e["phase"] == "outcome")
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("tail -f printed no read; got {followed:?}"));
        followed.push(serde_json::from_str(&line).unwrap());
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    followed.extend(rx.try_iter().map(|l| serde_json::from_str(&l).unwrap()));
    assert!(
        followed.iter().all(|e| e["action"] != "audit.entries"),
        "{followed:?}"
    );
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "tail -f on Ctrl-C: {status:?}");
    reader.join().unwrap();

    // From here on there is no server: verification is offline.
    s.stop().await;
    let r = offline(&[
        "audit",
        "verify",
        &csv_bundle,
        "--fingerprint",
        &fingerprint,
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout
            .starts_with(&format!("VERIFIED: log acme, entries 0..{entries}, ")),
        "{r}"
    );
    assert!(
        r.stdout.trim_end().ends_with(&format!("key {fingerprint}")),
        "{r}"
    );
    let transcript = path("transcript.json");
    let r = offline(&[
        "audit",
        "verify",
        &ocsf_bundle,
        "--key",
        &vkey,
        "--output",
        "json",
        "--transcript",
        &transcript,
    ]);
    assert_eq!(r.code, 0, "{r}");
    let t: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(t["verdict"], "ok");
    assert_eq!(t["key_fingerprint"].as_str(), Some(fingerprint.as_str()));
    let saved: Value = serde_json::from_slice(&std::fs::read(&transcript).unwrap()).unwrap();
    assert_eq!(saved, t);
    // The trusted key must come from outside the bundle.
    let r = offline(&["audit", "verify", &csv_bundle]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("warden audit key"), "{r}");
    let r = offline(&["audit", "verify", &csv_bundle, "--fingerprint", &other]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stdout.starts_with("FAILED: "), "{r}");

    // One byte changed in an entry, the manifest updated to match: the
    // Merkle checks name the entry.
    let tampered = path("tampered.tar");
    let seq = python(CORRUPT, &[&csv_bundle, &tampered, "rehash"]);
    let r = offline(&["audit", "verify", &tampered, "--fingerprint", &fingerprint]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stdout.starts_with(&format!("FAILED at seq {seq}: ")),
        "{r}"
    );
    assert!(r.stderr.contains(&format!("seq {seq}")), "{r}");
    // Without updating the manifest, the member's hash catches it first.
    let damaged = path("damaged.tar");
    python(CORRUPT, &[&csv_bundle, &damaged, "raw"]);
    let r = offline(&["audit", "verify", &damaged, "--fingerprint", &fingerprint]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stdout.starts_with("FAILED: ") && r.stdout.contains("entries.jsonl"),
        "{r}"
    );
}
both_backends!(audit_through_the_cli);
