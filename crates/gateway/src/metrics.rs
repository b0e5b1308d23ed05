//! Prometheus metrics for the optional admin listener: requests by route and status, upstream
//! latency histogram, open connections, bytes sent.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::log::Entry;

const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
pub struct Metrics {
    /// route → status → count; looked up by `&str` so a request allocates nothing here.
    requests: Mutex<HashMap<String, HashMap<u16, u64>>>,
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
    pub open_connections: AtomicI64,
    bytes_sent: AtomicU64,
}

impl Metrics {
    /// A number that grows with every response sent: whether the gateway has been busy.
    pub fn activity(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }

    pub fn record(&self, e: &Entry) {
        let route = e.route.as_deref().unwrap_or("-");
        let mut requests = self.requests.lock().expect("metrics");
        let by_status = match requests.get_mut(route) {
            Some(m) => m,
            None => requests.entry(route.to_string()).or_default(),
        };
        *by_status.entry(e.status).or_default() += 1;
        self.bytes_sent.fetch_add(e.bytes + e.header_bytes, Ordering::Relaxed);
    }

    pub fn observe_upstream(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS.iter().position(|b| s <= *b).unwrap_or(BUCKETS.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP trove_gateway_requests_total Requests answered, by route and status.\n# TYPE trove_gateway_requests_total counter\n");
        let mut rows: Vec<_> = self.requests.lock().expect("metrics").iter().flat_map(|(r, m)| m.iter().map(move |(s, n)| ((r.clone(), *s), *n))).collect();
        rows.sort();
        for ((route, status), n) in rows {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(s, "trove_gateway_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        s.push_str(
            "# HELP trove_gateway_upstream_response_seconds Time to the origin's response head.\n# TYPE trove_gateway_upstream_response_seconds histogram\n",
        );
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.latency[i].load(Ordering::Relaxed);
            let _ = writeln!(s, "trove_gateway_upstream_response_seconds_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.latency[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(s, "trove_gateway_upstream_response_seconds_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(s, "trove_gateway_upstream_response_seconds_sum {}", self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(s, "trove_gateway_upstream_response_seconds_count {}", self.latency_count.load(Ordering::Relaxed));
        s.push_str("# HELP trove_gateway_open_connections Downstream connections open now.\n# TYPE trove_gateway_open_connections gauge\n");
        let _ = writeln!(s, "trove_gateway_open_connections {}", self.open_connections.load(Ordering::Relaxed));
        s.push_str("# HELP trove_gateway_sent_bytes_total Bytes sent to downstreams.\n# TYPE trove_gateway_sent_bytes_total counter\n");
        let _ = writeln!(s, "trove_gateway_sent_bytes_total {}", self.bytes_sent.load(Ordering::Relaxed));
        s
    }
}
