//! Several upstream nodes behind one route, as mod_proxy_balancer runs them: choosing a node
//! for a request (byrequests, bybusyness), knowing which nodes are up (active health checks as
//! mod_proxy_hcheck's, passive marks after a failed connect as a worker's `retry=`), and what
//! each node did, for the metrics.
//!
//! The configuration says what the balancers are; their live state is here, one [`Group`] per
//! balanced route, built again with each configuration. The state of each node (health,
//! counters) is kept in a [`Registry`] that outlives reloads, so a reload (to drain a node, say)
//! neither forgets that a node is down nor resets its figures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::config::{Balancer, GatewayConfig, HcMethod, HealthCheck, LbMethod, Member, Upstream};

/// Every balanced route's live state, by balancer.
#[derive(Default)]
pub struct Balancers {
    /// Balancer name → the groups of the routes that use it (one per route URL).
    groups: HashMap<String, Vec<Arc<Group>>>,
    registry: Arc<Registry>,
}

/// The state of every node ever configured, by (balancer name, `host:port`): kept across
/// reloads (see the module's comment).
#[derive(Default)]
pub struct Registry {
    nodes: Mutex<HashMap<(String, String), Arc<NodeState>>>,
}

/// One balanced route: its balancer's configuration and its nodes' state, in member order.
pub struct Group {
    pub cfg: Balancer,
    nodes: Vec<Arc<NodeState>>,
    /// Serialises byrequests' arithmetic (a few additions per request, never held across I/O).
    lb: Mutex<()>,
}

/// What is known about one node.
#[derive(Default)]
pub struct NodeState {
    in_flight: AtomicUsize,
    /// mod_lbmethod_byrequests' `lbstatus`: how much the node is owed.
    lbstatus: AtomicI64,
    /// The active checks' verdict (or a failed connect's, for a node that has checks).
    down: AtomicBool,
    /// A failed connect keeps a node without checks out until then (`retry=`).
    down_until: Mutex<Option<Instant>>,
    /// Consecutive check failures and passes.
    streak: Mutex<(u32, u32)>,
    pub(crate) answered: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) connect_failed: AtomicU64,
    pub(crate) check_failures: AtomicU64,
    /// Requests that failed here and were retried on another node.
    pub(crate) retried: AtomicU64,
}

/// How an attempt on a node ended, for its figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The node sent a response head.
    Answered,
    /// Connected, then failed (closed, timed out, sent garbage).
    Failed,
    /// The connect was refused, failed or timed out: nothing was sent.
    ConnectFailed,
}

impl NodeState {
    fn is_up(&self, now: Instant) -> bool {
        !self.down.load(Ordering::Acquire) && self.down_until.lock().expect("node").is_none_or(|t| now >= t)
    }

    /// One node's figures: answered, failed, connect failures, check failures, retries away.
    pub(crate) fn figures(&self) -> [u64; 5] {
        [&self.answered, &self.failed, &self.connect_failed, &self.check_failures, &self.retried].map(|a| a.load(Ordering::Relaxed))
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// A request in flight on a node, counted (bybusyness) until dropped.
pub struct InFlight(Arc<NodeState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The node chosen for a request.
pub struct Picked<'a> {
    pub group: &'a Arc<Group>,
    pub index: usize,
    /// Taken by the origin connection that carries the request, so that it counts until the
    /// response has been sent.
    pub in_flight: Option<InFlight>,
}

impl<'a> Picked<'a> {
    pub fn upstream(&self) -> &'a Upstream {
        &self.group.cfg.members[self.index].upstream
    }
}

impl Balancers {
    /// The groups of `cfg`'s balanced routes, with the state of nodes already known to
    /// `registry`; their active health checks start on the current tokio runtime (if any) and
    /// stop when the group is dropped (its configuration replaced and its last request done).
    pub fn build(cfg: &GatewayConfig, registry: Arc<Registry>) -> Balancers {
        let mut groups: HashMap<String, Vec<Arc<Group>>> = HashMap::new();
        for r in cfg.servers.iter().flat_map(|v| &v.routes) {
            let Some(b) = &r.balancer else { continue };
            let list = groups.entry(b.name.clone()).or_default();
            // A virtual server inherits the main server's routes: one group serves both.
            if list.iter().any(|g| g.cfg.url == b.url) {
                continue;
            }
            let nodes = b.members.iter().map(|m| registry.node(&b.name, &m.upstream)).collect();
            let g = Arc::new(Group { cfg: b.clone(), nodes, lb: Mutex::new(()) });
            spawn_checks(&g);
            list.push(g);
        }
        Balancers { groups, registry }
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// The group of a balanced route.
    pub fn group(&self, b: &Balancer) -> Option<&Arc<Group>> {
        self.groups.get(&b.name)?.iter().find(|g| g.cfg.url == b.url)
    }

    /// Every node of every balancer, for the metrics: (balancer, node URL, usable now, state).
    pub(crate) fn nodes(&self) -> Vec<(String, String, bool, Arc<NodeState>)> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for g in self.groups.values().flatten() {
            for (m, n) in g.cfg.members.iter().zip(&g.nodes) {
                let node = node_key(&m.upstream);
                if seen.insert((g.cfg.name.clone(), node.clone())) {
                    out.push((g.cfg.name.clone(), node, n.is_up(now) && !m.disabled, n.clone()));
                }
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}

fn node_key(u: &Upstream) -> String {
    format!("{}:{}", u.host, u.port)
}

impl Registry {
    fn node(&self, balancer: &str, u: &Upstream) -> Arc<NodeState> {
        self.nodes.lock().expect("registry").entry((balancer.to_string(), node_key(u))).or_default().clone()
    }
}

impl Group {
    /// Choose a node for a request, leaving out those in `tried`; `None` when no node is usable
    /// (every one down, disabled, draining, or tried).
    ///
    /// As mod_proxy_balancer: hot standbys only when no other node is usable; byrequests gives
    /// every usable node its `loadfactor` and takes the node most owed, which then pays the
    /// total back (a weighted round robin, smooth across nodes); bybusyness takes the node with
    /// the fewest requests in flight, and breaks ties as byrequests would.
    pub fn pick(self: &Arc<Self>, tried: &[usize]) -> Option<Picked<'_>> {
        let now = Instant::now();
        let members = &self.cfg.members;
        let usable = |i: usize| {
            let m: &Member = &members[i];
            !tried.contains(&i) && !m.disabled && !m.drain && self.nodes[i].is_up(now)
        };
        let mut set: Vec<usize> = (0..members.len()).filter(|&i| usable(i) && !members[i].hot_standby).collect();
        if set.is_empty() {
            set = (0..members.len()).filter(|&i| usable(i) && members[i].hot_standby).collect();
        }
        if set.is_empty() {
            return None;
        }
        if self.cfg.method == LbMethod::ByBusyness {
            let least = set.iter().map(|&i| self.nodes[i].in_flight()).min().unwrap_or(0);
            set.retain(|&i| self.nodes[i].in_flight() == least);
        }
        let index = {
            let _lb = self.lb.lock().expect("balancer");
            let mut total = 0i64;
            let mut best = set[0];
            let mut best_status = i64::MIN;
            for &i in &set {
                let lf = i64::from(members[i].loadfactor);
                total += lf;
                let s = self.nodes[i].lbstatus.fetch_add(lf, Ordering::Relaxed) + lf;
                if s > best_status {
                    best_status = s;
                    best = i;
                }
            }
            self.nodes[best].lbstatus.fetch_sub(total, Ordering::Relaxed);
            best
        };
        let node = self.nodes[index].clone();
        node.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(Picked { group: self, index, in_flight: Some(InFlight(node)) })
    }

    /// Count what an attempt on node `i` did; a failed connect also takes the node out: until
    /// its checks pass again when it has them, else for its `retry` (Apache's worker error
    /// state).
    pub fn record(&self, i: usize, outcome: Outcome) {
        let n = &self.nodes[i];
        match outcome {
            Outcome::Answered => n.answered.fetch_add(1, Ordering::Relaxed),
            Outcome::Failed => n.failed.fetch_add(1, Ordering::Relaxed),
            Outcome::ConnectFailed => n.connect_failed.fetch_add(1, Ordering::Relaxed),
        };
        if outcome != Outcome::ConnectFailed {
            return;
        }
        let m = &self.cfg.members[i];
        if m.health.is_some() {
            *n.streak.lock().expect("node") = (0, 0);
            if !n.down.swap(true, Ordering::AcqRel) {
                tracing::error!("{} node {} refused or failed a connect; it is down until its health check passes", self.cfg.name, m.upstream.url);
            }
        } else if !m.upstream.retry.is_zero() {
            let mut until = n.down_until.lock().expect("node");
            if until.is_none_or(|t| Instant::now() >= t) {
                tracing::error!("{} node {} refused or failed a connect; it is left out for {:?} (retry)", self.cfg.name, m.upstream.url, m.upstream.retry);
            }
            *until = Some(Instant::now() + m.upstream.retry);
        }
    }

    /// A request that failed on node `i` is tried on another one.
    pub fn retried(&self, i: usize) {
        self.nodes[i].retried.fetch_add(1, Ordering::Relaxed);
    }

    /// The result of one active check of node `i`.
    fn checked(&self, i: usize, passed: bool, hc: &HealthCheck) {
        let n = &self.nodes[i];
        let url = &self.cfg.members[i].upstream.url;
        let mut streak = n.streak.lock().expect("node");
        if passed {
            *streak = (0, streak.1.saturating_add(1));
            if streak.1 >= hc.passes && n.down.swap(false, Ordering::AcqRel) {
                *n.down_until.lock().expect("node") = None;
                tracing::warn!("{} node {url} passed {} health check(s) in a row; it is up again", self.cfg.name, streak.1);
            }
        } else {
            n.check_failures.fetch_add(1, Ordering::Relaxed);
            *streak = (streak.0.saturating_add(1), 0);
            if streak.0 >= hc.fails && !n.down.swap(true, Ordering::AcqRel) {
                tracing::error!("{} node {url} failed {} health check(s) in a row ({} {}); it is down", self.cfg.name, streak.0, hc.method.as_str(), hc.path);
            }
        }
    }
}

/// One task per checked node, on the current runtime, while the group lives.
fn spawn_checks(g: &Arc<Group>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    for (i, m) in g.cfg.members.iter().enumerate() {
        let Some(hc) = m.health.clone() else { continue };
        let weak: Weak<Group> = Arc::downgrade(g);
        rt.spawn(async move {
            loop {
                let Some(up) = weak.upgrade().map(|g| g.cfg.members[i].upstream.clone()) else { return };
                let passed = check(&up, &hc).await;
                match weak.upgrade() {
                    Some(g) => g.checked(i, passed, &hc),
                    None => return,
                }
                tokio::time::sleep(hc.interval).await;
            }
        });
    }
}

/// One health check (mod_proxy_hcheck): a connect, and for GET/HEAD/OPTIONS a request whose
/// answer passes with a 2xx or 3xx status, all within the check's timeout.
pub(crate) async fn check(up: &Upstream, hc: &HealthCheck) -> bool {
    let run = async {
        let mut s = crate::upstream::connect_tcp(up).await.ok()?;
        if hc.method == HcMethod::Tcp {
            return Some(true);
        }
        let authority = up.authority.to_str().unwrap_or("localhost");
        let req =
            format!("{} {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: trove-gateway health check\r\nConnection: close\r\n\r\n", hc.method.as_str(), hc.path);
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = Vec::with_capacity(256);
        while !head.contains(&b'\n') && head.len() < 1024 {
            let mut b = [0u8; 256];
            let n = s.read(&mut b).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&b[..n]);
        }
        let line = std::str::from_utf8(&head).ok()?.lines().next()?;
        let mut parts = line.split_ascii_whitespace();
        let version = parts.next()?;
        let status: u16 = parts.next()?.parse().ok()?;
        Some(version.starts_with("HTTP/1.") && (200..400).contains(&status))
    };
    tokio::time::timeout(hc.timeout.max(Duration::from_millis(100)), run).await.ok().flatten().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;

    fn member(port: u16, loadfactor: u32) -> Member {
        let url = format!("http://127.0.0.1:{port}");
        Member {
            upstream: Upstream {
                url: url.clone(),
                host: "127.0.0.1".into(),
                port,
                path: String::new(),
                connect_timeout: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                retry: Duration::from_secs(60),
                tcp_keepalive: false,
                disable_reuse: false,
                ttl: None,
                max: 0,
                upgrade: None,
                authority: Upstream::authority_of("127.0.0.1", port).unwrap(),
            },
            loadfactor,
            route: None,
            hot_standby: false,
            disabled: false,
            drain: false,
            health: None,
        }
    }

    fn group(method: LbMethod, members: Vec<Member>) -> Arc<Group> {
        let cfg = Balancer { name: "balancer://t".into(), url: "balancer://t/".into(), method, max_attempts: members.len() - 1, members };
        let nodes = cfg.members.iter().map(|_| Arc::new(NodeState::default())).collect();
        let _ = Origin::default();
        Arc::new(Group { cfg, nodes, lb: Mutex::new(()) })
    }

    fn picks(g: &Arc<Group>, n: usize) -> Vec<usize> {
        (0..n).map(|_| g.pick(&[]).map(|p| p.index).unwrap()).collect()
    }

    #[test]
    fn byrequests_is_a_weighted_round_robin() {
        let g = group(LbMethod::ByRequests, vec![member(1, 1), member(2, 1)]);
        assert_eq!(picks(&g, 4), vec![0, 1, 0, 1]);
        let g = group(LbMethod::ByRequests, vec![member(1, 3), member(2, 1)]);
        let p = picks(&g, 8);
        assert_eq!(p.iter().filter(|&&i| i == 0).count(), 6, "{p:?}");
        // Smooth: never three of the heavy node's in a row before the light one's turn.
        assert_eq!(&p[..4], &[0, 0, 1, 0], "{p:?}");
    }

    #[test]
    fn bybusyness_takes_the_node_with_fewest_in_flight() {
        let g = group(LbMethod::ByBusyness, vec![member(1, 1), member(2, 1), member(3, 1)]);
        let a = g.pick(&[]).unwrap();
        let b = g.pick(&[]).unwrap();
        assert_ne!(a.index, b.index);
        let c = g.pick(&[]).unwrap();
        assert!(![a.index, b.index].contains(&c.index));
        let free = b.index;
        drop(b);
        assert_eq!(g.pick(&[]).unwrap().index, free, "the only idle node");
        drop((a, c));
    }

    #[test]
    fn standby_draining_disabled_tried_and_down_nodes_are_left_out() {
        let mut standby = member(3, 1);
        standby.hot_standby = true;
        let mut draining = member(4, 1);
        draining.drain = true;
        let mut disabled = member(5, 1);
        disabled.disabled = true;
        let g = group(LbMethod::ByRequests, vec![member(1, 1), member(2, 1), standby, draining, disabled]);
        assert!(picks(&g, 6).iter().all(|&i| i < 2));
        assert_eq!(g.pick(&[0]).unwrap().index, 1);
        g.record(1, Outcome::ConnectFailed);
        assert_eq!(g.pick(&[0]).unwrap().index, 2, "the hot standby, once no other node is usable");
        assert!(g.pick(&[0, 2]).is_none());
        // Down for its retry only.
        *g.nodes[1].down_until.lock().unwrap() = Some(Instant::now());
        assert_eq!(g.pick(&[0]).unwrap().index, 1);
    }

    #[test]
    fn checks_take_a_node_down_after_fails_and_back_after_passes() {
        let mut m = member(1, 1);
        let hc =
            HealthCheck { method: HcMethod::Get, path: "/".into(), interval: Duration::from_secs(1), passes: 2, fails: 3, timeout: Duration::from_secs(1) };
        m.health = Some(hc.clone());
        let g = group(LbMethod::ByRequests, vec![m]);
        let up = |g: &Arc<Group>| g.pick(&[]).is_some();
        g.checked(0, false, &hc);
        g.checked(0, false, &hc);
        assert!(up(&g));
        g.checked(0, false, &hc);
        assert!(!up(&g));
        g.checked(0, true, &hc);
        assert!(!up(&g));
        g.checked(0, true, &hc);
        assert!(up(&g));
        // A refused connect takes a checked node down until its checks pass again.
        g.record(0, Outcome::ConnectFailed);
        assert!(!up(&g));
        g.checked(0, true, &hc);
        g.checked(0, true, &hc);
        assert!(up(&g));
        assert_eq!(g.nodes[0].figures(), [0, 0, 1, 3, 0]);
    }
}
