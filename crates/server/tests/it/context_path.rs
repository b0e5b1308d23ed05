//! Context path and base URL: everything under `/stash`, generated URLs from `base_url`, and
//! the warning when a proxy presents a different URL.

use crate::support::{TestServer, basic, password};
use trove_store::{BaseUrl, ContextPath};

fn stash() -> TestServer {
    TestServer::start_with(|c| {
        c.context_path = Some(ContextPath::parse("/stash").unwrap());
        c.base_url = Some(BaseUrl::parse("https://mycompany.com/stash").unwrap());
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
}

#[test]
fn with_a_context_path_clones_work_under_it_and_nothing_outside_answers() {
    let t = stash();
    assert!(t.root.ends_with("/stash"));
    let (_, tip) = t.seed("scm/TP/test.git", 2);
    let dir = t.dir("ctx");
    t.git_ok(&dir, &["clone", "-q", &t.url_as("reader", "scm/tp/test.git"), "c"]);
    assert_eq!(t.git_ok(&dir.join("c"), &["rev-parse", "HEAD"]), tip);
    t.git_ok(&dir, &["clone", "-q", &t.url_as("reader", "git/TP/test.git"), "d"]);

    let auth = basic("reader", &password("reader"));
    for path in
        ["/scm/TP/test.git/info/refs?service=git-upload-pack", "/status", "/stashy/scm/TP/test.git/info/refs?service=git-upload-pack", "/other/stash/status"]
    {
        let r = t.http("GET", path, &[("Authorization", &auth)], b"");
        assert_eq!(r.status, 404, "{path}");
    }
    // The bare root leads to the context path, as Tomcat's ROOT does for Stash.
    let r = t.http("GET", "/", &[], b"");
    assert_eq!(r.status, 302);
    assert!(r.header("location").unwrap().ends_with("/stash/"), "{:?}", r.header("location"));
    assert_eq!(t.http("GET", "/stash/status", &[], b"").status, 200);
    let r = t.http("GET", "/stash/scm/TP/test.git/info/refs?service=git-upload-pack", &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn generated_urls_use_the_base_url_not_the_request() {
    let t = stash();
    let r = t.http("GET", "/stash", &[], b"");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("https://mycompany.com/stash/"));
    let auth = basic("reader", &password("reader"));
    let r = t.http("GET", "/stash/scm/tp/test.git", &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("https://mycompany.com/stash/projects/TP/repos/test/browse"));
    let r = t.http("GET", "/stash/", &[], b"");
    assert!(r.text().contains("https://mycompany.com/stash/scm/KEY/slug.git"), "{}", r.text());
}

#[test]
fn without_a_base_url_generated_urls_follow_trusted_forwarding_headers_only() {
    let t = TestServer::start_with(|c| c.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()]);
    // 127.0.0.1 is not trusted here: its X-Forwarded-Host is ignored.
    let r = t.http("GET", "/", &[("Host", "localhost:7990"), ("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Proto", "https")], b"");
    assert!(r.text().contains("http://localhost:7990/scm/KEY/slug.git"), "{}", r.text());
    let t = TestServer::start_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]);
    let r = t.http("GET", "/", &[("Host", "localhost:7990"), ("X-Forwarded-Host", "git.example"), ("X-Forwarded-Proto", "https")], b"");
    assert!(r.text().contains("https://git.example/scm/KEY/slug.git"), "{}", r.text());
}

#[test]
fn a_proxied_request_under_a_different_url_than_the_base_url_is_reported_once() {
    let t = stash();
    // Direct requests are not compared: an administrator on the box is expected to differ.
    t.http("GET", "/stash/status", &[], b"");
    assert_eq!(t.server.base_url_mismatch(), None);
    // A proxy that forwards the right public URL is fine.
    t.http("GET", "/stash/status", &[("X-Forwarded-Host", "mycompany.com"), ("X-Forwarded-Proto", "https")], b"");
    assert_eq!(t.server.base_url_mismatch(), None);
    // The seed's classic mistake: the proxy talks plain http and passes its own host.
    t.http("GET", "/stash/status", &[("X-Forwarded-Host", "localhost:7990"), ("X-Forwarded-Proto", "http")], b"");
    assert_eq!(t.server.base_url_mismatch(), Some(("http://localhost:7990/stash".to_owned(), "https://mycompany.com/stash".to_owned())));
    t.http("GET", "/stash/status", &[("X-Forwarded-Host", "other.example")], b"");
    assert_eq!(t.server.base_url_mismatch().unwrap().0, "http://localhost:7990/stash", "only the first is kept");
}
