//! README rendering: CommonMark (with tables, strikethrough and task lists) to HTML, with raw
//! HTML shown as text and links limited to safe schemes, so a README cannot run script.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};

/// Renders Markdown to HTML that is safe to embed in our pages.
pub(crate) fn render(md: &str) -> String {
    render_in(md, None)
}

/// Where a file in a repository lives, so that the relative links and images of its Markdown
/// resolve as they do on disk (against the file's folder), not against the page's URL.
pub(crate) struct FileBase<'a> {
    /// The repository's browse URL (`/projects/TP/repos/test/browse`).
    pub(crate) browse: &'a str,
    /// The repository's raw URL (`/projects/TP/repos/test/raw`).
    pub(crate) raw: &'a str,
    /// The Markdown file's folder in the repository (`docs/guide`, empty at the root).
    pub(crate) dir: &'a str,
    /// `?at=…` of the revision shown, or empty.
    pub(crate) at_query: &'a str,
}

/// [`render`], with relative links going to the browse view of what they name and relative
/// images to its raw content, both at the revision shown.
pub(crate) fn render_in(md: &str, base: Option<&FileBase<'_>>) -> String {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(md, opts).map(|ev| match ev {
        // No raw HTML passthrough: it becomes visible text, escaped by push_html.
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            let dest_url = resolve(safe_url(dest_url), base, false);
            Event::Start(Tag::Link { link_type, dest_url, title, id })
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            let dest_url = resolve(safe_url(dest_url), base, true);
            Event::Start(Tag::Image { link_type, dest_url, title, id })
        }
        e => e,
    });
    let mut out = String::with_capacity(md.len() * 3 / 2);
    html::push_html(&mut out, events);
    out
}

/// A relative URL (`docs/a.md`, `../img/x.png#top`) against `base`: the path joined to the
/// file's folder (`.` and `..` followed, never above the repository's root), then the browse or
/// raw URL of it at the revision shown, its fragment kept. Absolute URLs, `/paths`, `#anchors`
/// and `?queries` are left as they are.
fn resolve<'a>(url: CowStr<'a>, base: Option<&FileBase<'_>>, image: bool) -> CowStr<'a> {
    let Some(base) = base else { return url };
    let u: &str = &url;
    let has_scheme = u.find(':').is_some_and(|i| u[..i].chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) && i > 0);
    if u.is_empty() || has_scheme || u.starts_with(['/', '#', '?']) {
        return url;
    }
    let (rest, fragment) = match u.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (u, None),
    };
    let rest = rest.split_once('?').map_or(rest, |(p, _)| p);
    let mut parts: Vec<String> = base.dir.split('/').filter(|c| !c.is_empty()).map(str::to_owned).collect();
    for c in percent_decode(rest).split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c.to_owned()),
        }
    }
    let path = super::url_encode(&parts.join("/"));
    let root = if image { base.raw } else { base.browse };
    let mut out = if path.is_empty() { format!("{root}{}", base.at_query) } else { format!("{root}/{path}{}", base.at_query) };
    if let Some(f) = fragment.filter(|_| !image) {
        out.push('#');
        out.push_str(f);
    }
    CowStr::Boxed(out.into_boxed_str())
}

/// `%20` and the like decoded (as UTF-8, lossily); a `%` not followed by two hex digits stays.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = ((b[i + 1] as char).to_digit(16), (b[i + 2] as char).to_digit(16))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Keeps relative URLs and `http`, `https`, `mailto`; anything else (`javascript:`, `data:`,
/// `vbscript:`) becomes `#`. Browsers ignore whitespace and control characters inside a scheme
/// (`java\tscript:`), so those are dropped before looking.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let squeezed: String = url.chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect();
    let scheme_end = squeezed.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')));
    match scheme_end {
        Some(i) if squeezed[i..].starts_with(':') && i > 0 => {
            let scheme = squeezed[..i].to_ascii_lowercase();
            if matches!(scheme.as_str(), "http" | "https" | "mailto") { url } else { CowStr::Borrowed("#") }
        }
        _ => url,
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn markdown_renders_without_raw_html_or_script_urls() {
        let cases = [
            ("# Title\n\nSome *text*.", "<h1>Title</h1>"),
            ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            ("a <img src=x onerror=alert(1)> b", "&lt;img src=x onerror=alert(1)&gt;"),
            ("[x](javascript:alert(1))", "href=\"#\""),
            ("[x](JaVaScRiPt:alert(1))", "href=\"#\""),
            ("[x](<java\tscript:alert(1)>)", "href=\"#\""),
            ("[x](<java script:alert(1)>)", "href=\"#\""),
            ("![i](data:text/html;base64,xx)", "src=\"#\""),
            ("[ok](https://example.com/a)", "href=\"https://example.com/a\""),
            ("[rel](docs/a.md)", "href=\"docs/a.md\""),
            ("| a | b |\n|---|---|\n| 1 | 2 |", "<table>"),
        ];
        for (md, want) in cases {
            let out = render(md);
            assert!(out.contains(want), "{md:?} rendered as {out}");
            assert!(!out.contains("<script") && !out.contains("<img src=x"), "{md:?} rendered as {out}");
        }
    }

    #[test]
    fn relative_links_and_images_resolve_against_the_files_folder_at_the_revision_shown() {
        let at = "?at=refs%2Fheads%2Fmain";
        let sub = super::FileBase { browse: "/p/browse", raw: "/p/raw", dir: "docs/guide", at_query: at };
        let root = super::FileBase { dir: "", ..super::FileBase { browse: "/p/browse", raw: "/p/raw", dir: "", at_query: at } };
        let cases: [(&super::FileBase<'_>, &str, &str); 12] = [
            (&sub, "[a](a.md)", "href=\"/p/browse/docs/guide/a.md?at=refs%2Fheads%2Fmain\""),
            (&sub, "[a](./a.md#install)", "href=\"/p/browse/docs/guide/a.md?at=refs%2Fheads%2Fmain#install\""),
            (&sub, "[up](../../README.md)", "href=\"/p/browse/README.md?at=refs%2Fheads%2Fmain\""),
            (&sub, "[far](../../../../x.md)", "href=\"/p/browse/x.md?at=refs%2Fheads%2Fmain\""),
            (&sub, "![logo](img/logo.png)", "src=\"/p/raw/docs/guide/img/logo.png?at=refs%2Fheads%2Fmain\""),
            (&sub, "[sp](my%20file.md)", "href=\"/p/browse/docs/guide/my%20file.md?at=refs%2Fheads%2Fmain\""),
            (&root, "[d](docs/)", "href=\"/p/browse/docs?at=refs%2Fheads%2Fmain\""),
            (&root, "[top](.)", "href=\"/p/browse?at=refs%2Fheads%2Fmain\""),
            (&sub, "[abs](/projects/X)", "href=\"/projects/X\""),
            (&sub, "[here](#usage)", "href=\"#usage\""),
            (&sub, "[web](https://example.com/a.md)", "href=\"https://example.com/a.md\""),
            (&sub, "[bad](javascript:alert(1))", "href=\"#\""),
        ];
        for (base, md, want) in cases {
            let out = super::render_in(md, Some(base));
            assert!(out.contains(want), "{md:?} in {:?} rendered as {out}", base.dir);
        }
    }
}
