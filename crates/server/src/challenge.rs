//! The web sign-in's challenge for a locked account: a proof of work that the page's script
//! solves in about a second, so a person signs in while each guess costs a guesser that much
//! work, with no outside service (a self-hosted server cannot call a CAPTCHA provider).
//!
//! A challenge is `EXPIRY.RANDOM.MAC`, the MAC (HMAC-SHA-256 under a key drawn when the process
//! starts) binding it to one account and expiry, so the server keeps no state until one is
//! used; a solution is a decimal `nonce` such that SHA-256(`challenge:nonce`) starts with
//! `bits` zero bits. Each challenge is accepted once.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{KeyInit as _, Mac as _};
use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use trove_store::os_rng;

/// How long a challenge may be answered.
const LIFETIME_SECS: i64 = 600;
/// Used challenges remembered at once (until they expire); past it, new answers wait.
const USED_MAX: usize = 100_000;

type HmacSha256 = hmac::Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChallengeError {
    #[error("the browser check is missing or malformed; reload the page")]
    Malformed,
    #[error("the browser check expired; reload the page and try again")]
    Expired,
    #[error("the browser check was not solved; let the page finish it, with JavaScript on")]
    Unsolved,
    #[error("the browser check was already used; reload the page")]
    Reused,
}

pub(crate) struct Challenges {
    key: [u8; 32],
    /// Leading zero bits a solution needs: each bit doubles the expected work (18: about 260,000
    /// hashes, well under a second in a browser).
    pub(crate) bits: u32,
    used: Mutex<HashMap<String, i64>>,
}

impl Challenges {
    pub(crate) fn new(bits: u32) -> Self {
        let mut key = [0u8; 32];
        os_rng().fill_bytes(&mut key);
        Challenges { key, bits, used: Mutex::default() }
    }

    fn mac(&self, user: &str, expiry: i64, random: &str) -> String {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("any key length");
        m.update(user.to_ascii_lowercase().as_bytes());
        m.update(b"\0");
        m.update(expiry.to_string().as_bytes());
        m.update(b"\0");
        m.update(random.as_bytes());
        hex(&m.finalize().into_bytes())
    }

    /// A fresh challenge for signing in as `user`.
    pub(crate) fn issue(&self, user: &str, now: i64) -> String {
        let mut raw = [0u8; 12];
        os_rng().fill_bytes(&mut raw);
        let (expiry, random) = (now + LIFETIME_SECS, hex(&raw));
        format!("{expiry}.{random}.{}", self.mac(user, expiry, &random))
    }

    /// Accepts `nonce` as the solution of `challenge` for `user`, once.
    pub(crate) fn verify(&self, user: &str, challenge: &str, nonce: &str, now: i64) -> Result<(), ChallengeError> {
        let mut parts = challenge.splitn(3, '.');
        let (Some(expiry), Some(random), Some(mac)) = (parts.next(), parts.next(), parts.next()) else { return Err(ChallengeError::Malformed) };
        let expiry: i64 = expiry.parse().map_err(|_| ChallengeError::Malformed)?;
        if !crate::web::constant_time_eq(self.mac(user, expiry, random).as_bytes(), mac.as_bytes()) {
            return Err(ChallengeError::Malformed);
        }
        if expiry <= now {
            return Err(ChallengeError::Expired);
        }
        if nonce.is_empty() || nonce.len() > 20 || !nonce.bytes().all(|b| b.is_ascii_digit()) || !solves(challenge, nonce, self.bits) {
            return Err(ChallengeError::Unsolved);
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if used.len() >= USED_MAX {
            used.retain(|_, exp| *exp > now);
            if used.len() >= USED_MAX {
                return Err(ChallengeError::Expired);
            }
        }
        if used.insert(challenge.to_owned(), expiry).is_some() {
            return Err(ChallengeError::Reused);
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether SHA-256(`challenge:nonce`) starts with `bits` zero bits.
pub(crate) fn solves(challenge: &str, nonce: &str, bits: u32) -> bool {
    let h = Sha256::new().chain_update(challenge.as_bytes()).chain_update(b":").chain_update(nonce.as_bytes()).finalize();
    leading_zero_bits(&h) >= bits
}

fn leading_zero_bits(h: &[u8]) -> u32 {
    let mut n = 0;
    for b in h {
        if *b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// Finds a solution (what the page's script does; here for tests and scripts).
pub fn solve(challenge: &str, bits: u32) -> String {
    (0u64..).map(|n| n.to_string()).find(|n| solves(challenge, n, bits)).expect("a solution exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zero_bits_counts_across_bytes() {
        let cases: &[(&[u8], u32)] = &[(&[0x80], 0), (&[0x01], 7), (&[0x00, 0x40], 9), (&[0x00, 0x00], 16), (&[0x0f, 0], 4)];
        for (bytes, want) in cases {
            assert_eq!(leading_zero_bits(bytes), *want, "{bytes:?}");
        }
    }

    #[test]
    fn a_solved_challenge_is_accepted_once_for_its_user_before_it_expires() {
        let c = Challenges::new(8);
        let ch = c.issue("alice", 1000);
        let nonce = solve(&ch, 8);
        assert_eq!(c.verify("bob", &ch, &nonce, 1001), Err(ChallengeError::Malformed), "another account's challenge");
        let unsolved = (0u64..).map(|n| n.to_string()).find(|n| !solves(&ch, n, 8)).unwrap();
        assert_eq!(c.verify("alice", &ch, &unsolved, 1001), Err(ChallengeError::Unsolved));
        assert_eq!(c.verify("alice", &ch, &nonce, 1000 + LIFETIME_SECS), Err(ChallengeError::Expired));
        assert_eq!(c.verify("ALICE", &ch, &nonce, 1001), Ok(()));
        assert_eq!(c.verify("alice", &ch, &nonce, 1002), Err(ChallengeError::Reused));
        let forged = format!("9999999999{}", &ch[ch.find('.').unwrap()..]);
        assert_eq!(c.verify("alice", &forged, &solve(&forged, 8), 1001), Err(ChallengeError::Malformed), "a changed expiry breaks the MAC");
        assert_eq!(c.verify("alice", "garbage", "1", 1001), Err(ChallengeError::Malformed));
        assert_eq!(c.verify("alice", &c.issue("alice", 1000), "12a", 1001), Err(ChallengeError::Unsolved));
    }
}
