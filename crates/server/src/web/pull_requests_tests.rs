//! Pull request pages through `app()` with `oneshot` (no sockets, no browser): the list and
//! its filter, comparing, the create form and its errors, the overview's activity, reviews,
//! comments, merge vetoes and state changes, stale versions, and who may do what.

use axum::body::Body;
use http::{Request, StatusCode, header};
use tower::ServiceExt as _;
use trove_store::{GlobalPermission, Owner, Password, Permission, PrState, ProjectKey, PullRequest, Repo, RepoSlug, ReviewStatus, UserName};

use crate::{Server, ServerConfig, app};

struct Fixture {
    _dir: tempfile::TempDir,
    server: Server,
    repo: Repo,
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

    /// The body, for assertion messages.
    fn show(&self) -> String {
        format!("{} {}", self.status, &self.body[..self.body.len().min(3000)])
    }
}

fn name(s: &str) -> UserName {
    UserName::parse(s).unwrap()
}

const TP: &str = "/projects/TP/repos/test";

/// Users `admin`, `reader` (read on TP), `writer` (write on TP), `owner` (admin on TP),
/// `outsider`; private TP/test with `main` (one commit), `one` (one commit on it: "Add the one
/// thing", with a body) and `feature/many-things` (two: "Add a", "Add b"); public PUB/open with
/// `main` and `topic`.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(ServerConfig::new(dir.path())).unwrap();
    let s = server.store();
    for (n, g) in [
        ("admin", GlobalPermission::SysAdmin),
        ("reader", GlobalPermission::LicensedUser),
        ("writer", GlobalPermission::LicensedUser),
        ("owner", GlobalPermission::LicensedUser),
        ("outsider", GlobalPermission::LicensedUser),
    ] {
        s.create_user(&name(n), &Password::new(&format!("{n}-password")).unwrap(), g).unwrap();
    }
    let tp = ProjectKey::parse("TP").unwrap();
    s.create_project(&tp, Some("Test Project"), false).unwrap();
    let repo = s.create_repo(&Owner::Project(tp.clone()), &RepoSlug::parse("test").unwrap(), false).unwrap();
    s.grant_project(&name("reader"), &tp, Permission::Read).unwrap();
    s.grant_project(&name("writer"), &tp, Permission::Write).unwrap();
    s.grant_project(&name("owner"), &tp, Permission::Admin).unwrap();
    let pubk = ProjectKey::parse("PUB").unwrap();
    s.create_project(&pubk, None, true).unwrap();
    let open = s.create_repo(&Owner::Project(pubk), &RepoSlug::parse("open").unwrap(), false).unwrap();
    let f = Fixture { _dir: dir, server, repo };
    f.push(
        &f.repo,
        "# Test\n",
        &[("one", "one.txt", "Add the one thing\n\nBecause we need it."), ("feature/many-things", "a.txt", "Add a"), ("feature/many-things", "b.txt", "Add b")],
    );
    f.push(&open, "# Open\n", &[("topic", "t.txt", "Add t")]);
    f
}

impl Fixture {
    fn git(&self, cwd: &std::path::Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .env_clear()
            .envs(trove_store::git_env(self.server.store().git_home()))
            .env("GIT_AUTHOR_NAME", "Ann Author")
            .env("GIT_AUTHOR_EMAIL", "ann@example.com")
            .env("GIT_COMMITTER_NAME", "Ann Author")
            .env("GIT_COMMITTER_EMAIL", "ann@example.com")
            .current_dir(cwd)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Commits a README on `main`, then each `(branch, file, message)` on its branch (made
    /// from `main` when first named; the file holds its own name), and pushes them all.
    fn push(&self, repo: &Repo, readme: &str, commits: &[(&str, &str, &str)]) {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        self.git(w, &["init", "-q", "-b", "main"]);
        std::fs::write(w.join("README.md"), readme).unwrap();
        self.git(w, &["add", "README.md"]);
        self.git(w, &["commit", "-q", "-m", "Initial commit"]);
        let mut names = vec!["main".to_owned()];
        for (branch, file, message) in commits {
            if !names.iter().any(|n| n == branch) {
                self.git(w, &["checkout", "-q", "-b", branch, "main"]);
                names.push(branch.to_string());
            }
            self.git(w, &["checkout", "-q", branch]);
            std::fs::write(w.join(file), format!("{}\n", file.trim_end_matches(".txt"))).unwrap();
            self.git(w, &["add", file]);
            self.git(w, &["commit", "-q", "-m", message]);
        }
        let dir = self.server.store().repo_path(repo);
        let mut args = vec!["push", "-q", dir.to_str().unwrap()];
        args.extend(names.iter().map(String::as_str));
        self.git(w, &args);
    }

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
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 16 << 20).await.unwrap();
        Resp { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
    }

    async fn get_as(&self, user: Option<&str>, path: &str) -> Resp {
        let cookie = user.map(|u| self.session(u).0);
        self.send("GET", path, cookie.as_deref(), None).await
    }

    /// POSTs a form as `user` with their session's CSRF token.
    async fn post_as(&self, user: &str, path: &str, form: &str) -> Resp {
        let (cookie, csrf) = self.session(user);
        self.send("POST", path, Some(&cookie), Some(&format!("{form}&csrf={csrf}"))).await
    }

    /// Opens a pull request through the create form; its number.
    async fn open_pr(&self, user: &str, source: &str, reviewers: &[&str]) -> i64 {
        let mut form =
            format!("action=create&source={}&target=main&title=From+{}&description=Why+**this**", super::url_encode(source), super::url_encode(source));
        for r in reviewers {
            form.push_str(&format!("&reviewer%3A{r}=1"));
        }
        let r = self.post_as(user, &format!("{TP}/pull-requests?create"), &form).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.show());
        let n = r.location().strip_prefix(&format!("{TP}/pull-requests/")).and_then(|l| l.strip_suffix("/overview")).unwrap();
        n.parse().unwrap()
    }

    fn pr(&self, n: i64) -> PullRequest {
        self.server.store().pr(self.repo.id, n).unwrap().unwrap()
    }

    fn user_id(&self, n: &str) -> i64 {
        self.server.store().user(&name(n)).unwrap().unwrap().id
    }

    fn status_of(&self, n: i64, user: &str) -> Option<ReviewStatus> {
        self.pr(n).participant(self.user_id(user)).map(|p| p.status)
    }

    /// POSTs one action of the overview with the pull request's current version.
    async fn act(&self, user: &str, n: i64, form: &str) -> Resp {
        let v = self.pr(n).version;
        self.post_as(user, &format!("{TP}/pull-requests/{n}/overview"), &format!("{form}&version={v}")).await
    }
}

#[tokio::test]
async fn the_list_shows_pull_requests_and_filters_them_by_state() {
    let f = fixture();
    let empty = f.get_as(Some("reader"), &format!("{TP}/pull-requests")).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.contains("id=\"no-pull-requests\"") && empty.body.contains("id=\"create-pr\""), "{}", empty.show());
    assert!(empty.body.contains("id=\"nav-pull-requests\""), "the repository's navigation links the list");
    let one = f.open_pr("writer", "one", &["reader"]).await;
    let many = f.open_pr("writer", "feature/many-things", &[]).await;
    assert_eq!(f.act("writer", many, "action=decline").await.status, StatusCode::SEE_OTHER);
    let r = f.act("reader", one, "action=approve").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.show());
    let open = f.get_as(Some("reader"), &format!("{TP}/pull-requests")).await;
    assert!(open.body.contains(&format!("data-pr=\"{one}\"")) && !open.body.contains(&format!("data-pr=\"{many}\"")), "{}", open.show());
    assert!(open.body.contains("From one") && open.body.contains("class=\"reviewer status-approved\" data-user=\"reader\""), "{}", open.show());
    assert!(open.body.contains("<span class=\"ref\">one</span>"), "source → target");
    let declined = f.get_as(Some("reader"), &format!("{TP}/pull-requests?state=DECLINED")).await;
    assert!(!declined.body.contains(&format!("data-pr=\"{one}\"")) && declined.body.contains(&format!("data-pr=\"{many}\"")), "{}", declined.show());
    let all = f.get_as(Some("reader"), &format!("{TP}/pull-requests?state=ALL")).await;
    assert!(all.body.contains(&format!("data-pr=\"{one}\"")) && all.body.contains(&format!("data-pr=\"{many}\"")));
    let merged = f.get_as(Some("reader"), &format!("{TP}/pull-requests?state=merged")).await;
    assert!(merged.body.contains("No merged pull requests"));
    assert_eq!(f.get_as(Some("reader"), &format!("{TP}/pull-requests?state=SHUT")).await.status, StatusCode::BAD_REQUEST);
    // Pages: newest first, one a page.
    let first = f.get_as(Some("reader"), &format!("{TP}/pull-requests?state=ALL&limit=1")).await;
    assert!(first.body.contains(&format!("data-pr=\"{many}\"")) && first.body.contains("id=\"page-next\"") && !first.body.contains("id=\"page-prev\""));
    let second = f.get_as(Some("reader"), &format!("{TP}/pull-requests?state=ALL&limit=1&start=1")).await;
    assert!(second.body.contains(&format!("data-pr=\"{one}\"")) && !second.body.contains("id=\"page-next\"") && second.body.contains("id=\"page-prev\""));
}

#[tokio::test]
async fn the_create_form_proposes_a_title_and_creates_with_reviewers() {
    let f = fixture();
    let r = f.get_as(Some("writer"), &format!("{TP}/pull-requests?create&sourceBranch=refs/heads/one&targetBranch=refs/heads/main")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.show());
    assert!(r.body.contains("name=\"title\" value=\"Add the one thing\""), "one commit: its subject: {}", r.show());
    assert!(r.body.contains(">Because we need it.</textarea>"), "and its body");
    assert!(r.body.contains("id=\"reviewer-reader\"") && r.body.contains("id=\"reviewer-owner\""), "readers of the repository may review");
    assert!(!r.body.contains("id=\"reviewer-outsider\"") && !r.body.contains("id=\"reviewer-writer\""), "but not outsiders, nor the author");
    assert!(r.body.contains("id=\"create-commits\"") && r.body.contains("<option value=\"feature/many-things\">"), "commits and the branch list");
    let r = f.get_as(Some("writer"), &format!("{TP}/pull-requests?create&sourceBranch=feature/many-things")).await;
    assert!(r.body.contains("name=\"title\" value=\"Feature/many things\""), "several: the branch name, readable: {}", r.show());
    assert!(r.body.contains(">* Add a\n* Add b</textarea>"), "and the subjects, oldest first");
    assert!(r.body.contains("id=\"target-branch\"") && r.body.contains("value=\"main\""), "the default branch is the target");
    // Without a branch yet: the pickers only.
    let r = f.get_as(Some("writer"), &format!("{TP}/pull-requests?create")).await;
    assert!(r.body.contains("id=\"source-branch\"") && !r.body.contains("id=\"create-button\""));
    // Sent: the pull request, with the reviewer, and its page.
    let form = "action=create&source=one&target=main&title=My+change&description=Some+*words*&reviewer%3Areader=1";
    let r = f.post_as("writer", &format!("{TP}/pull-requests?create"), form).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/TP/repos/test/pull-requests/1/overview"), "{}", r.show());
    let pr = f.pr(1);
    assert_eq!((pr.title.as_str(), pr.description.as_deref(), pr.from_ref.as_str()), ("My change", Some("Some *words*"), "refs/heads/one"));
    assert_eq!(f.status_of(1, "reader"), Some(ReviewStatus::Unapproved));
    // Anonymous callers are sent to log in, even on a public repository.
    let r = f.get_as(None, "/projects/PUB/repos/open/pull-requests?create").await;
    assert!(r.status == StatusCode::FOUND && r.location().starts_with("/login?next="), "{}", r.show());
}

#[tokio::test]
async fn the_create_form_shows_each_error_beside_its_field_and_keeps_what_was_typed() {
    let f = fixture();
    let url = format!("{TP}/pull-requests?create");
    let r = f.post_as("writer", &url, "action=create&source=one&target=main&title=+&description=Kept+text&reviewer%3Aowner=1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.show());
    assert!(r.body.contains("id=\"title-error\"") && r.body.contains("needs a title"), "{}", r.show());
    assert!(r.body.contains(">Kept text</textarea>") && r.body.contains("id=\"reviewer-owner\" value=\"1\" checked"), "what was typed is kept: {}", r.show());
    let r = f.post_as("writer", &url, "action=create&source=nope&target=main&title=T").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("id=\"source-error\"") && r.body.contains("nope"), "{}", r.show());
    let r = f.post_as("writer", &url, "action=create&source=one&target=one&title=T").await;
    assert!(r.status == StatusCode::CONFLICT && r.body.contains("id=\"target-error\""), "{}", r.show());
    let r = f.post_as("writer", &url, "action=create&source=&target=main&title=T").await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("id=\"source-error\""), "{}", r.show());
    let r = f.post_as("writer", &url, "action=create&source=one&target=main&title=T&reviewer%3Aoutsider=1").await;
    assert!(r.status == StatusCode::CONFLICT && r.body.contains("id=\"reviewers-error\"") && r.body.contains("outsider"), "{}", r.show());
    let r = f.post_as("writer", &url, "action=create&source=main&target=one&title=T").await;
    assert!(r.status == StatusCode::CONFLICT && r.body.contains("id=\"source-error\"") && r.body.contains("nothing to merge"), "{}", r.show());
    let n = f.open_pr("writer", "one", &[]).await;
    let r = f.post_as("writer", &url, "action=create&source=one&target=main&title=Again").await;
    assert!(r.status == StatusCode::CONFLICT && r.body.contains("id=\"source-error\"") && r.body.contains("Only one pull request"), "{}", r.show());
    assert!(r.body.contains("id=\"existing-pr\"") && r.body.contains(&format!("/pull-requests/{n}/overview")), "{}", r.show());
    // Compare looks at the branches typed, by redirect.
    let r = f.post_as("writer", &url, "action=compare&source=feature%2Fmany-things&target=main").await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/projects/TP/repos/test/pull-requests?create&sourceBranch=feature/many-things&targetBranch=main")
    );
    // Without the session's token: refused.
    let (cookie, _) = f.session("writer");
    assert_eq!(f.send("POST", &url, Some(&cookie), Some("action=create&source=one&target=main&title=T")).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_overview_shows_the_activity_the_people_and_the_merge_vetoes() {
    let f = fixture();
    f.server.store().set_pr_settings(f.repo.id, r#"{"requiredApprovers":1,"enabledStrategies":["no-ff","squash"],"defaultStrategy":"squash"}"#).unwrap();
    let n = f.open_pr("writer", "feature/many-things", &["reader"]).await;
    let r = f.get_as(Some("writer"), &format!("{TP}/pull-requests/{n}")).await;
    assert_eq!((r.status, r.location()), (StatusCode::FOUND, format!("{TP}/pull-requests/{n}/overview").as_str()));
    let r = f.act("reader", n, "action=comment&text=Looks+**good**").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.show());
    assert!(r.location().contains("?done=commented#comment-"), "{}", r.location());
    let cid: i64 = r.location().rsplit("comment-").next().unwrap().parse().unwrap();
    let r = f.act("writer", n, &format!("action=reply&parent={cid}&text=Thanks")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.show());
    let page = f.get_as(Some("writer"), &format!("{TP}/pull-requests/{n}/overview")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.show());
    let b = &page.body;
    assert!(b.contains("id=\"pr-title-text\">From feature/many-things<") && b.contains("class=\"badge pr-state state-open\""), "{}", page.show());
    assert!(b.contains("<p>Why <strong>this</strong></p>"), "the description is Markdown");
    assert!(b.contains("data-user=\"reader\" data-status=\"UNAPPROVED\""), "reviewers with their status");
    let opened = b.find("data-action=\"OPENED\"").unwrap();
    let commented = b.find("data-action=\"COMMENTED\"").unwrap();
    assert!(opened < commented, "oldest first");
    assert!(b.contains("<strong>good</strong>") && b.contains("<p>Thanks</p>"), "comments and replies");
    let reply_at = b.find("<p>Thanks</p>").unwrap();
    assert!(b[commented..reply_at].contains("class=\"replies\""), "the reply sits in its thread");
    assert!(b.contains("id=\"merge-vetoes\"") && b.contains("Not all required reviewers have approved yet"), "{}", page.show());
    assert!(b.contains("id=\"merge-button\" type=\"submit\" disabled"), "merging is disabled while vetoed");
    assert!(
        b.contains("<option value=\"squash\" selected") && b.contains("<option value=\"no-ff\"") && !b.contains("value=\"ff-only\""),
        "enabled strategies, default first"
    );
    assert!(b.contains("value=\"git fetch origin refs/pull-requests/1/from\""), "the checkout command");
    assert!(b.contains("id=\"tab-diff\"") && b.contains(&format!("/pull-requests/{n}/diff\"")), "the diff tab is linked");
    assert!(b.contains("id=\"edit-form\"") && !b.contains("id=\"review-form\""), "the author edits but does not review");
    // The reviewer approves: the veto is gone and the merge button is enabled.
    assert_eq!(f.act("reader", n, "action=approve").await.status, StatusCode::SEE_OTHER);
    let page = f.get_as(Some("writer"), &format!("{TP}/pull-requests/{n}/overview")).await;
    assert!(!page.body.contains("id=\"merge-vetoes\"") && page.body.contains("id=\"merge-button\" type=\"submit\">"), "{}", page.show());
    assert!(page.body.contains("data-action=\"APPROVED\""));
    // A reader sees the review form, not the edit form, and the merge button disabled.
    let page = f.get_as(Some("reader"), &format!("{TP}/pull-requests/{n}/overview")).await;
    assert!(page.body.contains("id=\"review-form\"") && page.body.contains("id=\"unapprove-button\"") && !page.body.contains("id=\"edit-form\""));
    assert!(page.body.contains("id=\"merge-permission\"") && page.body.contains("id=\"merge-button\" type=\"submit\" disabled"), "{}", page.show());
    // The commits tab lists the two commits.
    let commits = f.get_as(Some("reader"), &format!("{TP}/pull-requests/{n}/commits")).await;
    assert_eq!(commits.status, StatusCode::OK);
    assert!(
        commits.body.contains("id=\"pr-commits\"") && commits.body.contains("Add a") && commits.body.contains("Add b") && commits.body.contains("2 commits")
    );
    assert!(!commits.body.contains("Initial commit"), "not the target's");
}

#[tokio::test]
async fn reviews_merges_declines_and_reopens_go_through_the_forms() {
    let f = fixture();
    let n = f.open_pr("writer", "one", &["reader"]).await;
    for (form, want, done) in [
        ("action=needs-work", ReviewStatus::NeedsWork, "needs-work"),
        ("action=approve", ReviewStatus::Approved, "approved"),
        ("action=unapprove", ReviewStatus::Unapproved, "unapproved"),
    ] {
        let r = f.act("reader", n, form).await;
        assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, format!("{TP}/pull-requests/{n}/overview?done={done}").as_str()), "{}", r.show());
        assert_eq!(f.status_of(n, "reader"), Some(want));
    }
    // The author adds and removes reviewers; a reader may only remove themselves.
    let page = f.get_as(Some("writer"), &format!("{TP}/pull-requests/{n}/overview")).await;
    assert!(page.body.contains("id=\"add-reviewer-form\"") && page.body.contains("<option value=\"owner\">"), "{}", page.show());
    assert!(!page.body.contains("<option value=\"reader\">"), "reviewers already there are not offered");
    let r = f.act("writer", n, "action=add-reviewer&user=owner").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, format!("{TP}/pull-requests/{n}/overview?done=reviewer-added").as_str()), "{}", r.show());
    assert_eq!(f.status_of(n, "owner"), Some(ReviewStatus::Unapproved));
    let r = f.act("writer", n, "action=add-reviewer&user=outsider").await;
    assert!(r.status == StatusCode::CONFLICT && r.body.contains("cannot read this repository"), "{}", r.show());
    assert_eq!(f.act("reader", n, "action=add-reviewer&user=admin").await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.act("reader", n, "action=remove-reviewer&user=owner").await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.act("writer", n, "action=remove-reviewer&user=owner").await.status, StatusCode::SEE_OTHER);
    assert!(f.pr(n).participants.iter().all(|p| p.role != trove_store::Role::Reviewer || p.user_id != f.user_id("owner")));
    let r = f.act("writer", n, "action=approve").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "the author cannot approve: {}", r.show());
    assert!(r.body.contains("id=\"pr-error\"") && r.body.contains("cannot approve"));
    let r = f.act("writer", n, "action=decline").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(f.pr(n).state, PrState::Declined);
    let page = f.get_as(Some("writer"), &format!("{TP}/pull-requests/{n}/overview?done=declined")).await;
    assert!(page.body.contains("Declined.") && page.body.contains("id=\"reopen-button\"") && !page.body.contains("id=\"merge-form\""), "{}", page.show());
    assert_eq!(f.act("writer", n, "action=reopen").await.status, StatusCode::SEE_OTHER);
    assert_eq!(f.pr(n).state, PrState::Open);
    // Edit the title and description.
    let r = f.act("writer", n, "action=edit&title=Better+title&description=Better+words").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.show());
    assert_eq!((f.pr(n).title.as_str(), f.pr(n).description.as_deref()), ("Better title", Some("Better words")));
    // Merge, deleting the source branch.
    let r = f.act("writer", n, "action=merge&strategy=no-ff&delete_source=1&message=").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, format!("{TP}/pull-requests/{n}/overview?done=merged").as_str()), "{}", r.show());
    let pr = f.pr(n);
    assert_eq!(pr.state, PrState::Merged);
    let dir = f.server.store().repo_path(&f.repo);
    let branches = f.git(&dir, &["for-each-ref", "--format=%(refname)", "refs/heads"]);
    assert!(!branches.contains("refs/heads/one"), "the source branch was deleted: {branches}");
    let page = f.get_as(Some("reader"), &format!("{TP}/pull-requests/{n}/overview")).await;
    assert!(page.body.contains("state-merged") && page.body.contains("id=\"merged-note\"") && page.body.contains("data-action=\"MERGED\""), "{}", page.show());
    assert!(!page.body.contains("id=\"review-form\"") && !page.body.contains("id=\"pr-checkout\""), "nothing to review or fetch once merged");
    // Declining a merged one is refused with the reason.
    let r = f.act("writer", n, "action=decline").await;
    assert!(r.status == StatusCode::CONFLICT && r.body.contains("is merged"), "{}", r.show());
}

#[tokio::test]
async fn a_stale_version_is_refused_with_a_reload_message_and_nothing_is_overwritten() {
    let f = fixture();
    let n = f.open_pr("writer", "one", &["reader"]).await;
    let old = f.pr(n).version;
    assert_eq!(f.act("reader", n, "action=approve").await.status, StatusCode::SEE_OTHER);
    let url = format!("{TP}/pull-requests/{n}/overview");
    for form in [
        format!("action=edit&title=Overwrite&description=Mine&version={old}"),
        format!("action=merge&strategy=no-ff&version={old}"),
        format!("action=decline&version={old}"),
    ] {
        let r = f.post_as("writer", &url, &form).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{form}: {}", r.show());
        assert!(r.body.contains("has changed since you loaded this page") && r.body.contains("id=\"reload\""), "{form}: {}", r.show());
        let pr = f.pr(n);
        assert_eq!((pr.title.as_str(), pr.state), ("From one", PrState::Open), "{form}");
    }
    let r = f.post_as("writer", &url, &format!("action=edit&title=Overwrite&description=Mine&version={old}")).await;
    assert!(r.body.contains("id=\"unsaved\"") && r.body.contains("Mine"), "what was typed is shown, not lost: {}", r.show());
    assert!(r.body.contains("id=\"edit-title\" type=\"text\" name=\"title\" value=\"From one\""), "the form shows what is there now");
    // A comment edited meanwhile: the same.
    let r = f.act("reader", n, "action=comment&text=First").await;
    let cid: i64 = r.location().rsplit("comment-").next().unwrap().parse().unwrap();
    let edit = |text: &str, v: i64| format!("action=edit-comment&comment={cid}&version={v}&text={text}");
    assert_eq!(f.post_as("reader", &url, &edit("Second", 0)).await.status, StatusCode::SEE_OTHER);
    let r = f.post_as("reader", &url, &edit("Third", 0)).await;
    assert!(r.status == StatusCode::CONFLICT && r.body.contains("This comment has changed"), "{}", r.show());
    assert_eq!(f.server.store().comment(cid).unwrap().unwrap().text, "Second");
}

#[tokio::test]
async fn comments_are_edited_and_deleted_only_by_their_authors_and_empty_ones_are_refused() {
    let f = fixture();
    let n = f.open_pr("writer", "one", &["reader"]).await;
    let url = format!("{TP}/pull-requests/{n}/overview");
    let r = f.post_as("reader", &url, "action=comment&text=+++").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("needs some text") && r.body.contains("id=\"comment-form\""), "{}", r.show());
    let r = f.post_as("reader", &url, "action=comment&text=Mine").await;
    let cid: i64 = r.location().rsplit("comment-").next().unwrap().parse().unwrap();
    let page = f.get_as(Some("reader"), &url).await;
    assert!(page.body.contains("class=\"edit-comment-form\"") && page.body.contains("class=\"delete-comment-form inline\""), "{}", page.show());
    let page = f.get_as(Some("writer"), &url).await;
    assert!(!page.body.contains("class=\"edit-comment-form\"") && !page.body.contains("delete-comment-form"), "not the author's to edit");
    let r = f.post_as("writer", &url, &format!("action=edit-comment&comment={cid}&version=0&text=Hijacked")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.show());
    let r = f.post_as("writer", &url, &format!("action=delete-comment&comment={cid}&version=0")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(f.server.store().comment(cid).unwrap().unwrap().text, "Mine");
    // An empty reply keeps its thread's form open with the error.
    let r = f.post_as("writer", &url, &format!("action=reply&parent={cid}&text=")).await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("<details class=\"reply\" open>"), "{}", r.show());
    let r = f.post_as("reader", &url, &format!("action=edit-comment&comment={cid}&version=0&text=Mine%2C+edited")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = f.post_as("reader", &url, &format!("action=delete-comment&comment={cid}&version=1")).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, format!("{url}?done=comment-deleted").as_str()));
    assert!(f.server.store().comment(cid).unwrap().is_none());
}

#[tokio::test]
async fn who_may_see_and_do_what_follows_the_rest_apis_rules() {
    let f = fixture();
    let n = f.open_pr("writer", "one", &[]).await;
    let url = format!("{TP}/pull-requests/{n}/overview");
    // Seeing: private repositories send anonymous callers to log in; outsiders get 404.
    for path in [format!("{TP}/pull-requests"), url.clone(), format!("{TP}/pull-requests/{n}/commits"), format!("{TP}/compare/commits?sourceBranch=one")] {
        let r = f.get_as(None, &path).await;
        assert!(r.status == StatusCode::FOUND && r.location().starts_with("/login?next="), "{path}: {}", r.show());
        assert_eq!(f.get_as(Some("outsider"), &path).await.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(f.get_as(Some("reader"), &path).await.status, StatusCode::OK, "{path}");
    }
    assert_eq!(f.get_as(Some("reader"), &format!("{TP}/pull-requests/99/overview")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get_as(Some("reader"), &format!("{TP}/pull-requests/x/overview")).await.status, StatusCode::NOT_FOUND);
    // A public repository's pull requests are there for anyone, without forms.
    let r = f.get_as(None, "/projects/PUB/repos/open/pull-requests").await;
    assert_eq!(r.status, StatusCode::OK);
    // Reading is not merging, nor editing someone else's pull request, nor deleting it.
    let r = f.act("reader", n, "action=merge&strategy=no-ff").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.show());
    assert!(r.body.contains("write access"));
    assert_eq!(f.act("reader", n, "action=edit&title=Mine&description=").await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.act("reader", n, "action=delete").await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.pr(n).state, PrState::Open);
    assert!(!f.get_as(Some("reader"), &url).await.body.contains("id=\"delete-form\""));
    // Someone with write edits it; a repository admin deletes it.
    assert_eq!(f.act("owner", n, "action=edit&title=Owner%27s&description=").await.status, StatusCode::SEE_OTHER);
    assert!(f.get_as(Some("owner"), &url).await.body.contains("id=\"delete-form\""));
    let r = f.act("owner", n, "action=delete").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, format!("{TP}/pull-requests?done=pr-deleted").as_str()));
    assert!(f.server.store().pr(f.repo.id, n).unwrap().is_none());
    // Posting without a session is refused; an unknown action is a bad request.
    assert_eq!(f.send("POST", &url, None, Some("action=approve")).await.status, StatusCode::FORBIDDEN);
    let n = f.open_pr("writer", "one", &[]).await;
    assert_eq!(f.act("writer", n, "action=explode").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_push_to_the_source_shows_as_a_rescope_with_its_commits_and_anonymous_readers_see_no_forms() {
    let f = fixture();
    let r = f.post_as("admin", "/projects/PUB/repos/open/pull-requests?create", "action=create&source=topic&target=main&title=Topic").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.show());
    // Two more commits on the source, pushed straight into the repository.
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let open = f.server.store().repo(&Owner::parse("PUB").unwrap(), &RepoSlug::parse("open").unwrap()).unwrap().unwrap();
    let dir = f.server.store().repo_path(&open);
    f.git(w, &["clone", "-q", "-b", "topic", dir.to_str().unwrap(), "."]);
    for file in ["u.txt", "v.txt"] {
        std::fs::write(w.join(file), file).unwrap();
        f.git(w, &["add", file]);
        f.git(w, &["commit", "-q", "-m", &format!("Add {file}")]);
    }
    f.git(w, &["push", "-q", "origin", "topic"]);
    let page = f.get_as(None, "/projects/PUB/repos/open/pull-requests/1/overview").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.show());
    assert!(page.body.contains("data-action=\"RESCOPED\" data-added=\"2\" data-removed=\"0\"") && page.body.contains("added 2 commits"), "{}", page.show());
    assert!(page.body.find("data-action=\"OPENED\"").unwrap() < page.body.find("data-action=\"RESCOPED\"").unwrap());
    for form in ["id=\"comment-form\"", "id=\"review-form\"", "id=\"edit-form\"", "id=\"decline-form\"", "class=\"reply-form\""] {
        assert!(!page.body.contains(form), "anonymous: no {form}");
    }
    assert!(page.body.contains("id=\"comment-login\"") && page.body.contains("Log in to merge"));
    let commits = f.get_as(None, "/projects/PUB/repos/open/pull-requests/1/commits").await;
    assert!(commits.body.contains("3 commits") && commits.body.contains("Add v.txt"), "{}", commits.show());
}

#[tokio::test]
async fn the_compare_page_lists_the_commits_and_the_diff() {
    let f = fixture();
    let r = f.get_as(Some("reader"), &format!("{TP}/compare?sourceBranch=feature/many-things")).await;
    assert_eq!((r.status, r.location()), (StatusCode::FOUND, format!("{TP}/compare/commits?sourceBranch=feature/many-things").as_str()));
    let r = f.get_as(Some("reader"), &format!("{TP}/compare/commits?sourceBranch=refs/heads/feature/many-things&targetBranch=refs/heads/main")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.show());
    assert!(r.body.contains("id=\"compare-count\">2 commits<") && r.body.contains("Add a") && !r.body.contains("Initial commit"), "{}", r.show());
    assert!(
        r.body.contains("id=\"compare-create\"") && r.body.contains("?create&amp;sourceBranch=refs/heads/feature/many-things&amp;targetBranch=refs/heads/main"),
        "{}",
        r.show()
    );
    let r = f.get_as(Some("reader"), &format!("{TP}/compare/diff?sourceBranch=feature/many-things&targetBranch=main")).await;
    assert!(r.body.contains("id=\"compare-diff\"") && r.body.contains("data-path=\"a.txt\"") && r.body.contains("data-path=\"b.txt\""), "{}", r.show());
    // The pull request's diff view: numbered lines, the new side's line 1 of a.txt added.
    assert!(r.body.contains("<a href=\"#f-a.txt-T1\">1</a></td><td class=\"act\"></td><td class=\"code add both\">a</td>"), "{}", r.show());
    let r = f.get_as(Some("reader"), &format!("{TP}/compare/commits?sourceBranch=ghost")).await;
    assert!(r.status == StatusCode::OK && r.body.contains("id=\"source-error\"") && r.body.contains("no branch ghost"), "{}", r.show());
    // Once a pull request is open, compare leads to it.
    let n = f.open_pr("writer", "feature/many-things", &[]).await;
    let r = f.get_as(Some("reader"), &format!("{TP}/compare/commits?sourceBranch=feature/many-things&targetBranch=main")).await;
    assert!(r.body.contains("id=\"existing-pr\"") && r.body.contains(&format!("/pull-requests/{n}/overview")) && !r.body.contains("id=\"compare-create\""));
}

#[tokio::test]
async fn the_dashboard_lists_the_callers_pull_requests_by_what_they_wait_for() {
    let f = fixture();
    let n = f.open_pr("writer", "one", &["reader"]).await;
    let section = |body: &str, id: &str| {
        let at = body.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no {id}: {body}"));
        let end = body[at..].find("</section>").unwrap() + at;
        body[at..end].to_owned()
    };
    let page = f.get_as(Some("reader"), "/dashboard").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(section(&page.body, "prs-reviewing").contains(&format!("data-pr=\"{n}\"")), "{}", page.show());
    assert!(page.body.contains("id=\"projects\""), "the projects follow");
    let home = f.get_as(Some("writer"), "/").await;
    assert!(section(&home.body, "prs-authored").contains(&format!("data-pr=\"{n}\"")), "the home page is the dashboard: {}", home.show());
    assert!(!section(&home.body, "prs-reviewing").contains("data-pr="));
    f.act("reader", n, "action=approve").await;
    let page = f.get_as(Some("reader"), "/").await;
    assert!(!section(&page.body, "prs-reviewing").contains("data-pr=") && section(&page.body, "prs-participating").contains(&format!("data-pr=\"{n}\"")));
    // Not on the project list, nor for anonymous callers; and not once it cannot be read.
    assert!(!f.get_as(Some("reader"), "/projects").await.body.contains("id=\"your-work\""));
    assert!(!f.get_as(None, "/").await.body.contains("id=\"your-work\""));
    f.server.store().revoke_project(&name("reader"), &f.server.store().project_info(&Owner::parse("TP").unwrap()).unwrap().unwrap().as_project()).unwrap();
    assert!(!f.get_as(Some("reader"), "/dashboard").await.body.contains(&format!("data-pr=\"{n}\"")));
}

#[tokio::test]
async fn personal_repositories_have_pull_requests_at_bitbuckets_user_urls() {
    let f = fixture();
    let dots = f.server.store().create_repo(&Owner::User(name("owner")), &RepoSlug::parse("dots").unwrap(), false).unwrap();
    f.push(&dots, "# Dots\n", &[("tweak", "vimrc.txt", "Tweak vim")]);
    let r = f.get_as(Some("owner"), "/users/owner/repos/dots/pull-requests?state=ALL").await;
    assert_eq!((r.status, r.location()), (StatusCode::FOUND, "/projects/~owner/repos/dots/pull-requests?state=ALL"));
    let r = f.post_as("owner", "/projects/~owner/repos/dots/pull-requests?create", "action=create&source=tweak&target=main&title=Tweak").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/~owner/repos/dots/pull-requests/1/overview"), "{}", r.show());
    let r = f.get_as(Some("owner"), "/projects/~owner/repos/dots/pull-requests/1/overview").await;
    assert!(r.status == StatusCode::OK && r.body.contains("id=\"pr-title-text\">Tweak<"), "{}", r.show());
    assert_eq!(f.get_as(Some("outsider"), "/projects/~owner/repos/dots/pull-requests/1/overview").await.status, StatusCode::NOT_FOUND);
}

#[test]
fn proposals_follow_bitbucket_one_commit_or_the_branch_name() {
    let p = super::proposal;
    assert_eq!(p("refs/heads/fix", &["Fix the thing\n\nIt was broken.\n\nTwice."]), ("Fix the thing".into(), "It was broken.\n\nTwice.".into()));
    assert_eq!(p("refs/heads/fix", &["Fix\nthe thing"]), ("Fix the thing".into(), String::new()));
    assert_eq!(p("refs/heads/bugfix/PROJ-12_add-login", &["Second", "First\n\nbody"]), ("Bugfix/PROJ 12 add login".into(), "* First\n* Second".into()));
    assert_eq!(p("refs/heads/x", &[]), ("X".into(), String::new()));
}
