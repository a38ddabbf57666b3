//! Malformed requests get a JSON 4xx naming the problem, never a 5xx, and
//! the server stays healthy and keeps its data.

use hyper::Method;
use serde_json::{Value, json};
use warden_api::Client;

use crate::both_backends;
use crate::harness::TestServer;

struct Case {
    what: &'static str,
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    token: Option<&'static str>,
    status: u16,
}

fn case(
    what: &'static str,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    status: u16,
) -> Case {
    Case {
        what,
        method,
        path: path.to_owned(),
        body,
        token: Some("owner"),
        status,
    }
}

fn json_body(v: Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(&v).unwrap())
}

async fn malformed_requests_get_clear_4xx_errors(s: TestServer) {
    s.scopes("acme/shop/prod", "production").await;
    s.put("acme/shop/prod", json!({"KEEP": "still here"})).await;
    let p = "/api/v1/secrets/acme/shop/prod";
    let mut many = serde_json::Map::new();
    for i in 0..101 {
        many.insert(format!("K{i}"), json!("v"));
    }
    let mut invalid_utf8 = br#"{"values":{"A":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0x80]);
    invalid_utf8.extend_from_slice(br#""}}"#);
    let cases = vec![
        case(
            "truncated JSON",
            Method::PUT,
            p,
            Some(b"{\"values\":".to_vec()),
            400,
        ),
        case("not JSON", Method::PUT, p, Some(b"KEY=VALUE".to_vec()), 400),
        case(
            "JSON of the wrong shape",
            Method::PUT,
            p,
            json_body(json!({"values": ["a"]})),
            400,
        ),
        case(
            "value of the wrong type",
            Method::PUT,
            p,
            json_body(json!({"values": {"A": 5}})),
            400,
        ),
        case(
            "unknown field",
            Method::PUT,
            p,
            json_body(json!({"values": {"A": "b"}, "extra": 1})),
            400,
        ),
        case(
            "invalid UTF-8 in the body",
            Method::PUT,
            p,
            Some(invalid_utf8),
            400,
        ),
        case(
            "oversized body (17 MiB)",
            Method::PUT,
            p,
            Some(vec![b' '; 17 * 1024 * 1024]),
            413,
        ),
        case(
            "value over 64 KiB",
            Method::PUT,
            p,
            json_body(json!({"values": {"A": "x".repeat(64 * 1024 + 1)}})),
            400,
        ),
        case(
            "too many keys",
            Method::PUT,
            p,
            json_body(json!({"values": many})),
            400,
        ),
        case(
            "no keys",
            Method::PUT,
            p,
            json_body(json!({"values": {}})),
            400,
        ),
        case(
            "bad secret name",
            Method::PUT,
            p,
            json_body(json!({"values": {"bad-name": "v"}})),
            400,
        ),
        case(
            "SQL in a secret name",
            Method::PUT,
            p,
            json_body(json!({"values": {"A';DROP TABLE secrets;--": "v"}})),
            400,
        ),
        case(
            "SQL in a scope",
            Method::GET,
            "/api/v1/secrets/acme'%20OR%201=1--",
            None,
            400,
        ),
        case(
            "SQL in a key query",
            Method::GET,
            "/api/v1/secret/acme/shop/prod?key=A%27%20OR%20%271%27=%271",
            None,
            400,
        ),
        case(
            "../ traversal",
            Method::GET,
            "/api/v1/secrets/acme/../../etc",
            None,
            400,
        ),
        case(
            "encoded traversal",
            Method::GET,
            "/api/v1/secrets/acme/%2e%2e/etc",
            None,
            400,
        ),
        case(
            "encoded slash",
            Method::GET,
            "/api/v1/secrets/acme%2fshop%2f..%2fx",
            None,
            400,
        ),
        case(
            "invalid UTF-8 in the path",
            Method::GET,
            "/api/v1/secrets/acme/%ff%fe",
            None,
            400,
        ),
        case(
            "uppercase scope",
            Method::GET,
            "/api/v1/secrets/ACME/shop",
            None,
            400,
        ),
        case(
            "too deep",
            Method::GET,
            "/api/v1/secrets/a/b/c/d/e",
            None,
            400,
        ),
        case(
            "NUL in scope",
            Method::GET,
            "/api/v1/secrets/acme%00/shop",
            None,
            400,
        ),
        case(
            "negative version",
            Method::GET,
            "/api/v1/secret/acme/shop/prod?key=KEEP&version=-1",
            None,
            400,
        ),
        case(
            "non-numeric version",
            Method::GET,
            "/api/v1/secret/acme/shop/prod?key=KEEP&version=x",
            None,
            400,
        ),
        case(
            "missing key",
            Method::GET,
            "/api/v1/secret/acme/shop/prod",
            None,
            400,
        ),
        case(
            "bad scope kind",
            Method::POST,
            "/api/v1/scopes",
            json_body(json!({"kind": "galaxy", "path": "x"})),
            400,
        ),
        case(
            "kind and depth disagree",
            Method::POST,
            "/api/v1/scopes",
            json_body(json!({"kind": "project", "path": "x"})),
            400,
        ),
        case(
            "environment without mode",
            Method::POST,
            "/api/v1/scopes",
            json_body(json!({"kind": "environment", "path": "acme/shop/qa"})),
            400,
        ),
        case(
            "bad mode",
            Method::POST,
            "/api/v1/scopes",
            json_body(json!({"kind": "environment", "path": "acme/shop/qa", "mode": "prod"})),
            400,
        ),
        case(
            "rewrap limit out of range",
            Method::POST,
            "/api/v1/keys/acme/rewrap?limit=0",
            None,
            400,
        ),
        case(
            "keys of a project",
            Method::GET,
            "/api/v1/keys/acme%2Fshop",
            None,
            400,
        ),
        case(
            "bad init method",
            Method::POST,
            "/api/v1/sys/init",
            json_body(json!({"method": "magic"})),
            400,
        ),
        case(
            "unseal with both",
            Method::POST,
            "/api/v1/sys/unseal",
            json_body(json!({"passphrase": "a", "share": "b"})),
            400,
        ),
        case(
            "malformed share",
            Method::POST,
            "/api/v1/sys/unseal",
            json_body(json!({"share": "!!!"})),
            400,
        ),
        case("unknown route", Method::GET, "/api/v1/nope", None, 404),
        case(
            "wrong method",
            Method::DELETE,
            "/api/v1/secrets/acme/shop/prod",
            None,
            405,
        ),
        Case {
            what: "missing token",
            token: None,
            ..case("", Method::GET, p, None, 401)
        },
        Case {
            what: "garbage token",
            token: Some("garbage"),
            ..case("", Method::GET, p, None, 401)
        },
        Case {
            what: "very long token",
            token: Some("long"),
            ..case("", Method::GET, p, None, 401)
        },
    ];
    let long_token = "x".repeat(4000);
    for c in cases {
        let token = match c.token {
            Some("owner") => Some(s.token.as_str()),
            Some("long") => Some(long_token.as_str()),
            other => other,
        };
        let client: Client = s.client_with(token);
        let mut conn = client.connect().await.unwrap();
        let (status, bytes) = conn.send(c.method.clone(), &c.path, c.body).await.unwrap();
        assert_eq!(
            status.as_u16(),
            c.status,
            "{}: {}",
            c.what,
            String::from_utf8_lossy(&bytes)
        );
        let err: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{}: body is not JSON: {:?}",
                c.what,
                String::from_utf8_lossy(&bytes)
            )
        });
        assert!(
            err["error"]["code"].is_string() && err["error"]["message"].is_string(),
            "{}: {err}",
            c.what
        );
    }

    let mut conn = s.client.connect().await.unwrap();
    let (status, _) = conn.send(Method::GET, "/healthz", None).await.unwrap();
    assert_eq!(status.as_u16(), 200);

    // Still healthy, nothing lost, and the SQL did not run.
    assert_eq!(s.get("acme/shop/prod", "KEEP").await.unwrap(), "still here");
    s.put("acme/shop/prod", json!({"AFTER": "fine"})).await;
    assert_eq!(s.get("acme/shop/prod", "AFTER").await.unwrap(), "fine");
    s.stop().await;
}
both_backends!(malformed_requests_get_clear_4xx_errors);

/// A body sent as text/plain is refused with 415, not parsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type_is_refused() {
    let s = TestServer::start(crate::harness::Db::Sqlite).await;
    s.scopes("acme/shop", "").await;
    let tcp = raw_request(
        &s,
        "PUT /api/v1/secrets/acme/shop HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: 21\r\n\r\n{\"values\":{\"A\":\"b\"}}",
    )
    .await;
    assert!(tcp.starts_with("HTTP/1.1 415"), "{tcp}");
    s.stop().await;
}

/// An HTTP/1.1 answer given without reading the request's body (a route
/// that does not take this method) says `Connection: close`, since the
/// server will not keep that connection; one that read the body keeps it.
/// A client not told would reuse the connection and lose its next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_leave_a_body_unread_close_the_connection() {
    let s = TestServer::start(crate::harness::Db::Sqlite).await;
    s.scopes("acme/shop", "").await;
    let body = "{\"values\":{\"A\":\"b\"}}";
    let request = |method: &str| {
        format!(
            "{method} /api/v1/secrets/acme/shop HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let unread = raw_request(&s, &request("PATCH"))
        .await
        .to_ascii_lowercase();
    assert!(unread.starts_with("http/1.1 405"), "{unread}");
    assert!(unread.contains("\r\nconnection: close\r\n"), "{unread}");
    let read = raw_request(&s, &request("PUT")).await.to_ascii_lowercase();
    assert!(read.starts_with("http/1.1 200"), "{read}");
    assert!(!read.contains("connection: close"), "{read}");
    s.stop().await;
}

async fn raw_request(s: &TestServer, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = crate::harness::tls_connect(s).await;
    let request = request.replace(
        "host: x",
        &format!(
            "host: {}\r\nauthorization: Bearer {}",
            s.running.addr, s.token
        ),
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Garbage that is not HTTP, and TLS garbage, do not hurt the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_http_and_non_tls_bytes_are_dropped() {
    use tokio::io::AsyncWriteExt;
    let s = TestServer::start(crate::harness::Db::Sqlite).await;
    let mut tcp = tokio::net::TcpStream::connect(s.running.addr)
        .await
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: plain-text-is-not-tls\r\n\r\n")
        .await
        .unwrap();
    let mut tcp = tokio::net::TcpStream::connect(s.running.addr)
        .await
        .unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0, 0])
        .await
        .unwrap();
    let garbage = raw_request(&s, "\u{1}\u{2}NOT HTTP AT ALL\r\n\r\n").await;
    assert!(
        garbage.starts_with("HTTP/1.1 400") || garbage.is_empty(),
        "{garbage}"
    );
    let (status, _) = s
        .client
        .connect()
        .await
        .unwrap()
        .send(Method::GET, "/healthz", None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);
    s.stop().await;
}
