//! `trove gateway` as a process: `--check`, logs, SIGHUP reload, SIGTERM drain.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use crate::*;

#[test]
fn check_reports_every_error_with_file_line_and_fix() {
    let d = tmp();
    let conf = d.path().join("httpd.conf");
    std::fs::write(&conf, "Listen 8080\nProxyPass /stash http://localhost:7990/stash bogus=1\nFrobnicate on\n<Proxy *>\nOrder Deny, Allow\n</Proxy>\n")
        .unwrap();
    let out = trove().args(["gateway", "--check", conf.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let c = conf.display();
    assert!(err.contains(&format!("{c}:2: error: unknown ProxyPass parameter 'bogus'")), "{err}");
    assert!(err.contains(&format!("{c}:3: error: unknown directive 'Frobnicate'")), "{err}");
    assert!(err.contains(&format!("{c}:5: error: Order 'Deny, Allow'")), "{err}");
    assert!(err.lines().filter(|l| l.contains(": error: ")).all(|l| l.contains(" — ")), "every error says how to fix it: {err}");
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn check_prints_the_normalised_config_of_the_seeds_file() {
    let d = tmp();
    let conf = d.path().join("httpd.conf");
    std::fs::write(
        &conf,
        "LoadModule proxy_module modules/mod_proxy.so\nLoadModule proxy_http_module modules/mod_proxy_http.so\nListen 80\nProxyRequests Off\n<Proxy *>\n    Order Deny,Allow\n    Allow from all\n</Proxy>\nProxyPass        /stash http://localhost:7990/stash connectiontimeout=5 timeout=300\nProxyPassReverse /stash http://localhost:7990/stash\n",
    )
    .unwrap();
    let out = trove().args(["gateway", "--check", conf.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("route /stash -> http://localhost:7990/stash connect_timeout=5000ms timeout=300000ms"), "{s}");
    assert!(s.contains("reverse /stash <- http://localhost:7990/stash"), "{s}");
}

#[test]
fn check_refuses_the_seeds_1024_bit_key_and_says_what_to_run() {
    let d = tmp();
    let key = d.path().join("server.key");
    let crt = d.path().join("server.crt");
    let st = std::process::Command::new("openssl")
        .args(["genrsa", "-out", key.to_str().unwrap(), "1024"])
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed");
    assert!(st.success());
    let st = std::process::Command::new("openssl")
        .args(["req", "-new", "-x509", "-key", key.to_str().unwrap(), "-out", crt.to_str().unwrap(), "-days", "365", "-subj", "/CN=mycompany.com"])
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let conf = d.path().join("httpd.conf");
    std::fs::write(
        &conf,
        format!("Listen 8443\n<VirtualHost *:8443>\nSSLEngine on\nSSLCertificateFile {}\nSSLCertificateKeyFile {}\nProxyPass / http://localhost:7990/\n</VirtualHost>\n", crt.display(), key.display()),
    )
    .unwrap();
    let out = trove().args(["gateway", "--check", conf.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1024"), "{err}");
    assert!(err.contains("openssl genrsa") || err.contains("trove cert"), "{err}");
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: public.example\r\nUser-Agent: t/1\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, buf)
}

/// A tiny origin: answers 200 after `delay_ms` from the path `/slow`, at once otherwise.
fn origin() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                if head.contains("/slow") {
                    std::thread::sleep(Duration::from_millis(1500));
                }
                let body = head.lines().next().unwrap_or("").to_string();
                let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            });
        }
    });
    port
}

#[test]
fn running_gateway_logs_reloads_on_sighup_and_drains_on_sigterm() {
    let o = origin();
    let port = free_port();
    let d = tmp();
    let access = d.path().join("access.log");
    let conf = d.path().join("gw.toml");
    let write_conf = |prefix: &str| {
        std::fs::write(
            &conf,
            format!(
                "[log]\naccess = \"{}\"\n[[listen]]\naddr = \"127.0.0.1:{port}\"\n[[server]]\n[[server.route]]\npath = \"{prefix}\"\nupstream = \"http://127.0.0.1:{o}{prefix}\"\n",
                access.display()
            ),
        )
        .unwrap()
    };
    write_conf("/one");
    let mut g = Guard(Some(trove().args(["gateway", "--config", conf.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()));
    wait_port(port, g.child(), "trove gateway");
    assert_eq!(http_get(port, "/one/x").0, 200);
    assert_eq!(http_get(port, "/two/x").0, 404);
    // A broken config on SIGHUP keeps the old one.
    std::fs::write(&conf, "this is [not toml").unwrap();
    std::process::Command::new("kill").args(["-HUP", &g.child().id().to_string()]).status().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(http_get(port, "/one/x").0, 200);
    // A good one replaces it.
    write_conf("/two");
    std::process::Command::new("kill").args(["-HUP", &g.child().id().to_string()]).status().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(http_get(port, "/two/x").0, 200);
    assert_eq!(http_get(port, "/one/x").0, 404);
    // SIGTERM while a slow request is in flight: it still completes.
    let slow = std::thread::spawn(move || http_get(port, "/two/slow"));
    std::thread::sleep(Duration::from_millis(300));
    let st = g.signal_and_wait("TERM");
    assert!(st.success(), "{st}");
    let (status, body) = slow.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let log = std::fs::read_to_string(&access).unwrap();
    let first = log.lines().next().unwrap();
    // combined: %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"
    assert!(first.starts_with("127.0.0.1 - - ["), "{first}");
    assert!(first.contains("] \"GET /one/x HTTP/1.1\" 200 "), "{first}");
    assert!(first.ends_with(" \"-\" \"t/1\""), "{first}");
}

#[test]
fn json_access_log_with_log_format_flag() {
    let o = origin();
    let port = free_port();
    let d = tmp();
    let access = d.path().join("access.log");
    let conf = d.path().join("httpd.conf");
    std::fs::write(&conf, format!("Listen 127.0.0.1:{port}\nCustomLog {} combined\nProxyPass / http://127.0.0.1:{o}/\n", access.display())).unwrap();
    let mut g = Guard(Some(
        trove().args(["gateway", "--config", conf.to_str().unwrap(), "--log-format", "json"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap(),
    ));
    wait_port(port, g.child(), "trove gateway");
    assert_eq!(http_get(port, "/j").0, 200);
    g.signal_and_wait("TERM");
    let log = std::fs::read_to_string(&access).unwrap();
    let line = log.lines().next().unwrap();
    assert!(line.starts_with('{') && line.contains("\"status\":200") && line.contains("\"uri\":\"/j\""), "{line}");
}

#[test]
fn apache_config_is_accepted_by_trove_gateway_and_by_apache() {
    let d = tmp();
    let data = d.path().join("data");
    let ok_admin = |args: &[&str]| {
        let o = trove().args(["admin", "--data", data.to_str().unwrap()]).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    ok_admin(&["init"]);
    ok_admin(&["settings", "base-url", "https://git.example.com/stash"]);
    ok_admin(&["settings", "context-path", "/stash"]);
    let out = trove().args(["apache-config", "--layout", "generic", "--data", data.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let conf = d.path().join("apache.conf");
    std::fs::write(&conf, &out.stdout).unwrap();
    let mk = trove().args(["cert", "self-signed", "--host", "git.example.com", "--out", data.join("tls").to_str().unwrap()]).output().unwrap();
    assert!(mk.status.success(), "{}", String::from_utf8_lossy(&mk.stderr));
    let check = trove().args(["gateway", "--check", conf.to_str().unwrap()]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ProxyPass        /stash http://127.0.0.1:7990/stash connectiontimeout=5 timeout=300"), "{text}");
    // Real Apache's syntax check accepts it (with the lines Debian's apache2.conf would add).
    assert!(std::path::Path::new("/usr/sbin/apache2").exists(), "apache2 is required: apt-get install apache2");
    let full = d.path().join("full.conf");
    std::fs::write(
        &full,
        format!(
            "ServerRoot /usr/lib/apache2\nDefaultRuntimeDir {r}\nPidFile {r}/p.pid\nErrorLog {r}/e.log\nLoadModule mpm_event_module modules/mod_mpm_event.so\nLoadModule authz_core_module modules/mod_authz_core.so\n{}",
            text.replace("SSLCertificateFile", "#SSLCertificateFile").replace("SSLCertificateKeyFile", "#SSLCertificateKeyFile").replace("SSLEngine On", "#SSLEngine On"),
            r = d.path().display()
        ),
    )
    .unwrap();
    let t = std::process::Command::new("/usr/sbin/apache2").args(["-t", "-f", full.to_str().unwrap()]).output().unwrap();
    assert!(t.status.success(), "apache2 -t: {}", String::from_utf8_lossy(&t.stderr));
}

fn curl_status(port: u16, ca: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
        ])
        .args(extra)
        .arg(format!("https://localhost:{port}/x"))
        .env_remove("CURL_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("curl must be installed");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn tls_gateway_speaks_h2_and_reloads_its_certificate_on_sighup() {
    let o = origin();
    let port = free_port();
    let d = tmp();
    let (ca1, ca2, site) = (d.path().join("ca1"), d.path().join("ca2"), d.path().join("site"));
    let run = |args: &[&str]| ok(&trove().args(args).output().unwrap(), &format!("{args:?}"));
    run(&["cert", "ca", "--out", ca1.to_str().unwrap()]);
    run(&["cert", "ca", "--out", ca2.to_str().unwrap()]);
    run(&["cert", "issue", "--ca", ca1.to_str().unwrap(), "--host", "localhost", "--out", site.to_str().unwrap()]);
    let conf = d.path().join("gw.toml");
    std::fs::write(
        &conf,
        format!(
            "[log]\naccess = \"off\"\n[[listen]]\naddr = \"127.0.0.1:{port}\"\ntls = true\n[[server]]\nnames = [\"localhost\"]\n[server.tls]\ncert = \"{c}\"\nkey = \"{k}\"\n[[server.route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:{o}/\"\n",
            c = site.join("server.crt").display(),
            k = site.join("server.key").display()
        ),
    )
    .unwrap();
    let mut g = Guard(Some(trove().args(["gateway", "--config", conf.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()));
    wait_port(port, g.child(), "trove gateway");
    // HTTP/2 by ALPN, and HTTP/1.1 when asked.
    assert_eq!(curl_status(port, &ca1.join("ca.crt"), &["--http2"]), (true, "200 2".to_string()));
    assert_eq!(curl_status(port, &ca1.join("ca.crt"), &["--http1.1"]), (true, "200 1.1".to_string()));
    // A connection opened before the reload keeps working after it.
    // Guarded: a failing assertion below must not leave it running.
    let mut before = Guard(Some(
        std::process::Command::new("openssl")
            .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl must be installed"),
    ));
    std::thread::sleep(Duration::from_millis(300));
    // A broken new key: the old certificate stays.
    std::fs::write(site.join("server.key"), "not a key").unwrap();
    std::process::Command::new("kill").args(["-HUP", &g.child().id().to_string()]).status().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(curl_status(port, &ca1.join("ca.crt"), &[]).0, "old certificate still served");
    // A good new certificate from another CA: served from now on.
    run(&["cert", "issue", "--ca", ca2.to_str().unwrap(), "--host", "localhost", "--out", site.to_str().unwrap(), "--force"]);
    std::process::Command::new("kill").args(["-HUP", &g.child().id().to_string()]).status().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(curl_status(port, &ca2.join("ca.crt"), &[]).0, "new certificate served after SIGHUP");
    assert!(!curl_status(port, &ca1.join("ca.crt"), &[]).0, "old certificate no longer served");
    {
        let stdin = before.child().stdin.as_mut().unwrap();
        stdin.write_all(b"GET /before HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    }
    let out = before.0.take().unwrap().wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&out.stdout));
}
