//! Comments on commits over REST (`…/commits/{id}/comments`), as Bitbucket Server 8 serves them:
//! general, file and line comments with replies, versions, who may edit and delete, the errors,
//! the `path` filter and paging past the first page.

use serde_json::{Value, json};

use crate::support::{TestServer, rest};

fn ok(t: &TestServer, who: &str, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
    let (s, v) = rest(t, Some(who), method, path, body);
    assert_eq!(s, want, "{method} {path} as {who}: {v:#}");
    v
}

const R: &str = "/rest/api/1.0/projects/TP/repos/test";

#[test]
fn commit_comments_are_made_replied_edited_and_deleted_with_bitbuckets_shapes_and_rules() {
    let t = TestServer::start();
    let (dir, tip) = t.seed("scm/TP/test.git", 2);
    let first = t.git_ok(&dir, &["rev-parse", "HEAD~1"]);
    let cc = format!("{R}/commits/{tip}/comments");

    // A reader comments on a line of the diff; the short id and a branch name reach the same commit.
    let line = json!({"text": "Why **this**?", "anchor": {"path": "/file-1.txt", "line": 1, "lineType": "ADDED", "fileType": "TO"}});
    let c = ok(&t, "reader", "POST", &format!("{R}/commits/{}/comments", &tip[..8]), Some(line), 201);
    assert_eq!((c["text"].as_str(), c["version"].as_i64(), c["author"]["name"].as_str()), (Some("Why **this**?"), Some(0), Some("reader")));
    assert_eq!(c["anchor"]["path"], "file-1.txt", "{c:#}");
    assert_eq!((c["anchor"]["line"].as_i64(), c["anchor"]["lineType"].as_str(), c["anchor"]["fileType"].as_str()), (Some(1), Some("ADDED"), Some("TO")));
    assert_eq!(c["permittedOperations"]["editable"], true);
    let id = c["id"].as_i64().unwrap();
    let reply = ok(&t, "writer", "POST", &format!("{R}/commits/main/comments"), Some(json!({"text": "Because.", "parent": {"id": id}})), 201);
    assert!(reply.get("anchor").is_none(), "a reply has no anchor of its own: {reply:#}");
    let general = ok(&t, "writer", "POST", &cc, Some(json!({"text": "Looks good"})), 201);
    // The list: roots with their replies nested, oldest first; `path` keeps one file's.
    let list = ok(&t, "reader", "GET", &cc, None, 200);
    assert_eq!(list["size"], 2);
    assert_eq!(list["values"][0]["comments"][0]["text"], "Because.");
    assert_eq!(list["values"][0]["permittedOperations"]["deletable"], false, "it has a reply");
    let on_file = ok(&t, "reader", "GET", &format!("{cc}?path=file-1.txt"), None, 200);
    assert_eq!(on_file["values"].as_array().unwrap().len(), 1);
    assert_eq!(ok(&t, "reader", "GET", &format!("{cc}?path=nope.txt"), None, 200)["size"], 0);
    // Other commits have their own.
    assert_eq!(ok(&t, "reader", "GET", &format!("{R}/commits/{first}/comments"), None, 200)["size"], 0);
    let one = ok(&t, "reader", "GET", &format!("{cc}/{id}"), None, 200);
    assert_eq!(one["comments"].as_array().unwrap().len(), 1);
    assert_eq!(rest(&t, Some("reader"), "GET", &format!("{R}/commits/{first}/comments/{id}"), None).0, 404, "not on that commit");

    // Edits: the author only, with the current version.
    let rid = reply["id"].as_i64().unwrap();
    let (s, v) = rest(&t, Some("reader"), "PUT", &format!("{cc}/{rid}"), Some(json!({"version": 0, "text": "hijack"})));
    assert_eq!(s, 403, "{v}");
    let (s, v) = rest(&t, Some("writer"), "PUT", &format!("{cc}/{rid}"), Some(json!({"version": 3, "text": "x"})));
    assert_eq!(s, 409, "{v}");
    assert!(v["errors"][0]["exceptionName"].as_str().unwrap().ends_with("CommentOutOfDateException"), "{v}");
    let (s, v) = rest(&t, Some("writer"), "PUT", &format!("{cc}/{rid}"), Some(json!({"text": "x"})));
    assert_eq!(s, 400, "{v}");
    let e = ok(&t, "writer", "PUT", &format!("{cc}/{rid}"), Some(json!({"version": 0, "text": "Because it is."})), 200);
    assert_eq!((e["version"].as_i64(), e["text"].as_str()), (Some(1), Some("Because it is.")));

    // Bad input: a 400 (or 404) that names the fault, and nothing is made.
    for (body, field) in [
        (json!({"text": "  "}), "text"),
        (json!({"text": "x", "parent": {"id": 999_999}}), "parent"),
        (json!({"text": "x", "anchor": {"line": 1}}), "anchor.path"),
        (json!({"text": "x", "anchor": {"path": "a/../b", "line": 1}}), "anchor.path"),
        (json!({"text": "x", "anchor": {"path": "a", "line": 1, "lineType": "SIDEWAYS"}}), "anchor.lineType"),
        (json!({"text": "x", "anchor": {"path": "a", "line": 1, "fileType": "BOTH"}}), "anchor.fileType"),
    ] {
        let (s, v) = rest(&t, Some("writer"), "POST", &cc, Some(body.clone()));
        assert_eq!((s, v["errors"][0]["context"].as_str()), (400, Some(field)), "{body}: {v}");
    }
    let (s, v) = rest(&t, Some("writer"), "POST", &cc, Some(json!({"text": "x".repeat(40_000)})));
    assert_eq!(s, 400, "{v}");
    let (s, v) = rest(&t, Some("writer"), "POST", &format!("{R}/commits/{}/comments", "0".repeat(40)), Some(json!({"text": "x"})));
    assert_eq!(s, 404, "{v}");
    assert!(v["errors"][0]["exceptionName"].as_str().unwrap().ends_with("NoSuchCommitException"), "{v}");
    assert_eq!(ok(&t, "reader", "GET", &cc, None, 200)["size"], 2, "nothing was made");
    // Who may see and comment.
    assert_eq!(rest(&t, Some("outsider"), "GET", &cc, None).0, 404);
    assert_eq!(rest(&t, Some("outsider"), "POST", &cc, Some(json!({"text": "x"}))).0, 404);
    assert_eq!(rest(&t, None, "POST", &cc, Some(json!({"text": "x"}))).0, 401);

    // Deletes: not while it has replies; another user's only by a repository admin.
    assert_eq!(rest(&t, Some("writer"), "DELETE", &format!("{cc}/{id}?version=0"), None).0, 403, "the writer is not its author");
    let (s, v) = rest(&t, Some("reader"), "DELETE", &format!("{cc}/{id}?version=0"), None);
    assert_eq!(s, 409, "{v}");
    assert!(v["errors"][0]["exceptionName"].as_str().unwrap().ends_with("CommentDeletionException"), "{v}");
    assert_eq!(rest(&t, Some("writer"), "DELETE", &format!("{cc}/{rid}"), None).0, 400, "the version is required");
    assert_eq!(rest(&t, Some("writer"), "DELETE", &format!("{cc}/{rid}?version=1"), None).0, 204);
    assert_eq!(rest(&t, Some("admin"), "DELETE", &format!("{cc}/{id}?version=0"), None).0, 204, "an admin deletes another's");
    assert_eq!(rest(&t, Some("writer"), "DELETE", &format!("{cc}/{rid}?version=1"), None).0, 404);
    let left = ok(&t, "reader", "GET", &cc, None, 200);
    assert_eq!(left["values"][0]["id"], general["id"]);

    // Paging past the first page.
    for i in 0..5 {
        ok(&t, "writer", "POST", &cc, Some(json!({"text": format!("note {i}")})), 201);
    }
    let p1 = ok(&t, "reader", "GET", &format!("{cc}?limit=4"), None, 200);
    assert_eq!((p1["size"].as_i64(), p1["isLastPage"].as_bool(), p1["nextPageStart"].as_i64()), (Some(4), Some(false), Some(4)));
    let p2 = ok(&t, "reader", "GET", &format!("{cc}?limit=4&start=4"), None, 200);
    assert_eq!((p2["size"].as_i64(), p2["isLastPage"].as_bool()), (Some(2), Some(true)));
    assert_eq!(p2["values"][1]["text"], "note 4");
}
