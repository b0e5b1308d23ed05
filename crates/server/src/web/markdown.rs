//! README rendering: CommonMark (with tables, strikethrough and task lists) to HTML, with raw
//! HTML shown as text and links limited to safe schemes, so a README cannot run script.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};

/// Renders Markdown to HTML that is safe to embed in our pages.
pub(crate) fn render(md: &str) -> String {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(md, opts).map(|ev| match ev {
        // No raw HTML passthrough: it becomes visible text, escaped by push_html.
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => Event::Start(Tag::Link { link_type, dest_url: safe_url(dest_url), title, id }),
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => Event::Start(Tag::Image { link_type, dest_url: safe_url(dest_url), title, id }),
        e => e,
    });
    let mut out = String::with_capacity(md.len() * 3 / 2);
    html::push_html(&mut out, events);
    out
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
}
