//! Choosing the certificate by the name the downstream asked for (SNI, RFC 6066 section 3), as
//! Apache chooses among `<VirtualHost>`s by `ServerName` and `ServerAlias`.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use trove_tls::{Identity, name_matches};

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
