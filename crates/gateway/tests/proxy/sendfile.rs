//! Large responses from origins that send files with sendfile(2) (issue 16, item 5): real
//! nginx with `sendfile on` and real Apache with `EnableSendfile On`, not only our own origin.
//! Such origins hand the kernel page-cache pages, which reach the gateway as many small
//! socket buffer fragments; the splice path once mistook "pipe full" for "socket empty" and
//! waited for the route's timeout.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::*;

const NGINX: &str = "/usr/sbin/nginx";
const APACHE: &str = "/usr/sbin/apache2";
/// 16 MiB and an odd tail, so that the last splice is not a round number of pages.
const FILE_LEN: usize = 16 * 1024 * 1024 + 4099;

/// An origin process started by the test; stopped (and waited for) when dropped.
struct Proc {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first: Apache's parent then stops its children itself; nginx without a
        // master process just exits. Then SIGKILL to the process group (each origin leads its
        // own) for anything left, so that no child outlives the test.
        let pid = self.child.id() as i32;
        // SAFETY: signals to our own child and to the process group it leads.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Deterministic, not periodic on any power of two: a misplaced or lost page shows.
fn content() -> Vec<u8> {
    (0..FILE_LEN).map(|i| ((i * 7 + i / 4093) % 251) as u8).collect()
}

/// A temp dir readable by Apache's `www-data` children, with `htdocs/big.bin`.
fn docroot() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.path().join("htdocs")).unwrap();
    std::fs::write(dir.path().join("htdocs/big.bin"), content()).unwrap();
    for p in ["htdocs", "htdocs/big.bin"] {
        let mode = if p.ends_with(".bin") { 0o644 } else { 0o755 };
        std::fs::set_permissions(dir.path().join(p), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

/// Wait until `port` accepts, or fail with the origin's error log.
fn wait_listening(p: &mut Proc, log: &str) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", p.port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            let log = std::fs::read_to_string(p.dir.path().join(log)).unwrap_or_default();
            panic!("origin exited ({status}) before listening on {}: {log}", p.port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("origin did not listen on {}", p.port);
}

/// Real nginx in the foreground, one process, on a loopback port, under a temp prefix (the
/// system's nginx service is never touched), with `sendfile on`.
fn start_nginx() -> Proc {
    assert!(Path::new(NGINX).exists(), "nginx is required for these tests: apt-get install nginx-light (scripts/test does)");
    let dir = docroot();
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n\
           client_body_temp_path {d}/cb; proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft; uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st;\n\
           server {{ listen 127.0.0.1:{port}; root {d}/htdocs; }}\n}}\n"
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(NGINX)
        .process_group(0)
        .args(["-p", &d.to_string(), "-c", path.to_str().unwrap(), "-e", &format!("{d}/error.log")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let mut p = Proc { child, port, dir };
    wait_listening(&mut p, "error.log");
    p
}

/// Real Apache httpd in the foreground serving the file itself, with `EnableSendfile On`
/// (off by default since 2.3.9: https://httpd.apache.org/docs/2.4/mod/core.html#enablesendfile).
fn start_apache() -> Proc {
    assert!(Path::new(APACHE).exists(), "Apache httpd is required for these tests: apt-get install apache2 (scripts/test does)");
    let dir = docroot();
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        "ServerRoot \"/usr/lib/apache2\"\nDefaultRuntimeDir {d}\nPidFile {d}/httpd.pid\nMutex file:{d} default\n\
         LoadModule mpm_event_module modules/mod_mpm_event.so\nLoadModule authz_core_module modules/mod_authz_core.so\n\
         User www-data\nGroup www-data\nServerName origin.test\nListen 127.0.0.1:{port}\n\
         DocumentRoot {d}/htdocs\nErrorLog {d}/error.log\nLogLevel warn\nEnableSendfile On\nEnableMMAP Off\n\
         <Directory {d}/htdocs>\n  Require all granted\n</Directory>\n"
    );
    let path = dir.path().join("httpd.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(APACHE)
        .args(["-f", path.to_str().unwrap(), "-DFOREGROUND"])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start apache2");
    let mut p = Proc { child, port, dir };
    wait_listening(&mut p, "error.log");
    p
}

/// GET `path` on `addr` with `Connection: close` and read to the end: (status, Content-Length, body).
async fn fetch(addr: std::net::SocketAddr, path: &str) -> (u16, Option<usize>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::with_capacity(FILE_LEN + 4096);
    // Longer than the route's timeout: a transfer the gateway gives up on shows as a short
    // body, not as this test's own timeout.
    tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut buf)).await.expect("the response ended").expect("read");
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head[9..12].parse().unwrap();
    let len = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()));
    (status, len, buf[end..].to_vec())
}

/// The file from `origin` through the gateway, whole and intact. The route's timeout is 30 s:
/// a transfer that waits for it is cut there (the gateway closes the connection mid-body), so
/// a complete body with the right bytes is the proof that no wait for the timeout happened.
async fn through_gateway_is_whole(origin: &Proc) {
    let gw = start(parse_apache(&format!("Listen 127.0.0.1:0\nServerName gw.test\nProxyPass /files/ http://127.0.0.1:{}/ timeout=30\n", origin.port))).await;
    let want = content();
    // Direct first: the origin itself serves the file whole (else the test proves nothing).
    let (status, len, body) = fetch(std::net::SocketAddr::from(([127, 0, 0, 1], origin.port)), "/big.bin").await;
    assert_eq!((status, len, body.len()), (200, Some(FILE_LEN), FILE_LEN), "direct from the origin");
    // Twice: the second response reuses the pooled origin connection.
    for round in 0..2 {
        let (status, len, body) = fetch(gw.addr, "/files/big.bin").await;
        assert_eq!((status, len), (200, Some(FILE_LEN)), "round {round}");
        assert_eq!(body.len(), FILE_LEN, "round {round}: the body was cut short (the route's timeout fired)");
        if let Some(i) = body.iter().zip(&want).position(|(a, b)| a != b) {
            panic!("round {round}: body differs from the file at byte {i}");
        }
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_file_from_nginx_with_sendfile_arrives_whole_before_the_timeout() {
    let nginx = start_nginx();
    through_gateway_is_whole(&nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_file_from_apache_with_sendfile_arrives_whole_before_the_timeout() {
    let apache = start_apache();
    through_gateway_is_whole(&apache).await;
}
