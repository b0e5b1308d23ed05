//! Webhooks against a real server and a real HTTP receiver on 127.0.0.1 (so these tests allow
//! `127.0.0.0/8`, which the default rules refuse): every event type sent by real pushes and
//! pull-request changes arrives signed, in order, with a payload that validates against the JSON
//! Schemas written from Bitbucket's documentation (`tests/webhook-schemas`); 1,000 pending
//! events survive a restart and a receiver that answers 500 for a while; refused networks are
//! refused when a webhook is saved and when it is delivered.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trove_server::webhooks::{NetworkRules, parse_network};

use crate::support::{TestServer, basic, password};

const R: &str = "/rest/api/1.0/projects/TP/repos/test";
const SECRET: &str = "It's a Secret to Everybody";

// ---- the receiver ----

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
    answered: u16,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str).unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Log {
    got: Mutex<Vec<Received>>,
    grew: Condvar,
}

/// An HTTP/1.1 receiver on 127.0.0.1: records every request; answers 500 while `failing`.
struct Receiver {
    port: u16,
    log: Arc<Log>,
    failing: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (log, failing, stop) = (Arc::new(Log::default()), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (l2, f2, s2) = (log.clone(), failing.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let (log, failing) = (l2.clone(), f2.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut headers = HashMap::new();
                    for line in head.lines().skip(1) {
                        if let Some((k, v)) = line.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                        }
                    }
                    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                    while buf.len() < head_end + len {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = buf[head_end..head_end + len].to_vec();
                    let status = if failing.load(Ordering::SeqCst) { 500 } else { 200 };
                    let reply = if status == 200 { "thanks" } else { "down for maintenance" };
                    let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len());
                    log.got.lock().unwrap().push(Received { headers, body, answered: status });
                    log.grew.notify_all();
                });
            }
        });
        Receiver { port, log, failing, stop }
    }

    fn url(&self, host: &str) -> String {
        format!("http://{host}:{}/hooks/trove?via=test", self.port)
    }

    /// Waits until `n` requests arrived (or fails after a generous bound); all of them.
    fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut got = self.log.got.lock().unwrap();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{} of {n} webhook requests arrived: {:?}", got.len(), got.iter().map(|r| r.header("x-event-key")).collect::<Vec<_>>());
            got = self.log.grew.wait_timeout(got, left).unwrap().0;
        }
        got.clone()
    }

    /// Waits until `n` requests were answered 200.
    fn wait_for_successes(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut got = self.log.got.lock().unwrap();
        while got.iter().filter(|r| r.answered == 200).count() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{} of {n} webhook requests succeeded", got.iter().filter(|r| r.answered == 200).count());
            got = self.log.grew.wait_timeout(got, left).unwrap().0;
        }
        got.clone()
    }

    fn count(&self) -> usize {
        self.log.got.lock().unwrap().len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

// ---- JSON Schema (the subset the schemas use) ----

/// Checks `v` against `schema` (from the file `file` of tests/webhook-schemas): type, const,
/// enum, pattern, required, properties, items, minItems, allOf and `$ref` (to
/// `definitions.json#/definitions/NAME` or within the file). Returns every violation, with
/// its JSON path.
fn validate(schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let (file, pointer) = r.split_once('#').unwrap();
        assert_eq!(file, "definitions.json", "a $ref to {file}");
        let target = schema_file("definitions.json");
        let resolved = target.pointer(pointer).unwrap_or_else(|| panic!("no {r}")).clone();
        validate(&resolved, v, path, errors);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            validate(s, v, path, errors);
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            other => panic!("type {other}"),
        });
        if !ok {
            errors.push(format!("{path}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        errors.push(format!("{path}: {v} is not {c}"));
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!("{path}: {v} is not one of {e:?}"));
    }
    if let (Some(p), Some(s)) = (schema.get("pattern").and_then(Value::as_str), v.as_str())
        && !matches_pattern(p, s)
    {
        errors.push(format!("{path}: {s:?} does not match {p}"));
    }
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for k in req.iter().filter_map(Value::as_str) {
            if v.get(k).is_none() {
                errors.push(format!("{path}: {k} is missing"));
            }
        }
    }
    if let (Some(props), Some(obj)) = (schema.get("properties").and_then(Value::as_object), v.as_object()) {
        for (k, s) in props {
            if let Some(x) = obj.get(k) {
                validate(s, x, &format!("{path}.{k}"), errors);
            }
        }
    }
    if let Some(arr) = v.as_array() {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (arr.len() as u64) < min
        {
            errors.push(format!("{path}: fewer than {min} items"));
        }
        if let Some(items) = schema.get("items") {
            for (i, x) in arr.iter().enumerate() {
                validate(items, x, &format!("{path}[{i}]"), errors);
            }
        }
    }
}

/// The schemas' few patterns, checked by hand (no regex crate): dates and hashes.
fn matches_pattern(p: &str, s: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match p {
        "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{4}$" => {
            let b = s.as_bytes();
            s.len() == 24
                && digits(&s[0..4])
                && b[4] == b'-'
                && digits(&s[5..7])
                && b[7] == b'-'
                && digits(&s[8..10])
                && b[10] == b'T'
                && digits(&s[11..13])
                && b[13] == b':'
                && digits(&s[14..16])
                && b[16] == b':'
                && digits(&s[17..19])
                && (b[19] == b'+' || b[19] == b'-')
                && digits(&s[20..24])
        }
        "^[0-9a-f]{40}([0-9a-f]{24})?$" => (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "^refs/" => s.starts_with("refs/"),
        other => panic!("pattern {other} is not known to the test's validator"),
    }
}

fn schema_file(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhook-schemas").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The payload validates against its event's schema.
fn check_payload(r: &Received) {
    let key = r.header("x-event-key");
    let v = r.json();
    let schema = schema_file(&format!("{}.json", key.replace(':', "_")));
    let mut errors = Vec::new();
    validate(&schema, &v, "$", &mut errors);
    assert!(errors.is_empty(), "{key} does not match its schema:\n{}\n{v:#}", errors.join("\n"));
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body);
    m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

// ---- the server side ----

fn call(t: &TestServer, method: &str, path: &str, who: &str, body: Option<Value>) -> (u16, Value) {
    let auth = basic(who, &password(who));
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = vec![("Authorization", auth.as_str())];
    if !text.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = t.http(method, path, &headers, text.as_bytes());
    let v = if r.body.is_empty() { Value::Null } else { serde_json::from_slice(&r.body).unwrap_or_else(|_| Value::String(r.text())) };
    (r.status, v)
}

fn ok(t: &TestServer, method: &str, path: &str, who: &str, body: Option<Value>, want: u16) -> Value {
    let (status, v) = call(t, method, path, who, body);
    assert_eq!(status, want, "{method} {path} as {who}: {v:#}");
    v
}

fn allow_loopback(t: &TestServer) {
    let mut rules = NetworkRules::load(t.server.store()).unwrap();
    rules.allow(parse_network("127.0.0.0/8").unwrap());
    rules.save(t.server.store()).unwrap();
}

/// Short retries, so a failing receiver costs the test seconds.
fn quick(c: &mut trove_server::ServerConfig) {
    c.webhooks.first_retry = Duration::from_millis(20);
    c.webhooks.max_retry = Duration::from_millis(200);
    c.webhooks.breaker_failures = 5;
    c.webhooks.breaker_pause = Duration::from_millis(300);
}

fn webhook(t: &TestServer, url: &str, events: &[&str]) -> Value {
    let body = json!({"name": "ci", "url": url, "events": events, "active": true, "configuration": {"secret": SECRET}});
    ok(t, "POST", &format!("{R}/webhooks"), "admin", Some(body), 200)
}

fn branch_ref(name: &str) -> Value {
    json!({"id": format!("refs/heads/{name}"), "repository": {"slug": "test", "project": {"key": "TP"}}})
}

fn open_pr(t: &TestServer, from: &str) -> Value {
    let body = json!({"title": format!("Merge {from}"), "description": "Why.", "fromRef": branch_ref(from), "toRef": branch_ref("main")});
    ok(t, "POST", &format!("{R}/pull-requests"), "writer", Some(body), 201)
}

fn branch(t: &TestServer, dir: &std::path::Path, name: &str, file: &str) {
    t.git_ok(dir, &["checkout", "-q", "-b", name, "main"]);
    t.commit(dir, file, &format!("{name}\n"));
    t.git_ok(dir, &["push", "-q", "origin", name]);
    t.git_ok(dir, &["checkout", "-q", "main"]);
}

#[test]
fn every_event_arrives_signed_in_order_with_bitbuckets_payload() {
    let rx = Receiver::start();
    let t = TestServer::start_with(quick);
    allow_loopback(&t);
    let sent = [
        "repo:refs_changed",
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
        "repo:comment:added",
        "repo:comment:edited",
        "repo:comment:deleted",
        "repo:modified",
        "repo:forked",
    ];
    let hook = webhook(&t, &rx.url("127.0.0.1"), &sent);
    let body = json!({"name": "p", "url": rx.url("127.0.0.1"), "events": ["project:modified"], "configuration": {"secret": SECRET}});
    ok(&t, "POST", "/rest/api/1.0/projects/TP/webhooks", "admin", Some(body), 200);
    assert_eq!(hook["configuration"]["secret"], SECRET, "creation echoes the secret");
    let mut want: Vec<&str> = Vec::new();
    // Each change, then the events it must have sent, after all the earlier ones.
    let mut step = |t: &TestServer, keys: &[&'static str], f: &dyn Fn(&TestServer)| {
        f(t);
        want.extend_from_slice(keys);
        let got = rx.wait_for(want.len());
        assert_eq!(got.iter().map(|r| r.header("x-event-key").to_owned()).collect::<Vec<_>>(), want, "in order");
        want.len()
    };
    let (dir, _) = t.seed("scm/TP/test.git", 2);
    // The seed's push of main.
    step(&t, &["repo:refs_changed"], &|_| {});
    step(&t, &["repo:refs_changed"], &|t| branch(t, &dir, "feature", "f.txt"));
    step(&t, &["repo:refs_changed"], &|t| branch(t, &dir, "other", "o.txt"));
    step(&t, &["repo:refs_changed"], &|t| branch(t, &dir, "doomed", "d.txt"));
    let pr = |t: &TestServer, n: i64| ok(t, "GET", &format!("{R}/pull-requests/{n}"), "writer", None, 200);
    step(&t, &["pr:opened"], &|t| drop(open_pr(t, "feature")));
    step(&t, &["pr:modified"], &|t| {
        ok(t, "PUT", &format!("{R}/pull-requests/1"), "writer", Some(json!({"version": pr(t, 1)["version"], "title": "Better title"})), 200);
    });
    step(&t, &["pr:reviewer:updated"], &|t| {
        ok(t, "POST", &format!("{R}/pull-requests/1/participants"), "writer", Some(json!({"user": {"name": "reader"}, "role": "REVIEWER"})), 200);
    });
    step(&t, &["pr:reviewer:approved"], &|t| drop(ok(t, "POST", &format!("{R}/pull-requests/1/approve"), "reader", None, 200)));
    step(&t, &["pr:reviewer:unapproved"], &|t| drop(ok(t, "DELETE", &format!("{R}/pull-requests/1/approve"), "reader", None, 200)));
    step(&t, &["pr:reviewer:needs_work"], &|t| {
        ok(t, "PUT", &format!("{R}/pull-requests/1/participants/reader"), "reader", Some(json!({"status": "NEEDS_WORK"})), 200);
    });
    // A push to the source: its refs_changed, then the rescope's from_ref_updated.
    step(&t, &["repo:refs_changed", "pr:from_ref_updated"], &|t| {
        t.git_ok(&dir, &["checkout", "-q", "feature"]);
        t.commit(&dir, "f2.txt", "more\n");
        t.git_ok(&dir, &["push", "-q", "origin", "feature"]);
        t.git_ok(&dir, &["checkout", "-q", "main"]);
    });
    // A push to the target: to_ref_updated.
    step(&t, &["repo:refs_changed", "pr:to_ref_updated"], &|t| {
        t.commit(&dir, "m.txt", "main moves\n");
        t.git_ok(&dir, &["push", "-q", "origin", "main"]);
    });
    let comment = |t: &TestServer| ok(t, "POST", &format!("{R}/pull-requests/1/comments"), "writer", Some(json!({"text": "first"})), 201);
    let n = step(&t, &["pr:comment:added"], &|t| drop(comment(t)));
    let cid = rx.wait_for(n).last().unwrap().json()["comment"]["id"].as_i64().unwrap();
    step(&t, &["pr:comment:edited"], &|t| {
        ok(t, "PUT", &format!("{R}/pull-requests/1/comments/{cid}"), "writer", Some(json!({"version": 0, "text": "second"})), 200);
    });
    step(&t, &["pr:comment:deleted"], &|t| drop(ok(t, "DELETE", &format!("{R}/pull-requests/1/comments/{cid}?version=1"), "writer", None, 204)));
    // Comments on a commit (a line of its diff, then a reply).
    let cc = format!("{R}/commits/main/comments");
    let n = step(&t, &["repo:comment:added"], &|t| {
        let a = json!({"text": "on a line", "anchor": {"path": "m.txt", "line": 1, "lineType": "ADDED", "fileType": "TO"}});
        ok(t, "POST", &cc, "reader", Some(a), 201);
    });
    let root = rx.wait_for(n).last().unwrap().json()["comment"]["id"].as_i64().unwrap();
    let n = step(&t, &["repo:comment:added"], &|t| drop(ok(t, "POST", &cc, "writer", Some(json!({"text": "a reply", "parent": {"id": root}})), 201)));
    let reply = rx.wait_for(n).last().unwrap().json()["comment"]["id"].as_i64().unwrap();
    step(&t, &["repo:comment:edited"], &|t| drop(ok(t, "PUT", &format!("{cc}/{reply}"), "writer", Some(json!({"version": 0, "text": "the reply"})), 200)));
    step(&t, &["repo:comment:deleted"], &|t| drop(ok(t, "DELETE", &format!("{cc}/{reply}?version=1"), "writer", None, 204)));
    step(&t, &["pr:merged", "repo:refs_changed"], &|t| {
        ok(t, "POST", &format!("{R}/pull-requests/1/merge?version={}", pr(t, 1)["version"]), "writer", None, 200);
    });
    step(&t, &["pr:opened", "pr:declined"], &|t| {
        open_pr(t, "other");
        ok(t, "POST", &format!("{R}/pull-requests/2/decline?version=0"), "writer", None, 200);
    });
    step(&t, &["pr:opened", "pr:deleted"], &|t| {
        open_pr(t, "doomed");
        ok(t, "DELETE", &format!("{R}/pull-requests/3"), "writer", Some(json!({"version": 0})), 204);
    });
    step(&t, &["project:modified"], &|t| drop(ok(t, "PUT", "/rest/api/1.0/projects/TP", "admin", Some(json!({"description": "Renamed things"})), 200)));
    // Same slug, another name; an update that changes nothing sends nothing.
    ok(&t, "PUT", R, "admin", Some(json!({"name": "test"})), 200);
    step(&t, &["repo:modified"], &|t| drop(ok(t, "PUT", R, "admin", Some(json!({"name": "TEST"})), 200)));
    let total = step(&t, &["repo:forked"], &|t| drop(ok(t, "POST", R, "writer", Some(json!({"name": "Forked"})), 201)));
    let got = rx.wait_for(total);
    let mut ids = std::collections::HashSet::new();
    for r in &got {
        let key = r.header("x-event-key");
        check_payload(r);
        let v = r.json();
        assert_eq!(v["eventKey"], key);
        assert_eq!(r.header("x-hub-signature"), format!("sha256={}", hmac_hex(SECRET, &r.body)), "{key}: the signature verifies");
        assert_eq!(r.header("content-type"), "application/json; charset=utf-8");
        let id = r.header("x-request-id");
        assert!(id.len() == 36 && id.matches('-').count() == 4, "{id}");
        assert!(ids.insert(id.to_owned()), "a request id used twice: {id}");
    }
    // What each event says.
    let by = |key: &str| got.iter().filter(|r| r.header("x-event-key") == key).map(Received::json).collect::<Vec<_>>();
    let first_push = &by("repo:refs_changed")[0];
    assert_eq!(first_push["changes"][0]["type"], "ADD");
    assert_eq!(first_push["changes"][0]["refId"], "refs/heads/main");
    assert_eq!(first_push["changes"][0]["fromHash"], "0".repeat(40));
    assert_eq!(first_push["actor"]["name"], "writer", "the pusher");
    assert_eq!(first_push["repository"]["project"]["key"], "TP");
    let modified = &by("pr:modified")[0];
    assert_eq!((modified["previousTitle"].as_str(), modified["pullRequest"]["title"].as_str()), (Some("Merge feature"), Some("Better title")));
    assert_eq!(modified["previousTarget"]["id"], "refs/heads/main");
    let updated = &by("pr:reviewer:updated")[0];
    assert_eq!(updated["addedReviewers"][0]["name"], "reader");
    assert_eq!(updated["removedReviewers"], json!([]));
    let approved = &by("pr:reviewer:approved")[0];
    assert_eq!((approved["participant"]["user"]["name"].as_str(), approved["previousStatus"].as_str()), (Some("reader"), Some("UNAPPROVED")));
    assert_eq!(approved["actor"]["name"], "reader");
    assert_eq!(by("pr:reviewer:needs_work")[0]["participant"]["status"], "NEEDS_WORK");
    let from = &by("pr:from_ref_updated")[0];
    assert_ne!(from["previousFromHash"], from["pullRequest"]["fromRef"]["latestCommit"]);
    let edited = &by("pr:comment:edited")[0];
    assert_eq!((edited["previousComment"].as_str(), edited["comment"]["text"].as_str()), (Some("first"), Some("second")));
    let on_line = &by("repo:comment:added")[0];
    assert_eq!((on_line["comment"]["anchor"]["path"].as_str(), on_line["comment"]["anchor"]["line"].as_i64()), (Some("m.txt"), Some(1)), "{on_line:#}");
    assert_eq!((on_line["actor"]["name"].as_str(), on_line["repository"]["slug"].as_str()), (Some("reader"), Some("test")));
    assert_eq!(by("repo:comment:added")[1]["commentParentId"], on_line["comment"]["id"]);
    assert_eq!(by("repo:comment:added")[1]["commit"], on_line["commit"], "the full id of the commit `main` named");
    let c_edited = &by("repo:comment:edited")[0];
    assert_eq!(
        (c_edited["previousComment"].as_str(), c_edited["comment"]["text"].as_str(), c_edited["comment"]["version"].as_i64()),
        (Some("a reply"), Some("the reply"), Some(1))
    );
    let merged = &by("pr:merged")[0];
    assert_eq!(merged["pullRequest"]["state"], "MERGED");
    assert!(merged["pullRequest"]["properties"]["mergeCommit"]["id"].is_string(), "{merged:#}");
    assert_eq!(by("pr:deleted")[0]["pullRequest"]["id"], 3);
    let project = &by("project:modified")[0];
    assert_eq!((project["old"].get("description"), project["new"]["description"].as_str()), (None, Some("Renamed things")));
    let repo = &by("repo:modified")[0];
    assert_eq!((repo["old"]["name"].as_str(), repo["new"]["name"].as_str(), repo["new"]["slug"].as_str()), (Some("test"), Some("TEST"), Some("test")));
    let forked = &by("repo:forked")[0];
    assert_eq!((forked["repository"]["slug"].as_str(), forked["repository"]["project"]["key"].as_str()), (Some("forked"), Some("~WRITER")));
    assert_eq!((forked["repository"]["origin"]["slug"].as_str(), forked["actor"]["name"].as_str()), (Some("test"), Some("writer")));
    // The REST view of the deliveries.
    let id = hook["id"].as_i64().unwrap();
    let latest = ok(&t, "GET", &format!("{R}/webhooks/{id}/latest"), "admin", None, 200);
    assert_eq!((latest["event"].as_str(), latest["result"]["outcome"].as_str()), (Some("repo:forked"), Some("SUCCESS")));
    let stats = ok(&t, "GET", &format!("{R}/webhooks/{id}/statistics"), "admin", None, 200);
    assert_eq!(stats["counts"]["successes"], total - 1, "all but the project's event");
    assert_eq!(ok(&t, "GET", &format!("{R}/webhooks/{id}/latest?outcome=FAILURE"), "admin", None, 204), Value::Null);
}

#[test]
fn a_thousand_pending_events_survive_a_restart_and_a_receiver_that_fails_for_a_while() {
    let rx = Receiver::start();
    rx.failing.store(true, Ordering::SeqCst);
    let mut t = TestServer::start_with(quick);
    allow_loopback(&t);
    let (dir, _) = t.seed("scm/TP/test.git", 2);
    branch(&t, &dir, "feature", "f.txt");
    open_pr(&t, "feature");
    // Only comments: one lane (the repository), so they must arrive in order.
    webhook(&t, &rx.url("127.0.0.1"), &["pr:comment:added"]);
    const N: usize = 1000;
    let mut made = Vec::with_capacity(N);
    for i in 0..N {
        let c = ok(&t, "POST", &format!("{R}/pull-requests/1/comments"), "writer", Some(json!({"text": format!("comment {i}")})), 201);
        made.push(c["id"].as_i64().unwrap());
    }
    // The receiver has been failing: nothing is delivered; every event is pending.
    rx.wait_for(1);
    assert_eq!(t.server.store().pending_deliveries().unwrap(), N as i64);
    t.restart(Duration::from_secs(60), quick);
    assert_eq!(t.server.store().pending_deliveries().unwrap(), N as i64, "the restart kept every pending event");
    rx.failing.store(false, Ordering::SeqCst);
    let got = rx.wait_for_successes(N);
    // Every event arrived, in order, exactly once answered 200; the rest are retries of
    // failures (each a 500 the receiver gave), never of a success.
    let mut per_id: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut order = Vec::new();
    for r in &got {
        let e = per_id.entry(r.header("x-request-id").to_owned()).or_default();
        if r.answered == 200 {
            e.0 += 1;
            order.push(r.json()["comment"]["id"].as_i64().unwrap());
        } else {
            e.1 += 1;
        }
    }
    assert_eq!(order, made, "every comment once, in order");
    let failures: usize = per_id.values().map(|(_, f)| f).sum();
    let duplicates = got.len() - N;
    assert_eq!(duplicates, failures, "every extra request is the retry of a failed one");
    assert!(per_id.values().all(|(ok, _)| *ok == 1), "a success was sent again");
    assert!(failures >= 1);
    assert_eq!(t.server.store().pending_deliveries().unwrap(), 0);
}

#[test]
fn a_refused_network_is_refused_when_a_webhook_is_saved_and_when_it_is_delivered() {
    let rx = Receiver::start();
    let t = TestServer::start_with(quick);
    let refused = |url: String, says: &str| {
        let body = json!({"name": "x", "url": url, "events": ["repo:refs_changed"]});
        let (status, v) = call(&t, "POST", &format!("{R}/webhooks"), "admin", Some(body));
        assert_eq!(status, 400, "{url}: {v:#}");
        let msg = v["errors"][0]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(says) && msg.contains("webhook-allow"), "{url}: {msg}");
    };
    refused(rx.url("127.0.0.1"), "loopback");
    // A name that resolves to loopback is refused for its address.
    refused(rx.url("localhost"), "localhost resolves to");
    refused("http://169.254.169.254/latest/meta-data".into(), "cloud metadata");
    refused("http://[fe80::1]:8080/".into(), "link-local");
    let (status, v) = call(&t, "POST", &format!("{R}/webhooks/test?url=http://127.0.0.1:{}/", rx.port), "admin", None);
    assert_eq!(status, 400, "{v:#}");
    // Allowed while it is saved, denied again before it is delivered: refused when connecting.
    allow_loopback(&t);
    let hook = webhook(&t, &rx.url("localhost"), &["repo:refs_changed"]);
    let mut rules = NetworkRules::load(t.server.store()).unwrap();
    rules.remove(parse_network("127.0.0.0/8").unwrap());
    rules.save(t.server.store()).unwrap();
    t.seed("scm/TP/test.git", 1);
    let id = hook["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let latest = loop {
        let (status, v) = call(&t, "GET", &format!("{R}/webhooks/{id}/latest"), "admin", None);
        if status == 200 {
            break v;
        }
        assert!(Instant::now() < deadline, "no delivery attempt was recorded");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(latest["result"]["outcome"], "ERROR", "{latest:#}");
    let said = latest["result"]["description"].as_str().unwrap();
    assert!(said.contains("localhost resolves to 127.0.0.1") && said.contains("loopback"), "{said}");
    assert_eq!(rx.count(), 0, "nothing reached the receiver");
}

#[test]
fn webhooks_are_managed_over_rest_with_bitbuckets_shapes() {
    let rx = Receiver::start();
    let t = TestServer::start_with(quick);
    allow_loopback(&t);
    let hook = webhook(&t, &rx.url("127.0.0.1"), &["repo:refs_changed", "pr:opened"]);
    let id = hook["id"].as_i64().unwrap();
    assert_eq!((hook["scopeType"].as_str(), hook["active"].as_bool(), hook["sslVerificationRequired"].as_bool()), (Some("repository"), Some(true), Some(true)));
    let got = ok(&t, "GET", &format!("{R}/webhooks/{id}"), "admin", None, 200);
    assert_eq!(got["events"], json!(["repo:refs_changed", "pr:opened"]));
    assert!(got["configuration"].get("secret").is_none(), "the secret is shown on creation only");
    let list = ok(&t, "GET", &format!("{R}/webhooks?event=pr:opened"), "admin", None, 200);
    assert_eq!(list["values"].as_array().unwrap().len(), 1);
    assert_eq!(ok(&t, "GET", &format!("{R}/webhooks?event=pr:merged"), "admin", None, 200)["size"], 0);
    // The project's list does not hold the repository's, nor answers for its id.
    let project =
        ok(&t, "POST", "/rest/api/1.0/projects/TP/webhooks", "admin", Some(json!({"name": "p", "url": rx.url("127.0.0.1"), "events": ["pr:merged"]})), 200);
    assert_eq!(project["scopeType"], "project");
    assert_eq!(ok(&t, "GET", "/rest/api/1.0/projects/TP/webhooks", "admin", None, 200)["size"], 1);
    assert_eq!(call(&t, "GET", &format!("/rest/api/1.0/projects/TP/webhooks/{id}"), "admin", None).0, 404);
    // Writers are no administrators; readers neither.
    assert_eq!(call(&t, "GET", &format!("{R}/webhooks"), "writer", None).0, 403);
    assert_eq!(call(&t, "POST", "/rest/api/1.0/projects/TP/webhooks", "writer", Some(json!({}))).0, 403);
    // Bad input: 400 naming the field.
    let (s, v) = call(&t, "POST", &format!("{R}/webhooks"), "admin", Some(json!({"name": "x", "url": rx.url("127.0.0.1"), "events": ["pr:exploded"]})));
    assert_eq!((s, v["errors"][0]["context"].as_str()), (400, Some("events")));
    let (s, v) = call(&t, "POST", &format!("{R}/webhooks"), "admin", Some(json!({"name": "x", "url": "ftp://h/", "events": ["pr:opened"]})));
    assert_eq!((s, v["errors"][0]["context"].as_str()), (400, Some("url")));
    // Update: what is given changes; the secret stays unless replaced.
    let up = ok(&t, "PUT", &format!("{R}/webhooks/{id}"), "admin", Some(json!({"name": "renamed", "active": false})), 200);
    assert_eq!((up["name"].as_str(), up["active"].as_bool(), up["configuration"]["secret"].as_str()), (Some("renamed"), Some(false), Some(SECRET)));
    // Nothing delivered yet: latest is 204.
    assert_eq!(call(&t, "GET", &format!("{R}/webhooks/{id}/latest"), "admin", None).0, 204);
    let summary = ok(&t, "GET", &format!("{R}/webhooks/{id}/statistics/summary"), "admin", None, 200);
    assert_eq!((summary["lastInvocation"].clone(), summary["counts"]["successes"].as_i64()), (Value::Null, Some(0)));
    // The test ping: sent now, signed with the stored secret, the receiver's answer reported.
    let ping =
        ok(&t, "POST", &format!("{R}/webhooks/test?webhookId={id}&url={}", rx.url("127.0.0.1").replace('?', "%3F").replace('=', "%3D")), "admin", None, 200);
    assert_eq!((ping["statusCode"].as_i64(), ping["body"].as_str(), ping["outcome"].as_str()), (Some(200), Some("thanks"), Some("SUCCESS")), "{ping:#}");
    let r = rx.wait_for(1).remove(0);
    assert_eq!(r.header("x-event-key"), "diagnostics:ping");
    assert_eq!(r.header("x-hub-signature"), format!("sha256={}", hmac_hex(SECRET, &r.body)));
    assert_eq!(r.json(), json!({"test": true}));
    // An inactive webhook is sent nothing: the push (its event written before git's answer)
    // left no delivery.
    t.seed("scm/TP/test.git", 1);
    assert_eq!(t.server.store().pending_deliveries().unwrap(), 0);
    assert_eq!(ok(&t, "DELETE", &format!("{R}/webhooks/{id}"), "admin", None, 204), Value::Null);
    assert_eq!(call(&t, "GET", &format!("{R}/webhooks/{id}"), "admin", None).0, 404);
    assert_eq!(rx.count(), 1, "only the ping arrived");
    // Each change is an audit log entry, without the secret.
    let q = trove_store::AuditQuery { action: Some("webhook.*".into()), oldest_first: true, limit: 10, ..Default::default() };
    let (entries, _) = t.server.store().audit_entries(&q).unwrap();
    let got: Vec<(String, String)> = entries.iter().map(|e| (e.action.clone(), e.target.clone())).collect();
    let want = [("webhook.create", "repo:TP/test"), ("webhook.create", "project:TP"), ("webhook.update", "repo:TP/test"), ("webhook.delete", "repo:TP/test")];
    assert_eq!(got, want.map(|(a, t)| (a.to_string(), t.to_string())));
    assert!(entries.iter().all(|e| !e.details.contains(SECRET)), "{entries:?}");
}

#[test]
fn a_push_journal_left_by_a_crash_becomes_its_event_at_the_next_start() {
    let rx = Receiver::start();
    let mut t = TestServer::start_with(quick);
    allow_loopback(&t);
    webhook(&t, &rx.url("127.0.0.1"), &["repo:refs_changed"]);
    let (_dir, head) = t.seed("scm/TP/test.git", 1);
    rx.wait_for(1);
    let git_home = t.server.store().git_home().to_owned();
    let repo_id = t.server.store().repo(&trove_store::Owner::parse("TP").unwrap(), &trove_store::RepoSlug::parse("test").unwrap()).unwrap().unwrap().id;
    t.stop(Duration::from_secs(30));
    // What a crash after git moved the refs, before the outbox row, leaves: the journal with
    // its header and the post-receive lines; and an empty one (a push that moved nothing).
    let zero = "0".repeat(40);
    let pushes = git_home.join("pushes");
    std::fs::write(pushes.join("0123456789abcdef01234567"), format!("# trove push repo={repo_id} user=writer\n{zero} {head} refs/tags/v1\n")).unwrap();
    std::fs::write(pushes.join("76543210fedcba9876543210"), format!("# trove push repo={repo_id} user=writer\n")).unwrap();
    t.restart(Duration::from_secs(30), quick);
    let got = rx.wait_for(2);
    let v = got[1].json();
    assert_eq!((v["eventKey"].as_str(), v["actor"]["name"].as_str()), (Some("repo:refs_changed"), Some("writer")));
    assert_eq!(
        v["changes"],
        json!([{"ref": {"id": "refs/tags/v1", "displayId": "v1", "type": "TAG"}, "refId": "refs/tags/v1", "fromHash": zero, "toHash": head, "type": "ADD"}])
    );
    check_payload(&got[1]);
    assert_eq!(std::fs::read_dir(&pushes).unwrap().count(), 0, "both journals are gone");
}

/// A change the server makes itself (a branch or tag over REST, a pull-request merge) is
/// journaled before its ref moves: a journal a crash left behind becomes the event of what moved,
/// one whose change never happened is removed without an event, and a live change or a refused
/// one leaves no journal.
#[test]
fn a_server_change_journal_left_by_a_crash_becomes_the_event_of_what_moved_and_only_that() {
    let rx = Receiver::start();
    let mut t = TestServer::start_with(quick);
    allow_loopback(&t);
    webhook(&t, &rx.url("127.0.0.1"), &["repo:refs_changed"]);
    let (dir, head) = t.seed("scm/TP/test.git", 1);
    rx.wait_for(1);
    let git_home = t.server.store().git_home().to_owned();
    let pushes = git_home.join("pushes");
    let repo_id = t.server.store().repo(&trove_store::Owner::parse("TP").unwrap(), &trove_store::RepoSlug::parse("test").unwrap()).unwrap().unwrap().id;

    // Live: a branch made over REST is one event and leaves no journal; a delete refused for a
    // stale endPoint changes nothing and leaves none either.
    let bu = "/rest/branch-utils/1.0/projects/TP/repos/test/branches";
    ok(&t, "POST", bu, "writer", Some(json!({"name": "live", "startPoint": "main"})), 201);
    let got = rx.wait_for(2);
    assert_eq!(got[1].json()["changes"][0]["refId"], "refs/heads/live");
    let stale = call(&t, "DELETE", bu, "writer", Some(json!({"name": "live", "endPoint": "0000000000000000000000000000000000000000"})));
    assert_eq!(stale.0, 409, "{}", stale.1);
    assert_eq!(t.server_rev("TP", "test", "refs/heads/live").as_deref(), Some(head.as_str()));
    assert_eq!(std::fs::read_dir(&pushes).unwrap().count(), 0, "no journal stays after a change or a refusal");

    // What a crash leaves: the REST create of `made` happened (its ref is there), the delete of
    // `main` did not (it still reads its old value).
    t.stop(Duration::from_secs(30));
    let repo = t.repo_dir("TP", "test");
    let out = std::process::Command::new("git").arg("-C").arg(&repo).args(["update-ref", "refs/heads/made", &head]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let zero = "0".repeat(40);
    std::fs::write(
        pushes.join("0123456789abcdef01234567"),
        format!("# trove push repo={repo_id} user=writer\n# server change\nintent {zero} refs/heads/made\n"),
    )
    .unwrap();
    std::fs::write(
        pushes.join("76543210fedcba9876543210"),
        format!("# trove push repo={repo_id} user=writer\n# server change\nintent {head} refs/heads/main\n"),
    )
    .unwrap();
    t.restart(Duration::from_secs(30), quick);
    let got = rx.wait_for(3);
    let v = got[2].json();
    assert_eq!((v["eventKey"].as_str(), v["actor"]["name"].as_str()), (Some("repo:refs_changed"), Some("writer")));
    assert_eq!(
        v["changes"],
        json!([{"ref": {"id": "refs/heads/made", "displayId": "made", "type": "BRANCH"}, "refId": "refs/heads/made", "fromHash": zero, "toHash": head, "type": "ADD"}])
    );
    check_payload(&got[2]);
    // Nothing was made up for the change that never happened: the next event is the next push.
    t.commit(&dir, "next.txt", "next");
    let url = t.url_as("writer", "scm/TP/test.git");
    t.git_ok(&dir, &["push", "-q", &url, "main"]);
    let got = rx.wait_for(4);
    assert_eq!(got[3].json()["changes"][0]["refId"], "refs/heads/main", "{:#}", got[3].json());
    assert_eq!(rx.count(), 4);
    assert_eq!(std::fs::read_dir(&pushes).unwrap().count(), 0, "both journals are gone");
}

/// What Jenkins' Bitbucket Branch Source plugin does against a Bitbucket Server, in its order,
/// with a read-only service account (`reader`) and an administrator registering its webhook:
/// discovery, the repository, branches, the pull requests and their merge status, the
/// Jenkinsfile probe, its native webhook, `refs/pull-requests/*`, build statuses in both forms
/// (its `buildNumber` a number), and the events that tell it to build again.
#[test]
fn the_jenkins_bitbucket_branch_source_path_works_end_to_end() {
    let rx = Receiver::start();
    let t = TestServer::start_with(quick);
    allow_loopback(&t);
    let (dir, _) = t.seed("scm/TP/test.git", 1);
    t.git_ok(&dir, &["checkout", "-q", "-b", "feature", "main"]);
    t.commit(&dir, "Jenkinsfile", "pipeline { agent any }\n");
    t.git_ok(&dir, &["push", "-q", "origin", "feature"]);
    t.git_ok(&dir, &["checkout", "-q", "main"]);
    let pr = open_pr(&t, "feature");
    let head = pr["fromRef"]["latestCommit"].as_str().unwrap().to_owned();

    // Discovery, anonymous, then the links it names.
    let (s, caps) = {
        let r = t.http("GET", "/rest/capabilities", &[], b"");
        (r.status, serde_json::from_slice::<Value>(&r.body).unwrap())
    };
    assert_eq!((s, caps["application"].as_str()), (200, Some("stash")), "{caps:#}");
    let events = ok(&t, "GET", "/rest/webhooks/latest/capabilities", "reader", None, 200);
    assert!(events["events"].as_array().unwrap().iter().any(|e| e == "pr:from_ref_updated"), "{events:#}");
    assert_eq!(ok(&t, "GET", "/rest/api/1.0/build/capabilities", "reader", None, 200)["buildStatus"], json!(["richBuildStatus"]));
    assert!(ok(&t, "GET", "/rest/api/1.0/application-properties", "reader", None, 200)["version"].is_string());

    // The repository, its branches, its open pull requests and whether they merge.
    let repo = ok(&t, "GET", R, "reader", None, 200);
    assert!(repo["links"]["clone"].as_array().unwrap().iter().any(|l| l["name"] == "http"), "{repo:#}");
    let branches = ok(&t, "GET", &format!("{R}/branches?start=0&limit=100"), "reader", None, 200);
    let names: Vec<&str> = branches["values"].as_array().unwrap().iter().filter_map(|b| b["displayId"].as_str()).collect();
    assert!(names.contains(&"main") && names.contains(&"feature"), "{names:?}");
    let prs = ok(&t, "GET", &format!("{R}/pull-requests?state=OPEN&withAttributes=false&withProperties=false&start=0&limit=100"), "reader", None, 200);
    assert_eq!(prs["values"][0]["fromRef"]["latestCommit"], head.as_str());
    assert!(prs["values"][0]["links"]["self"][0]["href"].as_str().is_some_and(|h| h.ends_with("/pull-requests/1")), "{prs:#}");
    assert_eq!(ok(&t, "GET", &format!("{R}/pull-requests/1/merge"), "reader", None, 200)["canMerge"], true);

    // The Jenkinsfile probe on the branch, then its content.
    let probe = ok(&t, "GET", &format!("{R}/browse/Jenkinsfile?at=refs/heads/feature&type=true"), "reader", None, 200);
    assert_eq!(probe["type"], "FILE");
    let raw = t.http("GET", &format!("{R}/raw/Jenkinsfile?at=refs/heads/feature"), &[("Authorization", &basic("reader", &password("reader")))], b"");
    assert_eq!((raw.status, raw.text()), (200, "pipeline { agent any }\n".to_owned()));
    assert_eq!(call(&t, "GET", &format!("{R}/browse/Jenkinsfile?at=refs/heads/main&type=true"), "reader", None).0, 404);

    // Its native webhook, as the plugin registers it.
    let body = json!({
        "name": "Bitbucket Server Webhook to Jenkins",
        "url": rx.url("127.0.0.1"),
        "events": ["repo:refs_changed", "pr:opened", "pr:merged", "pr:declined", "pr:deleted", "pr:modified", "pr:from_ref_updated"],
        "active": true,
        "configuration": {"secret": SECRET},
    });
    let hook = ok(&t, "POST", &format!("{R}/webhooks"), "admin", Some(body), 200);
    assert!(hook["id"].is_i64() && hook["configuration"]["secret"] == SECRET, "{hook:#}");

    // The pull request's head, fetched as the plugin's refspec does.
    let refs = t.git_ok(&dir, &["ls-remote", "origin", "refs/pull-requests/*"]);
    assert!(refs.contains(&format!("{head}\trefs/pull-requests/1/from")), "{refs}");
    t.git_ok(&dir, &["fetch", "-q", "origin", "+refs/pull-requests/*:refs/remotes/origin/pr/*"]);
    assert_eq!(t.git_ok(&dir, &["rev-parse", "refs/remotes/origin/pr/1/from"]).trim(), head);

    // Build statuses: the repository form with a numeric buildNumber, then the legacy form.
    let build = |state: &str| {
        json!({"key": "TP-TEST-feature", "state": state, "url": "https://jenkins.example/job/test/job/feature/7/",
               "name": "test » feature #7", "buildNumber": 7, "duration": 1234, "ref": "refs/heads/feature", "parent": "TP-TEST"})
    };
    ok(&t, "POST", &format!("{R}/commits/{head}/builds"), "reader", Some(build("INPROGRESS")), 204);
    ok(&t, "POST", &format!("{R}/commits/{head}/builds"), "reader", Some(build("SUCCESSFUL")), 204);
    let legacy = json!({"key": "legacy", "state": "SUCCESSFUL", "url": "https://jenkins.example/legacy/1/"});
    ok(&t, "POST", &format!("/rest/build-status/1.0/commits/{head}"), "reader", Some(legacy), 204);
    let stats = ok(&t, "GET", &format!("/rest/build-status/1.0/commits/stats/{head}"), "reader", None, 200);
    assert_eq!((stats["successful"].as_i64(), stats["inProgress"].as_i64()), (Some(2), Some(0)), "{stats:#}");

    // A new commit on the branch: the events that start the next build, signed.
    t.git_ok(&dir, &["checkout", "-q", "feature"]);
    t.commit(&dir, "Jenkinsfile", "pipeline { agent none }\n");
    t.git_ok(&dir, &["push", "-q", "origin", "feature"]);
    let got = rx.wait_for(2);
    let mut keys: Vec<&str> = got.iter().map(|r| r.header("x-event-key")).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["pr:from_ref_updated", "repo:refs_changed"]);
    for r in &got {
        assert_eq!(r.header("x-hub-signature"), format!("sha256={}", hmac_hex(SECRET, &r.body)));
    }
    let updated = got.iter().find(|r| r.header("x-event-key") == "pr:from_ref_updated").unwrap().json();
    assert_eq!(updated["previousFromHash"], head.as_str());
    assert_eq!(updated["pullRequest"]["id"], 1);
}
