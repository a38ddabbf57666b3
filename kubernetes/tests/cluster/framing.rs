//! The stand-in's exec framing seen by a raw WebSocket client: what kubectl
//! and kube-rs only show indirectly (the reference's B.2 items 5-7).

use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use warden_kubernetes::KubernetesRuntime;
use warden_runtime::{Runtime, Selector, ServiceRef, WorkloadSpec};

use crate::apiserver::ApiServer;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A pod to exec into (made through the runtime).
async fn pod(server: &ApiServer) -> String {
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let rt = KubernetesRuntime::with_client(client, "warden", std::time::Duration::from_secs(5));
    let s = ServiceRef::parse("a/b/c/d").unwrap();
    let spec = WorkloadSpec::new(["sleep", "60"])
        .unwrap()
        .with_image("busybox:1.36")
        .unwrap();
    rt.apply(&s, &spec).await.unwrap();
    rt.pods(&Selector::Service(s)).await.unwrap()[0]
        .name
        .to_string()
}

async fn open(
    server: &ApiServer,
    pod: &str,
    query: &str,
    protocols: &str,
) -> Result<(Ws, String), String> {
    let url = format!(
        "ws://{}/api/v1/namespaces/warden/pods/{pod}/exec?{query}",
        server.addr
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, resp)) => {
            let p = resp.headers()["sec-websocket-protocol"]
                .to_str()
                .unwrap()
                .to_owned();
            Ok((ws, p))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Every message until the server's close frame (which must come).
async fn messages(ws: &mut Ws) -> (Vec<Vec<u8>>, Option<CloseCode>) {
    let mut out = Vec::new();
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => out.push(b.to_vec()),
            Some(Ok(Message::Close(f))) => return (out, f.map(|f| f.code)),
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_then_output_then_one_status_then_close() {
    let server = ApiServer::start().await;
    let pod = pod(&server).await;
    let (mut ws, protocol) = open(
        &server,
        &pod,
        "command=sh&command=-c&command=printf+out%3B+printf+err+%3E%262%3B+exit+4&stdout=true&stderr=true",
        "v4.channel.k8s.io, v5.channel.k8s.io",
    )
    .await
    .unwrap();
    // Server preference: v5 when offered.
    assert_eq!(protocol, "v5.channel.k8s.io");
    let (msgs, close) = messages(&mut ws).await;
    assert_eq!(msgs[0], [1], "the empty 'connected' frame first");
    let last = msgs.last().unwrap();
    assert_eq!(last[0], 3, "{msgs:?}");
    let status: serde_json::Value = serde_json::from_slice(&last[1..]).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "4");
    assert_eq!(msgs.iter().filter(|m| m[0] == 3).count(), 1, "one status");
    let of = |ch: u8| -> Vec<u8> {
        msgs.iter()
            .filter(|m| m[0] == ch)
            .flat_map(|m| m[1..].to_vec())
            .collect()
    };
    assert_eq!(of(1), b"out");
    assert_eq!(of(2), b"err");
    assert_eq!(close, Some(CloseCode::Normal));
    // tungstenite answered the close frame itself.
    assert!(ws.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_is_accepted_and_nothing_else() {
    let server = ApiServer::start().await;
    let pod = pod(&server).await;
    let (mut ws, protocol) = open(
        &server,
        &pod,
        "command=cat&stdin=true&stdout=true",
        "v4.channel.k8s.io",
    )
    .await
    .unwrap();
    assert_eq!(protocol, "v4.channel.k8s.io");
    ws.send(Message::Binary(b"\x00hi".to_vec().into()))
        .await
        .unwrap();
    // v4 has no half-close: [255, 0] is ignored, so `cat` keeps running
    // until the client goes.
    ws.send(Message::Binary(vec![255, 0].into())).await.unwrap();
    let first = loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) if b.len() > 1 => break b.to_vec(),
            _ => {}
        }
    };
    assert_eq!(first, b"\x01hi");
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), ws.next()).await;
    assert!(quiet.is_err(), "cat ended on a v4 [255, 0]: {quiet:?}");
    drop(ws);

    let refused = open(&server, &pod, "command=true&stdout=true", "channel.k8s.io").await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("400")),
        "{refused:?}"
    );
}
