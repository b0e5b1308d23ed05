//! What a certificate says (subject, names, validity, key) and whether trove would serve it.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::prelude::*;

use super::keys::{KeyType, uint_bits};

/// Whether `pattern` (a `ServerName`, `ServerAlias` or certificate name) matches `host`.
/// Case-insensitive; a trailing dot is ignored; `*.example.com` matches exactly one more label
/// (`a.example.com`, not `example.com` nor `a.b.example.com`), as RFC 6125 section 6.4.3 allows.
pub fn name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => match host.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest == suffix,
            None => false,
        },
        None => pattern == host,
    }
}

/// The facts about one X.509 certificate that operators and the loader care about.
#[derive(Clone, Debug)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// DNS names from the subjectAltName extension.
    pub dns_names: Vec<String>,
    /// IP addresses from the subjectAltName extension.
    pub ip_addresses: Vec<IpAddr>,
    /// The subject's common name, when there is one (clients ignore it when SANs exist).
    pub common_name: Option<String>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub key_type: KeyType,
    /// e.g. `sha256WithRSAEncryption`, `ecdsa-with-SHA256`.
    pub signature_algorithm: String,
    pub is_ca: bool,
    pub self_signed: bool,
    /// SHA-256 over the DER, upper-case hex pairs joined by `:` (as `openssl x509 -fingerprint -sha256`).
    pub sha256_fingerprint: String,
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `2026-11-29 04:35:21 UTC`.
pub fn format_time(unix: i64) -> String {
    match ::time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", t.year(), t.month() as u8, t.day(), t.hour(), t.minute(), t.second()),
        Err(_) => unix.to_string(),
    }
}

fn signature_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "rsassaPss",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.3.101.112" => "ED25519",
        other => return other.to_string(),
    }
    .to_string()
}

/// The key type in a SubjectPublicKeyInfo.
pub(crate) fn spki_key_type(spki: &SubjectPublicKeyInfo<'_>) -> KeyType {
    match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => KeyType::Rsa(uint_bits(rsa.modulus)),
            _ => KeyType::Rsa(0),
        },
        "1.2.840.10045.2.1" => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string()).unwrap_or_default();
            match curve.as_str() {
                "1.2.840.10045.3.1.7" => KeyType::EcdsaP256,
                "1.3.132.0.34" => KeyType::EcdsaP384,
                "1.3.132.0.35" => KeyType::EcdsaP521,
                _ => KeyType::Other,
            }
        }
        "1.3.101.112" => KeyType::Ed25519,
        "1.3.101.113" => KeyType::Ed448,
        "1.2.840.10040.4.1" => KeyType::Dsa,
        "1.2.840.113549.1.1.10" => KeyType::RsaPss,
        _ => KeyType::Other,
    }
}

impl CertInfo {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => ip_addresses.push(IpAddr::from(<[u8; 4]>::try_from(*b).expect("4 bytes"))),
                        16 => ip_addresses.push(IpAddr::from(<[u8; 16]>::try_from(*b).expect("16 bytes"))),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        let common_name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string);
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let sha256_fingerprint = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            dns_names,
            ip_addresses,
            common_name,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            key_type: spki_key_type(cert.public_key()),
            signature_algorithm: signature_name(&cert.signature_algorithm.algorithm.to_id_string()),
            is_ca,
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            sha256_fingerprint,
        })
    }

    /// Whether the certificate has expired at `now` (Unix seconds).
    pub fn is_expired_at(&self, now: i64) -> bool {
        now > self.not_after
    }

    /// Whether the certificate is not yet valid at `now` (Unix seconds).
    pub fn is_not_yet_valid_at(&self, now: i64) -> bool {
        now < self.not_before
    }

    /// The names a verifying client accepts: SAN DNS names, or the CN when there are no SANs.
    pub fn names(&self) -> Vec<String> {
        if self.dns_names.is_empty() && self.ip_addresses.is_empty() {
            self.common_name.iter().cloned().collect()
        } else {
            self.dns_names.iter().cloned().chain(self.ip_addresses.iter().map(|i| i.to_string())).collect()
        }
    }

    /// Whether a verifying client connecting to `host` accepts this certificate's names
    /// (RFC 6125 section 6.4: exact, or a `*.` wildcard covering exactly one label).
    pub fn covers(&self, host: &str) -> bool {
        self.names().iter().any(|n| name_matches(n, host))
    }

    /// Reasons trove would refuse to serve this certificate as a server's leaf at `now`.
    pub fn refusals(&self, now: i64) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(r) = self.key_type.refusal() {
            out.push(r);
        }
        if self.is_not_yet_valid_at(now) {
            out.push(format!("not valid before {}", format_time(self.not_before)));
        }
        out
    }

    /// Things that do not stop trove but that clients will complain about, at `now`.
    pub fn concerns(&self, now: i64) -> Vec<String> {
        let mut out = Vec::new();
        if self.is_expired_at(now) {
            out.push(format!("expired on {}: verifying clients refuse it (trove serves it with a loud warning)", format_time(self.not_after)));
        }
        if self.dns_names.is_empty() && self.ip_addresses.is_empty() {
            out.push("no subjectAltName: modern clients ignore the common name and will refuse it".into());
        }
        if self.self_signed && !self.is_ca {
            out.push("self-signed: clients must be given this file to trust (`git -c http.sslCAInfo=FILE`)".into());
        }
        if self.signature_algorithm.contains("SHA1") || self.signature_algorithm.contains("sha1") || self.signature_algorithm.contains("md5") {
            out.push(format!("signed with {}, which clients refuse", self.signature_algorithm));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_case_insensitively_and_by_one_label_wildcards() {
        let cases: &[(&str, &str, bool)] = &[
            ("git.example.com", "git.example.com", true),
            ("git.example.com", "GIT.Example.COM", true),
            ("git.example.com.", "git.example.com", true),
            ("git.example.com", "www.example.com", false),
            ("*.example.com", "git.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "gitexample.com", false),
            ("", "example.com", false),
            ("example.com", "", false),
        ];
        for (pattern, host, want) in cases {
            assert_eq!(name_matches(pattern, host), *want, "{pattern} vs {host}");
        }
    }
}
