//! The metrics listener and the node id, against a real server and real git: what a clone, a
//! push, a refused push, a REST call and a page leave in `/metrics`, and where the node id comes
//! from.

use std::time::{Duration, Instant};

use trove_server::{NodeId, Server, ServerConfig};
use trove_store::ContextPath;

use crate::support::{TestServer, basic, http, password};

fn scrape(t: &TestServer) -> String {
    let addr = t.server.metrics_addr().expect("a metrics listener");
    let r = http(addr, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    r.text()
}

/// The value of the series `name` (labels included, exactly as written), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes until `series` has `want` (an operation is recorded once every part of it let go,
/// which may be a moment after the client is done); panics with the text otherwise.
fn wait_for(t: &TestServer, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(t);
        if value(&text, series) == Some(want) {
            return text;
        }
        assert!(Instant::now() < deadline, "{series} never became {want}:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_clone_a_push_a_refused_push_a_rest_call_and_a_page_show_in_the_metrics_by_kind_outcome_and_route_template() {
    let t = TestServer::start_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.context_path = Some(ContextPath::parse("/stash").unwrap());
    });
    let before = scrape(&t);
    assert_eq!(value(&before, "trove_server_git_operation_seconds_count{kind=\"upload-pack\",outcome=\"ok\"}"), Some(0.0), "present at 0:\n{before}");
    assert_eq!(value(&before, "trove_server_git_processes_started_total"), Some(0.0));

    // A push, a clone, a push git refuses (the pre-receive hook keeps refs/pull-requests/* for
    // pull requests), a REST call and a page.
    let (work, _) = t.seed("scm/tp/test.git", 3);
    let clone = t.dir("clone");
    t.git_ok(&clone, &["clone", "-q", &t.url_as("reader", "scm/tp/test.git"), "."]);
    let refused = t.git(&work, &["push", "origin", "HEAD:refs/pull-requests/1/from"]);
    assert!(!refused.status.success());
    let rest = t.http("GET", "/stash/rest/api/1.0/projects/TP/repos", &[("Authorization", &basic("reader", &password("reader")))], b"");
    assert_eq!(rest.status, 200, "{}", rest.text());
    let page = t.http("GET", "/stash/projects/PUB/repos/open/browse", &[], b"");
    assert_eq!(page.status, 200);
    t.wait_maintenance();

    wait_for(&t, "trove_server_git_operation_seconds_count{kind=\"receive-pack\",outcome=\"refused\"}", 1.0);
    wait_for(&t, "trove_server_git_operation_seconds_count{kind=\"upload-pack\",outcome=\"ok\"}", 1.0);
    let text = wait_for(&t, "trove_server_git_operation_seconds_count{kind=\"receive-pack\",outcome=\"ok\"}", 1.0);
    let v = |series: &str| value(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));

    // Git operations: kinds, outcomes, histogram buckets, bytes.
    assert!(v("trove_server_git_operation_seconds_count{kind=\"advertisement\",outcome=\"ok\"}") >= 3.0, "{text}");
    for (kind, outcome) in
        [("advertisement", "failed"), ("upload-pack", "failed"), ("receive-pack", "failed"), ("upload-pack", "cancelled"), ("upload-pack", "refused")]
    {
        assert_eq!(v(&format!("trove_server_git_operation_seconds_count{{kind=\"{kind}\",outcome=\"{outcome}\"}}")), 0.0, "{kind} {outcome}");
    }
    assert_eq!(v("trove_server_git_operation_seconds_bucket{kind=\"upload-pack\",outcome=\"ok\",le=\"+Inf\"}"), 1.0);
    assert!(v("trove_server_git_operation_seconds_bucket{kind=\"upload-pack\",outcome=\"ok\",le=\"1800\"}") <= 1.0);
    assert!(text.contains("trove_server_git_operation_seconds_bucket{kind=\"receive-pack\",outcome=\"ok\",le=\"0.005\"} "), "{text}");
    assert!(v("trove_server_git_operation_seconds_sum{kind=\"upload-pack\",outcome=\"ok\"}") > 0.0);
    assert!(v("trove_server_git_received_bytes_total{kind=\"receive-pack\"}") > 0.0, "the pushed packs");
    assert!(v("trove_server_git_received_bytes_total{kind=\"upload-pack\"}") > 0.0, "the clone's wants");
    assert!(v("trove_server_git_sent_bytes_total{kind=\"upload-pack\"}") > 0.0, "the clone's pack");
    assert!(v("trove_server_git_sent_bytes_total{kind=\"advertisement\"}") > 0.0);
    assert_eq!(v("trove_server_git_processes_running"), 0.0);
    assert!(v("trove_server_git_processes_started_total") >= 3.0, "{text}");

    // Requests by route template (the context path removed), never by raw path.
    assert_eq!(v("trove_server_request_seconds_count{route=\"/rest/api/1.0/projects/{key}/repos\",status=\"2xx\"}"), 1.0, "{text}");
    assert_eq!(v("trove_server_request_seconds_count{route=\"/projects/{key}/repos/{slug}/browse\",status=\"2xx\"}"), 1.0, "{text}");
    assert!(v("trove_server_request_seconds_count{route=\"/scm/{owner}/{repo}/git-upload-pack\",status=\"2xx\"}") >= 1.0);
    assert!(v("trove_server_request_seconds_count{route=\"/scm/{owner}/{repo}/info/refs\",status=\"4xx\"}") >= 1.0, "git's first, anonymous try");
    assert!(text.contains("trove_server_request_seconds_bucket{route=\"/rest/api/1.0/projects/{key}/repos\",status=\"2xx\",le=\"0.001\"} "));
    assert!(text.contains("trove_server_request_seconds_bucket{route=\"/rest/api/1.0/projects/{key}/repos\",status=\"2xx\",le=\"+Inf\"} 1\n"));
    for raw in ["projects/TP", "PUB/repos/open", "tp/test.git", "/stash/"] {
        assert!(!text.contains(raw), "a raw path ({raw}) in the metrics:\n{text}");
    }

    // Maintenance after the accepted push, the body budget, and this node.
    assert!(v("trove_server_maintenance_seconds_count{outcome=\"ok\"}") >= 1.0, "{text}");
    assert_eq!(v("trove_server_maintenance_seconds_count{outcome=\"failed\"}"), 0.0);
    assert_eq!(v("trove_server_request_body_bytes_in_use"), 0.0);
    assert_eq!(v("trove_server_request_body_bytes_limit"), 268435456.0);
    let info = format!("trove_server_info{{node_id=\"{}\",version=\"{}\"}}", t.server.node_id(), env!("CARGO_PKG_VERSION"));
    assert_eq!(v(&info), 1.0);

    assert_eq!(http(t.server.metrics_addr().unwrap(), "GET", "/healthz", &[], b"").text(), "ok\n");
    assert_eq!(http(t.server.metrics_addr().unwrap(), "GET", "/stash/status", &[], b"").status, 404, "only metrics there");
}

fn status_of(t: &TestServer) -> serde_json::Value {
    let r = t.http("GET", "/status", &[], b"");
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).unwrap()
}

/// Serves `server` until the returned closure is called, and gives `/status`'s body.
fn status_once(config: ServerConfig) -> (String, String) {
    let server = Server::open(config).unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let srv = server.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            srv.serve(listener, async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let addr = addr_rx.recv().unwrap();
    let body = http(addr, "GET", "/status", &[], b"").text();
    let _ = stop_tx.send(());
    thread.join().unwrap();
    (server.node_id().to_string(), body)
}

#[test]
fn a_made_node_id_is_kept_in_the_data_directory_across_restarts_and_shown_in_status() {
    let data = tempfile::tempdir().unwrap();
    let (first, body) = status_once(ServerConfig::new(data.path()));
    assert!(first.starts_with("node-") && first.len() == 11, "{first}");
    assert_eq!(body, format!("{{\"state\":\"RUNNING\",\"nodeId\":\"{first}\"}}"));
    assert_eq!(std::fs::read_to_string(data.path().join("node-id")).unwrap().trim(), first);
    let (second, body) = status_once(ServerConfig::new(data.path()));
    assert_eq!(second, first, "the same id after a restart");
    assert!(body.contains(&first));

    // Another data directory is another node.
    let other = tempfile::tempdir().unwrap();
    assert_ne!(Server::open(ServerConfig::new(other.path())).unwrap().node_id().as_str(), first);
    // A damaged file stops the start, naming it.
    std::fs::write(data.path().join("node-id"), "not an id\n").unwrap();
    let err = Server::open(ServerConfig::new(data.path())).err().expect("refused").to_string();
    assert!(err.contains(&data.path().join("node-id").display().to_string()) && err.contains("delete it"), "{err}");
}

#[test]
fn a_configured_node_id_wins_and_shows_in_status_and_metrics() {
    let t = TestServer::start_with(|c| {
        c.node_id = Some(NodeId::parse("dc1-node-7").unwrap());
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let status = status_of(&t);
    assert_eq!(status["state"], "RUNNING");
    assert_eq!(status["nodeId"], "dc1-node-7");
    assert!(!t.data.path().join("node-id").exists(), "nothing made when configured");
    assert!(scrape(&t).contains("trove_server_info{node_id=\"dc1-node-7\",version=\""));
}

#[test]
fn node_id_and_metrics_listen_come_from_trove_toml_and_a_bad_node_id_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trove.toml");
    // `data_dir` relative to the file, so the server opens in the temporary directory.
    std::fs::write(&path, "data_dir = \"data\"\n[cluster]\nnode_id = \"dc1-node-2\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let config = ServerConfig::load(&path).unwrap();
    assert_eq!(config.node_id.as_ref().unwrap().as_str(), "dc1-node-2");
    let server = Server::open(config).unwrap();
    assert_eq!(server.node_id().as_str(), "dc1-node-2");
    assert!(server.metrics_addr().is_some_and(|a| a.port() != 0), "bound at open, its port resolved");

    std::fs::write(&path, "data_dir = \"data\"\n[cluster]\nnode_id = \"dc1 node 2\"\n").unwrap();
    let err = ServerConfig::load(&path).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:3: `cluster.node_id`: \"dc1 node 2\" is not a node id", path.display())), "{err}");

    // No metrics listener unless configured.
    let plain = tempfile::tempdir().unwrap();
    assert!(Server::open(ServerConfig::new(plain.path())).unwrap().metrics_addr().is_none());
}
