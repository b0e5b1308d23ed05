//! A pull request's diff page (`…/pull-requests/{id}/diff`): the changed files as a list, each
//! file's diff unified or side by side, the comments on its lines with their replies, and the
//! forms to comment, reply, edit and delete.
//!
//! Large pull requests stay fast: the page diffs only its first files (a count and a line
//! budget, sized beforehand by `numstat`) and leaves the rest as placeholders, each a link to
//! the file's own page (`…/diff?path=…`), which the page script loads in place
//! (`&fragment=1`) when it scrolls into view. A file with too many changed lines is collapsed
//! behind "Show anyway". Everything works without the script: every control is a link or a
//! form, and the script only saves a page load.

use std::collections::{HashMap, HashSet};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query};
use futures_util::StreamExt as _;
use http::StatusCode;
use maud::{Markup, PreEscaped, html};
use trove_store::{Comment, CommentChange, Permission, PullRequest, Repo, StoreError};

use super::view::{Notice, csrf_field, done_notice, html_response, notice, page, utc};
use super::{Form, Web, WebError, WebResult, markdown, see_other, url_encode};
use crate::access::{self, AccessError};
use crate::pr_git::{Change, DEFAULT_CONTEXT_LINES, DiffOptions, FileDiff, GitRepo, PrGitError, SegmentType};
use crate::pull_requests::{self as prs, Actor, Anchor, NewCommentAsk, PrError};

/// Files whose diffs the page shows at once; the rest load when scrolled to. Default 20.
const EAGER_FILES: usize = 20;
/// Changed lines (by `numstat`) the page diffs at once across its first files; the file that
/// would go over it and every one after are placeholders. Default 4,000. The first file is
/// always shown.
const EAGER_LINES: u64 = 4_000;
/// A file with more changed lines than this is collapsed behind "Show anyway". Default 2,000.
const LARGE_FILE: u64 = 2_000;
/// Most lines (context included) one file's diff shows before it is cut: 10,000, as the REST
/// diff and Bitbucket's `page.max.diff.lines`.
const MAX_FILE_LINES: usize = 10_000;
/// Longest line shown, in characters; longer lines are cut and marked.
const MAX_LINE_LEN: usize = 5_000;
/// Most changed files listed. Default 5,000.
const MAX_FILES: usize = 5_000;
/// Context lines asked for by "Show the whole file" (and the most any link may ask for).
const WHOLE_FILE: u32 = 100_000;
/// Context lines each "Show more context" adds.
const MORE_CONTEXT: u32 = 20;
/// How many eager files are diffed at once: git is quick per file, the machine may be small.
const PARALLEL_DIFFS: usize = 4;

type Q = Query<HashMap<String, String>>;
type PrPath = Result<Path<(String, String, String)>, PathRejection>;

// ---- access and errors ----

fn seg<T>(p: Result<Path<T>, PathRejection>) -> Result<T, WebError> {
    p.map(|Path(t)| t).map_err(|_| WebError::NotFound)
}

/// A pull request id from the URL: a positive whole number, else there is no such page.
fn number(raw: &str) -> Result<i64, WebError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or(WebError::NotFound)
}

/// The access service's refusal as pages render it (as `repo.rs` does): anonymous callers log
/// in first, others get 404 or 403.
fn refused(w: &Web, e: AccessError) -> WebError {
    match e {
        AccessError::Anonymous(_) => w.require_user().err().unwrap_or(WebError::NotFound),
        AccessError::Hidden(_) => WebError::NotFound,
        AccessError::Forbidden(_) => WebError::Forbidden,
        AccessError::Store(e) => e.into(),
    }
}

/// The repository, if the caller may read it, and their permission on it.
async fn repo_access(w: &Web, key: &str, slug: &str) -> Result<(Repo, Permission), WebError> {
    let (key, slug) = (key.to_owned(), slug.to_owned());
    w.clone()
        .blocking(move |w| {
            let who = w.who();
            access::repo(&w.state.store, who.as_ref(), &key, &slug, Permission::Read)
                .map(|a| (a.repo, a.level))
                .map_err(|e| w.repo_refusal(&key, &slug, e, |e| refused(w, e)))
        })
        .await
}

fn git_error(e: PrGitError) -> WebError {
    WebError::Internal(e.to_string())
}

/// A refusal of the pull-request rules that the page shows beside the form (the caller can
/// fix it), or the error page for the rest.
fn shown_refusal(e: PrError) -> Result<(StatusCode, String), WebError> {
    let status = match e {
        PrError::NotFound(_) => return Err(WebError::NotFound),
        PrError::Store(s) => return Err(s.into()),
        PrError::Git(g) => return Err(git_error(g)),
        PrError::Invalid { .. } => StatusCode::BAD_REQUEST,
        PrError::Forbidden(_) => StatusCode::FORBIDDEN,
        PrError::Conflict { .. } | PrError::Stale { .. } | PrError::Vetoed(_) => StatusCode::CONFLICT,
    };
    Ok((status, e.to_string()))
}

// ---- what the page is asked to show ----

/// The view options every link and form carries on: `view=split`, `whitespace=ignore-all`,
/// `context=N` (lines; the default is the pull request's 10).
#[derive(Debug, Clone, Default, PartialEq)]
struct Opts {
    split: bool,
    ignore_ws: bool,
    context: Option<u32>,
}

impl Opts {
    fn parse(get: impl Fn(&str) -> Option<String>) -> Opts {
        let context = get("context").and_then(|c| c.parse::<u32>().ok()).map(|c| c.min(WHOLE_FILE)).filter(|c| *c != DEFAULT_CONTEXT_LINES);
        Opts { split: get("view").as_deref() == Some("split"), ignore_ws: get("whitespace").as_deref() == Some("ignore-all"), context }
    }

    fn context(&self) -> u32 {
        self.context.unwrap_or(DEFAULT_CONTEXT_LINES)
    }

    /// Whether the diff shown is the one comments are placed on (the pull request's own).
    fn is_commentable_diff(&self) -> bool {
        !self.ignore_ws && self.context() == DEFAULT_CONTEXT_LINES
    }

    fn with_context(&self, c: u32) -> Opts {
        Opts { context: Some(c.min(WHOLE_FILE)).filter(|c| *c != DEFAULT_CONTEXT_LINES), ..self.clone() }
    }

    /// The query pairs that differ from the defaults.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if self.split {
            v.push(("view", "split".to_owned()));
        }
        if self.ignore_ws {
            v.push(("whitespace", "ignore-all".to_owned()));
        }
        if let Some(c) = self.context {
            v.push(("context", c.to_string()));
        }
        v
    }

    fn hidden(&self) -> Markup {
        html! { @for (k, v) in self.pairs() { input type="hidden" name=(k) value=(v); } }
    }
}

/// `?a=b&c=d` (or nothing) from pairs, values percent-encoded (but `:`, which a query may
/// hold as it is, so that `comment=TO:12:ADDED` reads as written).
fn query(pairs: &[(&str, String)]) -> String {
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", url_encode(v).replace("%3A", ":"))).collect();
    if joined.is_empty() { String::new() } else { format!("?{}", joined.join("&")) }
}

/// A side of the diff: the target's old file (`FROM`, source line numbers) or the source
/// branch's new one (`TO`, destination line numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    From,
    To,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::From => "FROM",
            Side::To => "TO",
        }
    }

    fn letter(self) -> char {
        match self {
            Side::From => 'F',
            Side::To => 'T',
        }
    }
}

/// A line of one side of a file: where a comment anchors.
type Key = (Side, u64);

/// The side and line a comment's anchor names, as the rules find it (`find_line`): `FROM`, or a
/// removed line, is the source side.
fn anchor_key(a: &Anchor) -> Option<Key> {
    let line = u64::from(a.line?);
    let from = a.file_type.as_deref() == Some("FROM") || a.line_type.as_deref() == Some("REMOVED");
    Some((if from { Side::From } else { Side::To }, line))
}

/// Which form the page shows open, filled in (after a refused post, with its error).
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Line { side: Side, line: u64, line_type: String },
    File,
    Reply(i64),
    Edit(i64),
}

/// `comment=TO:12:ADDED` (a line) or `comment=FILE`.
fn parse_target(s: &str) -> Option<Target> {
    if s == "FILE" {
        return Some(Target::File);
    }
    let mut parts = s.split(':');
    let side = match parts.next()? {
        "FROM" => Side::From,
        "TO" => Side::To,
        _ => return None,
    };
    let line = parts.next()?.parse::<u64>().ok().filter(|l| *l > 0)?;
    let line_type = parts.next().filter(|t| matches!(*t, "ADDED" | "REMOVED" | "CONTEXT"))?.to_owned();
    parts.next().is_none().then_some(Target::Line { side, line, line_type })
}

struct Open {
    target: Target,
    text: String,
    error: Option<String>,
}

/// The element id of a file's section: the path with every byte but letters, digits, `-` and
/// `.` written `_XX`, so that ids are unique per path and safe in a URL fragment.
fn file_id(path: &str) -> String {
    let mut id = String::from("f-");
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.') {
            id.push(b as char);
        } else {
            id.push_str(&format!("_{b:02X}"));
        }
    }
    id
}

/// The element id of a line's number cell: `{file id}-T12` (new side), `-F12` (old side).
fn line_id(fid: &str, key: Key) -> String {
    format!("{fid}-{}{}", key.0.letter(), key.1)
}

// ---- comments ----

/// The pull request's comments, their anchors and their authors' names.
struct Comments {
    all: Vec<Comment>,
    anchors: HashMap<i64, Anchor>,
    names: HashMap<i64, String>,
}

impl Comments {
    fn load(s: &trove_store::Store, pr_id: i64, author: i64) -> Result<Comments, StoreError> {
        let all = s.comments(pr_id)?;
        let anchors = all.iter().filter_map(|c| Some((c.id, serde_json::from_str::<Anchor>(c.anchor.as_deref()?).ok()?))).collect();
        let mut names = HashMap::new();
        for id in all.iter().map(|c| c.author_id).chain([author]) {
            if let std::collections::hash_map::Entry::Vacant(e) = names.entry(id) {
                let name = s
                    .user_or_former(id)?
                    .map(|u| if u.display_name.is_empty() { u.name.to_string() } else { u.display_name })
                    .unwrap_or_else(|| "(deleted user)".into());
                e.insert(name);
            }
        }
        Ok(Comments { all, anchors, names })
    }

    fn name(&self, id: i64) -> &str {
        self.names.get(&id).map(String::as_str).unwrap_or("(deleted user)")
    }

    fn replies(&self, id: i64) -> impl Iterator<Item = &Comment> {
        self.all.iter().filter(move |c| c.parent_id == Some(id))
    }

    /// Root comments anchored in `path`, with their anchors.
    fn roots_in<'a>(&'a self, path: &'a str) -> impl Iterator<Item = (&'a Comment, &'a Anchor)> {
        self.all.iter().filter(|c| c.parent_id.is_none()).filter_map(move |c| self.anchors.get(&c.id).filter(|a| a.path == path).map(|a| (c, a)))
    }

    fn count_in(&self, path: &str) -> usize {
        self.roots_in(path).count()
    }
}

/// One file's comment threads, sorted for rendering.
#[derive(Default)]
struct FileComments<'a> {
    /// On a line of the diff shown, by side and line.
    lines: HashMap<Key, Vec<&'a Comment>>,
    /// On the file itself.
    file: Vec<&'a Comment>,
    /// Their line left the diff when the pull request was rescoped.
    orphaned: Vec<(&'a Comment, &'a Anchor)>,
    /// On a line this view does not show (less context, whitespace ignored).
    unplaced: Vec<(&'a Comment, &'a Anchor)>,
}

impl<'a> FileComments<'a> {
    fn new(c: &'a Comments, path: &'a str, shown: &HashSet<Key>) -> FileComments<'a> {
        let mut f = FileComments::default();
        for (root, a) in c.roots_in(path) {
            match anchor_key(a) {
                _ if root.orphaned => f.orphaned.push((root, a)),
                None => f.file.push(root),
                Some(k) if shown.contains(&k) => f.lines.entry(k).or_default().push(root),
                Some(_) => f.unplaced.push((root, a)),
            }
        }
        f
    }
}

// ---- loading ----

/// What one file's section shows.
enum Body {
    Diff {
        file: Box<FileDiff>,
        /// The lines a comment may anchor on (they are in the pull request's own diff) and
        /// their type there.
        commentable: HashMap<Key, &'static str>,
        /// The lines highlighted by hunk, segment and line ([`highlighted`]); empty while that
        /// is being computed (the lines are shown plain).
        hl: Vec<Vec<Vec<String>>>,
    },
    Binary,
    Collapsed(u64),
    Lazy,
    /// No lines changed in this view (a mode change, a pure rename, whitespace ignored).
    Empty,
    Failed(String),
}

struct FileView<'a> {
    change: &'a Change,
    /// Lines added and removed, when known.
    counts: Option<(u64, u64)>,
    body: Body,
    /// The file's own view options (more context may have been asked for it alone).
    opts: Opts,
}

/// Every line of a file's diff by the keys it answers to, with its type.
fn line_keys(f: &FileDiff) -> HashMap<Key, &'static str> {
    let mut m = HashMap::new();
    for seg in f.hunks.iter().flat_map(|h| &h.segments) {
        for l in &seg.lines {
            match seg.kind {
                SegmentType::Removed => {
                    m.insert((Side::From, l.source), "REMOVED");
                }
                SegmentType::Added => {
                    m.insert((Side::To, l.destination), "ADDED");
                }
                SegmentType::Context => {
                    m.insert((Side::From, l.source), "CONTEXT");
                    m.insert((Side::To, l.destination), "CONTEXT");
                }
            }
        }
    }
    m
}

fn changed_lines(f: &FileDiff) -> (u64, u64) {
    let mut n = (0, 0);
    for seg in f.hunks.iter().flat_map(|h| &h.segments) {
        match seg.kind {
            SegmentType::Added => n.0 += seg.lines.len() as u64,
            SegmentType::Removed => n.1 += seg.lines.len() as u64,
            SegmentType::Context => {}
        }
    }
    n
}

struct Loaded {
    git: GitRepo,
    /// Where the source left the target: the effective diff is `base..from_hash`, as REST's.
    base: String,
    changes: Vec<Change>,
    more: bool,
    comments: Comments,
    /// The Code Insights annotations on the source commit.
    annotations: Vec<trove_store::Annotation>,
}

async fn load(w: &Web, repo: &Repo, pr: &PullRequest) -> Result<Loaded, WebError> {
    let git = GitRepo::new(&w.state, w.state.store.repo_path(repo));
    let base = git.merge_base(&pr.to_hash, &pr.from_hash).await.map_err(git_error)?.unwrap_or_else(|| pr.to_hash.clone());
    let (changes, more) = git.changes(&base, &pr.from_hash, MAX_FILES).await.map_err(git_error)?;
    let (id, author) = (pr.id, pr.author_id);
    let comments = w.state.store.run(move |s| Comments::load(s, id, author)).await?;
    let (repo_id, tip) = (repo.id, pr.from_hash.clone());
    let annotations = w.state.store.run(move |s| s.annotations(repo_id, &tip, None)).await?;
    Ok(Loaded { git, base, changes, more, comments, annotations })
}

/// One file's diff as the view asks, or why it is not shown. `counts` is what `numstat` said
/// (`Some(None)`: binary), when it was asked.
#[allow(clippy::too_many_arguments)]
async fn file_body(
    state: &crate::AppState,
    git: &GitRepo,
    base: &str,
    head: &str,
    change: &Change,
    opts: &Opts,
    show: bool,
    counts: Option<Option<(u64, u64)>>,
    commenting: bool,
) -> (Body, Option<(u64, u64)>) {
    let known = counts.flatten();
    match counts {
        Some(None) => return (Body::Binary, None),
        Some(Some((a, r))) if a + r > LARGE_FILE && !show => return (Body::Collapsed(a + r), known),
        _ => {}
    }
    let path = change.path.to_string.clone();
    let src_path = change.src_path.as_ref().map(|p| p.to_string.clone());
    let ask = |opts: &Opts| DiffOptions {
        context_lines: Some(opts.context()),
        ignore_whitespace: opts.ignore_ws,
        path: Some(path.clone()),
        src_path: src_path.clone(),
        max_lines: MAX_FILE_LINES,
        max_line_len: MAX_LINE_LEN,
    };
    let find = |diffs: Vec<FileDiff>| {
        diffs.into_iter().find(|f| {
            f.destination.as_ref().is_some_and(|p| p.to_string == path) || (f.destination.is_none() && f.source.as_ref().is_some_and(|p| p.to_string == path))
        })
    };
    let file = match git.diff(base, head, &ask(opts)).await {
        Ok(d) => find(d.diffs),
        Err(e @ (PrGitError::TooLarge { .. } | PrGitError::TimedOut { .. })) => return (Body::Failed(e.to_string()), known),
        Err(e) => {
            tracing::warn!(error = %e, path, "cannot diff a file of a pull request");
            return (Body::Failed("This file's diff could not be read; the server log has the details.".into()), known);
        }
    };
    let Some(file) = file else { return (Body::Empty, known) };
    if file.binary {
        return (Body::Binary, None);
    }
    let lines = changed_lines(&file);
    if lines.0 + lines.1 > LARGE_FILE && !show {
        return (Body::Collapsed(lines.0 + lines.1), Some(lines));
    }
    if file.hunks.is_empty() {
        return (Body::Empty, Some(lines));
    }
    let commentable = if !commenting {
        HashMap::new()
    } else if opts.is_commentable_diff() {
        line_keys(&file)
    } else {
        // Comments anchor on the pull request's own diff (10 lines of context, whitespace
        // shown): offer them only on lines that diff has, with the type it gives them.
        match git.diff(base, head, &ask(&Opts { split: opts.split, ..Opts::default() })).await {
            Ok(d) => find(d.diffs).map(|f| line_keys(&f)).unwrap_or_default(),
            Err(_) => HashMap::new(),
        }
    };
    let hl = highlighted_cached(state, &path, &file).await;
    (Body::Diff { file: Box::new(file), commentable, hl }, Some(known.unwrap_or(lines)))
}

// ---- the page's frame ----

/// One rendering of the page: the pull request, the caller, and the view options.
struct Pr<'a> {
    w: &'a Web,
    repo: &'a Repo,
    /// `None` for a commit's or a comparison's diff (`plain`): no comments, no header.
    pr: Option<&'a PullRequest>,
    /// The page's URL without its query (`…/pull-requests/3/diff`, `…/commits/{id}`), and the
    /// query pairs every link of it keeps (the compare page's branches).
    url: String,
    url_pairs: Vec<(&'static str, String)>,
    /// The new side's commit, for the files' "Source" links.
    head: &'a str,
    level: Permission,
    opts: Opts,
    /// Forms send the caller back to the single-file page (else to the whole diff).
    back_file: bool,
    comments: &'a Comments,
    /// Code Insights annotations on the source commit, shown under the new-side lines they name.
    annotations: &'a [trove_store::Annotation],
}

impl Pr<'_> {
    /// Whether comment controls and forms are offered: on a pull request, to a signed-in caller.
    fn may_comment(&self) -> bool {
        self.pr.is_some() && self.w.user().is_some()
    }

    fn repo_link(&self, rest: &str) -> String {
        self.w.link(&format!("/projects/{}/repos/{}{rest}", url_encode(&self.repo.owner.to_string()), self.repo.slug))
    }

    /// The whole diff with `opts` and `extra` pairs.
    fn page_url(&self, opts: &Opts, extra: &[(&str, String)]) -> String {
        let mut pairs = self.url_pairs.clone();
        pairs.extend(opts.pairs());
        pairs.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        format!("{}{}", self.url, query(&pairs))
    }

    /// One file's page with `opts` and `extra` pairs.
    fn file_url(&self, path: &str, opts: &Opts, extra: &[(&str, String)]) -> String {
        let mut pairs = self.url_pairs.clone();
        pairs.push(("path", path.to_owned()));
        pairs.extend(opts.pairs());
        pairs.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        format!("{}{}", self.url, query(&pairs))
    }

    fn action(&self) -> String {
        format!("{}/comment", self.url)
    }

    fn me(&self) -> Option<i64> {
        self.w.user().map(|u| u.id)
    }

    /// The hidden fields every comment form carries: the token, the file, where to come back.
    fn state_fields(&self, path: &str, opts: &Opts) -> Markup {
        html! {
            (csrf_field(self.w))
            input type="hidden" name="path" value=(path);
            input type="hidden" name="back" value=(if self.back_file { "file" } else { "page" });
            (opts.hidden())
        }
    }
}

/// The pull request's title, state, branches and tabs: the header every pull-request page
/// shares (`pull_requests.rs`), on the Diff tab.
fn header(p: &Pr) -> Markup {
    match p.pr {
        Some(pr) => super::pull_requests::pr_header(p.w, p.repo, p.level, pr, p.comments.name(pr.author_id), "diff"),
        None => html! {},
    }
}

/// View switches: unified or side by side, whitespace, context reset.
fn toolbar(p: &Pr, path: Option<&str>) -> Markup {
    let url = |o: &Opts| match path {
        Some(path) => p.file_url(path, o, &[]),
        None => p.page_url(o, &[]),
    };
    let o = &p.opts;
    html! {
        div.pr-toolbar #diff-toolbar {
            span.seg-group role="group" aria-label="Layout" {
                a.seg.on[!o.split] #view-unified href=(url(&Opts { split: false, ..o.clone() })) aria-current=[(!o.split).then_some("true")] { "Unified" }
                a.seg.on[o.split] #view-split href=(url(&Opts { split: true, ..o.clone() })) aria-current=[o.split.then_some("true")] { "Side by side" }
            }
            @if o.ignore_ws {
                a.seg.on #whitespace-toggle href=(url(&Opts { ignore_ws: false, ..o.clone() })) { "Whitespace ignored: show it" }
            } @else {
                a.seg #whitespace-toggle href=(url(&Opts { ignore_ws: true, ..o.clone() })) { "Ignore whitespace" }
            }
            @if let Some(c) = o.context {
                span.muted { (c) " lines of context " }
                a.seg href=(url(&o.with_context(DEFAULT_CONTEXT_LINES))) { "Reset" }
            }
            @if path.is_some() { a.seg #all-files href=(p.page_url(o, &[])) { "All files" } }
        }
    }
}

fn login_hint(p: &Pr) -> Markup {
    html! {
        @if p.w.user().is_none() && p.pr.is_some() {
            p.muted.login-hint { a href=(p.w.link(&format!("/login?next={}", url_encode(&p.url)))) { "Log in" } " to comment." }
        }
    }
}

/// The form the script clones under a line when its comment control is clicked.
fn form_template(p: &Pr) -> Markup {
    html! {
        @if p.may_comment() {
            template #comment-form-template {
                tr.comment-form-row {
                    td colspan="4" {
                        form.comment-form method="post" action=(p.action()) {
                            (csrf_field(p.w))
                            input type="hidden" name="back" value=(if p.back_file { "file" } else { "page" });
                            (p.opts.hidden())
                            input type="hidden" name="action" value="add";
                            input type="hidden" name="path" value="";
                            input type="hidden" name="srcPath" value="";
                            input type="hidden" name="line" value="";
                            input type="hidden" name="lineType" value="";
                            input type="hidden" name="fileType" value="";
                            textarea name="text" rows="3" required aria-label="Comment" placeholder="Add a comment (Markdown)" {}
                            div.form-buttons { button type="submit" { "Comment" } " " button.secondary type="button" data-cancel { "Cancel" } }
                        }
                    }
                }
            }
        }
    }
}

// ---- the file list ----

fn kind_badge(kind: &str) -> Markup {
    let (class, letter, title) = match kind {
        "ADD" => ("badge kind add", "A", "Added"),
        "DELETE" => ("badge kind delete", "D", "Deleted"),
        "MOVE" => ("badge kind move", "R", "Moved"),
        "COPY" => ("badge kind copy", "C", "Copied"),
        _ => ("badge kind modify", "M", "Modified"),
    };
    html! { span class=(class) role="img" title=(title) aria-label=(title) { (letter) } }
}

fn counts(c: Option<(u64, u64)>, binary: bool) -> Markup {
    html! {
        span.counts {
            @if binary { span.muted { "binary" } }
            @else if let Some((a, r)) = c { span.added { "+" (a) } " " span.removed { "−" (r) } }
        }
    }
}

/// The changed files, grouped under their directories, each a link to its section and to its
/// own page.
fn file_list(p: &Pr, changes: &[Change], numstat: &HashMap<String, Option<(u64, u64)>>) -> Markup {
    let (mut added, mut removed) = (0u64, 0u64);
    for (a, r) in numstat.values().flatten() {
        added += a;
        removed += r;
    }
    // A directory's heading goes before the first of its files (git lists them together).
    let heading: Vec<bool> =
        changes.iter().enumerate().map(|(i, c)| !c.path.parent.is_empty() && (i == 0 || changes[i - 1].path.parent != c.path.parent)).collect();
    html! {
        nav.pr-files #file-tree aria-label="Changed files" {
            h2.flush { (changes.len()) " file" @if changes.len() != 1 { "s" } " changed " span.counts { span.added { "+" (added) } " " span.removed { "−" (removed) } } }
            ul.file-tree {
                @for (c, heading) in changes.iter().zip(heading) {
                    @let path = c.path.to_string.as_str();
                    @let dir = c.path.parent.as_str();
                    @if heading {
                        li.dir { span.mono { (dir) "/" } }
                    }
                    @let n = p.comments.count_in(path);
                    li.file.nested[!dir.is_empty()] data-path=(path) {
                        (kind_badge(c.kind))
                        " "
                        a.file-link href={ "#" (file_id(path)) } title=(path) { (c.path.name) }
                        @if let Some(src) = &c.src_path { " " span.muted.mono { "← " (src.to_string) } }
                        " " (counts(numstat.get(path).copied().flatten(), matches!(numstat.get(path), Some(None))))
                        @if n > 0 { " " span.comment-count title="Comments" { (n) " comment" @if n != 1 { "s" } } }
                        " " a.file-only href=(p.file_url(path, &p.opts, &[])) aria-label={ "Open the diff of " (path) " alone" } { "open" }
                    }
                }
            }
        }
    }
}

// ---- one file ----

/// A line of the diff as the table shows it.
#[derive(Clone, Copy)]
struct Ln<'a> {
    kind: SegmentType,
    src: u64,
    dst: u64,
    text: &'a str,
    /// The text highlighted (web/highlight.rs), when it was.
    html: Option<&'a str>,
    cut: bool,
}

impl Ln<'_> {
    /// The keys a comment on this line may have.
    fn keys(&self) -> Vec<Key> {
        match self.kind {
            SegmentType::Removed => vec![(Side::From, self.src)],
            SegmentType::Added => vec![(Side::To, self.dst)],
            SegmentType::Context => vec![(Side::From, self.src), (Side::To, self.dst)],
        }
    }

    fn class(&self) -> &'static str {
        match self.kind {
            SegmentType::Removed => "del",
            SegmentType::Added => "add",
            SegmentType::Context => "ctx",
        }
    }
}

/// One file's section rendering state.
struct FileCtx<'a> {
    p: &'a Pr<'a>,
    f: &'a FileView<'a>,
    fid: String,
    path: &'a str,
    threads: FileComments<'a>,
    open: Option<&'a Open>,
    commentable: Option<&'a HashMap<Key, &'static str>>,
    /// The diff's lines highlighted ([`highlighted`]), when it has lines.
    hl: &'a [Vec<Vec<String>>],
}

impl FileCtx<'_> {
    fn cols(&self) -> usize {
        if self.f.opts.split { 6 } else { 4 }
    }

    fn line_url(&self, key: Key, line_type: &str) -> String {
        let target = format!("{}:{}:{line_type}", key.0.as_str(), key.1);
        format!("{}#{}", self.p.file_url(self.path, &self.f.opts, &[("comment", target)]), line_id(&self.fid, key))
    }

    /// The "+" control on a line, if the caller may comment there.
    fn control(&self, key: Key) -> Markup {
        let lt = if self.p.may_comment() { self.commentable.and_then(|m| m.get(&key)) } else { None };
        html! {
            @if let Some(lt) = lt {
                a.cmt href=(self.line_url(key, lt)) data-line=(key.1) data-line-type=(*lt) data-file-type=(key.0.as_str())
                    aria-label={ "Comment on " @if key.0 == Side::From { "old " } "line " (key.1) } { "+" }
            }
        }
    }

    fn number(&self, key: Option<Key>) -> Markup {
        html! {
            @match key {
                Some(k) => td.ln id=(line_id(&self.fid, k)) { a href={ "#" (line_id(&self.fid, k)) } { (k.1) } },
                None => td.ln {},
            }
        }
    }

    fn code(&self, l: Option<Ln>, side: &str) -> Markup {
        html! {
            @match l {
                Some(l) => td class={ "code " (l.class()) " " (side) } { @if let Some(h) = l.html { (PreEscaped(h)) } @else { (l.text) } @if l.cut { span.cut title="Line cut: too long to show" { "…" } } },
                None => td class={ "code empty " (side) } {},
            }
        }
    }

    /// The rows after a table row: the open form, if it targets one of `keys`, then the
    /// threads on them.
    fn after(&self, keys: &[Key]) -> Markup {
        let form = self.open.and_then(|o| match &o.target {
            Target::Line { side, line, line_type } if keys.contains(&(*side, *line)) => Some((o, *side, *line, line_type.as_str())),
            _ => None,
        });
        let mut seen = HashSet::new();
        let threads: Vec<&Comment> = keys.iter().filter_map(|k| self.threads.lines.get(k)).flatten().copied().filter(|c| seen.insert(c.id)).collect();
        let notes: Vec<&trove_store::Annotation> = keys
            .iter()
            .filter(|k| k.0 == Side::To)
            .flat_map(|k| self.p.annotations.iter().filter(move |a| a.annotation.line == k.1 as i64 && a.annotation.path.as_deref() == Some(self.path)))
            .collect();
        html! {
            @if !notes.is_empty() {
                tr.annotations { td colspan=(self.cols()) { @for a in &notes { (super::builds::annotation(a)) } } }
            }
            @if let Some((o, side, line, lt)) = form {
                tr.comment-form-row { td colspan=(self.cols()) { (self.line_form(o, side, line, lt)) } }
            }
            @if !threads.is_empty() {
                tr.comments { td colspan=(self.cols()) {
                    @for c in &threads { (thread(self.p, self.path, &self.f.opts, c, None, self.open)) }
                } }
            }
        }
    }

    /// The form for a comment on a line, open (server-side) with `o`'s text and error.
    fn line_form(&self, o: &Open, side: Side, line: u64, lt: &str) -> Markup {
        html! {
            form.comment-form #comment-form method="post" action=(self.p.action()) {
                (self.p.state_fields(self.path, &self.f.opts))
                input type="hidden" name="action" value="add";
                @if let Some(src) = &self.f.change.src_path { input type="hidden" name="srcPath" value=(src.to_string); }
                input type="hidden" name="line" value=(line);
                input type="hidden" name="lineType" value=(lt);
                input type="hidden" name="fileType" value=(side.as_str());
                @if let Some(e) = &o.error { div.notice.err role="alert" { (e) } }
                textarea name="text" rows="3" required autofocus aria-label={ "Comment on " @if side == Side::From { "old " } "line " (line) } placeholder="Add a comment (Markdown)" { (o.text) }
                div.form-buttons {
                    button type="submit" { "Comment" } " "
                    a.button.secondary href={ (self.p.file_url(self.path, &self.f.opts, &[])) "#" (line_id(&self.fid, (side, line))) } { "Cancel" }
                }
            }
        }
    }

    fn unified(&self, file: &FileDiff) -> Markup {
        html! {
            table.code.pr-diff.unified {
                tbody {
                    @for (i, h) in file.hunks.iter().enumerate() {
                        (self.hunk_row(i, h))
                        @for (si, seg) in h.segments.iter().enumerate() { @for (li, l) in seg.lines.iter().enumerate() {
                            @let html = self.hl.get(i).and_then(|h| h.get(si)).and_then(|s| s.get(li)).map(String::as_str);
                            @let ln = Ln { kind: seg.kind, src: l.source, dst: l.destination, text: &l.line, html, cut: l.truncated };
                            @let own = if ln.kind == SegmentType::Removed { (Side::From, ln.src) } else { (Side::To, ln.dst) };
                            tr class=(ln.class()) {
                                (self.number((ln.kind != SegmentType::Added).then_some((Side::From, ln.src))))
                                (self.number((ln.kind != SegmentType::Removed).then_some((Side::To, ln.dst))))
                                td.act { (self.control(own)) }
                                (self.code(Some(ln), "both"))
                            }
                            (self.after(&ln.keys()))
                        } }
                    }
                }
            }
        }
    }

    fn split(&self, file: &FileDiff) -> Markup {
        html! {
            table.code.pr-diff.split {
                // A fixed layout takes its widths from the first row, a hunk row spanning all.
                colgroup { col.c-ln; col.c-act; col.c-code; col.c-ln; col.c-act; col.c-code; }
                tbody {
                    @for (i, h) in file.hunks.iter().enumerate() {
                        (self.hunk_row(i, h))
                        @for (left, right) in split_rows(h, self.hl.get(i).map(Vec::as_slice)) {
                            @let keys: Vec<Key> = left.iter().map(|l| (Side::From, l.src)).chain(right.iter().map(|l| (Side::To, l.dst))).collect();
                            tr.pair {
                                (self.number(left.map(|l| (Side::From, l.src))))
                                td.act { @if let Some(l) = left { (self.control((Side::From, l.src))) } }
                                (self.code(left, "old"))
                                (self.number(right.map(|l| (Side::To, l.dst))))
                                td.act { @if let Some(l) = right { (self.control((Side::To, l.dst))) } }
                                (self.code(right, "new"))
                            }
                            (self.after(&keys))
                        }
                    }
                }
            }
        }
    }

    /// The `@@` row, with a way to more context where lines are hidden above the hunk.
    fn hunk_row(&self, i: usize, h: &crate::pr_git::Hunk) -> Markup {
        let hidden_above = i > 0 || h.source_line > 1 || h.destination_line > 1;
        let more = self.p.file_url(self.path, &self.f.opts.with_context(self.f.opts.context() + MORE_CONTEXT), &[]);
        html! {
            tr.hunk { td colspan=(self.cols()) {
                span.mono { "@@ -" (h.source_line) "," (h.source_span) " +" (h.destination_line) "," (h.destination_span) " @@" }
                @if hidden_above && self.f.opts.context() < WHOLE_FILE {
                    " " a.more-context href={ (more) "#" (self.fid) } data-swap { "Show more context" }
                }
            } }
        }
    }
}

/// A hunk as side-by-side rows: context on both sides, a run of removed lines beside the run of
/// added lines that follows it, row by row.
/// `hl`: the hunk's lines highlighted, by segment ([`highlighted`]).
fn split_rows<'a>(h: &'a crate::pr_git::Hunk, hl: Option<&'a [Vec<String>]>) -> Vec<(Option<Ln<'a>>, Option<Ln<'a>>)> {
    let mut rows = Vec::new();
    let mut segs = h.segments.iter().enumerate().peekable();
    let html = |si: usize, li: usize| hl.and_then(|h| h.get(si)).and_then(|s| s.get(li)).map(String::as_str);
    let ln = |kind: SegmentType, l: &'a crate::pr_git::Line, html: Option<&'a str>| Ln {
        kind,
        src: l.source,
        dst: l.destination,
        text: l.line.as_str(),
        html,
        cut: l.truncated,
    };
    while let Some((si, seg)) = segs.next() {
        match seg.kind {
            SegmentType::Context => {
                rows.extend(seg.lines.iter().enumerate().map(|(li, l)| (Some(ln(seg.kind, l, html(si, li))), Some(ln(seg.kind, l, html(si, li))))))
            }
            SegmentType::Added => rows.extend(seg.lines.iter().enumerate().map(|(li, l)| (None, Some(ln(seg.kind, l, html(si, li)))))),
            SegmentType::Removed => {
                let (ai, added) = match segs.peek() {
                    Some((ai, next)) if next.kind == SegmentType::Added => {
                        let ai = *ai;
                        (ai, segs.next().map(|(_, s)| &s.lines[..]).unwrap_or(&[]))
                    }
                    _ => (usize::MAX, &[][..]),
                };
                for i in 0..seg.lines.len().max(added.len()) {
                    rows.push((
                        seg.lines.get(i).map(|l| ln(SegmentType::Removed, l, html(si, i))),
                        added.get(i).map(|l| ln(SegmentType::Added, l, html(ai, i))),
                    ));
                }
            }
        }
    }
    rows
}

fn kind_name(k: SegmentType) -> &'static str {
    match k {
        SegmentType::Added => "add",
        SegmentType::Removed => "del",
        SegmentType::Context => "ctx",
    }
}

/// [`highlighted`] through the highlighting cache (keyed by a digest of the lines shown): empty
/// when it is not ready within [`super::highlight::WAIT`].
async fn highlighted_cached(state: &crate::AppState, path: &str, file: &FileDiff) -> Vec<Vec<Vec<String>>> {
    let all = file.hunks.iter().flat_map(|h| h.segments.iter().flat_map(|s| s.lines.iter().map(move |l| (kind_name(s.kind), l.line.as_str()))));
    let key = super::highlight::diff_key(path, all);
    let (p, f) = (path.to_owned(), file.clone());
    let work = move || super::highlight::Lines { html: highlighted(&p, &f).into_iter().flatten().flatten().collect(), language: None };
    let Some(flat) = super::highlight::within_wait(state, key, work).await else { return Vec::new() };
    let mut it = flat.html.iter();
    file.hunks.iter().map(|h| h.segments.iter().map(|s| s.lines.iter().map(|_| it.next().cloned().unwrap_or_default()).collect()).collect()).collect()
}

/// A file's diff lines highlighted (web/highlight.rs), by hunk, segment and line: each hunk's
/// old side (context and removed lines) and new side (context and added lines) read as code.
fn highlighted(path: &str, file: &FileDiff) -> Vec<Vec<Vec<String>>> {
    use super::highlight::{DiffHighlighter, Side as HlSide};
    let mut d = DiffHighlighter::new(path);
    file.hunks
        .iter()
        .map(|h| {
            d.hunk();
            h.segments
                .iter()
                .map(|seg| {
                    let side = match seg.kind {
                        SegmentType::Removed => HlSide::Old,
                        SegmentType::Added => HlSide::New,
                        SegmentType::Context => HlSide::Both,
                    };
                    seg.lines.iter().map(|l| d.line(side, &l.line)).collect()
                })
                .collect()
        })
        .collect()
}

/// A comment and its replies, with reply, edit and delete for those who may.
fn thread(p: &Pr, path: &str, opts: &Opts, c: &Comment, outdated: Option<Markup>, open: Option<&Open>) -> Markup {
    html! {
        div.thread.outdated[outdated.is_some()] {
            @if let Some(o) = outdated { (o) }
            (comment(p, path, opts, c, open))
        }
    }
}

fn comment(p: &Pr, path: &str, opts: &Opts, c: &Comment, open: Option<&Open>) -> Markup {
    let mine = p.me() == Some(c.author_id);
    let has_replies = p.comments.replies(c.id).next().is_some();
    let may_delete = (mine || p.level >= Permission::Admin) && !has_replies;
    let open_here = |t: Target| open.filter(|o| o.target == t);
    let reply_open = open_here(Target::Reply(c.id));
    let edit_open = open_here(Target::Edit(c.id));
    html! {
        article.comment id={ "comment-" (c.id) } data-comment-id=(c.id) data-version=(c.version) {
            header.comment-head {
                strong.author { (p.comments.name(c.author_id)) }
                " " span.muted.when { (utc(c.created_at / 1000)) }
                @if c.version > 0 { " " span.muted.edited { "(edited)" } }
                @if c.severity == "BLOCKER" { " " span.badge.task { "task" } }
                @if c.state == "RESOLVED" { " " span.badge.public { "resolved" } }
            }
            div.comment-body { (PreEscaped(markdown::render(&c.text))) }
            @if p.may_comment() {
                div.comment-actions {
                    details.reply open[reply_open.is_some()] {
                        summary { "Reply" }
                        form.comment-form method="post" action=(p.action()) {
                            (p.state_fields(path, opts))
                            input type="hidden" name="action" value="add";
                            input type="hidden" name="parent" value=(c.id);
                            @if let Some(e) = reply_open.and_then(|o| o.error.as_ref()) { div.notice.err #comment-form role="alert" { (e) } }
                            textarea name="text" rows="2" required aria-label="Reply" placeholder="Reply (Markdown)" { @if let Some(o) = reply_open { (o.text) } }
                            div.form-buttons { button type="submit" { "Reply" } }
                        }
                    }
                    @if mine {
                        details.edit open[edit_open.is_some()] {
                            summary { "Edit" }
                            form.comment-form method="post" action=(p.action()) {
                                (p.state_fields(path, opts))
                                input type="hidden" name="action" value="edit";
                                input type="hidden" name="id" value=(c.id);
                                input type="hidden" name="version" value=(c.version);
                                @if let Some(e) = edit_open.and_then(|o| o.error.as_ref()) { div.notice.err #comment-form role="alert" { (e) } }
                                textarea name="text" rows="3" required aria-label="Comment text" { @match edit_open { Some(o) => (o.text), None => (c.text) } }
                                div.form-buttons { button type="submit" { "Save" } }
                            }
                        }
                    }
                    @if may_delete {
                        form.inline.delete method="post" action=(p.action()) data-confirm="Delete this comment?" {
                            (p.state_fields(path, opts))
                            input type="hidden" name="action" value="delete";
                            input type="hidden" name="id" value=(c.id);
                            input type="hidden" name="version" value=(c.version);
                            button.link-button.danger-text type="submit" { "Delete" }
                        }
                    }
                }
            }
            @let replies: Vec<&Comment> = p.comments.replies(c.id).collect();
            @if !replies.is_empty() {
                div.replies { @for r in replies { (comment(p, path, opts, r, open)) } }
            }
        }
    }
}

/// The note over a comment whose line is gone or not in this view.
fn outdated_note(a: &Anchor, moved: bool) -> Markup {
    html! {
        p.outdated-note {
            @if moved { span.badge.off { "outdated" } " The code moved: " } @else { span.badge { "not in this view" } " " }
            @if let Some(l) = a.line { "line " (l) " of " }
            span.mono { (a.path) }
            @if let Some(t) = &a.line_text { @if !t.is_empty() { " was " code { (t) } } }
        }
    }
}

/// One file's section: head, file comments, then its diff or why not.
fn file_section(p: &Pr, f: &FileView, open: Option<&Open>) -> Markup {
    let path = f.change.path.to_string.as_str();
    let fid = file_id(path);
    let (shown, commentable) = match &f.body {
        Body::Diff { file, commentable, .. } => (line_keys(file).into_keys().collect::<HashSet<Key>>(), Some(commentable)),
        _ => (HashSet::new(), None),
    };
    let lazy = matches!(f.body, Body::Lazy);
    let threads = if lazy { FileComments::default() } else { FileComments::new(p.comments, path, &shown) };
    let hl: &[Vec<Vec<String>>] = match &f.body {
        Body::Diff { hl, .. } => hl,
        _ => &[],
    };
    let fc = FileCtx { p, f, fid: fid.clone(), path, threads, open, commentable, hl };
    let single = p.file_url(path, &f.opts, &[]);
    let file_open = open.filter(|o| o.target == Target::File);
    // A line form for a line this view does not show (a refused post): atop the file.
    let stray = open.and_then(|o| match &o.target {
        Target::Line { side, line, line_type } if !shown.contains(&(*side, *line)) && p.may_comment() => Some((o, *side, *line, line_type.clone())),
        _ => None,
    });
    html! {
        section.pr-file id=(fid) data-path=(path) data-src-path=[f.change.src_path.as_ref().map(|s| s.to_string.as_str())] data-lazy[lazy] {
            div.pr-file-head {
                (kind_badge(f.change.kind))
                " "
                h3.path.mono {
                    @if let Some(src) = &f.change.src_path { span.muted { (src.to_string) " → " } }
                    a href={ "#" (fid) } { (path) }
                }
                " " (counts(f.counts, matches!(f.body, Body::Binary)))
                span.file-links {
                    @if !p.back_file { a href=(single) { "View file alone" } }
                    // An added or deleted file is whole already.
                    @if let Body::Diff { .. } = f.body {
                        @if f.opts.context() < WHOLE_FILE && !matches!(f.change.kind, "ADD" | "DELETE") {
                            a.more-context href=(p.file_url(path, &f.opts.with_context(f.opts.context() + MORE_CONTEXT), &[])) data-swap { "More context" }
                            a.whole-file href=(p.file_url(path, &f.opts.with_context(WHOLE_FILE), &[])) data-swap { "Whole file" }
                        }
                    }
                    @if f.change.kind != "DELETE" {
                        a href={ (p.repo_link(&format!("/browse/{}", url_encode(path)))) "?at=" (p.head) } { "Source" }
                    }
                }
            }
            @if !lazy {
                div.file-comments {
                    @for (c, a) in &fc.threads.orphaned { (thread(p, path, &f.opts, c, Some(outdated_note(a, true)), open)) }
                    @for (c, a) in &fc.threads.unplaced { (thread(p, path, &f.opts, c, Some(outdated_note(a, false)), open)) }
                    @for c in &fc.threads.file { (thread(p, path, &f.opts, c, None, open)) }
                    @if let Some((o, side, line, lt)) = &stray { (fc.line_form(o, *side, *line, lt)) }
                    @if p.may_comment() {
                        details.file-comment open[file_open.is_some()] {
                            summary { "Comment on this file" }
                            form.comment-form method="post" action=(p.action()) {
                                (p.state_fields(path, &f.opts))
                                input type="hidden" name="action" value="add";
                                @if let Some(src) = &f.change.src_path { input type="hidden" name="srcPath" value=(src.to_string); }
                                @if let Some(e) = file_open.and_then(|o| o.error.as_ref()) { div.notice.err #comment-form role="alert" { (e) } }
                                textarea name="text" rows="3" required aria-label={ "Comment on " (path) } placeholder="Comment on this file (Markdown)" { @if let Some(o) = file_open { (o.text) } }
                                div.form-buttons { button type="submit" { "Comment" } }
                            }
                        }
                    }
                }
            }
            @match &f.body {
                Body::Diff { file, .. } => {
                    div.codebox.pr-codebox.hl {
                        @if f.opts.split { (fc.split(file)) } @else { (fc.unified(file)) }
                    }
                    @if file.truncated { div.notice.warn.spaced { "This diff is cut at " (MAX_FILE_LINES) " lines; the rest is not shown." } }
                    @if p.may_comment() && commentable.is_some_and(|c| c.is_empty()) {
                        p.muted { "Comments go on the lines of the pull request's own diff; none of these lines are in it." }
                    }
                },
                Body::Binary => p.muted.placeholder { "Binary file: not shown." },
                Body::Collapsed(n) => p.placeholder.collapsed {
                    "This file has " (n) " changed lines, so its diff is collapsed. "
                    a.show-anyway href=(p.file_url(path, &f.opts, &[("show", "1".into())])) data-swap { "Show anyway" }
                },
                Body::Lazy => p.placeholder.lazy {
                    a.load-file href=(single) { "Load the diff of " (path) }
                },
                Body::Empty => p.muted.placeholder { @if f.opts.ignore_ws { "No changes but whitespace." } @else { "No changes to the content (a rename or a mode change)." } },
                Body::Failed(why) => div.notice.err { (why) },
            }
        }
    }
}

// ---- pages ----

/// `GET …/pull-requests/{id}/diff[?path=…]`: the whole diff, or one file (`path`), as a page
/// or, with `fragment=1`, just the file's section for the page script.
pub(crate) async fn diff_page(w: Web, p: PrPath, Query(q): Q) -> WebResult {
    let (key, slug, id) = seg(p)?;
    let n = number(&id)?;
    let (repo, level) = repo_access(&w, &key, &slug).await?;
    let pr = prs::get(&w.state, &repo, n).await.map_err(|e| match shown_refusal(e) {
        Err(e) => e,
        Ok((_, message)) => WebError::BadRequest(message),
    })?;
    let opts = Opts::parse(|k| q.get(k).cloned());
    let note = done_notice(q.get("done").map(String::as_str));
    match q.get("path").map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
        Some(path) => {
            let fragment = q.get("fragment").is_some_and(|f| f == "1");
            let ask = FileAsk {
                show: q.get("show").is_some_and(|s| s == "1"),
                open: q.get("comment").and_then(|c| parse_target(c)).map(|target| Open { target, text: String::new(), error: None }),
                fragment,
                back_file: !fragment || q.get("back").is_some_and(|b| b == "file"),
            };
            one_file(&w, &repo, level, &pr, path, opts, ask, note, StatusCode::OK).await
        }
        None => whole(&w, &repo, level, &pr, opts, q.get("focus").map(String::as_str), note).await,
    }
}

struct FileAsk {
    show: bool,
    open: Option<Open>,
    fragment: bool,
    back_file: bool,
}

#[allow(clippy::too_many_arguments)]
async fn one_file(
    w: &Web,
    repo: &Repo,
    level: Permission,
    pr: &PullRequest,
    path: &str,
    opts: Opts,
    ask: FileAsk,
    note: Option<Notice>,
    status: StatusCode,
) -> WebResult {
    let l = load(w, repo, pr).await?;
    let change = l.changes.iter().find(|c| c.path.to_string == path).ok_or(WebError::NotFound)?;
    let (body, counts) = file_body(&w.state, &l.git, &l.base, &pr.from_hash, change, &opts, ask.show, None, true).await;
    let p = Pr {
        w,
        repo,
        pr: Some(pr),
        url: pr_diff_url(w, repo, pr),
        url_pairs: Vec::new(),
        head: &pr.from_hash,
        level,
        opts: opts.clone(),
        back_file: ask.back_file,
        comments: &l.comments,
        annotations: &l.annotations,
    };
    let view = FileView { change, counts, body, opts };
    let section = file_section(&p, &view, ask.open.as_ref());
    if ask.fragment {
        return Ok(html_response(status, section));
    }
    let body = html! {
        div.pr-diff-page data-pr-diff data-single {
            (header(&p))
            (notice(&note))
            @if let Some(e) = ask.open.as_ref().and_then(|o| o.error.as_ref()) {
                div.notice.err role="alert" { "Your comment was not saved: " (e) " " a href="#comment-form" { "Go to the form" } }
            }
            (toolbar(&p, Some(path)))
            (login_hint(&p))
            (section)
            (form_template(&p))
        }
    };
    let mut r = page(w, &format!("{path} - Pull request #{} - {}", pr.number, repo.name), body);
    *r.status_mut() = status;
    Ok(r)
}

async fn whole(w: &Web, repo: &Repo, level: Permission, pr: &PullRequest, opts: Opts, focus: Option<&str>, note: Option<Notice>) -> WebResult {
    let l = load(w, repo, pr).await?;
    let (numstat, views) = file_views(&w.state, &l.git, &l.base, &pr.from_hash, &l.changes, &opts, focus, true).await;
    let p = Pr {
        w,
        repo,
        pr: Some(pr),
        url: pr_diff_url(w, repo, pr),
        url_pairs: Vec::new(),
        head: &pr.from_hash,
        level,
        opts: opts.clone(),
        back_file: false,
        comments: &l.comments,
        annotations: &l.annotations,
    };
    // Comments on files the pull request no longer changes.
    let paths: HashSet<&str> = l.changes.iter().map(|c| c.path.to_string.as_str()).collect();
    let gone: Vec<(&Comment, &Anchor)> = l
        .comments
        .all
        .iter()
        .filter(|c| c.parent_id.is_none())
        .filter_map(|c| l.comments.anchors.get(&c.id).map(|a| (c, a)))
        .filter(|(_, a)| !paths.contains(a.path.as_str()) && !l.more)
        .collect();
    let body = html! {
        div.pr-diff-page data-pr-diff {
            (header(&p))
            (notice(&note))
            (toolbar(&p, None))
            (login_hint(&p))
            @if !gone.is_empty() {
                section.card #outdated-comments {
                    h2.flush { "Comments on files no longer in this pull request" }
                    @for (c, a) in &gone { (thread(&p, &a.path, &opts, c, Some(outdated_note(a, true)), None)) }
                }
            }
            @if l.changes.is_empty() {
                div.card { p.muted { "This pull request changes no files." } }
            } @else {
                (file_list(&p, &l.changes, &numstat))
            }
            @if l.more { div.notice.warn { "Only the first " (MAX_FILES) " changed files are listed." } }
            div.pr-file-diffs {
                @for v in &views { (file_section(&p, v, None)) }
            }
            (form_template(&p))
        }
    };
    Ok(page(w, &format!("Diff - Pull request #{} - {}", pr.number, repo.name), body))
}

/// `…/pull-requests/{n}/diff`.
fn pr_diff_url(w: &Web, repo: &Repo, pr: &PullRequest) -> String {
    w.link(&format!("/projects/{}/repos/{}/pull-requests/{}/diff", url_encode(&repo.owner.to_string()), repo.slug, pr.number))
}

/// Every changed file's section as the whole-diff page first shows it: the first files
/// (within [`EAGER_FILES`] and [`EAGER_LINES`], sized by `numstat`) diffed, and `focus`; the
/// rest left to load when scrolled to. Also the `numstat` counts.
#[allow(clippy::too_many_arguments)]
async fn file_views<'c>(
    state: &crate::AppState,
    git: &GitRepo,
    base: &str,
    head: &str,
    changes: &'c [Change],
    opts: &Opts,
    focus: Option<&str>,
    commenting: bool,
) -> (HashMap<String, Option<(u64, u64)>>, Vec<FileView<'c>>) {
    let numstat = match git.line_counts(base, head).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot count a diff's changed lines");
            HashMap::new()
        }
    };
    // Which files are diffed now: the first ones, while within the line budget. Binary and
    // collapsed files cost nothing; a file named by `focus` (a form just posted there) always.
    let mut budget = 0u64;
    let mut stopped = false;
    let eager: Vec<bool> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let path = c.path.to_string.as_str();
            let lines = numstat.get(path).copied().flatten().map(|(a, r)| a + r);
            let cheap = matches!(numstat.get(path), Some(None)) || lines.is_some_and(|n| n > LARGE_FILE);
            let mut now = false;
            if !stopped && i < EAGER_FILES {
                if cheap {
                    now = true;
                } else if i == 0 || budget + lines.unwrap_or(0) <= EAGER_LINES {
                    budget += lines.unwrap_or(0);
                    now = true;
                } else {
                    stopped = true;
                }
            }
            now || focus == Some(path)
        })
        .collect();
    // Collected first: a stream over a borrowing closure trips the handler's `Send` check.
    let diffs: Vec<_> = changes
        .iter()
        .zip(eager)
        .map(|(c, now)| {
            let counts = numstat.get(&c.path.to_string).copied();
            async move { if now { file_body(state, git, base, head, c, opts, false, counts, commenting).await } else { (Body::Lazy, counts.flatten()) } }
        })
        .collect();
    let bodies: Vec<(Body, Option<(u64, u64)>)> = futures_util::stream::iter(diffs).buffered(PARALLEL_DIFFS).collect().await;
    let views = changes.iter().zip(bodies).map(|(change, (body, counts))| FileView { change, counts, body, opts: opts.clone() }).collect();
    (numstat, views)
}

// ---- diffs outside pull requests ----

/// A diff between two commits outside a pull request, in the pull request's look: a commit's
/// page (against its first parent) and the compare page (from where the branches part).
pub(crate) struct Plain<'a> {
    pub(crate) repo: &'a Repo,
    pub(crate) level: Permission,
    /// The page's URL without query, and the query pairs its links keep.
    pub(crate) url: String,
    pub(crate) url_pairs: Vec<(&'static str, String)>,
    /// The old side (`None`: a root commit, against the empty tree) and the new.
    pub(crate) from: Option<&'a str>,
    pub(crate) to: &'a str,
}

/// What [`plain`] made: the diff to put on the page, or (`?fragment=1`) a file's section for
/// the page script, to answer as it is.
pub(crate) enum Shown {
    Page(Markup),
    Fragment(axum::response::Response),
}

/// The diff `d` as the query asks (`view=split`, `whitespace=ignore-all`, `context=N`; one
/// file with `path=`, `show=1` for a collapsed one, `fragment=1` for the section alone): the
/// toolbar, the tree of changed files and each file, the first ones at once and the rest as
/// they are scrolled to, as on a pull request's diff but without comments.
pub(crate) async fn plain(w: &Web, d: Plain<'_>, q: &HashMap<String, String>) -> Result<Shown, WebError> {
    let git = GitRepo::new(&w.state, w.state.store.repo_path(d.repo));
    let base = match d.from {
        Some(f) => f.to_owned(),
        None => git.empty_tree().await.map_err(git_error)?,
    };
    let (changes, more) = git.changes(&base, d.to, MAX_FILES).await.map_err(git_error)?;
    let opts = Opts::parse(|k| q.get(k).cloned());
    let comments = Comments { all: Vec::new(), anchors: HashMap::new(), names: HashMap::new() };
    let path = q.get("path").map(|p| p.trim_matches('/')).filter(|p| !p.is_empty());
    let fragment = q.get("fragment").is_some_and(|f| f == "1");
    let p = Pr {
        w,
        repo: d.repo,
        pr: None,
        url: d.url.clone(),
        url_pairs: d.url_pairs.clone(),
        head: d.to,
        level: d.level,
        opts: opts.clone(),
        back_file: path.is_some() && (!fragment || q.get("back").is_some_and(|b| b == "file")),
        comments: &comments,
        annotations: &[],
    };
    if let Some(path) = path {
        let change = changes.iter().find(|c| c.path.to_string == path).ok_or(WebError::NotFound)?;
        let show = q.get("show").is_some_and(|s| s == "1");
        let (body, counts) = file_body(&w.state, &git, &base, d.to, change, &opts, show, None, false).await;
        let view = FileView { change, counts, body, opts: opts.clone() };
        let section = file_section(&p, &view, None);
        if fragment {
            return Ok(Shown::Fragment(html_response(StatusCode::OK, section)));
        }
        return Ok(Shown::Page(html! {
            div.pr-diff-page data-pr-diff data-single {
                (toolbar(&p, Some(path)))
                (section)
            }
        }));
    }
    let (numstat, views) = file_views(&w.state, &git, &base, d.to, &changes, &opts, None, false).await;
    Ok(Shown::Page(html! {
        div.pr-diff-page data-pr-diff {
            (toolbar(&p, None))
            @if changes.is_empty() {
                p.muted #no-changes { "No changes." }
            } @else {
                (file_list(&p, &changes, &numstat))
            }
            @if more { div.notice.warn { "Only the first " (MAX_FILES) " changed files are listed." } }
            div.pr-file-diffs {
                @for v in &views { (file_section(&p, v, None)) }
            }
        }
    }))
}

// ---- comment forms ----

/// `POST …/pull-requests/{id}/diff/comment`: `action` `add` (on a line with `line`,
/// `lineType`, `fileType`; on the file without them; a reply with `parent`), `edit` (`id`,
/// `version`, `text`) or `delete` (`id`, `version`). Success goes back to the diff at the
/// comment (post/redirect/get); a refusal shows the file again with the form, the text kept and
/// the reason.
pub(crate) async fn comment_post(w: Web, p: PrPath, form: Form) -> WebResult {
    let (key, slug, id) = seg(p)?;
    let n = number(&id)?;
    w.check_csrf(&form)?;
    let (repo, level) = repo_access(&w, &key, &slug).await?;
    let who = w.who().ok_or(WebError::Csrf)?;
    let actor = Actor { who: &who, level };
    let path = form.get("path").trim_matches('/').to_owned();
    let opts = Opts::parse(|k| Some(form.get(k).to_owned()).filter(|v| !v.is_empty()));
    let back_file = form.get("back") == "file";
    let text = form.get("text").to_owned();
    let id_field = |name: &str| form.get(name).parse::<i64>().map_err(|_| WebError::BadRequest(format!("the form's {name} is not a number")));
    let (target, result) = match form.get("action") {
        "" | "add" => {
            let parent = Some(form.get("parent")).filter(|p| !p.is_empty()).map(|_| id_field("parent")).transpose()?;
            let line = Some(form.get("line"))
                .filter(|l| !l.is_empty())
                .map(|l| l.parse::<u32>().ok().filter(|l| *l > 0))
                .map(|l| l.ok_or_else(|| WebError::BadRequest("the form's line is not a line number".into())));
            let line = line.transpose()?;
            let (line_type, file_type) = (form.get("lineType").to_ascii_uppercase(), form.get("fileType").to_ascii_uppercase());
            let target = match (parent, line) {
                (Some(p), _) => Target::Reply(p),
                (None, Some(l)) => Target::Line {
                    side: if file_type == "FROM" { Side::From } else { Side::To },
                    line: u64::from(l),
                    line_type: if line_type.is_empty() { "CONTEXT".into() } else { line_type.clone() },
                },
                (None, None) => Target::File,
            };
            let anchor = parent.is_none().then(|| Anchor {
                path: path.clone(),
                src_path: Some(form.get("srcPath").trim_matches('/').to_owned()).filter(|s| !s.is_empty() && *s != path),
                line,
                line_type: line.and(Some(line_type.clone()).filter(|t| !t.is_empty())),
                file_type: line.and(Some(file_type.clone()).filter(|t| !t.is_empty())),
                diff_type: "EFFECTIVE".into(),
                ..Anchor::default()
            });
            let ask = NewCommentAsk { text: text.clone(), parent, anchor, severity: "NORMAL".into() };
            let r = prs::add_comment(&w.state, &repo, &actor, n, ask).await.map(|c| Some(c.id));
            (target, r)
        }
        "edit" => {
            let (cid, version) = (id_field("id")?, id_field("version")?);
            let change = CommentChange { text: Some(text.clone()), ..CommentChange::default() };
            (Target::Edit(cid), prs::edit_comment(&w.state, &repo, &actor, n, cid, version, change).await.map(|c| Some(c.id)))
        }
        "delete" => {
            let (cid, version) = (id_field("id")?, id_field("version")?);
            (Target::Edit(cid), prs::delete_comment(&w.state, &repo, &actor, n, cid, version).await.map(|()| None))
        }
        other => return Err(WebError::BadRequest(format!("unknown action {other:?}"))),
    };
    let base = w.link(&format!("/projects/{}/repos/{}/pull-requests/{n}/diff", url_encode(&repo.owner.to_string()), repo.slug));
    let back = |extra: Vec<(&'static str, String)>, frag: String| {
        let mut pairs = Vec::new();
        if back_file {
            pairs.push(("path", path.clone()));
        }
        pairs.extend(opts.pairs());
        pairs.extend(extra);
        if !back_file && !path.is_empty() {
            pairs.push(("focus", path.clone()));
        }
        format!("{base}{}#{frag}", query(&pairs))
    };
    match result {
        Ok(Some(cid)) => Ok(see_other(&back(Vec::new(), format!("comment-{cid}")))),
        Ok(None) => Ok(see_other(&back(vec![("done", "deleted".into())], file_id(&path)))),
        Err(e) => {
            let (status, message) = shown_refusal(e)?;
            let pr = prs::get(&w.state, &repo, n).await.map_err(|_| WebError::NotFound)?;
            let is_delete = form.get("action") == "delete";
            let open = (!is_delete).then(|| Open { target, text, error: Some(message.clone()) });
            let note = is_delete.then(|| Notice::Err(format!("The comment was not deleted: {message}")));
            let ask = FileAsk { show: false, open, fragment: false, back_file: true };
            match one_file(&w, &repo, level, &pr, &path, opts, ask, note, status).await {
                Err(WebError::NotFound) => Err(WebError::BadRequest(message)),
                r => r,
            }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn file_ids_are_unique_per_path_and_safe_in_a_fragment() {
        assert_eq!(file_id("a.txt"), "f-a.txt");
        assert_eq!(file_id("src/lib.rs"), "f-src_2Flib.rs");
        assert_eq!(file_id("a_b"), "f-a_5Fb");
        assert_ne!(file_id("a/b"), file_id("a_2Fb"));
        assert_eq!(line_id("f-a.txt", (Side::To, 12)), "f-a.txt-T12");
    }

    #[test]
    fn comment_targets_parse_only_sides_lines_and_types() {
        assert_eq!(parse_target("TO:12:ADDED"), Some(Target::Line { side: Side::To, line: 12, line_type: "ADDED".into() }));
        assert_eq!(parse_target("FROM:3:REMOVED"), Some(Target::Line { side: Side::From, line: 3, line_type: "REMOVED".into() }));
        assert_eq!(parse_target("FILE"), Some(Target::File));
        for bad in ["TO:0:ADDED", "TO:x:ADDED", "SIDE:1:ADDED", "TO:1:MOVED", "TO:1:ADDED:x", "TO:1", ""] {
            assert_eq!(parse_target(bad), None, "{bad}");
        }
    }

    #[test]
    fn view_options_keep_only_what_differs_from_the_default() {
        let q = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Opts::parse(|k| m.get(k).cloned())
        };
        assert_eq!(q(&[]).pairs(), vec![]);
        assert_eq!(q(&[("context", "10")]).context, None, "the default is not repeated in links");
        assert_eq!(q(&[("context", "999999")]).context, Some(WHOLE_FILE));
        assert_eq!(q(&[("context", "-3")]).context, None);
        let o = q(&[("view", "split"), ("whitespace", "ignore-all"), ("context", "3")]);
        assert_eq!(query(&o.pairs()), "?view=split&whitespace=ignore-all&context=3");
        assert!(!o.is_commentable_diff());
        assert!(q(&[("view", "split")]).is_commentable_diff());
    }

    #[test]
    fn anchors_name_the_side_their_line_number_counts_on() {
        let a = |ft: Option<&str>, lt: &str| Anchor {
            path: "x".into(),
            line: Some(4),
            line_type: Some(lt.into()),
            file_type: ft.map(str::to_owned),
            ..Anchor::default()
        };
        assert_eq!(anchor_key(&a(Some("TO"), "ADDED")), Some((Side::To, 4)));
        assert_eq!(anchor_key(&a(Some("FROM"), "CONTEXT")), Some((Side::From, 4)));
        assert_eq!(anchor_key(&a(None, "REMOVED")), Some((Side::From, 4)));
        assert_eq!(anchor_key(&Anchor { path: "x".into(), ..Anchor::default() }), None);
    }

    #[test]
    fn side_by_side_pairs_removed_lines_with_the_added_lines_after_them() {
        use crate::pr_git::{Hunk, Line, Segment};
        let line = |s, d, t: &str| Line { source: s, destination: d, line: t.into(), truncated: false };
        let seg = |kind, lines| Segment { kind, truncated: false, lines };
        let h = Hunk {
            source_line: 1,
            source_span: 4,
            destination_line: 1,
            destination_span: 4,
            truncated: false,
            segments: vec![
                seg(SegmentType::Context, vec![line(1, 1, "a")]),
                seg(SegmentType::Removed, vec![line(2, 2, "b"), line(3, 2, "c")]),
                seg(SegmentType::Added, vec![line(4, 2, "B")]),
                seg(SegmentType::Added, vec![line(4, 3, "late")]),
            ],
        };
        let rows = split_rows(&h, None);
        let shape: Vec<(Option<&str>, Option<&str>)> = rows.iter().map(|(l, r)| (l.map(|l| l.text), r.map(|r| r.text))).collect();
        assert_eq!(shape, vec![(Some("a"), Some("a")), (Some("b"), Some("B")), (Some("c"), None), (None, Some("late"))]);
    }
}
