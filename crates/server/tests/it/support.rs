//! Test support: a real server on 127.0.0.1 port 0 in its own runtime, a fixture of users,
//! projects and repositories, the real `git` CLI with a hermetic environment, and a raw HTTP
//! client for the requests git would never send.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use trove_server::{Server, ServerConfig};
use trove_store::{GlobalPermission, Owner, Password, Permission, ProjectKey, RepoSlug, UserName};

pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` plus the context path.
    pub root: String,
    pub data: tempfile::TempDir,
    pub home: tempfile::TempDir,
    runtime: tokio::runtime::Handle,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub writer_token: String,
    pub reader_token: String,
    /// With `TROVE_TEST_DATABASE=postgres`: the PostgreSQL this server's metadata is in (stopped
    /// after the server).
    pub pg: Option<std::sync::Arc<trove_store::pgtest::TestPg>>,
    /// Its database's URL, for a restart.
    pub pg_url: Option<String>,
}

/// `TROVE_TEST_DATABASE=postgres` runs every server test on a PostgreSQL of its own (scripts/test
/// runs the suite once on each backend); unset, SQLite in the data directory.
pub fn test_postgres() -> Option<(std::sync::Arc<trove_store::pgtest::TestPg>, String)> {
    match std::env::var("TROVE_TEST_DATABASE").as_deref() {
        Ok("postgres") => {
            let pg = std::sync::Arc::new(trove_store::pgtest::TestPg::start());
            let url = pg.database();
            Some((pg, url))
        }
        Ok("sqlite") | Err(_) => None,
        Ok(other) => panic!("TROVE_TEST_DATABASE={other:?}: use postgres or sqlite"),
    }
}

pub fn user(n: &str) -> UserName {
    UserName::parse(n).unwrap()
}

pub fn password(n: &str) -> String {
    format!("{n}-password")
}

impl TestServer {
    /// A server with the standard fixture:
    /// - users `admin` (SYS_ADMIN), `reader` (read on project TP), `writer` (write on TP),
    ///   `outsider` (no grants); each with password `<name>-password`;
    /// - tokens for `writer` (write scope) and `reader` (read scope);
    /// - private project `TP` with repository `test`; public project `PUB` with `open`.
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    /// [`TestServer::start`] with the SSH listener on (127.0.0.1, port 0; `server.ssh_addr()`).
    pub fn start_with_ssh() -> TestServer {
        Self::start_with(|c| c.ssh = Some(trove_server::ssh::SshSettings::new("127.0.0.1:0".parse().unwrap())))
    }

    pub fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        Self::start_node(configure, true)
    }

    /// A server; with `fixture`, the standard users, projects and tokens are made first (a
    /// second node of a cluster shares the first one's, so it makes none and has no tokens).
    pub fn start_node(configure: impl FnOnce(&mut ServerConfig), fixture: bool) -> TestServer {
        let data = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(".gitconfig"),
            "[user]\n\tname = Test Person\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n",
        )
        .unwrap();
        let mut config = ServerConfig::new(data.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        let pg = test_postgres().map(|(pg, url)| {
            config.database = Some(trove_server::DatabaseSettings::new(&url).unwrap());
            (pg, url)
        });
        configure(&mut config);
        let server = Server::open(config).unwrap();
        let (writer_token, reader_token) = if fixture { Self::fixture(&server) } else { (String::new(), String::new()) };
        let mut t = Self::serve(server, data, home, writer_token, reader_token);
        (t.pg, t.pg_url) = pg.unzip();
        t
    }

    fn fixture(server: &Server) -> (String, String) {
        let store = server.store();
        for (name, global) in [
            ("admin", GlobalPermission::SysAdmin),
            ("reader", GlobalPermission::LicensedUser),
            ("writer", GlobalPermission::LicensedUser),
            ("outsider", GlobalPermission::LicensedUser),
        ] {
            store.create_user(&user(name), &Password::new(&password(name)).unwrap(), global).unwrap();
        }
        let tp = ProjectKey::parse("TP").unwrap();
        store.create_project(&tp, Some("Test Project"), false).unwrap();
        store.create_repo(&Owner::Project(tp.clone()), &RepoSlug::parse("test").unwrap(), false).unwrap();
        store.grant_project(&user("reader"), &tp, Permission::Read).unwrap();
        store.grant_project(&user("writer"), &tp, Permission::Write).unwrap();
        let pubk = ProjectKey::parse("PUB").unwrap();
        store.create_project(&pubk, None, true).unwrap();
        store.create_repo(&Owner::Project(pubk.clone()), &RepoSlug::parse("open").unwrap(), false).unwrap();
        store.grant_project(&user("writer"), &pubk, Permission::Write).unwrap();
        let writer_token = store.create_token(&user("writer"), "ci", Permission::Write).unwrap().secret;
        let reader_token = store.create_token(&user("reader"), "ro", Permission::Read).unwrap().secret;
        (writer_token, reader_token)
    }

    fn serve(server: Server, data: tempfile::TempDir, home: tempfile::TempDir, writer_token: String, reader_token: String) -> TestServer {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let srv = server.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let handle = rt.handle().clone();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send((listener.local_addr().unwrap(), handle)).unwrap();
                srv.serve(listener, async move {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let (addr, runtime) = addr_rx.recv().unwrap();
        let ctx = server.public_urls().context_path().as_str().to_owned();
        TestServer {
            root: format!("http://{addr}{ctx}"),
            server,
            addr,
            data,
            home,
            runtime,
            shutdown: Some(stop_tx),
            thread: Some(thread),
            writer_token,
            reader_token,
            pg: None,
            pg_url: None,
        }
    }

    /// Clone URL with credentials in the userinfo, or anonymous for `None`.
    pub fn url(&self, who: Option<(&str, &str)>, path: &str) -> String {
        match who {
            Some((u, p)) => {
                let root = self.root.strip_prefix("http://").unwrap();
                format!("http://{u}:{p}@{root}/{path}")
            }
            None => format!("{}/{path}", self.root),
        }
    }

    /// URL for a fixture user with their password.
    pub fn url_as(&self, name: &str, path: &str) -> String {
        self.url(Some((name, &password(name))), path)
    }

    /// The bare repository on disk for `KEY/slug`.
    pub fn repo_dir(&self, owner: &str, slug: &str) -> PathBuf {
        let repo = self.server.store().repo(&Owner::parse(owner).unwrap(), &RepoSlug::parse(slug).unwrap()).unwrap().unwrap();
        self.server.store().repo_path(&repo)
    }

    /// A fresh directory under the test's HOME.
    pub fn dir(&self, name: &str) -> PathBuf {
        let p = self.home.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn git_cmd(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("git");
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "")
            .env("LANG", "C")
            .current_dir(cwd)
            .args(args);
        c
    }

    pub fn git(&self, cwd: &Path, args: &[&str]) -> Output {
        self.git_cmd(cwd, args).output().unwrap()
    }

    /// Runs git and panics with its stderr unless it succeeds; returns trimmed stdout.
    pub fn git_ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.git(cwd, args);
        assert!(out.status.success(), "git {args:?} failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs git, expects failure, returns stderr.
    pub fn git_fails(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.git(cwd, args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "git {args:?} unexpectedly succeeded: {err}");
        err
    }

    /// A local working repository named `name` with `commits` commits on `main`, each adding a file.
    pub fn work_repo(&self, name: &str, commits: usize) -> PathBuf {
        let dir = self.dir(name);
        self.git_ok(&dir, &["init", "-q", "-b", "main"]);
        for i in 0..commits {
            self.commit(&dir, &format!("file{i}.txt"), &format!("content {i} of {name}\n"));
        }
        dir
    }

    /// Writes a file and commits it; returns the new commit id.
    pub fn commit(&self, dir: &Path, file: &str, content: &str) -> String {
        std::fs::write(dir.join(file), content).unwrap();
        self.git_ok(dir, &["add", file]);
        self.git_ok(dir, &["commit", "-q", "-m", &format!("change {file}")]);
        self.git_ok(dir, &["rev-parse", "HEAD"])
    }

    /// Pushes a fresh history of `commits` commits to `main` of `KEY/slug` as writer; returns
    /// the work directory (with `origin` set) and the tip.
    pub fn seed(&self, path: &str, commits: usize) -> (PathBuf, String) {
        let dir = self.work_repo(&format!("seed-{}", path.replace(['/', '.'], "-")), commits);
        self.git_ok(&dir, &["remote", "add", "origin", &self.url_as("writer", path)]);
        self.git_ok(&dir, &["push", "-q", "origin", "main"]);
        let tip = self.git_ok(&dir, &["rev-parse", "HEAD"]);
        (dir, tip)
    }

    /// `git rev-parse` inside the server's bare repository.
    pub fn server_rev(&self, owner: &str, slug: &str, rev: &str) -> Option<String> {
        let out = self.git(&self.repo_dir(owner, slug), &["rev-parse", "--verify", "-q", rev]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn fsck(&self, owner: &str, slug: &str) {
        self.wait_maintenance();
        let dir = self.repo_dir(owner, slug);
        self.git_ok(&dir, &["fsck", "--strict", "--no-progress"]);
    }

    /// Waits until no git process serves a request and background maintenance is done.
    pub fn wait_maintenance(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.server.running_git_processes() != 0 {
            assert!(Instant::now() < deadline, "git processes did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
        let s = self.server.clone();
        self.runtime.block_on(async move { s.maintenance_idle().await });
    }

    /// Waits until a git process has started since `before` and none is running.
    pub fn wait_git_idle_after(&self, before: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !(self.server.git_processes_started() > before && self.server.running_git_processes() == 0) {
            assert!(Instant::now() < deadline, "git processes did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Renders the metrics until the series `series` (labels included, as written) reads `want`
    /// (an operation is recorded once every part of it let go, which may be a moment after the
    /// client is done); returns the text, or panics with it.
    pub fn wait_metric(&self, series: &str, want: f64) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.server.render_metrics();
            let got = text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok());
            if got == Some(want) {
                return text;
            }
            assert!(Instant::now() < deadline, "{series} never became {want}:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The runtime the server runs on, for test listeners beside it.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Asks the server to stop and waits until `serve` has returned; panics after `within`.
    pub fn stop(&mut self, within: Duration) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let thread = self.thread.take().expect("the server runs");
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = thread.join();
            let _ = done_tx.send(());
        });
        assert!(done_rx.recv_timeout(within).is_ok(), "the server did not stop within {within:?}");
    }

    pub fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
        http(self.addr, method, path, headers, body)
    }

    /// Stops the server (orderly, within `within`; unless stopped already) and starts it again
    /// on the same data directory (and database), configured by `configure`, on a new port.
    pub fn restart(&mut self, within: Duration, configure: impl FnOnce(&mut ServerConfig)) {
        if self.thread.is_some() {
            self.stop(within);
        }
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().unwrap());
        let home = std::mem::replace(&mut self.home, tempfile::tempdir().unwrap());
        let mut config = ServerConfig::new(data.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        if let Some(url) = &self.pg_url {
            config.database = Some(trove_server::DatabaseSettings::new(url).unwrap());
        }
        configure(&mut config);
        let server = Server::open(config).unwrap();
        let mut next = Self::serve(server, data, home, std::mem::take(&mut self.writer_token), std::mem::take(&mut self.reader_token));
        (next.pg, next.pg_url) = (self.pg.take(), self.pg_url.take());
        std::mem::swap(self, &mut next);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Leave the thread to finish on its own: graceful shutdown waits for open streams.
        let _ = self.thread.take();
    }
}

pub fn basic(user: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), response read to the end.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> RawResponse {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("complete response head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    RawResponse { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..nl]).split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = nl + 2;
        let take = size.min(data.len().saturating_sub(start));
        out.extend_from_slice(&data[start..start + take]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// Encodes one pkt-line.
pub fn pkt(s: &str) -> Vec<u8> {
    let mut v = format!("{:04x}", s.len() + 4).into_bytes();
    v.extend_from_slice(s.as_bytes());
    v
}

/// A REST call as `who` (Basic with their password; `None`: anonymous), JSON in and out: the
/// status and the body (`Null` when it is empty or not JSON).
pub fn rest(t: &TestServer, who: Option<&str>, method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = who.map(|w| basic(w, &password(w)));
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    if !text.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = t.http(method, path, &headers, text.as_bytes());
    let v = if r.body.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null) };
    (r.status, v)
}
