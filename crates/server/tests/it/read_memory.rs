//! What pages and REST remember of a repository (issue 26): the refs while their files are as
//! they were, and reads that name only object ids for good. Whatever moves a ref (a push through
//! the server, a ref written on the server's disk behind its back, a force-push back to an older
//! commit), the next read shows where it points now.

use crate::support::{TestServer, rest};

const REPO: &str = "/rest/api/latest/projects/TP/repos/test";

/// The file's lines as REST's browse shows them at `at`.
fn file(t: &TestServer, path: &str, at: &str) -> String {
    let (status, v) = rest(t, Some("writer"), "GET", &format!("{REPO}/browse/{path}?at={at}"), None);
    assert_eq!(status, 200, "{v}");
    v["lines"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap()).collect::<Vec<_>>().join("\n")
}

fn branch_tip(t: &TestServer, name: &str) -> Option<String> {
    let (status, v) = rest(t, Some("writer"), "GET", &format!("{REPO}/branches?limit=100"), None);
    assert_eq!(status, 200, "{v}");
    v["values"].as_array().unwrap().iter().find(|b| b["displayId"] == name).map(|b| b["latestCommit"].as_str().unwrap().to_owned())
}

fn newest_commit(t: &TestServer, at: &str) -> String {
    let (status, v) = rest(t, Some("writer"), "GET", &format!("{REPO}/commits?until={at}&limit=1"), None);
    assert_eq!(status, 200, "{v}");
    v["values"][0]["id"].as_str().unwrap().to_owned()
}

fn series(t: &TestServer, name: &str) -> f64 {
    let text = t.server.render_metrics();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[test]
fn pages_remember_what_cannot_change_and_always_show_where_refs_point_now() {
    let t = TestServer::start();
    let (dir, first) = t.seed("scm/TP/test.git", 2);
    assert_eq!(file(&t, "file0.txt", "main"), "content 0 of seed-scm-TP-test-git");

    // The same read again is answered from memory: a hit, and no git process for it.
    let hits = series(&t, "trove_server_object_reads_total{result=\"hit\"}");
    assert_eq!(file(&t, "file0.txt", "main"), "content 0 of seed-scm-TP-test-git");
    assert!(series(&t, "trove_server_object_reads_total{result=\"hit\"}") > hits, "the second read was not remembered");
    assert!(series(&t, "trove_server_object_reads_bytes") > 0.0);

    // A push through the server: the branch's file, tip and history are the new ones at once.
    let second = t.commit(&dir, "file0.txt", "changed\n");
    t.git_ok(&dir, &["push", "-q", "origin", "main"]);
    assert_eq!(file(&t, "file0.txt", "main"), "changed");
    assert_eq!(branch_tip(&t, "main").as_deref(), Some(second.as_str()));
    assert_eq!(newest_commit(&t, "main"), second);
    // The old commit still reads as it was: an id names the same bytes for ever.
    assert_eq!(file(&t, "file0.txt", &first), "content 0 of seed-scm-TP-test-git");

    // A ref written on the server's disk behind its back (no push event): seen on the next read.
    let bare = t.repo_dir("TP", "test");
    t.git_ok(&bare, &["update-ref", "refs/heads/side", &first]);
    assert_eq!(branch_tip(&t, "side").as_deref(), Some(first.as_str()));
    assert_eq!(file(&t, "file0.txt", "side"), "content 0 of seed-scm-TP-test-git");
    // ... and its refs packed by `git pack-refs` (what maintenance does) change nothing shown.
    t.git_ok(&bare, &["pack-refs", "--all"]);
    assert_eq!(branch_tip(&t, "side").as_deref(), Some(first.as_str()));
    assert_eq!(branch_tip(&t, "main").as_deref(), Some(second.as_str()));

    // A force-push back to the older commit: the older file again, not the remembered newer one.
    t.git_ok(&dir, &["push", "-q", "--force", "origin", &format!("{first}:refs/heads/main")]);
    assert_eq!(file(&t, "file0.txt", "main"), "content 0 of seed-scm-TP-test-git");
    assert_eq!(newest_commit(&t, "main"), first);
    // A deleted branch is gone from the list at once.
    t.git_ok(&bare, &["update-ref", "-d", "refs/heads/side"]);
    assert_eq!(branch_tip(&t, "side"), None);
}
