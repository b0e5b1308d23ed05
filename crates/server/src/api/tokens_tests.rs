//! Handler tests for personal access tokens over REST (`/rest/access-tokens/1.0`), through
//! `app()` with `oneshot`: Bitbucket's shapes, the secret shown once and working, who may do
//! what, bad input, paging, expiry, and the audit entries.

use http::StatusCode;
use serde_json::{Value, json};
use trove_store::{AuditQuery, Permission, UserName};

use super::tests::{Fixture, Resp, basic, fixture};

const BASE: &str = "/rest/access-tokens/1.0/users";

async fn call(f: &Fixture, who: Option<&str>, method: &str, uri: &str, body: Option<Value>) -> Resp {
    f.raw(method, uri, who.map(|u| basic(u, &format!("{u}-password"))), body.map(|b| b.to_string().into_bytes())).await
}

async fn with_token(f: &Fixture, token: &str, method: &str, uri: &str, body: Option<Value>) -> Resp {
    f.raw(method, uri, Some(format!("Bearer {token}")), body.map(|b| b.to_string().into_bytes())).await
}

#[tokio::test]
async fn a_token_is_created_shown_once_works_and_is_listed_updated_and_revoked() {
    let f = fixture("", None);
    let r = call(
        &f,
        Some("reader"),
        "PUT",
        &format!("{BASE}/reader"),
        Some(json!({"name": "ci", "permissions": ["PROJECT_READ", "REPO_WRITE"], "expiryDays": 30})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let made = r.json();
    let secret = made["token"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["name"], "ci");
    assert_eq!(made["permissions"], json!(["PROJECT_WRITE", "REPO_WRITE"]), "one scope: the highest level asked for");
    assert_eq!(made["expiryDays"], 30);
    assert_eq!(made["user"]["name"], "reader");
    let created = made["createdDate"].as_i64().unwrap();
    assert_eq!(made["expiryDate"].as_i64().unwrap() - created, 30 * 86_400 * 1000);
    // The secret works as Bearer and is capped by the reader's own permission (read on TP).
    let r = with_token(&f, &secret, "GET", "/rest/api/1.0/projects/TP/repos/test", None).await;
    assert_eq!(r.status, StatusCode::OK);
    // Listed and read without the secret.
    let r = call(&f, Some("reader"), "GET", &format!("{BASE}/reader"), None).await;
    let page = r.json();
    assert_eq!((page["size"].as_u64(), page["isLastPage"].as_bool()), (Some(1), Some(true)));
    assert!(page["values"][0].get("token").is_none() && page["values"][0]["id"] == id.as_str());
    assert!(page["values"][0]["lastAuthenticated"].is_i64(), "used once");
    let r = call(&f, Some("reader"), "GET", &format!("{BASE}/reader/{id}"), None).await;
    assert_eq!((r.status, r.json()["name"].as_str()), (StatusCode::OK, Some("ci")));
    // Update: name and permissions; the expiry stays.
    let r = call(&f, Some("reader"), "POST", &format!("{BASE}/reader/{id}"), Some(json!({"name": "deploy", "permissions": ["REPO_READ"]}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        (r.json()["name"].as_str(), r.json()["permissions"].clone(), r.json()["expiryDays"].as_i64()),
        (Some("deploy"), json!(["PROJECT_READ", "REPO_READ"]), Some(30))
    );
    let r = call(&f, Some("reader"), "POST", &format!("{BASE}/reader/{id}"), Some(json!({"expiryDays": 5}))).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("expiryDays")));
    // Revoke: 204, then the secret is dead and the token gone.
    let r = call(&f, Some("reader"), "DELETE", &format!("{BASE}/reader/{id}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(with_token(&f, &secret, "GET", "/rest/api/1.0/projects/TP/repos/test", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&f, Some("reader"), "GET", &format!("{BASE}/reader/{id}"), None).await.status, StatusCode::NOT_FOUND);
    // The audit log has the create, the update and the revoke, never the secret.
    let (entries, _) = f.server.store().audit_entries(&AuditQuery { action: Some("token.*".into()), ..AuditQuery::default() }).unwrap();
    let mine: Vec<(&str, &str)> = entries.iter().filter(|e| e.action.starts_with("token.")).map(|e| (e.action.as_str(), e.target.as_str())).collect();
    let target = format!("user:reader token:{id}");
    assert_eq!(mine.len(), 3, "{mine:?}");
    assert!(mine.iter().all(|(_, t)| *t == target), "{mine:?}");
    let mut actions: Vec<&str> = mine.iter().map(|(a, _)| *a).collect();
    actions.sort();
    assert_eq!(actions, ["token.create", "token.revoke", "token.update"]);
    assert!(entries.iter().all(|e| !e.details.contains(&secret)));
}

#[tokio::test]
async fn tokens_are_managed_by_their_owner_and_only_read_or_revoked_by_administrators() {
    let f = fixture("", None);
    let body = json!({"name": "x", "permissions": ["REPO_READ"]});
    // Anonymous: 401; another user: 403; an administrator cannot mint for others.
    assert_eq!(call(&f, None, "PUT", &format!("{BASE}/reader"), Some(body.clone())).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&f, Some("outsider"), "PUT", &format!("{BASE}/reader"), Some(body.clone())).await.status, StatusCode::FORBIDDEN);
    assert_eq!(call(&f, Some("admin"), "PUT", &format!("{BASE}/reader"), Some(body.clone())).await.status, StatusCode::FORBIDDEN);
    assert_eq!(call(&f, Some("admin"), "PUT", &format!("{BASE}/nobody"), Some(body.clone())).await.status, StatusCode::NOT_FOUND);
    // A token cannot mint a token, nor widen itself.
    let t = f.server.store().create_token(&UserName::parse("reader").unwrap(), "ro", Permission::Read).unwrap();
    let r = with_token(&f, &t.secret, "PUT", &format!("{BASE}/reader"), Some(body.clone())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.error().0.contains("log in with your password"));
    let r = with_token(&f, &t.secret, "POST", &format!("{BASE}/reader/{}", t.id), Some(json!({"permissions": ["REPO_ADMIN"]}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Others' tokens: hidden from users, visible to administrators, who may revoke them.
    assert_eq!(call(&f, Some("outsider"), "GET", &format!("{BASE}/reader"), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(call(&f, Some("outsider"), "DELETE", &format!("{BASE}/reader/{}", t.id), None).await.status, StatusCode::FORBIDDEN);
    let r = call(&f, Some("admin"), "GET", &format!("{BASE}/reader"), None).await;
    assert_eq!((r.status, r.json()["size"].as_u64()), (StatusCode::OK, Some(1)));
    assert_eq!(call(&f, Some("admin"), "POST", &format!("{BASE}/reader/{}", t.id), Some(json!({"name": "y"}))).await.status, StatusCode::FORBIDDEN);
    // Another user's token id under my name is not mine: 404.
    assert_eq!(call(&f, Some("owner"), "GET", &format!("{BASE}/owner/{}", t.id), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&f, Some("owner"), "DELETE", &format!("{BASE}/owner/{}", t.id), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&f, Some("admin"), "DELETE", &format!("{BASE}/reader/{}", t.id), None).await.status, StatusCode::NO_CONTENT);
    assert!(f.server.store().verify_token(&t.secret, None).unwrap().is_none());
}

#[tokio::test]
async fn bad_token_requests_are_400_and_create_nothing() {
    let f = fixture("", None);
    let uri = format!("{BASE}/reader");
    for (body, context) in [
        (json!({"permissions": ["REPO_READ"]}), "name"),
        (json!({"name": " ", "permissions": ["REPO_READ"]}), "name"),
        (json!({"name": "x"}), "permissions"),
        (json!({"name": "x", "permissions": []}), "permissions"),
        (json!({"name": "x", "permissions": ["REPO_OWNER"]}), "permissions"),
        (json!({"name": "x", "permissions": ["PROJECT_ADMIN", "REPO_READ"]}), "permissions"),
        (json!({"name": "x", "permissions": ["REPO_READ"], "expiryDays": 0}), "expiryDays"),
        (json!({"name": "x", "permissions": ["REPO_READ"], "expiryDays": 1.5}), "expiryDays"),
        (json!({"name": "x", "permissions": ["REPO_READ"], "expiryDays": 100000}), "expiryDays"),
    ] {
        let r = call(&f, Some("reader"), "PUT", &uri, Some(body.clone())).await;
        assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!(context)), "{body}");
    }
    assert_eq!(f.raw("PUT", &uri, Some(basic("reader", "reader-password")), Some(b"[".to_vec())).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(call(&f, Some("reader"), "GET", &format!("{uri}/abc"), None).await.status, StatusCode::NOT_FOUND);
    assert!(f.server.store().tokens(&f.server.store().user(&UserName::parse("reader").unwrap()).unwrap().unwrap()).unwrap().is_empty());
}

#[tokio::test]
async fn token_lists_page_and_answer_under_latest_too() {
    let f = fixture("", None);
    for i in 0..27 {
        let r = call(&f, Some("owner"), "PUT", "/rest/access-tokens/latest/users/owner", Some(json!({"name": format!("t{i}"), "permissions": ["REPO_READ"]})))
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let first = call(&f, Some("owner"), "GET", &format!("{BASE}/owner"), None).await.json();
    assert_eq!((first["size"].as_u64(), first["isLastPage"].as_bool(), first["nextPageStart"].as_u64()), (Some(25), Some(false), Some(25)));
    let second = call(&f, Some("owner"), "GET", &format!("{BASE}/owner?start=25"), None).await.json();
    assert_eq!((second["size"].as_u64(), second["isLastPage"].as_bool()), (Some(2), Some(true)));
    assert_eq!(second["values"][1]["name"], "t26");
}

#[tokio::test]
async fn an_expired_token_is_refused_by_rest_and_git() {
    let f = fixture("", None);
    let name = UserName::parse("reader").unwrap();
    let expired = f.server.store().create_token_expiring(&name, "old", Permission::Read, Some(1)).unwrap();
    let r = with_token(&f, &expired.secret, "GET", "/rest/api/1.0/projects/TP", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f.raw("GET", "/rest/api/1.0/projects/TP", Some(basic("reader", &expired.secret)), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "nor as a Basic password");
    let r = f.raw("GET", "/scm/TP/test.git/info/refs?service=git-upload-pack", Some(basic("reader", &expired.secret)), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "nor for git");
    // The list shows it, with its expiry in the past.
    let r = call(&f, Some("reader"), "GET", &format!("{BASE}/reader"), None).await;
    assert_eq!(r.json()["values"][0]["expiryDate"], 1000);
}
