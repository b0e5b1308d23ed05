//! TLS termination (Apache's mod_ssl part): loading and checking certificates and keys in every
//! form users have, the rustls server configuration with SNI and reload, and making certificates.
//!
//! The listener calls [`ReloadableCerts::load`] (or [`load_identity`] + [`build_server_config`])
//! once at start, logs the returned [`TlsWarning`]s loudly, and calls [`ReloadableCerts::reload`]
//! on SIGHUP. `trove cert` uses the `generate` functions.

mod error;
mod generate;
mod inspect;
mod keys;
mod load;
mod passphrase;
mod policy;
mod server;
mod sni;

pub use error::{FileRole, GOOD_KEY_COMMAND, TlsError, TlsWarning};
pub use generate::{
    CertAuthority, GeneratedCert, KeyKind, csr, csr_for_key, generate_key, issue, load_ca, make_ca, self_signed, validate_host, write_file, write_pair,
};
pub use inspect::{CertInfo, format_time};
pub use keys::KeyType;
pub use load::{Identity, KeyFileInfo, TlsSiteConfig, describe_key_file, load_certificates, load_identity, load_private_key};
pub use passphrase::{BUILTIN_TRIES, PassphraseSource};
pub use policy::{Alpn, CipherScope, CipherSetting, ProtocolSetting, TlsOptions, parse_ssl_cipher_suite, parse_ssl_protocol};
pub use server::{ReloadableCerts, build_server_config, build_server_config_with_resolver};
pub use sni::{SiteIdentity, SniResolver, name_matches};
