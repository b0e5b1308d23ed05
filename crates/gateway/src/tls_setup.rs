//! From the parsed `TlsSite`s of a config to a rustls server configuration (via `trove-tls` and `tls`).

use std::sync::Arc;

use crate::config::{GatewayConfig, PassphraseSetting};
use crate::tls::ReloadableCerts;
use trove_tls::{self as tls, PassphraseSource, TlsError, TlsOptions, TlsSiteConfig, TlsWarning};

pub struct TlsSetup {
    pub certs: Arc<ReloadableCerts>,
    pub server_config: Arc<rustls::ServerConfig>,
    pub warnings: Vec<TlsWarning>,
}

/// Load every site's certificate and key (prompting for a passphrase if configured so) and
/// build one server configuration; `None` when the config has no TLS.
pub fn tls_for(cfg: &GatewayConfig) -> Result<Option<TlsSetup>, TlsError> {
    if cfg.tls_sites.is_empty() {
        return Ok(None);
    }
    let port = cfg.listeners.iter().find(|l| l.tls).map(|l| l.addr.port()).unwrap_or(443);
    let mut sites = Vec::new();
    for s in &cfg.tls_sites {
        sites.push(TlsSiteConfig {
            server_name: s.names.first().cloned().unwrap_or_default(),
            aliases: s.names.iter().skip(1).cloned().collect(),
            port,
            cert: s.cert.clone(),
            key: s.key.clone().unwrap_or_else(|| s.cert.clone()),
            chain: s.chain.clone(),
            passphrase: match &s.passphrase {
                PassphraseSetting::None => PassphraseSource::None,
                PassphraseSetting::Builtin => PassphraseSource::Builtin,
                PassphraseSetting::Exec(p) => PassphraseSource::Exec(p.clone()),
                PassphraseSetting::File(p) => PassphraseSource::File(p.clone()),
                PassphraseSetting::Env(v) => PassphraseSource::Env(v.clone()),
            },
        });
    }
    let mut warnings = Vec::new();
    let mut opts = TlsOptions::default();
    // One server configuration serves every TLS listener: the first site's protocol and
    // cipher settings apply to all.
    if let Some(p) = &cfg.tls_sites[0].protocol {
        let (setting, w) = tls::parse_ssl_protocol(p)?;
        opts.protocols = setting;
        warnings.extend(w);
    }
    if let Some(c) = &cfg.tls_sites[0].cipher_suite {
        let (setting, w) = tls::parse_ssl_cipher_suite(c)?;
        opts.apply_cipher_setting(setting);
        warnings.extend(w);
    }
    let (certs, w) = ReloadableCerts::load(sites)?;
    warnings.extend(w);
    let server_config = certs.server_config(&opts)?;
    Ok(Some(TlsSetup { certs, server_config, warnings }))
}
