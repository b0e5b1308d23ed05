//! Failed logins and account locks, kept in the metadata database so that every server process,
//! and `trove admin`, see and clear the same lock.
//!
//! The policy protects a password against guessing without letting anyone lock an honest user
//! out of everything (OWASP Authentication Cheat Sheet, "account lockout"): only wrong passwords
//! for an existing account count, a success resets the count, a lock stops password checks over
//! git and REST only (personal access tokens keep working), and the web sign-in stays open behind
//! a challenge that a person passes and that makes each guess cost the guesser (Bitbucket's
//! CAPTCHA after "too many failed login attempts in succession").

use crate::error::StoreError;
use crate::names::UserName;
use crate::password;
use crate::store::{DUMMY_HASH, Store, now};
use crate::users::User;

/// When failed logins lock an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginPolicy {
    /// Wrong passwords in succession (no success between, none more than `window_secs` after
    /// the previous) that lock the account. `0` disables locking.
    pub max_failures: u32,
    /// A failure more than this long after the previous one starts the count again.
    pub window_secs: i64,
    /// How long a lock lasts unless cleared sooner. `0` means until cleared (a web sign-in
    /// with the challenge, or an administrator).
    pub lock_secs: i64,
}

impl Default for LoginPolicy {
    /// 10 failures within 5 minutes of each other lock the account for 15 minutes.
    fn default() -> Self {
        LoginPolicy { max_failures: 10, window_secs: 300, lock_secs: 900 }
    }
}

/// One account's record of failed logins, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    pub last_at: i64,
    pub locked_at: Option<i64>,
}

impl Failures {
    /// The time the lock ends (`Some(None)`: only when cleared), or `None` when not locked.
    fn lock_end(&self, policy: &LoginPolicy, now: i64) -> Option<Option<i64>> {
        let at = self.locked_at?;
        if policy.lock_secs == 0 {
            return Some(None);
        }
        (at + policy.lock_secs > now).then_some(Some(at + policy.lock_secs))
    }
}

/// The record after one more wrong password at `now`. Pure, so the policy is table-tested.
pub fn after_failure(prev: Option<Failures>, policy: &LoginPolicy, now: i64) -> Failures {
    let lock_if = |count: u32| (count >= policy.max_failures).then_some(now);
    match prev {
        // Still locked: count the try for the administrator's view, but do not extend the
        // lock, so a client that retries without end (libgit2 does) cannot keep it forever.
        Some(p) if p.lock_end(policy, now).is_some() => Failures { count: p.count.saturating_add(1), last_at: now, locked_at: p.locked_at },
        // A lock that ran out, or a quiet spell longer than the window: start again.
        Some(p) if p.locked_at.is_none() && now - p.last_at < policy.window_secs => {
            let count = p.count.saturating_add(1);
            Failures { count, last_at: now, locked_at: lock_if(count) }
        }
        _ => Failures { count: 1, last_at: now, locked_at: lock_if(1) },
    }
}

/// A locked account, as an administrator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLock {
    pub user: UserName,
    /// Wrong passwords counted so far, including those refused while locked.
    pub failures: u32,
    pub locked_at: i64,
    /// Unix time the lock ends by itself; `None`: only when cleared.
    pub until: Option<i64>,
}

/// The outcome of a password check under the lock policy.
#[derive(Debug, Clone)]
pub enum PasswordCheck {
    Ok(User),
    /// Unknown user, wrong password, or an account that may not log in (the caller must not be
    /// told which).
    Wrong,
    /// The account is locked; the password was not checked.
    Locked(LoginLock),
}

/// A user's password hash and failure record, for [`Store::check_password`].
#[derive(Debug, Clone)]
pub struct LoginRow {
    pub user_id: i64,
    pub password_hash: Option<String>,
    pub failures: Option<Failures>,
}

/// The rows of failed logins. The policy ([`after_failure`]) is shared by every backend.
pub trait Logins {
    fn login_row(&self, name: &UserName) -> Result<Option<LoginRow>, StoreError>;
    /// Counts one more wrong password at `now`, reading and writing the record in one
    /// transaction so that concurrent failures are all counted.
    fn record_failure(&self, user_id: i64, policy: &LoginPolicy, now: i64) -> Result<(), StoreError>;
    /// Forgets a user's failures and lock; `false` if there were none.
    fn clear_failures(&self, user_id: i64) -> Result<bool, StoreError>;
    /// Every failure record with a lock, newest lock first.
    fn locked_failures(&self) -> Result<Vec<(UserName, Failures)>, StoreError>;

    /// Records a wrong password for `user` from `addr` at `now`, forgetting the address's
    /// failures older than `window_secs` (the address limit, shared by every node).
    fn record_address_failure(&self, addr: &str, user: &str, now: i64, window_secs: i64) -> Result<(), StoreError>;
    /// The distinct accounts `addr` failed to log in to within the window before `now`, and the
    /// time of the oldest of those failures.
    fn address_failures(&self, addr: &str, now: i64, window_secs: i64) -> Result<(u32, Option<i64>), StoreError>;

    /// The accounts locked now under `policy`.
    fn login_locks(&self, policy: &LoginPolicy) -> Result<Vec<LoginLock>, StoreError> {
        let t = now();
        Ok(self
            .locked_failures()?
            .into_iter()
            .filter_map(|(user, f)| Some(LoginLock { user, failures: f.count, locked_at: f.locked_at.unwrap_or(t), until: f.lock_end(policy, t)? }))
            .collect())
    }

    fn login_lock(&self, name: &UserName, policy: &LoginPolicy) -> Result<Option<LoginLock>, StoreError> {
        Ok(self.login_locks(policy)?.into_iter().find(|l| &l.user == name))
    }
}

impl Store {
    /// Checks a password under `policy`: a locked account is refused without checking (unless
    /// `passed_challenge`, the web sign-in's proof that a person is trying), a wrong password for
    /// an existing account is counted, and a right one clears the count and any lock.
    pub fn check_password(&self, name: &str, password: &str, policy: &LoginPolicy, passed_challenge: bool) -> Result<PasswordCheck, StoreError> {
        let Ok(name) = UserName::parse(name) else { return Ok(PasswordCheck::Wrong) };
        let Some(LoginRow { user_id, password_hash: Some(hash), failures }) = self.login_row(&name)? else {
            // Spend the same time as a real check so response timing does not reveal which
            // user names exist.
            let _ = password::verify(password, DUMMY_HASH.get_or_init(|| password::hash_password("dummy password")));
            return Ok(PasswordCheck::Wrong);
        };
        let t = now();
        if policy.max_failures > 0
            && !passed_challenge
            && let Some(f) = failures
            && let Some(until) = f.lock_end(policy, t)
        {
            self.record_failure(user_id, policy, t)?;
            return Ok(PasswordCheck::Locked(LoginLock { user: name, failures: f.count.saturating_add(1), locked_at: f.locked_at.unwrap_or(t), until }));
        }
        if !self.password_matches(&name, password, &hash) {
            if policy.max_failures > 0 {
                self.record_failure(user_id, policy, t)?;
            }
            return Ok(PasswordCheck::Wrong);
        }
        if failures.is_some() {
            self.clear_failures(user_id)?;
        }
        Ok(match self.user(&name)?.filter(User::may_log_in) {
            Some(u) => PasswordCheck::Ok(u),
            None => PasswordCheck::Wrong,
        })
    }

    /// Unlocks an account (an administrator's action); `false` if it had no failures.
    pub fn clear_login_lock(&self, name: &UserName) -> Result<bool, StoreError> {
        let user = self.user(name)?.ok_or_else(|| StoreError::NoSuchUser(name.to_string()))?;
        self.clear_failures(user.id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{GlobalPermission, Password};

    const P: LoginPolicy = LoginPolicy { max_failures: 3, window_secs: 60, lock_secs: 600 };

    #[test]
    fn failures_in_succession_lock_and_quiet_spells_or_expired_locks_start_again() {
        let f = |count, last_at, locked_at| Some(Failures { count, last_at, locked_at });
        let cases: &[(Option<Failures>, i64, Failures, &str)] = &[
            (None, 100, Failures { count: 1, last_at: 100, locked_at: None }, "first failure"),
            (f(1, 100, None), 130, Failures { count: 2, last_at: 130, locked_at: None }, "second within the window"),
            (f(2, 130, None), 150, Failures { count: 3, last_at: 150, locked_at: Some(150) }, "third locks"),
            (f(2, 130, None), 190, Failures { count: 1, last_at: 190, locked_at: None }, "a quiet spell as long as the window resets"),
            (f(3, 150, Some(150)), 700, Failures { count: 4, last_at: 700, locked_at: Some(150) }, "locked: counted, not extended"),
            (f(9, 700, Some(150)), 750, Failures { count: 1, last_at: 750, locked_at: None }, "an expired lock starts again"),
        ];
        for (prev, now, want, why) in cases {
            assert_eq!(after_failure(*prev, &P, *now), *want, "{why}");
        }
        let one = LoginPolicy { max_failures: 1, ..P };
        assert_eq!(after_failure(None, &one, 5).locked_at, Some(5), "a limit of one locks at once");
        let forever = LoginPolicy { lock_secs: 0, ..P };
        assert_eq!(after_failure(f(3, 0, Some(0)), &forever, 1_000_000).locked_at, Some(0), "lock_secs = 0 never expires");
    }

    fn store_with(users: &[&str]) -> (tempfile::TempDir, Store) {
        let (dir, s) = crate::store::backends::store();
        for u in users {
            s.create_user(&UserName::parse(u).unwrap(), &Password::new(&format!("{u}-password")).unwrap(), GlobalPermission::LicensedUser).unwrap();
        }
        (dir, s)
    }

    fn is_ok(c: PasswordCheck) -> bool {
        matches!(c, PasswordCheck::Ok(_))
    }

    #[test]
    pub(crate) fn a_locked_account_refuses_even_its_password_until_a_challenge_or_an_admin_clears_it() {
        let (dir, s) = store_with(&["alice", "bob"]);
        for _ in 0..3 {
            assert!(matches!(s.check_password("alice", "guess", &P, false).unwrap(), PasswordCheck::Wrong));
        }
        let PasswordCheck::Locked(lock) = s.check_password("alice", "alice-password", &P, false).unwrap() else { panic!("not locked") };
        assert_eq!(lock.user.as_str(), "alice");
        assert!(lock.until.is_some());
        assert!(is_ok(s.check_password("bob", "bob-password", &P, false).unwrap()), "one account's failures locked another");
        let alice = UserName::parse("alice").unwrap();
        // Seen, and cleared, by another process on the same data directory (`trove admin`).
        let admin = crate::store::backends::reopen(dir.path());
        assert_eq!(admin.login_locks(&P).unwrap().len(), 1);
        assert!(admin.clear_login_lock(&alice).unwrap());
        assert!(!admin.clear_login_lock(&alice).unwrap(), "nothing left to clear");
        assert!(is_ok(s.check_password("alice", "alice-password", &P, false).unwrap()));
        // Locked again; the web sign-in's challenge lets the right password through and unlocks.
        for _ in 0..3 {
            s.check_password("alice", "guess", &P, false).unwrap();
        }
        assert!(matches!(s.check_password("alice", "guess", &P, true).unwrap(), PasswordCheck::Wrong), "a wrong password passes no challenge");
        assert!(is_ok(s.check_password("alice", "alice-password", &P, true).unwrap()));
        assert!(s.login_locks(&P).unwrap().is_empty());
        assert!(is_ok(s.check_password("alice", "alice-password", &P, false).unwrap()));
    }

    #[test]
    pub(crate) fn a_success_resets_the_count_and_unknown_users_leave_no_record() {
        let (d, s) = store_with(&["alice"]);
        for _ in 0..10 {
            s.check_password("alice", "guess", &P, false).unwrap();
            s.check_password("alice", "guess", &P, false).unwrap();
            assert!(is_ok(s.check_password("alice", "alice-password", &P, false).unwrap()), "two failures then a success never lock");
        }
        for _ in 0..5 {
            s.check_password("nobody", "guess", &P, false).unwrap();
        }
        let n: i64 = crate::store::backends::count(d.path(), "login_failures");
        assert_eq!(n, 0);
        let off = LoginPolicy { max_failures: 0, ..P };
        for _ in 0..20 {
            s.check_password("alice", "guess", &off, false).unwrap();
        }
        assert!(is_ok(s.check_password("alice", "alice-password", &off, false).unwrap()), "max_failures = 0 never locks");
    }
}
