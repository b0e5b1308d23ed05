//! Certificates and keys for trove: making them (the seed's `openssl genrsa` / `req` / `x509`
//! steps), loading and decrypting them in every PEM form users have, inspecting them, and the
//! checks (key size, protocols, cipher suites) whose errors name the file's role, its path and the
//! command to run.
//!
//! Used by the gateway (which serves what [`load_identity`] returns) and by the CLI (`trove cert`,
//! `trove doctor`, `trove up`), so that neither command needs the proxy to handle a certificate.
//! The one crypto backend is aws-lc-rs, as rustls' provider: rcgen signs and makes keys with it,
//! [`load_identity`] checks a key against its certificate with it.

mod error;
mod generate;
mod inspect;
mod keys;
mod load;
mod passphrase;
mod policy;

pub use error::{FileRole, GOOD_KEY_COMMAND, TlsError, TlsWarning};
pub use generate::{
    CertAuthority, GeneratedCert, KeyKind, csr, csr_for_key, generate_key, issue, load_ca, make_ca, self_signed, validate_host, write_file, write_pair,
};
pub use inspect::{CertInfo, format_time, name_matches};
pub use keys::KeyType;
pub use load::{
    Identity, KeyFileInfo, TlsSiteConfig, check_private_key_mode, describe_key_file, load_certificates, load_identity, load_identity_with, load_private_key,
};
pub use passphrase::{BUILTIN_TRIES, PassphraseCache, PassphraseSource};
pub use policy::{Alpn, CipherScope, CipherSetting, ProtocolSetting, TlsOptions, parse_ssl_cipher_suite, parse_ssl_protocol};
