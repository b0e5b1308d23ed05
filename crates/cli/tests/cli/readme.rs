//! The README's "Five minutes with Trove" block, run as written: every line in order, each in
//! its own shell as a user pasting it would, with only the ports replaced by free ones and the
//! two passwords typed for them. A walkthrough that breaks fails CI.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::*;

const JUSTME_PASSWORD: &str = "justme-password-1";

fn five_minutes_block() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let start = readme.find("## Five minutes with Trove").expect("the README has the Five minutes section");
    let rest = &readme[start..];
    let open = rest.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let close = rest[open..].find("```").unwrap();
    rest[open..open + close].lines().map(str::to_owned).collect()
}

/// The command part of a line (no trailing `# comment`), or `None` for comments and blanks.
fn command(line: &str) -> Option<String> {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') {
        return None;
    }
    Some(match l.find("  #") {
        Some(i) => l[..i].trim().to_owned(),
        None => l.to_owned(),
    })
}

fn shell(line: &str, dir: &Path, home: &Path, askpass: &Path, stdin: Option<&str>) -> std::process::Output {
    let mut c = Command::new("sh");
    c.arg("-c").arg(line).current_dir(dir);
    clean_git_env(&mut c, home);
    c.env("PATH", format!("{}:{}", Path::new(env!("CARGO_BIN_EXE_trove")).parent().unwrap().display(), std::env::var("PATH").unwrap()))
        .env("GIT_ASKPASS", askpass)
        .env_remove("GIT_TERMINAL_PROMPT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut ch = c.spawn().unwrap();
    if let Some(input) = stdin {
        ch.stdin.as_mut().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(ch.stdin.take());
    ch.wait_with_output().unwrap()
}

/// Starts a `trove up` line in the background and returns it with what it printed up to the
/// end of its banner.
fn start_up(line: &str, dir: &Path, https: u16) -> (Guard, Vec<String>) {
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!("exec {line}")).current_dir(dir);
    c.env("PATH", format!("{}:{}", Path::new(env!("CARGO_BIN_EXE_trove")).parent().unwrap().display(), std::env::var("PATH").unwrap()))
        .env_remove("TROVE_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let mut g = Guard(Some(child));
    wait_port(https, g.child(), line);
    let mut lines = Vec::new();
    let mut r = BufReader::new(out);
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap() == 0 {
            break;
        }
        let done = l.starts_with("Data: ");
        lines.push(l.trim_end().to_owned());
        if done {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut r, &mut std::io::sink()));
    (g, lines)
}

#[test]
fn the_readmes_five_minutes_work_when_pasted_in_order() {
    let work = tmp();
    let home = tmp();
    let (https, http, server) = (free_port(), free_port(), free_port());
    let (https2, http2, ssh) = (free_port(), free_port(), free_port());
    let ports = |l: &str| {
        l.replace("localhost:8443", &format!("localhost:{https}")).replace(
            "--https 0.0.0.0:443 --http 0.0.0.0:80",
            &format!("--https 127.0.0.1:{https2} --http 127.0.0.1:{http2} --server 127.0.0.1:{server} --ssh 127.0.0.1:{ssh}"),
        )
    };
    let askpass = work.path().join("askpass.sh");
    let mut first: Option<Guard> = None;
    let mut cwd: std::path::PathBuf = work.path().to_owned();
    let cwd_file = home.path().join("cwd");
    let mut ran = Vec::new();
    for raw in five_minutes_block() {
        let Some(line) = command(&raw) else { continue };
        // Building is the one step the test does not repeat: the binary under test is on PATH.
        if line.starts_with("cargo build") || line.starts_with("export PATH=") {
            continue;
        }
        let line = ports(&line);
        if line == "trove up" {
            let (g, banner) = start_up(
                &format!("trove up --https 127.0.0.1:{https} --http 127.0.0.1:{http} --server 127.0.0.1:{server} --ssh 127.0.0.1:{ssh}"),
                work.path(),
                https,
            );
            let login = banner.iter().find(|l| l.trim_start().starts_with("Admin login:")).expect("a login line").clone();
            let admin_pw = login.split_whitespace().nth(4).unwrap().to_owned();
            std::fs::write(&askpass, format!("#!/bin/sh\ncase \"$1\" in *justme@*) echo {JUSTME_PASSWORD};; *admin@*) echo {admin_pw};; *) exit 1;; esac\n"))
                .unwrap();
            Command::new("chmod").arg("755").arg(&askpass).status().unwrap();
            first = Some(g);
        } else if line.starts_with("trove up ") {
            // "stop the first trove up (Ctrl-C), then":
            let st = first.take().expect("the first trove up runs").signal_and_wait("INT");
            assert!(st.success(), "Ctrl-C on trove up: {st}");
            let (_g, banner) = start_up(&line, work.path(), https2);
            assert!(banner.iter().any(|l| l.contains("https://git.mycompany.com")), "the moved trove up: {banner:?}");
        } else {
            let stdin = line.contains("--password-stdin").then(|| format!("{JUSTME_PASSWORD}\n"));
            // One terminal: a `cd` on one line holds for the next, as in the user's shell.
            let session = format!("{line}\nstatus=$?; pwd > {}; exit $status", cwd_file.display());
            let out = shell(&session, &cwd, home.path(), &askpass, stdin.as_deref());
            cwd = std::fs::read_to_string(&cwd_file).unwrap().trim().into();
            assert!(
                out.status.success(),
                "README line failed: {line}\n(after {ran:?})\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ran.push(line);
    }
    assert!(ran.len() >= 9, "the block lost lines: {ran:?}");
    // What the lines were for: the push arrived, and justme's clone has it.
    let main = ok(&git(work.path(), home.path(), &["-C", "justme-test", "log", "--format=%s", "-1"]), "justme's clone");
    assert_eq!(main.trim(), "first");
}
