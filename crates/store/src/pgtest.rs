//! A real PostgreSQL for tests: Debian's package, started by the test itself in a temporary
//! directory, as the unprivileged `postgres` user when the tests run as root, on a loopback
//! port the kernel picked, and stopped when the value drops. Each [`TestPg::database`] is a
//! fresh database in it.
//!
//! The binaries are found in `TROVE_TEST_PG_BIN`, or the newest `/usr/lib/postgresql/*/bin`.
//! Without them the test fails (never skips), saying what to install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct TestPg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run the server's tools as this user (root cannot run PostgreSQL).
    as_user: Option<&'static str>,
}

fn bin_dir() -> PathBuf {
    if let Some(b) = std::env::var_os("TROVE_TEST_PG_BIN") {
        return PathBuf::from(b);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("initdb").is_file())
        .collect();
    found.sort();
    match found.pop() {
        Some((_, p)) => p,
        None => panic!(
            "PostgreSQL is not installed: the Data Center tests need Debian's package (apt-get install postgresql), or TROVE_TEST_PG_BIN naming its bin directory"
        ),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

impl TestPg {
    pub fn start() -> TestPg {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("trove-pg-").tempdir().expect("temporary directory");
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc_geteuid() } == 0;
        let as_user = root.then_some("postgres");
        if root {
            let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().expect("chown");
            assert!(st.success(), "cannot give {} to the postgres user", dir.path().display());
        }
        let mut pg = TestPg { dir, bin, port: 0, as_user };
        let data = pg.data();
        pg.run("initdb", &["-D", path(&data), "-U", "trove", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"]);
        // A port the kernel picked a moment ago may be taken again before PostgreSQL binds it:
        // try a few.
        for attempt in 0..5 {
            pg.port = free_port();
            let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", pg.port, pg.dir.path().display());
            let log = pg.dir.path().join("postgres.log");
            if pg.try_run("pg_ctl", &["-D", path(&data), "-l", path(&log), "-w", "-t", "60", "-o", &opts, "start"]) {
                return pg;
            }
            assert!(attempt < 4, "PostgreSQL did not start; its log: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        unreachable!()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match self.as_user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn try_run(&self, tool: &str, args: &[&str]) -> bool {
        let out = self.command(tool).args(args).output().unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        out.status.success()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(out.status.success(), "{tool} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the server's maintenance database, as its superuser `trove`.
    pub fn admin_url(&self) -> String {
        format!("postgres://trove@127.0.0.1:{}/postgres", self.port)
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut c = postgres::Client::connect(&self.admin_url(), postgres::NoTls).expect("connect to the test PostgreSQL");
        c.batch_execute(&format!("CREATE DATABASE {name}")).expect("create a test database");
        format!("postgres://trove@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server (fast, as a crash would), leaving the data: [`TestPg::restart`] starts
    /// it again on the same port.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", path(&self.data()), "-m", "immediate", "-w", "stop"]);
    }

    pub fn restart(&self) {
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", self.port, self.dir.path().display());
        let log = self.dir.path().join("postgres.log");
        self.run("pg_ctl", &["-D", path(&self.data()), "-l", path(&log), "-w", "-t", "60", "-o", &opts, "start"]);
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").args(["-D", path(&self.data()), "-m", "immediate", "-w", "stop"]).output();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
