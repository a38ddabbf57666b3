//! The closed-loop load generator: N keep-alive HTTPS connections, each with
//! exactly one request in flight, for a warmup period (not measured) and then
//! a measured window.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hyper::{Method, StatusCode};
use tokio::task::JoinSet;
use warden_api::{Client, Connection};

use crate::cpu;

/// One request: what a workload asks a connection to send next.
pub struct Request {
    /// HTTP method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// JSON body, if any.
    pub body: Option<Vec<u8>>,
}

/// One connection's request stream: builds its request number `i`. Each
/// connection owns its generator, which may keep state (a random stream).
pub type Generator = Box<dyn FnMut(u64) -> Request + Send>;

/// How long and how wide to drive a target.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Concurrent connections.
    pub connections: usize,
    /// Unmeasured period before the window.
    pub warmup: Duration,
    /// Measured window.
    pub measure: Duration,
}

/// Longest a single request may take before it is counted as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest an error body is kept for the report.
const ERROR_BODY_CHARS: usize = 300;

/// What one scenario measured.
#[derive(Debug, Default)]
pub struct Measurement {
    /// Latencies (µs) of every request started inside the window, sorted.
    pub latencies_us: Vec<u32>,
    /// Requests in the window answered 200.
    pub ok: u64,
    /// Requests in the window answered otherwise, failed or timed out.
    pub errors: u64,
    /// Of `errors`: transport failures and timeouts (no HTTP answer).
    pub transport_errors: u64,
    /// Errors during the warmup (not in `errors`).
    pub warmup_errors: u64,
    /// Connections that failed and could not be reopened.
    pub lost_connections: u64,
    /// The first error seen (status and body, or transport error).
    pub first_error: Option<String>,
    /// Length of the measured window, from its start to the last measured
    /// answer.
    pub window: Duration,
    /// Bytes of response body received in the window.
    pub response_bytes: u64,
    /// CPU use during the window, where /proc tells.
    pub cpu: Option<cpu::Usage>,
}

impl Measurement {
    /// Requests completed in the window.
    pub fn requests(&self) -> u64 {
        self.ok + self.errors
    }

    /// Successful (200) requests per second.
    pub fn rps(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile in milliseconds (`q` in 0..=1).
    pub fn percentile_ms(&self, q: f64) -> f64 {
        let n = self.latencies_us.len();
        if n == 0 {
            return 0.0;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        f64::from(self.latencies_us[rank - 1]) / 1000.0
    }

    /// Mean latency in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        let n = self.latencies_us.len();
        if n == 0 {
            return 0.0;
        }
        let sum: u64 = self.latencies_us.iter().map(|&v| u64::from(v)).sum();
        sum as f64 / n as f64 / 1000.0
    }

    fn merge(&mut self, t: Tally) {
        self.latencies_us.extend(t.latencies_us);
        self.ok += t.ok;
        self.errors += t.errors;
        self.transport_errors += t.transport_errors;
        self.warmup_errors += t.warmup_errors;
        self.lost_connections += u64::from(t.lost);
        self.response_bytes += t.response_bytes;
        if self.first_error.is_none() {
            self.first_error = t.first_error;
        }
    }
}

/// One connection's counts.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    errors: u64,
    transport_errors: u64,
    warmup_errors: u64,
    lost: bool,
    first_error: Option<String>,
    last_done: Option<Instant>,
    response_bytes: u64,
}

impl Tally {
    fn error(&mut self, measured: bool, what: impl FnOnce() -> String) {
        if measured {
            self.errors += 1;
        } else {
            self.warmup_errors += 1;
        }
        if self.first_error.is_none() {
            let mut s = what();
            if s.len() > ERROR_BODY_CHARS {
                s.truncate(s.floor_char_boundary(ERROR_BODY_CHARS));
                s.push('…');
            }
            self.first_error = Some(s);
        }
    }
}

/// Drives `client` according to `plan`; `workload(i)` makes the request
/// stream of connection `i`. All connections are opened (TLS handshakes done)
/// before the clock starts.
pub async fn run(
    client: &Client,
    plan: Plan,
    workload: impl Fn(usize) -> Generator,
) -> Result<Measurement> {
    let mut conns = Vec::with_capacity(plan.connections);
    for i in 0..plan.connections {
        let conn = client
            .connect()
            .await
            .with_context(|| format!("opening connection {i}"))?;
        conns.push(conn);
    }
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let deadline = measure_from + plan.measure;
    let window_start = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        cpu::Sample::now()
    });
    let mut tasks = JoinSet::new();
    for (idx, conn) in conns.into_iter().enumerate() {
        let worker = Worker {
            client: client.clone(),
            next: workload(idx),
            measure_from,
            deadline,
        };
        tasks.spawn(worker.run(conn));
    }
    let mut m = Measurement::default();
    let mut last_done = measure_from;
    while let Some(joined) = tasks.join_next().await {
        let tally = joined.context("load task failed")?;
        if let Some(t) = tally.last_done {
            last_done = last_done.max(t);
        }
        m.merge(tally);
    }
    let window_end = cpu::Sample::now();
    if let (Ok(Some(from)), Some(to)) = (window_start.await, window_end) {
        m.cpu = from.until(&to);
    }
    m.window = last_done.saturating_duration_since(measure_from);
    m.latencies_us.sort_unstable();
    Ok(m)
}

struct Worker {
    client: Client,
    next: Generator,
    measure_from: Instant,
    deadline: Instant,
}

impl Worker {
    async fn run(mut self, mut conn: Connection) -> Tally {
        let mut t = Tally::default();
        for i in 0u64.. {
            let sent = Instant::now();
            if sent >= self.deadline {
                break;
            }
            let req = (self.next)(i);
            let method = req.method;
            let measured = sent >= self.measure_from;
            let outcome = tokio::time::timeout(
                REQUEST_TIMEOUT,
                conn.send(method.clone(), &req.path, req.body),
            )
            .await;
            let done = Instant::now();
            if measured {
                let us = done.duration_since(sent).as_micros();
                t.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                t.last_done = Some(done);
            }
            let failure = match outcome {
                Ok(Ok((status, body))) => {
                    if measured {
                        t.response_bytes += body.len() as u64;
                    }
                    if status == StatusCode::OK {
                        if measured {
                            t.ok += 1;
                        }
                    } else {
                        t.error(measured, || {
                            format!(
                                "HTTP {} on {} {}: {}",
                                status.as_u16(),
                                method,
                                req.path,
                                String::from_utf8_lossy(&body)
                            )
                        });
                    }
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()),
            };
            // No HTTP answer: the connection is unusable; count it and reopen.
            if measured {
                t.transport_errors += 1;
            }
            t.error(measured, || format!("{method} {}: {failure}", req.path));
            match self.client.connect().await {
                Ok(c) => conn = c,
                Err(_) => {
                    t.lost = true;
                    break;
                }
            }
        }
        t
    }
}
