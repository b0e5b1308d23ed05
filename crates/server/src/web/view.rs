//! The look shared by every page: the layout, the style sheet and the one small script (copy
//! buttons, auto-submitting selects), all served by us so pages need no network.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use maud::{DOCTYPE, Markup, html};

use trove_store::{Session, User};

use super::Web;

// The branches, tags, commit list and picker rules are in `refs.css` (web/refs.rs, commit_list.rs).
const CSS: &str = concat!(
    r#"
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif;color:#172b4d;background:#f4f5f7}
a{color:#0052cc;text-decoration:none}a:hover{text-decoration:underline}
header.top{background:#0747a6;color:#fff;display:flex;align-items:center;gap:18px;padding:0 20px;height:48px}
header.top a{color:#fff}header.top .brand{font-weight:700;font-size:17px;letter-spacing:.3px}
header.top nav{display:flex;gap:14px;flex:1}header.top .me{display:flex;gap:12px;align-items:center}
header.top form{margin:0}header.top button{background:none;border:1px solid #ffffff80;color:#fff;border-radius:3px;padding:3px 10px;cursor:pointer}
main{max-width:1100px;margin:20px auto;padding:0 20px}
h1{font-size:22px;margin:8px 0 16px}h2{font-size:17px;margin:22px 0 10px}
.crumbs{color:#5e6c84;margin-bottom:4px}.crumbs a{color:#5e6c84}
.card{background:#fff;border:1px solid #dfe1e6;border-radius:4px;padding:16px;margin-bottom:16px}
table.list{width:100%;border-collapse:collapse;background:#fff;border:1px solid #dfe1e6;border-radius:4px}
table.list th,table.list td{padding:7px 10px;border-bottom:1px solid #ebecf0;text-align:left;vertical-align:middle}
table.list th{background:#fafbfc;color:#5e6c84;font-weight:600;font-size:12px;text-transform:uppercase}
table.list tr:last-child td{border-bottom:none}
.badge{display:inline-block;font-size:11px;padding:1px 6px;border-radius:3px;background:#dfe1e6;color:#42526e;font-weight:600}
.badge.public{background:#e3fcef;color:#006644}.badge.admin{background:#eae6ff;color:#403294}.badge.off{background:#ffebe6;color:#bf2600}
form.inline{display:inline-flex;gap:6px;align-items:center;margin:0}
input[type=text],input[type=password],input[type=url],select{font:inherit;padding:5px 8px;border:1px solid #c1c7d0;border-radius:3px;background:#fff}
input[type=text]:focus,input[type=password]:focus,input[type=url]:focus{outline:2px solid #4c9aff;border-color:#4c9aff}
button,.button{font:inherit;background:#0052cc;color:#fff;border:0;border-radius:3px;padding:6px 12px;cursor:pointer}
button.secondary{background:#ebecf0;color:#42526e}button.danger{background:#de350b}
button:disabled{opacity:.45;cursor:wait}
.field{margin-bottom:12px}.field label{display:block;font-weight:600;margin-bottom:4px}.field .help{color:#5e6c84;font-size:12px;margin-top:3px}
.field input[type=text],.field input[type=password],.field input[type=url]{width:100%;max-width:460px}
.notice{padding:10px 14px;border-radius:4px;margin-bottom:14px}.notice.ok{background:#e3fcef;border:1px solid #79f2c0}.notice.err{background:#ffebe6;border:1px solid #ff8f73}
.notice.warn{background:#fffae6;border:1px solid #ffe380}
.clone{display:flex;gap:6px;align-items:center;margin:6px 0 14px}.clone input{flex:1;font-family:monospace}
.repo-bar{display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin-bottom:12px}
.tabs{display:flex;gap:2px;margin-bottom:14px;border-bottom:2px solid #dfe1e6}.tabs a{padding:6px 12px;color:#42526e}.tabs a.on{border-bottom:2px solid #0052cc;margin-bottom:-2px;color:#0052cc;font-weight:600}
code,pre,.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
table.code{border-collapse:collapse;width:100%;background:#fff;font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
table.code td{padding:0 10px;white-space:pre;vertical-align:top}
table.code td.ln{width:1%;text-align:right;color:#5e6c84;user-select:none;border-right:1px solid #ebecf0}table.code td.ln a{color:#5e6c84}
.codebox{border:1px solid #dfe1e6;border-radius:4px;overflow:auto;background:#fff}
.codebox .head{background:#fafbfc;border-bottom:1px solid #dfe1e6;padding:6px 10px;display:flex;justify-content:space-between}
tr.add td{background:#e3fcef}tr.del td{background:#ffebe6}tr.hunk td{background:#deebff;color:#42526e}
.readme{background:#fff;border:1px solid #dfe1e6;border-radius:4px;padding:6px 24px}
.readme pre{background:#f4f5f7;padding:10px;overflow:auto}.readme img{max-width:100%}
.readme table{border-collapse:collapse}.readme td,.readme th{border:1px solid #dfe1e6;padding:4px 8px}
.muted{color:#5e6c84}.sha{font-family:monospace;font-size:12px}
.small{font-size:12px}textarea{font:inherit;width:100%;padding:6px 8px;border:1px solid #c1c7d0;border-radius:3px;background:#fff}
textarea:focus{outline:2px solid #4c9aff;border-color:#4c9aff}details>summary{cursor:pointer;color:#0052cc}
.field-error{color:#bf2600;font-size:12.5px;margin-top:3px}.field label.plain,.field label.reviewer-choice{display:block;font-weight:400}
.ref{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px;background:#f4f5f7;border:1px solid #dfe1e6;border-radius:3px;padding:0 5px}
.badge.state-open{background:#deebff;color:#0747a6}.badge.state-merged{background:#e3fcef;color:#006644}.badge.state-declined{background:#ffebe6;color:#bf2600}
.badge.status-approved{background:#e3fcef;color:#006644}.badge.status-needs-work{background:#fffae6;color:#974f0c}.badge.task{background:#fffae6;color:#974f0c}
span.reviewer{display:inline-block;margin:0 8px 2px 0}span.reviewer.status-approved::after{content:" \2713";color:#006644}span.reviewer.status-needs-work::after{content:" \2717";color:#974f0c}
.pr-filter{display:flex;gap:2px}.pr-filter a{padding:4px 10px;border-radius:3px;color:#42526e}.pr-filter a.on{background:#deebff;color:#0747a6;font-weight:600}
.repo-bar .button{margin-left:auto}.pr-head h2{margin:6px 0}.pr-head p{margin:0 0 10px}
.pr-layout{display:grid;grid-template-columns:minmax(0,1fr) 300px;gap:16px;align-items:start}.pr-side .card h3{margin:0 0 8px;font-size:14px}.pr-side h3.spaced{margin-top:12px}
@media (max-width:820px){.pr-layout{grid-template-columns:1fr}}
ul.people{list-style:none;margin:0;padding:0}ul.people li{margin-bottom:4px}ul.vetoes{padding-left:18px;margin:6px 0 10px}ul.vetoes li{margin-bottom:6px}
ol.activity{list-style:none;margin:0 0 16px;padding:0}ol.activity>li{border-left:2px solid #dfe1e6;padding:6px 0 6px 14px;margin-left:6px}
.comment{background:#fff;border:1px solid #dfe1e6;border-radius:4px;padding:8px 12px;margin:6px 0}.comment .replies{margin-left:18px}
.comment-head{display:flex;gap:8px;align-items:baseline;flex-wrap:wrap}.comment-actions{display:flex;gap:12px;align-items:flex-start;flex-wrap:wrap}.comment-actions form{margin-top:6px}
.md p:first-child{margin-top:0}.md p:last-child{margin-bottom:0}.md pre{background:#f4f5f7;padding:8px;overflow:auto}.md img{max-width:100%}
.branch-pickers{display:flex;gap:12px;align-items:flex-end;flex-wrap:wrap;margin-bottom:12px}.branch-pickers .field{margin-bottom:0}.branch-pickers .arrow{padding-bottom:6px}
button.link{background:none;color:#0052cc;padding:0 4px;font-size:12px}#add-reviewer-form{margin-top:8px}#add-reviewer-form input{width:150px}
fieldset.reviewers{border:1px solid #dfe1e6;border-radius:4px;max-height:240px;overflow:auto}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:12px}
.grid .card{margin:0}.grid .card h3{margin:0 0 4px;font-size:15px}
.secret{font-family:monospace;background:#fffae6;padding:8px;border:1px dashed #ff991f;word-break:break-all}
.narrow{max-width:380px;margin:40px auto}
.spaced{margin-top:10px}.notice.spaced{margin-top:12px}.spaced-below{margin-bottom:14px}.padded{padding:10px}h2.flush{margin-top:0}
.added{color:#006644}.removed{color:#bf2600}
.error-page{text-align:center;padding:50px 20px}.error-page .code{font-size:64px;font-weight:700;color:#6b778c}
footer{max-width:1100px;margin:30px auto;padding:0 20px;color:#5e6c84;font-size:12px}
/* pull-request diff (web/pr_diff.rs) */
.pr-diff-page a:focus-visible,.pr-diff-page button:focus-visible,.pr-diff-page summary:focus-visible{outline:2px solid #4c9aff;outline-offset:1px}
.pr-meta{display:flex;gap:6px;align-items:center;flex-wrap:wrap;margin-bottom:12px}.pr-meta .branch{background:#ebecf0;padding:1px 6px;border-radius:3px}
.badge.pr-state.open{background:#deebff;color:#0747a6}.badge.pr-state.merged{background:#e3fcef;color:#006644}.badge.pr-state.declined{background:#ffebe6;color:#bf2600}
.pr-toolbar{display:flex;gap:8px;align-items:center;flex-wrap:wrap;margin-bottom:12px}.pr-toolbar .seg-group{display:inline-flex}
.pr-toolbar .seg{border:1px solid #c1c7d0;padding:3px 10px;background:#fff;color:#42526e}.pr-toolbar .seg-group .seg+.seg{border-left:0}
.pr-toolbar .seg.on{background:#deebff;color:#0747a6;font-weight:600}
.pr-files{background:#fff;border:1px solid #dfe1e6;border-radius:4px;padding:10px 14px;margin-bottom:16px}.pr-files h2{font-size:15px}
ul.file-tree{list-style:none;margin:8px 0 0;padding:0;max-height:420px;overflow:auto}ul.file-tree li{padding:2px 0}
ul.file-tree li.dir{color:#5e6c84;margin-top:4px}ul.file-tree li.nested{padding-left:18px}
ul.file-tree .file-only{font-size:12px;color:#5e6c84}ul.file-tree a.file-link{text-decoration:underline}.comment-count{font-size:12px;color:#0052cc}
.badge.kind{min-width:18px;text-align:center}.badge.kind.add{background:#e3fcef;color:#006644}.badge.kind.delete{background:#ffebe6;color:#bf2600}
.badge.kind.move,.badge.kind.copy{background:#eae6ff;color:#403294}.badge.kind.modify{background:#fffae6;color:#974f0c}
.counts{font-size:12px}
.pr-file{margin-bottom:18px;scroll-margin-top:8px}
.pr-file-head{display:flex;gap:6px;align-items:center;flex-wrap:wrap;background:#fafbfc;border:1px solid #dfe1e6;border-bottom:0;border-radius:4px 4px 0 0;padding:6px 10px}
.pr-file-head h3{font-size:13px;margin:0}.pr-file-head .file-links{margin-left:auto;display:flex;gap:10px;font-size:12px}
.pr-file .codebox{border-radius:0 0 4px 4px}
.pr-file .placeholder{background:#fff;border:1px solid #dfe1e6;border-radius:0 0 4px 4px;margin:0;padding:14px 10px}
.pr-file.loading{opacity:.6}
.file-comments{background:#fff;border-left:1px solid #dfe1e6;border-right:1px solid #dfe1e6;padding:0 10px}.file-comments:empty{display:none}
.file-comments details.file-comment{padding:6px 0}.file-comments summary{cursor:pointer;color:#0052cc;font-size:12px}
table.pr-diff td.code::before{display:inline-block;width:1.2em;color:#5e6c84}
table.pr-diff td.code.add::before{content:"+"}table.pr-diff td.code.del::before{content:"-"}table.pr-diff td.code.ctx::before{content:" "}
table.pr-diff td.act{width:1%;padding:0 2px;border-right:1px solid #ebecf0}
table.pr-diff a.cmt{display:inline-block;width:16px;height:16px;line-height:15px;text-align:center;border-radius:3px;background:#0052cc;color:#fff;font-weight:700;opacity:.2}
table.pr-diff tr:hover a.cmt,table.pr-diff a.cmt:focus{opacity:1;text-decoration:none}
table.pr-diff tr.hunk td{font-family:inherit}table.pr-diff tr.hunk a{margin-left:10px}
table.pr-diff.split{table-layout:fixed}table.pr-diff.split col.c-ln{width:52px}table.pr-diff.split col.c-act{width:24px}
table.pr-diff.split td.code{white-space:pre-wrap;word-break:break-all}
table.pr-diff td.code.add{background:#e3fcef}table.pr-diff td.code.del{background:#ffebe6}table.pr-diff td.code.empty{background:#f4f5f7}
table.pr-diff td.ln:target,table.pr-diff td.ln:target+td.ln{background:#fffae6}
table.pr-diff .cut{color:#bf2600}
table.pr-diff tr.comments td,table.pr-diff tr.comment-form-row td{white-space:normal;font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif;background:#fafbfc;padding:6px 12px;border-top:1px solid #ebecf0;border-bottom:1px solid #ebecf0}
.thread{max-width:800px;background:#fff;border:1px solid #dfe1e6;border-radius:4px;padding:8px 12px;margin:6px 0}.thread.outdated{border-style:dashed}
.outdated-note{margin:0 0 6px;font-size:12px;color:#5e6c84}
article.comment{margin:2px 0;scroll-margin-top:60px}table.pr-diff td.ln{scroll-margin-top:60px}article.comment:target{background:#fffae6}.comment-head{font-size:13px}
.comment-body p{margin:4px 0}.comment-body pre{background:#f4f5f7;padding:8px;overflow:auto}
.comment-actions{display:flex;gap:12px;align-items:flex-start;font-size:12px;flex-wrap:wrap}.comment-actions summary{cursor:pointer;color:#0052cc}
.replies{margin-left:18px;padding-left:12px;border-left:2px solid #ebecf0}
.badge.task{background:#fffae6;color:#974f0c}
form.comment-form{display:flex;flex-direction:column;gap:6px;max-width:800px;margin:6px 0}
form.comment-form textarea{font:inherit;width:100%;padding:6px 8px;border:1px solid #c1c7d0;border-radius:3px;resize:vertical}
form.comment-form textarea:focus{outline:2px solid #4c9aff;border-color:#4c9aff}
button.link-button{background:none;border:0;padding:0;color:#0052cc;font-size:12px;cursor:pointer}button.link-button.danger-text{color:#bf2600}
a.button.secondary{background:#ebecf0;color:#42526e;display:inline-block}
.badge.build-successful{background:#e3fcef;color:#006644}.badge.build-failed{background:#ffebe6;color:#bf2600}.badge.build-inprogress{background:#deebff;color:#0747a6}
.badge.build-cancelled,.badge.build-unknown{background:#dfe1e6;color:#42526e}.badge.insight-pass{background:#e3fcef;color:#006644}.badge.insight-fail{background:#ffebe6;color:#bf2600}
.annotation{background:#fffae6;border-left:3px solid #ff991f;padding:4px 8px;font-size:12px;white-space:normal}.annotation.high{border-left-color:#de350b}.annotation.low{border-left-color:#97a0af}
form.inline{flex-wrap:wrap}.tabs{flex-wrap:wrap}pre{overflow-x:auto}td.mono,.clone input{overflow-wrap:anywhere}header.top button{white-space:nowrap}
@media (max-width:600px){main{padding:0 10px;margin-top:12px}header.top{gap:10px;padding:0 10px;height:auto;min-height:48px;flex-wrap:wrap}header.top nav{gap:10px}
table.list{display:block;overflow-x:auto}form.inline input[type=text],form.inline input[type=url],form.inline select{max-width:100%;min-width:0}
.tabs a{padding:6px 8px}}
"#,
    include_str!("refs.css")
);

/// The page script: copy buttons, auto-submitting selects and the locked-account sign-in check.
/// A file of its own so that a test can run it under Node against the server's checker.
pub(crate) const JS: &str = include_str!("trove.js");

fn asset(body: &'static str, ctype: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    r
}

/// The style sheet: the pages' own, then the rules of modules that keep their own (search,
/// profiles, the code views: web/highlight.rs, web/file_view.rs).
static ALL_CSS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| [CSS, super::search::CSS, super::profile::CSS, super::highlight::CSS, super::file_view::CSS].concat());
/// The page script: `trove.js`, then the scripts of modules that keep their own.
static ALL_JS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| format!("{JS}\n{}", super::search::JS));

pub(crate) async fn css() -> Response {
    asset(ALL_CSS.as_str(), "text/css; charset=utf-8")
}

pub(crate) async fn js() -> Response {
    asset(ALL_JS.as_str(), "text/javascript; charset=utf-8")
}

pub(crate) fn html_response(status: StatusCode, m: Markup) -> Response {
    let mut r = (status, m.into_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

fn shell(ctx: &str, title: &str, nav: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " - Trove" }
                // No favicon of our own: an empty one saves every first visit a 404.
                link rel="icon" href="data:,";
                link rel="stylesheet" href={ (ctx) "/static/trove.css" };
                script src={ (ctx) "/static/trove.js" } defer {}
            }
            body {
                header.top {
                    a.brand href={ (ctx) "/" } { "Trove" }
                    (nav)
                }
                main { (body) }
                footer { "Trove " (env!("CARGO_PKG_VERSION")) }
            }
        }
    }
}

/// The header's navigation for `user` (with the session's CSRF token for Log out), or for an
/// anonymous caller.
fn nav(ctx: &str, me: Option<(&User, &str)>) -> Markup {
    html! {
        nav aria-label="Main" {
            a href={ (ctx) "/projects" } { "Projects" }
            @if super::is_admin(me.map(|(u, _)| u)) { a href={ (ctx) "/admin" } { "Administration" } }
        }
        (super::search::header_box(ctx))
        div.me {
            @if let Some((u, csrf)) = me {
                a href={ (ctx) "/account" } title="Account" { (u.display_name) }
                form method="post" action={ (ctx) "/logout" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Log out" }
                }
            } @else {
                a href={ (ctx) "/login" } { "Log in" }
            }
        }
    }
}

/// A full page for the logged-in (or anonymous) caller.
pub(crate) fn page(w: &Web, title: &str, body: Markup) -> Response {
    let ctx = w.ctx();
    let nav = nav(ctx, w.user().map(|u| (u, w.csrf())));
    html_response(StatusCode::OK, shell(ctx, title, nav, body))
}

/// The 404/403/500 page: same look (the signed-in user's header when `session` is theirs), no
/// details beyond what the caller can act on.
pub(crate) fn error_page(ctx: &str, session: Option<&Session>, status: StatusCode, title: &str, detail: &str) -> Response {
    let nav = nav(ctx, session.map(|s| (&s.user, s.csrf.as_str())));
    let body = html! {
        div.error-page {
            div.code { (status.as_u16()) }
            h1 { (title) }
            p.muted { (message(detail)) }
            p { a href={ (ctx) "/" } { "Go to the dashboard" } }
        }
    };
    html_response(status, shell(ctx, title, nav, body))
}

/// A success or error message at the top of a page.
pub(crate) enum Notice {
    Ok(String),
    Err(String),
}

pub(crate) fn notice(n: &Option<Notice>) -> Markup {
    html! {
        @match n {
            Some(Notice::Ok(t)) => div.notice.ok role="status" { (message(t)) },
            Some(Notice::Err(t)) => div.notice.err role="alert" { (message(t)) },
            None => {},
        }
    }
}

/// A message as the REST API and the command line word it, for a page: each `backticked` span
/// (a command, a setting, a path) set as code instead of showing its backticks; an unpaired
/// backtick stays as it is.
pub(crate) fn message(text: &str) -> Markup {
    let parts: Vec<&str> = text.split('`').collect();
    // An even number of parts means an odd number of backticks: the last one is unpaired.
    let paired = if parts.len().is_multiple_of(2) { parts.len() - 1 } else { parts.len() };
    html! {
        @for (i, p) in parts.iter().enumerate() {
            @if i >= paired { "`" (p) }
            @else if i % 2 == 1 { code { (p) } }
            @else { (p) }
        }
    }
}

/// The notice for a `?done=` code set by a redirect after a successful form.
pub(crate) fn done_notice(code: Option<&str>) -> Option<Notice> {
    let text = match code? {
        "saved" => "Saved.",
        "created" => "Created.",
        "deleted" => "Deleted.",
        "granted" => "Permission granted.",
        "revoked" => "Permission revoked.",
        "password" => "Password changed.",
        "token-revoked" => "Token revoked.",
        "token-created" => "Token created.",
        "key-added" => "SSH key added.",
        "key-deleted" => "SSH key deleted.",
        "user-updated" => "User updated.",
        "member-added" => "Member added.",
        "member-removed" => "Member removed.",
        "restricted" => "Branch restriction added.",
        "unrestricted" => "Branch restriction deleted.",
        "webhook-created" => "Webhook added.",
        "webhook-saved" => "Webhook saved.",
        "webhook-deleted" => "Webhook deleted.",
        "unlocked" => "Failed logins cleared: the user's password works over git and REST again.",
        _ => return None,
    };
    Some(Notice::Ok(text.to_owned()))
}

/// The hidden CSRF field every form carries.
pub(crate) fn csrf_field(w: &Web) -> Markup {
    html! { input type="hidden" name="csrf" value=(w.csrf()); }
}

/// `YYYY-MM-DD HH:MM UTC` from Unix seconds, by the `time` crate.
pub(crate) fn utc(ts: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ts) {
        Ok(t) => format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute()),
        // Outside the calendar `time` knows (years past 9999): say what it is rather than guess.
        Err(_) => format!("@{ts} (Unix time)"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates_format_like_the_calendar() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(super::utc(1_796_000_000), "2026-11-30 00:53 UTC");
    }

    #[test]
    fn backticked_spans_of_a_message_are_code_and_an_unpaired_backtick_stays() {
        let html = |t: &str| super::message(t).into_string();
        assert_eq!(html("run `trove admin settings webhook-allow 127.0.0.0/8` first"), "run <code>trove admin settings webhook-allow 127.0.0.0/8</code> first");
        assert_eq!(html("plain"), "plain");
        assert_eq!(html("a `b` c `d"), "a <code>b</code> c `d");
        assert_eq!(html("`<x>`"), "<code>&lt;x&gt;</code>");
    }
}
