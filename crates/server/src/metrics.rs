//! The server's Prometheus metrics: git operations by kind and outcome (counted in the git
//! service, so every transport is), request latencies by route template and status class,
//! maintenance runs, git processes, the body budget, and this node's id. Served by the metrics
//! listener (`[metrics] listen`, `lib.rs`); docs/server.md lists every family.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trove_http::prometheus::{Histogram, Kind, LONG_BUCKETS, REQUEST_BUCKETS, Text};

use crate::node::NodeId;
use crate::pktline::PushReport;

/// What a git operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GitKind {
    /// The refs: `info/refs` for either service, or a protocol v2 `ls-refs`.
    Advertisement,
    UploadPack,
    ReceivePack,
}

const GIT_KINDS: [GitKind; 3] = [GitKind::Advertisement, GitKind::UploadPack, GitKind::ReceivePack];

impl GitKind {
    fn label(self) -> &'static str {
        match self {
            GitKind::Advertisement => "advertisement",
            GitKind::UploadPack => "upload-pack",
            GitKind::ReceivePack => "receive-pack",
        }
    }
}

/// How a git operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GitOutcome {
    /// git did what was asked.
    Ok,
    /// git ran and refused the push or one of its refs (its report says `ng` or an unpack
    /// error: a hook declined, a bad pack).
    Refused,
    /// git failed (non-zero exit, could not start) for another reason.
    Failed,
    /// The client went away, or the server stopped git at shutdown.
    Cancelled,
}

const GIT_OUTCOMES: [GitOutcome; 4] = [GitOutcome::Ok, GitOutcome::Refused, GitOutcome::Failed, GitOutcome::Cancelled];

impl GitOutcome {
    fn label(self) -> &'static str {
        match self {
            GitOutcome::Ok => "ok",
            GitOutcome::Refused => "refused",
            GitOutcome::Failed => "failed",
            GitOutcome::Cancelled => "cancelled",
        }
    }
}

/// How a maintenance run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MaintenanceOutcome {
    Ok,
    /// A step failed (the others still ran).
    Failed,
    /// Stopped by shutdown before every step ran.
    Cancelled,
}

const MAINTENANCE_OUTCOMES: [MaintenanceOutcome; 3] = [MaintenanceOutcome::Ok, MaintenanceOutcome::Failed, MaintenanceOutcome::Cancelled];

impl MaintenanceOutcome {
    fn label(self) -> &'static str {
        match self {
            MaintenanceOutcome::Ok => "ok",
            MaintenanceOutcome::Failed => "failed",
            MaintenanceOutcome::Cancelled => "cancelled",
        }
    }
}

/// Figures the server keeps elsewhere, read at each scrape.
pub(crate) struct Gauges {
    pub(crate) git_running: usize,
    pub(crate) git_started: u64,
    pub(crate) body_bytes_in_use: u64,
    pub(crate) body_bytes_cap: u64,
    /// The PostgreSQL pool (`None` on SQLite).
    pub(crate) pool: Option<trove_store::PoolStats>,
    /// The memory of object reads for pages and REST: hits, misses, bytes kept.
    pub(crate) object_reads: (u64, u64, usize),
    /// The pack cache (`None` when it is off).
    pub(crate) pack_cache: Option<crate::pack_cache::Stats>,
}

pub(crate) struct Metrics {
    node_id: NodeId,
    /// `[kind][outcome]`, in the order of `GIT_KINDS` and `GIT_OUTCOMES`.
    git: [[Histogram; 4]; 3],
    git_received: [AtomicU64; 3],
    git_sent: [AtomicU64; 3],
    /// Route template → one histogram per status class (1xx to 5xx). Templates come from the
    /// router, never from clients, so the table stays as small as the router.
    requests: Mutex<BTreeMap<String, [Histogram; 5]>>,
    maintenance: [Histogram; 3],
}

impl Metrics {
    pub(crate) fn new(node_id: NodeId) -> Metrics {
        Metrics {
            node_id,
            git: std::array::from_fn(|_| std::array::from_fn(|_| Histogram::new(LONG_BUCKETS))),
            git_received: Default::default(),
            git_sent: Default::default(),
            requests: Mutex::default(),
            maintenance: std::array::from_fn(|_| Histogram::new(LONG_BUCKETS)),
        }
    }

    /// One request answered: `route` is the matched route template with the context path
    /// removed (`-` when no route matched); for a streamed git answer the time is to its head.
    pub(crate) fn request(&self, route: &str, status: u16, took: Duration) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        match requests.get(route) {
            Some(h) => h[class].observe(took),
            None => requests.entry(route.to_owned()).or_insert_with(|| std::array::from_fn(|_| Histogram::new(REQUEST_BUCKETS)))[class].observe(took),
        }
    }

    pub(crate) fn maintenance(&self, outcome: MaintenanceOutcome, took: Duration) {
        let i = MAINTENANCE_OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        self.maintenance[i].observe(took);
    }

    fn git(&self, kind: GitKind, outcome: GitOutcome, took: Duration, received: u64, sent: u64) {
        let k = GIT_KINDS.iter().position(|x| *x == kind).unwrap_or(0);
        let o = GIT_OUTCOMES.iter().position(|x| *x == outcome).unwrap_or(0);
        self.git[k][o].observe(took);
        self.git_received[k].fetch_add(received, Ordering::Relaxed);
        self.git_sent[k].fetch_add(sent, Ordering::Relaxed);
    }

    /// The text of one scrape.
    pub(crate) fn render(&self, gauges: &Gauges) -> String {
        let mut t = Text::new();
        t.family("trove_server_info", "This node: its id and Trove's version; always 1.", Kind::Gauge).sample(
            "trove_server_info",
            &[("node_id", self.node_id.as_str()), ("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        t.family(
            "trove_server_git_operation_seconds",
            "Git operations by kind (advertisement, upload-pack, receive-pack) and outcome (ok, refused, failed, cancelled), from the request until git is done.",
            Kind::Histogram,
        );
        for (k, kind) in GIT_KINDS.iter().enumerate() {
            for (o, outcome) in GIT_OUTCOMES.iter().enumerate() {
                t.histogram("trove_server_git_operation_seconds", &[("kind", kind.label()), ("outcome", outcome.label())], &self.git[k][o]);
            }
        }
        t.family("trove_server_git_received_bytes_total", "Bytes from clients to git (fetch negotiations, pushed packs), by kind.", Kind::Counter);
        for (k, kind) in GIT_KINDS.iter().enumerate() {
            t.sample("trove_server_git_received_bytes_total", &[("kind", kind.label())], self.git_received[k].load(Ordering::Relaxed));
        }
        t.family("trove_server_git_sent_bytes_total", "Bytes from git to clients (advertisements, packs, push reports), by kind.", Kind::Counter);
        for (k, kind) in GIT_KINDS.iter().enumerate() {
            t.sample("trove_server_git_sent_bytes_total", &[("kind", kind.label())], self.git_sent[k].load(Ordering::Relaxed));
        }
        t.family("trove_server_git_processes_running", "git upload-pack/receive-pack processes serving clients now.", Kind::Gauge).sample(
            "trove_server_git_processes_running",
            &[],
            gauges.git_running,
        );
        t.family("trove_server_git_processes_started_total", "git upload-pack/receive-pack processes started for clients.", Kind::Counter).sample(
            "trove_server_git_processes_started_total",
            &[],
            gauges.git_started,
        );
        t.family("trove_server_request_seconds", "HTTP requests (REST, pages, git) by route template and status class, to the response head.", Kind::Histogram);
        {
            let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            for (route, by_class) in requests.iter() {
                for (i, h) in by_class.iter().enumerate() {
                    if h.count() > 0 {
                        let class = format!("{}xx", i + 1);
                        t.histogram("trove_server_request_seconds", &[("route", route), ("status", &class)], h);
                    }
                }
            }
        }
        t.family("trove_server_maintenance_seconds", "Maintenance runs after pushes (repack, commit-graph, gc --auto) by outcome.", Kind::Histogram);
        for (i, outcome) in MAINTENANCE_OUTCOMES.iter().enumerate() {
            t.histogram("trove_server_maintenance_seconds", &[("outcome", outcome.label())], &self.maintenance[i]);
        }
        t.family("trove_server_request_body_bytes_in_use", "Memory held by request bodies read whole (the body budget).", Kind::Gauge).sample(
            "trove_server_request_body_bytes_in_use",
            &[],
            gauges.body_bytes_in_use,
        );
        t.family("trove_server_request_body_bytes_limit", "The body budget (max_buffered_request_bytes); 0 means no cap.", Kind::Gauge).sample(
            "trove_server_request_body_bytes_limit",
            &[],
            gauges.body_bytes_cap,
        );
        let (hits, misses, kept) = gauges.object_reads;
        t.family(
            "trove_server_object_reads_total",
            "git reads for pages and REST that name only object ids (trees, blobs, logs, diffs, blame), by whether their output was remembered (hit) or git ran (miss).",
            Kind::Counter,
        );
        t.sample("trove_server_object_reads_total", &[("result", "hit")], hits);
        t.sample("trove_server_object_reads_total", &[("result", "miss")], misses);
        t.family("trove_server_object_reads_bytes", "Bytes of remembered object reads (at most 64 MiB).", Kind::Gauge).sample(
            "trove_server_object_reads_bytes",
            &[],
            kept,
        );
        render_store(&mut t, gauges.pool);
        render_pack_cache(&mut t, gauges.pack_cache.as_ref());
        t.finish()
    }
}

/// The pack cache's families (none when it is off).
fn render_pack_cache(t: &mut Text, stats: Option<&crate::pack_cache::Stats>) {
    let Some(s) = stats else { return };
    t.family(
        "trove_server_pack_cache_requests_total",
        "Upload-pack requests by how the pack cache answered: hit (a whole cached answer), miss (started a git run), shared (joined a run in flight), bypass (not cacheable: git ran for it alone).",
        Kind::Counter,
    );
    for (i, o) in crate::pack_cache::OUTCOMES.iter().enumerate() {
        t.sample("trove_server_pack_cache_requests_total", &[("result", o.label())], s.requests[i]);
    }
    t.family("trove_server_pack_cache_evictions_total", "Cached answers removed: over the disk bound, or older than max_age.", Kind::Counter).sample(
        "trove_server_pack_cache_evictions_total",
        &[],
        s.evictions,
    );
    t.family("trove_server_pack_cache_bytes", "Bytes of the pack cache's files on disk, the answers being written included.", Kind::Gauge).sample(
        "trove_server_pack_cache_bytes",
        &[],
        s.bytes,
    );
    t.family("trove_server_pack_cache_limit_bytes", "The pack cache's disk bound ([pack_cache] max_bytes).", Kind::Gauge).sample(
        "trove_server_pack_cache_limit_bytes",
        &[],
        s.max_bytes,
    );
    t.family("trove_server_pack_cache_entries", "Answers in the pack cache, whole or being written.", Kind::Gauge).sample(
        "trove_server_pack_cache_entries",
        &[],
        s.entries,
    );
    t.family(
        "trove_server_pack_cache_sent_bytes_total",
        "Bytes sent to clients from the pack cache's files (every cached or shared answer, the first reader's included).",
        Kind::Counter,
    )
    .sample("trove_server_pack_cache_sent_bytes_total", &[], s.sent_bytes);
}

/// The metadata store's families: PostgreSQL's connection pool (SQLite has none to show).
fn render_store(t: &mut Text, pool: Option<trove_store::PoolStats>) {
    let Some(p) = pool else { return };
    t.family("trove_server_db_connections", "PostgreSQL connections of this node, by state (busy, idle) and the pool's size.", Kind::Gauge);
    t.sample("trove_server_db_connections", &[("state", "busy")], p.open.saturating_sub(p.idle));
    t.sample("trove_server_db_connections", &[("state", "idle")], p.idle);
    t.sample("trove_server_db_connections", &[("state", "max")], p.size);
    t.family("trove_server_db_pool_waits_total", "Store calls that waited for a free PostgreSQL connection.", Kind::Counter);
    t.sample("trove_server_db_pool_waits_total", &[], p.waits);
}

/// One git operation being measured: created when it starts, recorded when the last of its
/// parts (the caller, git's supervisor, the answer's stream) lets go of it. An operation let go
/// of without an outcome was abandoned: cancelled.
#[derive(Clone)]
pub(crate) struct GitOp(Arc<OpInner>);

struct OpInner {
    metrics: Arc<Metrics>,
    kind: GitKind,
    started: Instant,
    received: AtomicU64,
    sent: AtomicU64,
    state: Mutex<OpState>,
}

#[derive(Default)]
struct OpState {
    /// git's result: `Some(true)` exited 0, `Some(false)` failed.
    exited: Option<bool>,
    /// The client went away (its request body broke off, or its answer was dropped before the
    /// end) or git was stopped.
    cancelled: bool,
    /// What a push's report said.
    report: Option<PushReport>,
}

impl GitOp {
    pub(crate) fn start(metrics: &Arc<Metrics>, kind: GitKind) -> GitOp {
        GitOp(Arc::new(OpInner {
            metrics: metrics.clone(),
            kind,
            started: Instant::now(),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            state: Mutex::default(),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, OpState> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads a push's report from git's output (`advertisement`: a session's output starts
    /// with the refs).
    pub(crate) fn watch_report(&self, advertisement: bool) {
        self.state().report = Some(PushReport::new(advertisement));
    }

    pub(crate) fn received(&self, n: usize) {
        self.0.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self, data: &[u8]) {
        self.0.sent.fetch_add(data.len() as u64, Ordering::Relaxed);
        if let Some(r) = &mut self.state().report {
            r.feed(data);
        }
    }

    pub(crate) fn exited(&self, success: bool) {
        self.state().exited = Some(success);
    }

    pub(crate) fn cancelled(&self) {
        self.state().cancelled = true;
    }
}

impl Drop for OpInner {
    fn drop(&mut self) {
        let state = std::mem::take(self.state.get_mut().unwrap_or_else(|e| e.into_inner()));
        // A client that went away decides first: what git said then (a truncated pack's
        // "unpack error", an EPIPE) is a consequence, and may or may not have been read.
        let outcome = if state.cancelled {
            GitOutcome::Cancelled
        } else if state.report.as_ref().is_some_and(PushReport::refused) {
            GitOutcome::Refused
        } else {
            match state.exited {
                Some(true) => GitOutcome::Ok,
                Some(false) => GitOutcome::Failed,
                None => GitOutcome::Cancelled,
            }
        };
        self.metrics.git(self.kind, outcome, self.started.elapsed(), *self.received.get_mut(), *self.sent.get_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(NodeId::parse("n1").unwrap()))
    }

    fn gauges() -> Gauges {
        Gauges { git_running: 0, git_started: 0, body_bytes_in_use: 0, body_bytes_cap: 0, pool: None, object_reads: (0, 0, 0), pack_cache: None }
    }

    fn count(text: &str, kind: &str, outcome: &str) -> u64 {
        let line = format!("trove_server_git_operation_seconds_count{{kind=\"{kind}\",outcome=\"{outcome}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&line)).unwrap_or_else(|| panic!("no {line}")).parse().unwrap()
    }

    #[test]
    fn an_operation_is_counted_once_with_its_outcome_when_every_part_lets_go() {
        let m = metrics();
        type Act<'a> = &'a dyn Fn(&GitOp);
        let cases: &[(Act, &str)] = &[
            (&|op| op.exited(true), "ok"),
            (&|op| op.exited(false), "failed"),
            (
                &|op| {
                    op.cancelled();
                    op.exited(false)
                },
                "cancelled",
            ),
            // Let go of without an outcome: the caller went away first.
            (&|_| {}, "cancelled"),
            // The client went away before its answer's end, even if git finished.
            (
                &|op| {
                    op.cancelled();
                    op.exited(true)
                },
                "cancelled",
            ),
            (
                &|op| {
                    use crate::pktline::{FLUSH, encode};
                    let report = [encode(b"ng refs/heads/x hook declined\n").unwrap(), FLUSH.to_vec()].concat();
                    op.watch_report(false);
                    op.sent(&[encode(&[&[1u8][..], &report].concat()).unwrap(), FLUSH.to_vec()].concat());
                    op.exited(true)
                },
                "refused",
            ),
        ];
        for (act, outcome) in cases {
            let before = count(&m.render(&gauges()), "receive-pack", outcome);
            let op = GitOp::start(&m, GitKind::ReceivePack);
            let other_part = op.clone();
            act(&op);
            drop(op);
            assert_eq!(count(&m.render(&gauges()), "receive-pack", outcome), before, "recorded before every part let go");
            drop(other_part);
            assert_eq!(count(&m.render(&gauges()), "receive-pack", outcome), before + 1, "{outcome}");
        }
    }

    #[test]
    fn requests_are_kept_by_route_and_status_class() {
        let m = metrics();
        m.request("/rest/api/1.0/projects/{projectKey}/repos", 200, Duration::from_millis(3));
        m.request("/rest/api/1.0/projects/{projectKey}/repos", 204, Duration::from_millis(3));
        m.request("-", 404, Duration::from_millis(1));
        let text = m.render(&gauges());
        assert!(text.contains("trove_server_request_seconds_count{route=\"/rest/api/1.0/projects/{projectKey}/repos\",status=\"2xx\"} 2\n"), "{text}");
        assert!(text.contains("trove_server_request_seconds_count{route=\"-\",status=\"4xx\"} 1\n"), "{text}");
        assert!(!text.contains("status=\"3xx\""), "{text}");
        assert!(text.contains("trove_server_info{node_id=\"n1\",version=\""), "{text}");
    }
}
