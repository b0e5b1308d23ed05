//! The file view, blame and per-file history through `app()` with `oneshot`, on a repository
//! made with the real `git`: highlighting, the file's links, Markdown and images, blame grouped
//! by commit across a rename to a non-ASCII name, history followed across it and paged.

use axum::body::Body;
use http::{Request, StatusCode, header};
use tower::ServiceExt as _;
use trove_store::{GlobalPermission, Owner, Password, Permission, ProjectKey, RepoSlug, UserName};

use crate::{Server, ServerConfig, app};

const TP: &str = "/projects/TP/repos/test";

struct Fixture {
    _dir: tempfile::TempDir,
    server: Server,
    work: tempfile::TempDir,
}

impl Fixture {
    /// User `reader` with read on the private project TP, its repository `test` empty, and a
    /// work tree to commit in.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::open(ServerConfig::new(dir.path())).unwrap();
        let s = server.store();
        let reader = UserName::parse("reader").unwrap();
        s.create_user(&reader, &Password::new("reader-password").unwrap(), GlobalPermission::LicensedUser).unwrap();
        let tp = ProjectKey::parse("TP").unwrap();
        s.create_project(&tp, Some("Test Project"), false).unwrap();
        s.create_repo(&Owner::Project(tp.clone()), &RepoSlug::parse("test").unwrap(), false).unwrap();
        s.grant_project(&reader, &tp, Permission::Read).unwrap();
        let f = Fixture { _dir: dir, server, work: tempfile::tempdir().unwrap() };
        f.git("Ann", &["init", "-q", "-b", "main"]);
        f
    }

    /// `git` in the work tree as author `who` (`who@example.com`); its output, trimmed.
    fn git(&self, who: &str, args: &[&str]) -> String {
        let mail = format!("{}@example.com", who.to_lowercase());
        let out = std::process::Command::new("git")
            .env_clear()
            .envs(trove_store::git_env(self.server.store().git_home()))
            .env("GIT_AUTHOR_NAME", who)
            .env("GIT_AUTHOR_EMAIL", &mail)
            .env("GIT_COMMITTER_NAME", who)
            .env("GIT_COMMITTER_EMAIL", &mail)
            .current_dir(self.work.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Writes `files` and commits them all as `who`; the new commit's id.
    fn commit(&self, who: &str, message: &str, files: &[(&str, &[u8])]) -> String {
        for (path, content) in files {
            let p = self.work.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        self.git(who, &["add", "-A"]);
        self.git(who, &["commit", "-q", "-m", message]);
        self.git(who, &["rev-parse", "HEAD"])
    }

    fn push(&self) {
        let repo = self.server.store().repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
        let bare = self.server.store().repo_path(&repo);
        self.git("Ann", &["push", "-q", "-f", bare.to_str().unwrap(), "main"]);
    }

    /// The page at `path` for `reader`: status and body.
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let u = self.server.store().user(&UserName::parse("reader").unwrap()).unwrap().unwrap();
        let (id, _) = self.server.store().create_session(u.id, 3600).unwrap();
        let req = Request::builder()
            .uri(path)
            .header(header::HOST, "localhost:7990")
            .header(header::ACCEPT, "text/html")
            .header(header::COOKIE, format!("{}={id}", super::super::SESSION_COOKIE))
            .body(Body::empty())
            .unwrap();
        let resp = app(&self.server).oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 64 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// The blame groups of a blame page: (short commit id, author, first line, line count).
fn blame_groups(body: &str) -> Vec<(String, String, u64, u64)> {
    body.split("<div class=bg>")
        .skip(1)
        .map(|g| {
            let sha = g.split("class=\"sha\"").nth(1).and_then(|s| s.split('>').nth(1)).and_then(|s| s.split('<').next()).unwrap_or("").to_owned();
            let who = g.split("class=\"who\">").nth(1).and_then(|s| s.split('<').next()).unwrap_or("").to_owned();
            let lines: Vec<u64> = g.split("data-n=").skip(1).filter_map(|s| s.split('>').next()).filter_map(|n| n.parse().ok()).collect();
            (sha, who, lines.first().copied().unwrap_or(0), lines.len() as u64)
        })
        .collect()
}

#[tokio::test]
async fn the_file_view_highlights_each_line_with_its_anchor_and_links_raw_blame_history_and_the_commit() {
    let f = Fixture::new();
    let tip = f.commit("Ann", "Add code", &[("src/main.rs", b"// a <greeting>\nfn main() {\n    let s = \"hi\";\n}\n"), ("notes.txt", b"plain & simple\n")]);
    f.push();
    let (status, body) = f.get(&format!("{TP}/browse/src/main.rs")).await;
    assert_eq!(status, StatusCode::OK);
    for want in [
        "<div class=l id=L1 data-n=1><span class=c>// a &lt;greeting&gt;</span></div>",
        "<div class=l id=L2 data-n=2><span class=k>fn</span> <span class=f>main</span>",
        "<span class=s>\"hi\"</span>",
        "<div class=l id=L4 data-n=4>}</div>",
        "class=\"src hl\" data-lines tabindex=0",
        "<span class=\"badge lang\">Rust</span>",
        &format!("href=\"{TP}/raw/src/main.rs?at=refs/heads/main\""),
        &format!("href=\"{TP}/browse/src/main.rs?at=refs/heads/main&amp;blame=true\""),
        &format!("href=\"{TP}/commits?path=src/main.rs&amp;until=refs/heads/main\""),
        &format!("href=\"{TP}/browse/src/main.rs?at={tip}\""),
    ] {
        assert!(body.contains(want), "{want} missing from:\n{body}");
    }
    assert!(!body.contains("table class=\"code\""), "lines are not a table any more");
    // The second view of the same blob comes from the cache and is the same page.
    let file = |page: &str| page[page.find("id=\"file\"").unwrap()..page.find("</main>").unwrap()].to_owned();
    assert_eq!(file(&f.get(&format!("{TP}/browse/src/main.rs")).await.1), file(&body));
    let (_, plain) = f.get(&format!("{TP}/browse/notes.txt")).await;
    assert!(plain.contains("<div class=l id=L1 data-n=1>plain &amp; simple</div>") && !plain.contains("badge lang"), "{plain}");
}

#[tokio::test]
async fn markdown_files_are_rendered_with_a_source_toggle_and_images_are_previewed() {
    let f = Fixture::new();
    f.commit(
        "Ann",
        "Add docs",
        &[
            ("docs/guide.md", b"# Guide\n\nSee [setup](setup.md) and ![logo](img/logo.png).\n<script>x</script>\n"),
            ("docs/img/logo.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            ("docs/img/icon.svg", b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n"),
        ],
    );
    f.push();
    let (_, guide) = f.get(&format!("{TP}/browse/docs/guide.md")).await;
    assert!(guide.contains("id=\"rendered\"") && guide.contains("<h1>Guide</h1>"), "{guide}");
    assert!(guide.contains(&format!("href=\"{TP}/browse/docs/setup.md?at=refs/heads/main\"")), "links resolve against the file's folder: {guide}");
    assert!(guide.contains(&format!("src=\"{TP}/raw/docs/img/logo.png?at=refs/heads/main\"")), "{guide}");
    assert!(!guide.contains("<script>x"), "raw HTML stays text");
    assert!(guide.contains("id=\"view-source\""), "{guide}");
    let (_, source) = f.get(&format!("{TP}/browse/docs/guide.md?view=source")).await;
    assert!(source.contains("<div class=l id=L1 data-n=1><span class=h># Guide</span></div>") && source.contains("id=\"view-rendered\""), "{source}");
    for image in ["docs/img/logo.png", "docs/img/icon.svg"] {
        let (status, page) = f.get(&format!("{TP}/browse/{image}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains(&format!("<img id=\"image-preview\" src=\"{TP}/raw/{image}?at=refs/heads/main\" alt=\"{image}\">")), "{page}");
    }
}

#[tokio::test]
async fn blame_groups_lines_by_the_commit_that_last_changed_them_across_a_rename_to_a_non_ascii_name() {
    let f = Fixture::new();
    let a = f.commit("Ann", "Write three lines", &[("old.py", b"one = 1\ntwo = 2\nthree = 3\n")]);
    let b = f.commit("Bob", "Change the second line", &[("old.py", b"one = 1\ntwo = 'two'\nthree = 3\n")]);
    std::fs::create_dir(f.work.path().join("n\u{f6}tes")).unwrap();
    f.git("Cid", &["mv", "old.py", "n\u{f6}tes/\u{fc}ber.py"]);
    f.git("Cid", &["commit", "-q", "-m", "Move it"]);
    let d = f.commit("Dee", "Change the third line", &[("n\u{f6}tes/\u{fc}ber.py", b"one = 1\ntwo = 'two'\nthree = 'three'\n")]);
    f.push();
    let path = format!("{TP}/browse/n%C3%B6tes/%C3%BCber.py");
    let (status, body) = f.get(&format!("{path}?blame=true")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let short = |id: &str| id[..12].to_owned();
    assert_eq!(blame_groups(&body), [(short(&a), "Ann".to_owned(), 1, 1), (short(&b), "Bob".to_owned(), 2, 1), (short(&d), "Dee".to_owned(), 3, 1)], "{body}");
    assert!(body.contains("<span class=s>&#39;two&#39;</span>") || body.contains("<span class=s>'two'</span>"), "the blamed lines are highlighted: {body}");
    assert!(body.contains("Change the second line") && body.contains("<span class=\"when\" title=\""), "{body}");
    assert!(body.contains(&format!("href=\"{TP}/commits/{b}\"")), "each group links its commit");
    // Bitbucket's `?at=…&blame` with no value, and a blame at an older commit.
    let (_, old) = f.get(&format!("{TP}/browse/old.py?at={b}&blame")).await;
    assert_eq!(blame_groups(&old), [(short(&a), "Ann".to_owned(), 1, 1), (short(&b), "Bob".to_owned(), 2, 1), (short(&a), "Ann".to_owned(), 3, 1)]);
    assert_eq!(f.get(&format!("{TP}/browse/old.py?blame=true")).await.0, StatusCode::NOT_FOUND, "gone at main");
}

#[tokio::test]
async fn a_files_history_follows_it_across_renames_and_pages_with_the_path_kept() {
    let f = Fixture::new();
    let first = f.commit("Ann", "Start the file", &[("a.txt", b"0\n")]);
    f.commit("Ann", "Another file", &[("other.txt", b"x\n")]);
    f.git("Ann", &["mv", "a.txt", "d\u{e9}j\u{e0}.txt"]);
    f.git("Ann", &["commit", "-q", "-m", "Rename it"]);
    for i in 1..=52 {
        f.commit("Ann", &format!("Edit {i}"), &[("d\u{e9}j\u{e0}.txt", format!("{i}\n").as_bytes())]);
    }
    f.push();
    let history = format!("{TP}/commits?path=d%C3%A9j%C3%A0.txt");
    let (status, page1) = f.get(&history).await;
    assert_eq!(status, StatusCode::OK, "{page1}");
    assert!(page1.contains("History of") && page1.contains("Edit 52") && !page1.contains("Another file"), "{page1}");
    let older = format!("href=\"{TP}/commits?until=refs/heads/main&amp;path=d%C3%A9j%C3%A0.txt&amp;start=50\"");
    assert!(page1.contains(&older), "the next page keeps the path: {page1}");
    let (_, page2) = f.get(&format!("{TP}/commits?until=refs/heads/main&path=d%C3%A9j%C3%A0.txt&start=50")).await;
    for want in ["Edit 2<", "Edit 1<", "Rename it", "Start the file", &first[..12]] {
        assert!(page2.contains(want), "{want} missing: the rename is followed to the first commit: {page2}");
    }
    assert!(!page2.contains("Another file"));
    // A folder's history is the commits that touched it; a bad path is refused.
    assert_eq!(f.get(&format!("{TP}/commits?path=a/../b")).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_commit_page_highlights_its_diff() {
    let f = Fixture::new();
    f.commit("Ann", "Add", &[("lib.rs", b"fn a() {}\n")]);
    let c = f.commit("Ann", "Change", &[("lib.rs", b"fn b() { let x = \"<y>\"; }\n")]);
    f.push();
    let (_, body) = f.get(&format!("{TP}/commits/{c}")).await;
    assert!(body.contains("<tr class=\"add\"><td>+<span class=k>fn</span> <span class=f>b</span>"), "{body}");
    assert!(body.contains("<span class=s>\"&lt;y&gt;\"</span>"), "{body}");
    assert!(body.contains("<tr class=\"del\"><td>-<span class=k>fn</span>"), "{body}");
}
