//! The audit log: every change to users, groups, permissions, branch restrictions, settings,
//! tokens, projects, repositories and pull-request settings, every login (won or lost) and every push, with who,
//! from where and when, recorded through one function, [`record`] (or [`AuditLog::record`] where
//! there is no server, as in `trove admin`).
//!
//! Each entry goes two ways: a row of the store's [`trove_store::Audit`] (which the REST
//! endpoint `GET /rest/api/1.0/admin/audit` and the Administration → Audit log page read, and
//! which is pruned after `[audit] retention_days`), then one JSON line appended to `audit.log` in
//! the data directory, for log shippers. The line is one `write(2)` on a file opened with
//! `O_APPEND`, so lines from the server and from `trove admin` never interleave, and it is
//! `fdatasync`ed before [`record`] returns: an entry the caller was told about survives a crash
//! of the machine. A rotated file (moved away, as logrotate does) is noticed on the next entry,
//! which starts a new one.
//!
//! The store's methods each commit on their own and none takes a caller's transaction, so an
//! entry is appended right after the change it describes has committed, on the same thread,
//! before the caller is answered: a crash between the two loses that entry. A failure to write
//! an entry is logged (`ERROR`) and does not undo or fail the change.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use trove_store::{NewAuditEntry, Store, StoreError};

use crate::events::PushEvent;
use crate::{AppState, Shared};

/// The file in the data directory.
pub const FILE_NAME: &str = "audit.log";

/// How often the database's old entries are pruned: once a day (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(24 * 3600);
const DAY_MS: i64 = 24 * 3600 * 1000;

/// What an entry records. The names are what the REST endpoint, the page and the file show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    LoginSuccess,
    LoginFailure,
    Logout,
    UserCreate,
    /// Display name, e-mail address, or enabled/disabled.
    UserUpdate,
    UserDelete,
    UserPassword,
    /// Failed logins and the lock cleared.
    UserUnlock,
    GroupCreate,
    GroupDelete,
    GroupMemberAdd,
    GroupMemberRemove,
    /// A permission granted or changed, at any level, to a user, a group or everyone.
    PermissionGrant,
    PermissionRevoke,
    ProjectCreate,
    ProjectUpdate,
    ProjectDelete,
    RepoCreate,
    /// Renamed, made public or private, forkable or not, a new default branch.
    RepoUpdate,
    RepoDelete,
    RepoPush,
    TokenCreate,
    TokenRevoke,
    /// A token renamed or given another scope (over REST).
    TokenUpdate,
    /// A server setting (base URL, context path).
    SettingsUpdate,
    /// A repository's or project's pull-request settings (merge checks, strategies).
    PrSettingsUpdate,
    /// A branch permission (restriction) added at a project or a repository.
    RestrictionCreate,
    RestrictionDelete,
    /// A webhook added, changed or deleted at a project or a repository.
    WebhookCreate,
    WebhookUpdate,
    WebhookDelete,
    /// A user's SSH key added or deleted.
    SshKeyAdd,
    SshKeyDelete,
    /// An access key granted on a project or repository, or its grant removed.
    AccessKeyAdd,
    AccessKeyRemove,
    /// Old entries deleted from the database by the retention.
    AuditPrune,
}

impl Action {
    pub const ALL: &'static [Action] = &[
        Action::LoginSuccess,
        Action::LoginFailure,
        Action::Logout,
        Action::UserCreate,
        Action::UserUpdate,
        Action::UserDelete,
        Action::UserPassword,
        Action::UserUnlock,
        Action::GroupCreate,
        Action::GroupDelete,
        Action::GroupMemberAdd,
        Action::GroupMemberRemove,
        Action::PermissionGrant,
        Action::PermissionRevoke,
        Action::ProjectCreate,
        Action::ProjectUpdate,
        Action::ProjectDelete,
        Action::RepoCreate,
        Action::RepoUpdate,
        Action::RepoDelete,
        Action::RepoPush,
        Action::TokenCreate,
        Action::TokenRevoke,
        Action::TokenUpdate,
        Action::SettingsUpdate,
        Action::PrSettingsUpdate,
        Action::RestrictionCreate,
        Action::RestrictionDelete,
        Action::WebhookCreate,
        Action::WebhookUpdate,
        Action::WebhookDelete,
        Action::SshKeyAdd,
        Action::SshKeyDelete,
        Action::AccessKeyAdd,
        Action::AccessKeyRemove,
        Action::AuditPrune,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::LoginSuccess => "login.success",
            Action::LoginFailure => "login.failure",
            Action::Logout => "logout",
            Action::UserCreate => "user.create",
            Action::UserUpdate => "user.update",
            Action::UserDelete => "user.delete",
            Action::UserPassword => "user.password",
            Action::UserUnlock => "user.unlock",
            Action::GroupCreate => "group.create",
            Action::GroupDelete => "group.delete",
            Action::GroupMemberAdd => "group.member.add",
            Action::GroupMemberRemove => "group.member.remove",
            Action::PermissionGrant => "permission.grant",
            Action::PermissionRevoke => "permission.revoke",
            Action::ProjectCreate => "project.create",
            Action::ProjectUpdate => "project.update",
            Action::ProjectDelete => "project.delete",
            Action::RepoCreate => "repo.create",
            Action::RepoUpdate => "repo.update",
            Action::RepoDelete => "repo.delete",
            Action::RepoPush => "repo.push",
            Action::TokenCreate => "token.create",
            Action::TokenRevoke => "token.revoke",
            Action::TokenUpdate => "token.update",
            Action::SettingsUpdate => "settings.update",
            Action::PrSettingsUpdate => "pull-request-settings.update",
            Action::RestrictionCreate => "branch-restriction.create",
            Action::RestrictionDelete => "branch-restriction.delete",
            Action::WebhookCreate => "webhook.create",
            Action::WebhookUpdate => "webhook.update",
            Action::WebhookDelete => "webhook.delete",
            Action::SshKeyAdd => "ssh-key.add",
            Action::SshKeyDelete => "ssh-key.delete",
            Action::AccessKeyAdd => "access-key.add",
            Action::AccessKeyRemove => "access-key.remove",
            Action::AuditPrune => "audit.prune",
        }
    }
}

/// How targets are written, so that a filter for a name finds every entry about it: `user:alice`,
/// `group:devs`, `project:TP`, `repo:TP/test`, and a grant as the thing and the grantee
/// (`repo:TP/test user:alice`).
pub mod target {
    use trove_store::{Owner, Repo};

    pub fn user(name: impl std::fmt::Display) -> String {
        format!("user:{name}")
    }

    pub fn group(name: impl std::fmt::Display) -> String {
        format!("group:{name}")
    }

    pub fn project(owner: &Owner) -> String {
        format!("project:{owner}")
    }

    pub fn repo(repo: &Repo) -> String {
        format!("repo:{}", repo.display_path())
    }

    pub fn repo_path(owner: &Owner, slug: impl std::fmt::Display) -> String {
        format!("repo:{owner}/{slug}")
    }

    pub fn setting(key: &str) -> String {
        format!("setting:{key}")
    }
}

/// One line of `audit.log`, in this order.
#[derive(Serialize)]
struct Line<'a> {
    time: &'a str,
    actor: &'a str,
    address: Option<&'a str>,
    action: &'a str,
    target: &'a str,
    details: &'a Value,
}

/// The open file and which file it is, to notice a rotation.
struct Open {
    file: Arc<File>,
    id: (u64, u64),
}

/// Writes entries: the store's row and the file's line. One per process (the server's, or
/// `trove admin`'s); the mutex orders this process's lines, `O_APPEND` every process's.
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<Option<Open>>,
    /// When each successful login (user, channel, method, token, address) was last written, for
    /// [`AuditLog::first_login_in_window`].
    logins: Mutex<HashMap<String, i64>>,
}

/// A successful login of the same user, channel, method, token and address within this long of
/// the one written is not written again (10 minutes): a CI agent's every request carries
/// credentials, and an entry (a database row synced to disk) per request would be most of what
/// the request costs, and most of the log.
pub const LOGIN_SUCCESS_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Logins remembered for that; past it the oldest go (then all, if they are all recent).
const MAX_LOGINS_REMEMBERED: usize = 10_000;

impl AuditLog {
    /// The audit log of the data directory `data_dir` (the file is made on the first entry,
    /// readable by its owner only: it names users and their addresses).
    pub fn new(data_dir: &Path) -> AuditLog {
        AuditLog { path: data_dir.join(FILE_NAME), file: Mutex::new(None), logins: Mutex::default() }
    }

    /// Whether a successful login described by `key` should be written at `now` (Unix ms): the
    /// first one, or the first [`LOGIN_SUCCESS_WINDOW_MS`] after the last one written.
    pub(crate) fn first_login_in_window(&self, key: String, now: i64) -> bool {
        let mut seen = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        if seen.get(&key).is_some_and(|at| now - at < LOGIN_SUCCESS_WINDOW_MS) {
            return false;
        }
        if seen.len() >= MAX_LOGINS_REMEMBERED {
            seen.retain(|_, at| now - *at < LOGIN_SUCCESS_WINDOW_MS);
            if seen.len() >= MAX_LOGINS_REMEMBERED {
                seen.clear();
            }
        }
        seen.insert(key, now);
        true
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one entry (see the module's documentation): `actor` did `action` to `target`
    /// from `address`, with `details` (a JSON object; never put a secret in it). Blocks on the
    /// database and the disk: call it on the store's blocking pool.
    pub fn record(&self, store: &Store, actor: &str, address: Option<IpAddr>, action: Action, target: &str, details: Value) {
        let at = now_ms();
        let details = match details {
            Value::Object(_) => details,
            Value::Null => json!({}),
            other => json!({ "value": other }),
        };
        let address = address.map(|a| a.to_string());
        // A failed login's actor is whatever name was tried: keep a bound on what it may write.
        let (actor, target) = (clip(actor), clip(target));
        let entry = NewAuditEntry {
            at,
            actor: actor.to_owned(),
            address: address.clone(),
            action: action.as_str().to_owned(),
            target: target.to_owned(),
            details: details.to_string(),
        };
        if let Err(e) = store.append_audit(&entry) {
            tracing::error!(error = %e, action = action.as_str(), %actor, %target, "cannot write an audit log entry to the database");
        }
        let time = iso8601(at);
        let line = Line { time: &time, actor, address: address.as_deref(), action: action.as_str(), target, details: &details };
        let text = serde_json::to_string(&line).unwrap_or_default();
        if let Err(e) = self.append(&text) {
            tracing::error!(error = %e, path = %self.path.display(), action = action.as_str(), %actor, %target, "cannot write an audit log entry to the file");
        }
    }

    fn append(&self, line: &str) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let file = {
            let mut slot = self.file.lock().unwrap_or_else(|e| e.into_inner());
            // Rotated away (or deleted): the path names another file, or none; start a new one.
            let now = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
            if slot.as_ref().is_none_or(|o| Some(o.id) != now) {
                let file = std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(&self.path)?;
                let meta = file.metadata()?;
                *slot = Some(Open { file: Arc::new(file), id: (meta.dev(), meta.ino()) });
            }
            let open = slot.as_ref().expect("opened above");
            // One write(2) for the line (a short write to a regular file only happens when the
            // disk is full, and write_all then fails with it).
            (&*open.file).write_all(&bytes)?;
            open.file.clone()
        };
        // Outside the lock, so that entries written at once share their flush.
        file.sync_data()
    }
}

/// At most 256 characters of `s`.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(256) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Records one entry through the server's audit log; see [`AuditLog::record`].
pub(crate) fn record(state: &Shared, actor: &str, address: Option<IpAddr>, action: Action, target: &str, details: Value) {
    state.audit.record(&state.store, actor, address, action, target, details)
}

/// The push event's entry, written on the store's blocking pool (a bus subscriber must return at
/// once). The event carries no client address.
pub(crate) fn push_recorder(audit: Arc<AuditLog>, store: Store, tasks: crate::tasks::Tasks) -> impl Fn(&Arc<PushEvent>) + Send + Sync + 'static {
    move |ev| {
        let (audit, ev) = (audit.clone(), ev.clone());
        let store = store.clone();
        tasks.spawn(async move {
            store
                .run(move |s| {
                    let refs: Vec<Value> = ev.updates.iter().map(|u| json!({"ref": u.name, "old": u.old, "new": u.new})).collect();
                    audit.record(s, &ev.user, None, Action::RepoPush, &format!("repo:{}", ev.repo), json!({ "refs": refs }));
                })
                .await
        });
    }
}

/// Deletes the entries older than `retention_days` (none when 0) as of `now` (Unix ms), and
/// records that it did, when it deleted any; how many went.
pub(crate) fn prune(audit: &AuditLog, store: &Store, retention_days: u32, now: i64) -> Result<u64, StoreError> {
    if retention_days == 0 {
        return Ok(0);
    }
    let before = now.saturating_sub(i64::from(retention_days) * DAY_MS);
    let deleted = store.delete_audit_before(before)?;
    if deleted > 0 {
        let details = json!({"deleted": deleted, "retentionDays": retention_days, "before": iso8601(before)});
        audit.record(store, "system", None, Action::AuditPrune, "audit", details);
    }
    Ok(deleted)
}

/// Starts the daily pruning on the server's task tracker: once now, then every day, until the
/// server shuts down. With `retention_days = 0` there is nothing to prune and no task.
pub(crate) fn start_pruning(state: &AppState) {
    let days = state.audit_retention_days;
    if days == 0 {
        return;
    }
    let (audit, store, closing) = (state.audit.clone(), state.store.clone(), state.tasks.closing().clone());
    state.tasks.spawn(async move {
        loop {
            let (a, s) = (audit.clone(), store.clone());
            match s.run(move |s| prune(&a, s, days, now_ms())).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, retention_days = days, "pruned old audit log entries"),
                Err(e) => tracing::warn!(error = %e, "cannot prune old audit log entries; trying again tomorrow"),
            }
            tokio::select! {
                _ = tokio::time::sleep(PRUNE_EVERY) => {}
                _ = closing.cancelled() => break,
            }
        }
    });
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `2026-12-02T17:18:05.123Z`: ISO 8601 in UTC, to the millisecond.
pub fn iso8601(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => {
            format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second(), t.millisecond())
        }
        // Outside the calendar `time` knows: say what it is rather than guess.
        Err(_) => format!("@{ms}ms"),
    }
}

/// A time as a caller gives it: Unix milliseconds (`1733150285123`), a date (`2026-12-02`,
/// midnight UTC) or a date and time in UTC (`2026-12-02T17:18`, `…:05`, `…:05.123`, with or
/// without a final `Z`). `None` for anything else.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')).unwrap_or(s);
    let (date, clock) = match s.split_once(['T', 't', ' ']) {
        Some((d, c)) => (d, Some(c)),
        None => (s, None),
    };
    let num = |p: &str, len: usize| if p.len() == len && p.bytes().all(|b| b.is_ascii_digit()) { p.parse::<u32>().ok() } else { None };
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    if d.next().is_some() {
        return None;
    }
    let date = time::Date::from_calendar_date(y as i32, time::Month::try_from(m as u8).ok()?, day as u8).ok()?;
    let (mut h, mut min, mut sec, mut ms) = (0, 0, 0, 0);
    if let Some(c) = clock {
        let (hms, frac) = match c.split_once('.') {
            Some((a, f)) => (a, Some(f)),
            None => (c, None),
        };
        let mut p = hms.split(':');
        h = num(p.next()?, 2)?;
        min = num(p.next()?, 2)?;
        if let Some(x) = p.next() {
            sec = num(x, 2)?;
        }
        if p.next().is_some() {
            return None;
        }
        if let Some(f) = frac {
            if f.is_empty() || f.len() > 3 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            ms = format!("{f:0<3}").parse().ok()?;
        }
    }
    let t = time::Time::from_hms_milli(h as u8, min as u8, sec as u8, ms).ok()?;
    let dt = time::PrimitiveDateTime::new(date, t).assume_utc();
    Some((dt.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_store::AuditQuery;

    #[test]
    fn times_print_as_iso_8601_utc_and_parse_back_in_every_accepted_form() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_796_000_000_123), "2026-11-30T00:53:20.123Z");
        let cases: &[(&str, Option<i64>)] = &[
            ("1796000000123", Some(1_796_000_000_123)),
            ("2026-11-30T00:53:20.123Z", Some(1_796_000_000_123)),
            ("2026-11-30T00:53:20.1Z", Some(1_796_000_000_100)),
            ("2026-11-30T00:53:20Z", Some(1_796_000_000_000)),
            ("2026-11-30T00:53:20", Some(1_796_000_000_000)),
            ("2026-11-30 00:53", Some(1_795_999_980_000)),
            ("2026-11-30", Some(1_795_996_800_000)),
            ("2000-02-29", Some(951_782_400_000)),
            ("2001-02-29", None),
            ("2026-13-01", None),
            ("2026-11-30T25:00", None),
            ("2026-11-30T00:53:20.1234Z", None),
            ("26-11-30", None),
            ("yesterday", None),
            ("", None),
            ("-5", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_time(input), *want, "{input:?}");
        }
    }

    #[test]
    fn an_entry_goes_to_the_database_and_one_json_line_and_a_rotated_file_is_started_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::new(store.data_dir());
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        log.record(&store, "admin", Some(ip), Action::UserCreate, "user:alice", json!({"global": "LICENSED_USER"}));
        log.record(&store, "cli:root", None, Action::SettingsUpdate, "setting:base_url", Value::Null);
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["actor"], "admin");
        assert_eq!(lines[0]["address"], "192.0.2.9");
        assert_eq!(lines[0]["action"], "user.create");
        assert_eq!(lines[0]["target"], "user:alice");
        assert_eq!(lines[0]["details"], json!({"global": "LICENSED_USER"}));
        assert!(lines[1]["address"].is_null() && lines[1]["details"] == json!({}));
        let keys: Vec<&str> = text.lines().next().unwrap().split("\":").map(|k| k.rsplit('"').next().unwrap()).collect();
        assert_eq!(&keys[..6], ["time", "actor", "address", "action", "target", "details"], "the documented order");
        let rows = store.audit_entries(&AuditQuery { oldest_first: true, ..AuditQuery::default() }).unwrap().0;
        assert_eq!(rows.len(), 2);
        assert_eq!(iso8601(rows[0].at), lines[0]["time"].as_str().unwrap(), "one time for both");
        assert_eq!((rows[0].address.as_deref(), rows[0].details.as_str()), (Some("192.0.2.9"), r#"{"global":"LICENSED_USER"}"#));
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(log.path()).unwrap().permissions().mode() & 0o777, 0o600);
        // logrotate moves the file away: the next entry starts a new one, the old one keeps its lines.
        let rotated = dir.path().join("audit.log.1");
        std::fs::rename(log.path(), &rotated).unwrap();
        log.record(&store, "admin", None, Action::UserDelete, "user:alice", json!({}));
        assert_eq!(std::fs::read_to_string(&rotated).unwrap().lines().count(), 2);
        assert_eq!(std::fs::read_to_string(log.path()).unwrap().lines().count(), 1);
    }

    #[test]
    fn writers_at_once_in_two_processes_never_interleave_lines() {
        // Two `AuditLog`s on one file stand for the server and `trove admin`.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let logs = [Arc::new(AuditLog::new(store.data_dir())), Arc::new(AuditLog::new(store.data_dir()))];
        let big = "x".repeat(5000);
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (log, store, big) = (logs[t % 2].clone(), store.clone(), big.clone());
                std::thread::spawn(move || {
                    for i in 0..25 {
                        log.record(&store, &format!("t{t}"), None, Action::UserUpdate, &format!("user:u{i}"), json!({ "pad": big }));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let text = std::fs::read_to_string(logs[0].path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 100);
        for l in lines {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("a broken line ({e}): {}", &l[..80.min(l.len())]));
            assert_eq!(v["details"]["pad"].as_str().map(str::len), Some(5000));
        }
    }

    #[test]
    fn pruning_keeps_the_retention_deletes_the_rest_and_says_so_and_zero_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::new(store.data_dir());
        let now = now_ms();
        for (days_ago, target) in [(100, "user:old"), (91, "user:older-than-90"), (89, "user:recent"), (0, "user:today")] {
            let e = NewAuditEntry {
                at: now - days_ago * DAY_MS,
                actor: "admin".into(),
                address: None,
                action: "user.create".into(),
                target: target.into(),
                details: "{}".into(),
            };
            store.append_audit(&e).unwrap();
        }
        assert_eq!(prune(&log, &store, 0, now).unwrap(), 0, "0 keeps everything");
        assert_eq!(prune(&log, &store, 90, now).unwrap(), 2);
        let left = store.audit_entries(&AuditQuery { oldest_first: true, ..AuditQuery::default() }).unwrap().0;
        let targets: Vec<&str> = left.iter().map(|e| e.target.as_str()).collect();
        assert_eq!(targets, ["user:recent", "user:today", "audit"]);
        let said = &left[2];
        assert_eq!((said.actor.as_str(), said.action.as_str()), ("system", "audit.prune"));
        assert_eq!(serde_json::from_str::<Value>(&said.details).unwrap()["deleted"], 2);
        assert_eq!(prune(&log, &store, 90, now).unwrap(), 0, "nothing more, and no entry saying so");
        assert_eq!(store.audit_entries(&AuditQuery::default()).unwrap().0.len(), 3);
    }

    #[test]
    fn every_action_has_its_own_name() {
        let names: std::collections::HashSet<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), Action::ALL.len());
    }
}
