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
];
