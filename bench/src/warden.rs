//! Starting Warden on each storage backend, seeding the benchmark scope, and
//! the read and write workloads.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use hyper::{Method, StatusCode};
use serde_json::json;
use tokio::process::Command;
use warden_api::Client;
use warden_server::tls::{ensure_dev_pki, server_config};
use warden_server::{Running, ServerOptions};
use warden_vault::unseal::InitMethod;

use crate::load::{Generator, Request};

/// The environment every scenario reads and writes.
pub const SCOPE: &str = "bench/app/prod";
/// Secrets seeded for the read scenario (`KEY_0..KEY_{N-1}`).
pub const READ_KEYS: u64 = 100;
/// Distinct keys each connection cycles through in the write scenario.
pub const WRITE_KEYS_PER_CONNECTION: u64 = 50;
/// Connections that write into one environment: 18 × 50 = 900 keys, within
/// the 1,000 keys a scope may hold.
pub const WRITERS_PER_SCOPE: usize = 18;

/// The environment connection `conn` writes to (`bench/app/w<k>`, a
/// production environment like [`SCOPE`]).
fn write_scope(conn: usize) -> String {
    format!("bench/app/w{}", conn / WRITERS_PER_SCOPE)
}
/// Length of every secret value.
pub const VALUE_LEN: usize = 64;

/// A Warden server under test and an authenticated client for it.
pub struct Target {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The server.
    pub running: Running,
    /// Client with the bootstrap owner token.
    pub client: Client,
    /// Keeps the data directory (SQLite) or the PKI (Postgres) alive.
    _dir: tempfile::TempDir,
}

fn listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Warden on SQLite, exactly as `warden dev` runs it: WAL with
/// `synchronous=FULL`, TLS with a generated CA, audit on.
pub async fn start_sqlite() -> Result<Target> {
    let dir = tempfile::tempdir().context("creating the data directory")?;
    let dev = warden_server::dev::start_dev(&dir.path().join("data"), listen(), None)
        .await
        .context("starting Warden (SQLite)")?;
    let client = std::fs::read(&dev.pki.ca_cert)
        .context("reading the dev CA")
        .and_then(|ca| Ok(Client::new(&dev.url, &ca, Some(String::clone(&dev.token)))?));
    match client {
        Ok(client) => Ok(Target {
            backend: "sqlite",
            running: dev.running,
            client,
            _dir: dir,
        }),
        Err(e) => {
            dev.running.shutdown().await;
            Err(e)
        }
    }
}

/// Warden on PostgreSQL at `database_url` (an empty database), initialized
/// and unsealed directly through the vault.
pub async fn start_postgres(database_url: &str) -> Result<Target> {
    let dir = tempfile::tempdir().context("creating the PKI directory")?;
    let pki = ensure_dev_pki(dir.path())?;
    let ca = std::fs::read(&pki.ca_cert).context("reading the dev CA")?;
    let running = warden_server::start(ServerOptions {
        listen: listen(),
        database_url: database_url.to_owned(),
        tls: server_config(&pki.cert, &pki.key)?,
        node_id: "bench".to_owned(),
        request_timeout: Duration::from_secs(30),
        max_token_ttl: warden_server::DEFAULT_MAX_TOKEN_TTL,
        adopt_unprotected_rows: false,
        agent_listen: None,
        agent_advertise: None,
        ssh_listen: None,
    })
    .await
    .context("starting Warden (PostgreSQL)")?;
    let app = running.app.clone();
    let url = format!("https://{}", running.addr);
    let prepared = async {
        app.vault
            .init(InitMethod::DevKeyFile)
            .await
            .context("initializing the vault")?;
        let token = app
            .create_owner(warden_server::FIRST_OWNER)
            .await
            .map_err(|e| anyhow!("creating a root token: {e:?}"))?;
        Ok::<_, anyhow::Error>(Client::new(&url, &ca, Some(String::clone(&token)))?)
    }
    .await;
    let client = match prepared {
        Ok(c) => c,
        Err(e) => {
            running.shutdown().await;
            return Err(e);
        }
    };
    Ok(Target {
        backend: "postgres",
        running,
        client,
        _dir: dir,
    })
}

/// Creates the organization, project and production environments (the
/// read scope, and one per [`WRITERS_PER_SCOPE`] of `connections` writers)
/// and writes the read keys; checks one of them reads back.
pub async fn seed(client: &Client, rng_seed: u64, connections: usize) -> Result<()> {
    let mut conn = client.connect().await.context("connecting to Warden")?;
    let mut scopes = vec![
        json!({"kind": "organization", "path": "bench"}),
        json!({"kind": "project", "path": "bench/app"}),
        json!({"kind": "environment", "path": SCOPE, "mode": "production"}),
    ];
    for k in 0..connections.div_ceil(WRITERS_PER_SCOPE) {
        let path = write_scope(k * WRITERS_PER_SCOPE);
        scopes.push(json!({"kind": "environment", "path": path, "mode": "production"}));
    }
    for scope in scopes {
        let (status, body) = conn
            .send(
                Method::POST,
                "/api/v1/scopes",
                Some(serde_json::to_vec(&scope)?),
            )
            .await?;
        ensure!(
            status.is_success(),
            "creating scope {}: HTTP {status}: {}",
            scope["path"],
            String::from_utf8_lossy(&body)
        );
    }
    let mut rng = Rng::new(rng_seed);
    let values: serde_json::Map<String, serde_json::Value> = (0..READ_KEYS)
        .map(|i| (format!("KEY_{i}"), rng.value().into()))
        .collect();
    let first = values
        .get("KEY_0")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let body = serde_json::to_vec(&json!({ "values": values }))?;
    let (status, answer) = conn
        .send(Method::PUT, &format!("/api/v1/secrets/{SCOPE}"), Some(body))
        .await?;
    ensure!(
        status == StatusCode::OK,
        "writing the read keys: HTTP {status}: {}",
        String::from_utf8_lossy(&answer)
    );
    let (status, answer) = conn.send(Method::GET, &read_path(0), None).await?;
    let read: serde_json::Value = serde_json::from_slice(&answer)
        .with_context(|| format!("reading KEY_0 back: HTTP {status}"))?;
    if read["value"].as_str() != Some(first.as_str()) {
        bail!("reading KEY_0 back: HTTP {status}, unexpected answer {read}");
    }
    Ok(())
}

fn read_path(i: u64) -> String {
    format!("/api/v1/secret/{SCOPE}?key=KEY_{}", i % READ_KEYS)
}

/// `GET` of the seeded keys in turn.
pub fn reads(_conn: usize) -> Generator {
    let paths: Vec<String> = (0..READ_KEYS).map(read_path).collect();
    Box::new(move |i| Request {
        method: Method::GET,
        path: paths[(i % READ_KEYS) as usize].clone(),
        body: None,
    })
}

/// `PUT` of one fresh 64-byte value to `W_<conn>_<i % 50>` in the
/// connection's environment: connections never write the same key.
pub fn writes(seed: u64) -> impl Fn(usize) -> Generator {
    move |conn| {
        let mut rng = Rng::new(seed ^ (conn as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let path = format!("/api/v1/secrets/{}", write_scope(conn));
        Box::new(move |i| {
            let key = format!("W_{conn}_{}", i % WRITE_KEYS_PER_CONNECTION);
            let body = format!(r#"{{"values":{{"{key}":"{}"}}}}"#, rng.value());
            Request {
                method: Method::PUT,
                path: path.clone(),
                body: Some(body.into_bytes()),
            }
        })
    }
}

/// xorshift64*: cheap, deterministic "random-ish" values (not for keys).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A 64-character alphanumeric value (JSON-safe, no escaping needed).
    fn value(&mut self) -> String {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        (0..VALUE_LEN)
            .map(|_| char::from(ALPHABET[(self.next() % ALPHABET.len() as u64) as usize]))
            .collect()
    }
}

/// A database created for one run and dropped afterwards, so no earlier
/// run's tables or rows are measured.
pub struct TempDatabase {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl TempDatabase {
    /// Creates `warden_bench_<pid>_<unix time>` with `psql`, connecting to
    /// `admin_url`.
    pub async fn create(admin_url: &str) -> Result<Self> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let name = format!("warden_bench_{}_{stamp}", std::process::id());
        psql(admin_url, &format!("CREATE DATABASE {name}")).await?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: with_database(admin_url, &name)?,
            name,
        })
    }

    /// Drops the database (closing any connection still open to it).
    pub async fn remove(self) -> Result<()> {
        psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await
    }
}

async fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .await
        .context("running psql (is the PostgreSQL client installed?)")?;
    ensure!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// `postgres://user@host:port/db?opts` with `db` replaced by `name`.
fn with_database(url: &str, name: &str) -> Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow!("not a postgres:// URL: {url}"))?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced() -> Result<()> {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x")?,
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x")?,
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x")?, "postgres://h:1/x");
        Ok(())
    }
}
