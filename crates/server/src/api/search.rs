//! `POST /rest/search/1.0/search` (and `latest`): Bitbucket's code search over REST, the same
//! search as the web page's ([`crate::code_search`]): literal text without regard to case, at
//! each readable repository's default branch, under the same limits. `project:KEY` and
//! `repo:slug` (or `repo:KEY/slug`) in the query narrow the repositories, as Bitbucket's
//! modifiers do; other modifiers are searched for as text.
//!
//! The answer has Bitbucket's shape: `code.values` holds one entry per file with its
//! `repository`, `file`, `hitContexts` (lines, each with `line` and HTML-escaped `text` whose
//! matches are in `<em>`) and `hitCount`; `code.start`, `count`, `isLastPage` and `nextStart`
//! page through the files.

use std::collections::HashMap;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Api, ApiError, ok, parse_body};
use crate::AppState;
use crate::code_search::{self, CodeQuery, Hit, Limits, Target};

/// Every route, as `(methods, full path)`, for the OpenAPI test.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const ROUTES: &[(&[&str], &str)] = &[(&["POST"], "/rest/search/1.0/search")];

pub(crate) fn routes(ctx: &str) -> Router<AppState> {
    Router::new().route(&format!("{ctx}/rest/search/1.0/search"), post(search))
}

/// Files per page: default 25, at most 100.
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 100;

#[derive(serde::Deserialize, Default)]
struct Body {
    query: Option<String>,
    #[serde(default)]
    entities: Entities,
    #[serde(default)]
    limits: PageLimits,
}

#[derive(serde::Deserialize, Default)]
struct Entities {
    code: Option<Paging>,
}

#[derive(serde::Deserialize, Default)]
struct Paging {
    start: Option<usize>,
    limit: Option<usize>,
}

#[derive(serde::Deserialize, Default)]
struct PageLimits {
    primary: Option<usize>,
}

/// The query split into its text and Bitbucket's `project:` and `repo:` modifiers.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    text: String,
    project: Option<String>,
    repo: Option<String>,
}

fn parse_query(raw: &str) -> Parsed {
    let mut words = Vec::new();
    let (mut project, mut repo) = (None, None);
    for w in raw.split_whitespace() {
        if let Some(p) = w.strip_prefix("project:").filter(|p| !p.is_empty()) {
            project = Some(p.to_owned());
        } else if let Some(r) = w.strip_prefix("repo:").filter(|r| !r.is_empty()) {
            repo = Some(r.to_owned());
        } else {
            words.push(w);
        }
    }
    Parsed { text: words.join(" "), project, repo }
}

/// `text` HTML-escaped with the `ranges` in `<em>`, as Bitbucket's hit contexts.
fn em(text: &str, ranges: &[(usize, usize)]) -> String {
    let esc = |s: &str| maud::html! { (s) }.into_string();
    let mut out = String::new();
    let mut at = 0;
    for &(s, e) in ranges {
        if s < at || e > text.len() || !text.is_char_boundary(s) || !text.is_char_boundary(e) {
            continue;
        }
        out.push_str(&esc(&text[at..s]));
        out.push_str("<em>");
        out.push_str(&esc(&text[s..e]));
        out.push_str("</em>");
        at = e;
    }
    out.push_str(&esc(&text[at..]));
    out
}

pub(crate) async fn search(api: Api, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let b: Body = parse_body(body)?;
    let parsed = parse_query(b.query.as_deref().unwrap_or(""));
    let q = CodeQuery::parse(&parsed.text).map_err(|e| ApiError::invalid("query", e.to_string()))?;
    let paging = b.entities.code.unwrap_or_default();
    let start = paging.start.unwrap_or(0);
    let limit = paging.limit.or(b.limits.primary).unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    // The repositories the caller may read, narrowed by the modifiers; decided on the store's pool.
    let (targets, repos) = api
        .clone()
        .blocking(move |api| -> Result<_, ApiError> {
            let who = api.who.as_ref();
            let mut targets = Vec::new();
            let mut repos = HashMap::new();
            for p in api.store().visible_projects(api.user(), crate::access::sees_everything(who))? {
                let key = p.owner.to_string();
                if parsed.project.as_deref().is_some_and(|want| !want.eq_ignore_ascii_case(&key)) {
                    continue;
                }
                for r in api.store().project_repos(&p)? {
                    let wanted = match parsed.repo.as_deref() {
                        None => true,
                        Some(want) => match want.split_once('/') {
                            Some((k, s)) => k.eq_ignore_ascii_case(&key) && s.eq_ignore_ascii_case(r.slug.as_str()),
                            None => want.eq_ignore_ascii_case(r.slug.as_str()),
                        },
                    };
                    if wanted && api.store().permission(who, &r)?.is_some() {
                        targets.push(Target { id: r.id, dir: api.store().repo_path(&r) });
                        repos.insert(r.id, r);
                    }
                }
            }
            Ok((targets, repos))
        })
        .await?;
    let outcome = code_search::search(&api.state, &q, targets, Limits::default()).await;
    // One value per file, in the order found.
    let mut files: Vec<((i64, String), Vec<&Hit>)> = Vec::new();
    for h in &outcome.hits {
        match files.last_mut() {
            Some((k, v)) if k.0 == h.repo_id && k.1 == h.path => v.push(h),
            _ => files.push(((h.repo_id, h.path.clone()), vec![h])),
        }
    }
    let total = files.len();
    let page: Vec<((i64, String), Vec<Hit>)> = files.into_iter().skip(start).take(limit).map(|(k, v)| (k, v.into_iter().cloned().collect())).collect();
    let shown = page.len();
    let last = start + shown >= total && !outcome.more && outcome.skipped == 0;
    api.blocking(move |api| {
        let mut values = Vec::new();
        let mut projects = HashMap::new();
        for ((repo_id, path), hits) in page {
            let Some(repo) = repos.get(&repo_id) else { continue };
            if let std::collections::hash_map::Entry::Vacant(e) = projects.entry(repo.project_id) {
                e.insert(api.store().project_info(&repo.owner)?);
            }
            let Some(Some(info)) = projects.get(&repo.project_id) else { continue };
            let lines: Vec<Value> = hits.iter().map(|h| json!({"line": h.line, "text": em(&h.text, &h.ranges)})).collect();
            values.push(json!({
                "repository": api.repo_json(repo, info)?,
                "file": path,
                "hitContexts": [lines],
                "pathMatches": [],
                "hitCount": hits.len(),
            }));
        }
        let mut code = json!({"category": "primary", "isLastPage": last, "count": total, "start": start, "values": values});
        if !last {
            code["nextStart"] = json!(start + shown);
        }
        Ok(ok(StatusCode::OK, json!({"scope": {"type": "GLOBAL"}, "code": code, "query": {"substituted": false}})))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modifiers_narrow_and_the_rest_is_the_text() {
        assert_eq!(
            parse_query("project:TP repo:test  needle  here"),
            Parsed { text: "needle here".into(), project: Some("TP".into()), repo: Some("test".into()) }
        );
        assert_eq!(parse_query("lang:rust x"), Parsed { text: "lang:rust x".into(), project: None, repo: None });
        assert_eq!(em("a <b> keep", &[(6, 10)]), "a &lt;b&gt; <em>keep</em>");
    }
}
