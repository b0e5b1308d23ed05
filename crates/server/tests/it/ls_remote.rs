//! `git ls-remote` over smart HTTP says exactly what git says about the repository on disk, in
//! every protocol version, whether the answer comes from git or from memory, and a push (ours or
//! one that bypasses the server) shows at once.

use std::path::Path;

use crate::support::TestServer;

const URL: &str = "scm/PUB/open.git";

/// The forms of `ls-remote` worth telling apart, as (options, patterns): plain, with symrefs (v2
/// `symrefs` and `unborn`), and filtered (v2 `ref-prefix`, or patterns matched by the client).
const FORMS: &[(&[&str], &[&str])] = &[
    (&[], &[]),
    (&["--symref"], &[]),
    (&["--tags"], &[]),
    (&["--heads"], &[]),
    (&["--refs"], &[]),
    (&["--symref", "--heads"], &[]),
    (&[], &["v1*"]),
    (&["--symref"], &["HEAD", "refs/heads/*"]),
];

/// Compares, for protocol versions 0, 1 and 2 and every form, `git ls-remote` through the server
/// (twice: the second answer comes from memory) with `git ls-remote` of the bare repository.
fn assert_same_as_git(t: &TestServer, what: &str) {
    let bare = t.repo_dir("PUB", "open");
    let bare = bare.to_str().unwrap();
    let url = t.url(None, URL);
    let here = t.dir("ls-remote");
    for version in ["0", "1", "2"] {
        let v = format!("protocol.version={version}");
        for form in FORMS {
            let (options, patterns) = form;
            let run = |target: &str| {
                let mut args = vec!["-c", v.as_str(), "ls-remote"];
                args.extend(options.iter().copied());
                args.push(target);
                args.extend(patterns.iter().copied());
                t.git_ok(&here, &args)
            };
            let want = run(bare);
            for pass in ["from git", "from memory"] {
                assert_eq!(run(&url), want, "{what}: protocol v{version}, ls-remote {form:?}, {pass}");
            }
        }
    }
}

fn in_bare(t: &TestServer, args: &[&str]) -> String {
    t.git_ok(&t.repo_dir("PUB", "open"), args)
}

#[test]
fn ls_remote_says_what_git_says_for_every_shape_of_repository() {
    let t = TestServer::start();
    assert_same_as_git(&t, "empty repository, HEAD unborn");

    let (work, _) = t.seed(URL, 2);
    t.git_ok(&work, &["branch", "topic", "HEAD~1"]);
    t.git_ok(&work, &["tag", "light"]);
    t.git_ok(&work, &["tag", "-a", "-m", "annotated", "v1", "HEAD~1"]);
    // A tag of a tag peels all the way down to the commit.
    t.git_ok(&work, &["tag", "-a", "-m", "outer", "v1-outer", "v1"]);
    t.git_ok(&work, &["push", "-q", "origin", "topic", "--tags"]);
    t.wait_maintenance();
    assert_same_as_git(&t, "branches and tags, loose");

    in_bare(&t, &["pack-refs", "--all"]);
    assert!(!t.repo_dir("PUB", "open").join("refs/tags/v1").exists(), "the tags are packed now");
    assert_same_as_git(&t, "branches and tags, packed and peeled");

    t.git_ok(&work, &["tag", "-a", "-m", "another", "v1.1"]);
    t.git_ok(&work, &["push", "-q", "origin", "v1.1"]);
    t.wait_maintenance();
    assert_same_as_git(&t, "a loose annotated tag beside packed ones");

    // A packed-refs file without peeled lines (written by an old git or another tool): git peels
    // by reading the objects.
    let packed = t.repo_dir("PUB", "open").join("packed-refs");
    let text = std::fs::read_to_string(&packed).unwrap();
    let unpeeled: String = text.lines().filter(|l| !l.starts_with('^') && !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    std::fs::write(&packed, format!("# pack-refs with: sorted \n{unpeeled}")).unwrap();
    assert_same_as_git(&t, "packed refs without peel information");

    in_bare(&t, &["symbolic-ref", "HEAD", "refs/heads/nope"]);
    assert_same_as_git(&t, "HEAD points at a branch that does not exist");

    in_bare(&t, &["symbolic-ref", "HEAD", "refs/heads/topic"]);
    in_bare(&t, &["update-ref", "--no-deref", "HEAD", "main"]);
    assert_same_as_git(&t, "detached HEAD");
}

fn tip_of(listing: &str, name: &str) -> Option<String> {
    listing.lines().find_map(|l| l.split_once('\t').filter(|(_, r)| *r == name).map(|(id, _)| id.to_owned()))
}

#[test]
fn a_push_shows_in_the_very_next_ls_remote_through_us_or_around_us() {
    let t = TestServer::start();
    let (work, first) = t.seed(URL, 1);
    let here = t.dir("lr");
    let url = t.url(None, URL);
    for version in ["0", "2"] {
        let v = format!("protocol.version={version}");
        let ls = || t.git_ok(&here, &["-c", &v, "ls-remote", &url]);
        let before = ls();
        assert_eq!(tip_of(&before, "refs/heads/main").as_deref(), Some(tip_of(&before, "HEAD").unwrap().as_str()));
        assert_eq!(ls(), before, "unchanged refs, same answer");

        // Through the server.
        let next = t.commit(&work, &format!("f-{version}.txt"), "x\n");
        t.git_ok(&work, &["push", "-q", "origin", "main"]);
        let after = ls();
        assert_eq!(tip_of(&after, "refs/heads/main"), Some(next.clone()), "v{version}: {after}");

        // Around it: a ref written straight into the repository, a ref deleted, refs packed.
        let bare = t.repo_dir("PUB", "open");
        t.git_ok(&bare, &["update-ref", &format!("refs/heads/side-{version}"), &first]);
        assert_eq!(tip_of(&ls(), &format!("refs/heads/side-{version}")), Some(first.clone()));
        t.git_ok(&bare, &["pack-refs", "--all"]);
        assert_eq!(tip_of(&ls(), &format!("refs/heads/side-{version}")), Some(first.clone()), "packed");
        t.git_ok(&bare, &["update-ref", "-d", &format!("refs/heads/side-{version}")]);
        assert_eq!(tip_of(&ls(), &format!("refs/heads/side-{version}")), None, "deleted");
        // And back to a state seen before: the answer is that state's, not the last one's.
        t.git_ok(&bare, &["update-ref", "refs/heads/main", &first]);
        assert_eq!(tip_of(&ls(), "refs/heads/main"), Some(first.clone()));
        t.git_ok(&bare, &["update-ref", "refs/heads/main", &next]);
        assert_eq!(tip_of(&ls(), "refs/heads/main"), Some(next.clone()));
    }
}

#[test]
fn a_repeated_ls_remote_runs_no_git() {
    let t = TestServer::start();
    t.seed(URL, 1);
    t.wait_maintenance();
    let here = t.dir("lr");
    let url = t.url(None, URL);
    for version in ["0", "1", "2"] {
        let v = format!("protocol.version={version}");
        let first = t.git_ok(&here, &["-c", &v, "ls-remote", "--symref", &url]);
        let before = t.server.git_processes_started();
        for _ in 0..3 {
            assert_eq!(t.git_ok(&here, &["-c", &v, "ls-remote", "--symref", &url]), first);
        }
        assert_eq!(t.server.git_processes_started(), before, "protocol v{version}: answered from memory");
    }
}

#[test]
fn the_advertisement_bytes_are_gits_own() {
    let t = TestServer::start();
    let (work, _) = t.seed(URL, 1);
    t.git_ok(&work, &["tag", "-a", "-m", "t", "v1"]);
    t.git_ok(&work, &["push", "-q", "origin", "v1"]);
    t.wait_maintenance();
    let bare = t.repo_dir("PUB", "open");
    for protocol in [None, Some("version=1"), Some("version=2")] {
        let mut local = t.git_cmd(Path::new("/"), &["upload-pack", "--stateless-rpc", "--advertise-refs", bare.to_str().unwrap()]);
        local.env("HOME", t.data.path().join("git-home"));
        if let Some(p) = protocol {
            local.env("GIT_PROTOCOL", p);
        }
        let local = local.output().unwrap();
        assert!(local.status.success());
        let mut want = if protocol == Some("version=2") { Vec::new() } else { b"001e# service=git-upload-pack\n0000".to_vec() };
        want.extend_from_slice(&local.stdout);
        let headers: Vec<(&str, &str)> = protocol.map(|p| ("Git-Protocol", p)).into_iter().collect();
        for pass in ["from git", "from memory"] {
            let r = t.http("GET", &format!("/{URL}/info/refs?service=git-upload-pack"), &headers, b"");
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-type"), Some("application/x-git-upload-pack-advertisement"));
            assert_eq!(r.text(), String::from_utf8_lossy(&want), "{protocol:?} {pass}");
        }
    }
}
