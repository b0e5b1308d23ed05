//! Schema migrations for PostgreSQL, applied in order at open under an advisory lock.
//!
//! The same tables as SQLite's (`sqlite/migrations.rs`), in PostgreSQL's types. `trove_schema`
//! records how many have run. Append new migrations; never edit one that has shipped.

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: everything SQLite reached in its migrations 1-4, at once. Repository ids come from a
    // sequence, which never hands out a number twice, deleted rows included.
    r#"
    CREATE TABLE users (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        email TEXT,
        password_hash TEXT,
        global_permission TEXT,
        active BOOLEAN NOT NULL DEFAULT TRUE,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE projects (
        id BIGSERIAL PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        description TEXT,
        public BOOLEAN NOT NULL DEFAULT FALSE,
        default_permission TEXT,
        owner_user_id BIGINT REFERENCES users(id) ON DELETE CASCADE,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE repositories (
        id BIGSERIAL PRIMARY KEY,
        project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        slug TEXT NOT NULL,
        name TEXT NOT NULL,
        public BOOLEAN NOT NULL DEFAULT FALSE,
        forkable BOOLEAN NOT NULL DEFAULT TRUE,
        created_at BIGINT NOT NULL,
        UNIQUE (project_id, slug)
    );
    CREATE TABLE project_permissions (
        project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        permission TEXT NOT NULL,
        PRIMARY KEY (project_id, user_id)
    );
    CREATE TABLE repo_permissions (
        repo_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        permission TEXT NOT NULL,
        PRIMARY KEY (repo_id, user_id)
    );
    CREATE TABLE tokens (
        id BIGSERIAL PRIMARY KEY,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        scope TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        last_used_at BIGINT
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE web_sessions (
        id_hash TEXT PRIMARY KEY,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX web_sessions_user ON web_sessions (user_id);
    CREATE TABLE login_failures (
        user_id BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        failures INTEGER NOT NULL,
        last_at BIGINT NOT NULL,
        locked_at BIGINT
    );
    -- Every node LISTENs on trove_changes and drops what it keeps of the settings when told
    -- (the base URL is read once per change, not per request).
    CREATE FUNCTION trove_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('trove_changes', TG_TABLE_NAME);
        RETURN NULL;
    END $$;
    CREATE TRIGGER settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON settings
        FOR EACH STATEMENT EXECUTE FUNCTION trove_notify_change();
    "#,
    // 2: leases, cluster-wide locks with an expiry (see `leases`).
    r#"
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until BIGINT NOT NULL
    );
    "#,
    // 3: failed logins per address, so that every node counts an address's password spraying.
    r#"
    CREATE TABLE address_failures (
        addr TEXT NOT NULL,
        user_name TEXT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (addr, user_name)
    );
    "#,
    // 4: pull requests (SQLite's 7). Authors (of pull requests, comments, activities) are plain
    // ids, no foreign key: deleting an account keeps everyone's review history (ids come from
    // sequences, so no new account inherits them). Participants and watchers go with their
    // account.
    r#"
    CREATE TABLE pr_counters (
        repo_id BIGINT PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
        last_number BIGINT NOT NULL
    );
    CREATE TABLE pull_requests (
        id BIGSERIAL PRIMARY KEY,
        repo_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        number BIGINT NOT NULL,
        title TEXT NOT NULL,
        description TEXT,
        author_id BIGINT NOT NULL,
        from_repo_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        from_ref TEXT NOT NULL,
        to_ref TEXT NOT NULL,
        from_hash TEXT NOT NULL,
        to_hash TEXT NOT NULL,
        state TEXT NOT NULL,
        version BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        closed_at BIGINT,
        merge_commit TEXT,
        merge_outcome TEXT,
        UNIQUE (repo_id, number)
    );
    -- One open pull request between two refs, decided by the database even under races.
    CREATE UNIQUE INDEX pull_requests_one_open ON pull_requests (repo_id, from_repo_id, from_ref, to_ref) WHERE state = 'OPEN';
    CREATE INDEX pull_requests_from ON pull_requests (from_repo_id, from_ref);
    CREATE INDEX pull_requests_updated ON pull_requests (updated_at);
    CREATE TABLE pr_participants (
        pr_id BIGINT NOT NULL REFERENCES pull_requests(id) ON DELETE CASCADE,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        status TEXT NOT NULL,
        last_reviewed_commit TEXT,
        seq BIGINT NOT NULL,
        PRIMARY KEY (pr_id, user_id)
    );
    CREATE INDEX pr_participants_user ON pr_participants (user_id);
    CREATE TABLE pr_activities (
        id BIGSERIAL PRIMARY KEY,
        pr_id BIGINT NOT NULL REFERENCES pull_requests(id) ON DELETE CASCADE,
        created_at BIGINT NOT NULL,
        user_id BIGINT NOT NULL,
        action TEXT NOT NULL,
        comment_id BIGINT,
        detail TEXT NOT NULL
    );
    CREATE INDEX pr_activities_pr ON pr_activities (pr_id);
    CREATE TABLE pr_comments (
        id BIGSERIAL PRIMARY KEY,
        pr_id BIGINT NOT NULL REFERENCES pull_requests(id) ON DELETE CASCADE,
        parent_id BIGINT REFERENCES pr_comments(id),
        author_id BIGINT NOT NULL,
        text TEXT NOT NULL,
        version BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        severity TEXT NOT NULL,
        state TEXT NOT NULL,
        anchor TEXT,
        orphaned BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE INDEX pr_comments_pr ON pr_comments (pr_id);
    CREATE INDEX pr_comments_parent ON pr_comments (parent_id);
    CREATE TABLE pr_watchers (
        pr_id BIGINT NOT NULL REFERENCES pull_requests(id) ON DELETE CASCADE,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (pr_id, user_id)
    );
    CREATE INDEX pr_watchers_user ON pr_watchers (user_id);
    CREATE TABLE pr_settings (
        repo_id BIGINT PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
        json TEXT NOT NULL
    );
    "#,
    // 5: groups (SQLite's 8). A group's name is unique without regard to case (`name_key`, its
    // lower case as Rust folds it, so both backends agree), and shown as created.
    r#"
    CREATE TABLE user_groups (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL UNIQUE,
        global_permission TEXT,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE group_members (
        group_id BIGINT NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (group_id, user_id)
    );
    CREATE INDEX group_members_user ON group_members (user_id);
    CREATE TABLE project_group_permissions (
        project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        group_id BIGINT NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
        permission TEXT NOT NULL,
        PRIMARY KEY (project_id, group_id)
    );
    CREATE INDEX project_group_permissions_group ON project_group_permissions (group_id);
    CREATE TABLE repo_group_permissions (
        repo_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        group_id BIGINT NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
        permission TEXT NOT NULL,
        PRIMARY KEY (repo_id, group_id)
    );
    CREATE INDEX repo_group_permissions_group ON repo_group_permissions (group_id);
    "#,
    // 6: branch permissions (SQLite's 9): restrictions on a project or on one repository
    // (exactly one of the two ids), going with it; exempt users and groups go with their account
    // or group. Access keys are plain ids until SSH access keys land.
    r#"
    CREATE TABLE branch_restrictions (
        id BIGSERIAL PRIMARY KEY,
        project_id BIGINT REFERENCES projects(id) ON DELETE CASCADE,
        repo_id BIGINT REFERENCES repositories(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        matcher_type TEXT NOT NULL,
        matcher_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        CHECK ((project_id IS NULL) <> (repo_id IS NULL))
    );
    CREATE INDEX branch_restrictions_project ON branch_restrictions (project_id);
    CREATE INDEX branch_restrictions_repo ON branch_restrictions (repo_id);
    CREATE TABLE branch_restriction_users (
        restriction_id BIGINT NOT NULL REFERENCES branch_restrictions(id) ON DELETE CASCADE,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (restriction_id, user_id)
    );
    CREATE INDEX branch_restriction_users_user ON branch_restriction_users (user_id);
    CREATE TABLE branch_restriction_groups (
        restriction_id BIGINT NOT NULL REFERENCES branch_restrictions(id) ON DELETE CASCADE,
        group_id BIGINT NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
        PRIMARY KEY (restriction_id, group_id)
    );
    CREATE INDEX branch_restriction_groups_group ON branch_restriction_groups (group_id);
    CREATE TABLE branch_restriction_keys (
        restriction_id BIGINT NOT NULL REFERENCES branch_restrictions(id) ON DELETE CASCADE,
        key_id BIGINT NOT NULL,
        PRIMARY KEY (restriction_id, key_id)
    );
    "#,
    // 7: the audit log and pull-request settings per project (SQLite's 10).
    r#"
    CREATE TABLE audit_log (
        id BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        address TEXT,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        details TEXT NOT NULL
    );
    CREATE INDEX audit_log_at ON audit_log (at);
    CREATE INDEX audit_log_actor ON audit_log (actor);
    CREATE TABLE project_pr_settings (
        project_id BIGINT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
        json TEXT NOT NULL
    );
    "#,
    // 8: webhooks (SQLite's 11; see `webhooks`): on a project or on one repository, going with it; the event
    // outbox; one delivery per webhook and event; and the lanes whose row lock orders the events
    // of one repository. Events keep no foreign key: a repository's last events are delivered to
    // its project's webhooks after it is deleted. Ids from sequences: never given again.
    r#"
    CREATE TABLE webhooks (
        id BIGSERIAL PRIMARY KEY,
        project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        repo_id BIGINT REFERENCES repositories(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        active BOOLEAN NOT NULL,
        secret TEXT,
        ssl_verify BOOLEAN NOT NULL,
        username TEXT,
        password TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        failures BIGINT NOT NULL DEFAULT 0,
        paused_until BIGINT
    );
    CREATE INDEX webhooks_project ON webhooks (project_id);
    CREATE INDEX webhooks_repo ON webhooks (repo_id);
    CREATE TABLE webhook_events (
        id BIGSERIAL PRIMARY KEY,
        project_id BIGINT NOT NULL,
        repo_id BIGINT,
        event_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE webhook_lanes (
        lane BIGINT PRIMARY KEY,
        events BIGINT NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        id BIGSERIAL PRIMARY KEY,
        webhook_id BIGINT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event_id BIGINT NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
        lane BIGINT NOT NULL,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        claimed_by TEXT,
        claim_expiry BIGINT,
        last_attempt_at BIGINT,
        last_outcome TEXT,
        last_status BIGINT,
        last_response TEXT,
        last_duration_ms BIGINT
    );
    CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (state, next_attempt_at);
    CREATE INDEX webhook_deliveries_lane ON webhook_deliveries (webhook_id, lane, state, id);
    CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
    CREATE INDEX webhook_deliveries_latest ON webhook_deliveries (webhook_id, last_attempt_at);
    "#,
    // 9: build statuses, required-builds conditions and Code Insights (SQLite's 12).
    r#"
    CREATE TABLE build_statuses (
        id BIGSERIAL PRIMARY KEY,
        repo_id BIGINT REFERENCES repositories(id) ON DELETE CASCADE,
        commit_id TEXT NOT NULL,
        build_key TEXT NOT NULL,
        state TEXT NOT NULL,
        name TEXT,
        url TEXT NOT NULL,
        description TEXT,
        build_number TEXT,
        duration_ms BIGINT,
        parent TEXT,
        ref_name TEXT,
        tests_successful BIGINT,
        tests_failed BIGINT,
        tests_skipped BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX build_statuses_key ON build_statuses (commit_id, build_key, (coalesce(repo_id, 0)));
    CREATE INDEX build_statuses_repo ON build_statuses (repo_id);
    CREATE TABLE required_builds (
        id BIGSERIAL PRIMARY KEY,
        repo_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        build_keys TEXT NOT NULL,
        matcher_type TEXT NOT NULL,
        matcher_id TEXT NOT NULL,
        exempt_matcher_type TEXT,
        exempt_matcher_id TEXT,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX required_builds_repo ON required_builds (repo_id);
    CREATE TABLE insight_reports (
        id BIGSERIAL PRIMARY KEY,
        repo_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        commit_id TEXT NOT NULL,
        report_key TEXT NOT NULL,
        title TEXT NOT NULL,
        details TEXT,
        result TEXT,
        data TEXT NOT NULL,
        reporter TEXT,
        link TEXT,
        logo_url TEXT,
        creator_id BIGINT REFERENCES users(id) ON DELETE SET NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        UNIQUE (repo_id, commit_id, report_key)
    );
    CREATE TABLE insight_annotations (
        id BIGSERIAL PRIMARY KEY,
        report_id BIGINT NOT NULL REFERENCES insight_reports(id) ON DELETE CASCADE,
        external_id TEXT,
        path TEXT,
        line BIGINT NOT NULL,
        message TEXT NOT NULL,
        severity TEXT NOT NULL,
        kind TEXT,
        link TEXT,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX insight_annotations_report ON insight_annotations (report_id, external_id);
    CREATE INDEX insight_reports_creator ON insight_reports (creator_id);
    "#,
    // 10 (SQLite's 13): token expiry, repository
    // descriptions, redirects from a renamed or moved repository's old place.
    r#"
    ALTER TABLE tokens ADD COLUMN expires_at BIGINT;
    ALTER TABLE repositories ADD COLUMN description TEXT;
    CREATE TABLE repo_redirects (
        project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        slug TEXT NOT NULL,
        repo_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        PRIMARY KEY (project_id, slug)
    );
    CREATE INDEX repo_redirects_repo ON repo_redirects (repo_id);
    "#,
    // 11 (SQLite's 14): SSH keys and access-key grants (see `ssh_keys`).
    r#"
    CREATE TABLE ssh_keys (
        id BIGSERIAL PRIMARY KEY,
        user_id BIGINT REFERENCES users(id) ON DELETE CASCADE,
        label TEXT NOT NULL,
        text TEXT NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE,
        algorithm TEXT NOT NULL,
        bits BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        last_used_at BIGINT
    );
    CREATE INDEX ssh_keys_user ON ssh_keys (user_id);
    CREATE TABLE ssh_access_keys (
        key_id BIGINT NOT NULL REFERENCES ssh_keys(id) ON DELETE CASCADE,
        project_id BIGINT REFERENCES projects(id) ON DELETE CASCADE,
        repo_id BIGINT REFERENCES repositories(id) ON DELETE CASCADE,
        permission TEXT NOT NULL,
        CHECK ((project_id IS NULL) <> (repo_id IS NULL))
    );
    CREATE UNIQUE INDEX ssh_access_keys_scope ON ssh_access_keys (key_id, (coalesce(project_id, 0)), (coalesce(repo_id, 0)));
    CREATE INDEX ssh_access_keys_project ON ssh_access_keys (project_id);
    CREATE INDEX ssh_access_keys_repo ON ssh_access_keys (repo_id);
    "#,
    // 12 (SQLite's 15): forks, their origin (cleared when it is deleted) and their hierarchy.
    r#"
    ALTER TABLE repositories ADD COLUMN origin_id BIGINT REFERENCES repositories(id) ON DELETE SET NULL;
    ALTER TABLE repositories ADD COLUMN hierarchy_id BIGINT;
    CREATE INDEX repositories_origin ON repositories (origin_id);
    CREATE INDEX repositories_hierarchy ON repositories (hierarchy_id);
    "#,
    // 13 (SQLite's 16): comments on commits.
    r#"
    CREATE TABLE commit_comments (
        id BIGSERIAL PRIMARY KEY,
        repo_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        commit_id TEXT NOT NULL,
        parent_id BIGINT REFERENCES commit_comments(id),
        author_id BIGINT NOT NULL,
        text TEXT NOT NULL,
        version BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        anchor TEXT
    );
    CREATE INDEX commit_comments_commit ON commit_comments (repo_id, commit_id);
    CREATE INDEX commit_comments_parent ON commit_comments (parent_id);
    "#,
    // 14 (SQLite's 17): deleted accounts' names.
    r#"
    CREATE TABLE deleted_users (
        id BIGINT PRIMARY KEY,
        name TEXT NOT NULL,
        display_name TEXT NOT NULL,
        deleted_at BIGINT NOT NULL
    );
    "#,
];
