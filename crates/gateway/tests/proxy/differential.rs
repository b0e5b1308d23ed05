//! Differential suite: the same httpd.conf runs in a real Apache 2.4 (Debian `apache2`) and in
//! `trove gateway`; the same requests go to both; what the origin received and what the
//! downstream got are compared field by field. Every allowed difference is listed below with
//! its reason. Apache must be installed (`.ci/run` does): without it these tests fail.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::origin::{Origin, Received};
use crate::*;

const APACHE: &str = "/usr/sbin/apache2";

/// Headers the origin may see differently, and why.
const ORIGIN_HEADER_DIFFS: &[(&str, &str)] = &[
    ("x-forwarded-proto", "trove tells the origin the scheme (docs/gateway.md: better than Apache, switchable off)"),
    ("x-forwarded-port", "likewise the public port"),
    ("forwarded", "likewise RFC 7239 Forwarded"),
    ("connection", "Apache announces Keep-Alive/close to the origin; trove's HTTP/1.1 origin connections are persistent by default and say nothing"),
    ("x-test-id", "each side's requests are tagged to tell them apart"),
];

/// Cases where trove may send the origin one request more than Apache, and why.
const RETRY_DIFFS: &[(&str, &str)] =
    &[("origin closes", "an idempotent request that dies on a reused keep-alive connection is retried once on a fresh one; Apache answers 502 to that race")];

/// Statuses that differ on purpose.
fn allowed_status_diff(apache: u16, trove: u16) -> bool {
    // Origin too slow: Apache 502, trove 504 (RFC 9110 §15.6.5; nginx and Caddy agree).
    apache == 502 && trove == 504
}

/// A running Apache, in a process group of its own (the parent leads it; its children, the
/// MPM's worker processes, inherit it), so that stopping it can be checked: no process of
/// the group may be left.
struct Apache {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    stopped: bool,
}

/// Processes of process group `pgid` (from `/proc/PID/stat`, field 5), as `PID command line`.
fn group_members(pgid: u32) -> Vec<String> {
    let mut left = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses, so split after
        // the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        if rest.split_whitespace().nth(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            left.push(format!("{} {}", e.file_name().to_string_lossy(), cmd.trim()));
        }
    }
    left
}

impl Apache {
    /// Stops Apache as `apache2 -k stop` does, SIGTERM to the parent (the process in
    /// `PidFile`): it stops its children, reaps them and exits
    /// (https://httpd.apache.org/docs/2.4/stopping.html). SIGKILL to the parent alone would
    /// leave the workers running, orphaned. Returns the processes of its group still there
    /// once the parent has exited and the group had time to empty (none, normally); those
    /// are then killed so that nothing outlives the test.
    fn stop(&mut self) -> Vec<String> {
        if self.stopped {
            return Vec::new();
        }
        self.stopped = true;
        let pid = self.child.id();
        let mut left = Vec::new();
        let pid_file = std::fs::read_to_string(self.dir.path().join("httpd.pid")).ok().and_then(|s| s.trim().parse::<u32>().ok());
        if pid_file.is_some_and(|p| p != pid) {
            left.push(format!("PidFile names {pid_file:?}, not the parent that was started ({pid})"));
        }
        // SAFETY: kill(2) with a pid we started and have not reaped yet (it cannot be reused).
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        // Apache gives its children a few seconds, then kills them itself; these deadlines
        // only bound a hung stop, they are not what the test measures.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut group = group_members(pid);
        while !group.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            group = group_members(pid);
        }
        if !group.is_empty() {
            // SAFETY: kill(2) on our own process group; nothing else is in it.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            let _ = self.child.wait();
        }
        left.extend(group);
        left
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        // Also on a failed test's unwinding: stop the whole group, never only the parent.
        let left = self.stop();
        if !left.is_empty() && !std::thread::panicking() {
            panic!("Apache left processes of its group after SIGTERM: {left:?}");
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The lines every test config starts with: modules and the files Apache needs. Trove reads
/// them too (accepting them, with notes), so both run the very same file. The test client on
/// loopback is a trusted proxy (mod_remoteip) so that both keep a client-sent X-Forwarded-For
/// and append to it; what Trove does for untrusted clients (remove it first, which Apache does
/// not) is tested in behaviour.rs.
fn prelude(dir: &std::path::Path, listen: &str) -> String {
    let d = dir.display();
    format!(
        "ServerRoot \"/usr/lib/apache2\"\n\
         DefaultRuntimeDir {d}\n\
         PidFile {d}/httpd.pid\n\
         Mutex file:{d} default\n\
         LoadModule mpm_event_module modules/mod_mpm_event.so\n\
         LoadModule authz_core_module modules/mod_authz_core.so\n\
         LoadModule authz_host_module modules/mod_authz_host.so\n\
         LoadModule access_compat_module modules/mod_access_compat.so\n\
         LoadModule proxy_module modules/mod_proxy.so\n\
         LoadModule proxy_http_module modules/mod_proxy_http.so\n\
         LoadModule remoteip_module modules/mod_remoteip.so\n\
         RemoteIPInternalProxy 127.0.0.1 ::1\n\
         User www-data\n\
         Group www-data\n\
         DocumentRoot {d}/htdocs\n\
         ErrorLog {d}/error.log\n\
         LogLevel warn\n\
         ServerName gw.test\n\
         Listen {listen}\n"
    )
}

fn start_apache_with(body: &str, vhost: &str) -> Apache {
    assert!(std::path::Path::new(APACHE).exists(), "Apache httpd is required for the differential suite: apt-get install apache2 (.ci/run does)");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("htdocs")).unwrap();
    // www-data must reach the folder to serve (nothing from) DocumentRoot.
    let _ = Command::new("chmod").args(["755", dir.path().to_str().unwrap()]).status();
    let port = free_port();
    let vh = if vhost.is_empty() { String::new() } else { format!("<VirtualHost *:{port}>\n{vhost}</VirtualHost>\n") };
    let conf = format!("{}{body}{vh}", prelude(dir.path(), &format!("127.0.0.1:{port}")));
    let path = dir.path().join("httpd.conf");
    std::fs::write(&path, &conf).unwrap();
    // `-DFOREGROUND`: the parent stays our child (no detaching, no setsid); `process_group(0)`
    // makes it lead a group of its own, which its worker processes join.
    let child = Command::new(APACHE)
        .args(["-f", path.to_str().unwrap(), "-DFOREGROUND"])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .expect("start apache2");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
            panic!("apache did not start on {port}: {stderr}{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Apache { child, port, dir, stopped: false }
}

async fn start_trove_with(body: &str, vhost: &str, dir: &std::path::Path, tls: bool) -> Running {
    // Port 0 for trove; the vhost then matches any port.
    let vh = if vhost.is_empty() { String::new() } else { format!("<VirtualHost *:*>\n{vhost}</VirtualHost>\n") };
    let text = format!("{}{body}{vh}", prelude(dir, "127.0.0.1:0"));
    let mut cfg = parse_apache(&text);
    if !tls {
        return start(cfg).await;
    }
    for l in &mut cfg.listeners {
        l.tls = true;
    }
    let setup = trove_gateway::tls_setup::tls_for(&cfg).expect("TLS set-up").expect("a TLS site");
    start_tls(cfg, Some(setup.server_config)).await
}

/// One request template; `{ID}` becomes the side's test id.
struct Case {
    name: &'static str,
    raw: String,
}

fn case(name: &'static str, raw: &str) -> Case {
    Case { name, raw: raw.to_string() }
}

fn comparable_origin_headers(r: &Received) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> =
        r.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).filter(|(k, _)| !ORIGIN_HEADER_DIFFS.iter().any(|(d, _)| d == k)).collect();
    v.sort();
    v
}

/// Response headers compared; others (Date, Content-Length of error pages…) may differ.
const RESPONSE_HEADERS: &[&str] = &["location", "content-location", "set-cookie", "x-origin-saw-host", "server", "x-private", "keep-alive"];

async fn send(addr: SocketAddr, ca: Option<&str>, bytes: &[u8]) -> Vec<Resp> {
    match ca {
        Some(ca) => raw_tls(addr, ca, bytes).await,
        None => raw(addr, bytes).await,
    }
}

async fn compare(o: &Origin, apache: SocketAddr, trove: SocketAddr, cases: &[Case], ca: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let ida = format!("ap-{i}");
        let idt = format!("tr-{i}");
        // Host carries each side's own port, as a browser would send it.
        let ra = send(apache, ca, c.raw.replace("{ID}", &ida).replace("{PORT}", &apache.port().to_string()).as_bytes()).await;
        let rt = send(trove, ca, c.raw.replace("{ID}", &idt).replace("{PORT}", &trove.port().to_string()).as_bytes()).await;
        let sa: Vec<u16> = ra.iter().map(|r| r.status).collect();
        let st: Vec<u16> = rt.iter().map(|r| r.status).collect();
        let status_ok = sa.len() == st.len() && sa.iter().zip(&st).all(|(a, t)| a == t || allowed_status_diff(*a, *t));
        if !status_ok {
            problems.push(format!("{}: status apache {sa:?} trove {st:?}", c.name));
            continue;
        }
        for (a, t) in ra.iter().zip(&rt) {
            for h in RESPONSE_HEADERS {
                // Responses made by the proxy itself name the proxy.
                if *h == "server" && a.header("server").is_some_and(|v| v.starts_with("Apache/")) {
                    if t.header("server") != Some("trove") {
                        problems.push(format!("{}: local response without Server: trove", c.name));
                    }
                    continue;
                }
                let va: Vec<String> =
                    a.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(h)).map(|(_, v)| v.replace(&apache.port().to_string(), "PORT")).collect();
                let vt: Vec<String> =
                    t.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(h)).map(|(_, v)| v.replace(&trove.port().to_string(), "PORT")).collect();
                if va != vt {
                    problems.push(format!("{}: response {h}: apache {va:?} trove {vt:?}", c.name));
                }
            }
            if a.status < 300 && a.body != t.body {
                problems.push(format!("{}: body differs: apache {:?} trove {:?}", c.name, a.body_str(), t.body_str()));
            }
        }
        let oa = o.by_id(&ida);
        let ot = o.by_id(&idt);
        let retried = RETRY_DIFFS.iter().any(|(n, _)| *n == c.name) && ot.len() == oa.len() + 1;
        if oa.len() != ot.len() && !retried {
            problems.push(format!("{}: origin got {} requests from apache, {} from trove", c.name, oa.len(), ot.len()));
            continue;
        }
        for (a, t) in oa.iter().zip(&ot) {
            if (a.method.as_str(), a.target.as_str(), &a.body) != (t.method.as_str(), t.target.as_str(), &t.body) {
                problems.push(format!(
                    "{}: origin saw apache {} {} {:?} / trove {} {} {:?}",
                    c.name,
                    a.method,
                    a.target,
                    String::from_utf8_lossy(&a.body),
                    t.method,
                    t.target,
                    String::from_utf8_lossy(&t.body)
                ));
            }
            let ha: Vec<(String, String)> = comparable_origin_headers(a).into_iter().map(|(k, v)| (k, v.replace(&apache.port().to_string(), "PORT"))).collect();
            let ht: Vec<(String, String)> = comparable_origin_headers(t).into_iter().map(|(k, v)| (k, v.replace(&trove.port().to_string(), "PORT"))).collect();
            if ha != ht {
                problems.push(format!("{}: origin headers differ:\n  apache {ha:?}\n  trove  {ht:?}", c.name));
            }
        }
    }
    problems
}

fn common_cases() -> Vec<Case> {
    vec![
        case("plain get", "GET /stash/x?q=1 HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nUser-Agent: t/1\r\nConnection: close\r\n\r\n"),
        case("host with port", "GET /stash/x HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("canonicalised path", "GET /stash/%41%7e%22/a/../b?x=%41 HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("encoded non-ascii", "GET /stash/%C3%BC HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("outside prefix", "GET /other HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("look-alike prefix", "GET /stashx HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("encoded slash", "GET /stash/a%2Fb HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("dot-dot above root", "GET /stash/%2e%2e/%2e%2e/x HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case(
            "existing forwarded-for",
            "GET /stash/x HTTP/1.1\r\nHost: public.example\r\nX-Forwarded-For: 10.9.9.9\r\nX-Forwarded-Host: first.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n",
        ),
        case(
            "connection-named headers",
            "GET /stash/x HTTP/1.1\r\nHost: public.example\r\nConnection: close, X-Forwarded-For, X-Drop\r\nX-Drop: 1\r\nX-Test-Id: {ID}\r\n\r\n",
        ),
        case(
            "redirect to origin url",
            "GET /stash/redirect?to=http://localhost:ORIGINPORT/stash/projects HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n",
        ),
        case(
            "redirect to origin url, host with port",
            "GET /stash/redirect?to=http://localhost:ORIGINPORT/stash/p?a=1 HTTP/1.1\r\nHost: public.example:{PORT}\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n",
        ),
        case(
            "redirect elsewhere",
            "GET /stash/redirect?to=http://other.example/x HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n",
        ),
        case("cookies", "GET /stash/cookie HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("response hop-by-hop", "GET /stash/hop HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case(
            "post with length",
            "POST /stash/p HTTP/1.1\r\nHost: public.example\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\nhello",
        ),
        case(
            "small chunked post",
            "POST /stash/p HTTP/1.1\r\nHost: public.example\r\nTransfer-Encoding: chunked\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        ),
        case("head", "HEAD /stash/x HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("max-forwards", "GET /stash/x HTTP/1.1\r\nHost: public.example\r\nMax-Forwards: 5\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("absolute form", "GET http://evil.example/stash/abs HTTP/1.1\r\nHost: evil.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("connect", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nX-Test-Id: {ID}\r\n\r\n"),
        case("missing host", "GET /stash/x HTTP/1.1\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("origin closes", "GET /stash/close HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("origin bad header", "GET /stash/badheader HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("origin 404 passes", "GET /stash/status/404 HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("origin 500 passes", "GET /stash/status/500 HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case(
            "keep-alive pair",
            "GET /stash/1 HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\n\r\nGET /stash/2 HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n",
        ),
    ]
}

fn seed_body(o: &Origin, extra: &str) -> String {
    // The seed's Step 5-7, context path /stash, with the origin's port.
    format!(
        "ProxyRequests Off\n<Proxy *>\n    Order Deny,Allow\n    Allow from all\n</Proxy>\n\
         ProxyPass        /stash http://localhost:{p}/stash connectiontimeout=5 timeout=2\n\
         ProxyPassReverse /stash http://localhost:{p}/stash\n\
         ProxyPassReverseCookiePath /internal /stash\n\
         ProxyPassReverseCookieDomain backend.local public.example\n{extra}",
        p = o.addr.port()
    )
}

async fn run_differential(body: &str, cases: Vec<Case>, o: &Origin) {
    run_differential_with(body, "", cases, o, None).await
}

/// `vhost`: lines wrapped in a `<VirtualHost>` on the listener (for TLS); `ca`: trust this CA
/// and speak TLS to both.
async fn run_differential_with(body: &str, vhost: &str, cases: Vec<Case>, o: &Origin, ca: Option<&str>) {
    let apache = start_apache_with(body, vhost);
    let tdir = tempfile::tempdir().unwrap();
    let trove = start_trove_with(body, vhost, tdir.path(), ca.is_some()).await;
    let cases: Vec<Case> = cases.into_iter().map(|c| Case { name: c.name, raw: c.raw.replace("ORIGINPORT", &o.addr.port().to_string()) }).collect();
    let problems = compare(o, SocketAddr::from(([127, 0, 0, 1], apache.port)), trove.addr, &cases, ca).await;
    if !problems.is_empty() {
        let log = std::fs::read_to_string(apache.dir.path().join("error.log")).unwrap_or_default();
        panic!("{} differences from Apache:\n{}\n--- apache error.log ---\n{log}", problems.len(), problems.join("\n"));
    }
    let mut apache = apache;
    let left = apache.stop();
    assert!(left.is_empty(), "Apache left processes of its group after SIGTERM: {left:?}");
}

#[test]
fn stopping_apache_leaves_no_process_of_its_group() {
    let mut apache = start_apache_with("", "");
    let pgid = apache.child.id();
    // The event MPM starts its worker processes after the parent listens; wait for one, so
    // that there is something to leave behind.
    let deadline = Instant::now() + Duration::from_secs(30);
    while group_members(pgid).len() < 2 {
        assert!(Instant::now() < deadline, "Apache started no worker process: {:?}", group_members(pgid));
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = apache.stop();
    assert!(left.is_empty(), "Apache left processes of its group after SIGTERM: {left:?}");
    assert!(group_members(pgid).is_empty(), "{:?}", group_members(pgid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_config_with_context_path_matches_apache() {
    let o = Origin::start().await;
    run_differential(&seed_body(&o, ""), common_cases(), &o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_host_and_via_match_apache() {
    let o = Origin::start().await;
    let cases = vec![
        case("preserved host", "GET /stash/x HTTP/1.1\r\nHost: public.example:{PORT}\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case(
            "redirect with preserved host",
            "GET /stash/redirect?to=http://localhost:ORIGINPORT/stash/y HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n",
        ),
    ];
    run_differential(&seed_body(&o, "ProxyPreserveHost On\n"), cases, &o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_mapping_exclusions_and_access_match_apache() {
    let o = Origin::start().await;
    let body = format!(
        "ProxyPass /static !\nProxyPass / http://localhost:{p}/ connectiontimeout=5 timeout=300\nProxyPassReverse / http://localhost:{p}/\n\
         <Proxy http://localhost:{p}/admin>\n<RequireAll>\nRequire all granted\nRequire not ip 127.0.0.1\n</RequireAll>\n</Proxy>\n",
        p = o.addr.port()
    );
    let cases = vec![
        case("root", "GET / HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("deep", "GET /scm/tp/test.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("excluded", "GET /static/x HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("denied by require not ip", "GET /admin/x HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case(
            "redirect at root",
            "GET /redirect?to=http://localhost:ORIGINPORT/login HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n",
        ),
    ];
    run_differential(&body, cases, &o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_match_apache() {
    let o = Origin::start().await;
    let dead = free_port();
    let body = format!(
        "ProxyPass /dead http://127.0.0.1:{dead}/dead\nProxyPass /slow http://127.0.0.1:{p}/slow timeout=1\n\
         <Proxy http://127.0.0.1:{p}/denied>\nOrder Allow,Deny\nAllow from 10.0.0.0/8\n</Proxy>\nProxyPass /denied http://127.0.0.1:{p}/denied\n",
        p = o.addr.port()
    );
    let _ = PathBuf::new();
    let cases = vec![
        case("refused", "GET /dead/x HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("too slow", "GET /slow/x HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("denied", "GET /denied/x HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
    ];
    run_differential(&body, cases, &o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_vhost_with_the_same_certificate_matches_apache() {
    let o = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A CA and a localhost certificate of the test's own; both servers load the same files.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key)).unwrap();
    let (crt, keyf) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    std::fs::write(&crt, leaf.pem()).unwrap();
    std::fs::write(&keyf, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&keyf, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let body = format!("LoadModule ssl_module modules/mod_ssl.so\n{}", seed_body(&o, ""));
    let vhost = format!("ServerName localhost\nSSLEngine on\nSSLCertificateFile {}\nSSLCertificateKeyFile {}\n", crt.display(), keyf.display());
    let cases = vec![
        case("https get", "GET /stash/x?q=1 HTTP/1.1\r\nHost: localhost:{PORT}\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case(
            "https redirect is rewritten to https",
            "GET /stash/redirect?to=http://localhost:ORIGINPORT/stash/projects HTTP/1.1\r\nHost: localhost:{PORT}\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n",
        ),
        case("https cookies", "GET /stash/cookie HTTP/1.1\r\nHost: localhost:{PORT}\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
        case("https post", "POST /stash/p HTTP/1.1\r\nHost: localhost:{PORT}\r\nContent-Length: 3\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\nabc"),
        case("https outside prefix", "GET /nope HTTP/1.1\r\nHost: localhost:{PORT}\r\nX-Test-Id: {ID}\r\nConnection: close\r\n\r\n"),
    ];
    run_differential_with(&body, &vhost, cases, &o, Some(&ca.pem())).await;
}

/// A balancer of two nodes (mod_proxy_balancer, byrequests): Apache and trove send the same
/// requests to the same nodes in turn, the nodes see the same requests (each its own `Host`),
/// and a node's redirect is mapped back by `ProxyPassReverse … balancer://`.
#[tokio::test]
async fn a_balancer_of_two_nodes_matches_apache() {
    let (o1, o2) = (Origin::start().await, Origin::start().await);
    let body = format!(
        "LoadModule slotmem_shm_module modules/mod_slotmem_shm.so\n\
         LoadModule proxy_balancer_module modules/mod_proxy_balancer.so\n\
         LoadModule lbmethod_byrequests_module modules/mod_lbmethod_byrequests.so\n\
         <Proxy \"balancer://mycluster\">\n\
             BalancerMember \"http://localhost:{}\"\n\
             BalancerMember \"http://localhost:{}\"\n\
             ProxySet lbmethod=byrequests\n\
         </Proxy>\n\
         ProxyPass /stash balancer://mycluster/stash\n\
         ProxyPassReverse /stash balancer://mycluster/stash\n",
        o1.addr.port(),
        o2.addr.port()
    );
    let apache = start_apache_with(&body, "");
    let tdir = tempfile::tempdir().unwrap();
    let trove = start_trove_with(&body, "", tdir.path(), false).await;
    let apache_addr = SocketAddr::from(([127, 0, 0, 1], apache.port));
    let ports = [o1.addr.port(), o2.addr.port()];
    let mut problems = Vec::new();
    let mut served = [[0usize; 2]; 2];
    for i in 0..6 {
        // Every third request is a redirect to the node that answers it (the nodes take turns).
        let raw = if i % 3 == 2 {
            format!(
                "GET /stash/redirect?to=http://localhost:{}/stash/projects HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {{ID}}\r\nConnection: close\r\n\r\n",
                ports[i % 2]
            )
        } else {
            format!("GET /stash/x{i}?q=1 HTTP/1.1\r\nHost: public.example\r\nX-Test-Id: {{ID}}\r\nConnection: close\r\n\r\n")
        };
        let (ida, idt) = (format!("bal-ap-{i}"), format!("bal-tr-{i}"));
        let ra = send(apache_addr, None, raw.replace("{ID}", &ida).as_bytes()).await;
        let rt = send(trove.addr, None, raw.replace("{ID}", &idt).as_bytes()).await;
        let (sa, st): (Vec<u16>, Vec<u16>) = (ra.iter().map(|r| r.status).collect(), rt.iter().map(|r| r.status).collect());
        if sa != st {
            problems.push(format!("request {i}: status apache {sa:?} trove {st:?}"));
            continue;
        }
        let (la, lt) = (ra[0].header("location").map(str::to_string), rt[0].header("location").map(str::to_string));
        if la.as_deref().map(|l| l.replace(&apache.port.to_string(), "PORT")) != lt.as_deref().map(|l| l.replace(&trove.addr.port().to_string(), "PORT")) {
            problems.push(format!("request {i}: Location apache {la:?} trove {lt:?}"));
        }
        for (n, o) in [&o1, &o2].into_iter().enumerate() {
            let (a, t) = (o.by_id(&ida), o.by_id(&idt));
            served[0][n] += a.len();
            served[1][n] += t.len();
            if a.len() != t.len() {
                problems.push(format!("request {i}: node {} got {} from apache, {} from trove", n + 1, a.len(), t.len()));
                continue;
            }
            for (a, t) in a.iter().zip(&t) {
                let ha: Vec<(String, String)> =
                    comparable_origin_headers(a).into_iter().map(|(k, v)| (k, v.replace(&apache.port.to_string(), "PORT"))).collect();
                let ht: Vec<(String, String)> =
                    comparable_origin_headers(t).into_iter().map(|(k, v)| (k, v.replace(&trove.addr.port().to_string(), "PORT"))).collect();
                if (a.method.as_str(), a.target.as_str(), &ha) != (t.method.as_str(), t.target.as_str(), &ht) {
                    problems.push(format!("request {i}: node {} saw apache {} {} {ha:?} / trove {} {} {ht:?}", n + 1, a.method, a.target, t.method, t.target));
                }
            }
        }
    }
    if !problems.is_empty() {
        let log = std::fs::read_to_string(apache.dir.path().join("error.log")).unwrap_or_default();
        panic!("{} differences from Apache:\n{}\n--- apache error.log ---\n{log}", problems.len(), problems.join("\n"));
    }
    assert_eq!(served, [[3, 3], [3, 3]], "both spread the requests evenly over the two nodes");
    let mut apache = apache;
    let left = apache.stop();
    assert!(left.is_empty(), "Apache left processes of its group after SIGTERM: {left:?}");
}
