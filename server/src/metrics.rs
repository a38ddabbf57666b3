//! Prometheus metrics: request counts and latency by route template, method
//! and status, plus the seal state. Route labels are templates
//! (`/api/v1/secret/{*scope}`), never concrete paths, so no name leaks into
//! metrics and cardinality stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// The metric registry.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl Metrics {
    /// Records one request.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Ok(mut m) = self.series.lock() {
            let s = m
                .entry((route.to_owned(), method.to_owned(), status))
                .or_default();
            s.count += 1;
            s.sum += secs;
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    s.buckets[i] += 1;
                }
            }
        }
    }

    /// The text exposition format.
    pub fn render(&self, sealed: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP warden_sealed 1 while the vault is sealed.");
        let _ = writeln!(out, "# TYPE warden_sealed gauge");
        let _ = writeln!(out, "warden_sealed {}", u8::from(sealed));
        let _ = writeln!(
            out,
            "# HELP warden_http_requests_total HTTP requests answered."
        );
        let _ = writeln!(out, "# TYPE warden_http_requests_total counter");
        let Ok(m) = self.series.lock() else {
            return out;
        };
        for ((route, method, status), s) in m.iter() {
            let _ = writeln!(
                out,
                "warden_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP warden_http_request_duration_seconds Request latency."
        );
        let _ = writeln!(out, "# TYPE warden_http_request_duration_seconds histogram");
        for ((route, method, status), s) in m.iter() {
            let labels = format!("route=\"{route}\",method=\"{method}\",status=\"{status}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "warden_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "warden_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "warden_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "warden_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        out
    }
}
