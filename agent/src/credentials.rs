//! Workload credentials for the agent's pods, asked of the control plane.
//!
//! Only the control plane opens link streams, so it opens one
//! [`Op::Credentials`](crate::wire::Op::Credentials) stream per link and
//! keeps it: the agent writes requests on it ([`CRED_REQUEST`], JSON
//! `{id, service, pod}`) whenever its runtime creates a pod, and the
//! control plane answers each ([`CRED_ANSWER`]: `u64` id, `u8` 1 for a
//! credential or 0 for an error message, then the bytes). The control plane
//! mints a credential for exactly the service named, and only for an
//! existing service placed on the asking agent's cluster; this side only
//! carries the requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use warden_link::{LinkSender, LinkStream};
use warden_runtime::{CredentialSource, PodName, RuntimeError, ServiceRef};
use zeroize::Zeroizing;

use crate::wire::{self, FrameReader};

/// A credential request (agent → control plane).
pub const CRED_REQUEST: u8 = 10;
/// A credential answer (control plane → agent).
pub const CRED_ANSWER: u8 = 11;

/// How long a pod waits for its credential.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Credential requests of one link answered at once.
const MAX_IN_FLIGHT: usize = 8;
/// Least time between two credential requests of one link read (at most
/// 50 a second: a node starting many pods at once waits a little).
const MIN_REQUEST_GAP: Duration = Duration::from_millis(20);

/// Longest credential accepted.
const MAX_CREDENTIAL: usize = 16 * 1024;

type Waiter = oneshot::Sender<Result<Zeroizing<Vec<u8>>, RuntimeError>>;

/// What the agent asks for.
#[derive(Debug, Serialize, Deserialize)]
pub struct CredentialRequest {
    /// Matches the answer.
    pub id: u64,
    /// The pod's service.
    pub service: ServiceRef,
    /// The new pod.
    pub pod: PodName,
}

/// The agent's side: a [`CredentialSource`] for its runtime, fed by the
/// credential streams of its links (one per control-plane replica; a
/// request goes to the newest, then to the others while it fails).
#[derive(Clone, Default)]
pub struct CredentialFeed {
    inner: Arc<FeedInner>,
}

struct FeedInner {
    /// The attached streams' senders, oldest first, by serial.
    senders: Mutex<Vec<(u64, Arc<LinkSender>)>>,
    /// Requests waiting for an answer, with the stream they went on.
    pending: Mutex<HashMap<u64, (u64, Waiter)>>,
    next: AtomicU64,
    /// Whether any credential stream is attached.
    attached: watch::Sender<bool>,
}

impl Default for FeedInner {
    fn default() -> Self {
        Self {
            senders: Mutex::default(),
            pending: Mutex::default(),
            next: AtomicU64::default(),
            attached: watch::Sender::new(false),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CredentialFeed {
    /// An unconnected feed (requests fail until a link brings a stream).
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until the control plane's credential stream is attached (at
    /// most `timeout`); whether it is.
    pub async fn attached(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.attached.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|a| *a))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Serves the control plane's credential stream until it ends.
    pub(crate) async fn attach(&self, tx: LinkSender, rx: warden_link::LinkReceiver) {
        let serial = self.inner.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut senders = lock(&self.inner.senders);
            senders.push((serial, Arc::new(tx)));
            self.inner.attached.send_replace(true);
        }
        let mut rx = FrameReader::new(rx);
        loop {
            match rx.next().await {
                Ok(Some((CRED_ANSWER, body))) => self.answer(serial, body),
                Ok(Some((tag, _))) => {
                    tracing::warn!(tag, "unexpected frame on the credential stream");
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = ?e, "credential stream lost");
                    break;
                }
            }
        }
        {
            let mut senders = lock(&self.inner.senders);
            senders.retain(|(s, _)| *s != serial);
            // Under the lock, so a link attaching meanwhile is not undone.
            if senders.is_empty() {
                self.inner.attached.send_replace(false);
            }
        }
        let lost: Vec<Waiter> = {
            let mut pending = lock(&self.inner.pending);
            let ids: Vec<u64> = pending
                .iter()
                .filter(|(_, (s, _))| *s == serial)
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| pending.remove(id).map(|(_, w)| w))
                .collect()
        };
        for waiter in lost {
            let _ = waiter.send(Err(RuntimeError::Unavailable(
                "the link to the control plane broke".into(),
            )));
        }
    }

    /// An answer that came on stream `serial`: it settles only a request
    /// sent on that stream.
    fn answer(&self, serial: u64, mut body: Bytes) {
        if body.len() < 9 {
            return;
        }
        let id = body.get_u64();
        let ok = body.get_u8() == 1;
        let waiter = {
            let mut pending = lock(&self.inner.pending);
            match pending.get(&id) {
                Some((s, _)) if *s == serial => pending.remove(&id).map(|(_, w)| w),
                _ => None,
            }
        };
        let Some(waiter) = waiter else {
            return;
        };
        let _ = waiter.send(if ok {
            Ok(Zeroizing::new(body.to_vec()))
        } else {
            Err(RuntimeError::Credential(
                String::from_utf8_lossy(&body).chars().take(300).collect(),
            ))
        });
    }
}

impl CredentialSource for CredentialFeed {
    fn credential<'a>(
        &'a self,
        service: &'a ServiceRef,
        pod: &'a PodName,
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, RuntimeError>> {
        Box::pin(async move {
            // Between links (a start, a reconnect) the pod waits a little.
            self.attached(ANSWER_TIMEOUT).await;
            // The newest link first; a replica that cannot mint (its
            // database or audit log down) does not fail the pod while
            // another can.
            let senders: Vec<(u64, Arc<LinkSender>)> =
                lock(&self.inner.senders).iter().rev().cloned().collect();
            let mut failure = RuntimeError::Credential("not connected to the control plane".into());
            for (serial, sender) in senders {
                match self.ask(serial, &sender, service, pod).await {
                    Ok(credential) => return Ok(credential),
                    Err(e) => failure = e,
                }
            }
            Err(failure)
        })
    }
}

impl CredentialFeed {
    /// One request on stream `serial`.
    async fn ask(
        &self,
        serial: u64,
        sender: &LinkSender,
        service: &ServiceRef,
        pod: &PodName,
    ) -> Result<Zeroizing<Vec<u8>>, RuntimeError> {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.pending).insert(id, (serial, tx));
        let request = CredentialRequest {
            id,
            service: service.clone(),
            pod: pod.clone(),
        };
        let sent = sender.send(wire::json_frame(CRED_REQUEST, &request)).await;
        let answer = match sent {
            Ok(()) => tokio::time::timeout(ANSWER_TIMEOUT, rx).await,
            Err(e) => {
                lock(&self.inner.pending).remove(&id);
                return Err(RuntimeError::Credential(format!("link: {e}")));
            }
        };
        lock(&self.inner.pending).remove(&id);
        match answer {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RuntimeError::Credential("no answer".into())),
            Err(_) => Err(RuntimeError::Credential(
                "the control plane did not answer in time".into(),
            )),
        }
    }
}

/// How often agents renew their pods' credentials: a third of the
/// credentials' hour, so one failed round leaves time for two more.
pub const CREDENTIAL_REFRESH: Duration = Duration::from_secs(20 * 60);

/// Keeps pods' workload credentials fresh: every `every`, each running pod
/// of every service the runtime holds gets a new credential (asked of the
/// control plane like a new pod's) written over its credential file. Run it
/// on the agent for as long as the runtime lives; `every` must be well
/// below the credentials' lifetime (an hour).
pub async fn refresh_forever(
    feed: CredentialFeed,
    runtime: Arc<dyn warden_runtime::Runtime>,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = refresh_once(&feed, &*runtime).await {
            tracing::warn!(error = %e, "refreshing pods' credentials failed; retrying next round");
        }
    }
}

/// One refresh round (see [`refresh_forever`]).
pub async fn refresh_once(
    feed: &CredentialFeed,
    runtime: &dyn warden_runtime::Runtime,
) -> Result<usize, RuntimeError> {
    use warden_runtime::{CredentialTarget, PodPhase, PodRef, Selector};
    // One pod's failure (its service moved to another cluster, a passing
    // timeout) does not keep the others from being renewed.
    let mut refreshed = 0;
    for service in runtime.services().await? {
        let pods = runtime.pods(&Selector::Service(service.clone())).await?;
        for pod in pods.into_iter().filter(|p| p.phase == PodPhase::Running) {
            let credential = match feed.credential(&service, &pod.name).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%service, pod = %pod.name, error = %e, "credential not renewed");
                    continue;
                }
            };
            let target = CredentialTarget::Pod(PodRef {
                service: service.clone(),
                name: pod.name,
            });
            match runtime.refresh_credential(&target, credential).await {
                Ok(()) => refreshed += 1,
                // Gone since it was listed.
                Err(RuntimeError::PodNotFound(_) | RuntimeError::PodNotRunning { .. }) => {}
                Err(e) => tracing::warn!(%service, error = %e, "credential not written"),
            }
        }
    }
    Ok(refreshed)
}

/// The control plane's side: answers the agent's credential requests on
/// `stream` with `mint(service, pod)` until the stream ends.
pub async fn serve_credentials<F, Fut>(stream: LinkStream, mint: F)
where
    F: Fn(ServiceRef, PodName) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Zeroizing<Vec<u8>>, String>> + Send + 'static,
{
    let (tx, rx) = stream.split();
    let tx = Arc::new(tx);
    let mint = Arc::new(mint);
    let mut rx = FrameReader::new(rx);
    // An agent gets a few requests in flight and a bounded rate: beyond
    // them this side stops reading, and the link's flow control holds the
    // agent back (a flood cannot grow memory or the audit log at will).
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut pace = tokio::time::interval(MIN_REQUEST_GAP);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            return;
        };
        pace.tick().await;
        let Ok(Some((tag, body))) = rx.next().await else {
            return;
        };
        if tag != CRED_REQUEST {
            tracing::warn!(tag, "unexpected frame from an agent's credential stream");
            return;
        }
        let Ok(request) = serde_json::from_slice::<CredentialRequest>(&body) else {
            tracing::warn!("undecodable credential request from an agent");
            return;
        };
        let (tx, mint) = (tx.clone(), mint.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let answer = match mint(request.service, request.pod).await {
                Ok(c) if c.len() <= MAX_CREDENTIAL => answer_frame(request.id, true, &c),
                Ok(_) => answer_frame(request.id, false, b"credential too large"),
                Err(message) => answer_frame(request.id, false, message.as_bytes()),
            };
            let _ = tx.send(answer).await;
        });
    }
}

fn answer_frame(id: u64, ok: bool, payload: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(9 + payload.len());
    body.put_u64(id);
    body.put_u8(u8::from(ok));
    body.put_slice(payload);
    wire::frame(CRED_ANSWER, &body)
}
