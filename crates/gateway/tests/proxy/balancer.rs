//! A route over several nodes (`upstreams`, `balancer://`): distribution by byrequests and
//! bybusyness, a refused node routed around, a push body never replayed, active health checks
//! taking a node out and back, every node down, draining by reload, and the per-node metrics.
//! Real nodes on 127.0.0.1:0, started here; every wait is on a condition with a generous
//! deadline, never on a time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use trove_gateway::{Current, Gateway, GatewayConfig};

use crate::{Running, get, parse_apache, parse_toml};

/// A server node: answers with its name, records what it served, and can be made unhealthy
/// (its `/health` answers 503), hold requests (`/stash/hold`), or die on a request
/// (`/stash/die-NAME/…`: read the head, then close).
#[derive(Clone)]
struct Node {
    addr: SocketAddr,
    name: &'static str,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    healthy: Arc<AtomicBool>,
    release: Arc<tokio::sync::Semaphore>,
}

impl Node {
    async fn start(name: &'static str) -> Node {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node = Node {
            addr: l.local_addr().unwrap(),
            name,
            seen: Arc::default(),
            healthy: Arc::new(AtomicBool::new(true)),
            release: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        let n = node.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let _ = s.set_nodelay(true);
                let n = n.clone();
                tokio::spawn(async move {
                    let _ = n.serve(s).await;
                });
            }
        });
        node
    }

    async fn serve(&self, mut s: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        loop {
            let end = loop {
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p + 4;
                }
                let mut tmp = [0u8; 16384];
                let n = s.read(&mut tmp).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&tmp[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end);
            let mut first = head.split_ascii_whitespace();
            let (method, target) = (first.next().unwrap_or("").to_string(), first.next().unwrap_or("").to_string());
            let length: usize = head
                .lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0);
            if target == "/health" {
                let status = if self.healthy.load(Ordering::SeqCst) { "200 OK" } else { "503 Unavailable" };
                s.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes()).await?;
                return Ok(());
            }
            self.seen.lock().unwrap().push((method.clone(), target.clone()));
            if target.starts_with(&format!("/stash/die-{}/", self.name)) {
                // A node killed in the middle of a push: the connection just ends.
                return Ok(());
            }
            while buf.len() < length {
                let mut tmp = [0u8; 65536];
                let n = s.read(&mut tmp).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            buf.drain(..length);
            if target.starts_with("/stash/hold") {
                self.release.acquire().await.unwrap().forget();
            }
            s.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}", self.name.len(), self.name).as_bytes()).await?;
        }
    }

    fn served(&self, path_prefix: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|(_, t)| t.starts_with(path_prefix)).count()
    }
}

/// A port where nothing listens: connects to it are refused.
async fn refusing_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// The gateway, its live configuration (for reloads) and its admin address.
async fn start(cfg: GatewayConfig) -> (Running, Current, Option<SocketAddr>) {
    let gw = Gateway::bind(cfg, None).await.expect("bind gateway");
    let addr = gw.local_addrs()[0];
    let (current, admin) = (gw.current(), gw.admin_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        gw.serve(async {
            let _ = rx.await;
        })
        .await
    });
    (Running { addr, stop: Some(tx), task }, current, admin)
}

fn toml(nodes: &[String], extra: &str) -> GatewayConfig {
    let list: Vec<String> = nodes.iter().map(|n| if n.starts_with('{') { n.clone() } else { format!("\"{n}\"") }).collect();
    parse_toml(&format!(
        "[gateway]\nadmin_listen = \"127.0.0.1:0\"\n[[listen]]\naddr = \"127.0.0.1:0\"\n[[server]]\n[[server.route]]\npath = \"/stash\"\nupstreams = [{}]\ntimeout = 10\n{extra}",
        list.join(", ")
    ))
}

fn url(a: SocketAddr) -> String {
    format!("http://{a}/stash")
}

/// Wait for `cond`, asking again every 50 ms, for at most 20 s.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 20 s");
}

async fn metrics(admin: SocketAddr) -> String {
    crate::get(admin, "/metrics", "").await.body_str()
}

#[tokio::test]
async fn byrequests_shares_requests_by_loadfactor() {
    let (a, b) = (Node::start("a").await, Node::start("b").await);
    let (gw, _, _) = start(toml(&[url(a.addr), url(b.addr)], "")).await;
    for i in 0..6 {
        assert_eq!(get(gw.addr, &format!("/stash/r{i}"), "").await.status, 200);
    }
    assert_eq!((a.served("/stash/r"), b.served("/stash/r")), (3, 3));
    // loadfactor 3 against 1: three requests in four go to the first node.
    let (c, d) = (Node::start("c").await, Node::start("d").await);
    let (gw, _, _) = start(toml(&[format!("{{ url = \"{}\", loadfactor = 3 }}", url(c.addr)), url(d.addr)], "")).await;
    for i in 0..8 {
        assert_eq!(get(gw.addr, &format!("/stash/w{i}"), "").await.status, 200);
    }
    assert_eq!((c.served("/stash/w"), d.served("/stash/w")), (6, 2));
}

#[tokio::test]
async fn bybusyness_sends_requests_to_the_node_with_fewest_in_flight() {
    let (a, b) = (Node::start("a").await, Node::start("b").await);
    let (gw, _, _) = start(toml(&[url(a.addr), url(b.addr)], "balance = \"bybusyness\"\n")).await;
    // One request held on the first node…
    let addr = gw.addr;
    let held = tokio::spawn(async move { get(addr, "/stash/hold", "").await });
    eventually("the held request reaches a node", async || a.served("/stash/hold") + b.served("/stash/hold") == 1).await;
    let busy = if a.served("/stash/hold") == 1 { &a } else { &b };
    let idle = if busy.name == "a" { &b } else { &a };
    // …and every other request goes to the idle one while it is held.
    for i in 0..4 {
        let r = get(gw.addr, &format!("/stash/q{i}"), "").await;
        assert_eq!(r.body_str(), idle.name);
    }
    assert_eq!(busy.served("/stash/q"), 0);
    busy.release.add_permits(1);
    assert_eq!(held.await.unwrap().body_str(), busy.name);
}

#[tokio::test]
async fn a_node_that_refuses_connections_is_routed_around() {
    let dead = refusing_port().await;
    let b = Node::start("b").await;
    let (gw, _, admin) = start(toml(&[url(dead), url(b.addr)], "retry = 60\n")).await;
    // The first request goes to the dead node, is refused there, and is answered by the other.
    for i in 0..4 {
        let r = get(gw.addr, &format!("/stash/info/refs?service=git-upload-pack&{i}"), "").await;
        assert_eq!((r.status, r.body_str().as_str()), (200, "b"), "request {i}");
    }
    assert_eq!(b.served("/stash/info/refs"), 4);
    let m = metrics(admin.unwrap()).await;
    let dead_node = format!("node=\"{dead}\"");
    assert!(m.lines().any(|l| l.starts_with("trove_gateway_upstream_node_up{") && l.contains(&dead_node) && l.ends_with(" 0")), "{m}");
    assert!(m.lines().any(|l| l.starts_with("trove_gateway_upstream_retries_total{") && l.contains(&dead_node) && l.ends_with(" 1")), "{m}");
    assert!(
        m.lines().any(|l| l.starts_with("trove_gateway_upstream_node_requests_total{")
            && l.contains(&dead_node)
            && l.contains("connect_failed")
            && l.ends_with(" 1")),
        "{m}"
    );
    let b_answered =
        format!("trove_gateway_upstream_node_requests_total{{balancer=\"route /stash at test.toml:7\",node=\"{}\",outcome=\"answered\"}} 4", b.addr);
    assert!(m.contains(&b_answered), "{m}");
}

#[tokio::test]
async fn a_refused_node_is_routed_around_over_http2_too() {
    let dead = refusing_port().await;
    let b = Node::start("b").await;
    let (gw, _, _) = start(toml(&[url(dead), url(b.addr)], "")).await;
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-w", " %{http_code} %{http_version}"])
        .arg(format!("http://{}/stash/h2", gw.addr))
        .output()
        .await
        .expect("curl must be installed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b 200 2");
}

#[tokio::test]
async fn a_push_whose_body_started_is_never_replayed() {
    let (a, b) = (Node::start("a").await, Node::start("b").await);
    let (gw, _, _) = start(toml(&[url(a.addr), url(b.addr)], "")).await;
    // byrequests sends the first request to the first node, which dies under the push.
    let body = vec![b'P'; 4 << 20];
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /stash/die-a/git-receive-pack HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-git-receive-pack-request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&body).await;
        wr
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut answer)).await;
    drop(writer.await);
    let r = crate::parse_responses(&answer);
    assert_eq!(r.first().map(|r| r.status), Some(502), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(a.served("/stash/die"), 1);
    assert_eq!(b.served("/stash/die"), 0, "the push was sent to the other node");
    // The other node serves what comes next.
    assert_eq!(get(gw.addr, "/stash/after", "").await.status, 200);
}

#[tokio::test]
async fn health_checks_take_a_node_out_after_fails_and_back_after_passes() {
    let (a, b) = (Node::start("a").await, Node::start("b").await);
    let health = "[server.route.health]\npath = \"/health\"\ninterval = 0.1\nfails = 2\npasses = 2\n";
    let (gw, _, admin) = start(toml(&[url(a.addr), url(b.addr)], health)).await;
    let admin = admin.unwrap();
    let a_up = |up: u8| format!("trove_gateway_upstream_node_up{{balancer=\"route /stash at test.toml:7\",node=\"{}\"}} {up}", a.addr);
    a.healthy.store(false, Ordering::SeqCst);
    eventually("node a is marked down", async || metrics(admin).await.contains(&a_up(0))).await;
    for i in 0..4 {
        assert_eq!(get(gw.addr, &format!("/stash/down{i}"), "").await.body_str(), "b");
    }
    assert_eq!(a.served("/stash/down"), 0);
    let m = metrics(admin).await;
    assert!(
        m.lines().any(|l| l.starts_with("trove_gateway_upstream_health_check_failures_total{") && l.contains(&a.addr.to_string()) && !l.ends_with(" 0")),
        "{m}"
    );
    a.healthy.store(true, Ordering::SeqCst);
    eventually("node a is up again", async || metrics(admin).await.contains(&a_up(1))).await;
    for i in 0..4 {
        assert_eq!(get(gw.addr, &format!("/stash/up{i}"), "").await.status, 200);
    }
    assert_eq!(a.served("/stash/up"), 2);
}

#[tokio::test]
async fn every_node_down_is_a_503_that_says_so() {
    let (x, y) = (refusing_port().await, refusing_port().await);
    let (gw, _, _) = start(toml(&[url(x), url(y)], "")).await;
    // The first request finds both refusing; the next finds none usable.
    assert_eq!(get(gw.addr, "/stash/a", "").await.status, 503);
    let r = get(gw.addr, "/stash/b", "").await;
    assert_eq!(r.status, 503);
    assert!(r.body_str().contains("No server node is available"), "{}", r.body_str());
}

#[tokio::test]
async fn a_draining_node_takes_no_new_requests_and_finishes_those_in_flight() {
    let (a, b) = (Node::start("a").await, Node::start("b").await);
    let (gw, current, _) = start(toml(&[url(a.addr), url(b.addr)], "")).await;
    // A request in flight on the first node…
    let addr = gw.addr;
    let held = tokio::spawn(async move { get(addr, "/stash/hold", "").await });
    eventually("the held request reaches node a", async || a.served("/stash/hold") == 1).await;
    // …while a reload drains it (as SIGHUP does in `trove gateway`).
    current.apply(toml(&[format!("{{ url = \"{}\", drain = true }}", url(a.addr)), url(b.addr)], "")).unwrap();
    for i in 0..4 {
        assert_eq!(get(gw.addr, &format!("/stash/new{i}"), "").await.body_str(), "b");
    }
    assert_eq!(a.served("/stash/new"), 0);
    a.release.add_permits(1);
    let r = held.await.unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (200, "a"), "the request in flight finished on the draining node");
}

#[tokio::test]
async fn an_apache_balancer_spreads_requests_and_skips_hot_standby_and_drained_members() {
    let (a, b, standby, drained) = (Node::start("a").await, Node::start("b").await, Node::start("s").await, Node::start("n").await);
    let conf = format!(
        r#"Listen 127.0.0.1:0
<Proxy "balancer://mycluster">
    BalancerMember "http://{}" route=node1
    BalancerMember "http://{}" route=node2
    BalancerMember "http://{}" status=+H
    BalancerMember "http://{}" status=+N
    ProxySet lbmethod=byrequests
</Proxy>
ProxyPass /stash balancer://mycluster/stash
ProxyPassReverse /stash balancer://mycluster/stash
"#,
        a.addr, b.addr, standby.addr, drained.addr
    );
    let (gw, _, _) = start(parse_apache(&conf)).await;
    for i in 0..4 {
        assert_eq!(get(gw.addr, &format!("/stash/x{i}"), "").await.status, 200);
    }
    assert_eq!((a.served("/stash/x"), b.served("/stash/x"), standby.served("/stash/x"), drained.served("/stash/x")), (2, 2, 0, 0));
}

#[tokio::test]
async fn an_apache_hot_standby_answers_once_the_others_are_down() {
    let dead = refusing_port().await;
    let standby = Node::start("s").await;
    let conf = format!(
        "Listen 127.0.0.1:0\n<Proxy balancer://c>\nBalancerMember http://{dead}\nBalancerMember http://{} status=+H\n</Proxy>\nProxyPass /stash balancer://c/stash\n",
        standby.addr
    );
    let (gw, _, _) = start(parse_apache(&conf)).await;
    let r = get(gw.addr, "/stash/y", "").await;
    assert_eq!((r.status, r.body_str().as_str()), (200, "s"));
}

#[tokio::test]
async fn a_fetch_whose_node_dies_before_answering_is_retried_on_another() {
    let (a, b) = (Node::start("a").await, Node::start("b").await);
    let (gw, _, _) = start(toml(&[url(a.addr), url(b.addr)], "")).await;
    // The first node takes the request and closes without a byte of answer.
    let r = get(gw.addr, "/stash/die-a/info/refs?service=git-upload-pack", "").await;
    assert_eq!((r.status, r.body_str().as_str()), (200, "b"));
    assert_eq!((a.served("/stash/die"), b.served("/stash/die")), (1, 1));
}

#[tokio::test]
async fn proxy_access_rules_apply_to_a_balancer_and_its_own_section_may_set_them() {
    let a = Node::start("a").await;
    // `<Proxy *>` denies; the balancer's section lists members only, so the denial stands.
    let conf = |rules: &str| {
        format!(
            "Listen 127.0.0.1:0\n<Proxy *>\nRequire all denied\n</Proxy>\n<Proxy balancer://c>\nBalancerMember http://{}\n{rules}</Proxy>\nProxyPass /stash balancer://c/stash\n",
            a.addr
        )
    };
    let (gw, _, _) = start(parse_apache(&conf(""))).await;
    assert_eq!(get(gw.addr, "/stash/x", "").await.status, 403);
    // Rules in the balancer's own section decide for it.
    let (gw, _, _) = start(parse_apache(&conf("Require all granted\n"))).await;
    assert_eq!(get(gw.addr, "/stash/y", "").await.status, 200);
    assert_eq!((a.served("/stash/x"), a.served("/stash/y")), (0, 1));
}
