//! Search, the file finder, profiles and deleting a user in headless Chromium
//! (`crates/server/tests/ui/search.js`), then what the browser did, as the store sees it.

use trove_store::{Owner, ProjectKey, RepoSlug};

use crate::support::{TestServer, basic, password, user};
use crate::web_ui::{run_script, sample_repo};

#[test]
fn search_the_file_finder_profiles_and_deleting_a_user_work_in_headless_chromium() {
    let t = TestServer::start();
    sample_repo(&t);
    let store = t.server.store();
    // A project only administrators may read, whose repository's name matches the search.
    let secret = ProjectKey::parse("SECRET").unwrap();
    store.create_project(&secret, Some("Secret"), false).unwrap();
    store.create_repo(&Owner::Project(secret), &RepoSlug::parse("hidden-test").unwrap(), false).unwrap();
    // The user the administrator deletes comments on the commit first.
    store.set_user_details(&user("writer"), Some("Walter Writer"), Some("walter@example.com")).unwrap();
    let commit = t.git_ok(&t.repo_dir("TP", "test"), &["rev-parse", "refs/heads/main"]);
    let auth = basic("writer", &password("writer"));
    let r = t.http(
        "POST",
        &format!("/rest/api/1.0/projects/TP/repos/test/commits/{commit}/comments"),
        &[("Authorization", auth.as_str()), ("Content-Type", "application/json")],
        br#"{"text":"Written by Walter"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let writer_id = store.user(&user("writer")).unwrap().unwrap().id;
    let shots = match std::env::var_os("TROVE_SCREENSHOTS") {
        Some(d) => d.to_string_lossy().into_owned(),
        None if std::env::var_os("TROVE_UPDATE_SCREENSHOTS").is_some() => concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/screenshots").to_owned(),
        None => t.dir("screenshots").display().to_string(),
    };
    run_script(
        "search.js",
        &[
            ("TROVE_ROOT", t.root.clone()),
            ("TROVE_REPO", "TP/test".into()),
            ("TROVE_ADMIN", "admin".into()),
            ("TROVE_ADMIN_PASSWORD", password("admin")),
            ("TROVE_READER", "reader".into()),
            ("TROVE_READER_PASSWORD", password("reader")),
            ("TROVE_GONE", "writer".into()),
            ("TROVE_GONE_DISPLAY", "Walter Writer".into()),
            ("TROVE_COMMIT", commit.clone()),
            ("TROVE_SCREENSHOTS", shots),
        ],
    );
    // What the browser did: the reader's details saved, the writer deleted with their name kept,
    // their token gone, the repository they pushed to untouched.
    let reader = store.user(&user("reader")).unwrap().unwrap();
    assert_eq!((reader.display_name.as_str(), reader.email.as_deref()), ("Rita Reader", Some("rita@example.com")));
    assert!(store.user(&user("writer")).unwrap().is_none());
    assert_eq!(store.deleted_user(writer_id).unwrap().map(|d| d.display_name), Some("Walter Writer".to_owned()));
    assert!(store.verify_token(&t.writer_token, None).unwrap().is_none(), "the deleted user's token was removed");
    t.fsck("TP", "test");
}
