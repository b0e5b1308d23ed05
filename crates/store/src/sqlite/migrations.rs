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
];
