//! Kubernetes workload identity (issue 12): a cluster's service-account
//! issuer, service accounts bound to services, and the exchange of a pod's
//! projected token for a workload token; then the real `warden-injector`
//! doing that exchange from `$WARDEN_K8S_TOKEN_FILE` and fetching secrets.
//!
//! Tokens have the exact claim layout a kube-apiserver issues, signed
//! (RS256) by fixed test RSA keys (`identity/testdata/k8s-issuer-*.pem`,
//! made with `openssl genrsa 2048`: ring cannot make RSA keys).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::Method;
use ring::signature::{self, RsaKeyPair};
use serde_json::{Value, json};
use warden_api::ClientError;

use crate::harness::{Db, TestServer, warden_bin};

const KEY_A: &str = include_str!("../../identity/testdata/k8s-issuer-a.pem");
const KEY_B: &str = include_str!("../../identity/testdata/k8s-issuer-b.pem");
const ISSUER_A: &str = "https://kubernetes.default.svc.cluster.local";
const ISSUER_B: &str = "https://oidc.kube-b.example";
const SERVICE: &str = "acme/shop/prod/api";
const CANARY: &str = "sa-exchange-canary-51c2";

/// A kube-apiserver's service-account signing key.
struct ApiServer {
    key: RsaKeyPair,
    kid: String,
    issuer: &'static str,
}

impl ApiServer {
    fn new(pem: &str, kid: &str, issuer: &'static str) -> Self {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        Self {
            key: RsaKeyPair::from_pkcs8(&der).unwrap(),
            kid: kid.to_owned(),
            issuer,
        }
    }

    /// `/openid/v1/jwks` as the API server answers it.
    fn jwks(&self) -> Value {
        let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(self.key.public());
        json!({"keys": [{"use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256",
                         "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e)}]})
    }

    /// A projected token of pod `pod` of service account `ns/name`, valid
    /// for `ttl` seconds from now, for `audience`.
    fn token(&self, ns: &str, name: &str, pod: &str, audience: &str, ttl: u64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.sign(&json!({
            "aud": [audience],
            "exp": now + ttl,
            "iat": now,
            "iss": self.issuer,
            "jti": "2c4f3a52-8a65-4d4e-a3c9-0a8b1b7e9f10",
            "kubernetes.io": {
                "namespace": ns,
                "node": {"name": "node-1", "uid": "58456cb0-dd00-45ed-b797-5578fdceaced"},
                "pod": {"name": pod, "uid": pod_uid(pod)},
                "serviceaccount": {"name": name, "uid": "a087d5a0-e1dd-43ec-93ac-f13d89cd13af"},
                "warnafter": now + ttl.saturating_sub(600)
            },
            "nbf": now,
            "sub": format!("system:serviceaccount:{ns}:{name}")
        }))
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "kid": self.kid});
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        let message = format!("{}.{}", b64(&header), b64(claims));
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

fn api_error(r: Result<Value, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api {
            status, message, ..
        }) => (status, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A request answered without a body: its status.
async fn status_of(s: &TestServer, method: Method, path: &str, body: Value) -> u16 {
    let mut conn = s.client.connect().await.unwrap();
    let (status, _) = conn
        .send(method, path, Some(serde_json::to_vec(&body).unwrap()))
        .await
        .unwrap();
    status.as_u16()
}

async fn place(s: &TestServer, env: &str, cluster: &str) {
    let path = format!("/api/v1/placements/{env}");
    assert_eq!(
        status_of(s, Method::PUT, &path, json!({"cluster": cluster})).await,
        204
    );
}

/// Creates cluster `name` (a join token makes it) without an agent.
async fn cluster(s: &TestServer, name: &str) {
    s.ok(
        Method::POST,
        &format!("/api/v1/clusters/{name}/join-tokens"),
        Some(json!({})),
    )
    .await;
}

/// A uid for pod `name` (one per name, as each pod has its own).
fn pod_uid(name: &str) -> String {
    let h = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{h:08x}-b3f4-47c0-9cd5-ab018fb64f33")
}

async fn exchange(
    s: &TestServer,
    cluster: &str,
    service: &str,
    token: &str,
) -> Result<Value, ClientError> {
    s.client_with(None)
        .call(
            Method::POST,
            "/api/v1/workload-token-exchange",
            Some(&json!({"cluster": cluster, "service": service, "token": token})),
        )
        .await
}

async fn bind(s: &TestServer, service: &str, cluster: &str, ns: &str, name: &str) -> Value {
    s.ok(
        Method::PUT,
        &format!("/api/v1/sa-bindings/{service}"),
        Some(json!({"cluster": cluster, "namespace": ns, "service_account": name})),
    )
    .await
}

/// Two clusters with their issuers; `acme/shop/prod` placed on `kube-a`,
/// `acme/shop/dev` left on `local`; service account `shop/api` of `kube-a`
/// bound to `acme/shop/prod/api`.
async fn setup(s: &TestServer) -> (ApiServer, ApiServer) {
    s.scopes(SERVICE, "production").await;
    s.scopes("acme/shop/dev/api", "development").await;
    s.put(SERVICE, json!({"DB_URL": CANARY})).await;
    for c in ["kube-a", "kube-b"] {
        cluster(s, c).await;
    }
    place(s, "acme/shop/prod", "kube-a").await;
    let a = ApiServer::new(KEY_A, "kube-a-2026", ISSUER_A);
    let b = ApiServer::new(KEY_B, "kube-b-2026", ISSUER_B);
    for (name, api) in [("kube-a", &a), ("kube-b", &b)] {
        s.ok(
            Method::PUT,
            &format!("/api/v1/clusters/{name}/issuer"),
            Some(json!({"issuer": api.issuer, "jwks": api.jwks()})),
        )
        .await;
    }
    bind(s, SERVICE, "kube-a", "shop", "api").await;
    (a, b)
}

async fn exchange_and_refusals(s: TestServer) {
    let (a, b) = setup(&s).await;

    let shown = s
        .ok(Method::GET, "/api/v1/clusters/kube-a/issuer", None)
        .await;
    assert_eq!(shown["issuer"], ISSUER_A);
    assert_eq!(shown["audience"], "warden");
    assert_eq!(
        shown["keys"],
        json!([{"kid": "kube-a-2026", "algorithm": "RS256", "bits": 2048}])
    );

    // A pod of shop/api on kube-a gets a workload token for the service,
    // no longer-lived than its own token (10 minutes here), and reads.
    let sa_token = a.token("shop", "api", "api-7d9f8-x2x4q", "warden", 600);
    let sa_exp = serde_json::from_slice::<Value>(
        &URL_SAFE_NO_PAD
            .decode(sa_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()["exp"]
        .as_u64()
        .unwrap();
    let got = exchange(&s, "kube-a", SERVICE, &sa_token).await.unwrap();
    assert_eq!(got["principal"], format!("workload:{SERVICE}"));
    let expires = got["expires_at"].as_u64().unwrap();
    assert!(
        expires <= sa_exp && expires + 30 >= sa_exp,
        "{expires} vs {sa_exp}"
    );
    let workload = s.client_with(got["token"].as_str());
    let resolved: Value = workload
        .call(
            Method::GET,
            &format!("/api/v1/resolve/{SERVICE}"),
            None::<&Value>,
        )
        .await
        .unwrap();
    assert_eq!(resolved["values"]["DB_URL"], CANARY, "{resolved}");
    // An hour at most, whatever the token's own lifetime (Kubernetes
    // extends projected tokens to a year by default).
    let long = a.token("shop", "api", "api-7d9f8-x2x4q", "warden", 365 * 86_400);
    let got = exchange(&s, "kube-a", SERVICE, &long).await.unwrap();
    let now = warden_store::now_ms() as u64 / 1000;
    assert!(got["expires_at"].as_u64().unwrap() <= now + 3600);

    // Refusals, each with its reason.
    let refused = |status: u16, needle: &'static str| {
        move |r: Result<Value, ClientError>| {
            let (got, message) = api_error(r);
            assert_eq!(got, status, "{message}");
            assert!(message.contains(needle), "{needle:?} not in {message:?}");
        }
    };
    // An unbound service account of the right cluster.
    let other = a.token("shop", "worker", "worker-1", "warden", 600);
    refused(403, "is not bound to")(exchange(&s, "kube-a", SERVICE, &other).await);
    // Another organization's service, for a bound account.
    s.scopes("globex/shop/prod/api", "production").await;
    place(&s, "globex/shop/prod", "kube-a").await;
    refused(403, "is not bound to")(
        exchange(&s, "kube-a", "globex/shop/prod/api", &sa_token).await,
    );
    // A binding whose service's environment runs elsewhere (acme/shop/dev
    // is on `local`).
    bind(&s, "acme/shop/dev/api", "kube-a", "shop", "api").await;
    refused(403, "does not run on cluster kube-a")(
        exchange(&s, "kube-a", "acme/shop/dev/api", &sa_token).await,
    );
    // kube-b's tokens: not verified as kube-a's (unknown key, and a forged
    // kid), and on kube-b, even bound, not for a service placed on kube-a.
    let from_b = b.token("shop", "api", "api-b-1", "warden", 600);
    refused(401, "not in the cluster's JWKS")(exchange(&s, "kube-a", SERVICE, &from_b).await);
    let forged = ApiServer::new(KEY_B, "kube-a-2026", ISSUER_A).token(
        "shop",
        "api",
        "api-7d9f8-x2x4q",
        "warden",
        600,
    );
    refused(401, "signature is invalid")(exchange(&s, "kube-a", SERVICE, &forged).await);
    refused(401, "not in the cluster's JWKS")(exchange(&s, "kube-b", SERVICE, &sa_token).await);
    bind(&s, SERVICE, "kube-b", "shop", "api").await;
    refused(403, "does not run on cluster kube-b")(exchange(&s, "kube-b", SERVICE, &from_b).await);
    // Wrong audience, expired, a cluster with no issuer.
    let vault_aud = a.token("shop", "api", "api-7d9f8-x2x4q", "vault", 600);
    refused(401, "not meant for Warden")(exchange(&s, "kube-a", SERVICE, &vault_aud).await);
    let mut stale = serde_json::from_slice::<Value>(
        &URL_SAFE_NO_PAD
            .decode(sa_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    stale["exp"] = json!(sa_exp - 3600);
    stale["iat"] = json!(sa_exp - 7200);
    stale["nbf"] = json!(sa_exp - 7200);
    refused(401, "expired")(exchange(&s, "kube-a", SERVICE, &a.sign(&stale)).await);
    cluster(&s, "kube-c").await;
    refused(401, "no service-account issuer")(exchange(&s, "kube-c", SERVICE, &sa_token).await);
    // Malformed input at the edge.
    refused(400, "")(exchange(&s, "Kube A", SERVICE, &sa_token).await);
    refused(400, "")(exchange(&s, "kube-a", "acme/shop/prod", &sa_token).await);

    // The binding revoked: the next exchange is refused.
    let listed = s
        .ok(Method::GET, "/api/v1/sa-bindings?scope=acme", None)
        .await;
    assert_eq!(listed["bindings"].as_array().unwrap().len(), 3, "{listed}");
    let revoke = format!("/api/v1/sa-binding-revoke/{SERVICE}");
    let body = json!({"cluster": "kube-a", "namespace": "shop", "service_account": "api"});
    assert_eq!(
        status_of(&s, Method::POST, &revoke, body.clone()).await,
        204
    );
    refused(403, "is not bound to")(exchange(&s, "kube-a", SERVICE, &sa_token).await);
    assert_eq!(status_of(&s, Method::POST, &revoke, body).await, 404);

    // Audited with the account and the pod, allowed and denied; the token
    // itself is nowhere in the logs.
    let system = s
        .ok(Method::GET, "/api/v1/audit/system/entries?limit=1000", None)
        .await
        .to_string();
    let acme = s
        .ok(Method::GET, "/api/v1/audit/acme/entries?limit=1000", None)
        .await
        .to_string();
    let entries: Vec<Value> = serde_json::from_str::<Value>(&system).unwrap()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "workload_token.exchange")
        .cloned()
        .collect();
    let by = |status: &str| {
        entries
            .iter()
            .filter(|e| e["status"] == status && e["phase"] == "outcome")
            .cloned()
            .collect::<Vec<_>>()
    };
    let ok = by("ok");
    assert_eq!(ok.len(), 2, "{entries:#?}");
    assert_eq!(
        ok[0]["actor"]["principal"],
        "k8s:kube-a:system:serviceaccount:shop:api"
    );
    assert_eq!(ok[0]["actor"]["method"], "k8s-sa-token");
    assert_eq!(ok[0]["target"]["kind"], "pod");
    assert_eq!(ok[0]["target"]["name"], "api-7d9f8-x2x4q");
    assert_eq!(ok[0]["target"]["scope"], SERVICE);
    assert!(!by("forbidden").is_empty(), "{entries:#?}");
    assert!(
        entries.iter().any(|e| e["status"] == "unauthenticated"),
        "{entries:#?}"
    );
    assert!(acme.contains("workload_token.create") && acme.contains("api-7d9f8-x2x4q"));
    assert!(acme.contains("workload.sa_bind") && acme.contains("workload.sa_unbind"));
    for token in [&sa_token, &from_b, &forged, &vault_aud] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!system.contains(signature) && !acme.contains(signature));
    }
}
crate::both_backends!(exchange_and_refusals);

/// Who may configure what: the issuer is the installation's (root), a
/// binding is the service owner's, and another organization's admin can
/// neither bind nor see.
async fn only_owners_bind_and_only_root_configures_issuers(s: TestServer) {
    let _ = setup(&s).await;
    s.scopes("globex/shop/prod/api", "production").await;
    s.user("gina", "globex", "correct horse battery").await;
    s.grant("user:gina@globex", "admin", "globex").await;
    let login: Value = s
        .client_with(None)
        .call(
            Method::POST,
            "/api/v1/auth/login",
            Some(&json!({"user": "gina@globex", "password": "correct horse battery"})),
        )
        .await
        .unwrap();
    let gina = s.client_with(login["token"].as_str());
    let call = |method: Method, path: String, body: Option<Value>| {
        let gina = gina.clone();
        async move { gina.call(method, &path, body.as_ref()).await }
    };
    let body = json!({"cluster": "kube-a", "namespace": "shop", "service_account": "api"});
    // Her own service: yes.
    call(
        Method::PUT,
        "/api/v1/sa-bindings/globex/shop/prod/api".into(),
        Some(body.clone()),
    )
    .await
    .unwrap();
    // acme's: not found (another tenant's names are not confirmed).
    let (status, _) = api_error(
        call(
            Method::PUT,
            format!("/api/v1/sa-bindings/{SERVICE}"),
            Some(body.clone()),
        )
        .await,
    );
    assert_eq!(status, 404);
    let (status, _) =
        api_error(call(Method::GET, "/api/v1/sa-bindings?scope=acme".into(), None).await);
    assert_eq!(status, 404);
    // Issuers are cluster.manage at the root.
    let evil = ApiServer::new(KEY_B, "evil", "https://evil");
    let (status, _) = api_error(
        call(
            Method::PUT,
            "/api/v1/clusters/kube-a/issuer".into(),
            Some(json!({"issuer": "https://evil", "jwks": evil.jwks()})),
        )
        .await,
    );
    assert_eq!(status, 403);
    let (status, _) =
        api_error(call(Method::GET, "/api/v1/clusters/kube-a/issuer".into(), None).await);
    assert_eq!(status, 403);
    // An unknown cluster, and bad key sets, are refused with a reason.
    let (status, message) = api_error(
        s.call(
            Method::PUT,
            "/api/v1/sa-bindings/acme/shop/prod/api",
            Some(json!({"cluster": "nowhere", "namespace": "shop", "service_account": "api"})),
        )
        .await,
    );
    assert_eq!(
        (status, message.contains("nowhere")),
        (404, true),
        "{message}"
    );
    let a = ApiServer::new(KEY_A, "kube-a-2026", ISSUER_A);
    let mut private = a.jwks();
    private["keys"][0]["d"] = json!("c2VjcmV0LXByaXZhdGUta2V5");
    for (jwks, needle) in [
        (json!({"keys": []}), "1 to 16 keys"),
        (private, "private"),
        (json!({"keys": [{"kty": "oct", "kid": "x"}]}), "kty"),
    ] {
        let (status, message) = api_error(
            s.call(
                Method::PUT,
                "/api/v1/clusters/kube-a/issuer",
                Some(json!({"issuer": ISSUER_A, "jwks": jwks})),
            )
            .await,
        );
        assert_eq!(status, 400, "{message}");
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
        assert!(!message.contains("c2VjcmV0"), "{message}");
    }
}
crate::both_backends!(only_owners_bind_and_only_root_configures_issuers);

/// The `warden-injector` binary in the same target directory.
fn injector_bin() -> PathBuf {
    let bin = warden_bin().with_file_name("warden-injector");
    assert!(
        bin.exists(),
        "{} not found: `cargo build -p warden-cli -p warden-injector` first",
        bin.display()
    );
    bin
}

/// The CLI against the test server with its owner token.
fn warden(s: &TestServer, args: &[&str]) -> Output {
    let out = std::process::Command::new(warden_bin())
        .args(["--server", &s.url, "--ca-cert"])
        .arg(s.ca_path())
        .args(args)
        .env("WARDEN_TOKEN", &s.token)
        .env("WARDEN_CONFIG", s.ca_path().with_file_name("client.toml"))
        .env_remove("WARDEN_ADDR")
        .env_remove("WARDEN_CA_CERT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "warden {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `warden-injector exec` as the admission webhook sets it up: the
/// projected token's file in `$WARDEN_K8S_TOKEN_FILE`, the cluster in
/// `$WARDEN_CLUSTER`, nothing else.
fn injector(s: &TestServer, service: &str, token_file: &Path, cluster: &str) -> Output {
    std::process::Command::new(injector_bin())
        .arg("exec")
        .args(["--server", &s.url, "--service", service, "--ca"])
        .arg(s.ca_path())
        .args([
            "--retries",
            "0",
            "--",
            "sh",
            "-c",
            "echo \"DB_URL=$DB_URL\"; env",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WARDEN_K8S_TOKEN_FILE", token_file)
        .env("WARDEN_CLUSTER", cluster)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injector_exchanges_a_projected_token_and_fetches() {
    let s = TestServer::start(Db::Sqlite).await;
    s.scopes(SERVICE, "production").await;
    s.put(SERVICE, json!({"DB_URL": CANARY})).await;
    cluster(&s, "kube-a").await;
    place(&s, "acme/shop/prod", "kube-a").await;
    let a = ApiServer::new(KEY_A, "kube-a-2026", ISSUER_A);
    let dir = tempfile::tempdir().unwrap();
    // Configured with the CLI, as an operator and a service owner would.
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::to_vec_pretty(&a.jwks()).unwrap()).unwrap();
    let out = std::process::Command::new(warden_bin())
        .args(["--server", &s.url, "--ca-cert"])
        .arg(s.ca_path())
        .args([
            "cluster",
            "issuer",
            "set",
            "kube-a",
            "--issuer",
            ISSUER_A,
            "--jwks-file",
        ])
        .arg(&jwks)
        .env("WARDEN_TOKEN", &s.token)
        .env("WARDEN_CONFIG", s.ca_path().with_file_name("client.toml"))
        .env_remove("WARDEN_ADDR")
        .env_remove("WARDEN_CA_CERT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown =
        String::from_utf8_lossy(&warden(&s, &["cluster", "issuer", "show", "kube-a"]).stdout)
            .into_owned();
    assert!(shown.contains("RS256 kube-a-2026 (2048 bits)"), "{shown}");
    warden(
        &s,
        &[
            "workload",
            "sa-bind",
            SERVICE,
            "--cluster",
            "kube-a",
            "--service-account",
            "shop/api",
        ],
    );
    let listed = String::from_utf8_lossy(&warden(&s, &["workload", "sa-bindings", "acme"]).stdout)
        .into_owned();
    assert!(
        listed.contains("shop/api") && listed.contains(SERVICE),
        "{listed}"
    );

    // The kubelet's projected file (with its trailing newline).
    let token_file = dir.path().join("token");
    let sa_token = a.token("shop", "api", "api-7d9f8-x2x4q", "warden", 3600);
    std::fs::write(&token_file, format!("{sa_token}\n")).unwrap();
    let out = injector(&s, SERVICE, &token_file, "kube-a");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!("DB_URL={CANARY}\n")),
        "{stdout}"
    );
    // The token's file is not named to the command, and neither token is
    // in its environment.
    assert!(!stdout.contains("WARDEN_K8S_TOKEN_FILE"), "{stdout}");
    assert!(
        !stdout.contains(sa_token.rsplit('.').next().unwrap()),
        "{stdout}"
    );

    // Refusals: exit 78 (this service is not the account's) and 77 (the
    // token itself refused), one line each, the command never run.
    let wrong = a.token("shop", "worker", "worker-1", "warden", 3600);
    std::fs::write(&token_file, &wrong).unwrap();
    let out = injector(&s, SERVICE, &token_file, "kube-a");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("is not bound to") && out.stdout.is_empty(),
        "{err}"
    );
    let vault_aud = a.token("shop", "api", "api-7d9f8-x2x4q", "vault", 3600);
    std::fs::write(&token_file, &vault_aud).unwrap();
    let out = injector(&s, SERVICE, &token_file, "kube-a");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(77), "{err}");
    assert!(
        err.contains("not meant for Warden") && out.stdout.is_empty(),
        "{err}"
    );
    assert!(
        !err.contains(vault_aud.rsplit('.').next().unwrap()),
        "{err}"
    );
    // Unbound with the CLI: the next start is refused.
    std::fs::write(&token_file, &sa_token).unwrap();
    warden(
        &s,
        &[
            "workload",
            "sa-unbind",
            SERVICE,
            "--cluster",
            "kube-a",
            "--service-account",
            "shop/api",
        ],
    );
    let out = injector(&s, SERVICE, &token_file, "kube-a");
    assert_eq!(out.status.code(), Some(78));
}

/// `--watch` with a service-account token: the watch connects with a
/// workload token exchanged from the token file (the raw service-account
/// token is no bearer credential), so a rotation reaches the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watching_injector_exchanges_its_token_for_the_watch() {
    use tokio::io::AsyncBufReadExt;
    let s = TestServer::start(Db::Sqlite).await;
    let a = setup(&s).await.0;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let sa_token = a.token("shop", "api", "api-7d9f8-x2x4q", "warden", 3600);
    std::fs::write(&token_file, format!("{sa_token}\n")).unwrap();
    let mut child = tokio::process::Command::new(injector_bin())
        .arg("exec")
        .args(["--server", &s.url, "--service", SERVICE, "--ca"])
        .arg(s.ca_path())
        .args(["--watch", "--pod", "api-7d9f8-x2x4q", "--"])
        .args(["sh", "-c", "echo \"start $DB_URL\"; exec sleep 600"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WARDEN_K8S_TOKEN_FILE", &token_file)
        .env("WARDEN_CLUSTER", "kube-a")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .expect("no line in time")
            .unwrap()
            .expect("the command's output ended")
    };
    assert_eq!(next().await, format!("start {CANARY}"));
    let rotated = "sa-exchange-rotated-9e1d";
    s.put(SERVICE, json!({"DB_URL": rotated})).await;
    assert_eq!(next().await, format!("start {rotated}"));
    child.kill().await.unwrap();
}

/// Refusals are throttled where they come from: tokens that do not verify
/// per network, so a flood of garbage from one pod locks out only more
/// garbage and never a verified token from the same network; verified
/// tokens' refusals per service account, so an unbound account is locked
/// out alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_locks_out_only_garbage() {
    let s = TestServer::start(Db::Sqlite).await;
    let (a, _) = setup(&s).await;
    let mut limited = 0;
    for _ in 0..40 {
        let (code, _) = api_error(exchange(&s, "kube-a", SERVICE, "not.a.token").await);
        assert!(code == 401 || code == 429, "{code}");
        limited += usize::from(code == 429);
    }
    assert!(
        limited >= 5,
        "{limited} of 40 garbage exchanges were held back"
    );
    // Same network, a token that verifies: served.
    let good = a.token("shop", "api", "api-7d9f8-x2x4q", "warden", 600);
    exchange(&s, "kube-a", SERVICE, &good).await.unwrap();

    // A verified but unbound account: refused (403) until locked out (429),
    // while the bound one is still served.
    let mut locked = false;
    for i in 0..40 {
        let stray = a.token("shop", "stray", &format!("stray-{i}"), "warden", 600);
        let (code, message) = api_error(exchange(&s, "kube-a", SERVICE, &stray).await);
        assert!(code == 403 || code == 429, "{code} {message}");
        locked |= code == 429;
    }
    assert!(locked, "the unbound account was never held back");
    exchange(&s, "kube-a", SERVICE, &good).await.unwrap();

    // One pod exchanging again and again (each a fresh credential, each
    // audited) is held back after 20; its neighbours are not (review 13,
    // F5).
    let mut held = 0;
    for _ in 0..25 {
        match exchange(&s, "kube-a", SERVICE, &good).await {
            Ok(_) => {}
            Err(e) => {
                let (code, message) = api_error(Err(e));
                assert_eq!(code, 429, "{message}");
                held += 1;
            }
        }
    }
    assert!(held >= 3, "{held} of 25 repeated exchanges were held back");
    let other = a.token("shop", "api", "api-7d9f8-zz9k1", "warden", 600);
    exchange(&s, "kube-a", SERVICE, &other).await.unwrap();
}
