//! Making keys, self-signed certificates, a local certificate authority, certificates signed by
//! it, and signing requests: the seed's `openssl genrsa` / `req` / `x509` steps, done safely.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use super::error::{FileRole, TlsError};
use super::keys::{KeyType, to_pkcs8};
use super::load::{load_certificates, load_private_key};
use super::passphrase::PassphraseSource;

/// Which key to make. Default: ECDSA P-256 (small, fast, accepted everywhere that matters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyKind {
    #[default]
    EcdsaP256,
    Rsa2048,
    Rsa3072,
}

impl std::str::FromStr for KeyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "ecdsa" | "p256" => Ok(KeyKind::EcdsaP256),
            "rsa2048" => Ok(KeyKind::Rsa2048),
            "rsa3072" => Ok(KeyKind::Rsa3072),
            other => Err(format!("unknown key kind {other:?}; use ecdsa-p256, rsa2048 or rsa3072")),
        }
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyKind::EcdsaP256 => "ecdsa-p256",
            KeyKind::Rsa2048 => "rsa2048",
            KeyKind::Rsa3072 => "rsa3072",
        })
    }
}

/// A certificate and its private key, PEM-encoded (the key as unencrypted PKCS#8).
pub struct GeneratedCert {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

/// A certificate authority to sign with: its certificate and key, PEM-encoded.
pub struct CertAuthority {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

/// Makes a new key, with aws-lc-rs (rcgen's backend, as it is rustls'), RSA keys included.
pub fn generate_key(kind: KeyKind) -> Result<KeyPair, TlsError> {
    match kind {
        KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(TlsError::Generate),
        KeyKind::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).map_err(TlsError::Generate),
        KeyKind::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072).map_err(TlsError::Generate),
    }
}

/// A random positive 128-bit serial number (RFC 5280 section 4.1.2.2 allows up to 20 octets).
fn random_serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| TlsError::KeyGeneration {
        kind: "serial number".into(),
        reason: "the system random generator failed; check that /dev/urandom is readable".into(),
    })?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Checks a host name for a certificate: LDH labels, optionally a leading `*.`.
pub fn validate_host(name: &str) -> Result<(), TlsError> {
    let bad = || TlsError::InvalidHost { name: name.to_string() };
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if rest.is_empty() || rest.len() > 253 {
        return Err(bad());
    }
    for label in rest.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad());
        }
    }
    Ok(())
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // A minute of slack for clients whose clocks run a little behind.
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::days(i64::from(days.max(1)));
}

fn server_params(hosts: &[String], ips: &[IpAddr], days: u32, key: &KeyPair) -> Result<CertificateParams, TlsError> {
    if hosts.is_empty() && ips.is_empty() {
        return Err(TlsError::NoNames);
    }
    let mut params = CertificateParams::default();
    let mut sans = Vec::new();
    let mut all_ips: Vec<IpAddr> = ips.to_vec();
    for h in hosts {
        if let Ok(ip) = h.parse::<IpAddr>() {
            all_ips.push(ip);
            continue;
        }
        validate_host(h)?;
        let name = rcgen::string::Ia5String::try_from(h.to_ascii_lowercase()).map_err(|_| TlsError::InvalidHost { name: h.clone() })?;
        sans.push(SanType::DnsName(name));
    }
    for ip in &all_ips {
        if !sans.contains(&SanType::IpAddress(*ip)) {
            sans.push(SanType::IpAddress(*ip));
        }
    }
    params.subject_alt_names = sans;
    let cn = hosts.first().cloned().unwrap_or_else(|| ips[0].to_string());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
        // TLS 1.2 RSA key exchange is never offered by trove, but other servers may reuse the pair.
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    Ok(params)
}

/// A self-signed server certificate for `hosts` and `ips`, valid for `days`, with a new key.
pub fn self_signed(hosts: &[String], ips: &[IpAddr], days: u32, key_kind: KeyKind) -> Result<GeneratedCert, TlsError> {
    let key = generate_key(key_kind)?;
    let mut params = server_params(hosts, ips, days, &key)?;
    params.use_authority_key_identifier_extension = false;
    let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
    Ok(GeneratedCert { cert_pem: cert.pem(), key_pem: Zeroizing::new(key.serialize_pem()) })
}

/// A new certificate authority (ECDSA P-256) named `common_name`, valid for `days`, allowed to
/// sign server certificates only (path length 0).
pub fn make_ca(common_name: &str, days: u32) -> Result<CertAuthority, TlsError> {
    let key = generate_key(KeyKind::EcdsaP256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Trove local CA");
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, days);
    let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
    Ok(CertAuthority { cert_pem: cert.pem(), key_pem: Zeroizing::new(key.serialize_pem()) })
}

/// Reads `ca.crt` and `ca.key` from `dir` (the key must be private to its owner).
pub fn load_ca(dir: &Path) -> Result<CertAuthority, TlsError> {
    let cert_path = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    let certs = load_certificates(&cert_path, FileRole::CertificateAuthority)?;
    let (key, _) = load_private_key(&key_path, &PassphraseSource::Builtin, "trove-ca", 0)?;
    let key_pem = pkcs8_pem(&key).map_err(|reason| TlsError::BadKey { path: key_path.clone(), reason })?;
    let cert_pem = pem::encode(&pem::Pem::new("CERTIFICATE", certs[0].to_vec()));
    Ok(CertAuthority { cert_pem, key_pem })
}

fn pkcs8_pem(key: &PrivateKeyDer<'_>) -> Result<Zeroizing<String>, String> {
    let der = to_pkcs8(key)?;
    Ok(Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec()))))
}

/// The rcgen signature algorithm for a key of this type.
fn sign_algo(kind: KeyType) -> Option<&'static rcgen::SignatureAlgorithm> {
    match kind {
        KeyType::Rsa(_) => Some(&rcgen::PKCS_RSA_SHA256),
        KeyType::EcdsaP256 => Some(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => Some(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyType::Ed25519 => Some(&rcgen::PKCS_ED25519),
        _ => None,
    }
}

fn key_pair_from(key: &PrivateKeyDer<'_>, kind: KeyType) -> Result<KeyPair, String> {
    let alg = sign_algo(kind).ok_or_else(|| format!("{kind} keys cannot sign"))?;
    let der = to_pkcs8(key)?;
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der.as_slice()), alg).map_err(|e| e.to_string())
}

/// What rcgen needs to sign as the CA in `cert_pem`: its subject, in the same attribute order and
/// string types, so that a leaf's issuer is byte for byte the CA's subject (RFC 5280 section
/// 4.1.2.4), and its subject key identifier, which becomes a leaf's authority key identifier
/// (section 4.2.1.1). rcgen's `from_ca_cert_pem` does the same, but its `x509-parser` feature
/// turns on x509-parser's `verify`, which links ring beside aws-lc-rs.
fn issuer_params(cert_pem: &str) -> Result<CertificateParams, rcgen::Error> {
    use x509_parser::der_parser::asn1_rs::Tag;
    use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
    let bad = |_| rcgen::Error::CouldNotParseCertificate;
    let block = pem::parse(cert_pem).map_err(|_| rcgen::Error::CouldNotParseCertificate)?;
    let (_, cert) = X509Certificate::from_der(block.contents()).map_err(bad)?;
    let mut dn = DistinguishedName::new();
    for rdn in cert.subject().iter() {
        // rcgen writes one attribute per RDN; a multi-valued RDN could not be written back as it is.
        let [attr] = rdn.iter().collect::<Vec<_>>()[..] else {
            return Err(rcgen::Error::CouldNotParseCertificate);
        };
        let oid: Vec<u64> = attr.attr_type().iter().ok_or(rcgen::Error::CouldNotParseCertificate)?.collect();
        let data = attr.attr_value().data;
        let text = || std::str::from_utf8(data).map_err(|_| rcgen::Error::CouldNotParseCertificate);
        let value = match attr.attr_value().header.tag() {
            Tag::BmpString => DnValue::BmpString(rcgen::string::BmpString::from_utf16be(data.to_vec())?),
            Tag::Ia5String => DnValue::Ia5String(text()?.try_into()?),
            Tag::PrintableString => DnValue::PrintableString(text()?.try_into()?),
            Tag::T61String => DnValue::TeletexString(text()?.try_into()?),
            Tag::UniversalString => DnValue::UniversalString(rcgen::string::UniversalString::from_utf32be(data.to_vec())?),
            Tag::Utf8String => DnValue::Utf8String(text()?.to_owned()),
            _ => return Err(rcgen::Error::CouldNotParseCertificate),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.key_identifier_method = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(KeyIdMethod::PreSpecified(id.0.to_vec())),
            _ => None,
        })
        // No subjectKeyIdentifier: rcgen's own method, as for the certificates it makes.
        .unwrap_or(KeyIdMethod::Sha256);
    Ok(params)
}

/// A server certificate for `hosts` and `ips`, signed by `ca`, with a new key.
pub fn issue(ca: &CertAuthority, hosts: &[String], ips: &[IpAddr], days: u32, key_kind: KeyKind) -> Result<GeneratedCert, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(TlsError::Generate)?;
    let ca_params = issuer_params(&ca.cert_pem).map_err(TlsError::Generate)?;
    // The CA's subject and key identifier, as on disk, give the leaf its issuer and authority
    // key identifier.
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = generate_key(key_kind)?;
    let params = server_params(hosts, ips, days, &key)?;
    let cert = params.signed_by(&key, &issuer).map_err(TlsError::Generate)?;
    Ok(GeneratedCert { cert_pem: cert.pem(), key_pem: Zeroizing::new(key.serialize_pem()) })
}

/// A PKCS#10 certificate signing request (PEM) for `hosts` with the given key (any form
/// [`load_private_key`] reads), to send to a certificate authority.
pub fn csr_for_key(key: &PrivateKeyDer<'_>, kind: KeyType, hosts: &[String]) -> Result<String, TlsError> {
    let bad = |reason: String| TlsError::KeyGeneration { kind: kind.to_string(), reason };
    let key_pair = key_pair_from(key, kind).map_err(bad)?;
    let mut params = server_params(hosts, &[], 1, &key_pair)?;
    // The CA chooses these; a CSR cannot carry them (PKCS#10 has no place for a serial).
    params.serial_number = None;
    params.is_ca = IsCa::NoCa;
    params.use_authority_key_identifier_extension = false;
    params.serialize_request(&key_pair).and_then(|r| r.pem()).map_err(TlsError::Generate)
}

/// A certificate signing request for `hosts` with the unencrypted PEM key `key_pem`.
pub fn csr(key_pem: &str, hosts: &[String]) -> Result<String, TlsError> {
    let block = super::keys::KeyBlock::find(key_pem.as_bytes())
        .map_err(|reason| TlsError::BadKey { path: PathBuf::from("(key)"), reason })?
        .ok_or_else(|| TlsError::NoKey { path: PathBuf::from("(key)") })?;
    let (key, kind) = block.decode(None).map_err(|_| TlsError::PassphraseNeeded { path: PathBuf::from("(key)") })?;
    if let KeyType::Rsa(bits) = kind
        && bits < 2048
    {
        return Err(TlsError::WeakRsaKey { path: PathBuf::from("(key)"), bits });
    }
    csr_for_key(&key, kind, hosts)
}

/// Writes `contents` to `path`; `private` files get mode 0600 from the start (never briefly
/// readable by others), others 0644. Refuses to overwrite unless `force`.
pub fn write_file(path: &Path, contents: &[u8], private: bool, force: bool) -> Result<(), TlsError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let werr = |source: std::io::Error| TlsError::Write { path: path.to_path_buf(), source };
    if !force && path.exists() {
        return Err(TlsError::AlreadyExists { path: path.to_path_buf() });
    }
    let mode = if private { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path).map_err(werr)?;
    // An existing file keeps its old mode when opened; set it explicitly.
    f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(werr)?;
    f.write_all(contents).map_err(werr)?;
    f.sync_all().map_err(werr)
}

/// Writes `cert_name` (0644) and `key_name` (0600) into `dir`, creating `dir` if needed.
pub fn write_pair(dir: &Path, cert_name: &str, key_name: &str, cert_pem: &str, key_pem: &str, force: bool) -> Result<(PathBuf, PathBuf), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write { path: dir.to_path_buf(), source })?;
    let cert_path = dir.join(cert_name);
    let key_path = dir.join(key_name);
    if !force {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(TlsError::AlreadyExists { path: p.clone() });
            }
        }
    }
    write_file(&key_path, key_pem.as_bytes(), true, force)?;
    write_file(&cert_path, cert_pem.as_bytes(), false, force)?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_checked_for_certificates() {
        for ok in ["git.example.com", "*.example.com", "localhost", "a-b.c_d.example"] {
            assert!(validate_host(ok).is_ok(), "{ok}");
        }
        for bad in ["", "*.", "a..b", "-a.com", "a-.com", "exa mple.com", "*.*.example.com", "a*.example.com"] {
            assert!(validate_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_kinds_parse_from_their_cli_names() {
        assert_eq!("rsa3072".parse::<KeyKind>(), Ok(KeyKind::Rsa3072));
        assert_eq!("ECDSA-P256".parse::<KeyKind>(), Ok(KeyKind::EcdsaP256));
        assert!("rsa1024".parse::<KeyKind>().is_err());
    }
}
