//! Debian's and RHEL's Apache layouts: `trove apache-config` output enabled in a copy of
//! Debian's real /etc/apache2 (by the real a2enmod/a2ensite, checked and run by the real
//! apache2ctl), and `trove gateway` reading the stock configurations plus a Stash site.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::*;

/// A copy of Debian's stock /etc/apache2 whose run, lock and log folders (envvars) and ports
/// (ports.conf: 80, and 443 under mod_ssl) are moved into the temporary folder.
struct DebianTree {
    dir: tempfile::TempDir,
    http_port: u16,
}

impl DebianTree {
    fn new() -> DebianTree {
        assert!(Path::new("/etc/apache2/apache2.conf").exists(), "Debian's apache2 is required: apt-get install apache2 (scripts/test does)");
        let dir = tmp();
        let conf = dir.path().join("apache2");
        let st = Command::new("cp").args(["-a", "/etc/apache2", conf.to_str().unwrap()]).status().unwrap();
        assert!(st.success());
        // apache2ctl makes run/ and lock/ itself, and refuses a lock/ not owned by www-data.
        for sub in ["log", "state"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let envvars = std::fs::read_to_string(conf.join("envvars")).unwrap();
        let mut moved = String::new();
        for line in envvars.lines() {
            let repl = [("APACHE_PID_FILE", "run/apache2.pid"), ("APACHE_RUN_DIR", "run"), ("APACHE_LOCK_DIR", "lock"), ("APACHE_LOG_DIR", "log")]
                .iter()
                .find(|(name, _)| line.starts_with(&format!("export {name}=")))
                .map(|(name, p)| format!("export {name}={}", dir.path().join(p).display()));
            moved.push_str(&repl.unwrap_or_else(|| line.to_string()));
            moved.push('\n');
        }
        assert!(moved.contains(&format!("APACHE_LOG_DIR={}", dir.path().join("log").display())), "envvars changed shape:\n{envvars}");
        std::fs::write(conf.join("envvars"), moved).unwrap();
        let http_port = free_port();
        let ports = std::fs::read_to_string(conf.join("ports.conf")).unwrap();
        assert!(ports.contains("Listen 80\n") && ports.contains("Listen 443\n"), "ports.conf changed shape:\n{ports}");
        let ports =
            ports.replace("Listen 80\n", &format!("Listen 127.0.0.1:{http_port}\n")).replace("Listen 443\n", &format!("Listen 127.0.0.1:{}\n", free_port()));
        std::fs::write(conf.join("ports.conf"), ports).unwrap();
        DebianTree { dir, http_port }
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("apache2")
    }

    fn apache2_conf(&self) -> PathBuf {
        self.conf_dir().join("apache2.conf")
    }

    /// Debian's own tools, pointed at this copy (APACHE_CONFDIR) and at a state folder of
    /// its own, so nothing of the machine's /etc/apache2 or /var/lib/apache2 changes.
    /// APACHE_STARTED_BY_SYSTEMD (what Debian's apache2.service sets) keeps `apache2ctl start`
    /// from handing over to `systemctl start apache2`, the machine's own Apache.
    fn debian_tool(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let o = Command::new(tool)
            .args(args)
            .env("APACHE_CONFDIR", self.conf_dir())
            .env("APACHE_STATE_DIRECTORY", self.dir.path().join("state"))
            .env("APACHE_STARTED_BY_SYSTEMD", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{tool} (Debian's apache2 package) is required: {e}"));
        assert!(o.status.success(), "{tool} {args:?}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        o
    }

    fn add_site(&self, name: &str, text: &str) {
        std::fs::write(self.conf_dir().join(format!("sites-available/{name}.conf")), text).unwrap();
        self.debian_tool("a2ensite", &[name]);
    }
}

/// Apache started by apache2ctl, stopped (with its children) when the test ends.
struct RunningApache {
    pid_file: PathBuf,
}

impl Drop for RunningApache {
    fn drop(&mut self) {
        let Ok(pid) = std::fs::read_to_string(&self.pid_file) else { return };
        let pid = pid.trim().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// An origin that answers every request with its request line and X-Forwarded-Proto.
fn echo_origin() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let n = s.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let line = head.lines().next().unwrap_or("").to_string();
                let proto = head.lines().find(|l| l.to_ascii_lowercase().starts_with("x-forwarded-proto:")).unwrap_or("").to_ascii_lowercase();
                let body = format!("{line}\n{proto}\n");
                let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            });
        }
    });
    port
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: mycompany.com\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf
}

/// The seed's Apache set-up for Stash, as a Debian site on `port`.
fn stash_site(origin: u16, port: u16) -> String {
    format!(
        "<VirtualHost *:{port}>\n    ServerName mycompany.com\n    ProxyRequests Off\n    <Proxy *>\n        Order Deny,Allow\n        Allow from all\n    </Proxy>\n    ProxyPass        /stash http://localhost:{origin}/stash connectiontimeout=5 timeout=300\n    ProxyPassReverse /stash http://localhost:{origin}/stash\n</VirtualHost>\n"
    )
}

#[test]
fn debian_site_from_apache_config_passes_apache2ctl_configtest_and_proxies() {
    let t = DebianTree::new();
    let o = echo_origin();
    let port = free_port();
    let data = t.dir.path().join("data");
    let d = path_str(&data);
    ok(&trove().args(["admin", "--data", &d, "init"]).output().unwrap(), "init");
    ok(&trove().args(["admin", "--data", &d, "settings", "base-url", &format!("https://localhost:{port}/stash")]).output().unwrap(), "base-url");
    ok(&trove().args(["admin", "--data", &d, "settings", "context-path", "/stash"]).output().unwrap(), "context-path");
    ok(&trove().args(["cert", "self-signed", "--host", "localhost", "--out", &path_str(&data.join("tls"))]).output().unwrap(), "cert");
    let site =
        ok(&trove().args(["apache-config", "--layout", "debian", "--data", &d, "--server", &format!("127.0.0.1:{o}")]).output().unwrap(), "apache-config");
    // This machine has /etc/apache2, so the layout found by itself is Debian's.
    let detected = trove().args(["apache-config", "--data", &d, "--server", &format!("127.0.0.1:{o}")]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&detected.stdout), site);
    assert!(String::from_utf8_lossy(&detected.stderr).contains("debian layout"), "{}", String::from_utf8_lossy(&detected.stderr));
    assert!(!site.lines().any(|l| l.starts_with("LoadModule")), "Debian loads modules with a2enmod:\n{site}");

    // Do what the site file's comments say, with Debian's own tools.
    std::fs::write(t.conf_dir().join("sites-available/trove.conf"), &site).unwrap();
    let a2enmod = site.lines().find_map(|l| l.strip_prefix("#   a2enmod ")).unwrap_or_else(|| panic!("no a2enmod line:\n{site}"));
    t.debian_tool("a2enmod", &a2enmod.split_whitespace().collect::<Vec<_>>());
    t.debian_tool("a2ensite", &["trove"]);
    assert!(t.conf_dir().join("mods-enabled/ssl.load").exists() && t.conf_dir().join("sites-enabled/trove.conf").exists());

    let check = t.debian_tool("apache2ctl", &["-t"]);
    assert!(String::from_utf8_lossy(&check.stderr).contains("Syntax OK"), "{}", String::from_utf8_lossy(&check.stderr));

    // And the enabled site really proxies, over TLS, with X-Forwarded-Proto set.
    let _apache = RunningApache { pid_file: t.dir.path().join("run/apache2.pid") };
    t.debian_tool("apache2ctl", &["start"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "Apache did not listen on {port}: {}",
            std::fs::read_to_string(t.dir.path().join("log/error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new("curl")
        .args(["-sS", "--cacert", &path_str(&data.join("tls/server.crt")), "--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg(format!("https://localhost:{port}/stash/x"))
        .env_remove("CURL_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("curl must be installed");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("GET /stash/x HTTP/1.1") && body.contains("x-forwarded-proto: https"), "{body}{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn gateway_runs_debian_stock_config_with_a_stash_site_without_errors_and_lists_ignored_directives_once() {
    let t = DebianTree::new();
    let o = echo_origin();
    t.debian_tool("a2enmod", &["proxy", "proxy_http"]);
    t.add_site("stash", &stash_site(o, t.http_port));
    let conf = path_str(&t.apache2_conf());
    let check = trove().args(["gateway", "--check", &conf]).output().unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{err}");
    assert!(!err.contains(": error: "), "{err}");
    // Each directive of a module trove does not implement is listed once, with its module.
    for (name, module, file) in [
        ("AddLanguage", "mod_mime", "mods-enabled/mime.conf"),
        ("AddCharset", "mod_mime", "mods-enabled/mime.conf"),
        ("AddIcon", "mod_autoindex", "mods-enabled/autoindex.conf"),
        ("BrowserMatch", "mod_setenvif", "mods-enabled/setenvif.conf"),
        ("AddOutputFilterByType", "mod_filter", "mods-enabled/deflate.conf"),
        ("LanguagePriority", "mod_negotiation", "mods-enabled/negotiation.conf"),
        ("ExtendedStatus", "mod_status", "mods-enabled/status.conf"),
    ] {
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(&format!(": ignored: {name} ("))).collect();
        assert_eq!(lines.len(), 1, "{name}: {err}");
        assert!(lines[0].contains(&format!("{name} ({module}")) && lines[0].contains(file), "{}", lines[0]);
    }
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains(&format!("route /stash -> http://localhost:{o}/stash connect_timeout=5000ms timeout=300000ms")), "{out}");

    // It runs: ${APACHE_LOG_DIR} comes from envvars, and /stash reaches the origin.
    let mut g = Guard(Some(trove().args(["gateway", "--config", &conf]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()));
    wait_port(t.http_port, g.child(), "trove gateway");
    let resp = http_get(t.http_port, "/stash/projects");
    assert!(resp.starts_with("HTTP/1.1 200") && resp.contains("GET /stash/projects HTTP/1.1"), "{resp}");
    let mut stderr = g.child().stderr.take().unwrap();
    g.signal_and_wait("TERM");
    let mut started = String::new();
    stderr.read_to_string(&mut started).unwrap();
    assert!(!started.contains(": error: "), "{started}");
    assert_eq!(started.lines().filter(|l| l.contains(": ignored: AddLanguage (mod_mime, ")).count(), 1, "listed at start too: {started}");
    assert!(t.dir.path().join("log/error.log").exists(), "ErrorLog ${{APACHE_LOG_DIR}}/error.log was not expanded from envvars");
}

#[test]
fn gateway_refuses_directives_that_change_proxied_requests_in_debian_layout() {
    let t = DebianTree::new();
    t.debian_tool("a2enmod", &["proxy", "proxy_http", "rewrite"]);
    let site = stash_site(7990, t.http_port).replace("</VirtualHost>", "    RewriteEngine On\n    RewriteRule ^/old/(.*) /stash/$1 [R=301]\n</VirtualHost>");
    t.add_site("stash", &site);
    let check = trove().args(["gateway", "--check", &path_str(&t.apache2_conf())]).output().unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 2, "only the two mod_rewrite lines: {err}");
    let site_file = t.conf_dir().join("sites-enabled/stash.conf");
    assert!(errors[0].starts_with(&format!("{}:10: error: RewriteEngine (mod_rewrite) is not implemented by trove", site_file.display())), "{}", errors[0]);
    assert!(errors[1].starts_with(&format!("{}:11: error: RewriteRule (mod_rewrite)", site_file.display())), "{}", errors[1]);
    assert!(errors.iter().all(|e| e.contains(" — ")), "each says the fix: {err}");
}

/// RHEL's stock layout (httpd 2.4 as RHEL 9 ships it), shortened where lines repeat.
fn rhel_tree(root: &Path, cert: &Path, key: &Path) {
    let w = |p: &str, text: &str| {
        let f = root.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    };
    w(
        "conf/httpd.conf",
        &format!(
            r#"# This is the main Apache HTTP server configuration file.
ServerRoot "{root}"
Listen 80
Include conf.modules.d/*.conf
User apache
Group apache
ServerAdmin root@localhost
<Directory />
    AllowOverride none
    Require all denied
</Directory>
DocumentRoot "/var/www/html"
<Directory "/var/www">
    AllowOverride None
    Require all granted
</Directory>
<Directory "/var/www/html">
    Options Indexes FollowSymLinks
    AllowOverride None
    Require all granted
</Directory>
<IfModule dir_module>
    DirectoryIndex index.html
</IfModule>
<Files ".ht*">
    Require all denied
</Files>
ErrorLog "logs/error_log"
LogLevel warn
<IfModule log_config_module>
    LogFormat "%h %l %u %t \"%r\" %>s %b \"%{{Referer}}i\" \"%{{User-Agent}}i\"" combined
    LogFormat "%h %l %u %t \"%r\" %>s %b" common
    <IfModule logio_module>
      LogFormat "%h %l %u %t \"%r\" %>s %b \"%{{Referer}}i\" \"%{{User-Agent}}i\" %I %O" combinedio
    </IfModule>
    CustomLog "logs/access_log" combined
</IfModule>
<IfModule alias_module>
    ScriptAlias /cgi-bin/ "/var/www/cgi-bin/"
</IfModule>
<Directory "/var/www/cgi-bin">
    AllowOverride None
    Options None
    Require all granted
</Directory>
<IfModule mime_module>
    TypesConfig /etc/mime.types
    AddType application/x-compress .Z
    AddType application/x-gzip .gz .tgz
    AddType text/html .shtml
    AddOutputFilter INCLUDES .shtml
</IfModule>
AddDefaultCharset UTF-8
<IfModule mime_magic_module>
    MIMEMagicFile conf/magic
</IfModule>
EnableSendfile on
IncludeOptional conf.d/*.conf
"#,
            root = root.display()
        ),
    );
    let modules = |names: &[&str]| names.iter().map(|m| format!("LoadModule {m}_module modules/mod_{m}.so\n")).collect::<String>();
    w(
        "conf.modules.d/00-base.conf",
        &modules(&[
            "access_compat",
            "actions",
            "alias",
            "allowmethods",
            "auth_basic",
            "auth_digest",
            "authn_anon",
            "authn_core",
            "authn_file",
            "authz_core",
            "authz_groupfile",
            "authz_host",
            "authz_owner",
            "authz_user",
            "autoindex",
            "brotli",
            "cache",
            "cache_disk",
            "data",
            "deflate",
            "dir",
            "echo",
            "env",
            "expires",
            "ext_filter",
            "filter",
            "headers",
            "include",
            "info",
            "log_config",
            "logio",
            "macro",
            "mime_magic",
            "mime",
            "negotiation",
            "remoteip",
            "reqtimeout",
            "request",
            "rewrite",
            "setenvif",
            "slotmem_plain",
            "slotmem_shm",
            "socache_shmcb",
            "status",
            "substitute",
            "suexec",
            "unique_id",
            "unixd",
            "userdir",
            "version",
            "vhost_alias",
            "watchdog",
        ]),
    );
    w("conf.modules.d/00-mpm.conf", "LoadModule mpm_event_module modules/mod_mpm_event.so\n#LoadModule mpm_prefork_module modules/mod_mpm_prefork.so\n");
    w(
        "conf.modules.d/00-proxy.conf",
        &modules(&[
            "proxy",
            "lbmethod_bybusyness",
            "lbmethod_byrequests",
            "proxy_ajp",
            "proxy_balancer",
            "proxy_connect",
            "proxy_fcgi",
            "proxy_http",
            "proxy_wstunnel",
        ]),
    );
    w("conf.modules.d/00-ssl.conf", "LoadModule ssl_module modules/mod_ssl.so\n");
    w("conf.modules.d/00-systemd.conf", "LoadModule systemd_module modules/mod_systemd.so\n");
    w(
        "conf.modules.d/01-cgi.conf",
        "<IfModule mpm_worker_module>\n   LoadModule cgid_module modules/mod_cgid.so\n</IfModule>\n<IfModule mpm_event_module>\n   LoadModule cgid_module modules/mod_cgid.so\n</IfModule>\n<IfModule mpm_prefork_module>\n   LoadModule cgi_module modules/mod_cgi.so\n</IfModule>\n",
    );
    w("conf.modules.d/10-h2.conf", "<IfModule !mpm_prefork_module>\n    LoadModule http2_module modules/mod_http2.so\n</IfModule>\n");
    w(
        "conf.d/autoindex.conf",
        "IndexOptions FancyIndexing HTMLTable VersionSort\nAlias /icons/ \"/usr/share/httpd/icons/\"\n<Directory \"/usr/share/httpd/icons\">\n    Options Indexes MultiViews FollowSymlinks\n    AllowOverride None\n    Require all granted\n</Directory>\nAddIconByEncoding (CMP,/icons/compressed.gif) x-compress x-gzip\nAddIconByType (TXT,/icons/text.gif) text/*\nAddIcon /icons/binary.gif .bin .exe\nAddIcon /icons/back.gif ..\nDefaultIcon /icons/unknown.gif\nReadmeName README.html\nHeaderName HEADER.html\nIndexIgnore .??* *~ *# HEADER* README* RCS CVS *,v *,t\n",
    );
    w(
        "conf.d/userdir.conf",
        "<IfModule mod_userdir.c>\n    UserDir disabled\n</IfModule>\n<Directory \"/home/*/public_html\">\n    AllowOverride FileInfo AuthConfig Limit Indexes\n    Options MultiViews Indexes SymLinksIfOwnerMatch IncludesNoExec\n    Require method GET POST OPTIONS\n</Directory>\n",
    );
    w(
        "conf.d/welcome.conf",
        "<LocationMatch \"^/+$\">\n    Options -Indexes\n    ErrorDocument 403 /.noindex.html\n</LocationMatch>\n<Directory /usr/share/httpd/noindex>\n    AllowOverride None\n    Require all granted\n</Directory>\nAlias /.noindex.html /usr/share/httpd/noindex/index.html\nAlias /poweredby.png /usr/share/httpd/icons/apache_pb3.png\n",
    );
    w(
        "conf.d/ssl.conf",
        &format!(
            r#"Listen 443 https
SSLPassPhraseDialog exec:/usr/libexec/httpd-ssl-pass-dialog
SSLSessionCache         shmcb:/run/httpd/sslcache(512000)
SSLSessionCacheTimeout  300
SSLCryptoDevice builtin
<VirtualHost _default_:443>
ErrorLog logs/ssl_error_log
TransferLog logs/ssl_access_log
LogLevel warn
SSLEngine on
SSLHonorCipherOrder on
SSLCipherSuite PROFILE=SYSTEM
SSLProxyCipherSuite PROFILE=SYSTEM
SSLCertificateFile {cert}
SSLCertificateKeyFile {key}
<FilesMatch "\.(cgi|shtml|phtml|php)$">
    SSLOptions +StdEnvVars
</FilesMatch>
<Directory "/var/www/cgi-bin">
    SSLOptions +StdEnvVars
</Directory>
BrowserMatch "MSIE [2-5]" \
         nokeepalive ssl-unclean-shutdown \
         downgrade-1.0 force-response-1.0
CustomLog logs/ssl_request_log \
          "%t %h %{{SSL_PROTOCOL}}x %{{SSL_CIPHER}}x \"%r\" %b"
</VirtualHost>
"#,
            cert = cert.display(),
            key = key.display()
        ),
    );
    // The seed's Stash set-up, as an administrator adds it in conf.d/.
    w(
        "conf.d/stash.conf",
        "ProxyRequests Off\n<Proxy *>\n    Order Deny,Allow\n    Allow from all\n</Proxy>\nProxyPass        /stash http://localhost:7990/stash connectiontimeout=5 timeout=300\nProxyPassReverse /stash http://localhost:7990/stash\n",
    );
}

#[test]
fn gateway_reads_rhel_stock_layout_with_a_stash_site_without_errors() {
    let d = tmp();
    let root = d.path().join("httpd");
    let tls = d.path().join("pki");
    ok(&trove().args(["cert", "self-signed", "--host", "localhost", "--out", &path_str(&tls)]).output().unwrap(), "cert");
    rhel_tree(&root, &tls.join("server.crt"), &tls.join("server.key"));
    let check = trove().args(["gateway", "--check", &path_str(&root.join("conf/httpd.conf"))]).output().unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{err}");
    assert!(!err.contains(": error: "), "{err}");
    for (name, module) in
        [("AddIcon", "mod_autoindex"), ("AddType", "mod_mime"), ("BrowserMatch", "mod_setenvif"), ("Alias", "mod_alias"), ("ErrorDocument", "core")]
    {
        let n = err.lines().filter(|l| l.contains(&format!(": ignored: {name} ({module}"))).count();
        assert_eq!(n, 1, "{name} ({module}) listed once: {err}");
    }
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("listen 0.0.0.0:80\n") && out.contains("listen 0.0.0.0:443 tls\n"), "{out}");
    assert!(out.contains("route /stash -> http://localhost:7990/stash connect_timeout=5000ms timeout=300000ms"), "{out}");
}
