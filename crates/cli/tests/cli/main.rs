//! End-to-end tests of the `trove` binary: `gateway --check`, a running gateway's signals and
//! logs, and `trove up` as a new user runs it, with real git over real TLS on loopback.

mod admin;
mod apache_layouts;
mod api;
mod cluster;
mod doctor;
mod gateway;
mod h2_push;
mod readme;
mod server;
mod up;
mod web_ui;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn trove() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trove"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what} exited with {st} before listening on {port}: {err}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child that is killed when the test ends, however it ends.
pub struct Guard(pub Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Guard {
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
    /// Send a signal and wait for the exit.
    pub fn signal_and_wait(&mut self, sig: &str) -> std::process::ExitStatus {
        let c = self.0.as_mut().unwrap();
        Command::new("kill").args([&format!("-{sig}"), &c.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                self.0 = None;
                return st;
            }
            assert!(Instant::now() < deadline, "process did not stop after SIG{sig}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// git with nothing of the machine's or user's configuration, and no preset CA bundle.
pub fn git(dir: &Path, home: &Path, args: &[&str]) -> Output {
    let mut c = Command::new("git");
    c.current_dir(dir).args(args);
    clean_git_env(&mut c, home);
    c.output().expect("git must be installed")
}

/// No machine or user git configuration, no preset CA bundle, a fixed identity, no prompts.
pub fn clean_git_env(c: &mut Command, home: &Path) {
    for v in ["GIT_SSL_CAINFO", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "GIT_SSL_NO_VERIFY"] {
        c.env_remove(v);
    }
    c.env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .stdin(Stdio::null());
}

pub fn ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[allow(dead_code)]
pub fn pb(p: &str) -> PathBuf {
    PathBuf::from(p)
}
