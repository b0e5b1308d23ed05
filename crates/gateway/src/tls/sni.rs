//! Choosing the certificate by the name the downstream asked for (SNI, RFC 6066 section 3), as
//! Apache chooses among `<VirtualHost>`s by `ServerName` and `ServerAlias`.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::load::Identity;

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

/// One site's certificate and the names it answers to.
#[derive(Clone, Debug)]
pub struct SiteIdentity {
    /// `ServerName` first, then `ServerAlias`es; exact names or `*.` wildcards.
    pub names: Vec<String>,
    pub identity: Identity,
}

/// Picks a certificate by SNI: an exact name first, then a wildcard, in site order; the first site
/// is the default when the downstream sends no SNI (e.g. it connected to an IP) or an unknown name.
#[derive(Debug)]
pub struct SniResolver {
    sites: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl SniResolver {
    /// `None` when `sites` is empty.
    pub fn new(sites: &[SiteIdentity]) -> Option<SniResolver> {
        if sites.is_empty() {
            return None;
        }
        Some(SniResolver { sites: sites.iter().map(|s| (s.names.clone(), s.identity.certified.clone())).collect() })
    }

    /// The index of the site that answers `server_name`.
    pub fn pick_index(&self, server_name: Option<&str>) -> usize {
        let Some(host) = server_name else { return 0 };
        let exact = self.sites.iter().position(|(names, _)| names.iter().any(|n| !n.starts_with("*.") && name_matches(n, host)));
        exact.or_else(|| self.sites.iter().position(|(names, _)| names.iter().any(|n| name_matches(n, host)))).unwrap_or(0)
    }

    /// The certificate for `server_name`.
    pub fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        self.sites[self.pick_index(server_name)].1.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
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
