//! What the web UI needs beyond git and the REST API: browser sessions (with their CSRF
//! token), listings of what a user may see, enabling and disabling accounts, deleting projects
//! and repositories, and managing grants and tokens.

use base64::Engine as _;
use rand::RngCore;
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::names::{Owner, ProjectKey, RepoSlug, UserName};
use crate::permissions::Permission;
use crate::store::{CachedRow, Project, Repo, Store, User, now, parse_perm};

/// A logged-in browser: who, and the token every form of theirs must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
}

/// A personal access token as its owner sees it in a list (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// 256 random bits, URL-safe base64.
fn random_secret() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Sessions are looked up by the SHA-256 of their id, so a copy of the database holds no
/// usable session (a fast hash is enough: the id has 256 random bits).
fn session_hash(id: &str) -> String {
    let d = Sha256::digest(id.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

const PROJECT_COLS: &str = "p.id, p.key, p.name, p.public";

fn project_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Project> {
    let key: String = r.get(1)?;
    Ok(Project {
        id: r.get(0)?,
        owner: Owner::parse(&key).map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e)))?,
        name: r.get(2)?,
        public: r.get(3)?,
    })
}

/// Whether user `?1` (NULL for anonymous, `?2` = 1 for a global admin) may see project `p`:
/// public, a grant or default permission on it, its own personal project, or a repository in it
/// that is public or granted to them.
const VISIBLE: &str = "(?2 = 1 OR p.public = 1
    OR EXISTS (SELECT 1 FROM repositories r WHERE r.project_id = p.id AND r.public = 1)
    OR (?1 IS NOT NULL AND (
        p.owner_user_id = ?1
        OR (p.default_permission IS NOT NULL AND p.owner_user_id IS NULL)
        OR EXISTS (SELECT 1 FROM project_permissions pp WHERE pp.project_id = p.id AND pp.user_id = ?1)
        OR EXISTS (SELECT 1 FROM repositories r JOIN repo_permissions rp ON rp.repo_id = r.id
                   WHERE r.project_id = p.id AND rp.user_id = ?1))))";

impl Store {
    // ---- sessions ----

    /// Starts a session for `user_id` lasting `ttl_secs`; returns `(session id, csrf token)`.
    pub fn create_session(&self, user_id: i64, ttl_secs: i64) -> Result<(String, String), StoreError> {
        let id = random_secret();
        let csrf = random_secret();
        let t = now();
        let conn = self.conn();
        // Expired sessions are swept on each login, so the table stays small without a timer.
        conn.execute("DELETE FROM web_sessions WHERE expires_at <= ?1", [t]).map_err(self.db())?;
        conn.execute(
            "INSERT INTO web_sessions (id_hash, user_id, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![session_hash(&id), user_id, csrf, t, t + ttl_secs],
        )
        .map_err(self.db())?;
        Ok((id, csrf))
    }

    /// The live session with this id, if any. The account may since have been disabled:
    /// callers check [`User::may_log_in`].
    pub fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let row: Option<(i64, String)> = self
            .conn()
            .row("SELECT user_id, csrf FROM web_sessions WHERE id_hash = ?1 AND expires_at > ?2", params![session_hash(id), now()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(self.db())?;
        let Some((user_id, csrf)) = row else { return Ok(None) };
        let user = self.user_where("id = ?1", rusqlite::types::Value::Integer(user_id))?;
        Ok(user.map(|user| Session { user, csrf }))
    }

    pub fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        self.conn().execute("DELETE FROM web_sessions WHERE id_hash = ?1", [session_hash(id)]).map_err(self.db())?;
        Ok(())
    }

    /// Ends every session of a user (after a password reset or when the account is disabled).
    pub fn delete_user_sessions(&self, user: &UserName) -> Result<(), StoreError> {
        self.conn().execute("DELETE FROM web_sessions WHERE user_id = (SELECT id FROM users WHERE name = ?1)", [user.as_str()]).map_err(self.db())?;
        Ok(())
    }

    // ---- users ----

    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        let names: Vec<String> = {
            let conn = self.conn();
            let mut st = conn.prepare_cached("SELECT name FROM users ORDER BY name").map_err(self.db())?;
            let rows = st.query_map([], |r| r.get(0)).map_err(self.db())?;
            rows.collect::<Result<_, _>>().map_err(self.db())?
        };
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Ok(n) = UserName::parse(&n)
                && let Some(u) = self.user(&n)?
            {
                out.push(u);
            }
        }
        Ok(out)
    }

    /// Enables or disables an account; disabling also ends its sessions.
    pub fn set_user_active(&self, name: &UserName, active: bool) -> Result<(), StoreError> {
        let n = self.conn().execute("UPDATE users SET active = ?1 WHERE name = ?2", params![active, name.as_str()]).map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        if !active {
            self.delete_user_sessions(name)?;
        }
        Ok(())
    }

    // ---- projects and repositories ----

    /// Projects `user` may see (every one for a global admin, `None` = anonymous), by key.
    pub fn visible_projects(&self, user: Option<&User>, admin: bool) -> Result<Vec<Project>, StoreError> {
        let conn = self.conn();
        let sql = format!("SELECT {PROJECT_COLS} FROM projects p WHERE {VISIBLE} ORDER BY p.key");
        let mut st = conn.prepare_cached(&sql).map_err(self.db())?;
        let rows = st.query_map(params![user.map(|u| u.id), admin], project_row).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// One project by key, if `user` may see it.
    pub fn visible_project(&self, key: &Owner, user: Option<&User>, admin: bool) -> Result<Option<Project>, StoreError> {
        let sql = format!("SELECT {PROJECT_COLS} FROM projects p WHERE p.key = ?3 AND {VISIBLE}");
        self.conn().row(&sql, params![user.map(|u| u.id), admin, key.project_key()], project_row).optional().map_err(self.db())
    }

    /// The repositories of a project, by slug (callers filter by permission).
    pub fn project_repos(&self, project: &Project) -> Result<Vec<Repo>, StoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT r.id, r.slug, r.name, r.public, p.public FROM repositories r JOIN projects p ON p.id = r.project_id WHERE p.id = ?1 ORDER BY r.slug",
            )
            .map_err(self.db())?;
        let rows = st
            .query_map([project.id], |r| {
                let slug: String = r.get(1)?;
                Ok(Repo {
                    id: r.get(0)?,
                    owner: project.owner.clone(),
                    slug: RepoSlug::parse(&slug).map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e)))?,
                    name: r.get(2)?,
                    public: r.get(3)?,
                    project_id: project.id,
                    project_public: r.get(4)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// The permission granted to `user` on the project itself (not via a repository).
    pub fn project_grant(&self, user: &User, project: &Project) -> Result<Option<Permission>, StoreError> {
        let v: Option<String> = self
            .conn()
            .row("SELECT permission FROM project_permissions WHERE project_id = ?1 AND user_id = ?2", [project.id, user.id], |r| r.get(0))
            .optional()
            .map_err(self.db())?;
        Ok(parse_perm(v))
    }

    /// Deletes a project, its repositories' rows and their directories on disk.
    pub fn delete_project(&self, key: &ProjectKey) -> Result<(), StoreError> {
        let owner = Owner::Project(key.clone());
        let project = self.visible_project(&owner, None, true)?.ok_or_else(|| StoreError::NoSuchProject(key.to_string()))?;
        for repo in self.project_repos(&project)? {
            self.delete_repo(&repo)?;
        }
        self.conn().execute("DELETE FROM projects WHERE id = ?1", [project.id]).map_err(self.db())?;
        Ok(())
    }

    /// Deletes a repository: the row first (so it vanishes from every listing at once), then
    /// its directory, moved aside before removal so a half-deleted tree is never at a live path.
    pub fn delete_repo(&self, repo: &Repo) -> Result<(), StoreError> {
        let path = self.repo_path(repo);
        self.conn().execute("DELETE FROM repositories WHERE id = ?1", [repo.id]).map_err(self.db())?;
        // A trash name no other deletion can take (ids are reused once the newest repository
        // is deleted), so a removal that fails never blocks a later one.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let trash = path.with_file_name(format!(".deleted-{}-{}-{}-{seq}", repo.id, now(), std::process::id()));
        match std::fs::rename(&path, &trash) {
            Ok(()) => {
                if let Err(e) = std::fs::remove_dir_all(&trash) {
                    tracing::warn!(path = %trash.display(), error = %e, "could not remove a deleted repository's directory; remove it by hand");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "could not move a deleted repository's directory aside; remove it by hand"),
        }
        Ok(())
    }

    /// Users granted a permission on the project, by name.
    pub fn project_permissions(&self, project: &Project) -> Result<Vec<(UserName, Permission)>, StoreError> {
        self.grants(
            "SELECT u.name, g.permission FROM project_permissions g JOIN users u ON u.id = g.user_id WHERE g.project_id = ?1 ORDER BY u.name",
            project.id,
        )
    }

    /// Users granted a permission on the repository itself, by name.
    pub fn repo_permissions(&self, repo: &Repo) -> Result<Vec<(UserName, Permission)>, StoreError> {
        self.grants("SELECT u.name, g.permission FROM repo_permissions g JOIN users u ON u.id = g.user_id WHERE g.repo_id = ?1 ORDER BY u.name", repo.id)
    }

    fn grants(&self, sql: &str, id: i64) -> Result<Vec<(UserName, Permission)>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(sql).map_err(self.db())?;
        let rows = st.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(self.db())?;
        let mut out = Vec::new();
        for row in rows {
            let (name, perm) = row.map_err(self.db())?;
            if let (Ok(n), Ok(p)) = (UserName::parse(&name), perm.parse()) {
                out.push((n, p));
            }
        }
        Ok(out)
    }

    pub fn revoke_project(&self, user: &UserName, project: &Project) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "DELETE FROM project_permissions WHERE project_id = ?1 AND user_id = (SELECT id FROM users WHERE name = ?2)",
                params![project.id, user.as_str()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    pub fn revoke_repo(&self, user: &UserName, repo: &Repo) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM repo_permissions WHERE repo_id = ?1 AND user_id = (SELECT id FROM users WHERE name = ?2)", params![repo.id, user.as_str()])
            .map_err(self.db())?;
        Ok(())
    }

    // ---- tokens ----

    pub fn tokens(&self, user: &User) -> Result<Vec<TokenInfo>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached("SELECT id, name, scope, created_at, last_used_at FROM tokens WHERE user_id = ?1 ORDER BY id").map_err(self.db())?;
        let rows = st
            .query_map([user.id], |r| Ok(TokenInfo { id: r.get(0)?, name: r.get(1)?, scope: r.get(2)?, created_at: r.get(3)?, last_used_at: r.get(4)? }))
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// Revokes one of `user`'s tokens; `false` if they have no token with that id.
    pub fn revoke_token(&self, user: &User, id: i64) -> Result<bool, StoreError> {
        let n = self.conn().execute("DELETE FROM tokens WHERE id = ?1 AND user_id = ?2", [id, user.id]).map_err(self.db())?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::Password;
    use crate::permissions::GlobalPermission;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn sessions_resolve_by_id_end_on_logout_and_when_the_account_is_disabled() {
        let (_d, s) = store();
        let alice = s.create_user(&UserName::parse("alice").unwrap(), &Password::new("password1").unwrap(), GlobalPermission::LicensedUser).unwrap();
        let (id, csrf) = s.create_session(alice.id, 3600).unwrap();
        let got = s.session(&id).unwrap().unwrap();
        assert_eq!((got.user.id, got.csrf.as_str()), (alice.id, csrf.as_str()));
        assert!(s.session("not-a-session").unwrap().is_none());
        let (expired, _) = s.create_session(alice.id, -1).unwrap();
        assert!(s.session(&expired).unwrap().is_none(), "expired");
        s.delete_session(&id).unwrap();
        assert!(s.session(&id).unwrap().is_none(), "logged out");
        let (id2, _) = s.create_session(alice.id, 3600).unwrap();
        s.set_user_active(&alice.name, false).unwrap();
        assert!(s.session(&id2).unwrap().is_none(), "disabling ends sessions");
        assert!(s.verify_password("alice", "password1").unwrap().is_none(), "a disabled user cannot log in");
    }

    #[test]
    fn visible_projects_follow_grants_public_flags_and_admin() {
        let (_d, s) = store();
        let p = Password::new("password1").unwrap();
        let alice = s.create_user(&UserName::parse("alice").unwrap(), &p, GlobalPermission::LicensedUser).unwrap();
        let bob = s.create_user(&UserName::parse("bob").unwrap(), &p, GlobalPermission::LicensedUser).unwrap();
        for (k, public) in [("PRIV", false), ("PUB", true), ("REPO", false)] {
            s.create_project(&ProjectKey::parse(k).unwrap(), None, public).unwrap();
        }
        let repo_owner = Owner::parse("REPO").unwrap();
        let slug = RepoSlug::parse("r").unwrap();
        s.create_repo(&repo_owner, &slug, false).unwrap();
        s.grant_repo(&alice.name, &repo_owner, &slug, Permission::Read).unwrap();
        let keys = |v: Vec<Project>| v.into_iter().map(|p| p.owner.to_string()).collect::<Vec<_>>();
        assert_eq!(keys(s.visible_projects(None, false).unwrap()), ["PUB"]);
        assert_eq!(keys(s.visible_projects(Some(&alice), false).unwrap()), ["PUB", "REPO"]);
        assert_eq!(keys(s.visible_projects(Some(&bob), false).unwrap()), ["PUB"]);
        assert_eq!(keys(s.visible_projects(Some(&bob), true).unwrap()), ["PRIV", "PUB", "REPO"]);
        assert!(s.visible_project(&Owner::parse("PRIV").unwrap(), Some(&alice), false).unwrap().is_none());
        s.set_repo_public(&repo_owner, &slug, true).unwrap();
        assert_eq!(keys(s.visible_projects(None, false).unwrap()), ["PUB", "REPO"]);
    }

    #[test]
    fn deleting_a_project_removes_its_repositories_from_disk() {
        let (_d, s) = store();
        let key = ProjectKey::parse("TP").unwrap();
        s.create_project(&key, None, false).unwrap();
        let repo = s.create_repo(&Owner::Project(key.clone()), &RepoSlug::parse("test").unwrap(), false).unwrap();
        let path = s.repo_path(&repo);
        assert!(path.is_dir());
        s.delete_project(&key).unwrap();
        assert!(!path.exists());
        assert!(s.repo(&Owner::Project(key.clone()), &repo.slug).unwrap().is_none());
        assert!(matches!(s.delete_project(&key), Err(StoreError::NoSuchProject(_))));
    }

    #[test]
    fn tokens_list_and_revoke_only_for_their_owner() {
        let (_d, s) = store();
        let p = Password::new("password1").unwrap();
        let alice = s.create_user(&UserName::parse("alice").unwrap(), &p, GlobalPermission::LicensedUser).unwrap();
        let bob = s.create_user(&UserName::parse("bob").unwrap(), &p, GlobalPermission::LicensedUser).unwrap();
        let t = s.create_token(&alice.name, "ci", Permission::Read).unwrap();
        assert_eq!(s.tokens(&alice).unwrap().len(), 1);
        assert!(!s.revoke_token(&bob, t.id).unwrap());
        assert!(s.revoke_token(&alice, t.id).unwrap());
        assert!(s.verify_token(&t.secret, None).unwrap().is_none());
    }
}
