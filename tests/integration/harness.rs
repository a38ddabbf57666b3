//! Starting real servers for tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};
use sqlx::Connection;
use warden_api::{Client, ClientError};
use warden_server::{Running, ServerOptions};
use warden_vault::unseal::InitMethod;

/// Which database a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub fn postgres_admin_url() -> String {
    std::env::var("WARDEN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Creates a fresh PostgreSQL database and returns its URL.
pub async fn fresh_postgres_db() -> String {
    let admin = postgres_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required for this test: {e}"));
    let name = format!(
        "warden_t_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// A running in-process server with an owner token.
pub struct TestServer {
    pub running: Running,
    pub client: Client,
    pub token: String,
    /// The dev unseal key (for a second server on the same database).
    pub unseal_key: String,
    pub ca_pem: Vec<u8>,
    /// Keeps the data directory alive as long as the server.
    _dir: tempfile::TempDir,
    pub url: String,
    pub database_url: String,
}

impl TestServer {
    pub async fn start(db: Db) -> Self {
        // The data directory must be private (tempfile makes it 0755 here).
        let dir = tempfile::Builder::new()
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .unwrap();
        let database_url = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("warden.db").display()),
            Db::Postgres => fresh_postgres_db().await,
        };
        let running = start_on(dir.path(), &database_url).await;
        let (unseal_key, token) = init_with_owner(&running).await;
        let ca_pem = std::fs::read(dir.path().join("ca.pem")).unwrap();
        let url = format!("https://{}", running.addr);
        let client = Client::new(&url, &ca_pem, Some(token.clone())).unwrap();
        Self {
            running,
            client,
            token,
            unseal_key,
            ca_pem,
            _dir: dir,
            url,
            database_url,
        }
    }

    /// The CA certificate the server's certificate chains to.
    pub fn ca_path(&self) -> PathBuf {
        self._dir.path().join("ca.pem")
    }

    /// A client with another token (or none).
    pub fn client_with(&self, token: Option<&str>) -> Client {
        Client::new(&self.url, &self.ca_pem, token.map(str::to_owned)).unwrap()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        self.client.call(method, path, body.as_ref()).await
    }

    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.call(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Creates org/project/env(mode)/service scopes along `path`.
    pub async fn scopes(&self, service_path: &str, mode: &str) {
        let parts: Vec<&str> = service_path.split('/').collect();
        let kinds = ["organization", "project", "environment", "service"];
        for depth in 1..=parts.len() {
            let path = parts[..depth].join("/");
            let mut body = json!({"kind": kinds[depth - 1], "path": path});
            if depth == 3 {
                body["mode"] = json!(mode);
            }
            match self.call(Method::POST, "/api/v1/scopes", Some(body)).await {
                Ok(_) => {}
                Err(ClientError::Api { status: 409, .. }) => {}
                Err(e) => panic!("creating {path}: {e}"),
            }
        }
    }

    pub async fn put(&self, scope: &str, values: Value) -> Value {
        self.ok(
            Method::PUT,
            &format!("/api/v1/secrets/{scope}"),
            Some(json!({"values": values})),
        )
        .await
    }

    pub async fn get(&self, scope: &str, key: &str) -> Result<String, ClientError> {
        let v = self
            .call(
                Method::GET,
                &format!("/api/v1/secret/{scope}?key={key}"),
                None,
            )
            .await?;
        Ok(v["value"].as_str().unwrap().to_owned())
    }

    pub async fn stop(self) {
        self.running.shutdown().await;
    }

    /// Stops the server and starts a new one on the same data directory
    /// and database, unsealed (it reads everything from the database
    /// afresh; the address changes).
    pub async fn restart(mut self) -> Self {
        self.running.shutdown().await;
        self.running = start_on(self._dir.path(), &self.database_url).await;
        let key = warden_vault::unseal::decode_key(&self.unseal_key).unwrap();
        self.running.app.vault.unseal_with_key(&key).await.unwrap();
        self.url = format!("https://{}", self.running.addr);
        self.client = Client::new(&self.url, &self.ca_pem, Some(self.token.clone())).unwrap();
        self
    }
}

/// Starts a sealed server over `database_url` with a dev PKI in `dir`.
pub async fn start_on(dir: &Path, database_url: &str) -> Running {
    let pki = warden_server::tls::ensure_dev_pki(dir).unwrap();
    warden_server::start(ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.to_owned(),
        tls: warden_server::tls::server_config(&pki.cert, &pki.key).unwrap(),
        node_id: "test".into(),
        request_timeout: Duration::from_secs(30),
        max_token_ttl: warden_server::DEFAULT_MAX_TOKEN_TTL,
        adopt_unprotected_rows: false,
        agent_listen: None,
        agent_advertise: None,
        ssh_listen: None,
    })
    .await
    .unwrap()
}

/// The `warden` binary in the same target directory (`scripts/test.sh`
/// builds it before running the tests).
pub fn warden_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("warden");
    assert!(
        bin.exists(),
        "{} not found: run ./scripts/test.sh, or `cargo build -p warden-cli` before `cargo test`",
        bin.display()
    );
    bin
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until a `warden dev` in `data_dir` on `port` answers, returning a
/// client with its token.
pub async fn wait_for_dev(data_dir: &Path, port: u16) -> Client {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let (Ok(ca), Ok(token)) = (
            std::fs::read(data_dir.join("tls/ca.pem")),
            std::fs::read_to_string(data_dir.join("dev-token")),
        ) {
            let client = Client::new(
                &format!("https://127.0.0.1:{port}"),
                &ca,
                Some(token.trim().to_owned()),
            )
            .unwrap();
            if let Ok(v) = client
                .call::<Value>(Method::GET, "/api/v1/sys/status", None::<&Value>)
                .await
                && v["sealed"] == json!(false)
            {
                return client;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "warden dev did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `f` for both backends as two tests.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::harness::TestServer::start($crate::harness::Db::Sqlite).await)
                    .await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(
                    $crate::harness::TestServer::start($crate::harness::Db::Postgres).await,
                )
                .await
            }
        }
    };
    // For tests that start their servers themselves: they get the backend.
    (db $name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::harness::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::harness::Db::Postgres).await
            }
        }
    };
}

/// A raw TLS stream to a test server (for requests the client cannot make:
/// partial bodies, wrong content types, garbage).
pub async fn tls_connect(s: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&s.ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(s.running.addr)
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// Initializes a new server's vault with a dev key file and creates the
/// first owner: the unseal key and the owner's token.
pub async fn init_with_owner(running: &Running) -> (String, String) {
    let key = running
        .app
        .vault
        .init(InitMethod::DevKeyFile)
        .await
        .unwrap()
        .dev_key
        .unwrap()
        .to_string();
    let token = running
        .app
        .create_owner(warden_server::FIRST_OWNER)
        .await
        .unwrap()
        .to_string();
    (key, token)
}

/// Starts the real `warden dev` binary on `data_dir` and `port`, its
/// client configuration kept inside `home`.
pub fn spawn_dev(
    data_dir: &Path,
    home: &Path,
    port: u16,
    log: Option<&str>,
) -> std::process::Child {
    spawn_dev_with_env(data_dir, home, port, log, &[])
}

/// [`spawn_dev`] with extra environment variables.
pub fn spawn_dev_with_env(
    data_dir: &Path,
    home: &Path,
    port: u16,
    log: Option<&str>,
    env: &[(String, String)],
) -> std::process::Child {
    let mut cmd = std::process::Command::new(warden_bin());
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.args([
        "dev",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        // Tests run side by side: SSH on a free port (see
        // `GET /api/v1/sys/gateway`), never the default 2222.
        "--ssh-listen",
        "127.0.0.1:0",
    ])
    .env("WARDEN_CONFIG", home.join("client.toml"));
    match log {
        Some(level) => cmd
            .env("RUST_LOG", level)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
        None => cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    };
    cmd.spawn().unwrap()
}

/// Creates `org` and `org/project` through the API (for subprocess tests
/// that have only a client).
pub async fn create_project(client: &Client, project: &str) {
    let (org, _) = project.split_once('/').unwrap();
    for (kind, path) in [("organization", org), ("project", project)] {
        client
            .call::<Value>(
                Method::POST,
                "/api/v1/scopes",
                Some(&json!({"kind": kind, "path": path})),
            )
            .await
            .unwrap();
    }
}

/// A real HMAC-SHA256 row key for tests that drive a [`warden_store::Store`]
/// directly, without a vault (the vault derives its key from the root key).
struct TestRowKey(ring::hmac::Key);

impl warden_store::RowKey for TestRowKey {
    fn tag(&self, message: &[u8]) -> Vec<u8> {
        ring::hmac::sign(&self.0, message).as_ref().to_vec()
    }
    fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        ring::hmac::verify(&self.0, message, tag).is_ok()
    }
}

/// Gives `store` a row key, as an unsealed vault would.
pub fn with_row_key(store: &warden_store::Store) {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7; 32]);
    store.set_row_key(Some(std::sync::Arc::new(TestRowKey(key))));
}

/// A second server on `s`'s PostgreSQL database, unsealed with the same
/// key, with its own data directory (kept alive by the returned guard) and
/// a client for `token` on it.
pub async fn second_replica(
    s: &TestServer,
    token: Option<&str>,
) -> (Running, Client, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .unwrap();
    let b = start_on(dir.path(), &s.database_url).await;
    let key = warden_vault::unseal::decode_key(&s.unseal_key).unwrap();
    b.app.vault.unseal_with_key(&key).await.unwrap();
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let client = Client::new(
        &format!("https://{}", b.addr),
        &ca,
        token.map(str::to_owned),
    )
    .unwrap();
    (b, client, dir)
}
