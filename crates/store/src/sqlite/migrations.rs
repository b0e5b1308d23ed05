//! Schema migrations for the metadata database, applied in order at open.
//!
//! `PRAGMA user_version` records how many have run. Append new migrations; never edit one that
//! has shipped.

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: users, projects, repositories, permissions, tokens, settings.
    r#"
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        email TEXT,
        password_hash TEXT,
        global_permission TEXT,
        active INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE projects (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        description TEXT,
        public INTEGER NOT NULL DEFAULT 0,
        default_permission TEXT,
        owner_user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE repositories (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        slug TEXT NOT NULL,
        name TEXT NOT NULL,
        public INTEGER NOT NULL DEFAULT 0,
        forkable INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL,
        UNIQUE (project_id, slug)
    );
    CREATE TABLE project_permissions (
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        permission TEXT NOT NULL,
        PRIMARY KEY (project_id, user_id)
    );
    CREATE TABLE repo_permissions (
        repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        permission TEXT NOT NULL,
        PRIMARY KEY (repo_id, user_id)
    );
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        scope TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 2: web UI sessions (the session id is stored only as its SHA-256).
    r#"
    CREATE TABLE web_sessions (
        id_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX web_sessions_user ON web_sessions (user_id);
    "#,
    // 3: failed logins per account and account locks (see `logins`).
    r#"
    CREATE TABLE login_failures (
        user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        failures INTEGER NOT NULL,
        last_at INTEGER NOT NULL,
        locked_at INTEGER
    );
    "#,
    // 4: repository ids are never reused, so nothing kept under a deleted repository's id (its
    // directory, caches keyed by id, a webhook delivery) can be taken for a new one. SQLite's
    // INTEGER PRIMARY KEY reuses the highest id once that row is deleted; the highest id ever
    // deleted is kept here (also for deletes cascaded from a project) and new ids start above it.
    r#"
    CREATE TABLE retired_ids (
        tbl TEXT PRIMARY KEY,
        id INTEGER NOT NULL
    );
    CREATE TRIGGER repositories_retire_id AFTER DELETE ON repositories BEGIN
        INSERT INTO retired_ids (tbl, id) VALUES ('repositories', OLD.id)
        ON CONFLICT (tbl) DO UPDATE SET id = max(id, excluded.id);
    END;
    "#,
    // 5: leases, cluster-wide locks with an expiry (see `leases`).
    r#"
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until INTEGER NOT NULL
    );
    "#,
    // 6: failed logins per address, so that every node counts an address's password spraying.
    r#"
    CREATE TABLE address_failures (
        addr TEXT NOT NULL,
        user_name TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (addr, user_name)
    );
    "#,
    // 7: pull requests (see `pull_requests`). AUTOINCREMENT: a deleted pull request's, comment's
    // or activity's id is never given again (comment ids are shown to REST clients). Numbers
    // count per repository in `pr_counters`, which outlives the pull requests it numbered.
    // Authors (of pull requests, comments, activities) are plain ids, no foreign key: deleting an
    // account keeps everyone's review history, and user ids are retired like repositories' so
    // that a new account never inherits a deleted one's pull requests. Participants and watchers
    // go with their account.
    r#"
    CREATE TABLE pr_counters (
        repo_id INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
        last_number INTEGER NOT NULL
    );
    CREATE TABLE pull_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        title TEXT NOT NULL,
        description TEXT,
        author_id INTEGER NOT NULL,
        from_repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        from_ref TEXT NOT NULL,
        to_ref TEXT NOT NULL,
        from_hash TEXT NOT NULL,
        to_hash TEXT NOT NULL,
        state TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        closed_at INTEGER,
        merge_commit TEXT,
        merge_outcome TEXT,
        UNIQUE (repo_id, number)
    );
    -- One open pull request between two refs, decided by the database even under races.
    CREATE UNIQUE INDEX pull_requests_one_open ON pull_requests (repo_id, from_repo_id, from_ref, to_ref) WHERE state = 'OPEN';
    CREATE INDEX pull_requests_from ON pull_requests (from_repo_id, from_ref);
    CREATE INDEX pull_requests_updated ON pull_requests (updated_at);
    CREATE TABLE pr_participants (
        pr_id INTEGER NOT NULL REFERENCES pull_requests(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        status TEXT NOT NULL,
        last_reviewed_commit TEXT,
        seq INTEGER NOT NULL,
        PRIMARY KEY (pr_id, user_id)
    );
    CREATE INDEX pr_participants_user ON pr_participants (user_id);
    CREATE TABLE pr_activities (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pr_id INTEGER NOT NULL REFERENCES pull_requests(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        action TEXT NOT NULL,
        comment_id INTEGER,
        detail TEXT NOT NULL
    );
    CREATE INDEX pr_activities_pr ON pr_activities (pr_id);
    CREATE TABLE pr_comments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pr_id INTEGER NOT NULL REFERENCES pull_requests(id) ON DELETE CASCADE,
        parent_id INTEGER REFERENCES pr_comments(id),
        author_id INTEGER NOT NULL,
        text TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        severity TEXT NOT NULL,
        state TEXT NOT NULL,
        anchor TEXT,
        orphaned INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX pr_comments_pr ON pr_comments (pr_id);
    CREATE INDEX pr_comments_parent ON pr_comments (parent_id);
    CREATE TABLE pr_watchers (
        pr_id INTEGER NOT NULL REFERENCES pull_requests(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (pr_id, user_id)
    );
    CREATE INDEX pr_watchers_user ON pr_watchers (user_id);
    CREATE TABLE pr_settings (
        repo_id INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
        json TEXT NOT NULL
    );
    CREATE TRIGGER users_retire_id AFTER DELETE ON users BEGIN
        INSERT INTO retired_ids (tbl, id) VALUES ('users', OLD.id)
        ON CONFLICT (tbl) DO UPDATE SET id = max(id, excluded.id);
    END;
    "#,
    // 8: groups (see `groups`). A group's name is unique without regard to case (`name_key`,
    // its lower case, as Rust folds it, so both backends agree), and shown as created. Its
    // memberships and grants go with it, and with their user, project or repository.
    r#"
    CREATE TABLE user_groups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL UNIQUE,
        global_permission TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE group_members (
        group_id INTEGER NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (group_id, user_id)
    );
    CREATE INDEX group_members_user ON group_members (user_id);
    CREATE TABLE project_group_permissions (
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        group_id INTEGER NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
        permission TEXT NOT NULL,
        PRIMARY KEY (project_id, group_id)
    );
    CREATE INDEX project_group_permissions_group ON project_group_permissions (group_id);
    CREATE TABLE repo_group_permissions (
        repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        group_id INTEGER NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
        permission TEXT NOT NULL,
        PRIMARY KEY (repo_id, group_id)
    );
    CREATE INDEX repo_group_permissions_group ON repo_group_permissions (group_id);
    "#,
    // 9: branch permissions (see `branch_permissions`): restrictions on a project or on one
    // repository (exactly one of the two ids), going with it; exempt users and groups go with
    // their account or group. Access keys are plain ids until SSH access keys land. AUTOINCREMENT:
    // REST clients address restrictions by id, so a deleted one's is never given again.
    r#"
    CREATE TABLE branch_restrictions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER REFERENCES projects(id) ON DELETE CASCADE,
        repo_id INTEGER REFERENCES repositories(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        matcher_type TEXT NOT NULL,
        matcher_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        CHECK ((project_id IS NULL) <> (repo_id IS NULL))
    );
    CREATE INDEX branch_restrictions_project ON branch_restrictions (project_id);
    CREATE INDEX branch_restrictions_repo ON branch_restrictions (repo_id);
    CREATE TABLE branch_restriction_users (
        restriction_id INTEGER NOT NULL REFERENCES branch_restrictions(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (restriction_id, user_id)
    );
    CREATE INDEX branch_restriction_users_user ON branch_restriction_users (user_id);
    CREATE TABLE branch_restriction_groups (
        restriction_id INTEGER NOT NULL REFERENCES branch_restrictions(id) ON DELETE CASCADE,
        group_id INTEGER NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
        PRIMARY KEY (restriction_id, group_id)
    );
    CREATE INDEX branch_restriction_groups_group ON branch_restriction_groups (group_id);
    CREATE TABLE branch_restriction_keys (
        restriction_id INTEGER NOT NULL REFERENCES branch_restrictions(id) ON DELETE CASCADE,
        key_id INTEGER NOT NULL,
        PRIMARY KEY (restriction_id, key_id)
    );
    "#,
    // 10: the audit log (see `audit`), and pull-request settings per project, which a repository
    // without its own inherits. AUTOINCREMENT: an entry's id is never given again, even after
    // pruning took every older one.
    r#"
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        address TEXT,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        details TEXT NOT NULL
    );
    CREATE INDEX audit_log_at ON audit_log (at);
    CREATE INDEX audit_log_actor ON audit_log (actor);
    CREATE TABLE project_pr_settings (
        project_id INTEGER PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
        json TEXT NOT NULL
    );
    "#,
    // 11: webhooks (see `webhooks`): on a project or on one repository, going with it; the event
    // outbox; one delivery per webhook and event; and the lanes whose row lock orders the events
    // of one repository. Events keep no foreign key: a repository's last events are delivered to
    // its project's webhooks after it is deleted. AUTOINCREMENT: REST clients hold webhook ids.
    r#"
    CREATE TABLE webhooks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        repo_id INTEGER REFERENCES repositories(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        active INTEGER NOT NULL,
        secret TEXT,
        ssl_verify INTEGER NOT NULL,
        username TEXT,
        password TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0,
        paused_until INTEGER
    );
    CREATE INDEX webhooks_project ON webhooks (project_id);
    CREATE INDEX webhooks_repo ON webhooks (repo_id);
    CREATE TABLE webhook_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL,
        repo_id INTEGER,
        event_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE webhook_lanes (
        lane INTEGER PRIMARY KEY,
        events INTEGER NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook_id INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event_id INTEGER NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
        lane INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        claimed_by TEXT,
        claim_expiry INTEGER,
        last_attempt_at INTEGER,
        last_outcome TEXT,
        last_status INTEGER,
        last_response TEXT,
        last_duration_ms INTEGER
    );
    CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (state, next_attempt_at);
    CREATE INDEX webhook_deliveries_lane ON webhook_deliveries (webhook_id, lane, state, id);
    CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
    CREATE INDEX webhook_deliveries_latest ON webhook_deliveries (webhook_id, last_attempt_at);
    "#,
    // 12: build statuses, required-builds conditions and Code Insights (see `builds`). A build status with
    // no repository was posted to the legacy endpoint, global by commit; the unique index makes
    // (commit, key) one row per repository and one legacy row. Required builds and reports are
    // AUTOINCREMENT: REST clients address conditions by id. A report's creator may go; the
    // report stays.
    r#"
    CREATE TABLE build_statuses (
        id INTEGER PRIMARY KEY,
        repo_id INTEGER REFERENCES repositories(id) ON DELETE CASCADE,
        commit_id TEXT NOT NULL,
        build_key TEXT NOT NULL,
        state TEXT NOT NULL,
        name TEXT,
        url TEXT NOT NULL,
        description TEXT,
        build_number TEXT,
        duration_ms INTEGER,
        parent TEXT,
        ref_name TEXT,
        tests_successful INTEGER,
        tests_failed INTEGER,
        tests_skipped INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX build_statuses_key ON build_statuses (commit_id, build_key, (coalesce(repo_id, 0)));
    CREATE INDEX build_statuses_repo ON build_statuses (repo_id);
    CREATE TABLE required_builds (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        build_keys TEXT NOT NULL,
        matcher_type TEXT NOT NULL,
        matcher_id TEXT NOT NULL,
        exempt_matcher_type TEXT,
        exempt_matcher_id TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX required_builds_repo ON required_builds (repo_id);
    CREATE TABLE insight_reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        commit_id TEXT NOT NULL,
        report_key TEXT NOT NULL,
        title TEXT NOT NULL,
        details TEXT,
        result TEXT,
        data TEXT NOT NULL,
        reporter TEXT,
        link TEXT,
        logo_url TEXT,
        creator_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (repo_id, commit_id, report_key)
    );
    CREATE TABLE insight_annotations (
        id INTEGER PRIMARY KEY,
        report_id INTEGER NOT NULL REFERENCES insight_reports(id) ON DELETE CASCADE,
        external_id TEXT,
        path TEXT,
        line INTEGER NOT NULL,
        message TEXT NOT NULL,
        severity TEXT NOT NULL,
        kind TEXT,
        link TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX insight_annotations_report ON insight_annotations (report_id, external_id);
    CREATE INDEX insight_reports_creator ON insight_reports (creator_id);
    "#,
    // 13: personal access tokens may expire (Unix
    // seconds; NULL: never), as Bitbucket's `expiryDays`; repositories have a description; a
    // renamed or moved repository's old project and slug redirect to it (until another
    // repository takes them), going with the project or the repository.
    r#"
    ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
    ALTER TABLE repositories ADD COLUMN description TEXT;
    CREATE TABLE repo_redirects (
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        slug TEXT NOT NULL,
        repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        PRIMARY KEY (project_id, slug)
    );
    CREATE INDEX repo_redirects_repo ON repo_redirects (repo_id);
    "#,
    // 14: SSH keys (see `ssh_keys`): one row per key, unique across the server by fingerprint;
    // a user's key goes with its account; an access key (no user) has grants on projects or
    // repositories, which go with them. Branch restrictions' access-key exemptions
    // (`branch_restriction_keys.key_id`) are these ids. AUTOINCREMENT: REST clients address keys
    // by id, so a deleted one's is never given again.
    r#"
    CREATE TABLE ssh_keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
        label TEXT NOT NULL,
        text TEXT NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE,
        algorithm TEXT NOT NULL,
        bits INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
    );
    CREATE INDEX ssh_keys_user ON ssh_keys (user_id);
    CREATE TABLE ssh_access_keys (
        key_id INTEGER NOT NULL REFERENCES ssh_keys(id) ON DELETE CASCADE,
        project_id INTEGER REFERENCES projects(id) ON DELETE CASCADE,
        repo_id INTEGER REFERENCES repositories(id) ON DELETE CASCADE,
        permission TEXT NOT NULL,
        CHECK ((project_id IS NULL) <> (repo_id IS NULL))
    );
    CREATE UNIQUE INDEX ssh_access_keys_scope ON ssh_access_keys (key_id, coalesce(project_id, 0), coalesce(repo_id, 0));
    CREATE INDEX ssh_access_keys_project ON ssh_access_keys (project_id);
    CREATE INDEX ssh_access_keys_repo ON ssh_access_keys (repo_id);
    "#,
    // 15: forks. A fork names its origin (`origin_id`, cleared when the origin is deleted: the
    // fork's objects are its own, see docs/server.md) and its hierarchy (`hierarchy_id`, the id of
    // the repository at the root of the fork tree; not a foreign key, so the hierarchy outlives a
    // deleted root, as Bitbucket's does). A repository that is no fork has neither.
    r#"
    ALTER TABLE repositories ADD COLUMN origin_id INTEGER REFERENCES repositories(id) ON DELETE SET NULL;
    ALTER TABLE repositories ADD COLUMN hierarchy_id INTEGER;
    CREATE INDEX repositories_origin ON repositories (origin_id);
    CREATE INDEX repositories_hierarchy ON repositories (hierarchy_id);
    "#,
    // 16: comments on commits (see `commit_comments`), going with their repository; a reply
    // names its parent, which cannot go while it has replies.
    r#"
    CREATE TABLE commit_comments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        commit_id TEXT NOT NULL,
        parent_id INTEGER REFERENCES commit_comments(id),
        author_id INTEGER NOT NULL,
        text TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        anchor TEXT
    );
    CREATE INDEX commit_comments_commit ON commit_comments (repo_id, commit_id);
    CREATE INDEX commit_comments_parent ON commit_comments (parent_id);
    "#,
    // 17: deleted accounts' names (see `Users::delete_user_rows`): a deleted user's pull
    // requests, comments and activities keep their author's id, and pages and REST show the name
    // and display name kept here instead of "Deleted user". Ids are never reused (`retired_ids`),
    // so one id names one person for good.
    r#"
    CREATE TABLE deleted_users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        display_name TEXT NOT NULL,
        deleted_at INTEGER NOT NULL
    );
    "#,
];
