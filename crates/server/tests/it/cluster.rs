//! Data Center mode: server nodes on one real PostgreSQL (started by the test) and one shared
//! repository directory, each node its own data directory.

use std::time::{Duration, Instant};

use trove_server::DatabaseSettings;
use trove_store::pgtest::TestPg;

use crate::support::{TestServer, basic, password, user};

/// A node on `url` with repositories in `shared`; `first` makes the fixture.
fn node(url: &str, shared: &std::path::Path, first: bool) -> TestServer {
    let (url, shared) = (url.to_owned(), shared.to_owned());
    TestServer::start_node(
        move |c| {
            c.database = Some(DatabaseSettings::new(&url).unwrap());
            c.repositories = Some(shared);
            c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
            c.auth.max_failed_accounts_per_address = 4;
        },
        first,
    )
}

/// Polls `f` until it is true; fails after a deadline generous enough for any machine (this
/// measures nothing: it only waits).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: never happened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn admin_auth() -> String {
    basic("admin", &password("admin"))
}

#[test]
fn nodes_on_one_postgres_and_shared_storage_see_each_others_changes() {
    let pg = TestPg::start();
    let url = pg.database();
    let shared = tempfile::tempdir().unwrap();
    let a = node(&url, shared.path(), true);
    let b = node(&url, shared.path(), false);
    let auth = admin_auth();

    // A push through one node is cloned through the other: the repository is on shared storage.
    let (_work, head) = a.seed("scm/tp/test.git", 3);
    let clone = b.dir("clone-b");
    b.git_ok(b.dir("x").as_path(), &["clone", "-q", &b.url_as("reader", "scm/tp/test.git"), clone.to_str().unwrap()]);
    assert_eq!(b.git_ok(&clone, &["rev-parse", "HEAD"]).trim(), head);

    // A project made through one node is there on the other.
    let made =
        a.http("POST", "/rest/api/1.0/projects", &[("Authorization", &auth), ("Content-Type", "application/json")], br#"{"key":"DC","name":"Data Center"}"#);
    assert_eq!(made.status, 201, "{}", made.text());
    let seen = b.http("GET", "/rest/api/1.0/projects/DC", &[("Authorization", &auth)], b"");
    assert_eq!(seen.status, 200, "{}", seen.text());

    // A base URL set on one node is in force on the other without a restart.
    let clone_href = |t: &TestServer| t.http("GET", "/rest/api/1.0/projects/TP/repos/test", &[("Authorization", &auth)], b"").text();
    assert!(!clone_href(&b).contains("@git.example.com/scm/tp/test.git"));
    a.server.store().set_base_url(Some(&trove_store::BaseUrl::parse("https://git.example.com").unwrap())).unwrap();
    eventually("node b follows the base URL set on node a", || clone_href(&b).contains("@git.example.com/scm/tp/test.git"));

    // A user disabled on one node cannot log in on the other; a token deleted on one is refused
    // on the other.
    let reader = basic("reader", &password("reader"));
    assert_eq!(b.http("GET", "/rest/api/1.0/projects/TP", &[("Authorization", &reader)], b"").status, 200);
    a.server.store().set_user_active(&user("reader"), false).unwrap();
    assert_eq!(b.http("GET", "/rest/api/1.0/projects/TP", &[("Authorization", &reader)], b"").status, 401);
    let token = format!("Bearer {}", a.writer_token);
    assert_eq!(b.http("GET", "/rest/api/1.0/projects/TP", &[("Authorization", &token)], b"").status, 200);
    let store = a.server.store();
    let writer = store.user(&user("writer")).unwrap().unwrap();
    for t in store.tokens(&writer).unwrap() {
        store.revoke_token(&writer, t.id).unwrap();
    }
    assert_eq!(b.http("GET", "/rest/api/1.0/projects/TP", &[("Authorization", &token)], b"").status, 401);

    // Failed logins count across nodes: the lock made through one node holds on the other.
    let policy_max = 10;
    for i in 0..policy_max {
        let t = if i % 2 == 0 { &a } else { &b };
        let wrong = basic("outsider", "wrong-password");
        assert_eq!(t.http("GET", "/rest/api/1.0/projects", &[("Authorization", &wrong)], b"").status, 401);
    }
    let right = basic("outsider", &password("outsider"));
    let locked = b.http("GET", "/rest/api/1.0/projects", &[("Authorization", &right)], b"");
    assert_eq!(locked.status, 429, "{}", locked.text());

    // Each node shows its own PostgreSQL pool in its metrics, and its own id.
    let metrics = crate::support::http(b.server.metrics_addr().unwrap(), "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("trove_server_db_connections{state=\"max\"} 16"), "{metrics}");
    assert!(metrics.contains("trove_server_db_pool_waits_total"), "{metrics}");
    assert_ne!(a.server.node_id(), b.server.node_id(), "two nodes got one id");

    // Password spraying from one address is counted across nodes: accounts failed through either
    // node add up (reader, disabled, and outsider above are two of the four allowed), and then
    // the address waits on both.
    for (i, name) in ["sprayed1", "sprayed2"].iter().enumerate() {
        let t = if i % 2 == 0 { &a } else { &b };
        assert_eq!(t.http("GET", "/rest/api/1.0/projects", &[("Authorization", &basic(name, "guess"))], b"").status, 401);
    }
    let admin = basic("admin", &password("admin"));
    for t in [&a, &b] {
        let r = t.http("GET", "/rest/api/1.0/projects", &[("Authorization", &admin)], b"");
        assert_eq!(r.status, 429, "a node let a spraying address try again: {}", r.text());
    }
}

#[test]
fn while_postgres_is_down_requests_get_503_and_work_again_when_it_is_back() {
    let pg = TestPg::start();
    let url = pg.database();
    let shared = tempfile::tempdir().unwrap();
    let n = node(&url, shared.path(), true);
    let auth = admin_auth();
    let get = || n.http("GET", "/rest/api/1.0/projects/TP", &[("Authorization", &auth)], b"");
    assert_eq!(get().status, 200);

    pg.stop();
    let down = get();
    assert_eq!(down.status, 503, "{}", down.text());
    assert!(down.text().contains("database is unavailable"), "{}", down.text());
    let ls = n.git(n.dir("ls").as_path(), &["ls-remote", &n.url_as("reader", "scm/tp/test.git")]);
    assert!(!ls.status.success());
    assert!(String::from_utf8_lossy(&ls.stderr).contains("database is unavailable"), "{}", String::from_utf8_lossy(&ls.stderr));
    let page = n.http("GET", "/login", &[], b"");
    assert!(page.status == 200 || page.status == 503, "the login page answered {}", page.status);

    pg.restart();
    eventually("the node serves again once PostgreSQL is back", || get().status == 200);
    let ls = n.git(n.dir("ls2").as_path(), &["ls-remote", &n.url_as("reader", "scm/tp/test.git")]);
    assert!(ls.status.success(), "{}", String::from_utf8_lossy(&ls.stderr));
}

fn has_bitmap(repo: &std::path::Path) -> bool {
    std::fs::read_dir(repo.join("objects/pack")).map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "bitmap"))).unwrap_or(false)
}

#[test]
fn a_repository_another_node_is_maintaining_is_left_to_it() {
    let pg = TestPg::start();
    let url = pg.database();
    let shared = tempfile::tempdir().unwrap();
    let n = node(&url, shared.path(), true);
    let store = n.server.store();
    let repo = store.repo(&trove_store::Owner::parse("TP").unwrap(), &trove_store::RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let lease = format!("maintenance:{}", repo.id);
    // Another node holds the lease: this one pushes, and leaves the repack to it.
    assert!(store.take_lease(&lease, "other-node", 600).unwrap());
    let (work, _) = n.seed("scm/tp/test.git", 3);
    n.wait_maintenance();
    assert!(!has_bitmap(&n.repo_dir("TP", "test")), "this node repacked a repository another node holds");
    // Given back: the next push is maintained here, and the lease is free again afterwards.
    store.release_lease(&lease, "other-node").unwrap();
    n.commit(&work, "more.txt", "more");
    n.git_ok(&work, &["push", "-q", "origin", "main"]);
    n.wait_maintenance();
    assert!(has_bitmap(&n.repo_dir("TP", "test")), "maintenance did not run once the lease was free");
    assert!(store.take_lease(&lease, "other-node", 600).unwrap(), "this node kept the lease after its run");
}
