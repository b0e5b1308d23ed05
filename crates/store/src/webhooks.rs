//! Webhooks: their rows (on a project or on one repository), the event outbox, and one
//! delivery per webhook and event, claimed by a server node, retried, and finished.
//!
//! An event is written by the change that makes it true, in the same transaction: the
//! pull-request methods take an `events` renderer ([`Render`]) that they call with the row as the
//! change left it, and [`Webhooks::enqueue_events`] writes a push's events. Writing an event fans
//! it out, at once, into a pending delivery for every active webhook of the event's repository
//! and of its project that asks for its key; an event that no webhook wants is not kept.
//!
//! Order: events of one repository (of one project, for project events) form a *lane*; writing
//! an event first takes the lane's row lock (`webhook_lanes`), so event and delivery ids rise in
//! the order the transactions commit. A node claims only the oldest pending delivery of each
//! webhook's lane ([`Webhooks::claim_deliveries`]), so a webhook sees a repository's events in
//! order, one at a time. A claim is a lease (`claimed_by`, `claim_expiry`): a node that dies
//! mid-delivery loses it when it expires and another node delivers again (at least once).
//!
//! The circuit breaker lives on the webhook's row: consecutive failures, and the time it is paused
//! until; the server decides the numbers. Times are Unix milliseconds.

use crate::error::StoreError;

/// A webhook to create, or what an update sets (all of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    /// The project, also for a repository's webhook (its repository's project).
    pub project_id: i64,
    /// The repository, for a repository's webhook; `None` for a project's.
    pub repo_id: Option<i64>,
    pub name: String,
    pub url: String,
    /// Event keys (`repo:refs_changed`, `pr:opened`, …), each once.
    pub events: Vec<String>,
    pub active: bool,
    /// The HMAC key of `X-Hub-Signature`; `None`: no signature.
    pub secret: Option<String>,
    /// Whether an `https` URL's certificate is verified. Default true.
    pub ssl_verify: bool,
    /// Basic credentials sent with every delivery (kept as given: they must be sent).
    pub username: Option<String>,
    pub password: Option<String>,
}

/// A stored webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: i64,
    pub hook: NewWebhook,
    pub created_at: i64,
    pub updated_at: i64,
    /// Failed attempts in a row (the circuit breaker's count); a success clears it.
    pub failures: i64,
    /// The breaker paused deliveries until then.
    pub paused_until: Option<i64>,
}

/// An event for the outbox: the payload is the JSON body as it will be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub project_id: i64,
    /// The repository it happened in; `None` for a project's own events (`project:modified`).
    pub repo_id: Option<i64>,
    pub key: String,
    pub payload: String,
}

/// Renders a change's events from the row as the change left it, inside its transaction. It
/// must not call the store (the transaction holds a connection).
pub type Render<'a, T> = &'a dyn Fn(&T) -> Vec<NewEvent>;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not yet delivered; due at `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: every attempt failed until the retry time ran out.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "PENDING",
            DeliveryState::Delivered => "DELIVERED",
            DeliveryState::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        match s {
            "PENDING" => Some(DeliveryState::Pending),
            "DELIVERED" => Some(DeliveryState::Delivered),
            "FAILED" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// What one attempt found (Bitbucket's invocation outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Success,
    /// Another status.
    Failure,
    /// No answer: refused address, connection, TLS, timeout.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "SUCCESS",
            Outcome::Failure => "FAILURE",
            Outcome::Error => "ERROR",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "SUCCESS" => Some(Outcome::Success),
            "FAILURE" => Some(Outcome::Failure),
            "ERROR" => Some(Outcome::Error),
            _ => None,
        }
    }
}

/// One delivery: a webhook and an event, and how its attempts went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    pub event_id: i64,
    pub event_key: String,
    /// When the event happened.
    pub event_at: i64,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last: Option<Attempt>,
}

/// One attempt's result, kept on the delivery (the last one only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at: i64,
    pub outcome: Outcome,
    /// The HTTP status, when there was an answer.
    pub status: Option<i64>,
    /// What the receiver said (the start of its body), or what went wrong.
    pub summary: String,
    pub duration_ms: i64,
}

/// A delivery a node claimed, with what it needs to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub delivery: Delivery,
    pub webhook: Webhook,
    pub payload: String,
}

/// What happens after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Delivered.
    Done,
    /// Try again at this time.
    RetryAt(i64),
    /// Give up (state FAILED).
    GiveUp,
}

/// The circuit breaker's rule, given with each finished attempt: after `threshold` failures in a
/// row the webhook pauses until `pause_until`. A threshold of 0 turns the breaker off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub threshold: i64,
    pub pause_until: i64,
}

/// Counts of a webhook's deliveries by the outcome of their last attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub success: i64,
    pub failure: i64,
    pub error: i64,
    pub pending: i64,
}

/// Events as the store keeps them: `,a,b,` so that one `instr` finds a key whole.
pub(crate) fn events_text(events: &[String]) -> String {
    format!(",{},", events.join(","))
}

pub(crate) fn events_list(text: &str) -> Vec<String> {
    text.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// The lane of an event: its repository, or (a project's own event) minus its project.
pub(crate) fn lane(e: &NewEvent) -> i64 {
    e.repo_id.unwrap_or(-e.project_id)
}

/// The rows of webhooks, the outbox and the deliveries.
pub trait Webhooks {
    fn create_webhook(&self, new: &NewWebhook) -> Result<Webhook, StoreError>;
    fn webhook(&self, id: i64) -> Result<Option<Webhook>, StoreError>;
    /// The webhooks of a project (`repo_id` `None`) or of one repository, oldest first.
    fn webhooks(&self, project_id: i64, repo_id: Option<i64>) -> Result<Vec<Webhook>, StoreError>;
    /// Replaces what `new` holds (the scope stays); `None` when there is no such webhook.
    fn update_webhook(&self, id: i64, new: &NewWebhook) -> Result<Option<Webhook>, StoreError>;
    /// Deletes it with its deliveries; whether it existed.
    fn delete_webhook(&self, id: i64) -> Result<bool, StoreError>;

    /// Writes events (a push's) and their deliveries in one transaction; how many deliveries.
    fn enqueue_events(&self, events: &[NewEvent]) -> Result<usize, StoreError>;
    /// Claims up to `limit` due deliveries for `node` until `now + lease_ms`: per webhook and
    /// lane only the oldest pending one, and none of a paused or inactive webhook.
    fn claim_deliveries(&self, node: &str, now: i64, lease_ms: i64, limit: usize) -> Result<Vec<Claimed>, StoreError>;
    /// Records an attempt of a delivery `node` holds, and what follows; false when the claim was
    /// lost (expired and taken by another node), and nothing was changed.
    fn finish_delivery(&self, id: i64, node: &str, attempt: &Attempt, next: Next, breaker: Breaker) -> Result<bool, StoreError>;
    /// The delivery whose last attempt is newest, of this event key and outcome when given.
    fn latest_delivery(&self, webhook_id: i64, event: Option<&str>, outcome: Option<Outcome>) -> Result<Option<Delivery>, StoreError>;
    fn delivery_counts(&self, webhook_id: i64) -> Result<DeliveryCounts, StoreError>;
    /// Deliveries still pending, over every webhook.
    fn pending_deliveries(&self) -> Result<i64, StoreError>;
    /// Deletes finished deliveries whose last attempt is older than `before`, and events left
    /// without deliveries; how many deliveries went.
    fn prune_deliveries(&self, before: i64) -> Result<u64, StoreError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::backends;
    use crate::{Owner, ProjectKey, Repo, RepoSlug, Store};

    struct Fixture {
        _dir: tempfile::TempDir,
        s: Store,
        repo: Repo,
        other: Repo,
    }

    fn fixture() -> Fixture {
        let (dir, s) = backends::store();
        let key = ProjectKey::parse("TP").unwrap();
        s.create_project(&key, None, false).unwrap();
        let owner = Owner::Project(key);
        let repo = s.create_repo(&owner, &RepoSlug::parse("r").unwrap(), false).unwrap();
        let other = s.create_repo(&owner, &RepoSlug::parse("other").unwrap(), false).unwrap();
        Fixture { _dir: dir, s, repo, other }
    }

    fn hook(repo: &Repo, scope_repo: bool, events: &[&str]) -> NewWebhook {
        NewWebhook {
            project_id: repo.project_id,
            repo_id: scope_repo.then_some(repo.id),
            name: "ci".into(),
            url: "http://ci.example/hook".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            active: true,
            secret: Some("s3cret".into()),
            ssl_verify: true,
            username: Some("u".into()),
            password: Some("p".into()),
        }
    }

    fn event(repo: &Repo, key: &str, n: usize) -> NewEvent {
        NewEvent { project_id: repo.project_id, repo_id: Some(repo.id), key: key.into(), payload: format!("{{\"n\":{n}}}") }
    }

    fn ok(at: i64) -> Attempt {
        Attempt { at, outcome: Outcome::Success, status: Some(200), summary: "ok".into(), duration_ms: 3 }
    }

    fn failed(at: i64) -> Attempt {
        Attempt { at, outcome: Outcome::Failure, status: Some(500), summary: "boom".into(), duration_ms: 4 }
    }

    const NO_BREAKER: Breaker = Breaker { threshold: 0, pause_until: 0 };

    #[test]
    pub(crate) fn webhooks_round_trip_by_scope_and_go_with_their_repository() {
        let f = fixture();
        let s = &f.s;
        let on_repo = s.create_webhook(&hook(&f.repo, true, &["repo:refs_changed", "pr:opened"])).unwrap();
        let on_project = s.create_webhook(&hook(&f.repo, false, &["pr:merged"])).unwrap();
        assert_eq!(on_repo.hook.events, ["repo:refs_changed", "pr:opened"]);
        assert_eq!((on_repo.failures, on_repo.paused_until, on_repo.created_at == on_repo.updated_at), (0, None, true));
        assert_eq!(s.webhook(on_repo.id).unwrap().unwrap(), on_repo);
        assert_eq!(s.webhooks(f.repo.project_id, Some(f.repo.id)).unwrap(), std::slice::from_ref(&on_repo));
        assert_eq!(s.webhooks(f.repo.project_id, None).unwrap(), std::slice::from_ref(&on_project), "a project's list holds only its own");
        assert!(s.webhooks(f.repo.project_id, Some(f.other.id)).unwrap().is_empty());
        let changed = NewWebhook { name: "renamed".into(), secret: None, active: false, events: vec!["pr:declined".into()], ..hook(&f.repo, true, &[]) };
        let got = s.update_webhook(on_repo.id, &changed).unwrap().unwrap();
        assert_eq!((got.hook.name.as_str(), got.hook.secret.clone(), got.hook.active, got.created_at), ("renamed", None, false, on_repo.created_at));
        assert_eq!(got.hook.events, ["pr:declined"]);
        assert!(s.update_webhook(on_repo.id + 1000, &changed).unwrap().is_none());
        s.enqueue_events(&[event(&f.repo, "pr:merged", 1)]).unwrap();
        s.delete_repo(&f.repo).unwrap();
        assert!(s.webhook(on_repo.id).unwrap().is_none(), "a repository's webhooks go with it");
        assert!(s.webhook(on_project.id).unwrap().is_some());
        assert!(s.delete_webhook(on_project.id).unwrap());
        assert!(!s.delete_webhook(on_project.id).unwrap());
        assert_eq!(s.pending_deliveries().unwrap(), 0, "a webhook's deliveries go with it");
        let again = s.create_webhook(&hook(&f.other, true, &["pr:opened"])).unwrap();
        assert!(again.id > on_project.id, "ids are never given again");
    }

    #[test]
    pub(crate) fn events_fan_out_to_the_webhooks_that_ask_for_them_and_others_are_not_kept() {
        let f = fixture();
        let s = &f.s;
        let pushes = s.create_webhook(&hook(&f.repo, true, &["repo:refs_changed"])).unwrap();
        let project = s.create_webhook(&hook(&f.repo, false, &["repo:refs_changed", "pr:opened"])).unwrap();
        let inactive = s.create_webhook(&NewWebhook { active: false, ..hook(&f.repo, true, &["repo:refs_changed"]) }).unwrap();
        s.create_webhook(&hook(&f.other, true, &["repo:refs_changed"])).unwrap();
        assert_eq!(s.enqueue_events(&[event(&f.repo, "repo:refs_changed", 1)]).unwrap(), 2, "the repository's and the project's");
        assert_eq!(s.enqueue_events(&[event(&f.repo, "pr:opened", 2)]).unwrap(), 1);
        assert_eq!(s.enqueue_events(&[event(&f.repo, "pr:declined", 3)]).unwrap(), 0, "nobody asked");
        assert_eq!(s.enqueue_events(&[event(&f.repo, "repo:refs", 4)]).unwrap(), 0, "keys match whole");
        assert_eq!(backends::count(f._dir.path(), "webhook_events"), 2, "an event nobody wants is not kept");
        let claimed = s.claim_deliveries("node-a", crate::store::now_ms(), 60_000, 10).unwrap();
        let mut got: Vec<(i64, String)> = claimed.iter().map(|c| (c.webhook.id, c.delivery.event_key.clone())).collect();
        got.sort();
        // The project's webhook has two in one lane: only the first is claimed.
        assert_eq!(got, [(pushes.id, "repo:refs_changed".to_string()), (project.id, "repo:refs_changed".to_string())]);
        assert!(claimed.iter().all(|c| c.webhook.id != inactive.id));
        assert_eq!(claimed[0].payload, r#"{"n":1}"#);
        assert_eq!(claimed[0].webhook.hook.secret.as_deref(), Some("s3cret"));
        assert_eq!(s.pending_deliveries().unwrap(), 3);
    }

    #[test]
    pub(crate) fn a_lane_is_delivered_in_order_and_a_claim_is_a_lease() {
        let f = fixture();
        let s = &f.s;
        let w = s.create_webhook(&hook(&f.repo, false, &["repo:refs_changed"])).unwrap();
        for n in 0..3 {
            s.enqueue_events(&[event(&f.repo, "repo:refs_changed", n)]).unwrap();
        }
        s.enqueue_events(&[event(&f.other, "repo:refs_changed", 9)]).unwrap();
        let now = crate::store::now_ms();
        let first = s.claim_deliveries("node-a", now, 60_000, 10).unwrap();
        assert_eq!(first.iter().map(|c| c.payload.as_str()).collect::<Vec<_>>(), [r#"{"n":0}"#, r#"{"n":9}"#], "one per lane, oldest first");
        assert!(s.claim_deliveries("node-b", now, 60_000, 10).unwrap().is_empty(), "claimed ones and the rest of their lanes wait");
        assert!(s.finish_delivery(first[1].delivery.id, "node-a", &ok(now), Next::Done, NO_BREAKER).unwrap());
        // A failure keeps the lane waiting for the retry.
        assert!(s.finish_delivery(first[0].delivery.id, "node-a", &failed(now), Next::RetryAt(now + 1_000), NO_BREAKER).unwrap());
        assert!(!s.finish_delivery(first[0].delivery.id, "node-b", &ok(now), Next::Done, NO_BREAKER).unwrap(), "not node-b's");
        assert!(s.claim_deliveries("node-b", now, 60_000, 10).unwrap().is_empty(), "the head waits for its retry, the lane behind it");
        let retried = s.claim_deliveries("node-b", now + 1_000, 60_000, 10).unwrap();
        assert_eq!(retried.len(), 1);
        assert_eq!((retried[0].delivery.id, retried[0].delivery.attempts), (first[0].delivery.id, 1));
        assert_eq!(retried[0].delivery.last.as_ref().map(|a| (a.outcome, a.status)), Some((Outcome::Failure, Some(500))));
        // node-b dies: after the lease the delivery is claimed again.
        assert!(s.claim_deliveries("node-a", now + 1_000 + 59_999, 60_000, 10).unwrap().is_empty());
        let taken = s.claim_deliveries("node-a", now + 1_000 + 60_000, 60_000, 10).unwrap();
        assert_eq!(taken.iter().map(|c| c.delivery.id).collect::<Vec<_>>(), [first[0].delivery.id]);
        assert!(!s.finish_delivery(first[0].delivery.id, "node-b", &ok(now), Next::Done, NO_BREAKER).unwrap(), "a lost claim changes nothing");
        assert!(s.finish_delivery(first[0].delivery.id, "node-a", &ok(now + 61_000), Next::Done, NO_BREAKER).unwrap());
        let next = s.claim_deliveries("node-a", now + 61_000, 60_000, 10).unwrap();
        assert_eq!(next.iter().map(|c| c.payload.as_str()).collect::<Vec<_>>(), [r#"{"n":1}"#]);
        // Given up: the lane moves on.
        assert!(s.finish_delivery(next[0].delivery.id, "node-a", &failed(now + 62_000), Next::GiveUp, NO_BREAKER).unwrap());
        let last = s.claim_deliveries("node-a", now + 62_000, 60_000, 10).unwrap();
        assert_eq!(last.iter().map(|c| c.payload.as_str()).collect::<Vec<_>>(), [r#"{"n":2}"#]);
        let counts = s.delivery_counts(w.id).unwrap();
        assert_eq!(counts, DeliveryCounts { success: 2, failure: 1, error: 0, pending: 1 });
        let latest = s.latest_delivery(w.id, None, None).unwrap().unwrap();
        assert_eq!((latest.id, latest.state), (next[0].delivery.id, DeliveryState::Failed));
        assert_eq!(s.latest_delivery(w.id, None, Some(Outcome::Success)).unwrap().unwrap().id, first[0].delivery.id);
        assert!(s.latest_delivery(w.id, Some("pr:opened"), None).unwrap().is_none());
        assert!(s.latest_delivery(w.id, None, Some(Outcome::Error)).unwrap().is_none());
        // Pruning takes finished deliveries only, and events left without any.
        assert_eq!(s.prune_deliveries(now + 100_000).unwrap(), 3);
        assert_eq!(s.pending_deliveries().unwrap(), 1);
        assert_eq!(backends::count(f._dir.path(), "webhook_events"), 1);
    }

    #[test]
    pub(crate) fn the_breaker_pauses_a_failing_webhook_and_a_success_closes_it() {
        let f = fixture();
        let s = &f.s;
        let w = s.create_webhook(&hook(&f.repo, true, &["repo:refs_changed"])).unwrap();
        s.enqueue_events(&[event(&f.repo, "repo:refs_changed", 0)]).unwrap();
        let now = crate::store::now_ms();
        let breaker = Breaker { threshold: 2, pause_until: now + 10_000 };
        for i in 0..2 {
            let c = s.claim_deliveries("n", now, 60_000, 10).unwrap();
            assert_eq!(c.len(), 1, "attempt {i}");
            s.finish_delivery(c[0].delivery.id, "n", &failed(now), Next::RetryAt(now), breaker).unwrap();
        }
        let paused = s.webhook(w.id).unwrap().unwrap();
        assert_eq!((paused.failures, paused.paused_until), (2, Some(now + 10_000)));
        assert!(s.claim_deliveries("n", now + 9_999, 60_000, 10).unwrap().is_empty(), "paused");
        let c = s.claim_deliveries("n", now + 10_000, 60_000, 10).unwrap();
        assert_eq!(c.len(), 1);
        s.finish_delivery(c[0].delivery.id, "n", &ok(now + 10_000), Next::Done, breaker).unwrap();
        let closed = s.webhook(w.id).unwrap().unwrap();
        assert_eq!((closed.failures, closed.paused_until), (0, None));
    }

    #[test]
    pub(crate) fn nodes_claiming_at_once_never_share_a_delivery() {
        let f = fixture();
        let w = f.s.create_webhook(&hook(&f.repo, false, &["repo:refs_changed"])).unwrap();
        // 40 lanes (repositories) of 3 events each.
        let mut repos = Vec::new();
        for i in 0..40 {
            let r = f.s.create_repo(&Owner::Project(ProjectKey::parse("TP").unwrap()), &RepoSlug::parse(&format!("r{i}")).unwrap(), false).unwrap();
            repos.push(r);
        }
        for n in 0..3 {
            for r in &repos {
                f.s.enqueue_events(&[event(r, "repo:refs_changed", n)]).unwrap();
            }
        }
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let s = if i % 2 == 0 { f.s.clone() } else { backends::reopen(f._dir.path()) };
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let node = format!("node-{i}");
                    let mut mine = Vec::new();
                    loop {
                        let got = s.claim_deliveries(&node, crate::store::now_ms(), 60_000, 5).unwrap();
                        if got.is_empty() && s.pending_deliveries().unwrap() == 0 {
                            break;
                        }
                        for c in got {
                            mine.push(c.delivery.id);
                            assert!(s.finish_delivery(c.delivery.id, &node, &ok(crate::store::now_ms()), Next::Done, NO_BREAKER).unwrap());
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<i64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!((n, all.len()), (120, 120), "each delivery claimed once");
        assert_eq!(f.s.delivery_counts(w.id).unwrap().success, 120);
    }
}
