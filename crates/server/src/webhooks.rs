//! Webhooks: which events exist, what their payloads are (Bitbucket Server 8's "Event payload"
//! shapes), how an event reaches the outbox in the step that makes it true, and the network rules
//! every delivery obeys. The worker that sends them is [`delivery`].
//!
//! What is rendered when (all payloads carry `eventKey`, `date` as `2026-12-03T11:34:06+0000`,
//! and `actor`, the user who made the change):
//! - `repo:refs_changed` (`repository`, `changes[]`): every accepted push, and every ref the
//!   server moved itself (a merge, a source-branch delete, a branch or tag over REST; journaled
//!   before they move, [`ServerChange`]). A push's ref updates come from the `post-receive` hook's
//!   file (the push journal, `events.rs`): the file names the repository and the pusher in its
//!   first line, git appends the updates after the refs moved, and the server removes the file
//!   only after the outbox row is written ([`journal_push`]). A file a crash left behind is
//!   turned into its event at the next start ([`recover_pushes`]); so a push that moved refs is
//!   never lost.
//! - `pr:*`: written by the pull-request store methods in the transaction of the change
//!   ([`PrEvents`]), rendered from the row as the change left it: `OPENED` and `REOPENED` →
//!   `pr:opened`; an edit of title, description or target → `pr:modified` (`previousTitle`,
//!   `previousDescription`, `previousTarget`); reviewers added or removed →
//!   `pr:reviewer:updated` (`addedReviewers`, `removedReviewers`); approve, unapprove, needs work
//!   → `pr:reviewer:approved|unapproved|needs_work` (`participant`, `previousStatus`); a rescope
//!   → `pr:from_ref_updated` (`previousFromHash`) when the source moved and `pr:to_ref_updated`
//!   (`previousToHash`) when the target moved; `pr:merged` (with `properties.mergeCommit`),
//!   `pr:declined`, `pr:deleted`; comments → `pr:comment:added|edited|deleted` (`comment`,
//!   `commentParentId` for a reply, `previousComment` on an edit).
//! - `repo:modified` (`old`, `new`: the repository) and `project:modified` (`old`, `new`: the
//!   project): a REST update (`PUT …/repos/{slug}`, `PUT /projects/{key}`) that changes what the
//!   repository's or project's JSON shows (name and slug, key, description, public, forkable),
//!   in the update's transaction; a project's event goes to the project's webhooks only.
//! - `diagnostics:ping`: only the test call (`POST …/webhooks/test`), sent at once, not stored.
//!
//! A change renders events only when a webhook of its repository or project exists as it
//! starts; a webhook receives the events of changes made after it was created.
//!
//! Network rules ([`NetworkRules`]): an administrator's allow and deny lists of networks (CIDR),
//! kept in the server settings (`webhook_networks`) so every node sees them. The most specific
//! listed network that holds an address decides (deny on a tie); an address no list holds is
//! refused when it is loopback, link-local (`169.254.0.0/16`, `fe80::/10`, the cloud metadata
//! address `169.254.169.254` among them), unspecified, multicast or broadcast, or another cloud
//! metadata address (`fd00:ec2::254`, `100.100.100.200`), and allowed otherwise: private ranges
//! are where CI servers live, so they are allowed unless denied. The rules are checked when a
//! webhook is saved (its host's addresses) and again on every connection, against the address
//! actually connected to.

pub(crate) mod delivery;

use std::cell::RefCell;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::{Value, json};
use trove_store::{Comment, NewActivity, NewEvent, PullRequest, Repo, Store, StoreError, UserName};

use crate::AppState;
use crate::api::{Api, PrUsers};
use crate::events::{PushEvent, RefUpdate};

/// Every event key a webhook may ask for, as Bitbucket Server 8 names them. Trove sends the
/// ones in [`SENT`]; the rest are accepted (clients such as Jenkins subscribe to them) and
/// never sent.
pub(crate) const EVENT_KEYS: &[&str] = &[
    "repo:refs_changed",
    "repo:modified",
    "repo:forked",
    "repo:comment:added",
    "repo:comment:edited",
    "repo:comment:deleted",
    "repo:secret_detected",
    "mirror:repo_synchronized",
    "pr:opened",
    "pr:from_ref_updated",
    "pr:to_ref_updated",
    "pr:modified",
    "pr:reviewer:updated",
    "pr:reviewer:approved",
    "pr:reviewer:unapproved",
    "pr:reviewer:needs_work",
    "pr:merged",
    "pr:declined",
    "pr:deleted",
    "pr:comment:added",
    "pr:comment:edited",
    "pr:comment:deleted",
    "project:modified",
];

/// The event keys Trove sends.
pub(crate) const SENT: &[&str] = &[
    "repo:refs_changed",
    "repo:modified",
    "project:modified",
    "pr:opened",
    "pr:from_ref_updated",
    "pr:to_ref_updated",
    "pr:modified",
    "pr:reviewer:updated",
    "pr:reviewer:approved",
    "pr:reviewer:unapproved",
    "pr:reviewer:needs_work",
    "pr:merged",
    "pr:declined",
    "pr:deleted",
    "pr:comment:added",
    "pr:comment:edited",
    "pr:comment:deleted",
];

/// The setting that holds the network rules (JSON `{"allow": [...], "deny": [...]}`).
const NETWORKS_SETTING: &str = "webhook_networks";

/// The administrator's allow and deny lists of destination networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRules {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

/// The rules as the setting keeps them.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct StoredRules {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) ip: IpAddr,
    pub(crate) why: &'static str,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {}; webhooks may not reach it unless an administrator allows it (`trove admin settings webhook-allow {}/{}`)",
            self.ip,
            self.why,
            self.ip,
            if self.ip.is_ipv4() { 32 } else { 128 }
        )
    }
}

/// What an address is, when it is refused by default.
fn default_refusal(ip: IpAddr) -> Option<&'static str> {
    let net = |s: &str| s.parse::<IpNet>().expect("valid network");
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_unspecified() || net("0.0.0.0/8").contains(&ip) {
                Some("an unspecified address")
            } else if v4 == std::net::Ipv4Addr::new(169, 254, 169, 254) || v4 == std::net::Ipv4Addr::new(100, 100, 100, 200) {
                Some("a cloud metadata address")
            } else if v4.is_link_local() {
                Some("a link-local address")
            } else if v4.is_multicast() {
                Some("a multicast address")
            } else if v4.is_broadcast() {
                Some("the broadcast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("an unspecified address")
            } else if v6 == "fd00:ec2::254".parse::<std::net::Ipv6Addr>().expect("valid") {
                Some("a cloud metadata address")
            } else if net("fe80::/10").contains(&ip) {
                Some("a link-local address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else {
                None
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl NetworkRules {
    /// Whether a webhook may connect to `ip` (see the module's documentation).
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = canonical(ip);
        let best = |list: &[IpNet]| list.iter().filter(|n| n.contains(&ip)).map(|n| n.prefix_len()).max();
        match (best(&self.allow), best(&self.deny)) {
            (Some(a), Some(d)) if a > d => return Ok(()),
            (_, Some(_)) => return Err(Refused { ip, why: "in a network an administrator denied" }),
            (Some(_), None) => return Ok(()),
            (None, None) => {}
        }
        match default_refusal(ip) {
            Some(why) => Err(Refused { ip, why }),
            None => Ok(()),
        }
    }

    /// The rules kept in the server settings (none set: empty lists).
    pub fn load(store: &Store) -> Result<NetworkRules, StoreError> {
        let stored: StoredRules = store.setting(NETWORKS_SETTING)?.and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default();
        let nets = |l: Vec<String>| l.iter().filter_map(|s| s.parse().ok()).collect();
        Ok(NetworkRules { allow: nets(stored.allow), deny: nets(stored.deny) })
    }

    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        let strings = |l: &[IpNet]| l.iter().map(|n| n.to_string()).collect();
        let text = serde_json::to_string(&StoredRules { allow: strings(&self.allow), deny: strings(&self.deny) }).unwrap_or_else(|_| "{}".into());
        store.set_setting(NETWORKS_SETTING, Some(&text))
    }

    /// Adds `net` to the allow list (and takes it off the deny list).
    pub fn allow(&mut self, net: IpNet) {
        let net = net.trunc();
        self.deny.retain(|n| *n != net);
        if !self.allow.contains(&net) {
            self.allow.push(net);
        }
    }

    /// Adds `net` to the deny list (and takes it off the allow list).
    pub fn deny(&mut self, net: IpNet) {
        let net = net.trunc();
        self.allow.retain(|n| *n != net);
        if !self.deny.contains(&net) {
            self.deny.push(net);
        }
    }

    /// Takes `net` off both lists; whether it was on one.
    pub fn remove(&mut self, net: IpNet) -> bool {
        let net = net.trunc();
        let before = self.allow.len() + self.deny.len();
        self.allow.retain(|n| *n != net);
        self.deny.retain(|n| *n != net);
        before != self.allow.len() + self.deny.len()
    }
}

/// Parses `10.0.0.0/8`, or a single address (`127.0.0.1` as `/32`).
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a network; write it as CIDR (`10.0.0.0/8`, `fd00::/8`) or an address (`192.0.2.10`)"))
}

/// Bitbucket's date: `2026-12-03T11:34:06+0000` (UTC).
pub(crate) fn date(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+0000", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second()),
        Err(_) => "1970-01-01T00:00:00+0000".into(),
    }
}

/// Whether any webhook of the repository or its project exists (active or not): without one a
/// change renders no events.
pub(crate) fn any_webhook(s: &Store, repo: &Repo) -> Result<bool, StoreError> {
    Ok(!s.webhooks(repo.project_id, Some(repo.id))?.is_empty() || !s.webhooks(repo.project_id, None)?.is_empty())
}

/// One event for the outbox, with the common fields.
fn event(repo: &Repo, key: &str, actor: &Value, at: i64, mut body: Value) -> NewEvent {
    body["eventKey"] = json!(key);
    body["date"] = json!(date(at));
    body["actor"] = actor.clone();
    NewEvent { project_id: repo.project_id, repo_id: Some(repo.id), key: key.to_owned(), payload: body.to_string() }
}

/// What a pull request's events are rendered with: read before the change's transaction, so
/// that rendering inside it reads nothing (the users that may appear are fetched first).
pub(crate) struct PrEvents {
    api: Api,
    repo: Repo,
    repo_json: Value,
    users: RefCell<PrUsers>,
}

impl PrEvents {
    /// `None` when no webhook could want the events. `users`: everyone who may appear in the
    /// payload (participants before and after, the actors, comment authors). Blocks.
    pub(crate) fn load(state: &AppState, s: &Store, repo: &Repo, users: impl IntoIterator<Item = i64>) -> Result<Option<PrEvents>, StoreError> {
        if !any_webhook(s, repo)? {
            return Ok(None);
        }
        let api = Api::background(state);
        let project = s.project_info(&repo.owner)?.ok_or_else(|| StoreError::NoSuchProject(repo.owner.to_string()))?;
        let repo_json = api.repo_json(repo, &project).map_err(|e| StoreError::NoSuchRepo(e.to_string()))?;
        let mut cache = PrUsers::default();
        for id in users {
            cache.fetch(&api, id).map_err(|e| StoreError::NoSuchUser(e.to_string()))?;
        }
        Ok(Some(PrEvents { api, repo: repo.clone(), repo_json, users: RefCell::new(cache) }))
    }

    fn user(&self, id: i64) -> Value {
        self.users.borrow_mut().cached(&self.api, id)
    }

    fn pr(&self, pr: &PullRequest) -> Value {
        crate::api::pr_json_for_event(&self.api, &mut self.users.borrow_mut(), &self.repo, &self.repo_json, pr)
    }

    fn comment(&self, pr: &PullRequest, c: &Comment) -> Value {
        crate::api::comment_json_for_event(&self.api, &mut self.users.borrow_mut(), pr, c)
    }

    /// The events of a change recorded by `acts`, from the pull request `pr` as it left it.
    pub(crate) fn for_change(&self, pr: &PullRequest, acts: &[NewActivity]) -> Vec<NewEvent> {
        let mut out = Vec::new();
        let at = crate::pull_requests::now_ms();
        for a in acts {
            let d: Value = serde_json::from_str(&a.detail).unwrap_or(Value::Null);
            let actor = self.user(a.user_id);
            let mut body = json!({"pullRequest": self.pr(pr)});
            let key = match a.action.as_str() {
                "OPENED" | "REOPENED" => "pr:opened",
                "MERGED" => "pr:merged",
                "DECLINED" => "pr:declined",
                "APPROVED" | "UNAPPROVED" | "REVIEWED" => {
                    let mut p = pr.participant(a.user_id).map(|p| crate::api::participant_json_for_event(&self.api, &mut self.users.borrow_mut(), p));
                    if p.is_none() {
                        p = Some(json!({"user": actor, "role": "PARTICIPANT", "approved": false, "status": d["status"]}));
                    }
                    body["participant"] = p.unwrap_or(Value::Null);
                    body["previousStatus"] = d.get("previousStatus").cloned().unwrap_or(json!("UNAPPROVED"));
                    match a.action.as_str() {
                        "APPROVED" => "pr:reviewer:approved",
                        "UNAPPROVED" => "pr:reviewer:unapproved",
                        _ => "pr:reviewer:needs_work",
                    }
                }
                "UPDATED" if d.get("addedReviewers").is_some() || d.get("removedReviewers").is_some() => {
                    let ids = |k: &str| d[k].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect::<Vec<_>>()).unwrap_or_default();
                    body["addedReviewers"] = Value::Array(ids("addedReviewers").into_iter().map(|id| self.user(id)).collect());
                    body["removedReviewers"] = Value::Array(ids("removedReviewers").into_iter().map(|id| self.user(id)).collect());
                    "pr:reviewer:updated"
                }
                "UPDATED" => {
                    body["previousTitle"] = d.get("previousTitle").cloned().unwrap_or_else(|| json!(pr.title));
                    body["previousDescription"] = d.get("previousDescription").cloned().unwrap_or_else(|| json!(pr.description));
                    body["previousTarget"] = match d.get("previousTarget") {
                        Some(t) => {
                            json!({"id": t["id"], "displayId": t["displayId"], "type": "BRANCH", "latestCommit": t["latestCommit"], "latestChangeset": t["latestCommit"]})
                        }
                        None => {
                            json!({"id": pr.to_ref, "displayId": crate::pull_requests::display_ref(&pr.to_ref), "type": "BRANCH", "latestCommit": pr.to_hash, "latestChangeset": pr.to_hash})
                        }
                    };
                    "pr:modified"
                }
                "RESCOPED" => {
                    if d["fromHash"] != d["previousFromHash"] {
                        let mut b = body.clone();
                        b["previousFromHash"] = d["previousFromHash"].clone();
                        out.push(event(&self.repo, "pr:from_ref_updated", &actor, at, b));
                    }
                    if d["toHash"] != d["previousToHash"] {
                        body["previousToHash"] = d["previousToHash"].clone();
                        out.push(event(&self.repo, "pr:to_ref_updated", &actor, at, body));
                    }
                    continue;
                }
                _ => continue,
            };
            out.push(event(&self.repo, key, &actor, at, body));
        }
        out
    }

    /// `pr:deleted`, rendered before the delete.
    pub(crate) fn deleted(&self, pr: &PullRequest, actor: i64) -> Vec<NewEvent> {
        let actor = self.user(actor);
        vec![event(&self.repo, "pr:deleted", &actor, crate::pull_requests::now_ms(), json!({"pullRequest": self.pr(pr)}))]
    }

    /// `pr:comment:added|edited|deleted`; `previous` is the text before an edit.
    pub(crate) fn comment_event(&self, key: &str, pr: &PullRequest, c: &Comment, actor: i64, previous: Option<&str>) -> Vec<NewEvent> {
        let actor = self.user(actor);
        let mut body = json!({"pullRequest": self.pr(pr), "comment": self.comment(pr, c)});
        if let Some(p) = c.parent_id {
            body["commentParentId"] = json!(p);
        }
        if let Some(p) = previous {
            body["previousComment"] = json!(p);
        }
        vec![event(&self.repo, key, &actor, crate::pull_requests::now_ms(), body)]
    }
}

/// What a commit comment's events (`repo:comment:added|edited|deleted`) are rendered with,
/// read before the change's transaction as [`PrEvents`] is.
pub(crate) struct CommitCommentEvents {
    repo: Repo,
    repo_json: Value,
    actor: Value,
    author: Value,
}

impl CommitCommentEvents {
    /// `None` when no webhook could want the events. Blocks.
    pub(crate) fn load(state: &AppState, s: &Store, repo: &Repo, actor: i64, author: i64) -> Result<Option<CommitCommentEvents>, StoreError> {
        if !any_webhook(s, repo)? {
            return Ok(None);
        }
        let api = Api::background(state);
        let project = s.project_info(&repo.owner)?.ok_or_else(|| StoreError::NoSuchProject(repo.owner.to_string()))?;
        let repo_json = api.repo_json(repo, &project).map_err(|e| StoreError::NoSuchRepo(e.to_string()))?;
        let mut users = PrUsers::default();
        for id in [actor, author] {
            users.fetch(&api, id).map_err(|e| StoreError::NoSuchUser(e.to_string()))?;
        }
        Ok(Some(CommitCommentEvents { repo: repo.clone(), repo_json, actor: users.cached(&api, actor), author: users.cached(&api, author) }))
    }

    /// `key`'s event for `c` as the change left it; `previous` is the text before an edit.
    pub(crate) fn event(&self, key: &str, c: &trove_store::CommitComment, previous: Option<&str>) -> Vec<NewEvent> {
        let mut comment = crate::api::commit_comment_json_for_event(c, &self.author);
        comment["properties"] = json!({"repositoryId": self.repo.id});
        let mut body = json!({"comment": comment, "repository": self.repo_json, "commit": c.commit_id});
        if let Some(p) = c.parent_id {
            body["commentParentId"] = json!(p);
        }
        if let Some(p) = previous {
            body["previousComment"] = json!(p);
        }
        vec![event(&self.repo, key, &self.actor, crate::pull_requests::now_ms(), body)]
    }
}

/// `repo:modified` (`old`, `new`: the repository before and after `update`), rendered before
/// the change, when a webhook could want it and the update changes what the JSON shows. Blocks.
pub(crate) fn repo_modified(api: &Api, repo: &Repo, project: &trove_store::ProjectInfo, update: &trove_store::RepoUpdate) -> Result<Vec<NewEvent>, StoreError> {
    let s = api.store();
    if !any_webhook(s, repo)? {
        return Ok(Vec::new());
    }
    let mut after = repo.clone();
    if let Some((name, slug)) = &update.name {
        (after.name, after.slug) = (name.clone(), slug.clone());
    }
    if let Some(p) = update.public {
        after.public = p;
    }
    let old = api.repo_json(repo, project).map_err(|e| StoreError::NoSuchRepo(e.to_string()))?;
    let mut new = api.repo_json(&after, project).map_err(|e| StoreError::NoSuchRepo(e.to_string()))?;
    if let Some(f) = update.forkable {
        new["forkable"] = json!(f);
    }
    if old == new {
        return Ok(Vec::new());
    }
    let actor = api.user().map(|u| api.user_json(u)).unwrap_or(Value::Null);
    Ok(vec![event(repo, "repo:modified", &actor, crate::pull_requests::now_ms(), json!({"old": old, "new": new}))])
}

/// `repo:forked` (`repository`: the fork as it will be named, with its `origin`), for the
/// origin's webhooks and its project's, when one could want it. Blocks.
pub(crate) fn repo_forked(api: &Api, origin: &Repo, fork: &Repo, project: &trove_store::ProjectInfo) -> Result<Vec<NewEvent>, StoreError> {
    if !any_webhook(api.store(), origin)? {
        return Ok(Vec::new());
    }
    let repository = api.repo_json(fork, project).map_err(|e| StoreError::NoSuchRepo(e.to_string()))?;
    let actor = api.user().map(|u| api.user_json(u)).unwrap_or(Value::Null);
    Ok(vec![event(origin, "repo:forked", &actor, crate::pull_requests::now_ms(), json!({"repository": repository}))])
}

/// `project:modified` (`old`, `new`), rendered before the change, when a webhook of the project
/// exists and the update changes what the JSON shows. Blocks.
pub(crate) fn project_modified(api: &Api, project: &trove_store::ProjectInfo, update: &trove_store::ProjectUpdate) -> Result<Vec<NewEvent>, StoreError> {
    let s = api.store();
    if s.webhooks(project.id, None)?.is_empty() {
        return Ok(Vec::new());
    }
    let mut after = project.clone();
    if let Some(k) = &update.key {
        after.owner = trove_store::Owner::Project(k.clone());
    }
    if let Some(n) = &update.name {
        after.name = n.clone();
    }
    if let Some(d) = &update.description {
        after.description = d.clone();
    }
    if let Some(p) = update.public {
        after.public = p;
    }
    let (old, new) = (api.project_json(project), api.project_json(&after));
    if old == new {
        return Ok(Vec::new());
    }
    let actor = api.user().map(|u| api.user_json(u)).unwrap_or(Value::Null);
    let mut body = json!({"old": old, "new": new});
    body["eventKey"] = json!("project:modified");
    body["date"] = json!(date(crate::pull_requests::now_ms()));
    body["actor"] = actor;
    Ok(vec![NewEvent { project_id: project.id, repo_id: None, key: "project:modified".into(), payload: body.to_string() }])
}

/// `repo:refs_changed` for a push, if a webhook could want it. Blocks.
fn push_events(state: &AppState, s: &Store, ev: &PushEvent) -> Result<Vec<NewEvent>, StoreError> {
    let Some(repo) = s.repo_by_id(ev.repo_id)? else { return Ok(Vec::new()) };
    if !any_webhook(s, &repo)? {
        return Ok(Vec::new());
    }
    let api = Api::background(state);
    let project = s.project_info(&repo.owner)?.ok_or_else(|| StoreError::NoSuchProject(repo.owner.to_string()))?;
    let repo_json = api.repo_json(&repo, &project).map_err(|e| StoreError::NoSuchRepo(e.to_string()))?;
    let actor = match UserName::parse(&ev.user).ok().map(|n| s.user(&n)).transpose()?.flatten() {
        Some(u) => api.user_json(&u),
        None => json!({"name": ev.user, "slug": ev.user, "displayName": ev.user, "active": false, "type": "NORMAL"}),
    };
    let zero = |h: &str| h.bytes().all(|b| b == b'0');
    let changes: Vec<Value> = ev
        .updates
        .iter()
        .map(|u| {
            let kind = if u.name.starts_with("refs/tags/") { "TAG" } else { "BRANCH" };
            let change = if zero(&u.old) {
                "ADD"
            } else if zero(&u.new) {
                "DELETE"
            } else {
                "UPDATE"
            };
            json!({
                "ref": {"id": u.name, "displayId": crate::pull_requests::display_ref(&u.name), "type": kind},
                "refId": u.name, "fromHash": u.old, "toHash": u.new, "type": change,
            })
        })
        .collect();
    let body = json!({"repository": repo_json, "changes": changes});
    Ok(vec![event(&repo, "repo:refs_changed", &actor, crate::pull_requests::now_ms(), body)])
}

/// Writes a push's `repo:refs_changed` to the outbox; then the worker is woken.
pub(crate) async fn record_push(state: &AppState, ev: &PushEvent) -> Result<(), StoreError> {
    let (st, ev2) = (state.clone(), ev.clone());
    let n = state.store.run(move |s| push_events(&st, s, &ev2).and_then(|events| if events.is_empty() { Ok(0) } else { s.enqueue_events(&events) })).await?;
    if n > 0 {
        state.webhooks.wake();
    }
    Ok(())
}

/// A change the server makes to refs itself (a pull-request merge and its source branch's
/// delete, a branch or tag made or deleted over REST), journaled as a push is: before the refs
/// move, a journal file in `git-home/pushes` names the repository, the user and each ref with the
/// value it has now (`intent OLD REF` lines). [`ServerChange::finish`] writes the
/// `repo:refs_changed` event into the outbox and removes the file, then publishes the change on
/// the push bus. A crash in between leaves the file, and the next start settles it
/// ([`recover_pushes`]): each ref that no longer reads its old value is an update from that
/// value to what it reads now, and a file whose refs all read their old values (the change never
/// happened) is removed. A change known not to have happened is [`ServerChange::abandon`]ed; one
/// dropped without either (git failed in an unknown way, the task was cancelled) is settled the
/// same way at once, so an event is neither lost nor made up.
pub(crate) struct ServerChange {
    state: AppState,
    file: Option<PathBuf>,
}

impl ServerChange {
    /// Journals the refs about to change: each with the value it has now (`None`: absent).
    /// An error (the journal cannot be written) means the change must not be made.
    pub(crate) fn begin(state: &AppState, repo_id: i64, user: &str, refs: &[(&str, Option<&str>)]) -> std::io::Result<ServerChange> {
        let mut text = String::from("# server change\n");
        for (name, old) in refs {
            let zero = "0".repeat(old.map_or(40, str::len));
            text.push_str(&format!("intent {} {name}\n", old.unwrap_or(&zero)));
        }
        let file = crate::events::updates_file(state.store.git_home(), repo_id, user)?;
        let written = std::fs::OpenOptions::new().append(true).open(&file).and_then(|mut f| {
            use std::io::Write as _;
            f.write_all(text.as_bytes())
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&file);
            return Err(e);
        }
        Ok(ServerChange { state: state.clone(), file: Some(file) })
    }

    /// The change did not happen (the refs were not where it expected, a merge conflicted):
    /// the journal goes, no event.
    pub(crate) fn abandon(mut self) {
        if let Some(file) = self.file.take() {
            let _ = std::fs::remove_file(file);
        }
    }

    /// After the refs moved: `ev` (what moved) into the outbox, the journal removed, then the
    /// push bus.
    pub(crate) async fn finish(mut self, ev: PushEvent) {
        if let Some(file) = self.file.take() {
            journal_push(&self.state, &ev, &file).await;
        }
        self.state.events.publish(ev);
    }
}

impl Drop for ServerChange {
    fn drop(&mut self) {
        let Some(file) = self.file.take() else { return };
        let state = self.state.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(async move { settle(&state, &file).await })),
            // No runtime (shutdown): the file stays for the next start.
            Err(_) => tracing::warn!(journal = %file.display(), "a change the server made is left in its journal for the next start"),
        }
    }
}

/// `intent OLD REF` lines of a server change's journal.
fn parse_intents(text: &str) -> Vec<(String, String)> {
    let hex = |s: &str| (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
    text.lines()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("intent ")?.split(' ');
            let (old, name) = (parts.next()?, parts.next()?);
            (hex(old) && name.starts_with("refs/") && parts.next().is_none()).then(|| (old.to_owned(), name.to_owned()))
        })
        .collect()
}

/// One journal file into its event: a push's lines as git wrote them, a server change's intents
/// against the refs as they read now. The file stays when the repository or the outbox cannot
/// be read, for the next start; it goes when nothing moved or the repository is gone.
async fn settle(state: &AppState, path: &std::path::Path) {
    let Ok(text) = tokio::fs::read_to_string(path).await else { return };
    let Some((repo_id, user)) = parse_header(&text) else {
        let _ = tokio::fs::remove_file(path).await;
        return;
    };
    let mut updates = crate::events::parse_updates(&text);
    let intents = parse_intents(&text);
    if !intents.is_empty() {
        let repo = match state.store.run(move |s| s.repo_by_id(repo_id)).await {
            Ok(Some(repo)) => repo,
            Ok(None) => {
                let _ = tokio::fs::remove_file(path).await;
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, repo = repo_id, journal = %path.display(), "cannot settle a change the server made; it stays in its journal");
                return;
            }
        };
        let git = crate::pr_git::GitRepo::new(state, state.store.repo_path(&repo));
        for (old, name) in intents {
            match git.ref_target(&name).await {
                Ok(now) => {
                    let now = now.unwrap_or_else(|| "0".repeat(old.len()));
                    if now != old {
                        updates.push(RefUpdate { name, old, new: now });
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, repo = repo_id, journal = %path.display(), "cannot read a ref of a change the server made; it stays in its journal");
                    return;
                }
            }
        }
    }
    if updates.is_empty() {
        let _ = tokio::fs::remove_file(path).await;
        return;
    }
    let ev = PushEvent { repo_id, repo: format!("repository {repo_id}"), path: PathBuf::new(), user, updates };
    tracing::info!(repo = repo_id, refs = ev.updates.len(), "recovering a change's webhook event from its journal");
    journal_push(state, &ev, path).await;
}

/// The push journal's first line: which repository, who pushed.
pub(crate) fn journal_header(repo_id: i64, user: &str) -> String {
    format!("# trove push repo={repo_id} user={user}\n")
}

fn parse_header(text: &str) -> Option<(i64, String)> {
    let line = text.lines().next()?.strip_prefix("# trove push repo=")?;
    let (id, user) = line.split_once(" user=")?;
    Some((id.parse().ok()?, user.to_owned()))
}

/// After a push: its event into the outbox, then its journal file removed. When the outbox
/// cannot be written the file stays, and the next start writes it ([`recover_pushes`]).
pub(crate) async fn journal_push(state: &AppState, ev: &PushEvent, file: &std::path::Path) {
    match record_push(state, ev).await {
        Ok(()) => {
            let _ = tokio::fs::remove_file(file).await;
        }
        Err(e) => {
            tracing::error!(error = %e, repo = %ev.repo, journal = %file.display(), "cannot write the push's webhook event; it is kept in the journal and written at the next start")
        }
    }
}

/// At start: every journal a crash left behind (a push's or a server change's refs moved, the
/// event not yet in the outbox) becomes its `repo:refs_changed` ([`settle`]); one that moved
/// nothing is removed.
pub(crate) async fn recover_pushes(state: &AppState) {
    let dir = state.store.git_home().join("pushes");
    let Ok(mut entries) = tokio::fs::read_dir(&dir).await else { return };
    while let Ok(Some(entry)) = entries.next_entry().await {
        settle(state, &entry.path()).await;
    }
}

/// Per-node webhook state: the worker's wake-up and its settings.
pub(crate) struct WebhookService {
    wake: tokio::sync::Notify,
    pub(crate) settings: crate::config::WebhookSettings,
    tls: std::sync::OnceLock<delivery::Tls>,
}

impl WebhookService {
    pub(crate) fn new(settings: crate::config::WebhookSettings) -> WebhookService {
        WebhookService { wake: tokio::sync::Notify::new(), settings, tls: std::sync::OnceLock::new() }
    }

    /// Tells the worker that deliveries may be due now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_rules_refuse_loopback_link_local_metadata_and_multicast_and_allow_the_rest() {
        let r = NetworkRules::default();
        for refused in
            ["127.0.0.1", "127.8.9.1", "::1", "169.254.169.254", "169.254.1.1", "fe80::1", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"]
        {
            assert!(r.check(ip(refused)).is_err(), "{refused} passed");
        }
        assert_eq!(r.check(ip("::ffff:127.0.0.1")).unwrap_err().why, "a loopback address", "IPv4-mapped is its IPv4 address");
        assert_eq!(r.check(ip("169.254.169.254")).unwrap_err().why, "a cloud metadata address");
        assert_eq!(r.check(ip("fd00:ec2::254")).unwrap_err().why, "a cloud metadata address");
        for allowed in ["10.1.2.3", "192.168.1.1", "172.16.0.1", "203.0.113.9", "2001:db8::1", "fd12::1"] {
            assert!(r.check(ip(allowed)).is_ok(), "{allowed} refused");
        }
    }

    #[test]
    fn the_most_specific_listed_network_decides_and_deny_wins_a_tie() {
        let mut r = NetworkRules::default();
        r.allow(parse_network("127.0.0.0/8").unwrap());
        assert!(r.check(ip("127.0.0.1")).is_ok());
        r.deny(parse_network("10.0.0.0/8").unwrap());
        r.allow(parse_network("10.1.0.0/16").unwrap());
        assert!(r.check(ip("10.1.2.3")).is_ok(), "a narrower allow inside a deny");
        assert!(r.check(ip("10.2.0.1")).is_err());
        r.deny(parse_network("10.1.2.3").unwrap());
        assert_eq!(r.check(ip("10.1.2.3")).unwrap_err().why, "in a network an administrator denied");
        assert!(r.remove(parse_network("10.1.2.3/32").unwrap()));
        assert!(!r.remove(parse_network("10.1.2.3/32").unwrap()));
        r.deny(parse_network("127.0.0.0/8").unwrap());
        assert!(r.allow.iter().all(|n| n.to_string() != "127.0.0.0/8"), "deny takes it off the allow list");
        assert!(r.check(ip("127.0.0.1")).is_err());
        assert_eq!(parse_network("10.1.2.3/8").unwrap().to_string(), "10.1.2.3/8");
        assert!(parse_network("nope").unwrap_err().contains("CIDR"));
    }

    #[test]
    fn dates_are_bitbuckets_with_an_offset() {
        assert_eq!(date(0), "1970-01-01T00:00:00+0000");
        assert_eq!(date(1_764_761_646_123), "2025-12-03T11:34:06+0000");
    }

    #[test]
    fn a_journal_header_names_the_repository_and_the_pusher() {
        let text = format!("{}{} {} refs/heads/main\n", journal_header(42, "alice.b"), "0".repeat(40), "a".repeat(40));
        assert_eq!(parse_header(&text), Some((42, "alice.b".into())));
        assert_eq!(crate::events::parse_updates(&text).len(), 1, "the header is no update");
        assert_eq!(parse_header("0 1 refs/heads/x\n"), None);
    }
}
