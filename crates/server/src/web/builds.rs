//! Build statuses and Code Insights on the pages: a badge per commit (the commit list, the pull
//! request list), a table of builds with links to each (the commit page, the pull request's
//! overview), the reports of the pull request's source commit, and annotations beside the diff
//! lines they name. What a commit "has" is [`crate::builds::visible`]'s.

use std::collections::HashMap;

use maud::{Markup, html};
use trove_store::{Annotation, BuildState, BuildStatus, InsightReport};

use super::{Web, WebError};
use crate::builds::Summary;

/// The statuses of `commits` as the repositories `repos` see them, one per key, newest first.
pub(crate) async fn statuses(w: &Web, repos: Vec<i64>, commits: Vec<String>) -> Result<HashMap<String, Vec<BuildStatus>>, WebError> {
    if commits.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(w.state.store.run(move |s| crate::builds::visible(s, &repos, &commits)).await?)
}

fn state_class(s: BuildState) -> &'static str {
    match s {
        BuildState::Successful => "build-successful",
        BuildState::Failed => "build-failed",
        BuildState::InProgress => "build-inprogress",
        BuildState::Cancelled => "build-cancelled",
        BuildState::Unknown => "build-unknown",
    }
}

fn state_word(s: BuildState) -> &'static str {
    match s {
        BuildState::Successful => "Passed",
        BuildState::Failed => "Failed",
        BuildState::InProgress => "In progress",
        BuildState::Cancelled => "Cancelled",
        BuildState::Unknown => "Unknown",
    }
}

/// A link only to http or https (the REST API accepts no other; this keeps old rows harmless).
fn safe(url: &str) -> Option<&str> {
    let l = url.to_ascii_lowercase();
    (l.starts_with("https://") || l.starts_with("http://")).then_some(url)
}

/// One badge for a commit's builds: the overall state and "2 of 3 builds passed"; nothing when
/// it has none.
pub(crate) fn badge(statuses: &[BuildStatus]) -> Markup {
    let sum = Summary::of(statuses);
    match sum.overall() {
        None => html! {},
        Some(state) => html! {
            span.badge.build class=(state_class(state)) title={ (sum.successful) " of " (sum.total()) " builds passed" } {
                (state_word(state)) " " (sum.successful) "/" (sum.total())
            }
        },
    }
}

/// The builds of a commit, each linked to its CI page.
pub(crate) fn table(statuses: &[BuildStatus]) -> Markup {
    html! {
        @if statuses.is_empty() {
            p.muted { "No builds have reported on this commit." }
        } @else {
            table.list.builds {
                thead { tr { th { "Build" } th { "State" } th { "Description" } th { "Tests" } th { "Duration" } } }
                tbody {
                    @for s in statuses {
                        tr {
                            td {
                                @let label = s.name.clone().unwrap_or_else(|| s.key.clone());
                                @match safe(&s.url) {
                                    Some(u) => a href=(u) rel="noopener noreferrer" { (label) },
                                    None => (label),
                                }
                                @if let Some(n) = &s.build_number { span.muted { " #" (n) } }
                            }
                            td { span.badge class=(state_class(s.state)) { (s.state.as_str()) } }
                            td.muted { (s.description.as_deref().unwrap_or("")) }
                            td.muted { @if let Some(t) = s.test_results { (t.successful) " passed, " (t.failed) " failed, " (t.skipped) " skipped" } }
                            td.muted { @if let Some(d) = s.duration_ms { (format_duration(d)) } }
                        }
                    }
                }
            }
        }
    }
}

fn format_duration(ms: i64) -> String {
    let s = ms / 1000;
    if s >= 60 { format!("{}m {}s", s / 60, s % 60) } else { format!("{s}s") }
}

/// The Code Insights reports of a commit, with their data and how many annotations each has.
pub(crate) fn reports(reports: &[InsightReport], annotations: &[Annotation]) -> Markup {
    html! {
        @for r in reports {
            div.report.spaced-below {
                strong {
                    @match r.link.as_deref().and_then(safe) {
                        Some(u) => a href=(u) rel="noopener noreferrer" { (r.title) },
                        None => (r.title),
                    }
                }
                @match r.result.as_deref() {
                    Some("PASS") => { " " span.badge.insight-pass { "Passed" } },
                    Some("FAIL") => { " " span.badge.insight-fail { "Failed" } },
                    _ => {},
                }
                @let n = annotations.iter().filter(|a| a.report_key == r.key).count();
                @if n > 0 { span.muted { " · " (n) " annotation" @if n != 1 { "s" } } }
                @if let Some(r) = &r.reporter { span.muted { " · by " (r) } }
                @if let Some(d) = &r.details { p.muted { (d) } }
                @let data: Vec<serde_json::Value> = serde_json::from_str(&r.data).unwrap_or_default();
                @if !data.is_empty() {
                    ul.report-data {
                        @for d in &data {
                            li { (d["title"].as_str().unwrap_or("")) ": " (data_value(d)) }
                        }
                    }
                }
            }
        }
    }
}

fn data_value(d: &serde_json::Value) -> Markup {
    let v = &d["value"];
    match (d["type"].as_str(), v) {
        (Some("LINK"), serde_json::Value::Object(l)) => {
            let text = l.get("linktext").and_then(|t| t.as_str()).or_else(|| l.get("href").and_then(|h| h.as_str())).unwrap_or("");
            match l.get("href").and_then(|h| h.as_str()).and_then(safe) {
                Some(u) => html! { a href=(u) rel="noopener noreferrer" { (text) } },
                None => html! { (text) },
            }
        }
        (Some("PERCENTAGE"), v) => html! { (v) "%" },
        (Some("DURATION"), v) => html! { (format_duration(v.as_i64().unwrap_or(0))) },
        (Some("BOOLEAN"), v) => html! { @if v.as_bool() == Some(true) { "Yes" } @else { "No" } },
        (_, serde_json::Value::String(s)) => html! { (s) },
        (_, v) => html! { (v) },
    }
}

/// One annotation as shown under the diff line (or file) it names.
pub(crate) fn annotation(a: &Annotation) -> Markup {
    let n = &a.annotation;
    html! {
        div.annotation class=(n.severity.to_ascii_lowercase()) {
            strong { (n.severity) } " " (a.report_key) ": " (n.message)
            @if let Some(u) = n.link.as_deref().and_then(safe) { " " a href=(u) rel="noopener noreferrer" { "details" } }
        }
    }
}
