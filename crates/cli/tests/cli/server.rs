//! `trove server` with a trove.toml: the node id on its log lines and in `/status`, and the
//! metrics listener.

use std::io::{Read as _, Write as _};
use std::process::Stdio;

use crate::{Guard, free_port, path_str, tmp, trove, wait_port};

fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn trove_server_logs_its_node_id_shows_it_in_status_and_serves_metrics_where_configured() {
    let dir = tmp();
    let (port, metrics) = (free_port(), free_port());
    let config = dir.path().join("trove.toml");
    std::fs::write(&config, format!("listen = \"127.0.0.1:{port}\"\n[cluster]\nnode_id = \"cli-node-1\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"))
        .unwrap();
    let data = dir.path().join("data");
    let mut server = Guard(Some(
        trove().args(["server", "--config", &path_str(&config), "--data", &path_str(&data)]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap(),
    ));
    wait_port(port, server.child(), "trove server");
    wait_port(metrics, server.child(), "trove server's metrics listener");
    assert!(get(port, "/status").ends_with("{\"state\":\"RUNNING\",\"nodeId\":\"cli-node-1\"}"));
    let scraped = get(metrics, "/metrics");
    assert!(scraped.contains("trove_server_info{node_id=\"cli-node-1\",version=\""), "{scraped}");
    assert!(scraped.contains("trove_server_request_seconds_count{route=\"/status\",status=\"2xx\"} 1"), "{scraped}");
    let mut stderr = server.child().stderr.take().unwrap();
    assert!(server.signal_and_wait("TERM").success());
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    let request = log.lines().find(|l| l.contains("path=/status")).unwrap_or_else(|| panic!("no access-log line for /status:\n{log}"));
    assert!(request.contains("node_id=cli-node-1"), "{request}");
}
