//! TLS termination (Apache's mod_ssl part): the rustls server configuration the listener serves
//! with, the certificate chosen by SNI, and certificates reloaded on SIGHUP.
//!
//! Certificates and keys themselves (loading, checking, making, the `SSLProtocol` and
//! `SSLCipherSuite` checks) are the `trove-tls` crate's; this module only serves them. The
//! listener calls [`ReloadableCerts::load`] (or `trove_tls::load_identity` +
//! [`build_server_config`]) once at start, logs the returned `TlsWarning`s loudly, and calls
//! [`ReloadableCerts::reload`] on SIGHUP.

mod server;
mod sni;

pub use server::{ReloadableCerts, build_server_config, build_server_config_with_resolver};
pub use sni::{SiteIdentity, SniResolver};
