//! `--watch`: the service's secrets kept current over one long-lived
//! WebSocket, `GET /api/v1/watch/{service}` (subprotocol
//! [`SECRET_WATCH_PROTOCOL`]). The server pushes the resolved secrets at
//! once and again each time they change; the wrapper applies each update
//! (`--on-change`) and reports it applied or failed, which the server
//! audits and shows in `warden secret holders`.
//!
//! A lost or refused watch never stops the command: the wrapper says so on
//! stderr and reconnects with backoff (up to [`MAX_BACKOFF`]), reading the
//! credential file again each time (the runtime replaces it before it
//! expires; a Kubernetes service-account token, which the kubelet
//! refreshes, is exchanged again), and applies whatever changed meanwhile from the first update
//! of the new watch.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use warden_api::{
    Client, ClientError, SECRET_WATCH_PROTOCOL, ServedVersion, WatchReport, WatchUpdate,
};
use warden_types::ScopePath;

use crate::credential::{Credential, Source};
use crate::error::server_text;

/// Longest wait between two attempts to (re)open the watch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First wait before reopening a lost watch.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How often the wrapper pings the server (a dead connection is noticed
/// within about twice this).
const PING_EVERY: Duration = Duration::from_secs(20);
/// Largest update accepted, in bytes.
const MAX_UPDATE_BYTES: usize = 64 * 1024 * 1024;

/// The versions a set of secrets came from.
pub type Versions = BTreeMap<String, ServedVersion>;

/// Where the watch connects, and with what.
pub struct Watcher {
    server: String,
    ca_pem: Vec<u8>,
    /// Read again for each connection when it is a file.
    source: Source,
    /// The credential when it cannot be read again (environment, fd).
    kept: Option<Credential>,
    path: String,
    /// The service (for a service-account token's exchange).
    service: ScopePath,
    socket: Option<warden_api::WebSocket>,
    backoff: Duration,
    /// When the next attempt to (re)open the watch may start.
    retry_at: Option<tokio::time::Instant>,
    /// Made on first use (it needs the async runtime).
    ping: Option<tokio::time::Interval>,
}

impl Watcher {
    /// A watcher of `service` as pod `pod`, not connected yet.
    pub fn new(
        server: &str,
        ca_pem: &[u8],
        source: Source,
        kept: Option<Credential>,
        service: &ScopePath,
        pod: Option<&str>,
    ) -> Self {
        let mut path = format!("/api/v1/watch/{}", service.as_str());
        if let Some(pod) = pod {
            path.push_str("?pod=");
            path.push_str(pod);
        }
        Self {
            server: server.to_owned(),
            ca_pem: ca_pem.to_vec(),
            source,
            kept,
            path,
            service: service.clone(),
            socket: None,
            backoff: FIRST_BACKOFF,
            retry_at: None,
            ping: None,
        }
    }

    /// The next update; waits (reconnecting as needed) until there is one.
    /// Cancel-safe between messages.
    pub async fn next(&mut self) -> WatchUpdate {
        loop {
            let ping = self.ping.get_or_insert_with(|| {
                let mut i =
                    tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            let Some(socket) = self.socket.as_mut() else {
                // The wait is a deadline kept here, not a sleep: the parent
                // drops this future on every signal, and the backoff must
                // hold all the same.
                if let Some(at) = self.retry_at {
                    tokio::time::sleep_until(at).await;
                }
                match self.connect().await {
                    Ok(socket) => {
                        self.socket = Some(socket);
                        self.backoff = FIRST_BACKOFF;
                        self.retry_at = None;
                    }
                    Err(why) => {
                        say(&format!(
                            "watch: {why}; trying again in {} ms",
                            self.backoff.as_millis()
                        ));
                        self.back_off();
                    }
                }
                continue;
            };
            let lost = tokio::select! {
                msg = socket.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if text.len() > MAX_UPDATE_BYTES {
                            "an update larger than the wrapper accepts".to_owned()
                        } else {
                            match serde_json::from_str::<WatchUpdate>(&text) {
                                Ok(update) => return update,
                                // Not serde's message: it can quote the values.
                                Err(_) => "an update that is not what the API documents".to_owned(),
                            }
                        }
                    }
                    Some(Ok(Message::Close(frame))) => match frame {
                        Some(f) => format!("the server ended the watch: {}", server_text(&f.reason)),
                        None => "the server ended the watch".to_owned(),
                    },
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => format!("the watch was lost: {e}"),
                    None => "the watch was lost".to_owned(),
                },
                _ = ping.tick() => {
                    if socket.send(Message::Ping(Vec::new().into())).await.is_ok() {
                        continue;
                    }
                    "the watch was lost".to_owned()
                }
            };
            say(&format!("watch: {lost}; reconnecting"));
            self.socket = None;
            self.back_off();
        }
    }

    /// Sets the next attempt's time and doubles the backoff (up to
    /// [`MAX_BACKOFF`]).
    fn back_off(&mut self) {
        self.retry_at = Some(tokio::time::Instant::now() + crate::fetch::jitter(self.backoff));
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Tells the server how update `generation` went. A report that cannot
    /// be sent is not retried: the next watch starts with an update of its
    /// own.
    pub async fn report(&mut self, report: WatchReport) {
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        let Ok(text) = serde_json::to_string(&report) else {
            return;
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            self.socket = None;
        }
    }

    /// Closes the watch (the command exited).
    pub async fn close(&mut self) {
        if let Some(mut socket) = self.socket.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
        }
    }

    async fn connect(&mut self) -> Result<warden_api::WebSocket, String> {
        let fresh;
        let credential = match (&self.kept, &self.source) {
            (Some(c), _) => c,
            // On Kubernetes: the projected token as the kubelet refreshed
            // it, exchanged again for a workload token (one attempt; the
            // watch's own backoff retries).
            (None, Source::Kubernetes { cluster, .. }) => {
                let sa = Credential::read(&self.source).map_err(|e| e.to_string())?;
                let once = crate::fetch::RetryPolicy {
                    retries: 0,
                    initial_delay: FIRST_BACKOFF,
                    max_delay: FIRST_BACKOFF,
                    attempt_timeout: Duration::from_secs(10),
                };
                fresh = crate::fetch::exchange(
                    &self.server,
                    &self.ca_pem,
                    &sa,
                    cluster,
                    &self.service,
                    once,
                )
                .await
                .map_err(|e| e.to_string())?;
                &fresh
            }
            (None, _) => {
                fresh = Credential::read(&self.source).map_err(|e| e.to_string())?;
                &fresh
            }
        };
        let client = Client::new(
            &self.server,
            &self.ca_pem,
            Some(credential.expose().to_owned()),
        )
        .map_err(|e| e.to_string())?;
        match tokio::time::timeout(
            Duration::from_secs(10),
            client.websocket(&self.path, &[SECRET_WATCH_PROTOCOL]),
        )
        .await
        {
            Err(_) => Err("no answer within 10 s".to_owned()),
            Ok(Ok((socket, Some(p)))) if p == SECRET_WATCH_PROTOCOL => Ok(socket),
            Ok(Ok(_)) => Err(format!("the server did not speak {SECRET_WATCH_PROTOCOL}")),
            Ok(Err(ClientError::Api {
                status,
                code,
                message,
            })) => Err(format!(
                "refused: {} ({}, HTTP {status})",
                server_text(&message),
                server_text(&code)
            )),
            Ok(Err(e)) => Err(server_text(&e.to_string())),
        }
    }
}

/// One line on stderr, as every message of the wrapper.
pub(crate) fn say(line: &str) {
    eprintln!("warden-injector: {}", crate::error::escape_controls(line));
}
