//! The diff page through `app()` with `oneshot`: a real repository (commits made with git), a
//! pull request opened through the rules, and the page and its forms as a browser uses them.

use axum::body::Body;
use http::{Request, StatusCode, header};
use tower::ServiceExt as _;
use trove_store::{Authenticated, GlobalPermission, Owner, Password, Permission, ProjectKey, RepoSlug, UserName};

use crate::pull_requests::{self as prs, Actor, NewPr};
use crate::{Server, ServerConfig, app};

const PR: &str = "/projects/TP/repos/test/pull-requests/1";

struct Fixture {
    _dir: tempfile::TempDir,
    server: Server,
}

struct Resp {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Resp {
    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The HTML of the file section with element id `id`.
    fn section(&self, id: &str) -> &str {
        let start = self.body.find(&format!("<section class=\"pr-file\" id=\"{id}\"")).unwrap_or_else(|| panic!("no section {id}:\n{}", self.body));
        let len = self.body[start..].find("</section>").unwrap();
        &self.body[start..start + len]
    }
}

fn name(s: &str) -> UserName {
    UserName::parse(s).unwrap()
}

fn lines(from: usize, to: usize) -> String {
    (from..=to).map(|i| format!("line {i}\n")).collect()
}

/// Users `alice` (writes TP, opens the pull request), `reader` (reads TP), `owner` (TP admin),
/// `outsider`; private TP/test with `main` and `feature`, and pull request 1 from `feature`:
/// `a.txt` (60 lines) edited (line 5 changed, a line added after 20), `big.txt` (2,100 lines) and
/// `logo.png` (binary) added, `gone.txt` deleted, `old.txt` moved to `moved.txt`, `space.txt`
/// changed only in whitespace, and 25 small files `many/fNN.txt`: 31 files.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(ServerConfig::new(dir.path())).unwrap();
    let s = server.store();
    for n in ["alice", "reader", "owner", "outsider"] {
        s.create_user(&name(n), &Password::new(&format!("{n}-password")).unwrap(), GlobalPermission::LicensedUser).unwrap();
    }
    let tp = ProjectKey::parse("TP").unwrap();
    s.create_project(&tp, Some("Test Project"), false).unwrap();
    let repo = s.create_repo(&Owner::Project(tp.clone()), &RepoSlug::parse("test").unwrap(), false).unwrap();
    s.grant_project(&name("alice"), &tp, Permission::Write).unwrap();
    s.grant_project(&name("reader"), &tp, Permission::Read).unwrap();
    s.grant_project(&name("owner"), &tp, Permission::Admin).unwrap();

    let bare = s.repo_path(&repo);
    let work = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", work.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
            .current_dir(work.path())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let write = |p: &str, content: &[u8]| {
        let path = work.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    };
    git(&["init", "-q", "-b", "main"]);
    write("a.txt", lines(1, 60).as_bytes());
    write("space.txt", b"a b\nc\n");
    write("gone.txt", b"bye\n");
    write("old.txt", lines(1, 12).as_bytes());
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "base"]);
    git(&["checkout", "-q", "-b", "feature"]);
    let a = lines(1, 60).replace("line 5\n", "line five\n").replace("line 20\n", "line 20\nnew line\n");
    write("a.txt", a.as_bytes());
    write("space.txt", b"a  b\nc\n");
    std::fs::remove_file(work.path().join("gone.txt")).unwrap();
    std::fs::rename(work.path().join("old.txt"), work.path().join("moved.txt")).unwrap();
    write("big.txt", lines(1, 2100).as_bytes());
    write("logo.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0");
    for i in 0..25 {
        write(&format!("many/f{i:02}.txt"), format!("file {i}\n").as_bytes());
    }
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "feature"]);
    git(&["push", "-q", bare.to_str().unwrap(), "main", "feature"]);

    let alice = s.user(&name("alice")).unwrap().unwrap();
    let who = Authenticated { user: alice, token_scope: None };
    let new = NewPr { title: "Add <things>".into(), description: None, from_ref: "feature".into(), to_ref: "main".into(), reviewers: vec![] };
    let pr = prs::create(&server.shared, &repo, &Actor { who: &who, level: Permission::Write }, new).await.unwrap();
    assert_eq!(pr.number, 1);
    Fixture { _dir: dir, server }
}

impl Fixture {
    fn session(&self, user: &str) -> (String, String) {
        let u = self.server.store().user(&name(user)).unwrap().unwrap();
        let (id, csrf) = self.server.store().create_session(u.id, 3600).unwrap();
        (format!("{}={id}", super::super::SESSION_COOKIE), csrf)
    }

    async fn send(&self, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> Resp {
        let mut b = Request::builder().method(method).uri(path).header(header::HOST, "localhost:7990").header(header::ACCEPT, "text/html");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        let req = match form {
            Some(f) => b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(Body::from(f.to_owned())).unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let resp = app(&self.server).oneshot(req).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = axum::body::to_bytes(resp.into_body(), 64 << 20).await.unwrap();
        Resp { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
    }

    async fn get(&self, user: Option<&str>, path: &str) -> Resp {
        let cookie = user.map(|u| self.session(u).0);
        self.send("GET", path, cookie.as_deref(), None).await
    }

    /// Posts a comment form as `user` with their session's token.
    async fn post(&self, user: &str, form: &str) -> Resp {
        let (cookie, csrf) = self.session(user);
        self.send("POST", &format!("{PR}/diff/comment"), Some(&cookie), Some(&format!("{form}&csrf={csrf}"))).await
    }

    fn comments(&self) -> Vec<trove_store::Comment> {
        let s = self.server.store();
        let repo = s.repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
        let pr = s.pr(repo.id, 1).unwrap().unwrap();
        s.comments(pr.id).unwrap()
    }
}

/// The position of `needle` in `hay`, which must hold it.
fn at(hay: &str, needle: &str) -> usize {
    hay.find(needle).unwrap_or_else(|| panic!("{needle:?} is not in:\n{hay}"))
}

#[tokio::test]
async fn the_diff_lists_every_file_and_renders_hunks_with_line_numbers_on_both_sides() {
    let f = fixture().await;
    let r = f.get(Some("reader"), &format!("{PR}/diff")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The header, escaped, with the tabs.
    assert!(r.body.contains("Add &lt;things&gt;") && r.body.contains(&format!("href=\"{PR}/overview\"")) && r.body.contains(&format!("href=\"{PR}/commits\"")));
    assert!(r.body.contains("id=\"pr-source\">feature<") && r.body.contains("id=\"pr-target\">main<"));
    // The list: every file, its change type, its counts, a link to its section and its own page.
    let list = &r.body[at(&r.body, "id=\"file-tree\"")..];
    let list = &list[..list.find("</nav>").unwrap()];
    assert!(list.contains("31 files changed"), "{list}");
    assert_eq!(list.matches("<li class=\"file").count(), 31);
    for (path, kind) in [("a.txt", "M"), ("big.txt", "A"), ("gone.txt", "D"), ("moved.txt", "R"), ("many/f24.txt", "A")] {
        let item = &list[at(list, &format!("data-path=\"{path}\""))..];
        let item = &item[..item.find("</li>").unwrap()];
        assert!(item.contains(&format!(">{kind}</span>")), "{path}: {item}");
        assert!(item.contains(&format!("href=\"#{}\"", super::file_id(path))), "{item}");
        assert!(item.contains(&format!("href=\"{PR}/diff?path={}\"", super::url_encode(path))), "{item}");
    }
    assert!(list.contains("<li class=\"dir\"><span class=\"mono\">many/</span>"));
    let a_item = &list[at(list, "data-path=\"a.txt\"")..];
    assert!(a_item[..a_item.find("</li>").unwrap()].contains("+2</span> <span class=\"removed\">−1"), "{a_item}");
    // a.txt's hunks: the removed line has its old number, the added its new one, a context
    // line both; ids name the side.
    let a = r.section("f-a.txt");
    assert!(a.contains("@@ -1,30 +1,31 @@"), "{a}");
    let old5 = at(a, "id=\"f-a.txt-F5\"");
    let new5 = at(a, "id=\"f-a.txt-T5\"");
    assert!(old5 < at(a, ">line 5<") && at(a, ">line 5<") < new5 && new5 < at(a, ">line five<"), "{a}");
    assert!(a.contains("id=\"f-a.txt-F4\"") && a.contains("id=\"f-a.txt-T4\""), "a context line has both numbers");
    assert!(a.contains("id=\"f-a.txt-T21\"") && !a.contains("id=\"f-a.txt-F31\""));
    assert!(a.contains("class=\"code pr-diff unified\""));
    // The moved and deleted files.
    assert!(r.section("f-moved.txt").contains("data-src-path=\"old.txt\"") || r.body.contains("data-src-path=\"old.txt\""));
    assert!(r.section("f-gone.txt").contains(">bye<"));
    // No inline style or script: the CSP (style-src 'self', script-src 'self') holds.
    assert!(!r.body.contains(" style="), "inline style");
    assert_eq!(r.body.matches("<script").count(), 1, "only the page script");
}

#[tokio::test]
async fn side_by_side_puts_each_removed_line_beside_the_line_that_replaced_it() {
    let f = fixture().await;
    let r = f.get(Some("reader"), &format!("{PR}/diff?view=split")).await;
    assert_eq!(r.status, StatusCode::OK);
    let a = r.section("f-a.txt");
    assert!(a.contains("class=\"code pr-diff split\""), "{a}");
    let row_start = a[..at(a, "id=\"f-a.txt-F5\"")].rfind("<tr").unwrap();
    let row = &a[row_start..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains(">line 5<") && row.contains(">line five<") && row.contains("id=\"f-a.txt-T5\""), "{row}");
    // Links keep the layout.
    assert!(r.body.contains(&format!("href=\"{PR}/diff?path=a.txt&amp;view=split\"")), "the file's own page keeps view=split");
    assert!(r.body.contains("id=\"view-split\"") && r.body.contains("class=\"seg on\" id=\"view-split\""));
}

#[tokio::test]
async fn ignoring_whitespace_hides_a_whitespace_only_change_and_more_context_widens_a_file() {
    let f = fixture().await;
    let shown = f.get(Some("reader"), &format!("{PR}/diff?path=space.txt")).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.section("f-space.txt").contains(">a  b<"));
    let ignored = f.get(Some("reader"), &format!("{PR}/diff?path=space.txt&whitespace=ignore-all")).await;
    assert_eq!(ignored.status, StatusCode::OK);
    let s = ignored.section("f-space.txt");
    assert!(!s.contains(">a  b<") && s.contains("No changes but whitespace."), "{s}");
    assert!(ignored.body.contains("Whitespace ignored: show it"));
    // a.txt with 3 lines of context shows two hunks and no line 12; more context joins them.
    let narrow = f.get(Some("reader"), &format!("{PR}/diff?path=a.txt&context=3")).await;
    let s = narrow.section("f-a.txt");
    assert_eq!(s.matches("class=\"hunk\"").count(), 2, "{s}");
    assert!(!s.contains(">line 12<"));
    assert!(s.contains(&format!("href=\"{PR}/diff?path=a.txt&amp;context=23#f-a.txt\"")), "more context adds 20 lines: {s}");
    let whole = f.get(Some("reader"), &format!("{PR}/diff?path=a.txt&context=100000")).await;
    let s = whole.section("f-a.txt");
    assert_eq!(s.matches("class=\"hunk\"").count(), 1);
    assert!(s.contains(">line 12<") && s.contains(">line 45<"));
    // Lines beyond the pull request's own diff (10 lines of context) get no comment control.
    assert!(s.contains("comment=TO:31:CONTEXT") && !s.contains("comment=TO:45:CONTEXT") && s.contains("comment=TO:5:ADDED"), "{s}");
}

#[tokio::test]
async fn a_comment_on_an_added_line_appears_under_it_with_its_replies_and_only_its_author_edits_it() {
    let f = fixture().await;
    // The "+" control of line 5 (new) is a link to the file's page with the form open there.
    let page = f.get(Some("reader"), &format!("{PR}/diff")).await;
    let link = format!("href=\"{PR}/diff?path=a.txt&amp;comment=TO:5:ADDED#f-a.txt-T5\"");
    assert!(page.section("f-a.txt").contains(&link), "{}", page.section("f-a.txt"));
    let form_page = f.get(Some("reader"), &format!("{PR}/diff?path=a.txt&comment=TO:5:ADDED")).await;
    let form = &form_page.body[at(&form_page.body, "id=\"comment-form\"")..];
    assert!(
        form.contains("name=\"line\" value=\"5\"") && form.contains("name=\"lineType\" value=\"ADDED\"") && form.contains("name=\"fileType\" value=\"TO\"")
    );
    assert!(at(&form_page.body, "id=\"f-a.txt-T5\"") < at(&form_page.body, "id=\"comment-form\""));
    assert!(at(&form_page.body, "id=\"comment-form\"") < at(&form_page.body, "id=\"f-a.txt-T6\""), "the form is under its line");

    // Posted from the whole diff: back there, at the comment, with its file shown.
    let r = f.post("reader", "action=add&path=a.txt&line=5&lineType=ADDED&fileType=TO&back=page&text=Why+*five*%3F").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let c = f.comments().pop().unwrap();
    assert_eq!(r.location(), format!("{PR}/diff?focus=a.txt#comment-{}", c.id));
    let page = f.get(Some("alice"), &format!("{PR}/diff?focus=a.txt")).await;
    let a = page.section("f-a.txt");
    let comment = at(a, &format!("id=\"comment-{}\"", c.id));
    assert!(at(a, "id=\"f-a.txt-T5\"") < comment && comment < at(a, "id=\"f-a.txt-T6\""), "under line 5: {a}");
    assert!(a.contains("Why <em>five</em>?"), "Markdown");
    // In the side-by-side view too.
    let split = f.get(Some("alice"), &format!("{PR}/diff?view=split")).await;
    let a = split.section("f-a.txt");
    let comment = at(a, &format!("id=\"comment-{}\"", c.id));
    assert!(at(a, "id=\"f-a.txt-T5\"") < comment && comment < at(a, "id=\"f-a.txt-T6\""));
    // The file list counts it.
    assert!(page.body.contains("1 comment</span>"));

    // alice replies from the file's page and lands back there.
    let r = f.post("alice", &format!("action=add&path=a.txt&parent={}&back=file&view=split&text=Because", c.id)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let reply = f.comments().pop().unwrap();
    assert_eq!(reply.parent_id, Some(c.id));
    assert_eq!(r.location(), format!("{PR}/diff?path=a.txt&view=split#comment-{}", reply.id));
    let page = f.get(Some("reader"), &format!("{PR}/diff?path=a.txt")).await;
    let thread = &page.body[at(&page.body, &format!("id=\"comment-{}\"", c.id))..];
    let replies = &thread[at(thread, "class=\"replies\"")..];
    assert!(replies.contains(&format!("id=\"comment-{}\"", reply.id)) && replies.contains("Because"));
    // reader may edit their own comment (not alice's), and delete it only once it has no replies.
    let mine = &thread[..at(thread, "class=\"replies\"")];
    assert!(mine.contains("name=\"action\" value=\"edit\"") && !mine.contains("value=\"delete\""), "{mine}");
    let theirs = &replies[..replies.find("</article>").unwrap()];
    assert!(!theirs.contains("value=\"edit\"") && !theirs.contains("value=\"delete\""), "{theirs}");

    // A stale version is refused and says so; the current one works.
    let r = f.post("reader", &format!("action=edit&path=a.txt&id={}&version=7&back=file&text=Edited", c.id)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("out-of-date") && r.body.contains(">Edited</textarea>"), "the text is kept: {}", r.body);
    let r = f.post("reader", &format!("action=edit&path=a.txt&id={}&version=0&back=file&text=Edited", c.id)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // alice cannot edit reader's text; nor delete it (she is no admin).
    let r = f.post("alice", &format!("action=edit&path=a.txt&id={}&version=1&back=file&text=Mine", c.id)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // Deleting with a reply is refused; the reply, then the comment, go.
    let r = f.post("reader", &format!("action=delete&path=a.txt&id={}&version=1&back=file", c.id)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("has replies"), "{}", r.body);
    let r = f.post("alice", &format!("action=delete&path=a.txt&id={}&version=0&back=file", reply.id)).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, format!("{PR}/diff?path=a.txt&done=deleted#f-a.txt").as_str()));
    let r = f.post("reader", &format!("action=delete&path=a.txt&id={}&version=1&back=page", c.id)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(f.comments().is_empty());
}

#[tokio::test]
async fn a_comment_on_a_line_the_diff_does_not_have_is_refused_with_the_text_kept() {
    let f = fixture().await;
    let r = f.post("reader", "action=add&path=a.txt&line=99&lineType=ADDED&fileType=TO&back=page&text=Lost+words").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("role=\"alert\"") && r.body.contains("is not in this pull request"), "{}", r.body);
    assert!(r.body.contains(">Lost words</textarea>"));
    let r = f.post("reader", "action=add&path=a.txt&back=page&text=++").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("needs some text"));
    assert!(f.comments().is_empty());
}

#[tokio::test]
async fn file_comments_sit_atop_their_file_and_outdated_ones_are_marked() {
    let f = fixture().await;
    let r = f.post("reader", "action=add&path=moved.txt&srcPath=old.txt&back=page&text=Good+name").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = f.post("reader", "action=add&path=gone.txt&line=1&lineType=REMOVED&fileType=FROM&back=page&text=Sad").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let line = f.comments().pop().unwrap();
    // A repository administrator may delete anyone's comment; others may not.
    let admin_view = f.get(Some("owner"), &format!("{PR}/diff?path=gone.txt")).await;
    assert!(admin_view.section("f-gone.txt").contains("value=\"delete\""));
    let other_view = f.get(Some("alice"), &format!("{PR}/diff?path=gone.txt")).await;
    assert!(!other_view.section("f-gone.txt").contains("value=\"delete\""));
    let page = f.get(Some("reader"), &format!("{PR}/diff?path=moved.txt")).await;
    let s = page.section("f-moved.txt");
    assert!(at(s, "Good name") < s.find("<table").unwrap_or(s.len()), "{s}");
    // The removed line's comment sits under the old line 1.
    let gone = f.get(Some("reader"), &format!("{PR}/diff?path=gone.txt")).await;
    let s = gone.section("f-gone.txt");
    assert!(at(s, "id=\"f-gone.txt-F1\"") < at(s, "Sad"), "{s}");
    // Orphaned by a rescope: shown atop the file, marked.
    let anchor = line.anchor.clone().unwrap();
    f.server.store().set_comment_anchors(&[(line.id, anchor, true)]).unwrap();
    let gone = f.get(Some("reader"), &format!("{PR}/diff?path=gone.txt")).await;
    let s = gone.section("f-gone.txt");
    assert!(at(s, "outdated") < at(s, "Sad") && at(s, "Sad") < at(s, "<table"), "{s}");
    assert!(s.contains("The code moved: line 1 of"), "{s}");
}

#[tokio::test]
async fn large_files_collapse_binary_files_say_so_and_files_past_the_first_ones_load_later() {
    let f = fixture().await;
    let r = f.get(Some("reader"), &format!("{PR}/diff")).await;
    let big = r.section("f-big.txt");
    assert!(big.contains("2100 changed lines") && !big.contains(">line 1<"), "{big}");
    assert!(big.contains(&format!("class=\"show-anyway\" href=\"{PR}/diff?path=big.txt&amp;show=1\"")), "{big}");
    assert!(r.section("f-logo.png").contains("Binary file: not shown."));
    // The first 20 files are diffed; the rest are placeholders linking to their own page.
    assert!(r.section("f-many_2Ff15.txt").contains(">file 15<"));
    for id in ["f-many_2Ff16.txt", "f-many_2Ff24.txt", "f-space.txt"] {
        let s = r.section(id);
        assert!(s.contains("data-lazy") && s.contains("class=\"load-file\""), "{s}");
        assert!(!s.contains("<table"));
    }
    assert!(r.section("f-many_2Ff24.txt").contains(&format!("href=\"{PR}/diff?path=many/f24.txt\"")));
    // "Show anyway" shows it.
    let shown = f.get(Some("reader"), &format!("{PR}/diff?path=big.txt&show=1")).await;
    assert!(shown.section("f-big.txt").contains(">line 2100<"));
    // A file posted to is shown even past the first ones.
    let focus = f.get(Some("reader"), &format!("{PR}/diff?focus=space.txt")).await;
    assert!(focus.section("f-space.txt").contains("<table"));
}

#[tokio::test]
async fn a_files_fragment_is_only_its_section_for_the_page_script() {
    let f = fixture().await;
    let r = f.get(Some("reader"), &format!("{PR}/diff?path=many/f24.txt&fragment=1")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.starts_with("<section class=\"pr-file\" id=\"f-many_2Ff24.txt\""), "{}", r.body);
    assert!(!r.body.contains("<html") && r.body.contains(">file 24<"));
    let csp = r.headers.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap();
    assert!(csp.contains("connect-src 'self'") && csp.contains("script-src 'self'"), "the page script may fetch fragments: {csp}");
    assert!(r.body.contains("name=\"back\" value=\"page\""), "forms in a fragment go back to the whole diff");
    let r = f.get(Some("reader"), &format!("{PR}/diff?path=many/f24.txt&fragment=1&back=file")).await;
    assert!(r.body.contains("name=\"back\" value=\"file\""));
    // The single-file page carries the form template the script clones.
    let r = f.get(Some("reader"), &format!("{PR}/diff?path=a.txt")).await;
    assert!(r.body.contains("<template id=\"comment-form-template\">") && r.body.contains("data-single"));
    assert_eq!(f.get(Some("reader"), &format!("{PR}/diff?path=nope.txt")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_diff_follows_the_repositorys_permissions() {
    let f = fixture().await;
    for path in [format!("{PR}/diff"), format!("{PR}/diff?path=a.txt"), format!("{PR}/diff?path=a.txt&fragment=1")] {
        assert_eq!(f.get(Some("outsider"), &path).await.status, StatusCode::NOT_FOUND, "{path}");
        let anon = f.get(None, &path).await;
        assert_eq!(anon.status, StatusCode::FOUND, "{path}");
        assert!(anon.location().starts_with("/login?next="), "{}", anon.location());
    }
    assert_eq!(f.get(Some("reader"), "/projects/TP/repos/test/pull-requests/2/diff").await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(Some("reader"), "/projects/TP/repos/test/pull-requests/x/diff").await.status, StatusCode::NOT_FOUND);
    // Posting: an outsider cannot see the pull request; no session is no form.
    let r = f.post("outsider", "action=add&path=a.txt&line=5&lineType=ADDED&fileType=TO&text=hi").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = f.send("POST", &format!("{PR}/diff/comment"), None, Some("action=add&path=a.txt&text=hi&csrf=x")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (cookie, _) = f.session("reader");
    let r = f.send("POST", &format!("{PR}/diff/comment"), Some(&cookie), Some("action=add&path=a.txt&text=hi&csrf=wrong")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(f.comments().is_empty());
    // On a public repository anonymous callers read the diff, with no comment controls.
    f.server.store().set_repo_public(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap(), true).unwrap();
    let r = f.get(None, &format!("{PR}/diff")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.body.contains("class=\"cmt\"") && !r.body.contains("comment-form-template") && r.body.contains("to comment."));
}
