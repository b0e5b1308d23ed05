//! Passwords and token secrets: argon2 hashing and verification.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng as _;
use rand::rand_core::UnwrapErr;
use rand::rngs::SysRng;

/// The operating system's random numbers, for every secret Trove makes (salts, token secrets,
/// session ids, keys). Panics if the system cannot give any, as there is no safe way on.
pub fn os_rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

/// A random 128-bit salt (the size argon2 recommends).
fn new_salt() -> SaltString {
    let mut raw = [0u8; 16];
    os_rng().fill_bytes(&mut raw);
    SaltString::encode_b64(&raw).expect("16 bytes are a valid salt")
}

/// Shortest password we accept.
pub const MIN_PASSWORD_LEN: usize = 8;

/// A password that met the rules when it was set. `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is shorter than {MIN_PASSWORD_LEN} characters; choose a longer one")]
    TooShort,
    #[error("the password has a line break or other control character in it")]
    ControlCharacter,
}

impl Password {
    pub fn new(input: &str) -> Result<Self, PasswordError> {
        if input.chars().any(|c| c.is_control()) {
            return Err(PasswordError::ControlCharacter);
        }
        if input.chars().count() < MIN_PASSWORD_LEN {
            return Err(PasswordError::TooShort);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// argon2id with the crate's defaults (19 MiB, 2 passes): the OWASP recommendation for
/// passwords people choose.
pub(crate) fn hash_password(password: &str) -> String {
    let salt = new_salt();
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 with default params cannot fail").to_string()
}

/// Token secrets are 256 random bits, so a slow hash buys nothing against guessing; the
/// cheapest argon2 parameters keep per-request verification fast while the stored value is
/// still not the secret.
pub(crate) fn hash_token_secret(secret: &str) -> String {
    let salt = new_salt();
    let params = Params::new(Params::MIN_M_COST.max(64), 1, 1, None).expect("valid argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password(secret.as_bytes(), &salt).expect("argon2 with fixed params cannot fail").to_string()
}

/// Verifies against any PHC string we wrote (the parameters are read from the hash).
pub(crate) fn verify(secret: &str, phc: &str) -> bool {
    #[cfg(test)]
    tests::ARGON2_RUNS.with(|n| n.set(n.get() + 1));
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Passwords verified in the last `VERIFIED_FOR`, so that a git client, which sends its Basic
/// credentials with every request (two for an `ls-remote`, three for a clone), pays for argon2
/// once in that time rather than on every request (about 70 ms of CPU for an `ls-remote`).
///
/// What is kept per user name is an HMAC of the name and password under a key drawn at random
/// when the process starts (never the password, never stored), and the stored hash it was
/// checked against: a password changed since (here or by `trove admin` in another process)
/// no longer matches, and a wrong password never does. Whether the account may log in is
/// still read from the database on every request.
pub(crate) struct Verified {
    key: [u8; 32],
    entries: std::sync::Mutex<std::collections::HashMap<String, Entry>>,
}

struct Entry {
    mac: [u8; 32],
    phc: String,
    at: std::time::Instant,
}

/// How long a verified password is remembered.
pub(crate) const VERIFIED_FOR: std::time::Duration = std::time::Duration::from_secs(300);
/// Users remembered at once; past it, expired entries go, and if none have, all do.
const VERIFIED_MAX: usize = 10_000;

type Mac = hmac::Hmac<sha2::Sha256>;

impl Verified {
    pub(crate) fn new() -> Self {
        let mut key = [0u8; 32];
        os_rng().fill_bytes(&mut key);
        Self { key, entries: Default::default() }
    }

    fn mac(&self, user: &str, password: &str) -> Mac {
        use hmac::{KeyInit as _, Mac as _};
        let mut m = Mac::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(&(user.len() as u64).to_le_bytes());
        m.update(user.as_bytes());
        m.update(password.as_bytes());
        m
    }

    /// Whether `password` was verified for `user` against `phc` less than `VERIFIED_FOR` ago.
    pub(crate) fn contains(&self, user: &str, password: &str, phc: &str) -> bool {
        use hmac::Mac as _;
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = entries.get(user) else { return false };
        // verify_slice compares in constant time.
        e.phc == phc && e.at.elapsed() < VERIFIED_FOR && self.mac(user, password).verify_slice(&e.mac).is_ok()
    }

    /// Remember that `password` verified for `user` against `phc`.
    pub(crate) fn insert(&self, user: &str, password: &str, phc: &str) {
        use hmac::Mac as _;
        let mac: [u8; 32] = self.mac(user, password).finalize().into_bytes().into();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= VERIFIED_MAX && !entries.contains_key(user) {
            entries.retain(|_, e| e.at.elapsed() < VERIFIED_FOR);
            if entries.len() >= VERIFIED_MAX {
                entries.clear();
            }
        }
        entries.insert(user.to_owned(), Entry { mac, phc: phc.to_owned(), at: std::time::Instant::now() });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    thread_local! {
        /// argon2 verifications on this thread (tests run one per thread).
        pub(crate) static ARGON2_RUNS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    #[test]
    fn a_verified_password_is_remembered_only_for_its_user_password_and_hash() {
        let v = Verified::new();
        assert!(!v.contains("ann", "pw", "h1"));
        v.insert("ann", "pw", "h1");
        assert!(v.contains("ann", "pw", "h1"));
        assert!(!v.contains("ann", "pw2", "h1"), "another password");
        assert!(!v.contains("ann", "pw", "h2"), "the stored hash changed");
        assert!(!v.contains("bob", "pw", "h1"), "another user");
        // Another process's key never matches this one's.
        assert!(!Verified::new().contains("ann", "pw", "h1"));
    }

    #[test]
    fn the_remembered_set_stays_bounded() {
        let v = Verified::new();
        for i in 0..VERIFIED_MAX + 5 {
            v.insert(&format!("u{i}"), "pw", "h");
        }
        let n = v.entries.lock().unwrap().len();
        assert!(n <= VERIFIED_MAX, "{n} entries");
        assert!(v.contains(&format!("u{}", VERIFIED_MAX + 4), "pw", "h"), "the newest is kept");
    }

    #[test]
    fn hashes_verify_only_the_right_secret() {
        let h = hash_password("correct horse");
        assert!(verify("correct horse", &h));
        assert!(!verify("correct hors", &h));
        let t = hash_token_secret("tok");
        assert!(verify("tok", &t));
        assert!(!verify("tok2", &t));
        assert!(!verify("x", "not a hash"));
    }

    #[test]
    fn passwords_are_refused_when_short_or_multiline() {
        assert_eq!(Password::new("short").unwrap_err(), PasswordError::TooShort);
        assert_eq!(Password::new("long enough\n").unwrap_err(), PasswordError::ControlCharacter);
        assert!(Password::new("long enough").is_ok());
        assert_eq!(format!("{:?}", Password::new("long enough").unwrap()), "Password(***)");
    }
}
