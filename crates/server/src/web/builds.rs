//! Build statuses and Code Insights on the pages: a badge per commit (the commit list, the pull
//! request list), a table of builds with links to each (the commit page, the pull request's
//! overview), the reports of the pull request's source commit, and annotations beside the diff
//! lines they name. What a commit "has" is [`crate::builds::visible`]'s.

use std::collections::HashMap;

use maud::{Markup, html};
use serde_json::json;
use trove_store::{Annotation, BuildState, BuildStatus, InsightReport, Matcher, MatcherType, Repo, RequiredBuild, RequiredBuildSpec};

use super::view::csrf_field;
use super::{Form, Web, WebError};
use crate::audit::{Action, target};
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

/// The "Required builds" part of the repository settings page: the merge-check conditions
/// (build keys that must have succeeded on a pull request's source commit before it merges into
/// the branches a condition covers), each with a button to delete it, and a form to add one.
/// The same conditions as `/rest/required-builds/1.0/…/conditions`.
pub(crate) fn required_section(w: &Web, action: &str, conditions: &[RequiredBuild]) -> Markup {
    html! {
        h2 #required-builds { "Required builds" }
        p.muted { "A pull request into a covered branch merges only when each listed build key has succeeded on its source commit." }
        table.list #required-build-conditions {
            thead { tr { th { "Build keys" } th { "Target branches" } th { "Exempt" } th {} } }
            tbody {
                @if conditions.is_empty() { tr { td colspan="4" .muted { "No build is required." } } }
                @for c in conditions {
                    tr data-condition=(c.id) {
                        td { @for (i, k) in c.condition.build_parent_keys.iter().enumerate() { @if i > 0 { ", " } code { (k) } } }
                        td { (matcher_text(&c.condition.ref_matcher)) }
                        td { @match &c.condition.exempt_ref_matcher { Some(m) => (matcher_text(m)), None => span.muted { "none" } } }
                        td { form.inline method="post" action=(action) { (csrf_field(w)) input type="hidden" name="action" value="required-build-delete"; input type="hidden" name="id" value=(c.id); button.secondary type="submit" { "Delete" } } }
                    }
                }
            }
        }
        form.card.inline.spaced method="post" action=(action) #required-build-add {
            (csrf_field(w))
            input type="hidden" name="action" value="required-build-add";
            input type="text" name="keys" placeholder="build keys (comma-separated)" required aria-label="Build keys";
            select name="matcher_type" aria-label="Target branches" {
                @for t in MATCHER_TYPES { option value=(t.as_str()) { (t.name()) } }
            }
            input type="text" name="matcher" placeholder="main, release/*, PRODUCTION (empty for any)" aria-label="Branch, pattern, category or model branch";
            select name="exempt_type" aria-label="Exempt branches" {
                option value="" { "No exemption" }
                @for t in &MATCHER_TYPES[1..] { option value=(t.as_str()) { "Exempt " (t.name().to_lowercase()) } }
            }
            input type="text" name="exempt" placeholder="exempt branch or pattern" aria-label="Exempt branch, pattern, category or model branch";
            button type="submit" { "Add" }
        }
    }
}

const MATCHER_TYPES: [MatcherType; 5] = [MatcherType::AnyRef, MatcherType::Branch, MatcherType::Pattern, MatcherType::ModelCategory, MatcherType::ModelBranch];

fn matcher_text(m: &Matcher) -> Markup {
    html! {
        @if m.kind() == MatcherType::AnyRef { "Any branch" } @else { (m.kind().name()) ": " code { (m.display_id()) } }
    }
}

/// Handles `required-build-add` and `required-build-delete` for `repo`: `Ok(Ok(done code))`, or
/// `Ok(Err(message))` for the form to show again. Audited as a change of the repository's
/// pull-request settings, as the REST calls are.
pub(crate) fn required_post(w: &Web, repo: &Repo, form: &Form) -> Result<Result<&'static str, String>, WebError> {
    let store = &w.state.store;
    if form.get("action") == "required-build-delete" {
        let id: i64 = form.get("id").parse().map_err(|_| WebError::BadRequest("the form names no required-builds condition".into()))?;
        return match store.required_build(id)? {
            Some(c) if c.repo == repo.id => {
                store.delete_required_build(id)?;
                w.audit(Action::PrSettingsUpdate, &target::repo(repo), json!({"requiredBuild": id, "deleted": true}));
                Ok(Ok("saved"))
            }
            _ => Err(WebError::NotFound),
        };
    }
    let keys: Vec<String> = form.get("keys").split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect();
    if keys.is_empty() {
        return Ok(Err("name at least one build key (the key CI reports its status with)".into()));
    }
    if let Some(k) = keys.iter().find(|k| k.chars().count() > crate::api::builds::MAX_FIELD) {
        return Ok(Err(format!("build key {k:?} is longer than {} characters", crate::api::builds::MAX_FIELD)));
    }
    let matcher = |kind: &str, id: &str| -> Result<Matcher, String> {
        let Some(t) = MatcherType::parse_ref_matcher(kind) else { return Err(format!("{kind:?} is not a matcher type")) };
        let id = id.trim();
        if t != MatcherType::AnyRef && id.is_empty() {
            return Err(format!("name the {} the condition covers", t.name().to_lowercase()));
        }
        Matcher::new(t, id).map_err(|e| e.to_string())
    };
    let ref_matcher = match matcher(form.get("matcher_type"), form.get("matcher")) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    let exempt_ref_matcher = match form.get("exempt_type") {
        "" => None,
        t => match matcher(t, form.get("exempt")) {
            Ok(m) => Some(m),
            Err(e) => return Ok(Err(format!("exemption: {e}"))),
        },
    };
    let spec = RequiredBuildSpec { build_parent_keys: keys, ref_matcher, exempt_ref_matcher };
    let made = store.insert_required_build(repo.id, &spec)?;
    w.audit(Action::PrSettingsUpdate, &target::repo(repo), json!({"requiredBuild": made.id, "buildParentKeys": made.condition.build_parent_keys}));
    Ok(Ok("saved"))
}
