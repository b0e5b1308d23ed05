//! Prometheus metrics for the optional admin listener: requests by route and status, upstream
//! latency histogram, open connections, bytes sent.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::log::Entry;

const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Counters are kept per gateway worker thread (a shard each, on its own cache lines), so
/// two cores never write the same line per request; `render` adds the shards up.
#[derive(Default)]
pub struct Metrics {
    shards: [Shard; SHARDS],
    pub open_connections: AtomicI64,
}

const SHARDS: usize = 8;

#[derive(Default)]
#[repr(align(128))]
struct Shard {
    /// route → status → count; looked up by `&str` so a request allocates nothing here.
    requests: Mutex<HashMap<String, HashMap<u16, u64, Fnv>, Fnv>>,
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
    bytes_sent: AtomicU64,
}

/// FNV-1a, for tables whose keys come from the configuration (route paths, status codes,
/// origin URLs), not from clients: a keyed hash (SipHash, which showed in profiles) buys
/// nothing there.
#[derive(Default, Clone, Copy)]
pub(crate) struct Fnv;

pub(crate) struct FnvHasher(u64);

impl std::hash::BuildHasher for Fnv {
    type Hasher = FnvHasher;
    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl Metrics {
    fn shard(&self) -> &Shard {
        &self.shards[crate::server::worker_index() % SHARDS]
    }

    fn sum(&self, f: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    }

    /// A number that grows with every response sent: whether the gateway has been busy.
    pub fn activity(&self) -> u64 {
        self.sum(|s| &s.bytes_sent)
    }

    pub fn record(&self, e: &Entry) {
        let route = e.route.as_deref().unwrap_or("-");
        let shard = self.shard();
        let mut requests = shard.requests.lock().expect("metrics");
        let by_status = match requests.get_mut(route) {
            Some(m) => m,
            None => requests.entry(route.to_string()).or_default(),
        };
        *by_status.entry(e.status).or_default() += 1;
        shard.bytes_sent.fetch_add(e.bytes + e.header_bytes, Ordering::Relaxed);
    }

    pub fn observe_upstream(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS.iter().position(|b| s <= *b).unwrap_or(BUCKETS.len());
        let shard = self.shard();
        shard.latency[i].fetch_add(1, Ordering::Relaxed);
        shard.latency_sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        shard.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP trove_gateway_requests_total Requests answered, by route and status.\n# TYPE trove_gateway_requests_total counter\n");
        let mut totals: HashMap<(String, u16), u64> = HashMap::new();
        for shard in &self.shards {
            for (r, m) in shard.requests.lock().expect("metrics").iter() {
                for (status, n) in m {
                    *totals.entry((r.clone(), *status)).or_default() += n;
                }
            }
        }
        let mut rows: Vec<_> = totals.into_iter().collect();
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
            cum += self.sum(|s| &s.latency[i]);
            let _ = writeln!(s, "trove_gateway_upstream_response_seconds_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.sum(|s| &s.latency[BUCKETS.len()]);
        let _ = writeln!(s, "trove_gateway_upstream_response_seconds_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(s, "trove_gateway_upstream_response_seconds_sum {}", self.sum(|s| &s.latency_sum_us) as f64 / 1e6);
        let _ = writeln!(s, "trove_gateway_upstream_response_seconds_count {}", self.sum(|s| &s.latency_count));
        s.push_str("# HELP trove_gateway_open_connections Downstream connections open now.\n# TYPE trove_gateway_open_connections gauge\n");
        let _ = writeln!(s, "trove_gateway_open_connections {}", self.open_connections.load(Ordering::Relaxed));
        s.push_str("# HELP trove_gateway_sent_bytes_total Bytes sent to downstreams.\n# TYPE trove_gateway_sent_bytes_total counter\n");
        let _ = writeln!(s, "trove_gateway_sent_bytes_total {}", self.activity());
        s.push_str("# HELP trove_gateway_access_log_dropped_lines_total Access-log lines dropped because writing them fell behind (a request never waits for the log).\n# TYPE trove_gateway_access_log_dropped_lines_total counter\n");
        let _ = writeln!(s, "trove_gateway_access_log_dropped_lines_total {}", crate::log::DROPPED_LINES.load(Ordering::Relaxed));
        s
    }
}

/// The balanced routes' nodes (`crate::balancer`): each node's requests by outcome, whether it
/// is up, its requests in flight, failed health checks, and requests retried elsewhere after
/// failing on it. Labels: `balancer` (`balancer://name`, or a TOML route) and `node`
/// (`host:port`).
pub fn render_balancers(b: &crate::balancer::Balancers) -> String {
    let nodes = b.nodes();
    if nodes.is_empty() {
        return String::new();
    }
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut s = String::new();
    s.push_str("# HELP trove_gateway_upstream_node_requests_total Attempts on a balancer's node, by outcome (answered, failed after connecting, connect_failed).\n# TYPE trove_gateway_upstream_node_requests_total counter\n");
    for (bal, node, _, st) in &nodes {
        let f = st.figures();
        for (outcome, n) in [("answered", f[0]), ("failed", f[1]), ("connect_failed", f[2])] {
            let _ = writeln!(s, "trove_gateway_upstream_node_requests_total{{balancer=\"{}\",node=\"{}\",outcome=\"{outcome}\"}} {n}", esc(bal), esc(node));
        }
    }
    s.push_str("# HELP trove_gateway_upstream_node_up Whether a balancer's node takes requests (1) or is down or disabled (0).\n# TYPE trove_gateway_upstream_node_up gauge\n");
    for (bal, node, up, _) in &nodes {
        let _ = writeln!(s, "trove_gateway_upstream_node_up{{balancer=\"{}\",node=\"{}\"}} {}", esc(bal), esc(node), u8::from(*up));
    }
    s.push_str("# HELP trove_gateway_upstream_node_in_flight Requests in flight on a balancer's node.\n# TYPE trove_gateway_upstream_node_in_flight gauge\n");
    for (bal, node, _, st) in &nodes {
        let _ = writeln!(s, "trove_gateway_upstream_node_in_flight{{balancer=\"{}\",node=\"{}\"}} {}", esc(bal), esc(node), st.in_flight());
    }
    s.push_str("# HELP trove_gateway_upstream_health_check_failures_total Failed active health checks of a balancer's node.\n# TYPE trove_gateway_upstream_health_check_failures_total counter\n");
    for (bal, node, _, st) in &nodes {
        let _ = writeln!(s, "trove_gateway_upstream_health_check_failures_total{{balancer=\"{}\",node=\"{}\"}} {}", esc(bal), esc(node), st.figures()[3]);
    }
    s.push_str("# HELP trove_gateway_upstream_retries_total Requests that failed on a balancer's node and were retried on another.\n# TYPE trove_gateway_upstream_retries_total counter\n");
    for (bal, node, _, st) in &nodes {
        let _ = writeln!(s, "trove_gateway_upstream_retries_total{{balancer=\"{}\",node=\"{}\"}} {}", esc(bal), esc(node), st.figures()[4]);
    }
    s
}
