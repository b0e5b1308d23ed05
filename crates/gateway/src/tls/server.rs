//! The rustls `ServerConfig` the listener serves with, and certificates that can be reloaded
//! (on SIGHUP) without touching connections already made.

use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use trove_tls::{PassphraseCache, TlsError, TlsOptions, TlsSiteConfig, TlsWarning, load_identity_with};

use super::sni::{SiteIdentity, SniResolver};

/// The aws-lc-rs provider narrowed to the configured suites, plus the protocol versions to enable.
/// aws-lc-rs is the provider rather than ring: its X25519 takes half of ring's time (docs/tls.md).
fn provider_for(opts: &TlsOptions) -> Result<(CryptoProvider, Vec<&'static rustls::SupportedProtocolVersion>), TlsError> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let mut all = provider.cipher_suites.clone();
    // Unless configured otherwise, TLS 1.3 prefers AES-128-GCM (as Mozilla's guidelines, Go and
    // the browsers do): its SHA-256 key schedule costs a fraction of AES-256-GCM's SHA-384 one on
    // CPUs with SHA extensions, ~20% of a handshake's CPU. A stable sort keeps the rest in order.
    all.sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let pick = |wanted: &Option<Vec<rustls::CipherSuite>>, tls13: bool| -> Vec<rustls::SupportedCipherSuite> {
        let of_version = all.iter().filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_)) == tls13);
        match wanted {
            None => of_version.cloned().collect(),
            Some(list) => list.iter().filter_map(|id| of_version.clone().find(|s| s.suite() == *id).cloned()).collect(),
        }
    };
    let mut suites = Vec::new();
    let mut versions = Vec::new();
    if opts.protocols.tls13 {
        let s = pick(&opts.tls13_suites, true);
        if !s.is_empty() {
            versions.push(&rustls::version::TLS13);
            suites.extend(s);
        }
    }
    if opts.protocols.tls12 {
        let s = pick(&opts.tls12_suites, false);
        if !s.is_empty() {
            versions.push(&rustls::version::TLS12);
            suites.extend(s);
        }
    }
    if versions.is_empty() {
        return Err(TlsError::NoUsableCipherSuite { value: format!("{opts:?}") });
    }
    provider.cipher_suites = suites;
    Ok((provider, versions))
}

/// Builds the server configuration from a certificate resolver: TLS 1.2 and 1.3 only, AEAD suites
/// with forward secrecy only (ECDHE over X25519, P-256 or P-384), ALPN as `opts.alpn` says.
pub fn build_server_config_with_resolver(resolver: Arc<dyn ResolvesServerCert>, opts: &TlsOptions) -> Result<Arc<ServerConfig>, TlsError> {
    let (provider, versions) = provider_for(opts)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = opts.alpn.protocols();
    config.ignore_client_order = opts.honor_cipher_order;
    // One ticket per handshake instead of rustls's two: a client that resumes gets a fresh one
    // each time, and the second ticket (an extra key derivation and record per handshake, ~10% of
    // a resumed handshake's CPU) only helped clients opening parallel connections.
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// Warnings about the sites themselves: their own (expired...) and names their certificate lacks.
fn site_warnings(sites: &[SiteIdentity]) -> Vec<TlsWarning> {
    let mut out = Vec::new();
    for site in sites {
        out.extend(site.identity.warnings.iter().cloned());
        for name in &site.names {
            let covered =
                if name.starts_with("*.") { site.identity.leaf.names().iter().any(|n| n.eq_ignore_ascii_case(name)) } else { site.identity.leaf.covers(name) };
            if !covered {
                out.push(TlsWarning::NameNotInCertificate { path: site.identity.cert_path.clone(), site: name.clone(), names: site.identity.leaf.names() });
            }
        }
    }
    out
}

/// Builds the server configuration for fixed sites; the first site is the default. Returns the
/// sites' warnings (expired certificates, names the certificate does not cover) to be logged.
pub fn build_server_config(sites: &[SiteIdentity], opts: &TlsOptions) -> Result<(Arc<ServerConfig>, Vec<TlsWarning>), TlsError> {
    let resolver = SniResolver::new(sites).ok_or(TlsError::NoSites)?;
    let config = build_server_config_with_resolver(Arc::new(resolver), opts)?;
    Ok((config, site_warnings(sites)))
}

/// Certificates that can be swapped at run time. Serve with [`ReloadableCerts::server_config`];
/// call [`ReloadableCerts::reload`] on SIGHUP. A handshake in progress or a connection already
/// made keeps the certificate it got; only new handshakes see the new one.
#[derive(Debug)]
pub struct ReloadableCerts {
    configs: Vec<TlsSiteConfig>,
    cache: PassphraseCache,
    current: RwLock<Arc<SniResolver>>,
}

fn load_all(configs: &[TlsSiteConfig], cache: &PassphraseCache, interactive: bool) -> Result<(SniResolver, Vec<TlsWarning>), TlsError> {
    let mut sites = Vec::with_capacity(configs.len());
    for c in configs {
        sites.push(SiteIdentity { names: c.names(), identity: load_identity_with(c, cache, interactive)? });
    }
    let resolver = SniResolver::new(&sites).ok_or(TlsError::NoSites)?;
    Ok((resolver, site_warnings(&sites)))
}

impl ReloadableCerts {
    /// Loads every site (the first is the default); asks on the terminal if a key needs it.
    pub fn load(configs: Vec<TlsSiteConfig>) -> Result<(Arc<ReloadableCerts>, Vec<TlsWarning>), TlsError> {
        let cache = PassphraseCache::default();
        let (resolver, warnings) = load_all(&configs, &cache, true)?;
        Ok((Arc::new(ReloadableCerts { configs, cache, current: RwLock::new(Arc::new(resolver)) }), warnings))
    }

    /// Loads the files again. On success new handshakes use them; on error the certificates in
    /// use stay and the error is returned for the log. Never prompts: a `builtin` passphrase is
    /// taken from those typed at start.
    pub fn reload(&self) -> Result<Vec<TlsWarning>, TlsError> {
        let (resolver, warnings) = load_all(&self.configs, &self.cache, false)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(resolver);
        Ok(warnings)
    }

    /// The resolver in use now.
    pub fn current(&self) -> Arc<SniResolver> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A server configuration whose certificates follow [`ReloadableCerts::reload`].
    pub fn server_config(self: &Arc<Self>, opts: &TlsOptions) -> Result<Arc<ServerConfig>, TlsError> {
        build_server_config_with_resolver(self.clone(), opts)
    }
}

impl ResolvesServerCert for ReloadableCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().pick(hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_order_prefers_aes_128_gcm_in_tls13_and_keeps_a_configured_order() {
        let (provider, _) = provider_for(&TlsOptions::default()).unwrap();
        assert_eq!(provider.cipher_suites[0].suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(provider.kx_groups[0].name(), rustls::NamedGroup::X25519);
        let opts = TlsOptions {
            tls13_suites: Some(vec![rustls::CipherSuite::TLS13_AES_256_GCM_SHA384, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256]),
            ..TlsOptions::default()
        };
        let (provider, _) = provider_for(&opts).unwrap();
        assert_eq!(provider.cipher_suites[0].suite(), rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
    }
}
