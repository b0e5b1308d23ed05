//! The audit log's rows: who did what to what, from where, and when; appended, read back with
//! filters a page at a time, and pruned by age.
//!
//! The store keeps rows and knows nothing of what the actions mean: the server decides what is
//! recorded (and writes the same entry to its `audit.log` file). Entries are never changed;
//! they leave only when older than the retention the server is given.

use crate::error::StoreError;

/// One entry to append. `details` is a JSON object, kept as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    /// Unix milliseconds.
    pub at: i64,
    /// Who acted: a user name, `cli:<os user>`, `system`, or (a failed login) the name tried.
    pub actor: String,
    /// The client's address as the trusted proxies reported it, if there was a client.
    pub address: Option<String>,
    /// What was done, like `user.create` or `login.failure`.
    pub action: String,
    /// What it was done to, like `user:alice` or `repo:TP/test user:bob`.
    pub target: String,
    /// A JSON object with what else is worth knowing (never a secret).
    pub details: String,
}

/// A stored entry: what was appended, with its id (rising in the order entries were appended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub address: Option<String>,
    pub action: String,
    pub target: String,
    pub details: String,
}

/// Which entries to read, and which page of them. Every filter given must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// The actor, exactly.
    pub actor: Option<String>,
    /// The action, exactly; or, ending in `*`, every action starting with what comes before it
    /// (`user.*`).
    pub action: Option<String>,
    /// Part of the target, ignoring case (`alice` finds `user:alice` and `project:TP user:alice`).
    pub target: Option<String>,
    /// At or after this time (Unix milliseconds).
    pub from: Option<i64>,
    /// At or before this time (Unix milliseconds).
    pub to: Option<i64>,
    /// Oldest first; default newest first.
    pub oldest_first: bool,
    pub start: usize,
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery { actor: None, action: None, target: None, from: None, to: None, oldest_first: false, start: 0, limit: 25 }
    }
}

impl AuditQuery {
    /// The action filter as SQL wants it: `(exact, prefix)`, one of them set.
    pub(crate) fn action_match(&self) -> (Option<&str>, Option<&str>) {
        match self.action.as_deref() {
            Some(a) => match a.strip_suffix('*') {
                Some(prefix) => (None, Some(prefix)),
                None => (Some(a), None),
            },
            None => (None, None),
        }
    }
}

/// The rows of the audit log.
pub trait Audit {
    /// Appends an entry; its id.
    fn append_audit(&self, entry: &NewAuditEntry) -> Result<i64, StoreError>;
    /// One page of the entries `q` finds, in the order it asks for (ties in time by id), and
    /// whether more follow.
    fn audit_entries(&self, q: &AuditQuery) -> Result<(Vec<AuditEntry>, bool), StoreError>;
    /// Deletes every entry older than `before` (Unix milliseconds); how many went.
    fn delete_audit_before(&self, before: i64) -> Result<u64, StoreError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::backends;

    fn entry(at: i64, actor: &str, action: &str, target: &str) -> NewAuditEntry {
        NewAuditEntry {
            at,
            actor: actor.into(),
            address: Some("192.0.2.7".into()),
            action: action.into(),
            target: target.into(),
            details: r#"{"k":"v"}"#.into(),
        }
    }

    fn ids(page: &(Vec<AuditEntry>, bool)) -> Vec<i64> {
        page.0.iter().map(|e| e.id).collect()
    }

    #[test]
    pub(crate) fn entries_come_back_as_appended_newest_first_by_default_and_page_in_order() {
        let (_d, s) = backends::store();
        let mut appended = Vec::new();
        for i in 0..7 {
            // Two at each time: order within the same millisecond is the order of appending.
            appended.push(s.append_audit(&entry(1_000 + i / 2, "admin", "user.create", &format!("user:u{i}"))).unwrap());
        }
        assert!(appended.windows(2).all(|w| w[0] < w[1]), "ids rise: {appended:?}");
        let all = s.audit_entries(&AuditQuery { limit: 100, ..AuditQuery::default() }).unwrap();
        assert_eq!(ids(&all), appended.iter().rev().copied().collect::<Vec<_>>());
        assert!(!all.1);
        let first = &all.0[6];
        assert_eq!((first.at, first.actor.as_str(), first.address.as_deref()), (1_000, "admin", Some("192.0.2.7")));
        assert_eq!((first.action.as_str(), first.target.as_str(), first.details.as_str()), ("user.create", "user:u0", r#"{"k":"v"}"#));
        // Pages, oldest first: 3, 3, 1.
        let page = |start| s.audit_entries(&AuditQuery { oldest_first: true, start, limit: 3, ..AuditQuery::default() }).unwrap();
        let (p1, p2, p3) = (page(0), page(3), page(6));
        assert_eq!((ids(&p1), p1.1), (appended[0..3].to_vec(), true));
        assert_eq!((ids(&p2), p2.1), (appended[3..6].to_vec(), true));
        assert_eq!((ids(&p3), p3.1), (appended[6..].to_vec(), false));
        assert!(page(7).0.is_empty());
        // A missing address stays missing.
        let id = s.append_audit(&NewAuditEntry { address: None, ..entry(2_000, "cli:root", "settings.update", "setting:base_url") }).unwrap();
        let newest = s.audit_entries(&AuditQuery { limit: 1, ..AuditQuery::default() }).unwrap();
        assert_eq!((newest.0[0].id, newest.0[0].address.clone()), (id, None));
    }

    #[test]
    pub(crate) fn filters_select_by_actor_action_target_and_time_together() {
        let (_d, s) = backends::store();
        let a = s.append_audit(&entry(1_000, "admin", "user.create", "user:alice")).unwrap();
        let b = s.append_audit(&entry(2_000, "admin", "permission.grant", "project:TP user:Alice")).unwrap();
        let c = s.append_audit(&entry(3_000, "bob", "login.failure", "user:bob")).unwrap();
        let d = s.append_audit(&entry(4_000, "admin", "user.delete", "user:alice")).unwrap();
        let find = |q: AuditQuery| ids(&s.audit_entries(&AuditQuery { oldest_first: true, limit: 100, ..q }).unwrap());
        assert_eq!(find(AuditQuery { actor: Some("admin".into()), ..AuditQuery::default() }), [a, b, d]);
        assert_eq!(find(AuditQuery { actor: Some("adm".into()), ..AuditQuery::default() }), Vec::<i64>::new(), "the actor matches whole");
        assert_eq!(find(AuditQuery { action: Some("user.create".into()), ..AuditQuery::default() }), [a]);
        assert_eq!(find(AuditQuery { action: Some("user.*".into()), ..AuditQuery::default() }), [a, d]);
        assert_eq!(find(AuditQuery { action: Some("user".into()), ..AuditQuery::default() }), Vec::<i64>::new(), "no prefix without *");
        assert_eq!(find(AuditQuery { target: Some("ALICE".into()), ..AuditQuery::default() }), [a, b, d], "a part of the target, any case");
        assert_eq!(find(AuditQuery { target: Some("%".into()), ..AuditQuery::default() }), Vec::<i64>::new(), "no wildcards in the target");
        assert_eq!(find(AuditQuery { from: Some(2_000), to: Some(3_000), ..AuditQuery::default() }), [b, c], "both ends included");
        let q = AuditQuery { actor: Some("admin".into()), target: Some("alice".into()), from: Some(1_500), ..AuditQuery::default() };
        assert_eq!(find(q), [b, d]);
    }

    #[test]
    pub(crate) fn pruning_deletes_only_older_entries_and_ids_are_never_given_again() {
        let (_d, s) = backends::store();
        let old = s.append_audit(&entry(1_000, "admin", "user.create", "user:a")).unwrap();
        s.append_audit(&entry(1_999, "admin", "user.create", "user:b")).unwrap();
        let kept = s.append_audit(&entry(2_000, "admin", "user.create", "user:c")).unwrap();
        assert_eq!(s.delete_audit_before(2_000).unwrap(), 2);
        assert_eq!(s.delete_audit_before(2_000).unwrap(), 0);
        let left = s.audit_entries(&AuditQuery::default()).unwrap();
        assert_eq!(ids(&left), [kept]);
        // Everything pruned: a new entry still gets an id above every old one.
        assert_eq!(s.delete_audit_before(i64::MAX).unwrap(), 1);
        let next = s.append_audit(&entry(3_000, "admin", "user.create", "user:d")).unwrap();
        assert!(next > kept && kept > old, "{next} after {kept}");
    }
}
