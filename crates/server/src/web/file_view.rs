//! One file of a repository at a revision (`…/browse/{path}`): highlighted source with line
//! anchors (`#L10`, `#L10-20`), Markdown rendered (with a source toggle), images previewed, and
//! the links Raw, Blame, History and Permalink; and its blame (`?blame=true`), grouped by commit.
//!
//! The source is one `div.l` per line (its number drawn by the style sheet from `data-n`, so
//! copying the code copies no numbers), in blocks of [`BLOCK`] lines that the browser lays out
//! only when scrolled to (`content-visibility: auto`): a 5,000-line file is a page the browser
//! shows at once, not a 20,000-cell table.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex};

use maud::{Markup, PreEscaped, html};
use trove_store::Repo;

use super::highlight::{self, Lines};
use super::repo::{at_query, human_size, repo_link};
use super::{Web, WebError, markdown, url_encode};
use crate::repo_read::{BlameSpan, ReadError, Reader, Resolved};

/// Files larger than this are offered as a raw download instead of being shown. Default 1 MiB.
pub(crate) const VIEW_LIMIT: u64 = 1 << 20;
/// Lines per block of the source view (see the module's comment).
const BLOCK: usize = 200;

/// The file view's and blame's look (served after the main style sheet).
pub(crate) const CSS: &str = r#"
.file-head{flex-wrap:wrap;gap:6px 14px;align-items:center}.file-head .file-links{display:flex;gap:12px;flex-wrap:wrap}.badge.lang{font-weight:400}
.src{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px;line-height:18px;overflow-x:auto;background:#fff;padding:4px 0}
.src:focus-visible{outline:2px solid #4c9aff;outline-offset:-2px}
.src .blk{content-visibility:auto;contain-intrinsic-block-size:auto 3600px;min-width:max-content}
.src .l{white-space:pre;min-height:18px;padding-right:12px}
.src .l::before{content:attr(data-n);display:inline-block;position:sticky;left:0;width:58px;padding-right:8px;margin-right:10px;text-align:right;color:#505f79;background:#fafbfc;border-right:1px solid #ebecf0;cursor:pointer;user-select:none}
.src .l.sel{background:#fffae6}.src .l.sel::before{background:#fff0b3;color:#172b4d}
.image-preview{padding:16px;text-align:center;background:#fafbfc}.image-preview img{max-width:100%;height:auto}
.readme.rendered{border:0;border-radius:0}.readme.rendered a,#history-of a,.blame .bi a{text-decoration:underline}
.blame .bg{display:flex;min-width:max-content;border-top:1px solid #ebecf0}.blame .bg:first-child{border-top:0}
.blame .bi{flex:none;width:340px;position:sticky;left:0;z-index:1;background:#fafbfc;padding:0 8px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;border-right:1px solid #dfe1e6;font:12px/18px -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif}
.blame .bi .who{color:#172b4d}.blame .bi .when{color:#505f79}.blame .bi a.msg{color:#172b4d}
.blame .bc{flex:1}.blame .l::before{position:static}
@media (max-width:600px){.blame .bi{width:150px}.src .l::before{width:42px}}
"#;

/// What the file view needs of the page around it.
pub(crate) struct At<'a> {
    pub(crate) w: &'a Web,
    pub(crate) repo: &'a Repo,
    pub(crate) g: &'a Reader,
    pub(crate) at: &'a Resolved,
    pub(crate) path: &'a str,
}

impl At<'_> {
    fn browse(&self) -> String {
        repo_link(self.w, self.repo, &format!("/browse/{}", url_encode(self.path)))
    }

    fn raw(&self) -> String {
        format!("{}/{}{}", repo_link(self.w, self.repo, "/raw"), url_encode(self.path), at_query(self.at))
    }

    /// The file's history: the commits that changed it, followed across renames.
    fn history(&self) -> String {
        format!("{}?path={}&until={}", repo_link(self.w, self.repo, "/commits"), url_encode(self.path), url_encode(&self.at.at))
    }
}

/// What kind of file it is, by its extension: images are previewed, Markdown rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Image,
    Markdown,
    Other,
}

pub(crate) fn kind_of(path: &str) -> Kind {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" | "jpg" | "jpeg" | "gif" | "webp" | "svg" => Kind::Image,
        "md" | "markdown" => Kind::Markdown,
        _ => Kind::Other,
    }
}

/// The source lines as blocks of `div.l` (`id="L{n}"`); `lines` is each line's HTML.
pub(crate) fn source(lines: &[String]) -> PreEscaped<String> {
    let bytes: usize = lines.iter().map(|l| l.len() + 40).sum();
    let mut out = String::with_capacity(bytes + 64);
    // Focusable, so that the keyboard can scroll a long line into view (WCAG 2.1.1).
    out.push_str("<div class=\"src hl\" data-lines tabindex=0 role=region aria-label=\"Source\">");
    for (b, block) in lines.chunks(BLOCK).enumerate() {
        out.push_str(if block.len() == BLOCK { "<div class=blk>" } else { "<div class=\"blk last\">" });
        for (i, l) in block.iter().enumerate() {
            let n = b * BLOCK + i + 1;
            let _ = write!(out, "<div class=l id=L{n} data-n={n}>{l}</div>");
        }
        out.push_str("</div>");
    }
    out.push_str("</div>");
    PreEscaped(out)
}

/// The text of the blob, or `None` for a binary one (a NUL in its first 8,000 bytes, as git
/// decides).
fn as_text(data: Vec<u8>) -> Option<String> {
    (!data[..data.len().min(8000)].contains(&0)).then(|| String::from_utf8(data).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// The file's lines: highlighted from the cache by blob id, else read and highlighted on the
/// blocking pool within [`highlight::WAIT`] (else plain this time, and `true`: highlighting is
/// on its way). `None`: binary, or too large to show.
async fn lines_of(a: &At<'_>, blob: &str, size: u64) -> Result<Option<(Arc<Lines>, bool)>, WebError> {
    let key = highlight::blob_key(blob, a.path);
    if let Some(l) = highlight::cached(&key) {
        return Ok(Some((l, false)));
    }
    if size > VIEW_LIMIT {
        return Ok(None);
    }
    let Some(text) = a.g.blob(&a.at.commit, a.path).await?.and_then(as_text) else { return Ok(None) };
    let text = Arc::new(text);
    let (t, path) = (text.clone(), a.path.to_owned());
    match highlight::within_wait(&a.w.state, key, move || highlight::highlight(&path, &t)).await {
        Some(l) => Ok(Some((l, false))),
        None => Ok(Some((Arc::new(highlight::plain_lines(&text)), true))),
    }
}

/// Said above code shown plain while its highlighting is being computed.
fn pending_note() -> Markup {
    html! { p.muted.small.padded #highlight-pending role="status" { "Highlighting this file is taking a moment; it is shown plain until it is ready (reload to see it)." } }
}

/// The bar above a file: its path and size, its language, the view toggles and links.
fn file_head(a: &At<'_>, size: u64, language: Option<&str>, toggle: Markup, blame: bool) -> Markup {
    let permalink = format!("{}?at={}", a.browse(), a.at.commit);
    html! {
        div.head.file-head {
            span.mono.file-name { (a.path) " " span.muted { "(" (human_size(size)) ")" } @if let Some(l) = language { " " span.badge.lang { (l) } } }
            nav.file-links aria-label="File" {
                (toggle)
                a #file-raw href=(a.raw()) { "Raw" }
                @if blame { a #file-source href={ (a.browse()) (at_query(a.at)) } { "Source" } }
                @else { a #file-blame href={ (a.browse()) (at_query(a.at)) "&blame=true" } { "Blame" } }
                a #file-history href=(a.history()) { "History" }
                a #file-permalink href=(permalink) title={ "This file at commit " (a.at.commit) } { "Permalink" }
            }
        }
    }
}

/// `GET …/browse/{path}` of a file: highlighted source, rendered Markdown (`?view=source` for
/// its source), an image, or a download link.
pub(crate) async fn file(a: &At<'_>, q: &HashMap<String, String>) -> Result<Markup, WebError> {
    let blob = a.g.blob_id(&a.at.commit, a.path).await?.ok_or(WebError::NotFound)?;
    let size = a.g.blob_size(&a.at.commit, a.path).await?.unwrap_or(0);
    let kind = kind_of(a.path);
    let here = format!("{}{}", a.browse(), at_query(a.at));
    if kind == Kind::Image {
        return Ok(html! {
            div.codebox #file {
                (file_head(a, size, None, html! {}, false))
                div.image-preview { img #image-preview src=(a.raw()) alt=(a.path); }
            }
        });
    }
    let source_view = q.get("view").is_some_and(|v| v == "source");
    if kind == Kind::Markdown && !source_view && size <= VIEW_LIMIT {
        let text = a.g.blob(&a.at.commit, a.path).await?.and_then(as_text);
        if let Some(text) = text {
            let raw = repo_link(a.w, a.repo, "/raw");
            let browse = repo_link(a.w, a.repo, "/browse");
            let at_q = at_query(a.at);
            let dir = a.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let base = markdown::FileBase { browse: &browse, raw: &raw, dir, at_query: &at_q };
            let rendered = markdown::render_in(&text, Some(&base));
            let toggle = html! { a #view-source href={ (here) "&view=source" } { "Source" } };
            return Ok(html! {
                div.codebox #file {
                    (file_head(a, size, Some("Markdown"), toggle, false))
                    div.readme.rendered #rendered { (PreEscaped(rendered)) }
                }
            });
        }
    }
    let toggle = if kind == Kind::Markdown {
        html! { a #view-rendered href=(here) { "Rendered" } }
    } else {
        html! {}
    };
    let lines = lines_of(a, &blob, size).await?;
    Ok(html! {
        div.codebox #file {
            (file_head(a, size, lines.as_ref().and_then(|(l, _)| l.language), toggle, false))
            @match &lines {
                Some((l, _)) if l.html.is_empty() => p.muted.padded { "This file is empty." },
                Some((l, pending)) => { @if *pending { (pending_note()) } (source(&l.html)) },
                None => p.muted.padded { "This file is binary or too large to show. " a href=(a.raw()) { "Download it" } "." },
            }
        }
    })
}

/// Blame of one file at one commit, kept while the server runs: a commit's blame never
/// changes. Bounded by entries; each is a few kilobytes per hundred lines.
/// Blames by `commit\0path`, and the keys oldest first.
type BlameCache = (HashMap<String, Arc<Vec<BlameSpan>>>, Vec<String>);
static BLAME_CACHE: LazyLock<Mutex<BlameCache>> = LazyLock::new(|| Mutex::new((HashMap::new(), Vec::new())));
const BLAME_CACHE_ENTRIES: usize = 64;

async fn blame_spans(a: &At<'_>) -> Result<Option<Arc<Vec<BlameSpan>>>, ReadError> {
    let key = format!("{}\0{}", a.at.commit, a.path);
    if let Some(s) = BLAME_CACHE.lock().unwrap_or_else(|e| e.into_inner()).0.get(&key) {
        return Ok(Some(s.clone()));
    }
    let Some(spans) = a.g.blame_file(&a.at.commit, a.path).await? else { return Ok(None) };
    let spans = Arc::new(spans);
    let mut c = BLAME_CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if c.0.insert(key.clone(), spans.clone()).is_none() {
        c.1.push(key);
        if c.1.len() > BLAME_CACHE_ENTRIES {
            let old = c.1.remove(0);
            c.0.remove(&old);
        }
    }
    Ok(Some(spans))
}

/// "3 days ago" for Unix time `t` seen at `now`.
pub(crate) fn relative(t: i64, now: i64) -> String {
    let d = (now - t).max(0);
    let (n, unit) = match d {
        0..60 => return "just now".into(),
        60..3600 => (d / 60, "minute"),
        3600..86_400 => (d / 3600, "hour"),
        86_400..2_592_000 => (d / 86_400, "day"),
        2_592_000..31_536_000 => (d / 2_592_000, "month"),
        _ => (d / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// Consecutive spans of one commit as one group: (first line, line count, span).
fn groups(spans: &[BlameSpan]) -> Vec<(u64, u64, &BlameSpan)> {
    let mut out: Vec<(u64, u64, &BlameSpan)> = Vec::new();
    let mut sorted: Vec<&BlameSpan> = spans.iter().collect();
    sorted.sort_by_key(|s| s.line);
    for s in sorted {
        match out.last_mut() {
            Some((first, count, g)) if g.commit == s.commit && *first + *count == s.line => *count += s.lines,
            _ => out.push((s.line, s.lines, s)),
        }
    }
    out
}

/// `GET …/browse/{path}?blame=true` (also `?at=…&blame`): who last changed each line, grouped
/// by commit, beside the highlighted source.
pub(crate) async fn blame(a: &At<'_>) -> Result<Markup, WebError> {
    let blob = a.g.blob_id(&a.at.commit, a.path).await?.ok_or(WebError::NotFound)?;
    let size = a.g.blob_size(&a.at.commit, a.path).await?.unwrap_or(0);
    let Some((lines, pending)) = lines_of(a, &blob, size).await? else {
        return Ok(html! {
            div.codebox #file {
                (file_head(a, size, None, html! {}, true))
                p.muted.padded { "This file is binary or too large to blame here. " a href=(a.raw()) { "Download it" } "." }
            }
        });
    };
    let spans = blame_spans(a).await?.ok_or(WebError::NotFound)?;
    let commits = repo_link(a.w, a.repo, "/commits");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut out = String::with_capacity(lines.html.iter().map(|l| l.len() + 40).sum::<usize>() + spans.len() * 300);
    out.push_str("<div class=\"blame src hl\" data-lines tabindex=0 role=region aria-label=\"Blame\">");
    // Groups in blocks of at least BLOCK lines, laid out only when scrolled to, as the source.
    let mut in_block = 0usize;
    out.push_str("<div class=blk>");
    for (first, count, s) in groups(&spans) {
        if in_block >= BLOCK {
            out.push_str("</div><div class=blk>");
            in_block = 0;
        }
        in_block += count as usize;
        let short = &s.commit[..12.min(s.commit.len())];
        let link = format!("{commits}/{}", s.commit);
        let info = html! {
            div.bi {
                a.sha href=(link) { (short) } " "
                span.who { (s.author_name) } " "
                span.when title=(super::view::utc(s.author_time)) { (relative(s.author_time, now)) } " "
                a.msg href=(link) title=(s.summary) { (s.summary) }
            }
        };
        out.push_str("<div class=bg>");
        out.push_str(&info.into_string());
        out.push_str("<div class=bc>");
        for n in first..first + count {
            let text = lines.html.get(n as usize - 1).map(String::as_str).unwrap_or("");
            let _ = write!(out, "<div class=l id=L{n} data-n={n}>{text}</div>");
        }
        out.push_str("</div></div>");
    }
    out.push_str("</div></div>");
    Ok(html! {
        div.codebox #file.blame-box {
            (file_head(a, size, lines.language, html! {}, true))
            @if pending { (pending_note()) }
            (PreEscaped(out))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dates_read_as_people_say_them() {
        let now = 1_800_000_000;
        for (ago, want) in [
            (5, "just now"),
            (60, "1 minute ago"),
            (7200, "2 hours ago"),
            (86_400 * 3, "3 days ago"),
            (86_400 * 65, "2 months ago"),
            (86_400 * 800, "2 years ago"),
        ] {
            assert_eq!(relative(now - ago, now), want);
        }
        assert_eq!(relative(now + 100, now), "just now", "a clock ahead is not the future");
    }

    #[test]
    fn files_are_images_markdown_or_source_by_extension() {
        for (p, k) in [
            ("a/b.PNG", Kind::Image),
            ("x.svg", Kind::Image),
            ("w.webp", Kind::Image),
            ("docs/guide.md", Kind::Markdown),
            ("a.rs", Kind::Other),
            ("png", Kind::Other),
        ] {
            assert_eq!(kind_of(p), k, "{p}");
        }
    }

    #[test]
    fn source_lines_carry_their_anchor_and_number_in_blocks() {
        let lines: Vec<String> = (1..=BLOCK + 1).map(|i| format!("line {i}")).collect();
        let html = source(&lines).into_string();
        assert!(html.contains("<div class=l id=L1 data-n=1>line 1</div>"));
        assert!(html.contains(&format!("<div class=\"blk last\"><div class=l id=L{n} data-n={n}>line {n}</div></div>", n = BLOCK + 1)));
        assert_eq!(html.matches("class=blk>").count(), 1);
    }

    #[test]
    fn blame_spans_of_one_commit_in_a_row_are_one_group() {
        let span = |c: &str, line, lines| BlameSpan {
            commit: c.into(),
            line,
            lines,
            author_name: String::new(),
            author_email: String::new(),
            author_time: 0,
            committer_name: String::new(),
            committer_email: String::new(),
            committer_time: 0,
            file_name: String::new(),
            summary: String::new(),
        };
        let spans = [span("a", 1, 2), span("a", 3, 1), span("b", 4, 1), span("a", 5, 2)];
        let g: Vec<(u64, u64, &str)> = groups(&spans).into_iter().map(|(f, n, s)| (f, n, s.commit.as_str())).collect();
        assert_eq!(g, [(1, 3, "a"), (4, 1, "b"), (5, 2, "a")]);
    }
}

#[cfg(test)]
#[path = "file_view_tests.rs"]
mod handler_tests;
