//! Build status, required builds and Code Insights over REST, as Bitbucket Server 8 serves them
//! to CI systems (Jenkins, Bamboo, TeamCity, SonarQube):
//!
//! - `/rest/build-status/1.0/commits/{sha}` (POST, GET), `…/commits/stats/{sha}` (GET) and
//!   `…/commits/stats` (POST, an array of SHAs): the legacy endpoints, global by commit; any
//!   logged-in user posts, and reads see the legacy statuses and those of repositories they may
//!   read;
//! - `/rest/api/1.0/projects/{key}/repos/{slug}/commits/{sha}/builds` (POST and GET `?key=` with
//!   REPO_READ, DELETE `?key=` with REPO_ADMIN), and `/rest/api/1.0/build/capabilities`;
//! - `/rest/required-builds/1.0/projects/{key}/repos/{slug}/conditions` (GET, REPO_READ) and
//!   `…/condition[/{id}]` (POST, PUT, DELETE; REPO_ADMIN);
//! - `/rest/insights/1.0/projects/{key}/repos/{slug}/commits/{sha}/reports[/{key}]` and their
//!   `annotations`: reads REPO_READ; a report is created with REPO_READ and replaced only by its
//!   creator; deleting it or changing its annotations needs its creator or REPO_ADMIN.
//!
//! Every family also answers under `latest` (rewritten before routing). Bodies are checked in full before anything is
//! stored, and a bad one is a 400 naming the field, in Bitbucket's error shape: a commit that is
//! not 40 hex digits, a missing or too long field (Bitbucket's limits: 255 characters, a build's
//! `url` 450, a report's `title` 450 and `details` 2000), an unknown state. Jenkins sends
//! `buildNumber` as a number; numbers and strings are both taken. Links (`url`, `link`,
//! `logoUrl`) must be absolute http or https URLs, since the pages show them as links.

use axum::Router;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use axum::routing::{get, post, put};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value, json};
use trove_store::{
    BuildState, BuildStatus, InsightReport, Matcher, MatcherType, NewAnnotation, Permission, Repo, RequiredBuild, RequiredBuildSpec, TestResults,
};

use super::{Api, ApiError, no_content, ok, paged, parse_body};
use crate::AppState;
use crate::audit::{self, Action};
use crate::builds::Summary;

/// The legacy build-status routes, below [`BUILD_STATUS_SERVER`], for the OpenAPI test.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const BUILD_STATUS_ROUTES: &[(&[&str], &str)] =
    &[(&["GET", "POST"], "/commits/{commitId}"), (&["GET"], "/commits/stats/{commitId}"), (&["POST"], "/commits/stats")];
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const BUILD_STATUS_SERVER: &str = "/rest/build-status/1.0";

/// The required-builds routes, below [`REQUIRED_BUILDS_SERVER`].
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const REQUIRED_BUILDS_ROUTES: &[(&[&str], &str)] = &[
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/conditions"),
    (&["POST"], "/projects/{projectKey}/repos/{repositorySlug}/condition"),
    (&["PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/condition/{id}"),
];
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const REQUIRED_BUILDS_SERVER: &str = "/rest/required-builds/1.0";

/// The Code Insights routes, below [`INSIGHTS_SERVER`].
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const INSIGHTS_ROUTES: &[(&[&str], &str)] = &[
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}/reports"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}/reports/{key}"),
    (&["GET", "POST", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}/reports/{key}/annotations"),
    (&["PUT"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}/reports/{key}/annotations/{externalId}"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}/annotations"),
];
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const INSIGHTS_SERVER: &str = "/rest/insights/1.0";

/// Longest key, name, description, parent and build number (Bitbucket's limit).
pub(crate) const MAX_FIELD: usize = 255;
/// Longest build URL.
const MAX_URL: usize = 450;
/// Longest ref name a build names.
const MAX_REF: usize = 1024;
/// Longest report title, report details, annotation message.
const MAX_TITLE: usize = 450;
const MAX_DETAILS: usize = 2000;
/// Most data fields of a report.
const MAX_DATA: usize = 6;
/// Most statuses the legacy GET lists (Bitbucket keeps the latest 100).
const MAX_LEGACY: usize = 100;

/// The routes of every family here under the context path `ctx`; [`super::router`] puts its
/// layers over them. The repository-scoped `/builds` and `/build/capabilities` are in its own
/// list.
pub(crate) fn routes(ctx: &str) -> Router<AppState> {
    // `latest` is rewritten to `1.0` before routing ([`super::latest_alias`]).
    let bs = |s: &str| format!("{ctx}/rest/build-status/1.0{s}");
    let rb = |s: &str| format!("{ctx}/rest/required-builds/1.0/projects/{{key}}/repos/{{slug}}{s}");
    let ins = |s: &str| format!("{ctx}/rest/insights/1.0/projects/{{key}}/repos/{{slug}}/commits/{{sha}}{s}");
    Router::new()
        .route(&bs("/commits/{sha}"), get(legacy_get).post(legacy_post))
        .route(&bs("/commits/stats/{sha}"), get(legacy_stats))
        .route(&bs("/commits/stats"), post(legacy_stats_many))
        .route(&rb("/conditions"), get(conditions))
        .route(&rb("/condition"), post(condition_create))
        .route(&rb("/condition/{id}"), put(condition_update).delete(condition_delete))
        .route(&ins("/reports"), get(reports))
        .route(&ins("/reports/{report}"), get(report_get).put(report_put).delete(report_delete))
        .route(&ins("/reports/{report}/annotations"), get(report_annotations).post(annotations_add).delete(annotations_delete))
        .route(&ins("/reports/{report}/annotations/{ext}"), put(annotation_put))
        .route(&ins("/annotations"), get(commit_annotations))
}

// ---- parsing ----

/// A commit id as the path gives it: exactly 40 hex digits, returned in lower case.
fn sha(s: &str) -> Result<String, ApiError> {
    if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid("commitId", format!("{s:?} is not a full commit id; send the 40 hexadecimal digits of the commit's SHA-1.")))
    }
}

fn object(v: &Value, what: &str) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Object(o) => Ok(o.clone()),
        other => Err(ApiError::Malformed(format!("{what} must be a JSON object, not {other}."))),
    }
}

/// A string field: absent or null is `None`, or a 400 when `required`; longer than `max`
/// characters is a 400; an empty one counts as absent.
fn text(o: &Map<String, Value>, name: &str, max: usize, required: bool) -> Result<Option<String>, ApiError> {
    let s = match o.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(ApiError::invalid(name, format!("{name} must be a string, not {other}."))),
    };
    match s {
        None if required => Err(ApiError::invalid(name, format!("{name} is required."))),
        Some(s) if s.chars().count() > max => Err(ApiError::invalid(name, format!("{name} must be {max} characters or fewer; it has {}.", s.chars().count()))),
        s => Ok(s),
    }
}

/// A link field: as [`text`], and an absolute http or https URL.
fn link(o: &Map<String, Value>, name: &str, max: usize, required: bool) -> Result<Option<String>, ApiError> {
    let s = text(o, name, max, required)?;
    if let Some(u) = &s {
        let lower = u.to_ascii_lowercase();
        let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control())) {
            return Err(ApiError::invalid(name, format!("{name} must be an absolute http or https URL, not {u:?}.")));
        }
    }
    Ok(s)
}

/// A whole number of 0 or more, or absent.
fn count(o: &Map<String, Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_i64().filter(|n| *n >= 0).map(Some).ok_or_else(|| ApiError::invalid(name, format!("{name} must be a whole number of 0 or more, not {v}.")))
        }
    }
}

/// A build status as posted to either endpoint, checked in full.
fn parse_status(v: &Value, repo: Option<i64>, commit: String) -> Result<BuildStatus, ApiError> {
    let o = object(v, "A build status")?;
    let state_s = text(&o, "state", MAX_FIELD, true)?.unwrap_or_default();
    let state = BuildState::parse(&state_s)
        .ok_or_else(|| ApiError::invalid("state", format!("{state_s:?} is not a build state; use SUCCESSFUL, FAILED, INPROGRESS, CANCELLED or UNKNOWN.")))?;
    let build_number = match o.get("buildNumber") {
        None | Some(Value::Null) => None,
        // Jenkins sends a number.
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(_)) => text(&o, "buildNumber", MAX_FIELD, false)?,
        Some(other) => return Err(ApiError::invalid("buildNumber", format!("buildNumber must be a string or a number, not {other}."))),
    };
    let test_results = match o.get("testResults") {
        None | Some(Value::Null) => None,
        Some(Value::Object(t)) => Some(TestResults {
            successful: count(t, "successful")?.unwrap_or(0),
            failed: count(t, "failed")?.unwrap_or(0),
            skipped: count(t, "skipped")?.unwrap_or(0),
        }),
        Some(other) => {
            return Err(ApiError::invalid("testResults", format!("testResults must be an object of successful, failed and skipped counts, not {other}.")));
        }
    };
    let now = now_ms();
    Ok(BuildStatus {
        repo,
        commit,
        key: text(&o, "key", MAX_FIELD, true)?.unwrap_or_default(),
        state,
        name: text(&o, "name", MAX_FIELD, false)?,
        url: link(&o, "url", MAX_URL, true)?.unwrap_or_default(),
        description: text(&o, "description", MAX_FIELD, false)?,
        build_number,
        duration_ms: count(&o, "duration")?,
        parent: text(&o, "parent", MAX_FIELD, false)?,
        ref_name: text(&o, "ref", MAX_REF, false)?,
        test_results,
        created_at: now,
        updated_at: now,
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

// ---- JSON ----

/// The legacy shape (`/rest/build-status/1.0`).
fn legacy_json(s: &BuildStatus) -> Value {
    let mut v = json!({"state": s.state.as_str(), "key": s.key, "url": s.url, "dateAdded": s.updated_at});
    if let Some(n) = &s.name {
        v["name"] = json!(n);
    }
    if let Some(d) = &s.description {
        v["description"] = json!(d);
    }
    v
}

/// The repository-scoped shape (`…/commits/{sha}/builds`).
pub(crate) fn status_json(s: &BuildStatus) -> Value {
    let mut v = json!({"key": s.key, "state": s.state.as_str(), "url": s.url, "createdDate": s.created_at, "updatedDate": s.updated_at});
    for (k, f) in [("name", &s.name), ("description", &s.description), ("buildNumber", &s.build_number), ("parent", &s.parent), ("ref", &s.ref_name)] {
        if let Some(x) = f {
            v[k] = json!(x);
        }
    }
    if let Some(d) = s.duration_ms {
        v["duration"] = json!(d);
    }
    if let Some(t) = s.test_results {
        v["testResults"] = json!({"successful": t.successful, "failed": t.failed, "skipped": t.skipped});
    }
    v
}

fn stats_json(s: Summary) -> Value {
    json!({"successful": s.successful, "failed": s.failed, "inProgress": s.in_progress, "cancelled": s.cancelled, "unknown": s.unknown})
}

// ---- legacy build status ----

async fn legacy_post(api: Api, Path(id): Path<String>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.require_login()?;
    let commit = sha(&id)?;
    let v: Value = parse_body(body)?;
    let status = parse_status(&v, None, commit)?;
    api.blocking(move |api| api.store().put_build_status(&status)).await?;
    Ok(no_content())
}

async fn legacy_get(api: Api, Path(id): Path<String>) -> Result<Response, ApiError> {
    api.require_login()?;
    let commit = sha(&id)?;
    let page = api.q.page()?;
    let order = api.q.get("orderBy").unwrap_or("NEWEST").to_ascii_uppercase();
    if !matches!(order.as_str(), "NEWEST" | "OLDEST" | "STATUS") {
        return Err(ApiError::invalid("orderBy", format!("orderBy must be NEWEST, OLDEST or STATUS, not {order:?}.")));
    }
    api.blocking(move |api| {
        let mut all = crate::builds::readable(api.store(), api.who.as_ref(), &[commit])?;
        all.truncate(MAX_LEGACY);
        match order.as_str() {
            "OLDEST" => all.reverse(),
            "STATUS" => all.sort_by_key(|s| match s.state {
                BuildState::Failed => 0,
                BuildState::InProgress => 1,
                BuildState::Successful => 2,
                BuildState::Cancelled => 3,
                BuildState::Unknown => 4,
            }),
            _ => {}
        }
        Ok(ok(StatusCode::OK, paged(all.iter().map(legacy_json).collect(), page)))
    })
    .await
}

async fn legacy_stats(api: Api, Path(id): Path<String>) -> Result<Response, ApiError> {
    api.require_login()?;
    let commit = sha(&id)?;
    api.blocking(move |api| {
        let all = crate::builds::readable(api.store(), api.who.as_ref(), std::slice::from_ref(&commit))?;
        Ok(ok(StatusCode::OK, stats_json(Summary::of(&all))))
    })
    .await
}

async fn legacy_stats_many(api: Api, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.require_login()?;
    let v: Value = parse_body(body)?;
    let ids = v.as_array().ok_or_else(|| ApiError::Malformed("The body must be a JSON array of commit ids.".into()))?;
    if ids.len() > MAX_LEGACY {
        return Err(ApiError::invalid("commitIds", format!("Ask for {MAX_LEGACY} commits or fewer at a time.")));
    }
    let mut commits = Vec::new();
    for i in ids {
        let s = i.as_str().ok_or_else(|| ApiError::invalid("commitId", format!("Each commit id must be a string, not {i}.")))?;
        commits.push(sha(s)?);
    }
    api.blocking(move |api| {
        let all = crate::builds::readable(api.store(), api.who.as_ref(), &commits)?;
        let mut out = Map::new();
        for c in &commits {
            out.insert(c.clone(), stats_json(Summary::of(all.iter().filter(|s| &s.commit == c))));
        }
        Ok(ok(StatusCode::OK, Value::Object(out)))
    })
    .await
}

// ---- repository-scoped build status ----

pub(crate) async fn repo_post(
    api: Api,
    Path((key, slug, id)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (repo, _) = api.repo_async(&key, &slug, Permission::Read, "post build statuses in this repository").await?;
    let commit = sha(&id)?;
    let v: Value = parse_body(body)?;
    let status = parse_status(&v, Some(repo.id), commit)?;
    api.blocking(move |api| api.store().put_build_status(&status)).await?;
    Ok(no_content())
}

pub(crate) async fn repo_get(api: Api, Path((key, slug, id)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    let (repo, _) = api.repo_async(&key, &slug, Permission::Read, "see this repository").await?;
    let commit = sha(&id)?;
    let want = api.q.required("key")?.to_owned();
    api.blocking(move |api| {
        let mut by = crate::builds::visible(api.store(), &[repo.id], std::slice::from_ref(&commit))?;
        let found = by.remove(&commit).unwrap_or_default().into_iter().find(|s| s.key == want).ok_or_else(|| no_status(&want, &commit))?;
        Ok(ok(StatusCode::OK, status_json(&found)))
    })
    .await
}

pub(crate) async fn repo_delete(api: Api, Path((key, slug, id)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    let (repo, _) = api.repo_async(&key, &slug, Permission::Admin, "delete build statuses in this repository").await?;
    let commit = sha(&id)?;
    let want = api.q.required("key")?.to_owned();
    api.blocking(move |api| if api.store().delete_build_status(Some(repo.id), &commit, &want)? { Ok(no_content()) } else { Err(no_status(&want, &commit)) })
        .await
}

fn no_status(key: &str, commit: &str) -> ApiError {
    ApiError::NotFound {
        exception: "com.atlassian.bitbucket.build.NoSuchBuildStatusException",
        message: format!("No build status with key {key:?} exists for commit {commit} in this repository."),
    }
}

/// `GET /rest/api/1.0/build/capabilities`: what the Jenkins Bitbucket Server integration checks
/// before it posts rich build statuses.
pub(crate) async fn capabilities() -> Response {
    ok(StatusCode::OK, json!({"buildStatus": ["richBuildStatus"]}))
}

// ---- required builds ----

fn matcher_json(m: &Matcher) -> Value {
    json!({"id": m.id(), "displayId": m.display_id(), "type": {"id": m.kind().as_str(), "name": m.kind().name()}, "active": true})
}

fn condition_json(c: &RequiredBuild) -> Value {
    let mut v = json!({"id": c.id, "buildParentKeys": c.condition.build_parent_keys, "refMatcher": matcher_json(&c.condition.ref_matcher)});
    if let Some(e) = &c.condition.exempt_ref_matcher {
        v["exemptRefMatcher"] = matcher_json(e);
    }
    v
}

fn parse_matcher(v: Option<&Value>, name: &str) -> Result<Option<Matcher>, ApiError> {
    let m = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(ApiError::invalid(
                name,
                format!("{name} must be an object such as {{\"id\": \"refs/heads/main\", \"type\": {{\"id\": \"BRANCH\"}}}}, not {other}."),
            ));
        }
    };
    let t = match m.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(t)) => t.get("id").and_then(Value::as_str).unwrap_or(""),
        _ => "",
    };
    let kind = MatcherType::parse_ref_matcher(t).ok_or_else(|| {
        ApiError::invalid(
            format!("{name}.type").as_str(),
            format!("{t:?} is not a ref matcher type; use ANY_REF, BRANCH, PATTERN, MODEL_CATEGORY or MODEL_BRANCH."),
        )
    })?;
    let id = m.get("id").and_then(Value::as_str).unwrap_or("");
    Matcher::new(kind, id).map(Some).map_err(|e| ApiError::invalid(format!("{name}.id").as_str(), e.to_string()))
}

fn parse_condition(v: &Value) -> Result<RequiredBuildSpec, ApiError> {
    let o = object(v, "A required-builds condition")?;
    let keys = match o.get("buildParentKeys") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => return Err(ApiError::invalid("buildParentKeys", "buildParentKeys must list at least one build key.")),
    };
    let mut build_parent_keys = Vec::new();
    for k in keys {
        match k.as_str() {
            Some(s) if !s.trim().is_empty() && s.chars().count() <= MAX_FIELD && !s.contains(['\n', '\r']) => build_parent_keys.push(s.to_owned()),
            _ => {
                return Err(ApiError::invalid(
                    "buildParentKeys",
                    format!("Each build key must be a non-empty string of {MAX_FIELD} characters or fewer on one line, not {k}."),
                ));
            }
        }
    }
    let ref_matcher = parse_matcher(o.get("refMatcher"), "refMatcher")?.ok_or_else(|| {
        ApiError::invalid("refMatcher", "refMatcher is required; {\"id\": \"ANY_REF_MATCHER_ID\", \"type\": {\"id\": \"ANY_REF\"}} covers every branch.")
    })?;
    Ok(RequiredBuildSpec { build_parent_keys, ref_matcher, exempt_ref_matcher: parse_matcher(o.get("exemptRefMatcher"), "exemptRefMatcher")? })
}

fn no_condition(id: &str) -> ApiError {
    ApiError::NotFound {
        exception: "com.atlassian.bitbucket.build.requiredbuilds.NoSuchRequiredBuildConditionException",
        message: format!("Required build condition {id} does not exist in this repository."),
    }
}

async fn conditions(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    api.blocking(move |api| {
        let (repo, _) = api.repo(&key, &slug, Permission::Read, "see this repository")?;
        let all = api.store().required_builds(repo.id)?;
        Ok(ok(StatusCode::OK, paged(all.iter().map(condition_json).collect(), page)))
    })
    .await
}

async fn condition_create(api: Api, Path((key, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let (repo, _) = api.repo_async(&key, &slug, Permission::Admin, "change the required builds of this repository").await?;
    let spec = parse_condition(&parse_body::<Value>(body)?)?;
    api.blocking(move |api| {
        let made = api.store().insert_required_build(repo.id, &spec)?;
        api.audit(
            Action::PrSettingsUpdate,
            &audit::target::repo(&repo),
            json!({"requiredBuild": made.id, "buildParentKeys": made.condition.build_parent_keys}),
        );
        Ok(ok(StatusCode::OK, condition_json(&made)))
    })
    .await
}

/// The condition `id` of `repo`: one of another repository is not found here.
fn condition_of(api: &Api, repo: &Repo, id: &str) -> Result<RequiredBuild, ApiError> {
    let n: i64 = id.parse().map_err(|_| no_condition(id))?;
    api.store().required_build(n)?.filter(|c| c.repo == repo.id).ok_or_else(|| no_condition(id))
}

async fn condition_update(api: Api, Path((key, slug, id)): Path<(String, String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let (repo, _) = api.repo_async(&key, &slug, Permission::Admin, "change the required builds of this repository").await?;
    let spec = parse_condition(&parse_body::<Value>(body)?)?;
    api.blocking(move |api| {
        let c = condition_of(api, &repo, &id)?;
        let updated = api.store().update_required_build(c.id, &spec)?.ok_or_else(|| no_condition(&id))?;
        api.audit(
            Action::PrSettingsUpdate,
            &audit::target::repo(&repo),
            json!({"requiredBuild": updated.id, "buildParentKeys": updated.condition.build_parent_keys}),
        );
        Ok(ok(StatusCode::OK, condition_json(&updated)))
    })
    .await
}

async fn condition_delete(api: Api, Path((key, slug, id)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    let (repo, _) = api.repo_async(&key, &slug, Permission::Admin, "change the required builds of this repository").await?;
    api.blocking(move |api| {
        let c = condition_of(api, &repo, &id)?;
        api.store().delete_required_build(c.id)?;
        api.audit(Action::PrSettingsUpdate, &audit::target::repo(&repo), json!({"requiredBuild": c.id, "deleted": true}));
        Ok(no_content())
    })
    .await
}

// ---- Code Insights ----

const REPORT_RESULTS: [&str; 2] = ["PASS", "FAIL"];
const DATA_TYPES: [&str; 7] = ["BOOLEAN", "DATE", "DURATION", "LINK", "NUMBER", "PERCENTAGE", "TEXT"];
const SEVERITIES: [&str; 3] = ["LOW", "MEDIUM", "HIGH"];
const ANNOTATION_TYPES: [&str; 3] = ["BUG", "CODE_SMELL", "VULNERABILITY"];

fn one_of(o: &Map<String, Value>, name: &str, allowed: &[&str], required: bool) -> Result<Option<String>, ApiError> {
    let v = text(o, name, MAX_FIELD, required)?;
    match v {
        Some(s) if !allowed.contains(&s.as_str()) => Err(ApiError::invalid(name, format!("{s:?} is not a {name} here; use one of {}.", allowed.join(", ")))),
        v => Ok(v),
    }
}

/// A report's `data`: at most 6 items, each with a title and a value of its type.
fn parse_data(v: Option<&Value>) -> Result<String, ApiError> {
    let items = match v {
        None | Some(Value::Null) => return Ok("[]".into()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(ApiError::invalid("data", format!("data must be an array of {{title, type, value}} objects, not {other}."))),
    };
    if items.len() > MAX_DATA {
        return Err(ApiError::invalid("data", format!("A report holds at most {MAX_DATA} data items; this one has {}.", items.len())));
    }
    let mut out = Vec::new();
    for item in items {
        let o = object(item, "A data item")?;
        let title = text(&o, "title", MAX_TITLE, true)
            .map_err(|_| ApiError::invalid("data.title", format!("Each data item needs a title of {MAX_TITLE} characters or fewer.")))?;
        let kind = one_of(&o, "type", &DATA_TYPES, false).map_err(|e| ApiError::invalid("data.type", e.to_string()))?;
        let value = o.get("value").cloned().unwrap_or(Value::Null);
        let fits = match (kind.as_deref(), &value) {
            (_, Value::Null) => false,
            (Some("BOOLEAN"), v) => v.is_boolean(),
            (Some("DATE" | "DURATION"), v) => v.as_i64().is_some_and(|n| n >= 0),
            (Some("NUMBER"), v) => v.is_number(),
            (Some("PERCENTAGE"), v) => v.as_f64().is_some_and(|n| (0.0..=100.0).contains(&n)),
            (Some("TEXT"), v) => v.as_str().is_some_and(|s| s.chars().count() <= MAX_DETAILS),
            (Some("LINK"), Value::Object(l)) => link(l, "href", MAX_DETAILS, true).is_ok() && text(l, "linktext", MAX_TITLE, false).is_ok(),
            (Some(_), _) => false,
            (None, v) => v.is_string() || v.is_number() || v.is_boolean(),
        };
        if !fits {
            let t = kind.as_deref().unwrap_or("untyped");
            return Err(ApiError::invalid("data.value", format!("The value of data item {:?} does not fit its type {t}: {value}.", title.unwrap_or_default())));
        }
        let mut d = json!({"title": o.get("title"), "value": value});
        if let Some(k) = kind {
            d["type"] = json!(k);
        }
        out.push(d);
    }
    Ok(Value::Array(out).to_string())
}

fn parse_report(v: &Value, repo: i64, commit: String, key: String, creator: i64) -> Result<InsightReport, ApiError> {
    let o = object(v, "A report")?;
    let now = now_ms();
    Ok(InsightReport {
        id: 0,
        repo,
        commit,
        key,
        title: text(&o, "title", MAX_TITLE, true)?.unwrap_or_default(),
        details: text(&o, "details", MAX_DETAILS, false)?,
        result: one_of(&o, "result", &REPORT_RESULTS, false)?,
        data: parse_data(o.get("data"))?,
        reporter: text(&o, "reporter", MAX_TITLE, false)?,
        link: link(&o, "link", MAX_DETAILS, false)?,
        logo_url: link(&o, "logoUrl", MAX_DETAILS, false)?,
        creator: Some(creator),
        created_at: now,
        updated_at: now,
    })
}

fn parse_annotation(v: &Value) -> Result<NewAnnotation, ApiError> {
    let o = object(v, "An annotation")?;
    let path = text(&o, "path", MAX_REF, false)?;
    if path.as_deref().is_some_and(|p| !crate::repo_read::valid_path(p)) {
        return Err(ApiError::invalid("path", format!("{:?} is not a path in the repository; write it as src/main.rs.", path.unwrap_or_default())));
    }
    let line = count(&o, "line")?.unwrap_or(0);
    Ok(NewAnnotation {
        external_id: text(&o, "externalId", MAX_TITLE, false)?,
        path,
        line,
        message: text(&o, "message", MAX_DETAILS, true)?.unwrap_or_default(),
        severity: one_of(&o, "severity", &SEVERITIES, true)?.unwrap_or_default(),
        kind: one_of(&o, "type", &ANNOTATION_TYPES, false)?,
        link: link(&o, "link", MAX_DETAILS, false)?,
    })
}

pub(crate) fn report_json(r: &InsightReport) -> Value {
    let data: Value = serde_json::from_str(&r.data).unwrap_or_else(|_| json!([]));
    let mut v = json!({"key": r.key, "title": r.title, "data": data, "createdDate": r.created_at});
    for (k, f) in [("details", &r.details), ("result", &r.result), ("reporter", &r.reporter), ("link", &r.link), ("logoUrl", &r.logo_url)] {
        if let Some(x) = f {
            v[k] = json!(x);
        }
    }
    v
}

fn annotation_json(a: &trove_store::Annotation) -> Value {
    let n = &a.annotation;
    let mut v = json!({"reportKey": a.report_key, "line": n.line, "message": n.message, "severity": n.severity});
    for (k, f) in [("externalId", &n.external_id), ("path", &n.path), ("type", &n.kind), ("link", &n.link)] {
        if let Some(x) = f {
            v[k] = json!(x);
        }
    }
    v
}

fn no_report(key: &str) -> ApiError {
    ApiError::NotFound {
        exception: "com.atlassian.bitbucket.codeinsights.report.NoSuchReportException",
        message: format!("No report with key {key:?} exists for this commit."),
    }
}

/// A report key: non-empty, at most 450 characters (it is also a path segment).
fn report_key(k: &str) -> Result<String, ApiError> {
    if k.is_empty() || k.chars().count() > MAX_TITLE || k.chars().any(char::is_control) {
        return Err(ApiError::invalid("key", format!("The report key must be 1 to {MAX_TITLE} characters without control characters.")));
    }
    Ok(k.to_owned())
}

/// The repository (with `need`) and the checked commit of an insights path; the commit must
/// exist in the repository.
async fn insight_target(api: &Api, key: &str, slug: &str, id: &str, need: Permission, what: &'static str) -> Result<(Repo, String), ApiError> {
    let (repo, _) = api.repo_async(key, slug, need, what).await?;
    let commit = sha(id)?;
    let git = crate::repo_read::Reader::new(&api.state, api.store().repo_path(&repo));
    if git.commit(&commit).await?.is_none() {
        return Err(ApiError::no_commit(&commit));
    }
    Ok((repo, commit))
}

/// The report, if the caller may change it: its creator, or a repository administrator.
fn changeable(api: &Api, repo: &Repo, commit: &str, key: &str) -> Result<InsightReport, ApiError> {
    let r = api.store().insight_report(repo.id, commit, key)?.ok_or_else(|| no_report(key))?;
    let me = api.user().map(|u| u.id);
    let admin = api.cap_allows(Permission::Admin) && api.store().permission(api.who.as_ref(), repo)?.is_some_and(|p| p >= Permission::Admin);
    if r.creator.is_some() && r.creator == me || admin {
        Ok(r)
    } else {
        Err(ApiError::forbidden("change this report: only its creator or a repository administrator may"))
    }
}

type InsightPath = Path<(String, String, String)>;
type ReportPath = Path<(String, String, String, String)>;

async fn reports(api: Api, Path((key, slug, id)): InsightPath) -> Result<Response, ApiError> {
    let (repo, commit) = insight_target(&api, &key, &slug, &id, Permission::Read, "see this repository").await?;
    let page = api.q.page()?;
    api.blocking(move |api| Ok(ok(StatusCode::OK, paged(api.store().insight_reports(repo.id, &commit)?.iter().map(report_json).collect(), page)))).await
}

async fn report_get(api: Api, Path((key, slug, id, rk)): ReportPath) -> Result<Response, ApiError> {
    let (repo, commit) = insight_target(&api, &key, &slug, &id, Permission::Read, "see this repository").await?;
    api.blocking(move |api| Ok(ok(StatusCode::OK, report_json(&api.store().insight_report(repo.id, &commit, &rk)?.ok_or_else(|| no_report(&rk))?)))).await
}

async fn report_put(api: Api, Path((key, slug, id, rk)): ReportPath, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let me = api.require_login()?.user.id;
    let (repo, commit) = insight_target(&api, &key, &slug, &id, Permission::Read, "post reports in this repository").await?;
    let rk = report_key(&rk)?;
    let report = parse_report(&parse_body::<Value>(body)?, repo.id, commit, rk, me)?;
    api.blocking(move |api| {
        if let Some(old) = api.store().insight_report(repo.id, &report.commit, &report.key)?
            && old.creator != Some(me)
        {
            return Err(ApiError::forbidden("replace this report: only the user who created it may"));
        }
        Ok(ok(StatusCode::OK, report_json(&api.store().put_insight_report(&report)?)))
    })
    .await
}

async fn report_delete(api: Api, Path((key, slug, id, rk)): ReportPath) -> Result<Response, ApiError> {
    let (repo, commit) = insight_target(&api, &key, &slug, &id, Permission::Read, "see this repository").await?;
    api.blocking(move |api| {
        changeable(api, &repo, &commit, &rk)?;
        api.store().delete_insight_report(repo.id, &commit, &rk)?;
        Ok(no_content())
    })
    .await
}

async fn report_annotations(api: Api, Path((key, slug, id, rk)): ReportPath) -> Result<Response, ApiError> {
    let (repo, commit) = insight_target(&api, &key, &slug, &id, Permission::Read, "see this repository").await?;
    api.blocking(move |api| {
        api.store().insight_report(repo.id, &commit, &rk)?.ok_or_else(|| no_report(&rk))?;
        annotations_answer(api, &repo, &commit, Some(&rk))
    })
    .await
}

async fn commit_annotations(api: Api, Path((key, slug, id)): InsightPath) -> Result<Response, ApiError> {
    let (repo, commit) = insight_target(&api, &key, &slug, &id, Permission::Read, "see this repository").await?;
    api.blocking(move |api| annotations_answer(api, &repo, &commit, None)).await
}

/// `{annotations, totalCount}`, filtered by `?path=` and `?severity=` as Bitbucket's are.
fn annotations_answer(api: &Api, repo: &Repo, commit: &str, report: Option<&str>) -> Result<Response, ApiError> {
    let paths = api.q.all("path");
    let severities = api.q.all("severity");
    let all: Vec<Value> = api
        .store()
        .annotations(repo.id, commit, report)?
        .iter()
        .filter(|a| paths.is_empty() || a.annotation.path.as_deref().is_some_and(|p| paths.contains(&p)))
        .filter(|a| severities.is_empty() || severities.contains(&a.annotation.severity.as_str()))
        .map(annotation_json)
        .collect();
    Ok(ok(StatusCode::OK, json!({"totalCount": all.len(), "annotations": all})))
}

async fn annotations_add(api: Api, Path((key, slug, id, rk)): ReportPath, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let (repo, commit) = insight_target(&api, &key, &slug, &id, Permission::Read, "see this repository").await?;
    let v: Value = parse_body(body)?;
    let list = v.get("annotations").and_then(Value::as_array).ok_or_else(|| ApiError::invalid("annotations", "The body must be {\"annotations\": [...]}."))?;
    let new = list.iter().map(parse_annotation).collect::<Result<Vec<_>, _>>()?;
    api.blocking(move |api| {
        let r = changeable(api, &repo, &commit, &rk)?;
        if api.store().add_annotations(r.id, &new)? { Ok(no_content()) } else { Err(too_many()) }
    })
    .await
}

fn too_many() -> ApiError {
    ApiError::invalid("annotations", format!("A report holds at most {} annotations; delete some first.", trove_store::MAX_ANNOTATIONS))
}

async fn annotation_put(
    api: Api,
    Path((key, slug, id, rk, ext)): Path<(String, String, String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (repo, commit) = insight_target(&api, &key, &slug, &id, Permission::Read, "see this repository").await?;
    let a = parse_annotation(&parse_body::<Value>(body)?)?;
    if ext.chars().count() > MAX_TITLE {
        return Err(ApiError::invalid("externalId", format!("externalId must be {MAX_TITLE} characters or fewer.")));
    }
    api.blocking(move |api| {
        let r = changeable(api, &repo, &commit, &rk)?;
        if api.store().put_annotation(r.id, &ext, &a)? { Ok(no_content()) } else { Err(too_many()) }
    })
    .await
}

async fn annotations_delete(api: Api, Path((key, slug, id, rk)): ReportPath) -> Result<Response, ApiError> {
    let (repo, commit) = insight_target(&api, &key, &slug, &id, Permission::Read, "see this repository").await?;
    let ext = api.q.get("externalId").map(str::to_owned);
    api.blocking(move |api| {
        let r = changeable(api, &repo, &commit, &rk)?;
        api.store().delete_annotations(r.id, ext.as_deref())?;
        Ok(no_content())
    })
    .await
}
