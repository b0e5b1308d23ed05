//! Passwords and token secrets: argon2 hashing and verification.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;

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
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 with default params cannot fail").to_string()
}

/// Token secrets are 256 random bits, so a slow hash buys nothing against guessing; the
/// cheapest argon2 parameters keep per-request verification fast while the stored value is
/// still not the secret.
pub(crate) fn hash_token_secret(secret: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::new(Params::MIN_M_COST.max(64), 1, 1, None).expect("valid argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password(secret.as_bytes(), &salt).expect("argon2 with fixed params cannot fail").to_string()
}

/// Verifies against any PHC string we wrote (the parameters are read from the hash).
pub(crate) fn verify(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
