//! `trove up` as a new user runs it, and the seed's topology end to end.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::*;

struct Up {
    guard: Guard,
    stdout: Vec<String>,
    https: u16,
    http: u16,
}

/// `trove up` in `dir` on these ports, with no TROVE_ADMIN_PASSWORD.
fn up_command(dir: &std::path::Path, extra: &[&str], https: u16, http: u16, server: u16) -> std::process::Command {
    let mut cmd = trove();
    cmd.current_dir(dir)
        .args(["up", "--https", &format!("127.0.0.1:{https}"), "--http", &format!("127.0.0.1:{http}"), "--server", &format!("127.0.0.1:{server}")])
        .args(["--ssh", &format!("127.0.0.1:{}", crate::free_port())])
        .args(extra)
        .env_remove("TROVE_ADMIN_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn start_up(dir: &std::path::Path, extra: &[&str], https: u16, http: u16, server: u16) -> Up {
    start_up_with(up_command(dir, extra, https, http, server), https, http)
}

/// Runs a `trove up` that must fail; one that starts serving instead is stopped after a while,
/// so that the test fails rather than hangs.
fn up_fails(mut cmd: std::process::Command) -> (String, String) {
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert_eq!(out.status.code(), Some(1), "trove up must fail; it printed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

fn start_up_with(mut cmd: std::process::Command, https: u16, http: u16) -> Up {
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let mut guard = Guard(Some(child));
    wait_port(https, guard.child(), "trove up");
    // Read what it printed, up to the last line of the banner.
    let mut lines = Vec::new();
    let mut r = BufReader::new(out);
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap() == 0 {
            break;
        }
        let done = l.starts_with("Data: ");
        lines.push(l.trim_end().to_string());
        if done {
            break;
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::Read::read_to_string(&mut r, &mut sink);
    });
    Up { guard, stdout: lines, https, http }
}

fn printed(up: &Up, prefix: &str) -> String {
    up.stdout.iter().find(|l| l.trim_start().starts_with(prefix)).unwrap_or_else(|| panic!("no '{prefix}' in {:?}", up.stdout)).trim().to_string()
}

fn sh(line: &str, dir: &std::path::Path, home: &std::path::Path) -> std::process::Output {
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(line).current_dir(dir);
    clean_git_env(&mut c, home);
    c.env("PATH", format!("{}:{}", std::path::Path::new(env!("CARGO_BIN_EXE_trove")).parent().unwrap().display(), std::env::var("PATH").unwrap()));
    c.output().unwrap()
}

#[test]
fn a_new_user_starts_clones_with_the_printed_command_restarts_and_clones_again() {
    let work = tmp();
    let home = tmp();
    let (https, http, server) = (free_port(), free_port(), free_port());
    let mut up = start_up(work.path(), &[], https, http, server);
    assert_eq!(printed(&up, "URL:"), format!("URL:          https://localhost:{https}"));
    let login = printed(&up, "Admin login:");
    let password = login.split_whitespace().nth(4).unwrap().to_string();
    assert!(password.len() >= 16, "{login}");
    // SSH is on by default, and the host keys' fingerprints are those ssh-keygen reads from the
    // keys made in the data directory.
    assert!(printed(&up, "SSH:").starts_with("SSH:          ssh://git@localhost:"), "{:?}", up.stdout);
    for key in ["ssh_host_ed25519_key.pub", "ssh_host_ecdsa_key.pub"] {
        let out = std::process::Command::new("ssh-keygen").arg("-lf").arg(work.path().join("trove-data").join(key)).output().expect("ssh-keygen is installed");
        let fp = String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_owned();
        assert!(up.stdout.iter().any(|l| l.contains("host key") && l.contains(&fp)), "{fp} not printed: {:?}", up.stdout);
    }
    // The printed commands, run as printed (with the password given to git's credential prompt
    // by URL, as a user would type it).
    let project = printed(&up, "trove admin --data");
    let repo = up.stdout.iter().filter(|l| l.trim_start().starts_with("trove admin --data")).nth(1).unwrap().trim().to_string();
    ok(&sh(&project, work.path(), home.path()), "project add");
    ok(&sh(&repo, work.path(), home.path()), "repo add");
    let clone = printed(&up, "git clone -c http.sslCAInfo=");
    let clone = clone.replace("https://admin@", &format!("https://admin:{password}@"));
    ok(&sh(&clone, work.path(), home.path()), "printed clone command");
    let wc = work.path().join("test");
    ok(&git(&wc, home.path(), &["commit", "--allow-empty", "-m", "first"]), "commit");
    ok(&git(&wc, home.path(), &["push", "origin", "HEAD:main"]), "push");
    // Plain HTTP redirects to the public HTTPS URL.
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", &format!("http://127.0.0.1:{}/scm/tp/test.git", up.http)])
        .output()
        .expect("curl must be installed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("301 https://localhost:{https}/scm/tp/test.git"));
    // Without trusting the CA, git refuses; GIT_SSL_NO_VERIFY (the seed's way) works.
    let url = format!("https://admin:{password}@localhost:{https}/scm/tp/test.git");
    let o = git(work.path(), home.path(), &["ls-remote", &url]);
    assert!(!o.status.success(), "an untrusted certificate must fail");
    let o = std::process::Command::new("git")
        .args(["ls-remote", &url])
        .env("GIT_SSL_NO_VERIFY", "true")
        .env_remove("GIT_SSL_CAINFO")
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("refs/heads/main"), "{}", String::from_utf8_lossy(&o.stderr));
    // Verification on against a wrong host name must fail, even with the CA trusted.
    let ca = work.path().join("trove-data/tls/ca.crt");
    let wrong = format!("https://admin:{password}@wrong.example:{https}/scm/tp/test.git");
    let o = git(
        work.path(),
        home.path(),
        &["-c", &format!("http.sslCAInfo={}", ca.display()), "-c", &format!("http.curloptResolve=wrong.example:{https}:127.0.0.1"), "ls-remote", &wrong],
    );
    assert!(!o.status.success(), "a certificate for another host must be refused");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("certificate") || String::from_utf8_lossy(&o.stderr).contains("SSL"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Ctrl-C stops cleanly; a second start reuses everything.
    let st = up.guard.signal_and_wait("INT");
    assert!(st.success(), "{st}");
    let up2 = start_up(work.path(), &[], https, http, server);
    let login = printed(&up2, "Admin login:");
    assert!(login.starts_with("Admin login:  admin (password as set before; forgotten? set a new one with `trove admin --data "), "{login}");
    assert!(login.ends_with(" user passwd admin`)"), "{login}");
    // The restart does not suggest making what exists.
    assert!(!up2.stdout.iter().any(|l| l.contains("project add TP") || l.contains("repo add TP/test")), "{:?}", up2.stdout);
    let again = work.path().join("again");
    ok(&git(work.path(), home.path(), &["-c", &format!("http.sslCAInfo={}", ca.display()), "clone", &url, again.to_str().unwrap()]), "clone after restart");
    assert!(again.join(".git").exists());
    let _ = up2.https;
}

#[test]
fn the_seeds_topology_under_stash_with_justme() {
    let work = tmp();
    let home = tmp();
    let (https, http, server) = (free_port(), free_port(), free_port());
    let public = format!("https://localhost:{https}/stash");
    let data = work.path().join("d");
    let mut up = start_up(work.path(), &["--data", data.to_str().unwrap(), "--public-url", &public], https, http, server);
    let admin = |args: &[&str]| {
        let mut c = trove();
        c.args(["admin", "--data", data.to_str().unwrap()]).args(args);
        c
    };
    let mut c = admin(&["user", "add", "justme", "--password-stdin"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut ch = c.spawn().unwrap();
    std::io::Write::write_all(ch.stdin.as_mut().unwrap(), b"justme-secret-pw\n").unwrap();
    ok(&ch.wait_with_output().unwrap(), "user add");
    ok(&admin(&["project", "add", "TP"]).output().unwrap(), "project add");
    ok(&admin(&["repo", "add", "TP/test"]).output().unwrap(), "repo add");
    ok(&admin(&["grant", "justme", "TP/test", "write"]).output().unwrap(), "grant");
    // The seed's clone command, with GIT_SSL_NO_VERIFY, under the context path and /git/.
    let url = format!("https://justme:justme-secret-pw@localhost:{https}/stash/git/TP/test.git");
    let w1 = work.path().join("w1");
    let o = std::process::Command::new("git")
        .args(["clone", &url, w1.to_str().unwrap()])
        .env("GIT_SSL_NO_VERIFY", "true")
        .env_remove("GIT_SSL_CAINFO")
        .env("HOME", home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    ok(&o, "clone with GIT_SSL_NO_VERIFY");
    ok(&git(&w1, home.path(), &["commit", "--allow-empty", "-m", "from justme"]), "commit");
    ok(&git(&w1, home.path(), &["-c", "http.sslVerify=false", "push", "origin", "HEAD:main"]), "push");
    // The safe way: trust the Trove CA.
    let ca = data.join("tls/ca.crt");
    let w2 = work.path().join("w2");
    ok(&git(work.path(), home.path(), &["-c", &format!("http.sslCAInfo={}", ca.display()), "clone", &url, w2.to_str().unwrap()]), "clone with the CA");
    let log = ok(&git(&w2, home.path(), &["log", "--format=%s"]), "log");
    assert_eq!(log.trim(), "from justme");
    // The REST API's clone links are the public ones: https, the public port, /stash, the user.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert", ca.to_str().unwrap(), "-u", "justme:justme-secret-pw"])
        .arg(format!("https://localhost:{https}/stash/rest/api/1.0/projects/TP/repos/test"))
        .env_remove("CURL_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("curl must be installed");
    let repo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let clone: Vec<&str> = repo["links"]["clone"].as_array().unwrap().iter().filter(|l| l["name"] == "http").map(|l| l["href"].as_str().unwrap()).collect();
    assert_eq!(clone, [format!("https://justme@localhost:{https}/stash/scm/tp/test.git")]);
    let self_link = repo["links"]["self"][0]["href"].as_str().unwrap();
    assert_eq!(self_link, format!("https://localhost:{https}/stash/projects/TP/repos/test/browse"));
    // Outside the context path: nothing.
    let o = git(
        work.path(),
        home.path(),
        &["-c", &format!("http.sslCAInfo={}", ca.display()), "ls-remote", &format!("https://justme:justme-secret-pw@localhost:{https}/git/TP/test.git")],
    );
    assert!(!o.status.success());
    up.guard.signal_and_wait("TERM");
}

/// Everything a start could change: the files `trove up` writes and the stored base URL and
/// context path (as `trove admin settings show` prints them).
fn saved_state(data: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for f in ["gateway.toml", "up.toml", "tls/ca.crt", "tls/ca.key", "tls/server.crt", "tls/server.key"] {
        out.push((f.to_string(), std::fs::read(data.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"))));
    }
    let settings = trove().args(["admin", "--data", data.to_str().unwrap(), "settings", "show"]).output().unwrap();
    out.push(("settings".into(), ok(&settings, "settings show").into_bytes()));
    out
}

fn no_staged_files_left(data: &std::path::Path) {
    for dir in [data.to_path_buf(), data.join("tls")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.ends_with(".new"), "{} left behind in {}", name, dir.display());
        }
    }
}

#[test]
fn a_start_on_a_taken_port_with_a_new_public_url_changes_nothing() {
    let work = tmp();
    let data = work.path().join("trove-data");
    let (https, http, server) = (free_port(), free_port(), free_port());
    let mut up = start_up(work.path(), &[], https, http, server);
    up.guard.signal_and_wait("INT");
    let before = saved_state(&data);
    // The HTTPS port is taken now; the new public URL needs a new certificate and gateway.toml.
    let taken = std::net::TcpListener::bind(("127.0.0.1", https)).unwrap();
    let (_, stderr) = up_fails(up_command(work.path(), &["--public-url", &format!("https://git.example.com:{https}/stash")], https, http, server));
    assert!(stderr.contains(&format!("127.0.0.1:{https}")), "the error must name the port: {stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    let after = saved_state(&data);
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        assert!(a == b, "{name} changed:\n{}\n---\n{}", String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    }
    no_staged_files_left(&data);
    // The next plain start comes up at the URL it had.
    drop(taken);
    let up = start_up(work.path(), &[], https, http, server);
    assert_eq!(printed(&up, "URL:"), format!("URL:          https://localhost:{https}"));
}

#[test]
fn a_second_up_on_the_same_data_is_refused_naming_the_first() {
    let work = tmp();
    let data = work.path().join("trove-data");
    let (https, http, server) = (free_port(), free_port(), free_port());
    let mut up = start_up(work.path(), &[], https, http, server);
    let pid = up.guard.child().id();
    let before = saved_state(&data);
    let (_, stderr) = up_fails(up_command(work.path(), &[], free_port(), free_port(), free_port()));
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    assert!(stderr.contains(&format!("https 127.0.0.1:{https}")) && stderr.contains(&format!("server 127.0.0.1:{server}")), "{stderr}");
    // `trove server` on the same data directory is the same mistake.
    let mut srv = trove();
    srv.args(["server", "--data", data.to_str().unwrap(), "--listen", &free_port().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (_, stderr) = up_fails(srv);
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    assert_eq!(before, saved_state(&data), "a refused start changes nothing");
    // `trove admin` works on the running installation, on purpose.
    ok(&trove().args(["admin", "--data", data.to_str().unwrap(), "project", "add", "TP"]).output().unwrap(), "admin while up runs");
    up.guard.signal_and_wait("TERM");
}

#[test]
fn a_first_start_that_fails_on_a_taken_port_loses_no_password_and_a_later_env_password_is_said_to_be_ignored() {
    let work = tmp();
    let home = tmp();
    let data = work.path().join("trove-data");
    let (https, http, server) = (free_port(), free_port(), free_port());
    // The Git server's port is taken, as Bitbucket's own 7990 is on a migration machine.
    let taken = std::net::TcpListener::bind(("127.0.0.1", server)).unwrap();
    let (_, stderr) = up_fails(up_command(work.path(), &[], https, http, server));
    assert!(stderr.contains(&format!("127.0.0.1:{server}")) && stderr.contains("--server"), "{stderr}");
    // No settings, certificates or gateway config: the next start is a first start again.
    for f in ["up.toml", "gateway.toml", "tls"] {
        assert!(!data.join(f).exists(), "a failed first start left {f}");
    }
    drop(taken);
    let mut up = start_up(work.path(), &[], https, http, server);
    let login = printed(&up, "Admin login:");
    let password = login.split_whitespace().nth(4).unwrap().to_string();
    assert!(password.len() >= 16, "the first good start must show the password: {login}");
    let admin = |args: &[&str]| ok(&trove().args(["admin", "--data", data.to_str().unwrap()]).args(args).output().unwrap(), "trove admin");
    admin(&["project", "add", "TP"]);
    admin(&["repo", "add", "TP/test"]);
    let ca = data.join("tls/ca.crt");
    let url = |pw: &str| format!("https://admin:{pw}@localhost:{https}/scm/tp/test.git");
    let ls = |pw: &str| git(work.path(), home.path(), &["-c", &format!("http.sslCAInfo={}", ca.display()), "ls-remote", &url(pw)]);
    ok(&ls(&password), "ls-remote with the password shown");
    up.guard.signal_and_wait("INT");
    // TROVE_ADMIN_PASSWORD on a later start is ignored, and it says so and what to run.
    let mut cmd = up_command(work.path(), &[], https, http, server);
    cmd.env("TROVE_ADMIN_PASSWORD", "another-password-123");
    let mut up = start_up_with(cmd, https, http);
    let login = printed(&up, "Admin login:");
    assert!(login.contains("TROVE_ADMIN_PASSWORD is ignored"), "{login}");
    assert!(login.contains(&format!("trove admin --data {} user passwd admin", data.display())), "{login}");
    ok(&ls(&password), "the first password still works");
    assert!(!ls("another-password-123").status.success(), "the ignored password must not work");
    // The command it names sets a new one, while trove up runs.
    let mut c = trove();
    c.args(["admin", "--data", data.to_str().unwrap(), "user", "passwd", "admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut ch = c.spawn().unwrap();
    std::io::Write::write_all(ch.stdin.as_mut().unwrap(), b"reset-password-456\n").unwrap();
    ok(&ch.wait_with_output().unwrap(), "user passwd admin");
    ok(&ls("reset-password-456"), "ls-remote with the new password");
    up.guard.signal_and_wait("INT");
}

#[test]
fn a_users_tls_edit_survives_two_public_url_changes() {
    let work = tmp();
    let data = work.path().join("trove-data");
    let (https, http, server) = (free_port(), free_port(), free_port());
    let mut up = start_up(work.path(), &[], https, http, server);
    up.guard.signal_and_wait("INT");
    // A "purchased" certificate: its own CA, for both public names used below.
    let bought = rcgen::generate_simple_self_signed(vec!["git.example.com".to_string(), "localhost".to_string()]).unwrap();
    let (bcrt, bkey) = (work.path().join("bought.crt"), work.path().join("bought.key"));
    std::fs::write(&bcrt, bought.cert.pem()).unwrap();
    std::fs::write(&bkey, bought.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&bkey, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let gw = data.join("gateway.toml");
    let text = std::fs::read_to_string(&gw).unwrap();
    let tls_at = text.find("[server.tls]").unwrap();
    let route_at = text.find("[[server.route]]").unwrap();
    let edited = format!(
        "{}[server.tls]\n# our purchased certificate\ncert = \"{}\"\nkey = \"{}\"\n\n{}",
        &text[..tls_at],
        bcrt.display(),
        bkey.display(),
        &text[route_at..]
    );
    std::fs::write(&gw, &edited).unwrap();
    let curl = |url: &str| {
        let o = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", bcrt.to_str().unwrap()])
            .args(["--resolve", &format!("git.example.com:{https}:127.0.0.1"), url])
            .env_remove("CURL_CA_BUNDLE")
            .env_remove("SSL_CERT_FILE")
            .output()
            .expect("curl must be installed");
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    for public in [format!("https://git.example.com:{https}"), format!("https://localhost:{https}/stash")] {
        let mut up = start_up(work.path(), &["--public-url", &public], https, http, server);
        let now = std::fs::read_to_string(&gw).unwrap();
        assert!(now.contains(&format!("# our purchased certificate\ncert = \"{}\"", bcrt.display())), "{now}");
        // The purchased certificate is the one served, at the new public URL.
        assert_eq!(curl(&format!("{public}/status")), "200", "{now}");
        assert!(printed(&up, "Gateway:").contains("your other settings kept"), "{:?}", up.stdout);
        up.guard.signal_and_wait("INT");
    }
}

#[test]
fn a_broken_gateway_toml_stops_a_start_with_a_new_public_url_and_nothing_changes() {
    let work = tmp();
    let data = work.path().join("trove-data");
    let (https, http, server) = (free_port(), free_port(), free_port());
    let mut up = start_up(work.path(), &[], https, http, server);
    up.guard.signal_and_wait("INT");
    let gw = data.join("gateway.toml");
    let broken = std::fs::read_to_string(&gw).unwrap().replace("[server.tls]", "[server.tls");
    std::fs::write(&gw, &broken).unwrap();
    let before = std::fs::read(data.join("up.toml")).unwrap();
    let (_, stderr) = up_fails(up_command(work.path(), &["--public-url", &format!("https://git.example.com:{https}")], https, http, server));
    assert!(stderr.contains(&gw.display().to_string()) && stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&gw).unwrap(), broken, "the user's file is left for them to fix");
    assert_eq!(std::fs::read(data.join("up.toml")).unwrap(), before);
    no_staged_files_left(&data);
}

#[test]
fn trove_up_makes_browsers_keep_to_https_with_hsts() {
    let work = tmp();
    let (https, http, server) = (free_port(), free_port(), free_port());
    let _up = start_up(work.path(), &[], https, http, server);
    let ca = work.path().join("trove-data/tls/ca.crt");
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-", "--cacert", ca.to_str().unwrap()])
        .arg(format!("https://localhost:{https}/status"))
        .output()
        .expect("curl must be installed");
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.contains("strict-transport-security: max-age=31536000"), "{head}\n{}", String::from_utf8_lossy(&out.stderr));
    let toml = std::fs::read_to_string(work.path().join("trove-data/gateway.toml")).unwrap();
    assert!(toml.contains("hsts = 31536000") && toml.contains("To turn it\n# off"), "gateway.toml says how to turn it off:\n{toml}");
}

/// Issue 16's spoofing shapes through `trove up`: a client's own forwarding headers change
/// neither the reflog, nor the links, nor whom the login limits count.
#[test]
fn a_clients_own_forwarding_headers_change_nothing_through_trove_up() {
    let work = tmp();
    let home = tmp();
    let (https, http, server) = (free_port(), free_port(), free_port());
    let up = start_up(work.path(), &[], https, http, server);
    let login = printed(&up, "Admin login:");
    let password = login.split_whitespace().nth(4).unwrap().to_string();
    let data = work.path().join("trove-data");
    ok(&trove().args(["admin", "--data", data.to_str().unwrap(), "project", "add", "TP"]).output().unwrap(), "project add");
    ok(&trove().args(["admin", "--data", data.to_str().unwrap(), "repo", "add", "TP/test"]).output().unwrap(), "repo add");
    let ca = data.join("tls/ca.crt");
    let url = format!("https://admin:{password}@localhost:{https}/scm/tp/test.git");
    let spoof = [
        "http.extraHeader=Forwarded: for=203.0.113.66;proto=http;host=evil.example",
        "http.extraHeader=X-Forwarded-For: 203.0.113.66",
        "http.extraHeader=X-Real-IP: 203.0.113.66",
    ];
    let wc = work.path().join("wc");
    ok(&git(work.path(), home.path(), &["init", "-q", "-b", "main", wc.to_str().unwrap()]), "init");
    ok(&git(&wc, home.path(), &["commit", "-q", "--allow-empty", "-m", "spoofed"]), "commit");
    let mut args = vec!["-c".to_string(), format!("http.sslCAInfo={}", ca.display())];
    for s in spoof {
        args.extend(["-c".to_string(), s.to_string()]);
    }
    args.extend(["push".to_string(), url.clone(), "main".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&git(&wc, home.path(), &args), "push with spoofed headers");
    // The reflog records the real client address.
    let repos = data.join("repositories");
    let reflog =
        std::fs::read_dir(&repos).unwrap().filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("logs/refs/heads/main")).ok()).next().expect("a reflog");
    assert!(reflog.contains("admin@http.127.0.0.1") && !reflog.contains("203.0.113.66"), "{reflog}");
    // Links follow the base URL, never a client's host.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            ca.to_str().unwrap(),
            "-u",
            &format!("admin:{password}"),
            "-H",
            "Forwarded: host=evil.example;proto=http",
            "-H",
            "X-Forwarded-Host: evil.example",
        ])
        .arg(format!("https://localhost:{https}/rest/api/1.0/projects/TP/repos/test"))
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains(&format!("@localhost:{https}/scm/tp/test.git")) && !body.contains("evil.example"), "{body}");
    // Spraying 50 accounts (the address limit), each "for" another address, is counted against
    // the real one.
    for i in 0..50 {
        let r = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca.to_str().unwrap(), "-u", &format!("user{i}:Winter2026!")])
            .args(["-H", &format!("Forwarded: for=198.51.100.{i}"), "-H", &format!("X-Forwarded-For: 198.51.100.{i}")])
            .arg(format!("https://localhost:{https}/rest/api/1.0/users"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&r.stdout), "401");
    }
    let r = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca.to_str().unwrap(), "-u", &format!("admin:{password}")])
        .args(["-H", "Forwarded: for=198.51.100.250"])
        .arg(format!("https://localhost:{https}/rest/api/1.0/users"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "429", "the spraying address was not limited");
}

#[test]
fn up_with_database_keeps_its_metadata_in_postgres() {
    let pg = trove_store::pgtest::TestPg::start();
    let url = pg.database();
    let work = tmp();
    let (https, http, server) = (free_port(), free_port(), free_port());
    let up = start_up(work.path(), &["--database", &url], https, http, server);
    let login = printed(&up, "Admin login:");
    assert!(login.contains("admin / "), "{login}");
    let data = work.path().join("trove-data");
    assert!(!data.join("trove.db").exists(), "trove up --database made a SQLite database anyway");
    // What `trove up` set (the admin, the base URL) is in PostgreSQL: a node's configuration on
    // that database sees it.
    let cfg = work.path().join("node.toml");
    std::fs::write(&cfg, format!("data_dir = \"{}\"\n[database]\nurl = \"{url}\"\n", path_str(&work.path().join("other")))).unwrap();
    let show = trove().args(["admin", "--config"]).arg(&cfg).args(["settings", "show"]).stdin(Stdio::null()).output().unwrap();
    let shown = ok(&show, "settings show");
    assert!(shown.contains(&format!("https://localhost:{https}")), "{shown}");
    let users = trove().args(["admin", "--config"]).arg(&cfg).args(["user", "locks"]).stdin(Stdio::null()).output().unwrap();
    ok(&users, "user locks on the PostgreSQL installation");
    // A password on the command line is refused before anything starts.
    let elsewhere = tmp();
    let (_, err) = up_fails(up_command(elsewhere.path(), &["--database", "postgres://trove:secret@127.0.0.1:1/x"], free_port(), free_port(), free_port()));
    assert!(err.contains("TROVE_DATABASE_PASSWORD"), "{err}");
    drop(up);
}
