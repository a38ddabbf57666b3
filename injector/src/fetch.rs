//! Fetching a service's resolved secrets: `GET /api/v1/resolve/{service}`
//! over TLS to the server, trusting only the given CA (warden-api's client:
//! rustls with the ring provider, TLS 1.2 and 1.3), with bounded retries;
//! and, first, for a pod on Kubernetes, exchanging its service-account
//! token for a workload token (`POST /api/v1/workload-token-exchange`) the
//! same way.

use std::time::Duration;

use hyper::Method;
use warden_api::{Client, ClientError, ErrorBody, Resolved, WorkloadToken};
use warden_types::ScopePath;
use zeroize::Zeroizing;

use crate::Error;
use crate::credential::Credential;
use crate::error::{json_error, server_text};

/// Default largest answer accepted, in bytes (`--max-response-bytes`).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How hard to try before giving up on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Delay before the first retry; each further one doubles it.
    pub initial_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
    /// Longest time one attempt (connect, TLS, request, answer) may take.
    pub attempt_timeout: Duration,
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based), before jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// What one attempt ended with, when it did not get the secrets.
enum Failure {
    /// Worth another attempt (connection, TLS, timeout, 429, 5xx).
    Retry(String),
    /// Final.
    Fatal(Error),
}

/// Fetches the resolved secrets of `service` (for the audit entry, as pod
/// `pod`), refusing an answer larger than `max_response` bytes.
pub async fn resolve(
    server: &str,
    ca_pem: &[u8],
    credential: &Credential,
    service: &ScopePath,
    pod: Option<&str>,
    policy: RetryPolicy,
    max_response: usize,
) -> Result<Resolved, Error> {
    // The client keeps its own copy of the token (a plain String, freed
    // without wiping when it drops); the wrapper execs right after, which
    // replaces the whole address space.
    let client = Client::new(server, ca_pem, Some(credential.expose().to_owned()))
        .map_err(|e| Error::Config(e.to_string()))?;
    let mut path = format!("/api/v1/resolve/{}", service.as_str());
    if let Some(pod) = pod {
        // Checked for shape when parsed (`--pod`): nothing to escape.
        path.push_str("?pod=");
        path.push_str(pod);
    }
    with_retries(policy, || once(&client, &path, max_response)).await
}

/// Largest answer to an exchange read (a workload token and its metadata).
const MAX_EXCHANGE_ANSWER: usize = 64 * 1024;

/// Exchanges the pod's service-account token (`sa_token`, read from its
/// file) for a workload token of `service`, as a pod of `cluster`, with the
/// same retries as [`resolve`].
pub async fn exchange(
    server: &str,
    ca_pem: &[u8],
    sa_token: &Credential,
    cluster: &str,
    service: &ScopePath,
    policy: RetryPolicy,
) -> Result<Credential, Error> {
    let client = Client::new(server, ca_pem, None).map_err(|e| Error::Config(e.to_string()))?;
    // The body holds the token: built once, wiped when done.
    let body = Zeroizing::new(
        serde_json::to_vec(&serde_json::json!({
            "cluster": cluster,
            "service": service.as_str(),
            "token": sa_token.expose(),
        }))
        .map_err(|e| Error::Internal(format!("encoding the exchange: {e}")))?,
    );
    with_retries(policy, || exchange_once(&client, &body)).await
}

async fn exchange_once(client: &Client, body: &[u8]) -> Result<Credential, Failure> {
    let mut conn = connect(client).await?;
    let (status, answer) = conn
        .send_limited(
            Method::POST,
            "/api/v1/workload-token-exchange",
            Some(body.to_vec()),
            MAX_EXCHANGE_ANSWER,
        )
        .await
        .map_err(|e| match e {
            ClientError::TooLarge { status, limit } => Failure::Fatal(Error::Internal(format!(
                "the server's answer to the exchange (HTTP {status}) is larger than {limit} bytes"
            ))),
            other => Failure::Retry(other.to_string()),
        })?;
    let answer = Zeroizing::new(Vec::from(answer));
    let status = status.as_u16();
    if status == 201 {
        let token = serde_json::from_slice::<WorkloadToken>(&answer).map_err(|e| {
            Failure::Fatal(Error::Internal(format!(
                "the exchange's answer is not what the API documents: {}",
                json_error(&e)
            )))
        })?;
        return Credential::parse(
            token.token.0.expose().as_bytes(),
            "the exchanged workload token",
        )
        .map_err(Failure::Fatal);
    }
    Err(refusal(status, &answer, |message, code| {
        Error::Config(format!(
            "the server refused the service-account token for this service: {message} ({code}, \
             HTTP {status})"
        ))
    }))
}

/// Runs `attempt` until it succeeds, fails for good, or the retries are
/// spent (waiting with backoff and jitter in between).
async fn with_retries<T, F, Fut>(policy: RetryPolicy, mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = match tokio::time::timeout(policy.attempt_timeout, attempt()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::Retry(format!(
                "no answer within {} ms",
                policy.attempt_timeout.as_millis()
            ))),
        };
        match outcome {
            Ok(value) => return Ok(value),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(last)) => {
                if attempts > policy.retries {
                    return Err(Error::Unavailable { attempts, last });
                }
                tokio::time::sleep(jitter(policy.delay(attempts))).await;
            }
        }
    }
}

/// Between half and all of `d`, at random, so that many pods started
/// together do not retry in lockstep.
pub(crate) fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = match rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()) {
        Ok(_) => u32::from(u16::from_le_bytes(b)),
        Err(_) => u32::from(u16::MAX),
    };
    d / 2 + (d / 2).mul_f64(f64::from(r) / f64::from(u16::MAX))
}

/// A connection to the server; a certificate the CA did not sign is final.
async fn connect(client: &Client) -> Result<warden_api::Connection, Failure> {
    client.connect().await.map_err(|e| match e {
        ClientError::Config(m) => Failure::Fatal(Error::Config(m)),
        // A certificate the pinned CA did not sign will not change on
        // retry: a wrong --ca, a wrong address, or someone in the middle.
        ClientError::Connect { addr, reason } if reason.contains("invalid peer certificate") => {
            Failure::Fatal(Error::Config(format!(
                "{addr} is not the server the CA vouches for: {reason}"
            )))
        }
        other => Failure::Retry(other.to_string()),
    })
}

/// What an error answer means: 401 a refused credential, 403 and 404
/// `forbidden(message, code)`, 429 and 5xx worth a retry, anything else an
/// answer the API does not document.
fn refusal(status: u16, body: &[u8], forbidden: impl FnOnce(&str, &str) -> Error) -> Failure {
    // The server's words, bounded and with control characters escaped: a
    // message cannot forge a second line or drive the terminal.
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => (server_text(&b.error.code), server_text(&b.error.message)),
        Err(_) => ("http_error".to_owned(), format!("HTTP {status}")),
    };
    match status {
        401 => Failure::Fatal(Error::CredentialRefused(message)),
        403 | 404 => Failure::Fatal(forbidden(&message, &code)),
        429 | 500..=599 => Failure::Retry(format!("{message} ({code}, HTTP {status})")),
        _ => Failure::Fatal(Error::Internal(format!(
            "unexpected answer: {message} ({code}, HTTP {status})"
        ))),
    }
}

async fn once(client: &Client, path: &str, max_response: usize) -> Result<Resolved, Failure> {
    let mut conn = connect(client).await?;
    let (status, body) = conn
        .send_limited(Method::GET, path, None, max_response)
        .await
        .map_err(|e| match e {
            // A legitimate answer that large (a service with that much in
            // its secrets) cannot be taken as asked; an error answer that
            // large is not one the API documents. Neither changes on retry.
            ClientError::TooLarge { status, limit } => {
                let why = format!(
                    "the server's answer (HTTP {status}) is larger than {limit} bytes, the \
                     --max-response-bytes limit"
                );
                Failure::Fatal(if status == 200 {
                    Error::Undeliverable(format!(
                        "{why}; nothing was delivered (raise the limit if the service's \
                         secrets are really that large)"
                    ))
                } else {
                    Error::Internal(why)
                })
            }
            other => Failure::Retry(other.to_string()),
        })?;
    // The body holds every value: take the buffer (not a copy) and wipe it
    // when done.
    let body = Zeroizing::new(Vec::from(body));
    let status = status.as_u16();
    if status == 200 {
        return serde_json::from_slice::<Resolved>(&body).map_err(|e| {
            // Not `e` itself: serde_json's message can quote the input,
            // which holds the values.
            Failure::Fatal(Error::Internal(format!(
                "the resolve answer is not what the API documents: {}",
                json_error(&e)
            )))
        });
    }
    Err(refusal(status, &body, |message, code| {
        Error::Config(format!(
            "the server refused this service to the credential: {message} ({code}, HTTP {status})"
        ))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            retries: 40,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(10),
        };
        let ms: Vec<u128> = (1..=7).map(|r| p.delay(r).as_millis()).collect();
        assert_eq!(ms, [200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(p.delay(40), Duration::from_secs(5));
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(1000)).as_millis();
            assert!((500..=1000).contains(&j), "{j}");
        }
    }
}
