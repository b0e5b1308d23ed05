//! Loading a site's certificate chain and private key from disk, with every check that must pass
//! before the gateway serves them (Apache's `SSLCertificateFile`, `SSLCertificateKeyFile`,
//! `SSLCertificateChainFile`, `SSLPassPhraseDialog`).

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use super::error::{FileRole, TlsError, TlsWarning};
use super::inspect::{CertInfo, format_time, now_unix};
use super::keys::{KeyBlock, KeyDecodeError, KeyType};
use super::passphrase::{self, BUILTIN_TRIES, PassphraseCache, PassphraseSource, Request};

/// Where one TLS site's certificate and key live, and how to unlock the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSiteConfig {
    /// `ServerName`; used for SNI, the passphrase prompt and the `exec:` program's argument.
    pub server_name: String,
    /// `ServerAlias`es: more names (exact or `*.` wildcards) that choose this site by SNI.
    pub aliases: Vec<String>,
    /// The listening port, for the passphrase prompt (`server:port`).
    pub port: u16,
    /// `SSLCertificateFile`: PEM, the site's own certificate first, then the chain.
    pub cert: PathBuf,
    /// `SSLCertificateKeyFile`: PEM private key; may be the same file as `cert`.
    pub key: PathBuf,
    /// `SSLCertificateChainFile` (the older form): more chain certificates, appended after `cert`'s.
    /// `None`: the chain is whatever follows the leaf in `cert`.
    pub chain: Option<PathBuf>,
    pub passphrase: PassphraseSource,
}

impl TlsSiteConfig {
    /// A site with a plain (unencrypted) key and no separate chain file.
    pub fn new(server_name: impl Into<String>, port: u16, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsSiteConfig {
            server_name: server_name.into(),
            aliases: Vec::new(),
            port,
            cert: cert.into(),
            key: key.into(),
            chain: None,
            passphrase: PassphraseSource::None,
        }
    }

    /// `server_name` then `aliases`: the names that choose this site by SNI.
    pub fn names(&self) -> Vec<String> {
        std::iter::once(self.server_name.clone()).chain(self.aliases.iter().cloned()).filter(|n| !n.is_empty()).collect()
    }
}

/// A loaded, checked certificate chain and key, ready to serve.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Leaf first, then the chain.
    pub chain: Vec<CertificateDer<'static>>,
    pub certified: Arc<CertifiedKey>,
    /// What the leaf certificate says.
    pub leaf: CertInfo,
    pub key_type: KeyType,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Loud warnings the caller must log (e.g. an expired certificate).
    pub warnings: Vec<TlsWarning>,
}

/// Refuses a key (or passphrase) file that group or others may read (`mode & 0o077 != 0`).
pub(crate) fn check_private_mode(meta: &Metadata, role: FileRole, path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_file() && mode & 0o077 != 0 {
        return Err(TlsError::TooOpen { role, path: path.to_path_buf(), mode });
    }
    Ok(())
}

/// Refuses a private key file at `path` that group or others may read, as TLS keys are refused
/// (the SSH host keys use it too).
pub fn check_private_key_mode(path: &Path, role: FileRole) -> Result<(), TlsError> {
    let meta = std::fs::metadata(path).map_err(|e| TlsError::UnreadableFile { role, path: path.to_path_buf(), source: e })?;
    check_private_mode(&meta, role, path)
}

fn read_file(path: &Path, role: FileRole, private: bool) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TlsError::MissingFile { role, path: path.to_path_buf() },
        _ => TlsError::UnreadableFile { role, path: path.to_path_buf(), source: e },
    })?;
    if private {
        check_private_mode(&meta, role, path)?;
    }
    std::fs::read(path).map(Zeroizing::new).map_err(|e| TlsError::UnreadableFile { role, path: path.to_path_buf(), source: e })
}

/// Every certificate in a PEM file, in order; `NoCertificate` when there is none.
pub fn load_certificates(path: &Path, role: FileRole) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path, role, false)?;
    let blocks =
        pem::parse_many(&*bytes).map_err(|e| TlsError::BadCertificate { path: path.to_path_buf(), index: 1, reason: format!("not valid PEM: {e}") })?;
    let certs: Vec<CertificateDer<'static>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE" || b.tag() == "X509 CERTIFICATE" || b.tag() == "TRUSTED CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certs)
}

/// Loads and decrypts the private key in `path`, checks its mode and refuses weak or unsupported
/// keys. `server`/`port` name the site in the passphrase prompt and the `exec:` arguments.
pub fn load_private_key(path: &Path, source: &PassphraseSource, server: &str, port: u16) -> Result<(PrivateKeyDer<'static>, KeyType), TlsError> {
    load_private_key_with(path, source, server, port, &PassphraseCache::default(), true)
}

pub(crate) fn load_private_key_with(
    path: &Path,
    source: &PassphraseSource,
    server: &str,
    port: u16,
    cache: &PassphraseCache,
    interactive: bool,
) -> Result<(PrivateKeyDer<'static>, KeyType), TlsError> {
    let bytes = read_file(path, FileRole::PrivateKey, true)?;
    let block = KeyBlock::find(&bytes)
        .map_err(|reason| TlsError::BadKey { path: path.to_path_buf(), reason: format!("not valid PEM: {reason}") })?
        .ok_or_else(|| TlsError::NoKey { path: path.to_path_buf() })?;
    let req = Request { key_path: path, server, port, algorithm: block.algorithm_hint() };
    let map_err = |e: KeyDecodeError| match e {
        KeyDecodeError::WrongPassphrase => TlsError::WrongPassphrase { path: path.to_path_buf(), from: source.describe() },
        KeyDecodeError::Malformed(reason) => TlsError::BadKey { path: path.to_path_buf(), reason },
        KeyDecodeError::UnsupportedEncryption(scheme) => TlsError::UnsupportedEncryption { path: path.to_path_buf(), scheme },
        KeyDecodeError::Unsupported(kind) => TlsError::UnsupportedKey { path: path.to_path_buf(), kind: kind.to_string() },
    };
    let (key, kind) = if !block.is_encrypted() {
        block.decode(None).map_err(map_err)?
    } else {
        match source {
            PassphraseSource::None => {
                return Err(TlsError::PassphraseNeeded { path: path.to_path_buf() });
            }
            PassphraseSource::Builtin => {
                let mut found = None;
                // Phrases that already worked (other keys, or the start before a reload) first.
                for phrase in cache.known() {
                    match block.decode(Some(phrase.as_bytes())) {
                        Ok(k) => {
                            found = Some(k);
                            break;
                        }
                        Err(KeyDecodeError::WrongPassphrase) => continue,
                        Err(e) => return Err(map_err(e)),
                    }
                }
                if found.is_none() && !interactive {
                    return Err(TlsError::PassphraseUnavailable {
                        path: path.to_path_buf(),
                        from: source.describe(),
                        reason: "no terminal prompt while reloading, and no earlier pass phrase fits; restart trove".into(),
                    });
                }
                let mut tries = 0;
                while found.is_none() {
                    if tries == BUILTIN_TRIES {
                        return Err(TlsError::WrongPassphrase { path: path.to_path_buf(), from: source.describe() });
                    }
                    let phrase = passphrase::prompt(&req, tries > 0)?;
                    tries += 1;
                    match block.decode(Some(phrase.as_bytes())) {
                        Ok(k) => {
                            cache.remember(&phrase);
                            found = Some(k);
                        }
                        Err(KeyDecodeError::WrongPassphrase) => continue,
                        Err(e) => return Err(map_err(e)),
                    }
                }
                found.expect("loop ends with a key")
            }
            other => {
                let phrase = passphrase::fetch(other, &req)?;
                block.decode(Some(phrase.as_bytes())).map_err(map_err)?
            }
        }
    };
    check_key_type(path, kind)?;
    Ok((key, kind))
}

fn check_key_type(path: &Path, kind: KeyType) -> Result<(), TlsError> {
    match kind {
        KeyType::Rsa(bits) if bits < 2048 => Err(TlsError::WeakRsaKey { path: path.to_path_buf(), bits }),
        KeyType::Rsa(_) | KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::Ed25519 => Ok(()),
        other => Err(TlsError::UnsupportedKey { path: path.to_path_buf(), kind: other.to_string() }),
    }
}

/// Loads one site's certificate chain and key and checks them: files present, readable, the key
/// private to its owner, decryptable, strong enough, matching the certificate, the certificate
/// already valid. An expired certificate is served but reported in [`Identity::warnings`].
pub fn load_identity(site: &TlsSiteConfig) -> Result<Identity, TlsError> {
    load_identity_with(site, &PassphraseCache::default(), true)
}

/// [`load_identity`] for a caller that loads again later (the gateway's reload on SIGHUP): a
/// `builtin` passphrase is tried from `cache` first and remembered there once it works, and
/// when `interactive` is false the terminal is never asked (a reload has none to ask).
pub fn load_identity_with(site: &TlsSiteConfig, cache: &PassphraseCache, interactive: bool) -> Result<Identity, TlsError> {
    let mut chain = load_certificates(&site.cert, FileRole::Certificate)?;
    let leaf = CertInfo::from_der(&chain[0]).map_err(|reason| TlsError::BadCertificate { path: site.cert.clone(), index: 1, reason })?;
    // Checked before asking for a passphrase: no point unlocking a key that will be refused.
    if let KeyType::Rsa(bits) = leaf.key_type
        && bits < 2048
    {
        return Err(TlsError::WeakRsaKey { path: site.cert.clone(), bits });
    }
    let now = now_unix();
    if leaf.is_not_yet_valid_at(now) {
        return Err(TlsError::NotYetValid { path: site.cert.clone(), not_before: format_time(leaf.not_before) });
    }
    let mut warnings = Vec::new();
    if leaf.is_expired_at(now) {
        warnings.push(TlsWarning::CertificateExpired { path: site.cert.clone(), not_after: format_time(leaf.not_after) });
    }
    let in_cert_file = chain.len();
    if let Some(chain_path) = &site.chain {
        chain.extend(load_certificates(chain_path, FileRole::Chain)?);
    }
    // Every chain certificate must parse; an expired one breaks verification like an expired leaf.
    for (i, c) in chain.iter().enumerate().skip(1) {
        let (path, index) = match &site.chain {
            Some(chain_path) if i >= in_cert_file => (chain_path, i - in_cert_file + 1),
            _ => (&site.cert, i + 1),
        };
        let info = CertInfo::from_der(c).map_err(|reason| TlsError::BadCertificate { path: path.clone(), index, reason })?;
        if info.is_expired_at(now) {
            warnings.push(TlsWarning::CertificateExpired {
                path: path.clone(),
                not_after: format!("{} (certificate {index} in the file: {})", format_time(info.not_after), info.subject),
            });
        }
    }

    let (key, key_type) = load_private_key_with(&site.key, &site.passphrase, &site.server_name, site.port, cache, interactive)?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key =
        provider.key_provider.load_private_key(key).map_err(|e| TlsError::UnsupportedKey { path: site.key.clone(), kind: format!("{key_type} ({e})") })?;
    let certified = CertifiedKey::new(chain.clone(), signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch { key: site.key.clone(), cert: site.cert.clone() });
        }
        // The aws-lc-rs provider knows the public key of every key type it loads, so "unknown" does
        // not happen; a certificate rustls cannot parse does.
        Err(e) => {
            return Err(TlsError::BadCertificate { path: site.cert.clone(), index: 1, reason: e.to_string() });
        }
    }
    Ok(Identity { chain, certified: Arc::new(certified), leaf, key_type, cert_path: site.cert.clone(), key_path: site.key.clone(), warnings })
}

/// What a private key file is, as far as can be told without its passphrase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFileInfo {
    /// Whether a passphrase is needed to read the key.
    pub encrypted: bool,
    /// The key's type; `None` when it is encrypted.
    pub key_type: Option<KeyType>,
    /// Permission bits of the file.
    pub mode: u32,
}

/// Describes the private key in `path` without decrypting it (for `trove cert show`).
/// `Ok(None)` when the file holds no private key.
pub fn describe_key_file(path: &Path) -> Result<Option<KeyFileInfo>, TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let bytes = read_file(path, FileRole::PrivateKey, false)?;
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0);
    let Some(block) = KeyBlock::find(&bytes).map_err(|reason| TlsError::BadKey { path: path.to_path_buf(), reason: format!("not valid PEM: {reason}") })?
    else {
        return Ok(None);
    };
    if block.is_encrypted() {
        return Ok(Some(KeyFileInfo { encrypted: true, key_type: None, mode }));
    }
    let key_type = match block.decode(None) {
        Ok((_, kind)) => kind,
        Err(KeyDecodeError::Unsupported(kind)) => kind,
        Err(KeyDecodeError::Malformed(reason)) => {
            return Err(TlsError::BadKey { path: path.to_path_buf(), reason });
        }
        Err(_) => KeyType::Other,
    };
    Ok(Some(KeyFileInfo { encrypted: false, key_type: Some(key_type), mode }))
}
