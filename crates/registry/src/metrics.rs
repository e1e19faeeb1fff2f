//! Request metrics in the Prometheus text format, kept with atomics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Methods counted by name; anything else is `OTHER`.
const METHODS: [&str; 8] = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "OTHER"];

fn method_index(method: &str) -> u8 {
    METHODS.iter().position(|m| *m == method).unwrap_or(METHODS.len() - 1) as u8
}

#[derive(Default)]
pub struct Metrics {
    /// Counters by (method, status): a read lock and an atomic add per
    /// request once a pair has been seen.
    requests: RwLock<BTreeMap<(u8, u16), AtomicU64>>,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    storage: std::sync::Mutex<Option<(std::time::Instant, (u64, u64))>>,
}

/// Storage gauges: blob count and bytes.
pub fn render_storage(count: u64, bytes: u64) -> String {
    format!(
        "# HELP berth_registry_storage_blobs Blobs in storage.\n\
         # TYPE berth_registry_storage_blobs gauge\n\
         berth_registry_storage_blobs {count}\n\
         # HELP berth_registry_storage_bytes Bytes of blobs in storage.\n\
         # TYPE berth_registry_storage_bytes gauge\n\
         berth_registry_storage_bytes {bytes}\n"
    )
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, method: &str, status: u16, received: u64, sent: u64, took: Duration) {
        let key = (method_index(method), status);
        let counted = {
            let r = self.requests.read().unwrap_or_else(|e| e.into_inner());
            r.get(&key).map(|c| c.fetch_add(1, Ordering::Relaxed)).is_some()
        };
        if !counted {
            let mut r = self.requests.write().unwrap_or_else(|e| e.into_inner());
            r.entry(key).or_default().fetch_add(1, Ordering::Relaxed);
        }
        self.bytes_received.fetch_add(received, Ordering::Relaxed);
        self.bytes_sent.fetch_add(sent, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The last storage figures `(blobs, bytes)`, if younger than `max_age`.
    pub fn storage_snapshot(&self, max_age: Duration) -> Option<(u64, u64)> {
        let s = self.storage.lock().unwrap_or_else(|e| e.into_inner());
        s.filter(|(at, _)| at.elapsed() < max_age).map(|(_, v)| v)
    }

    pub fn set_storage(&self, figures: (u64, u64)) {
        *self.storage.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), figures));
    }

    /// The exposition text served at `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP berth_registry_requests_total HTTP requests by method and status.\n");
        out.push_str("# TYPE berth_registry_requests_total counter\n");
        let requests = self.requests.read().unwrap_or_else(|e| e.into_inner());
        for ((method, status), n) in requests.iter() {
            let _ = writeln!(
                out,
                "berth_registry_requests_total{{method=\"{}\",status=\"{status}\"}} {}",
                METHODS[*method as usize],
                n.load(Ordering::Relaxed)
            );
        }
        drop(requests);
        for (name, help, v) in [
            ("received", "Request body bytes declared by clients.", &self.bytes_received),
            ("sent", "Response body bytes declared to clients.", &self.bytes_sent),
        ] {
            let _ = writeln!(out, "# HELP berth_registry_bytes_{name}_total {help}");
            let _ = writeln!(out, "# TYPE berth_registry_bytes_{name}_total counter");
            let _ =
                writeln!(out, "berth_registry_bytes_{name}_total {}", v.load(Ordering::Relaxed));
        }
        out.push_str("# HELP berth_registry_request_duration_seconds Time to the response head.\n");
        out.push_str("# TYPE berth_registry_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "berth_registry_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ =
            writeln!(out, "berth_registry_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "berth_registry_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "berth_registry_request_duration_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_histogram() {
        let m = Metrics::default();
        m.observe("GET", 200, 0, 100, Duration::from_micros(300));
        m.observe("GET", 200, 0, 50, Duration::from_millis(20));
        m.observe("PUT", 201, 10, 0, Duration::from_secs(10));
        let text = m.render();
        assert!(text.contains(r#"berth_registry_requests_total{method="GET",status="200"} 2"#));
        assert!(text.contains(r#"berth_registry_requests_total{method="PUT",status="201"} 1"#));
        assert!(text.contains("berth_registry_bytes_sent_total 150"));
        assert!(text.contains(r#"_bucket{le="0.0005"} 1"#));
        assert!(text.contains(r#"_bucket{le="0.025"} 2"#));
        assert!(text.contains(r#"_bucket{le="5"} 2"#));
        assert!(text.contains(r#"_bucket{le="+Inf"} 3"#));
    }
}
